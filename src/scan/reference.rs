//! Reference selective scan written with tch ops, computed as mamba's `selective_scan_ref`:
//! the discretisation for all steps at once (materialising (B, D, L, N) tensors), then a
//! loop over L. Slow and memory-hungry by design; tests compare the kernel against it.

use tch::{Kind, Tensor};

use super::{check_inputs, ScanError, ScanOptions, ScanOutput};

/// Computes the selective scan with tch ops (see [`super::selective_scan`] for shapes).
pub fn selective_scan_ref(
    u: &Tensor,
    delta: &Tensor,
    a: &Tensor,
    b: &Tensor,
    c: &Tensor,
    options: &ScanOptions<'_>,
) -> Result<ScanOutput, ScanError> {
    let dims = check_inputs(u, delta, a, b, c, options)?;
    let input_kind = u.kind();
    let compute = if input_kind == Kind::Double { Kind::Double } else { Kind::Float };
    let u = u.to_kind(compute);
    let mut delta = delta.to_kind(compute);
    if let Some(bias) = options.delta_bias {
        delta = delta + bias.to_kind(compute).unsqueeze(-1);
    }
    if options.delta_softplus {
        delta = delta.softplus();
    }
    let a = a.to_kind(compute);
    let b = expand_groups(&b.to_kind(compute), dims.dim);
    let c = expand_groups(&c.to_kind(compute), dims.dim);

    // (B, D, L, N)
    let delta_a = Tensor::einsum("bdl,dn->bdln", &[&delta, &a], None::<i64>).exp();
    let delta_b_u = match b.dim() {
        2 => Tensor::einsum("bdl,dn,bdl->bdln", &[&delta, &b, &u], None::<i64>),
        3 => Tensor::einsum("bdl,bnl,bdl->bdln", &[&delta, &b, &u], None::<i64>),
        _ => Tensor::einsum("bdl,bdnl,bdl->bdln", &[&delta, &b, &u], None::<i64>),
    };

    let mut state = Tensor::zeros([dims.batch, dims.dim, dims.dstate], (compute, u.device()));
    let mut ys = Vec::with_capacity(dims.seqlen as usize);
    for i in 0..dims.seqlen {
        state = delta_a.select(2, i) * &state + delta_b_u.select(2, i);
        let y = match c.dim() {
            2 => Tensor::einsum("bdn,dn->bd", &[&state, &c], None::<i64>),
            3 => Tensor::einsum("bdn,bn->bd", &[&state, &c.select(2, i)], None::<i64>),
            _ => Tensor::einsum("bdn,bdn->bd", &[&state, &c.select(3, i)], None::<i64>),
        };
        ys.push(y);
    }
    let y = Tensor::stack(&ys, 2);
    let mut out = match options.d {
        Some(d) => y + &u * d.to_kind(compute).unsqueeze(-1),
        None => y,
    };
    if let Some(z) = options.z {
        out = out * z.to_kind(compute).silu();
    }
    Ok(ScanOutput {
        y: out.to_kind(input_kind),
        last_state: options.return_last_state.then_some(state),
    })
}

/// Repeats grouped (B, G, N, L) tensors to (B, D, N, L): channel block g of D/G channels
/// uses group g. Other layouts pass through.
fn expand_groups(t: &Tensor, dim: i64) -> Tensor {
    if t.dim() != 4 {
        return t.shallow_clone();
    }
    let (batch, groups, dstate, seqlen) = t.size4().expect("rank checked");
    t.unsqueeze(2)
        .expand([batch, groups, dim / groups, dstate, seqlen], false)
        .reshape([batch, dim, dstate, seqlen])
}
