//! `swin-umamba bench scan`: the selective-scan kernel against the tch-op reference.
//!
//! Each (shape, implementation, mode) runs in its own child process, so the peak resident
//! memory (VmHWM) of one measurement does not hide another's. The child creates the inputs,
//! records its resident memory, runs the timed iterations and prints one JSON line that the
//! parent collects into the table.

use std::io::Write;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::scan::{selective_scan, selective_scan_ref, ScanOptions};

/// Flops counted per forward call and per (batch, channel, position, state): VMamba's
/// `flops_selective_scan_ref` counts 9·B·L·D·N without the D and z terms.
const FLOPS_PER_ELEMENT: f64 = 9.0;

/// SS2D shape of one Swin-UMamba encoder stage (VMamba-Tiny, 4 scan directions).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Shape {
    name: &'static str,
    batch: i64,
    groups: i64,
    dim: i64,
    dstate: i64,
    seqlen: i64,
}

/// Stage 2 (d_inner 192 at 80×80 for a 320×320 input with patch size 4) and stage 4
/// (d_inner 768 at 20×20); D is 4·d_inner because the four directions form one call.
const SHAPES: [Shape; 2] = [
    Shape {
        name: "stage2",
        batch: 2,
        groups: 4,
        dim: 4 * 192,
        dstate: 16,
        seqlen: 80 * 80,
    },
    Shape {
        name: "stage4",
        batch: 2,
        groups: 4,
        dim: 4 * 768,
        dstate: 16,
        seqlen: 20 * 20,
    },
];

/// Arguments of `bench scan`.
#[derive(Args, Debug, Clone)]
pub struct ScanBenchArgs {
    /// Shapes to run: stage2 (B=2, D=768, L=6400), stage4 (B=2, D=3072, L=400) or all.
    #[arg(long, default_value = "all")]
    shape: String,
    /// Timed iterations of the kernel per mode, after one untimed warm-up iteration.
    #[arg(long, default_value_t = 5)]
    iters: usize,
    /// Timed iterations of the reference per mode (no warm-up; it takes seconds per call).
    #[arg(long, default_value_t = 1)]
    reference_iters: usize,
    /// Intra-op threads for libtorch and the kernel; 0 keeps libtorch's default.
    #[arg(long, default_value_t = 0)]
    threads: i32,
    /// Instruction set of the fp32 kernel (avx512, avx2, scalar); default: the best one.
    #[arg(long)]
    isa: Option<String>,
    /// Skip the reference and time only the kernel.
    #[arg(long)]
    skip_reference: bool,
    /// Internal: run one measurement as `IMPL:MODE:SHAPE` and print it as JSON.
    #[arg(long, hide = true)]
    child: Option<String>,
}

/// One measurement, printed by the child as a JSON line.
#[derive(Debug, Serialize, Deserialize)]
struct Measurement {
    /// Median wall time of one call, milliseconds.
    median_ms: f64,
    /// Median CPU time (user + system, all threads) of one call, milliseconds. On a shared
    /// machine this is the steadier figure: it does not grow while other processes run.
    cpu_ms: f64,
    /// Resident memory after creating the inputs, MiB.
    baseline_mib: f64,
    /// Peak resident memory of the process, MiB.
    peak_mib: f64,
}

impl Measurement {
    fn extra_mib(&self) -> f64 {
        self.peak_mib - self.baseline_mib
    }
}

/// Runs `bench scan`.
pub fn run(args: ScanBenchArgs) -> Result<()> {
    if args.threads > 0 {
        tch::set_num_threads(args.threads);
    }
    if let Some(isa) = &args.isa {
        crate::scan::set_cpu_isa(isa)?;
    }
    if let Some(spec) = &args.child {
        return run_child(&args, spec);
    }
    let shapes: Vec<Shape> = match args.shape.as_str() {
        "all" => SHAPES.to_vec(),
        name => match SHAPES.iter().find(|s| s.name == name) {
            Some(shape) => vec![*shape],
            None => bail!("unknown --shape {name}; use stage2, stage4 or all"),
        },
    };
    print_header();
    for shape in shapes {
        let flops =
            FLOPS_PER_ELEMENT * (shape.batch * shape.dim * shape.seqlen * shape.dstate) as f64;
        let kernel = Pair::measure(&args, "kernel", &shape)?;
        kernel.print(&shape, "kernel", flops);
        if args.skip_reference {
            continue;
        }
        let reference = Pair::measure(&args, "reference", &shape)?;
        reference.print(&shape, "reference", flops);
        let ratio = |a: f64, b: f64| a / b.max(1e-9);
        println!(
            "{:<7} reference/kernel: wall fwd {:.1}x, fwd+bwd {:.1}x; CPU fwd {:.1}x, \
             fwd+bwd {:.1}x; extra memory fwd {:.1}x, fwd+bwd {:.1}x",
            shape.name,
            ratio(reference.forward.median_ms, kernel.forward.median_ms),
            ratio(reference.train.median_ms, kernel.train.median_ms),
            ratio(reference.forward.cpu_ms, kernel.forward.cpu_ms),
            ratio(reference.train.cpu_ms, kernel.train.cpu_ms),
            ratio(reference.forward.extra_mib(), kernel.forward.extra_mib()),
            ratio(reference.train.extra_mib(), kernel.train.extra_mib())
        );
    }
    Ok(())
}

fn print_header() {
    let info = crate::info::collect();
    println!(
        "selective scan, fp32, with D, delta_bias and softplus, without z (as SS2D calls it); \
         libtorch {}, {} threads, kernel ISA {}",
        info.libtorch_version,
        tch::get_num_threads(),
        crate::scan::cpu_isa()
    );
    println!(
        "times are medians per call; GFLOP/s counts {FLOPS_PER_ELEMENT}·B·L·D·N per forward \
         over wall time and over CPU time of all threads; extra MiB is peak resident memory \
         minus resident memory once the inputs exist, one process per measurement"
    );
    println!(
        "{:<7} {:>2} {:>5} {:>5} {:>3} {:<9} {:>9} {:>9} {:>10} {:>10} {:>7} {:>7} {:>8} {:>8}",
        "shape",
        "B",
        "D",
        "L",
        "N",
        "impl",
        "fwd ms",
        "fwd CPU",
        "f+b ms",
        "f+b CPU",
        "GF/s",
        "GF/cpu",
        "fwd MiB",
        "f+b MiB"
    );
}

/// Forward-only and forward+backward measurements of one implementation.
struct Pair {
    forward: Measurement,
    train: Measurement,
}

impl Pair {
    fn measure(args: &ScanBenchArgs, implementation: &str, shape: &Shape) -> Result<Pair> {
        Ok(Pair {
            forward: spawn_child(args, implementation, "forward", shape)?,
            train: spawn_child(args, implementation, "train", shape)?,
        })
    }

    fn print(&self, shape: &Shape, implementation: &str, flops: f64) {
        println!(
            "{:<7} {:>2} {:>5} {:>5} {:>3} {:<9} {:>9.1} {:>9.1} {:>10.1} {:>10.1} {:>7.2} {:>7.2} \
             {:>8.1} {:>8.1}",
            shape.name,
            shape.batch,
            shape.dim,
            shape.seqlen,
            shape.dstate,
            implementation,
            self.forward.median_ms,
            self.forward.cpu_ms,
            self.train.median_ms,
            self.train.cpu_ms,
            flops / self.forward.median_ms / 1e6,
            flops / self.forward.cpu_ms / 1e6,
            self.forward.extra_mib(),
            self.train.extra_mib()
        );
    }
}

/// Runs one measurement in a child process of this binary and parses its JSON line.
fn spawn_child(
    args: &ScanBenchArgs,
    implementation: &str,
    mode: &str,
    shape: &Shape,
) -> Result<Measurement> {
    let exe = std::env::current_exe().context("cannot locate the running binary")?;
    let mut command = Command::new(exe);
    command.args([
        "bench",
        "scan",
        "--child",
        &format!("{implementation}:{mode}:{}", shape.name),
    ]);
    command.args(["--iters", &args.iters.to_string()]);
    command.args(["--reference-iters", &args.reference_iters.to_string()]);
    command.args(["--threads", &tch::get_num_threads().to_string()]);
    if let Some(isa) = &args.isa {
        command.args(["--isa", isa]);
    }
    let output = command
        .output()
        .context("failed to start the benchmark child process")?;
    if !output.status.success() {
        bail!(
            "benchmark child {implementation}:{mode}:{} failed: {}",
            shape.name,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).with_context(|| format!("unexpected child output: {stdout}"))
}

fn run_child(args: &ScanBenchArgs, spec: &str) -> Result<()> {
    let parts: Vec<&str> = spec.split(':').collect();
    let [implementation, mode, shape_name] = parts[..] else {
        bail!("invalid --child {spec}; expected IMPL:MODE:SHAPE");
    };
    let shape = SHAPES
        .iter()
        .find(|s| s.name == shape_name)
        .with_context(|| format!("unknown shape {shape_name}"))?;
    let scan = match implementation {
        "kernel" => selective_scan,
        "reference" => selective_scan_ref,
        other => bail!("unknown implementation {other}"),
    };
    let train = match mode {
        "forward" => false,
        "train" => true,
        other => bail!("unknown mode {other}"),
    };
    let (warmup, iters) = match implementation {
        "kernel" => (1, args.iters.max(1)),
        _ => (0, args.reference_iters.max(1)),
    };

    let inputs = BenchInputs::new(shape, train);
    let baseline_mib = resident_mib("VmRSS")?;
    let mut times = Vec::with_capacity(iters);
    let mut cpu_times = Vec::with_capacity(iters);
    for i in 0..warmup + iters {
        let start = Instant::now();
        let cpu_start = process_cpu_ms();
        inputs.run(scan, train)?;
        if i >= warmup {
            times.push(start.elapsed().as_secs_f64() * 1e3);
            cpu_times.push(process_cpu_ms() - cpu_start);
        }
    }
    let measurement = Measurement {
        median_ms: median(&mut times),
        cpu_ms: median(&mut cpu_times),
        baseline_mib,
        peak_mib: resident_mib("VmHWM")?,
    };
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", serde_json::to_string(&measurement)?)?;
    Ok(())
}

/// Inputs of the SS2D call, drawn as in mamba's selective-scan tests.
struct BenchInputs {
    u: Tensor,
    delta: Tensor,
    a: Tensor,
    b: Tensor,
    c: Tensor,
    d: Tensor,
    delta_bias: Tensor,
    dout: Tensor,
}

impl BenchInputs {
    fn new(shape: &Shape, train: bool) -> BenchInputs {
        tch::manual_seed(0);
        let opts = (Kind::Float, tch::Device::Cpu);
        let bdl = [shape.batch, shape.dim, shape.seqlen];
        let bgnl = [shape.batch, shape.groups, shape.dstate, shape.seqlen];
        let leaf = |t: Tensor| t.set_requires_grad(train);
        BenchInputs {
            u: leaf(Tensor::randn(bdl, opts)),
            delta: leaf(Tensor::rand(bdl, opts) * 0.5),
            a: leaf(Tensor::rand([shape.dim, shape.dstate], opts) * -0.5),
            b: leaf(Tensor::randn(bgnl, opts)),
            c: leaf(Tensor::randn(bgnl, opts)),
            d: leaf(Tensor::randn([shape.dim], opts)),
            delta_bias: leaf(Tensor::rand([shape.dim], opts) * 0.5),
            dout: Tensor::randn(bdl, opts),
        }
    }

    fn run(&self, scan: crate::scan::ScanFn, train: bool) -> Result<()> {
        let options = ScanOptions {
            d: Some(&self.d),
            z: None,
            delta_bias: Some(&self.delta_bias),
            delta_softplus: true,
            return_last_state: false,
        };
        if !train {
            let out =
                tch::no_grad(|| scan(&self.u, &self.delta, &self.a, &self.b, &self.c, &options))?;
            drop(out);
            return Ok(());
        }
        let out = scan(&self.u, &self.delta, &self.a, &self.b, &self.c, &options)?;
        let loss = (&out.y * &self.dout).sum(Kind::Float);
        let leaves = [
            &self.u,
            &self.delta,
            &self.a,
            &self.b,
            &self.c,
            &self.d,
            &self.delta_bias,
        ];
        let grads = Tensor::run_backward(&[loss], &leaves, false, false);
        drop(grads);
        Ok(())
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// CPU time (user + system) of this process so far, milliseconds.
fn process_cpu_ms() -> f64 {
    // SAFETY: getrusage fills the zeroed struct; RUSAGE_SELF always exists.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let ms = |t: libc::timeval| t.tv_sec as f64 * 1e3 + t.tv_usec as f64 / 1e3;
    ms(usage.ru_utime) + ms(usage.ru_stime)
}

/// Reads a memory line (VmRSS, VmHWM) of /proc/self/status in MiB.
fn resident_mib(field: &str) -> Result<f64> {
    let status =
        std::fs::read_to_string("/proc/self/status").context("cannot read /proc/self/status")?;
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .with_context(|| format!("{field} missing from /proc/self/status"))?;
    let kib: f64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("cannot parse {line}"))?;
    Ok(kib / 1024.0)
}
