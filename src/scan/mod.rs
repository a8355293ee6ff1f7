//! The Mamba selective scan: the C++ extension in `csrc/selective_scan` and a tch-op
//! reference with the same signature.
//!
//! Semantics, per batch b, channel d and state n, over positions l:
//! `h = exp(delta*A) * h + delta * B * u`, `y = sum_n(C * h) + D * u`, then `y * silu(z)`,
//! where `delta` first gets `delta_bias` added and passes through softplus when asked.
//!
//! # Shapes
//! - `u`, `delta`, `z`, output `y`: (B, D, L)
//! - `A`: (D, N)
//! - `B`, `C`: (D, N) constant, (B, N, L) shared by all channels, or (B, G, N, L) grouped,
//!   where channel block g of D/G channels uses group g (SS2D uses G = 4 directions)
//! - `D`, `delta_bias`: (D)
//! - last state: (B, D, N)

mod reference;

pub use reference::selective_scan_ref;

use tch::{Kind, Tensor};

/// Optional inputs and flags of the selective scan.
#[derive(Default, Clone, Copy)]
pub struct ScanOptions<'a> {
    /// Skip connection weight `D`, shape (D).
    pub d: Option<&'a Tensor>,
    /// Gate `z`, shape (B, D, L); the output is multiplied by `silu(z)`.
    pub z: Option<&'a Tensor>,
    /// Bias added to `delta` before the softplus, shape (D).
    pub delta_bias: Option<&'a Tensor>,
    /// Apply softplus to `delta` (after the bias).
    pub delta_softplus: bool,
    /// Also return the state after the last position, shape (B, D, N).
    pub return_last_state: bool,
}

/// Output `y` (B, D, L) in the dtype of `u`, and the last state in the compute dtype.
pub struct ScanOutput {
    pub y: Tensor,
    pub last_state: Option<Tensor>,
}

/// Invalid inputs to the selective scan, or a failure inside the extension.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("selective scan: tensor `{name}` has shape {found:?}, expected {expected}")]
    Shape { name: &'static str, found: Vec<i64>, expected: String },
    #[error("selective scan: tensor `{name}` has dtype {found:?}, expected {expected}")]
    Dtype { name: &'static str, found: Kind, expected: String },
    #[error("selective scan: tensor `{name}` is on {found:?}, but `u` is on {expected:?}")]
    Device { name: &'static str, found: tch::Device, expected: tch::Device },
    #[error("selective scan extension failed: {0}")]
    Extension(String),
}

/// Sizes named on entry: batch B, channels D, sequence length L, state size N.
#[derive(Debug, Clone, Copy)]
pub struct ScanDims {
    pub batch: i64,
    pub dim: i64,
    pub seqlen: i64,
    pub dstate: i64,
}

/// Checks shapes, dtypes and devices of every input against `u` and `A`.
pub fn check_inputs(
    u: &Tensor,
    delta: &Tensor,
    a: &Tensor,
    b: &Tensor,
    c: &Tensor,
    options: &ScanOptions<'_>,
) -> Result<ScanDims, ScanError> {
    let shape_error = |name: &'static str, t: &Tensor, expected: String| ScanError::Shape {
        name,
        found: t.size(),
        expected,
    };
    let (batch, dim, seqlen) = match u.size()[..] {
        [b, d, l] => (b, d, l),
        _ => return Err(shape_error("u", u, "(B, D, L)".into())),
    };
    let dstate = match a.size()[..] {
        [d, n] if d == dim => n,
        _ => return Err(shape_error("A", a, format!("(D, N) with D = {dim}"))),
    };
    let float_kinds = [Kind::Float, Kind::Double, Kind::Half, Kind::BFloat16];
    let device = u.device();
    let mut tensors: Vec<(&'static str, &Tensor)> =
        vec![("u", u), ("delta", delta), ("A", a), ("B", b), ("C", c)];
    for (name, t) in [("D", options.d), ("z", options.z), ("delta_bias", options.delta_bias)] {
        if let Some(t) = t {
            tensors.push((name, t));
        }
    }
    for (name, t) in &tensors {
        if !float_kinds.contains(&t.kind()) {
            return Err(ScanError::Dtype {
                name,
                found: t.kind(),
                expected: "a floating dtype (f16, bf16, f32 or f64)".into(),
            });
        }
        if t.device() != device {
            return Err(ScanError::Device { name, found: t.device(), expected: device });
        }
    }
    let bdl = format!("(B, D, L) = ({batch}, {dim}, {seqlen})");
    if delta.size() != [batch, dim, seqlen] {
        return Err(shape_error("delta", delta, bdl));
    }
    if let Some(z) = options.z {
        if z.size() != [batch, dim, seqlen] {
            return Err(shape_error("z", z, bdl));
        }
    }
    for (name, t) in [("D", options.d), ("delta_bias", options.delta_bias)] {
        if let Some(t) = t {
            if t.size() != [dim] {
                return Err(shape_error(name, t, format!("(D) = ({dim})")));
            }
        }
    }
    for (name, t) in [("B", b), ("C", c)] {
        let ok = match t.size()[..] {
            [d, n] => d == dim && n == dstate,
            [bb, n, l] => bb == batch && n == dstate && l == seqlen,
            [bb, g, n, l] => {
                bb == batch && g > 0 && dim % g == 0 && n == dstate && l == seqlen
            }
            _ => false,
        };
        if !ok {
            return Err(shape_error(
                name,
                t,
                format!(
                    "(D, N) = ({dim}, {dstate}), (B, N, L) = ({batch}, {dstate}, {seqlen}) \
                     or (B, G, N, L) with G dividing D = {dim}"
                ),
            ));
        }
    }
    Ok(ScanDims { batch, dim, seqlen, dstate })
}

/// Computes the selective scan; for now the tch-op reference, until the extension lands.
pub fn selective_scan(
    u: &Tensor,
    delta: &Tensor,
    a: &Tensor,
    b: &Tensor,
    c: &Tensor,
    options: &ScanOptions<'_>,
) -> Result<ScanOutput, ScanError> {
    selective_scan_ref(u, delta, a, b, c, options)
}
