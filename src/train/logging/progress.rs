//! `progress.png`: the training curves, drawn with plain line rasterisation on an RGB image.
//!
//! Three stacked panels as in nnU-Net's `plot_progress_png`: losses and pseudo-Dice (top),
//! epoch time and data-wait time (middle), learning rate (bottom). Each panel's title line
//! names its curves in their colours with the value range of its axis, in the 8×8 bitmap
//! font of the `font8x8` crate (the `image` crate has no font rendering).

use std::path::Path;

use image::{Rgb, RgbImage};

use super::history::History;
use crate::train::checkpoint::write_atomically;
use crate::train::error::TrainError;

const WIDTH: u32 = 900;
const PANEL_HEIGHT: u32 = 300;
const MARGIN: u32 = 30;

/// Training loss.
pub const BLUE: Rgb<u8> = Rgb([31, 119, 180]);
/// Validation loss.
pub const RED: Rgb<u8> = Rgb([214, 39, 40]);
/// Pseudo-Dice (light) and its moving average (dark).
pub const LIGHT_GREEN: Rgb<u8> = Rgb([152, 223, 138]);
/// Moving average of the pseudo-Dice.
pub const GREEN: Rgb<u8> = Rgb([44, 160, 44]);
/// Data-wait time.
pub const ORANGE: Rgb<u8> = Rgb([255, 127, 14]);
const AXIS: Rgb<u8> = Rgb([120, 120, 120]);

/// Draws the curves of `history` into `path` (written atomically).
pub fn write_progress_png(history: &History, path: &Path) -> Result<(), TrainError> {
    let mut img = RgbImage::from_pixel(WIDTH, 3 * PANEL_HEIGHT, Rgb([255, 255, 255]));
    let e = &history.epochs;
    let train: Vec<f64> = e.iter().map(|r| r.train_loss).collect();
    let val: Vec<f64> = e.iter().map(|r| r.val_loss).collect();
    let dice: Vec<f64> = e.iter().map(|r| r.mean_fg_dice).collect();
    let ema: Vec<f64> = e.iter().map(|r| r.ema_fg_dice).collect();
    let time: Vec<f64> = e.iter().map(|r| r.epoch_time_s).collect();
    let wait: Vec<f64> = e.iter().map(|r| r.data_wait_s).collect();
    let lr: Vec<f64> = e.iter().map(|r| r.lr).collect();

    let loss_range = range_of(&[&train, &val]);
    draw_panel(
        &mut img,
        0,
        &[(&train, BLUE, loss_range), (&val, RED, loss_range)],
    );
    // The pseudo-Dice has its own [0, 1] axis on the same panel, like nnU-Net's twin axis.
    draw_panel(
        &mut img,
        0,
        &[(&dice, LIGHT_GREEN, (0.0, 1.0)), (&ema, GREEN, (0.0, 1.0))],
    );
    let time_range = range_of(&[&time, &wait]);
    draw_panel(
        &mut img,
        1,
        &[(&time, BLUE, time_range), (&wait, ORANGE, time_range)],
    );
    let lr_range = range_of(&[&lr]);
    draw_panel(&mut img, 2, &[(&lr, BLUE, lr_range)]);

    let span = |(lo, hi): (f64, f64)| format!("{lo:.3e} to {hi:.3e}");
    let last_epoch = e.last().map(|r| r.epoch).unwrap_or(0);
    draw_labels(
        &mut img,
        0,
        &[
            (format!("loss {}:", span(loss_range)), AXIS),
            ("train".into(), BLUE),
            ("val".into(), RED),
            ("| pseudo-Dice 0 to 1:".into(), AXIS),
            ("dice".into(), LIGHT_GREEN),
            ("ema".into(), GREEN),
        ],
    );
    draw_labels(
        &mut img,
        1,
        &[
            (format!("seconds {}:", span(time_range)), AXIS),
            ("epoch time".into(), BLUE),
            ("data wait".into(), ORANGE),
        ],
    );
    draw_labels(
        &mut img,
        2,
        &[
            (format!("learning rate {}:", span(lr_range)), AXIS),
            ("lr".into(), BLUE),
            (format!("| x axis: epochs 0 to {last_epoch}"), AXIS),
        ],
    );

    let mut bytes = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )
    .map_err(|e| TrainError::Data(format!("encoding {} failed: {e}", path.display())))?;
    write_atomically(path, &bytes)
}

fn range_of(series: &[&Vec<f64>]) -> (f64, f64) {
    let values = series
        .iter()
        .flat_map(|s| s.iter())
        .copied()
        .filter(|v| v.is_finite());
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if !lo.is_finite() {
        (0.0, 1.0)
    } else if hi - lo < 1e-12 {
        (lo - 0.5, hi + 0.5)
    } else {
        (lo, hi)
    }
}

/// A curve: values per epoch, colour and the (low, high) value range of the panel.
type Curve<'a> = (&'a Vec<f64>, Rgb<u8>, (f64, f64));

fn draw_panel(img: &mut RgbImage, panel: u32, series: &[Curve]) {
    let top = panel * PANEL_HEIGHT + MARGIN;
    let bottom = (panel + 1) * PANEL_HEIGHT - MARGIN;
    let (left, right) = (MARGIN, WIDTH - MARGIN);
    draw_line(
        img,
        (left as f64, bottom as f64),
        (right as f64, bottom as f64),
        AXIS,
    );
    draw_line(
        img,
        (left as f64, top as f64),
        (left as f64, bottom as f64),
        AXIS,
    );
    for (values, colour, (lo, hi)) in series {
        let n = values.len();
        let to_point = |i: usize, v: f64| {
            let x = if n > 1 {
                i as f64 / (n - 1) as f64
            } else {
                0.5
            };
            let y = ((v - lo) / (hi - lo)).clamp(0.0, 1.0);
            (
                left as f64 + x * (right - left) as f64,
                bottom as f64 - y * (bottom - top) as f64,
            )
        };
        let mut previous: Option<(f64, f64)> = None;
        for (i, &v) in values.iter().enumerate() {
            if !v.is_finite() {
                previous = None;
                continue;
            }
            let point = to_point(i, v);
            match previous {
                Some(p) => draw_line(img, p, point, *colour),
                None => draw_dot(img, point, *colour),
            }
            previous = Some(point);
        }
    }
}

/// Draws a two-pixel-wide line by sampling it at sub-pixel steps.
fn draw_line(img: &mut RgbImage, from: (f64, f64), to: (f64, f64), colour: Rgb<u8>) {
    let steps = ((to.0 - from.0).abs().max((to.1 - from.1).abs()) * 2.0)
        .ceil()
        .max(1.0) as usize;
    for s in 0..=steps {
        let t = s as f64 / steps as f64;
        let point = (from.0 + t * (to.0 - from.0), from.1 + t * (to.1 - from.1));
        put(img, point.0, point.1, colour);
        put(img, point.0 + 1.0, point.1, colour);
        put(img, point.0, point.1 + 1.0, colour);
    }
}

fn draw_dot(img: &mut RgbImage, (x, y): (f64, f64), colour: Rgb<u8>) {
    for dy in -2..=2 {
        for dx in -2..=2 {
            put(img, x + dx as f64, y + dy as f64, colour);
        }
    }
}

fn put(img: &mut RgbImage, x: f64, y: f64, colour: Rgb<u8>) {
    if x >= 0.0 && y >= 0.0 && (x as u32) < img.width() && (y as u32) < img.height() {
        img.put_pixel(x as u32, y as u32, colour);
    }
}

/// Writes a panel's title line: each text in its colour, separated by spaces.
fn draw_labels(img: &mut RgbImage, panel: u32, parts: &[(String, Rgb<u8>)]) {
    let y = panel * PANEL_HEIGHT + 8;
    let mut x = MARGIN;
    for (text, colour) in parts {
        crate::plot::draw_text(img, x as i64, y as i64, text, *colour, 1);
        x += 8 * (text.chars().count() as u32 + 1);
    }
}
