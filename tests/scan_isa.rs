//! The fp32 kernels of every instruction set this CPU supports against the reference, and the
//! accuracy of the vector exp they use. These tests live in their own binary because the
//! selected instruction set is process-wide and would change the kernel under other tests.

mod scan_common;

use scan_common::{assert_close, run, Case, Inputs, Layout};
use swin_umamba::scan::{
    selective_scan, selective_scan_ref, set_cpu_isa, vector_math, VectorMath, CPU_ISAS,
};
use tch::Kind;

/// fp32 tolerances of mamba's tests/ops/test_selective_scan.py.
const FP32_RTOL: f64 = 6e-4;
const FP32_ATOL: f64 = 2e-3;

/// Largest relative error accepted from the vector exp: 4 fp32 ulps at 1.
const EXP_MAX_REL: f64 = 4.0 * f32::EPSILON as f64;
/// Largest relative error accepted from the vector softplus and its derivative.
const SOFTPLUS_MAX_REL: f64 = 8.0 * f32::EPSILON as f64;

#[test]
fn every_isa_matches_reference() {
    // N = 20 leaves a partial vector for both AVX-512 (16) and AVX2 (8).
    let cases = [
        Case {
            batch: 2,
            dim: 8,
            dstate: 16,
            seqlen: 33,
            b_layout: Layout::Grouped(4),
            c_layout: Layout::Grouped(4),
            has_d: true,
            has_z: true,
            has_delta_bias: true,
            delta_softplus: true,
        },
        Case {
            batch: 1,
            dim: 6,
            dstate: 20,
            seqlen: 9,
            b_layout: Layout::Const,
            c_layout: Layout::Shared,
            has_d: false,
            has_z: true,
            has_delta_bias: false,
            delta_softplus: false,
        },
    ];
    let mut tested = 0;
    for isa in CPU_ISAS {
        if set_cpu_isa(isa).is_err() {
            println!("{isa}: not supported by this CPU, skipped");
            continue;
        }
        tested += 1;
        for (i, case) in cases.iter().enumerate() {
            println!("{isa}: {case:?}");
            let inputs = Inputs::random(case, Kind::Float, 40 + i as i64);
            let kernel = run(selective_scan, &inputs, case.delta_softplus);
            let reference = run(selective_scan_ref, &inputs, case.delta_softplus);
            assert_close("y", &kernel.y, &reference.y, FP32_RTOL, FP32_ATOL);
            for ((name, grad), (_, expected)) in kernel.grads.iter().zip(&reference.grads) {
                assert_close(
                    &format!("grad_{name}"),
                    grad,
                    expected,
                    FP32_RTOL,
                    FP32_ATOL,
                );
            }
        }
    }
    assert!(tested >= 1, "the scalar kernel is always available");
    assert!(set_cpu_isa("sse9").is_err(), "unknown names are rejected");
}

fn check_function(function: VectorMath, x: &[f32], exact: fn(f64) -> f64, max_rel: f64) {
    for isa in ["avx512", "avx2"] {
        let Some(y) = vector_math(isa, function, x) else {
            println!("{isa}: not supported by this CPU, skipped");
            continue;
        };
        let mut worst = 0f64;
        for (&xi, &yi) in x.iter().zip(&y) {
            let exact = exact(xi as f64);
            let expected = exact as f32;
            if expected == 0.0 || expected.is_infinite() {
                let tiny = f32::from_bits(1) as f64;
                assert!(
                    yi == expected || (yi as f64 - exact).abs() <= tiny,
                    "{isa} {function:?}({xi}) = {yi}, expected {expected}"
                );
                continue;
            }
            if expected.abs() < f32::MIN_POSITIVE {
                continue; // denormal results carry fewer bits
            }
            worst = worst.max(((yi as f64) - exact).abs() / exact.abs());
        }
        println!("{isa}: max relative error of {function:?} {worst:.3e}");
        assert!(
            worst <= max_rel,
            "{isa} {function:?}: relative error {worst:.3e}"
        );
    }
}

/// Builds a dense grid over [-100, 88] plus points at the ends of the fp32 range.
fn grid() -> Vec<f32> {
    let mut x: Vec<f32> = (0..200_001).map(|i| -100.0 + i as f32 * 0.000_94).collect();
    x.extend([
        -104.0, -103.0, -87.5, -87.3, -1e-8, 0.0, 1e-8, 19.99, 20.01, 88.7, 88.8,
    ]);
    x.extend([200.0, -200.0]);
    x
}

#[test]
fn vector_exp_is_accurate() {
    check_function(VectorMath::Exp, &grid(), f64::exp, EXP_MAX_REL);
}

#[test]
fn vector_softplus_is_accurate() {
    // torch's softplus: the identity above 20, log1p(exp(x)) below.
    let softplus = |x: f64| if x > 20.0 { x } else { x.exp().ln_1p() };
    let sigmoid = |x: f64| {
        if x > 20.0 {
            1.0
        } else {
            1.0 / (1.0 + (-x).exp())
        }
    };
    let x: Vec<f32> = grid().into_iter().filter(|x| x.abs() < 100.0).collect();
    check_function(VectorMath::Softplus, &x, softplus, SOFTPLUS_MAX_REL);
    check_function(VectorMath::SoftplusGrad, &x, sigmoid, SOFTPLUS_MAX_REL);
}
