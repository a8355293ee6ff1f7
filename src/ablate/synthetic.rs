//! Data that the embedded default writes itself, so the main job needs no download:
//! a 2D "abdominal slice" segmentation dataset in nnU-Net raw format with known masks,
//! and textured colour images in four classes for a short encoder pretraining.

use std::f64::consts::PI;
use std::path::Path;

use image::{GrayImage, Luma, Rgb, RgbImage};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Organ labels of the synthetic dataset, in `dataset.json` order after background.
pub const ORGAN_LABELS: [&str; 3] = ["liver", "kidney", "spleen"];

/// Texture classes of the synthetic pretraining images (the file-name prefix).
pub const TEXTURE_CLASSES: [&str; 4] = ["stripes", "spots", "rings", "checker"];

/// An ellipse with centre, semi-axes (pixels) and rotation (radians).
#[derive(Clone, Copy)]
struct Ellipse {
    cy: f64,
    cx: f64,
    ry: f64,
    rx: f64,
    angle: f64,
}

impl Ellipse {
    /// Squared normalised distance: below 1 inside the ellipse.
    fn distance(&self, y: f64, x: f64) -> f64 {
        let (dy, dx) = (y - self.cy, x - self.cx);
        let (s, c) = self.angle.sin_cos();
        let u = c * dx + s * dy;
        let v = -s * dx + c * dy;
        (u / self.rx).powi(2) + (v / self.ry).powi(2)
    }
}

/// Draws one slice: a body ellipse with three organs of distinct mean intensity, a slow
/// bias field and Gaussian noise. Returns the 8-bit image and the label map.
fn organ_slice(rng: &mut ChaCha8Rng, size: u32) -> (GrayImage, GrayImage) {
    let s = size as f64;
    let jitter = |rng: &mut ChaCha8Rng, scale: f64| rng.gen_range(-scale..scale);
    let body = Ellipse {
        cy: s * 0.5 + jitter(rng, s * 0.03),
        cx: s * 0.5 + jitter(rng, s * 0.03),
        ry: s * (0.36 + jitter(rng, 0.03)),
        rx: s * (0.44 + jitter(rng, 0.03)),
        angle: jitter(rng, 0.1),
    };
    // Liver on the image's left, spleen on its right, kidney below the spleen, as on an
    // axial slice in radiological orientation.
    let organs = [
        Ellipse {
            cy: s * (0.45 + jitter(rng, 0.04)),
            cx: s * (0.33 + jitter(rng, 0.04)),
            ry: s * (0.15 + jitter(rng, 0.03)),
            rx: s * (0.12 + jitter(rng, 0.03)),
            angle: jitter(rng, 0.5),
        },
        Ellipse {
            cy: s * (0.62 + jitter(rng, 0.04)),
            cx: s * (0.66 + jitter(rng, 0.04)),
            ry: s * (0.07 + jitter(rng, 0.015)),
            rx: s * (0.05 + jitter(rng, 0.01)),
            angle: jitter(rng, 0.6),
        },
        Ellipse {
            cy: s * (0.40 + jitter(rng, 0.04)),
            cx: s * (0.68 + jitter(rng, 0.04)),
            ry: s * (0.08 + jitter(rng, 0.02)),
            rx: s * (0.06 + jitter(rng, 0.015)),
            angle: jitter(rng, 0.6),
        },
    ];
    let means = [
        150.0 + jitter(rng, 15.0),
        200.0 + jitter(rng, 15.0),
        110.0 + jitter(rng, 10.0),
    ];
    let body_mean = 70.0 + jitter(rng, 10.0);
    let bias = (jitter(rng, 0.2), jitter(rng, 0.2));
    let mut image = GrayImage::new(size, size);
    let mut label = GrayImage::new(size, size);
    let normal = rand_distr::Normal::new(0.0, 12.0).expect("valid sigma");
    for y in 0..size {
        for x in 0..size {
            let (fy, fx) = (y as f64, x as f64);
            let mut value = 8.0;
            let mut class = 0u8;
            if body.distance(fy, fx) < 1.0 {
                value = body_mean;
                for (index, organ) in organs.iter().enumerate() {
                    if organ.distance(fy, fx) < 1.0 {
                        value = means[index];
                        class = index as u8 + 1;
                    }
                }
            }
            let field = 1.0 + bias.0 * (fy / s - 0.5) + bias.1 * (fx / s - 0.5);
            let noisy = value * field + rng.sample(normal);
            image.put_pixel(x, y, Luma([noisy.clamp(0.0, 255.0) as u8]));
            label.put_pixel(x, y, Luma([class]));
        }
    }
    (image, label)
}

/// Writes `DatasetXXX_SynthOrgans` in nnU-Net raw format: `cases` PNG slices of
/// `size`² pixels with labels 0..3, and its `dataset.json`.
pub fn write_organ_dataset(
    folder: &Path,
    cases: usize,
    size: u32,
    seed: u64,
) -> std::io::Result<()> {
    let images = folder.join("imagesTr");
    let labels = folder.join("labelsTr");
    std::fs::create_dir_all(&images)?;
    std::fs::create_dir_all(&labels)?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for case in 0..cases {
        let (image, label) = organ_slice(&mut rng, size);
        let name = format!("synth_{case:03}");
        save_png(&image, &images.join(format!("{name}_0000.png")))?;
        save_png(&label, &labels.join(format!("{name}.png")))?;
    }
    let mut label_map = serde_json::Map::new();
    label_map.insert("background".into(), 0.into());
    for (index, organ) in ORGAN_LABELS.iter().enumerate() {
        label_map.insert((*organ).into(), (index + 1).into());
    }
    let dataset = serde_json::json!({
        "channel_names": { "0": "MRI" },
        "labels": label_map,
        "numTraining": cases,
        "file_ending": ".png",
        "name": "SynthOrgans",
        "description": "Synthetic axial slices with three ellipsoidal organs, written by swin-umamba",
    });
    let text = serde_json::to_string_pretty(&dataset).expect("JSON value serialises");
    write_atomic(&folder.join("dataset.json"), text.as_bytes())
}

/// Draws one textured colour image of the given class.
fn texture_image(rng: &mut ChaCha8Rng, class: usize, size: u32) -> RgbImage {
    let colour = |rng: &mut ChaCha8Rng| {
        [
            rng.gen_range(0.0..255.0),
            rng.gen_range(0.0..255.0),
            rng.gen_range(0.0..255.0),
        ]
    };
    let (fg, bg) = (colour(rng), colour(rng));
    let period = rng.gen_range(6.0..14.0);
    let angle = rng.gen_range(0.0..PI);
    let (cy, cx) = (
        rng.gen_range(0.2..0.8) * size as f64,
        rng.gen_range(0.2..0.8) * size as f64,
    );
    let spots: Vec<(f64, f64, f64)> = (0..12)
        .map(|_| {
            let s = size as f64;
            (
                rng.gen_range(0.0..s),
                rng.gen_range(0.0..s),
                rng.gen_range(2.0..s / 8.0),
            )
        })
        .collect();
    let normal = rand_distr::Normal::new(0.0, 10.0).expect("valid sigma");
    let mut image = RgbImage::new(size, size);
    for y in 0..size {
        for x in 0..size {
            let (fy, fx) = (y as f64, x as f64);
            let weight = match TEXTURE_CLASSES[class] {
                "stripes" => {
                    let t = fx * angle.cos() + fy * angle.sin();
                    0.5 + 0.5 * (2.0 * PI * t / period).sin()
                }
                "spots" => {
                    let inside = spots
                        .iter()
                        .any(|(sy, sx, r)| (fy - sy).powi(2) + (fx - sx).powi(2) < r * r);
                    if inside {
                        1.0
                    } else {
                        0.0
                    }
                }
                "rings" => {
                    let r = ((fy - cy).powi(2) + (fx - cx).powi(2)).sqrt();
                    0.5 + 0.5 * (2.0 * PI * r / period).cos()
                }
                _ => {
                    let cell = ((fx / period).floor() as i64 + (fy / period).floor() as i64) % 2;
                    cell as f64
                }
            };
            let mut pixel = [0u8; 3];
            for c in 0..3 {
                let v = weight * fg[c] + (1.0 - weight) * bg[c] + rng.sample(normal);
                pixel[c] = v.clamp(0.0, 255.0) as u8;
            }
            image.put_pixel(x, y, Rgb(pixel));
        }
    }
    image
}

/// Writes `per_class` images of each texture class as `<class>_<n>.png` in one flat
/// folder (the class is the file-name prefix before the first `_`).
pub fn write_texture_images(
    folder: &Path,
    per_class: usize,
    size: u32,
    seed: u64,
) -> std::io::Result<()> {
    std::fs::create_dir_all(folder)?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for n in 0..per_class {
        for (class, name) in TEXTURE_CLASSES.iter().enumerate() {
            let image = texture_image(&mut rng, class, size);
            save_png(&image, &folder.join(format!("{name}_{n:03}.png")))?;
        }
    }
    Ok(())
}

fn save_png<P, C>(image: &image::ImageBuffer<P, C>, path: &Path) -> std::io::Result<()>
where
    P: image::PixelWithColorType,
    [P::Subpixel]: image::EncodableLayout,
    C: std::ops::Deref<Target = [P::Subpixel]>,
{
    let temporary = path.with_extension("png.tmp");
    image
        .save_with_format(&temporary, image::ImageFormat::Png)
        .map_err(std::io::Error::other)?;
    std::fs::rename(&temporary, path)
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, bytes)?;
    std::fs::rename(&temporary, path)
}
