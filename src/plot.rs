//! Loss curves: reads the `metrics.jsonl` that `visualglm train` appends to (one JSON object
//! per optimiser update: `step`, `loss`, `lr`, `grad_norm`, `skipped`, optional `val_loss`)
//! and draws a PNG of the training loss against the step, with the validation loss as red
//! points joined by a line where present.
//!
//! Drawing uses `plotters` on an in-memory bitmap and the `font8x8` bitmap font (the build
//! needs nothing but Rust). The plot has a title (the run: the metrics file's folder), axis
//! labels (update, loss) and a legend. Colours: training loss light blue, its centred moving
//! average (from 20 points on) dark blue, validation loss red.

use std::path::{Path, PathBuf};

use plotters::prelude::*;

mod text;

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
    let run = metrics_jsonl
        .canonicalize()
        .ok()
        .and_then(|p| p.parent().and_then(|d| d.file_name()).map(|n| n.to_owned()))
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let title = if run.is_empty() {
        "training loss".to_string()
    } else {
        format!("training loss: {run}")
    };
    let png = render_png(&series, DEFAULT_SIZE, &title)?;
    write_atomic(out_png, &png)
}

/// The PNG bytes of the loss curve of `series` under `title`, `size` = (width, height) in
/// pixels (at least 320×200).
pub fn render_png(series: &LossSeries, size: (u32, u32), title: &str) -> Result<Vec<u8>> {
    let (w, h) = size;
    if w < 320 || h < 200 || w > 16_384 || h > 16_384 {
        return Err(PlotError::Draw(format!(
            "image size {w}x{h} is outside 320x200..16384x16384"
        )));
    }
    let mut buf = vec![0u8; (w * h * 3) as usize];
    draw(series, &mut buf, size, title).map_err(|e| PlotError::Draw(e.to_string()))?;
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

/// Result of the drawing code (plotters' errors are boxed).
type DrawResult<T> = std::result::Result<T, Box<dyn std::error::Error>>;

const LIGHT: RGBColor = RGBColor(150, 180, 230);
const DARK: RGBColor = RGBColor(20, 60, 170);
const RED: RGBColor = RGBColor(210, 40, 40);
const GREY: RGBColor = RGBColor(90, 90, 90);

fn draw(series: &LossSeries, buf: &mut [u8], size: (u32, u32), title: &str) -> DrawResult<()> {
    // Text scale: 16-pixel letters on the default 800×500, 8-pixel ones on small images.
    let scale = if size.0 >= 600 && size.1 >= 360 { 2 } else { 1 };
    let line = text::height(scale);
    let root = BitMapBackend::<plotters::backend::RGBPixel>::with_buffer_and_format(buf, size)?
        .into_drawing_area();
    root.fill(&WHITE)?;
    let all = || series.train.iter().chain(&series.val);
    let (x0, x1) = range(all().map(|p| p.0), 0.0);
    let (y0, y1) = range(all().map(|p| p.1), 0.05);
    let (xt, xd) = ticks(x0, x1, 8.0);
    let (yt, yd) = ticks(y0, y1, 6.0);
    let y_labels: Vec<String> = yt.iter().map(|y| format!("{y:.yd$}")).collect();
    let widest = y_labels
        .iter()
        .map(|l| text::width(l, scale))
        .max()
        .unwrap_or(0);
    let left = (widest + 16).max(text::width("loss", scale) + 8) as u32;
    // Room for half of the last x label, centred on the right edge.
    let last_x = xt.last().map(|x| format!("{x:.xd$}")).unwrap_or_default();
    let right = (text::width(&last_x, scale) / 2 + 6).max(16) as u32;
    let mut chart = ChartBuilder::on(&root)
        .margin_top((2 * line + 20) as u32)
        .margin_right(right)
        .margin_left(left)
        .margin_bottom((2 * line + 20) as u32)
        .build_cartesian_2d(x0..x1, y0..y1)?;
    let grid = RGBColor(225, 225, 225);
    for &x in &xt {
        chart.draw_series(LineSeries::new([(x, y0), (x, y1)], grid))?;
    }
    for &y in &yt {
        chart.draw_series(LineSeries::new([(x0, y), (x1, y)], grid))?;
    }
    let frame = [(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)];
    chart.draw_series(LineSeries::new(frame, BLACK))?;

    let mut legend: Vec<(&str, RGBColor)> = Vec::new();
    if series.train.len() >= 20 {
        chart.draw_series(LineSeries::new(series.train.iter().copied(), LIGHT))?;
        chart.draw_series(LineSeries::new(
            moving_average(&series.train),
            DARK.stroke_width(2),
        ))?;
        legend.push(("loss", LIGHT));
        legend.push(("moving average", DARK));
    } else {
        chart.draw_series(LineSeries::new(
            series.train.iter().copied(),
            DARK.stroke_width(2),
        ))?;
        chart.draw_series(
            series
                .train
                .iter()
                .map(|&p| Circle::new(p, 2, DARK.filled())),
        )?;
        if !series.train.is_empty() {
            legend.push(("loss", DARK));
        }
    }
    if series.val.len() > 1 {
        chart.draw_series(LineSeries::new(series.val.iter().copied(), RED))?;
    }
    chart.draw_series(series.val.iter().map(|&p| Circle::new(p, 4, RED.filled())))?;
    if !series.val.is_empty() {
        legend.push(("validation", RED));
    }

    // Tick labels, right-aligned left of the y axis and centred under the x axis.
    for (&y, label) in yt.iter().zip(&y_labels) {
        let (px, py) = chart.backend_coord(&(x0, y));
        let at = (px - 6 - text::width(label, scale), py - line / 2);
        text::draw(&root, label, at, scale, BLACK)?;
    }
    for &x in &xt {
        let label = format!("{x:.xd$}");
        let (px, py) = chart.backend_coord(&(x, y0));
        let at = (px - text::width(&label, scale) / 2, py + 6);
        text::draw(&root, &label, at, scale, BLACK)?;
    }
    // Title centred on top; axis names: "loss" above the y axis, "update" under the x axis.
    let (w, h) = (size.0 as i32, size.1 as i32);
    let title_at = ((w - text::width(title, scale)).max(4) / 2, 8);
    text::draw(&root, title, title_at, scale, BLACK)?;
    let (ax, ay) = chart.backend_coord(&(x0, y1));
    text::draw(
        &root,
        "loss",
        (ax - text::width("loss", scale) / 2, ay - line - 6),
        scale,
        GREY,
    )?;
    let (bx, _) = chart.backend_coord(&(x0 + (x1 - x0) / 2.0, y0));
    let xlabel = "update (optimiser step)";
    let at = (bx - text::width(xlabel, scale) / 2, h - line - 6);
    text::draw(&root, xlabel, at, scale, GREY)?;
    draw_legend(&root, &legend, chart.backend_coord(&(x1, y1)), scale)?;
    root.present()?;
    Ok(())
}

/// A boxed legend (a colour swatch and a name per row) in the top-right corner of the plot,
/// whose top-right corner is `corner`.
fn draw_legend<DB: DrawingBackend>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    rows: &[(&str, RGBColor)],
    corner: (i32, i32),
    scale: i32,
) -> DrawResult<()>
where
    DB::ErrorType: 'static,
{
    if rows.is_empty() {
        return Ok(());
    }
    let line = text::height(scale);
    let swatch = 3 * line;
    let pad = 4 * scale;
    let widest = rows
        .iter()
        .map(|(n, _)| text::width(n, scale))
        .max()
        .unwrap_or(0);
    let (bw, bh) = (
        pad * 3 + swatch + widest,
        pad + rows.len() as i32 * (line + pad),
    );
    let (bx, by) = (corner.0 - bw - 8, corner.1 + 8);
    root.draw(&Rectangle::new(
        [(bx, by), (bx + bw, by + bh)],
        WHITE.filled(),
    ))?;
    root.draw(&Rectangle::new([(bx, by), (bx + bw, by + bh)], GREY))?;
    for (i, (name, colour)) in rows.iter().enumerate() {
        let y = by + pad + i as i32 * (line + pad);
        let mid = y + line / 2;
        root.draw(&Rectangle::new(
            [(bx + pad, mid - 1), (bx + pad + swatch, mid + 1)],
            colour.filled(),
        ))?;
        text::draw(root, name, (bx + 2 * pad + swatch, y), scale, BLACK)?;
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
        let png = render_png(&one, (320, 200), "one").unwrap();
        let img = image::load_from_memory(&png).unwrap();
        assert_eq!((img.width(), img.height()), (320, 200));
    }

    #[test]
    fn the_plot_has_a_title_axis_names_and_a_legend() {
        let train: Vec<(f64, f64)> = (1..=60)
            .map(|s| {
                (
                    s as f64,
                    3.0 * (-(s as f64) / 15.0).exp() + 0.05 * (s % 3) as f64,
                )
            })
            .collect();
        let val = vec![(20.0, 1.0), (40.0, 0.5), (60.0, 0.4)];
        let series = LossSeries { train, val };
        let render = |title: &str| {
            let png = render_png(&series, DEFAULT_SIZE, title).unwrap();
            image::load_from_memory(&png).unwrap().to_rgb8()
        };
        let (titled, untitled) = (render("training loss: run-a"), render(""));
        let ink = |img: &image::RgbImage, xs: std::ops::Range<u32>, ys: std::ops::Range<u32>| {
            let mut n = 0;
            for y in ys {
                for x in xs.clone() {
                    n += usize::from(img.get_pixel(x, y).0 == [0, 0, 0]);
                }
            }
            n
        };
        let (w, h) = DEFAULT_SIZE;
        // The title is black text in the top band, centred.
        assert!(ink(&titled, w / 4..3 * w / 4, 0..28) > 100);
        assert_eq!(ink(&untitled, w / 4..3 * w / 4, 0..28), 0);
        // The x axis name is grey text along the bottom edge.
        let grey = titled
            .enumerate_pixels()
            .filter(|(_, y, p)| *y > h - 30 && p.0 == [90, 90, 90])
            .count();
        assert!(grey > 50, "{grey}");
        // The legend (top right, where a falling loss never goes): a swatch of each series'
        // colour and black names.
        let corner = |c: [u8; 3]| {
            titled
                .enumerate_pixels()
                .any(|(x, y, p)| x > w - 300 && (50..160).contains(&y) && p.0 == c)
        };
        assert!(corner([150, 180, 230]) && corner([20, 60, 170]) && corner([210, 40, 40]));
        assert!(ink(&titled, w - 300..w - 16, 50..160) > 100);
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
        assert_eq!(text::width("2.5", 2), 48);
    }
}
