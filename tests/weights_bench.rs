//! Load-time benchmark for a full-size checkpoint, run by hand (see BENCHMARKS.md):
//!
//! ```text
//! python tests/fixtures/weights/make_bench_checkpoint.py /tmp/vmamba_tiny_full.pth
//! SWIN_UMAMBA_BENCH_PTH=/tmp/vmamba_tiny_full.pth \
//!     cargo test --release --test weights_bench -- --ignored --nocapture
//! ```

use std::path::PathBuf;
use std::time::{Duration, Instant};

use swin_umamba::weights::read_pth;

#[test]
#[ignore = "needs a generated full-size checkpoint; set SWIN_UMAMBA_BENCH_PTH"]
fn load_full_size_vmamba() {
    let path = PathBuf::from(
        std::env::var("SWIN_UMAMBA_BENCH_PTH").expect("set SWIN_UMAMBA_BENCH_PTH to a .pth file"),
    );
    tch::set_num_threads(1);
    let mut times: Vec<Duration> = Vec::new();
    let mut elements = 0;
    for _ in 0..7 {
        let start = Instant::now();
        let file = read_pth(&path).unwrap();
        let state = file.state_dict(None).unwrap();
        times.push(start.elapsed());
        elements = state.values().map(|t| t.numel()).sum::<usize>();
    }
    times.sort();
    println!(
        "read_pth + state_dict on {}: {elements} elements, median {:.1} ms (min {:.1}, 7 runs)",
        path.display(),
        times[3].as_secs_f64() * 1e3,
        times[0].as_secs_f64() * 1e3
    );
}
