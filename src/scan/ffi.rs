//! Declarations of the C shim in `csrc/selective_scan/scan_op.cpp`.

use std::os::raw::{c_char, c_int};

use torch_sys::C_tensor;

extern "C" {
    /// Runs the scan with autograd; optional inputs may be null. Returns 0 on success and
    /// writes two new tensors that the caller owns; returns 1 and sets the thread's error
    /// message on failure.
    #[allow(clippy::too_many_arguments)]
    pub fn ss_selective_scan(
        u: *const C_tensor,
        delta: *const C_tensor,
        a: *const C_tensor,
        b: *const C_tensor,
        c: *const C_tensor,
        d: *const C_tensor,
        z: *const C_tensor,
        delta_bias: *const C_tensor,
        delta_softplus: c_int,
        out_y: *mut *mut C_tensor,
        out_last_state: *mut *mut C_tensor,
    ) -> c_int;

    /// Message of the last failed call on this thread.
    pub fn ss_scan_last_error() -> *const c_char;

    /// Instruction set of the fp32 CPU kernel: "avx512", "avx2" or "scalar".
    pub fn ss_scan_cpu_isa() -> *const c_char;

    /// Selects the fp32 CPU kernel by instruction set; returns 1 when the name is unknown or
    /// the CPU lacks it.
    pub fn ss_scan_set_cpu_isa(isa: *const c_char) -> c_int;

    /// Vector math of the AVX-512 kernel (0 exp, 1 softplus, 2 softplus derivative), for
    /// accuracy tests; needs a CPU with AVX-512F and AVX-512DQ.
    pub fn ss_cpu_math_f32_avx512(function: c_int, x: *const f32, y: *mut f32, count: i64);

    /// Vector math of the AVX2 kernel, as above; needs a CPU with AVX2 and FMA.
    pub fn ss_cpu_math_f32_avx2(function: c_int, x: *const f32, y: *mut f32, count: i64);
}
