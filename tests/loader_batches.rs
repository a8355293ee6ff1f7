//! The batch loader on small preprocessed cases made from real Kvasir-SEG images.

mod loader_support;

use loader_support::{write_dataset, BATCH, PATCH};
use swin_umamba::train::loader::{
    BatchSampler, CaseFolder, LoaderConfig, LoaderError, LoaderPlanConfig, PrefetchLoader,
};
use tch::Kind;

fn sampler(dataset: &std::path::Path, training: bool, seed: u64) -> BatchSampler {
    let plan = LoaderPlanConfig::from_plans_file(&dataset.join("nnUNetPlans.json"), "2d").unwrap();
    let config = if training {
        LoaderConfig::nnunet_training(&plan, true, seed)
    } else {
        LoaderConfig::nnunet_validation(&plan, true, seed)
    };
    let cases = CaseFolder::open(&dataset.join(&plan.data_identifier), None).unwrap();
    BatchSampler::new(cases, config).unwrap()
}

#[test]
fn training_batch_shapes_and_labels() {
    let dir = tempfile::tempdir().unwrap();
    let dataset = write_dataset(dir.path(), 4);
    let s = sampler(&dataset, true, 1);
    let mut loader = PrefetchLoader::new(s, 0, 8, 2, 2, false).unwrap();
    let expected_scales = [[64, 80], [32, 40], [16, 20]];
    for batch in loader.by_ref() {
        let batch = batch.unwrap();
        assert_eq!(
            batch.data.size(),
            vec![BATCH as i64, 3, PATCH[0] as i64, PATCH[1] as i64]
        );
        assert_eq!(batch.data.kind(), Kind::Float);
        assert_eq!(
            batch.target.len(),
            3,
            "one target per deep-supervision output"
        );
        for (t, [h, w]) in batch.target.iter().zip(expected_scales) {
            assert_eq!(t.size(), vec![BATCH as i64, 1, h, w]);
            assert_eq!(t.kind(), Kind::Int16);
            let min = t.min().int64_value(&[]);
            let max = t.max().int64_value(&[]);
            assert!(
                min >= 0 && max <= 2,
                "labels {min}..{max} outside {{0, 1, 2}}"
            );
        }
        assert!(batch.data.isfinite().all().int64_value(&[]) == 1);
        assert_eq!(batch.keys.len(), BATCH);
    }
}

fn batches(s: &BatchSampler, workers: usize, count: u64) -> Vec<(tch::Tensor, Vec<tch::Tensor>)> {
    PrefetchLoader::new(s.clone(), 3, count, workers, 1, false)
        .unwrap()
        .map(|b| {
            let b = b.unwrap();
            (b.data, b.target)
        })
        .collect()
}

#[test]
fn same_seed_same_batches_any_workers() {
    let dir = tempfile::tempdir().unwrap();
    let dataset = write_dataset(dir.path(), 4);
    let s = sampler(&dataset, true, 42);
    let one = batches(&s, 1, 6);
    let three = batches(&s, 3, 6);
    for (k, (a, b)) in one.iter().zip(&three).enumerate() {
        let diff = (&a.0 - &b.0).abs().max().double_value(&[]);
        println!("batch {k}: max data difference {diff}");
        assert_eq!(diff, 0.0, "batch {k} data differs between 1 and 3 workers");
        for (ta, tb) in a.1.iter().zip(&b.1) {
            assert!(
                ta.equal(tb),
                "batch {k} targets differ between 1 and 3 workers"
            );
        }
    }
    let other = batches(&sampler(&dataset, true, 43), 2, 6);
    let same = one
        .iter()
        .zip(&other)
        .filter(|(a, b)| a.0.equal(&b.0))
        .count();
    assert_eq!(same, 0, "another seed must give other batches");
}

#[test]
fn oversampling_follows_nnunet_rule() {
    let dir = tempfile::tempdir().unwrap();
    let dataset = write_dataset(dir.path(), 4);
    let plan = LoaderPlanConfig::from_plans_file(&dataset.join("nnUNetPlans.json"), "2d").unwrap();
    // The validation loader does not augment, so each target shows exactly the sampled
    // window. A 16 × 16 patch makes random windows miss the foreground often.
    let mut config = LoaderConfig::nnunet_validation(&plan, false, 7);
    config.patch_size = [16, 16];
    config.window = [16, 16];
    let cases = CaseFolder::open(&dataset.join("nnUNetPlans_2d"), None).unwrap();
    let s = BatchSampler::new(cases, config).unwrap();

    let (mut random_with_foreground, mut random_total) = (0, 0);
    let (mut forced_centred, mut forced_total) = (0, 0);
    for index in 0..60 {
        let batch = s.sample_batch(0, index);
        // nnU-Net forces samples j >= round(6 · (1 - 0.33)) = round(4.02) = 4.
        assert_eq!(
            batch.forced_foreground,
            vec![false, false, false, false, true, true]
        );
        let (labels, _) = &batch.targets[0];
        for (j, sample) in labels.chunks(16 * 16).enumerate() {
            let has_foreground = sample.iter().any(|&v| v > 0);
            if batch.forced_foreground[j] {
                assert!(
                    has_foreground,
                    "forced sample {j} of batch {index} has no foreground"
                );
                forced_total += 1;
                // The window's lower corner is location - 8, so the location sits at (8, 8)
                // unless the window was clamped at the image's upper or left edge.
                forced_centred += (sample[8 * 16 + 8] > 0) as usize;
            } else {
                random_total += 1;
                random_with_foreground += has_foreground as usize;
            }
        }
    }
    println!("random windows with foreground: {random_with_foreground} of {random_total}");
    println!("forced windows with foreground at the centre: {forced_centred} of {forced_total}");
    assert!(
        random_with_foreground < random_total * 3 / 4,
        "random windows should often miss the foreground, or this test shows nothing"
    );
    assert!(forced_centred * 10 >= forced_total * 9);
}

#[test]
fn two_sample_batch_forces_second() {
    let dir = tempfile::tempdir().unwrap();
    let dataset = write_dataset(dir.path(), 2);
    let plan = LoaderPlanConfig::from_plans_file(&dataset.join("nnUNetPlans.json"), "2d").unwrap();
    let mut config = LoaderConfig::nnunet_validation(&plan, false, 5);
    // nnU-Net's 2D plans often give batch size 2: round(2 · 0.67) = 1, so sample 1 is forced.
    config.batch_size = 2;
    let cases = CaseFolder::open(&dataset.join("nnUNetPlans_2d"), None).unwrap();
    let s = BatchSampler::new(cases, config).unwrap();
    let batch = s.sample_batch(0, 0);
    assert_eq!(batch.forced_foreground, vec![false, true]);
    assert_eq!(
        batch.targets.len(),
        1,
        "no deep supervision: one full-resolution target"
    );
}

#[test]
fn training_window_is_enlarged() {
    let dir = tempfile::tempdir().unwrap();
    let dataset = write_dataset(dir.path(), 1);
    let s = sampler(&dataset, true, 0);
    // 64 × 80 is not elongated beyond 1.5, so nnU-Net rotates by up to 180 degrees. The
    // window is then the patch rotated by 90 degrees, maximised per axis, divided by 0.85.
    assert_eq!(s.config().window, [94, 94]);
}

#[test]
fn bad_case_errors_name_file() {
    let dir = tempfile::tempdir().unwrap();
    let dataset = write_dataset(dir.path(), 2);
    let cases = dataset.join("nnUNetPlans_2d");
    std::fs::write(cases.join("kvasir_001_seg.npy"), b"\x93NUMPY garbage").unwrap();
    let err = CaseFolder::open(&cases, None)
        .err()
        .expect("a broken label file must fail");
    let text = err.to_string();
    println!("{text}");
    assert!(matches!(err, LoaderError::NpyHeader { .. }));
    assert!(text.contains("kvasir_001_seg.npy"));

    let missing = CaseFolder::open(&cases, Some(&["kvasir_777".to_string()]))
        .err()
        .unwrap();
    assert!(missing.to_string().contains("kvasir_777"));
}

#[test]
fn direct_crop_read_equals_window_crop() {
    use swin_umamba::train::augment::spatial::center_crop;
    use swin_umamba::train::augment::Sample;
    let dir = tempfile::tempdir().unwrap();
    let dataset = write_dataset(dir.path(), 1);
    let cases = CaseFolder::open(&dataset.join("nnUNetPlans_2d"), None).unwrap();
    let case = &cases.cases[0];
    let (window, patch) = ([94, 94], PATCH);
    // Corners inside, across the upper-left edge and across the lower-right edge.
    for (y0, x0) in [(5i64, 9i64), (-20, -7), (30, 60)] {
        let mut image = vec![0.0; 3 * window[0] * window[1]];
        let mut seg = vec![0; window[0] * window[1]];
        case.read_window([0, y0, x0], window, &mut image, &mut seg);
        let cropped = center_crop(&Sample::new(image, seg, 3, window[0], window[1]), patch);

        let (dy, dx) = (
            (window[0] / 2 - patch[0] / 2) as i64,
            (window[1] / 2 - patch[1] / 2) as i64,
        );
        let mut image = vec![0.0; 3 * patch[0] * patch[1]];
        let mut seg = vec![0; patch[0] * patch[1]];
        case.read_window([0, y0 + dy, x0 + dx], patch, &mut image, &mut seg);
        assert_eq!(cropped.image, image, "corner ({y0}, {x0})");
        assert_eq!(cropped.seg, seg, "corner ({y0}, {x0})");
    }
}

#[test]
fn volume_slices_follow_sampling_rule() {
    use swin_umamba::train::loader::npy::{write_f32, write_i8};
    // A three-slice volume whose image value is the slice index and whose only foreground
    // (a Kvasir polyp mask) lies in slice 2, as in a preprocessed MRI case.
    let dir = tempfile::tempdir().unwrap();
    let dataset = write_dataset(dir.path(), 1);
    let cases = dataset.join("nnUNetPlans_2d");
    let (_, mask) = loader_support::kvasir_sample(0);
    let (h, w) = (loader_support::HEIGHT, loader_support::WIDTH);
    let image: Vec<f32> = (0..3)
        .flat_map(|z| std::iter::repeat_n(z as f32, h * w))
        .collect();
    let mut seg = vec![0i8; 3 * h * w];
    for (i, &v) in mask.iter().enumerate() {
        seg[2 * h * w + i] = (v == 1) as i8;
    }
    write_f32(&cases.join("volume.npy"), &[1, 3, h, w], &image).unwrap();
    write_i8(&cases.join("volume_seg.npy"), &[1, 3, h, w], &seg).unwrap();
    let locations: Vec<[usize; 4]> = (0..h * w)
        .filter(|&i| mask[i] == 1)
        .step_by(5)
        .map(|i| [0, 2, i / w, i % w])
        .collect();
    let props = serde_json::json!({"class_locations": {"1": locations}});
    std::fs::write(cases.join("volume.json"), props.to_string()).unwrap();

    let plan = LoaderPlanConfig::from_plans_file(&dataset.join("nnUNetPlans.json"), "2d").unwrap();
    let config = LoaderConfig::nnunet_validation(&plan, false, 4);
    let folder = CaseFolder::open(&cases, Some(&["volume".to_string()])).unwrap();
    let s = BatchSampler::new(folder, config).unwrap();
    let mut random_slices = [0usize; 3];
    for index in 0..50 {
        let batch = s.sample_batch(0, index);
        let (labels, _) = &batch.targets[0];
        let plane = PATCH[0] * PATCH[1];
        for j in 0..BATCH {
            // Windows lie inside the 96 × 120 slice, so every pixel contains the slice index.
            let slice = batch.images[j][0] as usize;
            if batch.forced_foreground[j] {
                assert_eq!(
                    slice, 2,
                    "forced sample {j} of batch {index} is not in the foreground slice"
                );
                assert!(labels[j * plane..(j + 1) * plane].contains(&1));
            } else {
                random_slices[slice] += 1;
            }
        }
    }
    println!("random samples per slice: {random_slices:?}");
    for count in random_slices {
        // 200 random samples over three slices: about 67 each.
        assert!(
            count > 40,
            "slices are not drawn uniformly: {random_slices:?}"
        );
    }
}
