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

mod ffi;
mod reference;

pub use reference::selective_scan_ref;

use std::ffi::CStr;

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
    Shape {
        name: &'static str,
        found: Vec<i64>,
        expected: String,
    },
    #[error("selective scan: tensor `{name}` has dtype {found:?}, expected {expected}")]
    Dtype {
        name: &'static str,
        found: Kind,
        expected: String,
    },
    #[error("selective scan: tensor `{name}` is on {found:?}, but `u` is on {expected:?}")]
    Device {
        name: &'static str,
        found: tch::Device,
        expected: tch::Device,
    },
    #[error("selective scan extension failed: {0}")]
    Extension(String),
    #[error(
        "selective scan: instruction set `{0}` is unknown or not supported by this CPU; \
         use one of avx512, avx2, scalar that the CPU supports (see `swin-umamba info`)"
    )]
    Isa(String),
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
    for (name, t) in [
        ("D", options.d),
        ("z", options.z),
        ("delta_bias", options.delta_bias),
    ] {
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
            return Err(ScanError::Device {
                name,
                found: t.device(),
                expected: device,
            });
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
            [bb, g, n, l] => bb == batch && g > 0 && dim % g == 0 && n == dstate && l == seqlen,
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
    Ok(ScanDims {
        batch,
        dim,
        seqlen,
        dstate,
    })
}

/// Signature shared by [`selective_scan`] and [`selective_scan_ref`].
pub type ScanFn = fn(
    &Tensor,
    &Tensor,
    &Tensor,
    &Tensor,
    &Tensor,
    &ScanOptions<'_>,
) -> Result<ScanOutput, ScanError>;

/// Computes the selective scan with the C++ extension (CPU kernels, or CUDA kernels when they
/// were built), with gradients through libtorch's autograd for every input except the last
/// state. Inputs in fp16/bf16/fp32 are computed in fp32, fp64 in fp64; `y` comes back in the
/// dtype of `u`.
pub fn selective_scan(
    u: &Tensor,
    delta: &Tensor,
    a: &Tensor,
    b: &Tensor,
    c: &Tensor,
    options: &ScanOptions<'_>,
) -> Result<ScanOutput, ScanError> {
    check_inputs(u, delta, a, b, c, options)?;
    let optional = |t: Option<&Tensor>| t.map_or(std::ptr::null(), |t| t.as_ptr());
    let mut y = std::ptr::null_mut();
    let mut last_state = std::ptr::null_mut();
    // SAFETY: every pointer comes from a live tch tensor or is null where the shim accepts
    // null. The shim catches all C++ exceptions and on success returns two new tensors.
    let status = unsafe {
        ffi::ss_selective_scan(
            u.as_ptr(),
            delta.as_ptr(),
            a.as_ptr(),
            b.as_ptr(),
            c.as_ptr(),
            optional(options.d),
            optional(options.z),
            optional(options.delta_bias),
            options.delta_softplus.into(),
            &mut y,
            &mut last_state,
        )
    };
    if status != 0 {
        // SAFETY: the shim returns a NUL-terminated thread-local string.
        let message = unsafe { CStr::from_ptr(ffi::ss_scan_last_error()) };
        return Err(ScanError::Extension(message.to_string_lossy().into_owned()));
    }
    // SAFETY: on success both pointers are new tensors owned by the caller.
    let (y, last_state) = unsafe { (Tensor::from_ptr(y), Tensor::from_ptr(last_state)) };
    Ok(ScanOutput {
        y,
        last_state: options.return_last_state.then_some(last_state),
    })
}

/// Instruction sets of the fp32 CPU kernel, best first.
pub const CPU_ISAS: [&str; 3] = ["avx512", "avx2", "scalar"];

/// Instruction set the fp32 CPU kernel runs with: the best this CPU supports ("avx512",
/// "avx2" or "scalar") unless [`set_cpu_isa`] chose another.
pub fn cpu_isa() -> &'static str {
    // SAFETY: the shim returns a pointer to a static NUL-terminated string.
    let isa = unsafe { CStr::from_ptr(ffi::ss_scan_cpu_isa()) };
    isa.to_str().unwrap_or("unknown")
}

/// Selects the instruction set of the fp32 CPU kernel for the whole process, so tests and
/// benchmarks can compare them. Fails when the name is not one of [`CPU_ISAS`] or this CPU
/// lacks the instruction set.
pub fn set_cpu_isa(isa: &str) -> Result<(), ScanError> {
    let name = std::ffi::CString::new(isa).map_err(|_| ScanError::Isa(isa.to_string()))?;
    // SAFETY: a NUL-terminated string that outlives the call.
    match unsafe { ffi::ss_scan_set_cpu_isa(name.as_ptr()) } {
        0 => Ok(()),
        _ => Err(ScanError::Isa(isa.to_string())),
    }
}

/// Element-wise functions of the fp32 vector kernels, exposed for accuracy tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VectorMath {
    Exp = 0,
    Softplus = 1,
    SoftplusGrad = 2,
}

/// Applies one of the vector kernels' element-wise functions with the code of one
/// instruction set ("avx512" or "avx2"). Returns `None` when this CPU lacks it.
pub fn vector_math(isa: &str, function: VectorMath, x: &[f32]) -> Option<Vec<f32>> {
    let supported = match isa {
        "avx512" => {
            std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512dq")
        }
        "avx2" => {
            std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
        }
        _ => false,
    };
    if !supported {
        return None;
    }
    let mut y = vec![0f32; x.len()];
    let (input, output, count) = (x.as_ptr(), y.as_mut_ptr(), x.len() as i64);
    // SAFETY: both buffers hold x.len() floats and the CPU supports the instruction set.
    unsafe {
        match isa {
            "avx512" => ffi::ss_cpu_math_f32_avx512(function as i32, input, output, count),
            _ => ffi::ss_cpu_math_f32_avx2(function as i32, input, output, count),
        }
    }
    Some(y)
}
