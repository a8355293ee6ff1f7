//! A results folder written by `train-fold` read back by `predict`.
//!
//! Writes a synthetic organ dataset (48×48 PNG slices, labels 0..3), plans it, trains the
//! tiny synthetic U-Net for one short epoch with `train-fold --synthetic` (which then
//! predicts and scores the fold's validation cases), and predicts the dataset's images
//! from the results folder. Sized for CPU: about 10 s in release mode.

use std::path::{Path, PathBuf};
use std::process::Command;

use swin_umamba::ablate::synthetic::write_organ_dataset;
use swin_umamba::dataset::{read_image, DatasetJson};
use swin_umamba::infer::sliding::padding_for;
use swin_umamba::plan::Plans;
use swin_umamba::preprocess::{preprocess_case, revert_to_raw_geometry};
use swin_umamba::train::checkpoint;
use swin_umamba::train::network::SegmentationNetwork;
use swin_umamba::train::synthetic::TinyUNet;
use tch::{Device, Kind, Tensor};

const DATASET: &str = "Dataset902_SynthOrgans";

struct Folders {
    _root: tempfile::TempDir,
    raw: PathBuf,
    preprocessed: PathBuf,
    results: PathBuf,
}

fn binary(folders: &Folders) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_swin-umamba"));
    command
        .env("nnUNet_raw", &folders.raw)
        .env("nnUNet_preprocessed", &folders.preprocessed)
        .env("nnUNet_results", &folders.results);
    command
}

fn run_ok(command: &mut Command) -> String {
    let output = command.output().expect("the swin-umamba binary runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "command failed: {text}");
    text
}

/// Writes, plans and trains the dataset; returns the folders.
fn trained_fold() -> Folders {
    let root = tempfile::tempdir().unwrap();
    let folders = Folders {
        raw: root.path().join("raw"),
        preprocessed: root.path().join("preprocessed"),
        results: root.path().join("results"),
        _root: root,
    };
    write_organ_dataset(&folders.raw.join(DATASET), 6, 48, 7).unwrap();
    run_ok(binary(&folders).args(["plan", "-d", "902", "--fingerprint-samples", "10000"]));
    let log = run_ok(binary(&folders).args([
        "train-fold",
        "-d",
        "902",
        "-f",
        "0",
        "--synthetic",
        "--synthetic-classes",
        "4",
        "--synthetic-patch",
        "32",
        "--epochs",
        "1",
        "--iterations",
        "3",
        "--val-iterations",
        "1",
        "--threads",
        "1",
    ]));
    println!("{log}");
    folders
}

fn trainer_dir(folders: &Folders) -> PathBuf {
    folders.results.join("Dataset902/nnunet__nnUNetPlans__2d")
}

/// The probabilities of one image computed directly: preprocessing, one padded tile
/// through the network, softmax, and back to the raw grid. Also returns the largest
/// absolute logit.
fn direct_probabilities(image_path: &Path, trainer_dir: &Path, net: &TinyUNet) -> (Vec<f32>, f64) {
    let plans = Plans::load(&trainer_dir.join("plans.json")).unwrap();
    let config = plans.configuration("2d").unwrap();
    let json = DatasetJson::load(&trainer_dir.join("dataset.json")).unwrap();
    let image = read_image(image_path).unwrap();
    let case = preprocess_case(&image, None, &plans, &config, &json).unwrap();
    let [z, y, x] = case.shape;
    let patch = [config.patch_size[0], config.patch_size[1]];
    assert!(
        patch[0] >= y as i64 && patch[1] >= x as i64,
        "the plan's patch {patch:?} must cover the {y}×{x} image for one tile"
    );
    let data = Tensor::from_slice(&case.data).view([1, z as i64, y as i64, x as i64]);
    let padding = padding_for([y as i64, x as i64], patch);
    let padded = data.select(1, 0).unsqueeze(0).constant_pad_nd([
        padding[1].0,
        padding[1].1,
        padding[0].0,
        padding[0].1,
    ]);
    let logits = tch::no_grad(|| net.forward_heads(&padded, false).swap_remove(0))
        .get(0)
        .narrow(1, padding[0].0, y as i64)
        .narrow(2, padding[1].0, x as i64);
    let max_logit = logits.abs().max().double_value(&[]);
    let probabilities = logits.softmax(0, Kind::Float);
    let classes = probabilities.size()[0];
    let mut all = Vec::new();
    for class in 0..classes {
        let values: Vec<f32> =
            Vec::try_from(probabilities.get(class).contiguous().view([-1])).expect("float tensor");
        let fill = if class == 0 { 1.0 } else { 0.0 };
        let (reverted, _) =
            revert_to_raw_geometry(&values, 1, case.shape, &case.properties, &plans, fill);
        all.extend(reverted);
    }
    (all, max_logit)
}

fn read_probabilities(path: &Path, scratch: &Path) -> Vec<f32> {
    let mut archive = zip::ZipArchive::new(std::fs::File::open(path).unwrap()).unwrap();
    let mut entry = archive.by_name("probabilities.npy").unwrap();
    let npy = scratch.join("probabilities.npy");
    std::io::copy(&mut entry, &mut std::fs::File::create(&npy).unwrap()).unwrap();
    swin_umamba::preprocess::npy::read_npy(&npy)
        .unwrap()
        .to_f32()
}

#[test]
fn train_fold_results_predict_back() {
    let folders = trained_fold();
    let trainer_dir = trainer_dir(&folders);
    let validation = trainer_dir.join("fold_0/validation");

    // train-fold's validation: one prediction per validation case and a summary.
    let splits_path = folders.preprocessed.join(DATASET).join("splits_final.json");
    let splits: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&splits_path).unwrap()).unwrap();
    let val_ids: Vec<String> = splits[0]["val"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert!(!val_ids.is_empty(), "fold 0 has no validation cases");
    for id in &val_ids {
        assert!(
            validation.join(format!("{id}.png")).is_file(),
            "validation prediction of {id} is missing"
        );
    }
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(validation.join("summary.json")).unwrap())
            .unwrap();
    let scored = summary["metric_per_case"].as_array().unwrap().len();
    assert_eq!(
        scored,
        val_ids.len(),
        "summary.json scores every validation case"
    );
    assert!(
        summary["foreground_mean"]["Dice"].is_number(),
        "summary.json has no foreground mean Dice"
    );

    // predict from the results folder with the settings validation used.
    let output = folders.results.join("predicted");
    let images = folders.raw.join(DATASET).join("imagesTr");
    run_ok(
        binary(&folders)
            .arg("predict")
            .arg("-i")
            .arg(&images)
            .arg("-o")
            .arg(&output)
            .args([
                "-d",
                "902",
                "-f",
                "0",
                "--trainer",
                "nnunet",
                "--threads",
                "1",
            ]),
    );
    for id in &val_ids {
        let from_validation = std::fs::read(validation.join(format!("{id}.png"))).unwrap();
        let from_predict = std::fs::read(output.join(format!("{id}.png"))).unwrap();
        assert!(
            from_validation == from_predict,
            "{id}: predict and train-fold's validation wrote different files"
        );
    }

    // Without mirroring, one tile covers each image: predict's probabilities equal the
    // network's softmax up to the float16 sums of the sliding window.
    let plain = folders.results.join("plain");
    run_ok(
        binary(&folders)
            .arg("predict")
            .arg("-i")
            .arg(&images)
            .arg("-o")
            .arg(&plain)
            .args([
                "-d",
                "902",
                "-f",
                "0",
                "--trainer",
                "nnunet",
                "--disable-tta",
                "--save-probabilities",
                "--threads",
                "1",
            ]),
    );
    let sidecar = trainer_dir.join("fold_0/checkpoint_final.json");
    let loaded = checkpoint::load(&sidecar).unwrap();
    let mut net = TinyUNet::new(1, loaded.state.plan.num_classes, Device::Cpu);
    checkpoint::load_weights(net.var_store(), &loaded.weights, true, &sidecar).unwrap();
    net.set_deep_supervision(false);
    let id = &val_ids[0];
    let (expected, max_logit) =
        direct_probabilities(&images.join(format!("{id}_0000.png")), &trainer_dir, &net);
    let ours = read_probabilities(&plain.join(format!("{id}.npz")), &folders.results);
    assert_eq!(ours.len(), expected.len(), "probability count");
    // Compare the central half of each axis. Towards the tile's corners the Gaussian
    // weights fall below float16's normal range (6e-5), where the weighted sums lose
    // their relative precision in nnU-Net's accumulation as they do here.
    let (height, width) = (48usize, 48usize);
    let mut max_difference = 0f32;
    for (index, (a, b)) in ours.iter().zip(&expected).enumerate() {
        let (y, x) = ((index / width) % height, index % width);
        if y.abs_diff(height / 2) <= height / 4 && x.abs_diff(width / 2) <= width / 4 {
            max_difference = max_difference.max((a - b).abs());
        }
    }
    // The sliding window sums weighted logits in float16 (relative precision 2^-11) and
    // divides in float16, so each logit may move by about 2^-10 of its magnitude, and a
    // probability by at most that much.
    let tolerance = (max_logit * 2f64.powi(-10)) as f32;
    println!(
        "{id}: max probability difference to the direct forward {max_difference:e} \
         (largest logit {max_logit:.2}, tolerance {tolerance:e})"
    );
    assert!(
        max_difference <= tolerance,
        "{id}: predict differs from the network by {max_difference:e}"
    );
}
