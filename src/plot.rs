//! Loss curves: reads the `metrics.jsonl` that `visualglm train` appends to (one JSON object
//! per optimiser update: `step`, `loss`, `lr`, `grad_norm`, `skipped`, optional `val_loss`)
//! and draws a PNG of the training loss against the step, with the validation loss as red
//! points joined by a line where present.
//!
//! Drawing uses `plotters` on an in-memory bitmap without any font library (the build needs
//! nothing but Rust), so the tick labels are drawn with a built-in 3×5 pixel font of digits.
//! Colours: training loss light blue, its centred moving average (from 20 points on) dark blue,
//! validation loss red.

use std::path::{Path, PathBuf};

use plotters::prelude::*;

/// Default image size in pixels.
pub const DEFAULT_SIZE: (u32, u32) = (800, 500);

/// What can go wrong while reading metrics or writing the plot.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file at fault.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A line of the metrics file is not a metrics record.
    #[error("{path}:{line}: {reason}")]
    BadLine {
        /// The metrics file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// The metrics file has nothing to plot.
    #[error("{path}: {reason}")]
    NoData {
        /// The metrics file.
        path: PathBuf,
        /// Why there is nothing to plot.
        reason: String,
    },
    /// Drawing or encoding the image failed.
    #[error("drawing the loss curve: {0}")]
    Draw(String),
}

/// Shorthand for results of this module.
pub type Result<T> = std::result::Result<T, PlotError>;

/// The series of a metrics file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LossSeries {
    /// `(step, loss)` of every update with a finite loss that was not skipped.
    pub train: Vec<(f64, f64)>,
    /// `(step, val_loss)` wherever a finite validation loss was recorded.
    pub val: Vec<(f64, f64)>,
}

/// Reads `metrics.jsonl`: blank lines are ignored; every other line must be a JSON object
/// with a numeric `step` and a `loss` (a number, or `null` for a non-finite loss); skipped
/// updates (`"skipped": true`) and non-finite losses are left out. Errors name the file and
/// the line.
pub fn read_metrics(path: &Path) -> Result<LossSeries> {
    let text = std::fs::read_to_string(path).map_err(|source| PlotError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut series = LossSeries::default();
    let mut records = 0usize;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let bad = |reason: String| PlotError::BadLine {
            path: path.to_path_buf(),
            line: i + 1,
            reason,
        };
        let value: serde_json::Value = serde_json::from_str(line)
            .map_err(|e| bad(format!("not a JSON metrics record ({e})")))?;
        let obj = value
            .as_object()
            .ok_or_else(|| bad("not a JSON object".into()))?;
        let step = obj
            .get("step")
            .and_then(serde_json::Value::as_f64)
            .filter(|s| s.is_finite())
            .ok_or_else(|| bad("no numeric \"step\"".into()))?;
        let loss = match obj.get("loss") {
            Some(serde_json::Value::Null) => None,
            Some(v) => Some(
                v.as_f64()
                    .ok_or_else(|| bad(format!("\"loss\" is not a number: {v}")))?,
            ),
            None => return Err(bad("no \"loss\"".into())),
        };
        let val = match obj.get("val_loss") {
            None | Some(serde_json::Value::Null) => None,
            Some(v) => Some(
                v.as_f64()
                    .ok_or_else(|| bad(format!("\"val_loss\" is not a number: {v}")))?,
            ),
        };
        records += 1;
        let skipped = obj
            .get("skipped")
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false);
        if let Some(l) = loss.filter(|l| l.is_finite() && !skipped) {
            series.train.push((step, l));
        }
        if let Some(v) = val.filter(|v| v.is_finite()) {
            series.val.push((step, v));
        }
    }
    if records == 0 {
        return Err(PlotError::NoData {
            path: path.to_path_buf(),
            reason: "no metrics records (the file is empty)".into(),
        });
    }
    if series.train.is_empty() && series.val.is_empty() {
        return Err(PlotError::NoData {
            path: path.to_path_buf(),
            reason: format!("none of its {records} records has a finite loss"),
        });
    }
    Ok(series)
}

/// Reads `metrics_jsonl` and writes the loss curve to `out_png` ([`DEFAULT_SIZE`]),
/// atomically (temporary sibling file, then rename).
pub fn write_loss_curve(metrics_jsonl: &Path, out_png: &Path) -> Result<()> {
    let series = read_metrics(metrics_jsonl)?;
    let png = render_png(&series, DEFAULT_SIZE)?;
    write_atomic(out_png, &png)
}

/// The PNG bytes of the loss curve of `series`, `size` = (width, height) in pixels
/// (at least 100×80).
pub fn render_png(series: &LossSeries, size: (u32, u32)) -> Result<Vec<u8>> {
    let (w, h) = size;
    if w < 100 || h < 80 || w > 16_384 || h > 16_384 {
        return Err(PlotError::Draw(format!(
            "image size {w}x{h} is outside 100x80..16384x16384"
        )));
    }
    let mut buf = vec![0u8; (w * h * 3) as usize];
    draw(series, &mut buf, size).map_err(|e| PlotError::Draw(e.to_string()))?;
    let img = image::RgbImage::from_raw(w, h, buf)
        .ok_or_else(|| PlotError::Draw("bitmap buffer has the wrong size".into()))?;
    let mut png = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|e| PlotError::Draw(format!("PNG encoding: {e}")))?;
    Ok(png)
}

/// Centred moving average over about 5% of the points (at least 3 each side), for a
/// readable trend over a noisy loss without the lag of a trailing average.
fn moving_average(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let k = (points.len() / 40).max(3);
    let mut prefix = Vec::with_capacity(points.len() + 1);
    prefix.push(0.0);
    for &(_, y) in points {
        prefix.push(prefix.last().copied().unwrap_or(0.0) + y);
    }
    (0..points.len())
        .map(|i| {
            let lo = i.saturating_sub(k);
            let hi = (i + k + 1).min(points.len());
            (points[i].0, (prefix[hi] - prefix[lo]) / (hi - lo) as f64)
        })
        .collect()
}

/// A "nice" tick spacing (1, 2 or 5 × 10^k) giving about `target` ticks over `span`.
fn tick_step(span: f64, target: f64) -> f64 {
    let raw = (span / target).max(f64::MIN_POSITIVE);
    let mag = 10f64.powf(raw.log10().floor());
    let norm = raw / mag;
    let nice = if norm < 1.5 {
        1.0
    } else if norm < 3.5 {
        2.0
    } else if norm < 7.5 {
        5.0
    } else {
        10.0
    };
    nice * mag
}

/// Tick values in `[lo, hi]` and the decimals their labels need.
fn ticks(lo: f64, hi: f64, target: f64) -> (Vec<f64>, usize) {
    let step = tick_step(hi - lo, target);
    let decimals = (-step.log10().floor()).clamp(0.0, 6.0) as usize;
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    let v = (first..=last).map(|k| k as f64 * step).collect();
    (v, decimals)
}

/// A padded range around `values` (never empty).
fn range(values: impl Iterator<Item = f64>, pad: f64) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if !lo.is_finite() || !hi.is_finite() {
        return (0.0, 1.0);
    }
    if hi - lo < 1e-12 {
        let d = lo.abs().max(1.0) * 0.5;
        return (lo - d, hi + d);
    }
    let p = (hi - lo) * pad;
    (lo - p, hi + p)
}

type DrawResult<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn draw(series: &LossSeries, buf: &mut [u8], size: (u32, u32)) -> DrawResult<()> {
    const SCALE: i32 = 2;
    let root = BitMapBackend::<plotters::backend::RGBPixel>::with_buffer_and_format(buf, size)?
        .into_drawing_area();
    root.fill(&WHITE)?;
    let all = || series.train.iter().chain(&series.val);
    let (x0, x1) = range(all().map(|p| p.0), 0.0);
    let (y0, y1) = range(all().map(|p| p.1), 0.05);
    let left = 8 * 4 * SCALE as u32 + 16;
    let bottom = 5 * SCALE as u32 + 16;
    let mut chart = ChartBuilder::on(&root)
        .margin_top(12)
        .margin_right(16)
        .margin_left(left)
        .margin_bottom(bottom)
        .build_cartesian_2d(x0..x1, y0..y1)?;
    let grid = RGBColor(225, 225, 225);
    let (xt, xd) = ticks(x0, x1, 8.0);
    let (yt, yd) = ticks(y0, y1, 6.0);
    for &x in &xt {
        chart.draw_series(LineSeries::new([(x, y0), (x, y1)], grid))?;
    }
    for &y in &yt {
        chart.draw_series(LineSeries::new([(x0, y), (x1, y)], grid))?;
    }
    let frame = [(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)];
    chart.draw_series(LineSeries::new(frame, BLACK))?;

    let light = RGBColor(150, 180, 230);
    let dark = RGBColor(20, 60, 170);
    if series.train.len() >= 20 {
        chart.draw_series(LineSeries::new(series.train.iter().copied(), light))?;
        chart.draw_series(LineSeries::new(
            moving_average(&series.train),
            dark.stroke_width(2),
        ))?;
    } else {
        chart.draw_series(LineSeries::new(
            series.train.iter().copied(),
            dark.stroke_width(2),
        ))?;
        chart.draw_series(
            series
                .train
                .iter()
                .map(|&p| Circle::new(p, 2, dark.filled())),
        )?;
    }
    let red = RGBColor(210, 40, 40);
    if series.val.len() > 1 {
        chart.draw_series(LineSeries::new(series.val.iter().copied(), red))?;
    }
    chart.draw_series(series.val.iter().map(|&p| Circle::new(p, 4, red.filled())))?;

    // Tick labels, right-aligned left of the y axis and centred under the x axis.
    for &y in &yt {
        let label = format!("{y:.yd$}");
        let (px, py) = chart.backend_coord(&(x0, y));
        let width = text_width(&label, SCALE);
        draw_text(&root, &label, (px - 6 - width, py - 5 * SCALE / 2), SCALE)?;
    }
    for &x in &xt {
        let label = format!("{x:.xd$}");
        let (px, py) = chart.backend_coord(&(x, y0));
        let width = text_width(&label, SCALE);
        draw_text(&root, &label, (px - width / 2, py + 6), SCALE)?;
    }
    root.present()?;
    Ok(())
}

/// 3×5 glyphs, one row per byte (bit 2 = left column).
fn glyph(c: char) -> Option<[u8; 5]> {
    Some(match c {
        '0' => [7, 5, 5, 5, 7],
        '1' => [2, 6, 2, 2, 7],
        '2' => [7, 1, 7, 4, 7],
        '3' => [7, 1, 7, 1, 7],
        '4' => [5, 5, 7, 1, 1],
        '5' => [7, 4, 7, 1, 7],
        '6' => [7, 4, 7, 5, 7],
        '7' => [7, 1, 1, 1, 1],
        '8' => [7, 5, 7, 5, 7],
        '9' => [7, 5, 7, 1, 7],
        '.' => [0, 0, 0, 0, 2],
        '-' => [0, 0, 7, 0, 0],
        _ => return None,
    })
}

/// Width in pixels of `text` in the pixel font at `scale`.
fn text_width(text: &str, scale: i32) -> i32 {
    let n = text.chars().count() as i32;
    (n * 4 - 1).max(0) * scale
}

/// Draws `text` (digits, `.`, `-`) with its top-left corner at `at`.
fn draw_text<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    text: &str,
    at: (i32, i32),
    scale: i32,
) -> DrawResult<()>
where
    DB::ErrorType: 'static,
{
    for (k, c) in text.chars().enumerate() {
        let Some(rows) = glyph(c) else { continue };
        let cx = at.0 + k as i32 * 4 * scale;
        for (r, bits) in rows.iter().enumerate() {
            for col in 0..3 {
                if bits & (4 >> col) != 0 {
                    let x = cx + col * scale;
                    let y = at.1 + r as i32 * scale;
                    area.draw(&Rectangle::new(
                        [(x, y), (x + scale, y + scale)],
                        BLACK.filled(),
                    ))?;
                }
            }
        }
    }
    Ok(())
}

/// Writes `bytes` to `path` atomically.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    visualglm_files::write_atomic_bytes(path, bytes).map_err(|e| PlotError::Io {
        path: path.to_path_buf(),
        source: e.source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics_file(dir: &Path, lines: &[String]) -> PathBuf {
        let p = dir.join("metrics.jsonl");
        std::fs::write(&p, lines.join("\n")).unwrap();
        p
    }

    #[test]
    fn loss_curve_png_has_the_size_and_a_drawing() {
        let dir = tempfile::tempdir().unwrap();
        let mut lines = Vec::new();
        for step in 1..=60u64 {
            let loss = 3.0 * (-(step as f64) / 20.0).exp() + 0.1 * ((step % 7) as f64 / 7.0);
            let val = if step % 10 == 0 {
                format!(r#","val_loss":{}"#, loss + 0.2)
            } else {
                String::new()
            };
            lines.push(format!(
                r#"{{"step":{step},"loss":{loss},"lr":0.0001,"grad_norm":1.5,"skipped":false{val}}}"#
            ));
        }
        // A skipped step with a non-finite loss (serialised as null) is left out.
        lines.push(r#"{"step":61,"loss":null,"lr":0.0,"grad_norm":null,"skipped":true}"#.into());
        let metrics = metrics_file(dir.path(), &lines);
        let series = read_metrics(&metrics).unwrap();
        assert_eq!(series.train.len(), 60);
        assert_eq!(series.val.len(), 6);

        let out = dir.path().join("loss.png");
        write_loss_curve(&metrics, &out).unwrap();
        let img = image::open(&out).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), DEFAULT_SIZE);
        let first = *img.get_pixel(0, 0);
        let differing = img.pixels().filter(|p| **p != first).count();
        assert!(differing > 2000, "{differing} non-background pixels");
        // Red validation points and blue training loss are both there.
        assert!(img.pixels().any(|p| p.0 == [210, 40, 40]));
        assert!(img.pixels().any(|p| p.0 == [20, 60, 170]));
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 2);

        // A single point and a short run draw too.
        let one = LossSeries {
            train: vec![(5.0, 1.25)],
            val: vec![],
        };
        let png = render_png(&one, (200, 120)).unwrap();
        let img = image::load_from_memory(&png).unwrap();
        assert_eq!((img.width(), img.height()), (200, 120));
    }

    #[test]
    fn bad_metrics_name_the_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("loss.png");
        let empty = metrics_file(dir.path(), &["".into(), "  ".into()]);
        let err = write_loss_curve(&empty, &out).unwrap_err().to_string();
        assert!(
            err.contains("metrics.jsonl") && err.contains("empty"),
            "{err}"
        );
        assert!(!out.exists());

        let lines = vec![
            r#"{"step":1,"loss":2.0}"#.to_string(),
            String::new(),
            r#"{"step":2,"loss":"#.to_string(),
        ];
        let broken = metrics_file(dir.path(), &lines);
        let err = write_loss_curve(&broken, &out).unwrap_err().to_string();
        assert!(err.contains("metrics.jsonl:3:"), "{err}");

        let no_loss = metrics_file(dir.path(), &[r#"{"step":1,"lr":0.1}"#.into()]);
        let err = read_metrics(&no_loss).unwrap_err().to_string();
        assert!(err.contains(":1:") && err.contains("\"loss\""), "{err}");

        let all_nan = metrics_file(
            dir.path(),
            &[r#"{"step":1,"loss":null,"skipped":true}"#.into()],
        );
        let err = read_metrics(&all_nan).unwrap_err().to_string();
        assert!(err.contains("finite loss"), "{err}");

        let missing = dir.path().join("nope.jsonl");
        let err = write_loss_curve(&missing, &out).unwrap_err().to_string();
        assert!(err.contains("nope.jsonl"), "{err}");
    }

    #[test]
    fn ticks_are_round_numbers() {
        let (t, d) = ticks(0.0, 100.0, 8.0);
        assert_eq!(
            t,
            vec![0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 100.0]
        );
        assert_eq!(d, 0);
        let (t, d) = ticks(1.93, 2.61, 6.0);
        assert_eq!(d, 1);
        assert_eq!(t.len(), 7);
        assert!(t.iter().all(|v| (1.93..=2.61).contains(v)));
        assert!(text_width("2.5", 2) > 0);
    }
}
