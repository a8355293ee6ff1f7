//! The selective-scan extension against the tch-op reference: outputs, last state and every
//! gradient in fp64 over a grid of shapes and optional inputs, fp32 at the official tests'
//! tolerances, reduced-precision inputs, and the input checks.

mod scan_common;

use scan_common::{assert_close, max_abs_diff, run, Case, Inputs, Layout};
use swin_umamba::scan::{selective_scan, selective_scan_ref, ScanError, ScanOptions};
use tch::{Kind, Tensor};

/// Tolerance of the fp64 comparison; both sides are exact up to summation order.
const FP64_TOL: f64 = 1e-9;
/// fp32 tolerances of mamba's tests/ops/test_selective_scan.py.
const FP32_RTOL: f64 = 6e-4;
const FP32_ATOL: f64 = 2e-3;

fn grid() -> Vec<Case> {
    let mut cases = Vec::new();
    let layouts = [
        (Layout::Shared, Layout::Shared),
        (Layout::Grouped(1), Layout::Grouped(1)),
        (Layout::Grouped(4), Layout::Grouped(4)),
        (Layout::Const, Layout::Const),
        (Layout::Shared, Layout::Grouped(4)),
        (Layout::Grouped(2), Layout::Const),
    ];
    let sizes = [(1, 8, 16, 1), (2, 8, 16, 37), (1, 12, 20, 9), (2, 4, 5, 64)];
    let mut flag = 0u32;
    for (b_layout, c_layout) in layouts {
        for (batch, dim, dstate, seqlen) in sizes {
            if let Layout::Grouped(g) = b_layout {
                if dim % g != 0 {
                    continue;
                }
            }
            flag = flag.wrapping_add(5);
            cases.push(Case {
                batch,
                dim,
                dstate,
                seqlen,
                b_layout,
                c_layout,
                has_d: flag & 1 != 0,
                has_z: flag & 2 != 0,
                has_delta_bias: flag & 4 != 0,
                delta_softplus: flag & 8 != 0,
            });
        }
    }
    // Every optional input alone and all together, at an odd length with G = 4.
    for mask in [0u32, 1, 2, 4, 8, 15] {
        cases.push(Case {
            batch: 2,
            dim: 8,
            dstate: 16,
            seqlen: 13,
            b_layout: Layout::Grouped(4),
            c_layout: Layout::Grouped(4),
            has_d: mask & 1 != 0,
            has_z: mask & 2 != 0,
            has_delta_bias: mask & 4 != 0,
            delta_softplus: mask & 8 != 0,
        });
    }
    cases
}

fn compare(case: &Case, kind: Kind, rtol: f64, atol: f64, seed: i64) {
    println!("{case:?} {kind:?}");
    let inputs = Inputs::random(case, kind, seed);
    let kernel = run(selective_scan, &inputs, case.delta_softplus);
    let reference = run(selective_scan_ref, &inputs, case.delta_softplus);
    assert_eq!(kernel.y.kind(), kind, "y dtype");
    assert_close("y", &kernel.y, &reference.y, rtol, atol);
    assert_close(
        "last_state",
        &kernel.last_state,
        &reference.last_state,
        rtol,
        atol,
    );
    for ((name, grad), (_, expected)) in kernel.grads.iter().zip(&reference.grads) {
        assert_eq!(grad.kind(), kind, "grad_{name} dtype");
        assert_close(&format!("grad_{name}"), grad, expected, rtol, atol);
    }
}

#[test]
fn fp64_grid_matches_reference() {
    for (i, case) in grid().iter().enumerate() {
        compare(case, Kind::Double, 0.0, FP64_TOL, 10 + i as i64);
    }
}

#[test]
fn fp32_grid_matches_reference() {
    for (i, case) in grid().iter().enumerate() {
        compare(case, Kind::Float, FP32_RTOL, FP32_ATOL, 100 + i as i64);
    }
}

/// Central differences of sum(y * dout) against the kernel's analytic gradients, in fp64.
#[test]
fn fp64_finite_differences() {
    let case = Case {
        batch: 2,
        dim: 4,
        dstate: 3,
        seqlen: 5,
        b_layout: Layout::Grouped(2),
        c_layout: Layout::Shared,
        has_d: true,
        has_z: true,
        has_delta_bias: true,
        delta_softplus: true,
    };
    let inputs = Inputs::random(&case, Kind::Double, 7);
    let analytic = run(selective_scan, &inputs, true);
    let options = inputs.options(true);
    let loss = || {
        let out = tch::no_grad(|| {
            selective_scan(
                &inputs.u,
                &inputs.delta,
                &inputs.a,
                &inputs.b,
                &inputs.c,
                &options,
            )
        })
        .expect("scan runs");
        (&out.y * &inputs.dout).sum(Kind::Double).double_value(&[])
    };
    let step = 1e-6;
    for ((name, leaf), (_, grad)) in inputs.leaves().into_iter().zip(&analytic.grads) {
        let flat = leaf.detach().view([-1]);
        let grad = grad.reshape([-1]);
        let mut max_diff = 0f64;
        for i in 0..flat.size()[0] {
            let original = flat.double_value(&[i]);
            let _ = tch::no_grad(|| flat.get(i).fill_(original + step));
            let plus = loss();
            let _ = tch::no_grad(|| flat.get(i).fill_(original - step));
            let minus = loss();
            let _ = tch::no_grad(|| flat.get(i).fill_(original));
            let numeric = (plus - minus) / (2.0 * step);
            max_diff = max_diff.max((numeric - grad.double_value(&[i])).abs());
        }
        println!("grad_{name}: max |analytic - numeric| {max_diff:.3e}");
        assert!(
            max_diff < 1e-6,
            "grad_{name}: finite differences differ by {max_diff:.3e}"
        );
    }
}

/// fp16 and bf16 inputs run in fp32 and return y in the input dtype, close to the fp32 scan
/// of the same (rounded) values.
#[test]
fn half_inputs_compute_in_fp32() {
    let case = Case {
        batch: 2,
        dim: 8,
        dstate: 16,
        seqlen: 21,
        b_layout: Layout::Grouped(4),
        c_layout: Layout::Grouped(4),
        has_d: true,
        has_z: true,
        has_delta_bias: true,
        delta_softplus: true,
    };
    for kind in [Kind::Half, Kind::BFloat16] {
        let inputs = Inputs::random(&case, kind, 3);
        let low = run(selective_scan, &inputs, true);
        assert_eq!(low.y.kind(), kind);
        let as_f32 = |t: &Tensor| t.to_kind(Kind::Float).detach();
        let d = inputs.d.as_ref().map(as_f32);
        let z = inputs.z.as_ref().map(as_f32);
        let bias = inputs.delta_bias.as_ref().map(as_f32);
        let options = ScanOptions {
            d: d.as_ref(),
            z: z.as_ref(),
            delta_bias: bias.as_ref(),
            delta_softplus: true,
            return_last_state: true,
        };
        let u = as_f32(&inputs.u);
        let delta = as_f32(&inputs.delta);
        let (a, b, c) = (as_f32(&inputs.a), as_f32(&inputs.b), as_f32(&inputs.c));
        let full = selective_scan(&u, &delta, &a, &b, &c, &options).expect("fp32 scan runs");
        // Only the final rounding of y to the input dtype separates the two.
        let rounded = full.y.to_kind(kind);
        let diff = max_abs_diff(&low.y, &rounded);
        println!("{kind:?}: max |y - fp32 y rounded| {diff:.3e}");
        assert!(
            diff < 1e-6,
            "{kind:?} y differs from the rounded fp32 result by {diff:.3e}"
        );
        for (name, grad) in &low.grads {
            assert_eq!(grad.kind(), kind, "grad_{name} dtype");
        }
    }
}

/// The thread count must not change the result beyond summation order.
#[test]
fn thread_count_does_not_change_result() {
    let case = Case {
        batch: 2,
        dim: 16,
        dstate: 16,
        seqlen: 50,
        b_layout: Layout::Grouped(4),
        c_layout: Layout::Shared,
        has_d: true,
        has_z: true,
        has_delta_bias: true,
        delta_softplus: true,
    };
    let inputs = Inputs::random(&case, Kind::Double, 5);
    let threads = tch::get_num_threads();
    tch::set_num_threads(1);
    let single = run(selective_scan, &inputs, true);
    tch::set_num_threads(3);
    let multi = run(selective_scan, &inputs, true);
    tch::set_num_threads(threads);
    assert_close("y", &multi.y, &single.y, 0.0, 1e-12);
    for ((name, a), (_, b)) in multi.grads.iter().zip(&single.grads) {
        assert_close(&format!("grad_{name}"), a, b, 0.0, 1e-12);
    }
}

fn expect_shape_error(result: Result<swin_umamba::scan::ScanOutput, ScanError>, tensor: &str) {
    match result {
        Err(ScanError::Shape { name, .. }) => assert_eq!(name, tensor),
        Err(other) => panic!("expected a shape error for {tensor}, got {other}"),
        Ok(_) => panic!("expected a shape error for {tensor}, got a result"),
    }
}

#[test]
fn invalid_inputs_return_errors() {
    let opts = (Kind::Float, tch::Device::Cpu);
    let u = Tensor::randn([2, 8, 5], opts);
    let delta = Tensor::rand([2, 8, 5], opts);
    let a = -Tensor::rand([8, 4], opts);
    let b = Tensor::randn([2, 4, 5], opts);
    let none = ScanOptions::default();
    let bad_delta = Tensor::rand([2, 8, 6], opts);
    expect_shape_error(selective_scan(&u, &bad_delta, &a, &b, &b, &none), "delta");
    let bad_a = Tensor::rand([7, 4], opts);
    expect_shape_error(selective_scan(&u, &delta, &bad_a, &b, &b, &none), "A");
    let bad_groups = Tensor::randn([2, 3, 4, 5], opts);
    expect_shape_error(selective_scan(&u, &delta, &a, &bad_groups, &b, &none), "B");
    let bad_c = Tensor::randn([2, 5, 5], opts);
    expect_shape_error(selective_scan(&u, &delta, &a, &b, &bad_c, &none), "C");
    let bad_d = Tensor::randn([9], opts);
    let with_d = ScanOptions {
        d: Some(&bad_d),
        ..Default::default()
    };
    expect_shape_error(selective_scan(&u, &delta, &a, &b, &b, &with_d), "D");
    let message = selective_scan(&u, &delta, &a, &b, &bad_c, &none)
        .err()
        .unwrap()
        .to_string();
    assert!(
        message.contains("(B, N, L) = (2, 4, 5)"),
        "message names the shape: {message}"
    );

    let ints = Tensor::ones([2, 8, 5], (Kind::Int64, tch::Device::Cpu));
    match selective_scan(&u, &ints, &a, &b, &b, &none) {
        Err(ScanError::Dtype { name, .. }) => assert_eq!(name, "delta"),
        other => panic!("expected a dtype error for delta, got {:?}", other.err()),
    }
}

/// A C++ exception inside the extension comes back as ScanError::Extension and the process
/// goes on. Expanded inputs pass the Rust checks without memory, but the extension's copy
/// to contiguous fp32 needs 4 PiB, so libtorch's allocator throws.
#[test]
fn extension_failure_is_an_error() {
    let opts = (Kind::Float, tch::Device::Cpu);
    let (batch, dim, seqlen) = (1 << 20, 1 << 10, 1 << 20);
    let u = Tensor::zeros([1, 1, 1], opts).expand([batch, dim, seqlen], false);
    let a = Tensor::zeros([1, 1], opts).expand([dim, 4], false);
    let b = Tensor::zeros([1, 1, 1], opts).expand([batch, 4, seqlen], false);
    let result = selective_scan(&u, &u, &a, &b, &b, &ScanOptions::default());
    match result {
        Err(ScanError::Extension(message)) => {
            println!("extension error: {message}");
            assert!(!message.is_empty());
        }
        Err(other) => panic!("expected an extension error, got {other}"),
        Ok(_) => panic!("expected an extension error, got a result"),
    }
    // The extension still works after the failure.
    let small = Tensor::randn([1, 2, 3], opts);
    let a = -Tensor::rand([2, 2], opts);
    let b = Tensor::randn([1, 2, 3], opts);
    assert!(selective_scan(&small, &small.abs(), &a, &b, &b, &ScanOptions::default()).is_ok());
}

/// On a build without CUDA kernels, CUDA inputs are an extension error naming the cause.
#[test]
fn cuda_inputs_without_kernels_are_an_error() {
    if !tch::Cuda::is_available() {
        println!("no CUDA device: nothing to check");
        return;
    }
    let opts = (Kind::Float, tch::Device::Cuda(0));
    let u = Tensor::randn([1, 4, 3], opts);
    let a = -Tensor::rand([4, 2], opts);
    let b = Tensor::randn([1, 2, 3], opts);
    match selective_scan(&u, &u.abs(), &a, &b, &b, &ScanOptions::default()) {
        Ok(out) => assert_eq!(out.y.device(), tch::Device::Cuda(0)),
        Err(ScanError::Extension(message)) => assert!(message.contains("nvcc"), "{message}"),
        Err(other) => panic!("unexpected error {other}"),
    }
}

#[test]
fn cpu_isa_is_reported() {
    let isa = swin_umamba::scan::cpu_isa();
    println!("fp32 kernel ISA: {isa}");
    assert!(
        ["avx512", "avx2", "scalar"].contains(&isa),
        "unexpected ISA {isa}"
    );
}

/// An empty sequence gives an empty output and a zero last state, and its backward runs.
#[test]
fn empty_sequence_gives_zero_state() {
    let opts = (Kind::Float, tch::Device::Cpu);
    let u = Tensor::randn([2, 4, 0], opts).set_requires_grad(true);
    let a = -Tensor::rand([4, 3], opts);
    let b = Tensor::randn([2, 2, 3, 0], opts);
    let options = ScanOptions {
        return_last_state: true,
        ..Default::default()
    };
    let out = selective_scan(&u, &u.abs(), &a, &b, &b, &options).expect("empty scan runs");
    assert_eq!(out.y.size(), [2, 4, 0]);
    let last = out.last_state.expect("last state requested");
    assert_eq!(last.size(), [2, 4, 3]);
    assert_eq!(last.abs().max().double_value(&[]), 0.0);
    let grads = Tensor::run_backward(&[out.y.sum(Kind::Float)], &[&u], false, false);
    assert_eq!(grads[0].size(), [2, 4, 0]);
}
