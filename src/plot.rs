//! Small raster charts (line and bar) written as PNG, with text from the public-domain
//! 8×8 bitmap font of the `font8x8` crate, so no system font is needed.

use std::path::Path;

use font8x8::UnicodeFonts;
use image::{Rgb, RgbImage};

/// Colours for series and bars, cycled in order.
pub const PALETTE: [[u8; 3]; 8] = [
    [31, 119, 180],
    [255, 127, 14],
    [44, 160, 44],
    [214, 39, 40],
    [148, 103, 189],
    [140, 86, 75],
    [227, 119, 194],
    [127, 127, 127],
];

const WHITE: Rgb<u8> = Rgb([255, 255, 255]);
const BLACK: Rgb<u8> = Rgb([0, 0, 0]);
const GRID: Rgb<u8> = Rgb([225, 225, 225]);

/// A drawing surface with a plot area inside margins.
pub struct Canvas {
    pub image: RgbImage,
    left: u32,
    right: u32,
    top: u32,
    bottom: u32,
}

impl Canvas {
    /// Creates a white canvas; the plot area is the image minus the margins.
    pub fn new(width: u32, height: u32, margins: [u32; 4]) -> Self {
        let [left, right, top, bottom] = margins;
        Self {
            image: RgbImage::from_pixel(width, height, WHITE),
            left,
            right,
            top,
            bottom,
        }
    }

    fn plot_width(&self) -> f64 {
        (self.image.width() - self.left - self.right) as f64
    }

    fn plot_height(&self) -> f64 {
        (self.image.height() - self.top - self.bottom) as f64
    }

    /// Pixel position of a point in unit coordinates of the plot area (0..1 each way).
    fn to_pixel(&self, x: f64, y: f64) -> (f64, f64) {
        let px = self.left as f64 + x * self.plot_width();
        let py = self.top as f64 + (1.0 - y) * self.plot_height();
        (px, py)
    }

    fn put(&mut self, x: i64, y: i64, colour: Rgb<u8>) {
        if x >= 0 && y >= 0 && (x as u32) < self.image.width() && (y as u32) < self.image.height() {
            self.image.put_pixel(x as u32, y as u32, colour);
        }
    }

    /// Draws a line between two pixel positions, `thickness` pixels wide.
    pub fn line(&mut self, from: (f64, f64), to: (f64, f64), colour: Rgb<u8>, thickness: i64) {
        let steps = ((to.0 - from.0).abs().max((to.1 - from.1).abs()).ceil() as i64).max(1);
        for step in 0..=steps {
            let t = step as f64 / steps as f64;
            let x = (from.0 + t * (to.0 - from.0)).round() as i64;
            let y = (from.1 + t * (to.1 - from.1)).round() as i64;
            for dx in 0..thickness {
                for dy in 0..thickness {
                    self.put(x + dx - thickness / 2, y + dy - thickness / 2, colour);
                }
            }
        }
    }

    /// Fills a rectangle given in pixels.
    pub fn rect(&mut self, x0: f64, y0: f64, x1: f64, y1: f64, colour: Rgb<u8>) {
        let (xa, xb) = (x0.min(x1).round() as i64, x0.max(x1).round() as i64);
        let (ya, yb) = (y0.min(y1).round() as i64, y0.max(y1).round() as i64);
        for x in xa..xb {
            for y in ya..yb {
                self.put(x, y, colour);
            }
        }
    }

    /// Writes text with its top-left corner at a pixel position; `scale` enlarges glyphs.
    pub fn text(&mut self, x: i64, y: i64, text: &str, colour: Rgb<u8>, scale: i64) {
        draw_text(&mut self.image, x, y, text, colour, scale);
    }

    fn axes(&mut self, y_min: f64, y_max: f64) {
        for tick in 0..=4 {
            let fraction = tick as f64 / 4.0;
            let (x0, y) = self.to_pixel(0.0, fraction);
            let (x1, _) = self.to_pixel(1.0, fraction);
            self.line((x0, y), (x1, y), GRID, 1);
            let value = y_min + fraction * (y_max - y_min);
            self.text(4, y as i64 - 4, &format_tick(value), BLACK, 1);
        }
        let (x0, y0) = self.to_pixel(0.0, 0.0);
        let (x1, y1) = self.to_pixel(1.0, 1.0);
        self.line((x0, y0), (x1, y0), BLACK, 1);
        self.line((x0, y0), (x0, y1), BLACK, 1);
    }

    /// Writes the PNG through a temporary name, so a reader never sees half a file.
    pub fn save(&self, path: &Path) -> Result<(), image::ImageError> {
        let temporary = path.with_extension("png.tmp");
        self.image
            .save_with_format(&temporary, image::ImageFormat::Png)?;
        std::fs::rename(&temporary, path).map_err(image::ImageError::IoError)
    }
}

/// Draws `text` into `image` with its top-left corner at (x, y) in the 8×8 bitmap font,
/// each glyph pixel enlarged to `scale`×`scale`. A character without a glyph is drawn as
/// `?`, and pixels outside the image are skipped.
pub fn draw_text(image: &mut RgbImage, x: i64, y: i64, text: &str, colour: Rgb<u8>, scale: i64) {
    for (i, ch) in text.chars().enumerate() {
        let glyph = font8x8::BASIC_FONTS
            .get(ch)
            .or_else(|| font8x8::BASIC_FONTS.get('?'));
        let Some(glyph) = glyph else { continue };
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..8 {
                if bits & (1 << col) == 0 {
                    continue;
                }
                for sx in 0..scale {
                    for sy in 0..scale {
                        let px = x + (i as i64 * 8 + col) * scale + sx;
                        let py = y + row as i64 * scale + sy;
                        let inside = px >= 0
                            && py >= 0
                            && (px as u32) < image.width()
                            && (py as u32) < image.height();
                        if inside {
                            image.put_pixel(px as u32, py as u32, colour);
                        }
                    }
                }
            }
        }
    }
}

fn format_tick(value: f64) -> String {
    if value.abs() >= 100.0 || value == 0.0 {
        format!("{value:.0}")
    } else if value.abs() >= 1.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.3}")
    }
}

/// A named series of (x, y) points for a line chart.
pub struct Series<'a> {
    pub name: &'a str,
    pub points: Vec<(f64, f64)>,
}

/// Draws series as lines sharing one y axis, with a title and a legend.
pub fn line_chart(
    path: &Path,
    title: &str,
    series: &[Series<'_>],
) -> Result<(), image::ImageError> {
    let mut canvas = Canvas::new(900, 480, [64, 24, 40, 56]);
    let points = series
        .iter()
        .flat_map(|s| s.points.iter())
        .filter(|p| p.1.is_finite());
    let (mut x_min, mut x_max, mut y_min, mut y_max) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in points {
        x_min = x_min.min(x);
        x_max = x_max.max(x);
        y_min = y_min.min(y);
        y_max = y_max.max(y);
    }
    if x_min > x_max {
        (x_min, x_max, y_min, y_max) = (0.0, 1.0, 0.0, 1.0);
    }
    if x_max - x_min < 1e-12 {
        x_max = x_min + 1.0;
    }
    if y_max - y_min < 1e-12 {
        y_max = y_min + 1.0;
    }
    canvas.axes(y_min, y_max);
    canvas.text(64, 12, title, BLACK, 2);
    for (index, s) in series.iter().enumerate() {
        let colour = Rgb(PALETTE[index % PALETTE.len()]);
        let mut previous: Option<(f64, f64)> = None;
        for &(x, y) in &s.points {
            if !y.is_finite() {
                previous = None;
                continue;
            }
            let pixel =
                canvas.to_pixel((x - x_min) / (x_max - x_min), (y - y_min) / (y_max - y_min));
            if let Some(prev) = previous {
                canvas.line(prev, pixel, colour, 2);
            } else {
                canvas.rect(
                    pixel.0 - 1.0,
                    pixel.1 - 1.0,
                    pixel.0 + 2.0,
                    pixel.1 + 2.0,
                    colour,
                );
            }
            previous = Some(pixel);
        }
        let legend_x = 64 + index as i64 * 200;
        let legend_y = canvas.image.height() as i64 - 20;
        canvas.rect(
            legend_x as f64,
            legend_y as f64,
            legend_x as f64 + 12.0,
            legend_y as f64 + 8.0,
            colour,
        );
        canvas.text(legend_x + 18, legend_y, s.name, BLACK, 1);
    }
    let axis_label = format!("x: {x_min:.0} .. {x_max:.0}");
    canvas.text(
        canvas.image.width() as i64 - 8 * axis_label.len() as i64 - 24,
        canvas.image.height() as i64 - 40,
        &axis_label,
        BLACK,
        1,
    );
    canvas.save(path)
}

/// One bar with its label, value and optional error bar (same unit as the value).
pub struct Bar {
    pub label: String,
    pub value: f64,
    pub error: f64,
    pub colour: usize,
}

/// Draws vertical bars from zero with error bars and labels under each bar.
pub fn bar_chart(
    path: &Path,
    title: &str,
    y_label: &str,
    bars: &[Bar],
) -> Result<(), image::ImageError> {
    let title_width = 64 + 16 * title.chars().count() as u32 + 24;
    let width = (120 + 110 * bars.len() as u32).max(480).max(title_width);
    let mut canvas = Canvas::new(width, 480, [64, 24, 48, 96]);
    let y_max = bars
        .iter()
        .map(|b| b.value + b.error)
        .fold(0.0f64, f64::max)
        .max(1e-9)
        * 1.1;
    canvas.axes(0.0, y_max);
    canvas.text(64, 12, title, BLACK, 2);
    canvas.text(64, 32, y_label, BLACK, 1);
    let slot = 1.0 / bars.len().max(1) as f64;
    for (index, bar) in bars.iter().enumerate() {
        let colour = Rgb(PALETTE[bar.colour % PALETTE.len()]);
        let left = canvas.to_pixel(index as f64 * slot + 0.15 * slot, 0.0);
        let right = canvas.to_pixel(index as f64 * slot + 0.85 * slot, bar.value / y_max);
        canvas.rect(left.0, left.1, right.0, right.1, colour);
        let centre = (left.0 + right.0) / 2.0;
        if bar.error > 0.0 {
            let (_, low) = canvas.to_pixel(0.0, (bar.value - bar.error).max(0.0) / y_max);
            let (_, high) = canvas.to_pixel(0.0, (bar.value + bar.error) / y_max);
            canvas.line((centre, low), (centre, high), BLACK, 1);
            canvas.line((centre - 6.0, high), (centre + 6.0, high), BLACK, 1);
            canvas.line((centre - 6.0, low), (centre + 6.0, low), BLACK, 1);
        }
        let value = format_tick(bar.value);
        canvas.text(
            centre as i64 - 4 * value.len() as i64,
            right.1 as i64 - 12,
            &value,
            BLACK,
            1,
        );
        for (line, part) in bar.label.split('\n').enumerate() {
            let x = centre as i64 - 4 * part.len() as i64;
            canvas.text(x, left.1 as i64 + 8 + 12 * line as i64, part, BLACK, 1);
        }
    }
    canvas.save(path)
}
