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
    let compute = if input_kind == Kind::Double {
        Kind::Double
    } else {
        Kind::Float
    };
    let u = u.to_kind(compute);
    // Out-of-place ops throughout: `to_kind` returns the input itself when the dtype already
    // matches, and an in-place update would modify the caller's tensor.
    let mut delta = match options.delta_bias {
        Some(bias) => delta.to_kind(compute) + bias.to_kind(compute).unsqueeze(-1),
        None => delta.to_kind(compute),
    };
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

    // The per-step slices come from one unbind, not from indexing inside the loop as the
    // official code does. The backward of L separate selects adds L zero-filled (B, D, L, N)
    // tensors, so the official backward is quadratic in L (an estimated hours at 80×80 on
    // two cores). The backward of unbind stacks the L slices once. Values are identical.
    let delta_a_steps = delta_a.unbind(2);
    let delta_b_u_steps = delta_b_u.unbind(2);
    let c_steps = match c.dim() {
        2 => Vec::new(),
        3 => c.unbind(2),
        _ => c.unbind(3),
    };
    let mut state = Tensor::zeros([dims.batch, dims.dim, dims.dstate], (compute, u.device()));
    let mut ys = Vec::with_capacity(dims.seqlen as usize);
    for i in 0..dims.seqlen as usize {
        state = &delta_a_steps[i] * &state + &delta_b_u_steps[i];
        let y = match c.dim() {
            2 => Tensor::einsum("bdn,dn->bd", &[&state, &c], None::<i64>),
            3 => Tensor::einsum("bdn,bn->bd", &[&state, &c_steps[i]], None::<i64>),
            _ => Tensor::einsum("bdn,bdn->bd", &[&state, &c_steps[i]], None::<i64>),
        };
        ys.push(y);
    }
    let y = Tensor::stack(&ys, 2);
    let mut out = match options.d {
        Some(d) => y + &u * d.to_kind(compute).unsqueeze(-1),
        None => y,
    };
    if let Some(z) = options.z {
        out = &out * z.to_kind(compute).silu();
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
