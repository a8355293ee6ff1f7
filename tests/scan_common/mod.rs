//! Input builders and comparisons shared by the selective-scan tests.
#![allow(dead_code)]

use swin_umamba::scan::ScanOptions;
use tch::{Kind, Tensor};

/// Layout of B or C.
#[derive(Debug, Clone, Copy)]
pub enum Layout {
    /// (D, N), the same for every position.
    Const,
    /// (B, N, L), shared by all channels.
    Shared,
    /// (B, G, N, L) with G groups of D/G channels.
    Grouped(i64),
}

/// One scan configuration of the test grid.
#[derive(Debug, Clone, Copy)]
pub struct Case {
    pub batch: i64,
    pub dim: i64,
    pub dstate: i64,
    pub seqlen: i64,
    pub b_layout: Layout,
    pub c_layout: Layout,
    pub has_d: bool,
    pub has_z: bool,
    pub has_delta_bias: bool,
    pub delta_softplus: bool,
}

/// Inputs of one case, as leaves that require gradients, plus the output gradient.
pub struct Inputs {
    pub u: Tensor,
    pub delta: Tensor,
    pub a: Tensor,
    pub b: Tensor,
    pub c: Tensor,
    pub d: Option<Tensor>,
    pub z: Option<Tensor>,
    pub delta_bias: Option<Tensor>,
    pub dout: Tensor,
}

fn operand(layout: Layout, case: &Case, kind: Kind) -> Tensor {
    let shape = match layout {
        Layout::Const => vec![case.dim, case.dstate],
        Layout::Shared => vec![case.batch, case.dstate, case.seqlen],
        Layout::Grouped(g) => vec![case.batch, g, case.dstate, case.seqlen],
    };
    Tensor::randn(shape, (kind, tch::Device::Cpu))
}

impl Inputs {
    /// Draws inputs with the distributions of mamba's selective-scan tests: u, B, C, D, z
    /// standard normal, delta and delta_bias 0.5*U(0,1), A -0.5*U(0,1).
    pub fn random(case: &Case, kind: Kind, seed: i64) -> Inputs {
        tch::manual_seed(seed);
        let opts = (kind, tch::Device::Cpu);
        let bdl = [case.batch, case.dim, case.seqlen];
        let leaf = |t: Tensor| t.set_requires_grad(true);
        Inputs {
            u: leaf(Tensor::randn(bdl, opts)),
            delta: leaf(Tensor::rand(bdl, opts) * 0.5),
            a: leaf(Tensor::rand([case.dim, case.dstate], opts) * -0.5),
            b: leaf(operand(case.b_layout, case, kind)),
            c: leaf(operand(case.c_layout, case, kind)),
            d: case.has_d.then(|| leaf(Tensor::randn([case.dim], opts))),
            z: case.has_z.then(|| leaf(Tensor::randn(bdl, opts))),
            delta_bias: case
                .has_delta_bias
                .then(|| leaf(Tensor::rand([case.dim], opts) * 0.5)),
            dout: Tensor::randn(bdl, opts),
        }
    }

    pub fn options(&self, delta_softplus: bool) -> ScanOptions<'_> {
        ScanOptions {
            d: self.d.as_ref(),
            z: self.z.as_ref(),
            delta_bias: self.delta_bias.as_ref(),
            delta_softplus,
            return_last_state: true,
        }
    }

    /// Named leaves in a fixed order: u, delta, A, B, C, then D, z, delta_bias if present.
    pub fn leaves(&self) -> Vec<(&'static str, &Tensor)> {
        let mut leaves = vec![
            ("u", &self.u),
            ("delta", &self.delta),
            ("A", &self.a),
            ("B", &self.b),
            ("C", &self.c),
        ];
        for (name, t) in [
            ("D", &self.d),
            ("z", &self.z),
            ("delta_bias", &self.delta_bias),
        ] {
            if let Some(t) = t {
                leaves.push((name, t));
            }
        }
        leaves
    }
}

pub use swin_umamba::scan::ScanFn;

/// Output, last state and the gradient of sum(y * dout) for every leaf.
pub struct Results {
    pub y: Tensor,
    pub last_state: Tensor,
    pub grads: Vec<(&'static str, Tensor)>,
}

/// Runs `scan` forward and backward on the inputs.
pub fn run(scan: ScanFn, inputs: &Inputs, delta_softplus: bool) -> Results {
    let options = inputs.options(delta_softplus);
    let out = scan(
        &inputs.u,
        &inputs.delta,
        &inputs.a,
        &inputs.b,
        &inputs.c,
        &options,
    )
    .expect("scan runs");
    let leaves = inputs.leaves();
    let tensors: Vec<&Tensor> = leaves.iter().map(|(_, t)| *t).collect();
    let loss = (&out.y * &inputs.dout.to_kind(out.y.kind())).sum(Kind::Double);
    let grads = Tensor::run_backward(&[loss], &tensors, false, false);
    Results {
        y: out.y.detach(),
        last_state: out.last_state.expect("last state requested").detach(),
        grads: leaves.iter().map(|(name, _)| *name).zip(grads).collect(),
    }
}

/// Max |a - b| as f64.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a.to_kind(Kind::Double) - b.to_kind(Kind::Double))
        .abs()
        .max()
        .double_value(&[])
}

/// Asserts |a - b| <= atol + rtol*|b| elementwise, printing the max difference first.
pub fn assert_close(label: &str, actual: &Tensor, expected: &Tensor, rtol: f64, atol: f64) {
    assert_eq!(actual.size(), expected.size(), "{label}: shape");
    let actual = actual.to_kind(Kind::Double);
    let expected = expected.to_kind(Kind::Double);
    let diff = (&actual - &expected).abs();
    let excess = &diff - (expected.abs() * rtol + atol);
    let max_diff = diff.max().double_value(&[]);
    let worst = excess.max().double_value(&[]);
    println!("{label}: max |diff| {max_diff:.3e}, max excess over tolerance {worst:.3e}");
    assert!(
        worst <= 0.0,
        "{label}: max |diff| {max_diff:.3e} exceeds rtol {rtol}, atol {atol}"
    );
}
