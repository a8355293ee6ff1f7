//! Truncated and corrupted variants of real checkpoint files must give an error or a valid
//! value, never a panic or a hang.
//!
//! Cases come from a fixed ChaCha8 seed. Whole-file corruptions mostly hit the zip structure or
//! the CRC of `data.pkl`, so a third kind rewrites the archive around a corrupted `data.pkl`
//! (with a fresh CRC) to reach the pickle machine itself. About 4,500 cases in total; each must
//! finish within [`CASE_LIMIT`].

use std::io::{Cursor, Read, Write};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use swin_umamba::weights::{read_pth_bytes, PthFile, Value};

/// Time bound for one case; the slowest real case takes a few milliseconds in release mode.
const CASE_LIMIT: Duration = Duration::from_secs(2);

fn shared_checkpoint(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/fixtures/checkpoints")
        .join(name)
}

fn local_fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/weights")
        .join(name)
}

/// Builds every tensor the value refers to, as a caller would.
fn touch_tensors(file: &PthFile, value: &Value, out: &mut usize) {
    match value {
        Value::Tensor(t) => {
            if let Ok(tensor) = file.tensor(t) {
                *out += tensor.numel();
            }
        }
        Value::List(items) | Value::Tuple(items) | Value::Set(items) => {
            items.iter().for_each(|v| touch_tensors(file, v, out))
        }
        Value::Dict(items) => items.iter().for_each(|(_, v)| touch_tensors(file, v, out)),
        Value::Object { args, .. } => args.iter().for_each(|v| touch_tensors(file, v, out)),
        _ => {}
    }
}

#[derive(Default)]
struct Tally {
    ok: usize,
    err: usize,
    slowest: Duration,
}

fn run_case(label: &str, bytes: &[u8], tally: &mut Tally) {
    let start = Instant::now();
    let result = catch_unwind(AssertUnwindSafe(|| {
        let file = read_pth_bytes(Path::new(label), bytes)?;
        let mut elements = 0;
        touch_tensors(&file, &file.root, &mut elements);
        Ok::<usize, swin_umamba::weights::WeightsError>(elements)
    }));
    let elapsed = start.elapsed();
    tally.slowest = tally.slowest.max(elapsed);
    match result {
        Ok(Ok(_)) => tally.ok += 1,
        Ok(Err(_)) => tally.err += 1,
        Err(_) => panic!("{label}: the reader panicked"),
    }
    assert!(elapsed < CASE_LIMIT, "{label}: took {elapsed:?}");
}

fn corrupt(rng: &mut ChaCha8Rng, bytes: &mut Vec<u8>) {
    match rng.gen_range(0..4) {
        0 => {
            for _ in 0..rng.gen_range(1..=4) {
                let i = rng.gen_range(0..bytes.len());
                bytes[i] = rng.gen();
            }
        }
        1 => {
            let cut = rng.gen_range(0..bytes.len());
            bytes.truncate(cut);
        }
        2 => {
            let at = rng.gen_range(0..=bytes.len());
            let junk: Vec<u8> = (0..rng.gen_range(1..16)).map(|_| rng.gen()).collect();
            bytes.splice(at..at, junk);
        }
        _ => {
            let i = rng.gen_range(0..bytes.len());
            let j = rng.gen_range(i..bytes.len().min(i + 64));
            let slice = bytes[i..=j].to_vec();
            let at = rng.gen_range(0..=bytes.len());
            bytes.splice(at..at, slice);
        }
    }
}

/// Rewrites a torch.save archive with `data.pkl` replaced, keeping every other entry stored.
fn with_pickle(original: &[u8], pickle: &[u8]) -> Vec<u8> {
    let mut archive = zip::ZipArchive::new(Cursor::new(original)).unwrap();
    let mut out = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).unwrap();
        let name = entry.name().to_string();
        out.start_file(name.as_str(), options).unwrap();
        if name.ends_with("data.pkl") {
            out.write_all(pickle).unwrap();
        } else {
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            out.write_all(&data).unwrap();
        }
    }
    out.finish().unwrap().into_inner()
}

fn data_pkl(original: &[u8]) -> Vec<u8> {
    let mut archive = zip::ZipArchive::new(Cursor::new(original)).unwrap();
    let name = archive
        .file_names()
        .find(|n| n.ends_with("data.pkl"))
        .unwrap()
        .to_string();
    let mut data = Vec::new();
    archive
        .by_name(&name)
        .unwrap()
        .read_to_end(&mut data)
        .unwrap();
    data
}

#[test]
fn corrupted_files_never_panic() {
    let files = [
        shared_checkpoint("vmamba_v0_tiny_reduced_ckpt.pth"),
        shared_checkpoint("checkpoint_final.pth"),
        shared_checkpoint("malicious_os_system.pth"),
        local_fixture("all_dtypes.pth"),
        local_fixture("all_dtypes_proto4.pth"),
        local_fixture("all_dtypes_legacy.pth"),
        local_fixture("nnunet_style_checkpoint.pth"),
        local_fixture("numpy1_scalars.pkl"),
    ];
    let mut rng = ChaCha8Rng::seed_from_u64(20240205);
    let mut tally = Tally::default();
    let started = Instant::now();

    for path in &files {
        let original = std::fs::read(path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        for case in 0..300 {
            let mut bytes = original.clone();
            corrupt(&mut rng, &mut bytes);
            run_case(&format!("{name}#file{case}"), &bytes, &mut tally);
        }
        for case in 0..100 {
            let cut = rng.gen_range(0..original.len());
            run_case(&format!("{name}#cut{case}"), &original[..cut], &mut tally);
        }
    }

    let zips = [
        local_fixture("all_dtypes.pth"),
        local_fixture("all_dtypes_proto4.pth"),
        local_fixture("nnunet_style_checkpoint.pth"),
        shared_checkpoint("checkpoint_final.pth"),
    ];
    for path in &zips {
        let original = std::fs::read(path).unwrap();
        let pickle = data_pkl(&original);
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let cases = if name == "checkpoint_final.pth" {
            100
        } else {
            400
        };
        for case in 0..cases {
            let mut corrupted = pickle.clone();
            corrupt(&mut rng, &mut corrupted);
            let bytes = with_pickle(&original, &corrupted);
            run_case(&format!("{name}#pickle{case}"), &bytes, &mut tally);
        }
    }

    println!(
        "{} cases: {} read, {} rejected with an error, slowest {:?}, total {:?}",
        tally.ok + tally.err,
        tally.ok,
        tally.err,
        tally.slowest,
        started.elapsed()
    );
    assert!(tally.err > tally.ok, "most corruptions must be detected");
}

#[test]
fn memo_bomb_is_bounded() {
    // Tuple i+1 contains tuple i twice, through the memo, for 40 levels: expanding the last one
    // as a tree would need 2^40 nodes, so the node budget must stop it quickly with an error.
    let mut pickle = b"\x80\x02]q\x00".to_vec(); // PROTO 2, EMPTY_LIST, BINPUT 0
    for i in 0u8..40 {
        pickle.extend_from_slice(&[b'h', i, b'h', i, 0x86, b'q', i + 1]); // 2x BINGET, TUPLE2, BINPUT
    }
    pickle.push(b'.');
    let start = Instant::now();
    let err = read_pth_bytes(Path::new("bomb.pkl"), &pickle).unwrap_err();
    println!("{err} ({:?})", start.elapsed());
    assert!(
        err.to_string().contains("nodes"),
        "stopped by the node budget"
    );
    assert!(start.elapsed() < CASE_LIMIT);
}

#[test]
fn deep_nesting_is_bounded() {
    // 100,000 nested EMPTY_LIST/APPEND levels must fail on the depth limit, not overflow the
    // stack.
    let depth = 100_000;
    let mut pickle = b"\x80\x02".to_vec();
    pickle.extend(std::iter::repeat_n(b']', depth));
    pickle.extend(std::iter::repeat_n(b'a', depth - 1));
    pickle.push(b'.');
    let err = read_pth_bytes(Path::new("deep.pkl"), &pickle).unwrap_err();
    println!("{err}");
    assert!(err.to_string().contains("nested deeper"));
}
