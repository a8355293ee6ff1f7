//! `swin-umamba bench loader` end to end on small Kvasir-SEG cases.

mod loader_support;

use std::process::Command;

#[test]
fn bench_loader_prints_rates() {
    let dir = tempfile::tempdir().unwrap();
    loader_support::write_dataset(dir.path(), 3);
    let output = Command::new(env!("CARGO_BIN_EXE_swin-umamba"))
        .args([
            "bench", "loader", "-d", "900", "-w", "2", "-n", "6", "--warmup", "1",
        ])
        .arg("--preprocessed")
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success());
    assert!(stdout.contains("batches/s"));
    assert!(stdout.contains("spatial (rotate/scale/crop)"));
    assert!(stdout.contains("process CPU time"));
}

#[test]
fn bench_loader_unknown_dataset_fails() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_swin-umamba"))
        .args(["bench", "loader", "-d", "123", "--preprocessed"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stderr}");
    assert!(!output.status.success());
    assert!(
        stderr.contains("Dataset123_"),
        "the message names the folder it looked for"
    );
}
