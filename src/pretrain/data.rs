//! Classification data for encoder pretraining: the ImageNet folder layout
//! (`train/<wnid>/*.JPEG`, `val/<wnid>/*.JPEG`) or a flat folder whose class is the file-name
//! prefix before the first `_`, with a held-out split; decoding and augmentation on
//! worker threads.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use image::imageops::FilterType;
use image::RgbImage;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::{Kind, Tensor};

/// ImageNet channel means and standard deviations (RGB, on 0..1 values), as torchvision
/// and timm normalise.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// Validation resize: the shorter side goes to `image_size / CROP_PCT`, then a centre
/// crop of `image_size` (timm's default crop_pct 0.875).
pub const CROP_PCT: f64 = 0.875;

/// RandomResizedCrop's area and aspect-ratio ranges (torchvision defaults).
pub const CROP_SCALE: (f64, f64) = (0.08, 1.0);
pub const CROP_RATIO: (f64, f64) = (3.0 / 4.0, 4.0 / 3.0);

/// Errors reading a classification dataset.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot decode image {path}: {source}; remove or replace the file")]
    Decode {
        path: PathBuf,
        source: image::ImageError,
    },
    #[error("no images found in {path}: expected train/<class>/*.JPEG and val/<class>/*.JPEG, or a flat folder of <class>_<name>.<ext> files (jpg, jpeg, png, bmp, tif)")]
    Empty { path: PathBuf },
    #[error("{path} has only {classes} class(es); classification needs at least 2")]
    TooFewClasses { path: PathBuf, classes: usize },
}

/// One labelled image file.
#[derive(Debug, Clone)]
pub struct Sample {
    pub path: PathBuf,
    pub class: usize,
}

/// Training and validation samples with the class names (index = label).
#[derive(Debug, Clone)]
pub struct ClassificationData {
    pub classes: Vec<String>,
    pub train: Vec<Sample>,
    pub val: Vec<Sample>,
}

fn is_image(path: &Path) -> bool {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase());
    matches!(
        ext.as_deref(),
        Some("jpg" | "jpeg" | "png" | "bmp" | "tif" | "tiff")
    )
}

fn list_dir(path: &Path) -> Result<Vec<PathBuf>, DataError> {
    let entries = std::fs::read_dir(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    Ok(paths)
}

/// Reads `root` in the ImageNet layout when it has `train/`, else as a flat folder;
/// a flat folder keeps every `1/val_every`-th image of each class for validation
/// (at least one per class, when the class has two or more images).
pub fn load(root: &Path, val_every: usize) -> Result<ClassificationData, DataError> {
    let data = if root.join("train").is_dir() {
        load_imagenet_layout(root)?
    } else {
        load_flat(root, val_every.max(2))?
    };
    if data.train.is_empty() {
        return Err(DataError::Empty {
            path: root.to_path_buf(),
        });
    }
    if data.classes.len() < 2 {
        return Err(DataError::TooFewClasses {
            path: root.to_path_buf(),
            classes: data.classes.len(),
        });
    }
    Ok(data)
}

fn load_imagenet_layout(root: &Path) -> Result<ClassificationData, DataError> {
    let mut classes = Vec::new();
    for dir in list_dir(&root.join("train"))? {
        if dir.is_dir() {
            classes.push(dir.file_name().unwrap().to_string_lossy().into_owned());
        }
    }
    let index: BTreeMap<&str, usize> = classes
        .iter()
        .enumerate()
        .map(|(i, c)| (c.as_str(), i))
        .collect();
    let collect = |split: &str| -> Result<Vec<Sample>, DataError> {
        let mut samples = Vec::new();
        let dir = root.join(split);
        if !dir.is_dir() {
            return Ok(samples);
        }
        for class_dir in list_dir(&dir)? {
            let name = class_dir
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let Some(&class) = index.get(name.as_str()) else {
                continue;
            };
            for path in list_dir(&class_dir)? {
                if is_image(&path) {
                    samples.push(Sample { path, class });
                }
            }
        }
        Ok(samples)
    };
    let train = collect("train")?;
    let val = collect("val")?;
    Ok(ClassificationData {
        classes,
        train,
        val,
    })
}

fn load_flat(root: &Path, val_every: usize) -> Result<ClassificationData, DataError> {
    let mut by_class: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for path in list_dir(root)? {
        if !is_image(&path) {
            continue;
        }
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        let class = stem.split('_').next().unwrap_or(&stem).to_string();
        by_class.entry(class).or_default().push(path);
    }
    let classes: Vec<String> = by_class.keys().cloned().collect();
    let (mut train, mut val) = (Vec::new(), Vec::new());
    for (class, (_, paths)) in by_class.into_iter().enumerate() {
        let hold_out = paths.len() >= 2;
        for (i, path) in paths.into_iter().enumerate() {
            if hold_out && i % val_every == val_every - 1 {
                val.push(Sample { path, class });
            } else {
                train.push(Sample { path, class });
            }
        }
    }
    // A class with one image has none held out; when every class has one image there is no
    // validation split, and the ImageNet sample (one photo per class) is such a folder:
    // then validation reuses the training images without augmentation.
    if val.is_empty() {
        val = train.clone();
    }
    Ok(ClassificationData {
        classes,
        train,
        val,
    })
}

/// Decodes an image as 8-bit RGB (grayscale and RGBA converted).
pub fn read_rgb(path: &Path) -> Result<RgbImage, DataError> {
    let image = image::open(path).map_err(|source| DataError::Decode {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(image.to_rgb8())
}

/// torchvision's RandomResizedCrop: a crop of random area and aspect ratio, resized to
/// `size`² (bilinear); falls back to a centre crop after ten failed draws.
pub fn random_resized_crop(image: &RgbImage, size: u32, rng: &mut ChaCha8Rng) -> RgbImage {
    let (width, height) = (image.width() as f64, image.height() as f64);
    let area = width * height;
    for _ in 0..10 {
        let target = area * rng.gen_range(CROP_SCALE.0..CROP_SCALE.1);
        let log_ratio = rng.gen_range(CROP_RATIO.0.ln()..CROP_RATIO.1.ln());
        let ratio = log_ratio.exp();
        let w = (target * ratio).sqrt().round();
        let h = (target / ratio).sqrt().round();
        if w >= 1.0 && h >= 1.0 && w <= width && h <= height {
            let x = rng.gen_range(0..=(width - w) as u32);
            let y = rng.gen_range(0..=(height - h) as u32);
            let crop = image::imageops::crop_imm(image, x, y, w as u32, h as u32).to_image();
            return image::imageops::resize(&crop, size, size, FilterType::Triangle);
        }
    }
    let in_ratio = width / height;
    let (w, h) = if in_ratio < CROP_RATIO.0 {
        (width, (width / CROP_RATIO.0).round())
    } else if in_ratio > CROP_RATIO.1 {
        ((height * CROP_RATIO.1).round(), height)
    } else {
        (width, height)
    };
    let x = ((width - w) / 2.0) as u32;
    let y = ((height - h) / 2.0) as u32;
    let crop = image::imageops::crop_imm(image, x, y, w as u32, h as u32).to_image();
    image::imageops::resize(&crop, size, size, FilterType::Triangle)
}

/// Validation transform: shorter side to `size / CROP_PCT`, then a centre crop of `size`².
pub fn resize_centre_crop(image: &RgbImage, size: u32) -> RgbImage {
    let short = (size as f64 / CROP_PCT).round() as u32;
    let (width, height) = (image.width(), image.height());
    let (new_w, new_h) = if width <= height {
        (
            short,
            ((height as f64) * short as f64 / width as f64).round() as u32,
        )
    } else {
        (
            ((width as f64) * short as f64 / height as f64).round() as u32,
            short,
        )
    };
    let resized = image::imageops::resize(
        image,
        new_w.max(size),
        new_h.max(size),
        FilterType::Triangle,
    );
    let x = (resized.width() - size) / 2;
    let y = (resized.height() - size) / 2;
    image::imageops::crop_imm(&resized, x, y, size, size).to_image()
}

/// Writes an image into a (3, H, W) slice of normalised floats.
fn normalise_into(image: &RgbImage, out: &mut [f32]) {
    let plane = (image.width() * image.height()) as usize;
    for (i, pixel) in image.pixels().enumerate() {
        for c in 0..3 {
            out[c * plane + i] = (pixel[c] as f32 / 255.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c];
        }
    }
}

/// A batch of images (B, 3, S, S), normalised, and their labels (B).
pub struct Batch {
    pub images: Tensor,
    pub labels: Tensor,
}

/// Builds one batch from `samples`: training batches are augmented (random resized crop,
/// horizontal flip with probability 0.5), validation batches resized and centre-cropped.
pub fn make_batch(
    samples: &[Sample],
    size: u32,
    train: bool,
    seed: u64,
) -> Result<Batch, DataError> {
    let plane = (size * size) as usize;
    let mut pixels = vec![0f32; samples.len() * 3 * plane];
    let mut labels = Vec::with_capacity(samples.len());
    for (index, sample) in samples.iter().enumerate() {
        let mut rng = ChaCha8Rng::seed_from_u64(
            seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)
                .wrapping_add(index as u64),
        );
        let image = read_rgb(&sample.path)?;
        let mut view = if train {
            random_resized_crop(&image, size, &mut rng)
        } else {
            resize_centre_crop(&image, size)
        };
        if train && rng.gen_bool(0.5) {
            view = image::imageops::flip_horizontal(&view);
        }
        normalise_into(
            &view,
            &mut pixels[index * 3 * plane..(index + 1) * 3 * plane],
        );
        labels.push(sample.class as i64);
    }
    let images =
        Tensor::from_slice(&pixels).reshape([samples.len() as i64, 3, size as i64, size as i64]);
    Ok(Batch {
        images,
        labels: Tensor::from_slice(&labels).to_kind(Kind::Int64),
    })
}

/// Yields the batches of one epoch, decoded by `workers` threads ahead of the consumer
/// through a bounded queue. The order and augmentation depend only on `seed` and the
/// epoch, never on the number of workers.
pub fn epoch_batches(
    samples: &[Sample],
    batch_size: usize,
    size: u32,
    train: bool,
    seed: u64,
    epoch: u64,
    workers: usize,
) -> mpsc::Receiver<Result<Batch, DataError>> {
    let mut order: Vec<usize> = (0..samples.len()).collect();
    if train {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ (epoch.wrapping_mul(0xA24B_AED4_963E_E407)));
        rand::seq::SliceRandom::shuffle(order.as_mut_slice(), &mut rng);
    }
    // Training drops the last incomplete batch (as timm does); validation keeps it.
    let chunks: Vec<Vec<Sample>> = order
        .chunks(batch_size.max(1))
        .filter(|chunk| !train || chunk.len() == batch_size)
        .map(|chunk| chunk.iter().map(|&i| samples[i].clone()).collect())
        .collect();
    let workers = workers.max(1);
    let (sender, receiver) = mpsc::sync_channel(workers * 2);
    std::thread::spawn(move || {
        // Batches are produced in parallel in groups of `workers`, then sent in order.
        for group in chunks.chunks(workers).enumerate() {
            let (group_index, group) = group;
            let results: Vec<Result<Batch, DataError>> = std::thread::scope(|scope| {
                let handles: Vec<_> = group
                    .iter()
                    .enumerate()
                    .map(|(offset, chunk)| {
                        let batch_seed = seed
                            .wrapping_add(epoch.wrapping_mul(1_000_003))
                            .wrapping_add((group_index * workers + offset) as u64 * 7919);
                        scope.spawn(move || make_batch(chunk, size, train, batch_seed))
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().expect("batch worker panicked"))
                    .collect()
            });
            for result in results {
                if sender.send(result).is_err() {
                    return;
                }
            }
        }
    });
    receiver
}
