//! A synthetic image-text data set for quick from-scratch experiments: scenes of coloured
//! shapes with captions that state their colours, shapes and positions; and a two-image task
//! ([`write_pairs_dataset`]: "which image has more shapes?") for multi-image prompts.

use std::path::{Path, PathBuf};

use image::{Rgb, RgbImage};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::error::{Result, VisualGlmError};

/// Colour names and their RGB values.
pub const COLORS: [(&str, [u8; 3]); 6] = [
    ("red", [220, 30, 30]),
    ("green", [30, 180, 60]),
    ("blue", [40, 70, 220]),
    ("yellow", [235, 215, 40]),
    ("purple", [140, 50, 170]),
    ("white", [245, 245, 245]),
];
/// Shape names.
pub const SHAPES: [&str; 3] = ["circle", "square", "triangle"];

/// One record in the release's fine-tune format.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SynthRecord {
    /// Image path, relative to the data file.
    pub img: String,
    /// The question.
    pub prompt: String,
    /// The caption.
    pub label: String,
}

/// What was written.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthSummary {
    /// `train.json`.
    pub train: PathBuf,
    /// `val.json`.
    pub val: PathBuf,
    /// Records in each.
    pub counts: (usize, usize),
}

/// The question every synthetic record asks.
pub const SYNTH_PROMPT: &str = "Describe the image.";

/// How much the scenes vary: the shape radius as a fraction of the half-image width, and how far
/// a shape's centre may move from the middle of its half, as a fraction of its radius.
///
/// The default (radius 0.35, jitter 0.15) is what the tiny from-scratch model learns within
/// the CPU budget; larger ranges make a harder task (`0.25..0.4` with jitter 0.4 is about the
/// first version of this data set), see the README.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SceneStyle {
    /// Smallest radius, as a fraction of half the image width.
    pub radius_min: f32,
    /// Largest radius (equal to `radius_min` for a fixed size).
    pub radius_max: f32,
    /// Largest centre offset in x and y, as a fraction of the radius.
    pub jitter: f32,
}

impl Default for SceneStyle {
    fn default() -> Self {
        Self {
            radius_min: 0.35,
            radius_max: 0.35,
            jitter: 0.15,
        }
    }
}

impl SceneStyle {
    /// Checks the ranges: `0 < radius_min ≤ radius_max ≤ 0.5` and `0 ≤ jitter ≤ 1`.
    pub fn validate(&self) -> Result<()> {
        let ok = self.radius_min > 0.0
            && self.radius_min <= self.radius_max
            && self.radius_max <= 0.5
            && (0.0..=1.0).contains(&self.jitter);
        if ok {
            Ok(())
        } else {
            Err(VisualGlmError::Input(format!(
                "need 0 < radius_min ≤ radius_max ≤ 0.5 and 0 ≤ jitter ≤ 1, got {self:?}"
            )))
        }
    }
}

/// Draws one scene: a shape on the left half and one on the right half of a `size`² image on a
/// grey background, and its caption.
pub fn scene(rng: &mut ChaCha8Rng, size: u32, style: &SceneStyle) -> (RgbImage, String) {
    scene_in(rng, size, style, [true, true])
}

/// [`scene`] with a shape only in the halves `filled` says (left, right).
fn scene_in(
    rng: &mut ChaCha8Rng,
    size: u32,
    style: &SceneStyle,
    filled: [bool; 2],
) -> (RgbImage, String) {
    let mut img = RgbImage::from_pixel(size, size, Rgb([90, 90, 90]));
    let mut parts = Vec::new();
    for ((side, x0), _) in [("left", 0), ("right", size / 2)]
        .into_iter()
        .zip(filled)
        .filter(|(_, f)| *f)
    {
        let (cname, rgb) = COLORS[rng.random_range(0..COLORS.len())];
        let shape = SHAPES[rng.random_range(0..SHAPES.len())];
        let half = size / 2;
        let frac = if style.radius_max > style.radius_min {
            rng.random_range(style.radius_min..style.radius_max)
        } else {
            style.radius_min
        };
        let r = ((half as f32 * frac) as i64).max(1);
        let j = (r as f32 * style.jitter) as i64;
        let cx = i64::from(x0 + half / 2) + rng.random_range(-j..=j);
        let cy = i64::from(size / 2) + rng.random_range(-j..=j);
        draw(&mut img, shape, cx, cy, r, Rgb(rgb));
        parts.push(format!("a {cname} {shape} on the {side}"));
    }
    (img, parts.join(" and "))
}

fn draw(img: &mut RgbImage, shape: &str, cx: i64, cy: i64, r: i64, color: Rgb<u8>) {
    let (w, h) = (i64::from(img.width()), i64::from(img.height()));
    for y in (cy - r).max(0)..(cy + r + 1).min(h) {
        for x in (cx - r).max(0)..(cx + r + 1).min(w) {
            let (dx, dy) = (x - cx, y - cy);
            let inside = match shape {
                "circle" => dx * dx + dy * dy <= r * r,
                "square" => dx.abs() <= r * 3 / 4 && dy.abs() <= r * 3 / 4,
                // Apex up: the half-width grows linearly from the top row to the bottom.
                _ => dy >= -r && dy <= r && 2 * dx.abs() <= dy + r,
            };
            if inside {
                img.put_pixel(x as u32, y as u32, color);
            }
        }
    }
}

/// Writes `count` scenes under `out/images/` and `train.json` / `val.json` (the last
/// `val_fraction` of the scenes) in the release's `[{"img", "prompt", "label"}]` format.
pub fn write_dataset(
    out: &Path,
    count: usize,
    val_fraction: f64,
    seed: u64,
    size: u32,
    style: &SceneStyle,
) -> Result<SynthSummary> {
    check_sizes(style, count, size, val_fraction)?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut records = Vec::with_capacity(count);
    for i in 0..count {
        let (img, caption) = scene(&mut rng, size, style);
        let name = format!("images/{i:06}.png");
        write_png(out, &name, &img)?;
        records.push(SynthRecord {
            img: name,
            prompt: SYNTH_PROMPT.into(),
            label: caption,
        });
    }
    write_split(out, &records, val_fraction)
}

/// The question of every two-image record.
pub const PAIRS_PROMPT: &str = "Which image has more shapes?";
/// The answers of the two-image records: the first image has more shapes, or the second.
pub const PAIRS_ANSWERS: [&str; 2] = ["the first", "the second"];

/// One two-image record: `"img"` is a list.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PairRecord {
    /// The two image paths, relative to the data file.
    pub img: [String; 2],
    /// The question ([`PAIRS_PROMPT`]).
    pub prompt: String,
    /// The answer (one of [`PAIRS_ANSWERS`]).
    pub label: String,
}

/// Writes `count` two-image records asking "which image has more shapes?": one image holds one
/// shape (in a random half), the other two, in random order (chance is 50 %). Same layout and
/// files as [`write_dataset`]; the shapes are drawn as there.
pub fn write_pairs_dataset(
    out: &Path,
    count: usize,
    val_fraction: f64,
    seed: u64,
    size: u32,
    style: &SceneStyle,
) -> Result<SynthSummary> {
    check_sizes(style, count, size, val_fraction)?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut records = Vec::with_capacity(count);
    for i in 0..count {
        let more = rng.random_range(0..2usize);
        let one_side = if rng.random_bool(0.5) {
            [true, false]
        } else {
            [false, true]
        };
        let mut names = [String::new(), String::new()];
        for (k, name) in names.iter_mut().enumerate() {
            let filled = if k == more { [true, true] } else { one_side };
            let (img, _) = scene_in(&mut rng, size, style, filled);
            *name = format!("images/{i:06}-{k}.png");
            write_png(out, name, &img)?;
        }
        records.push(PairRecord {
            img: names,
            prompt: PAIRS_PROMPT.into(),
            label: PAIRS_ANSWERS[more].into(),
        });
    }
    write_split(out, &records, val_fraction)
}

fn check_sizes(style: &SceneStyle, count: usize, size: u32, val_fraction: f64) -> Result<()> {
    style.validate()?;
    if count == 0 || size < 16 || !(0.0..1.0).contains(&val_fraction) {
        return Err(VisualGlmError::Input(
            "need count ≥ 1, size ≥ 16 and 0 ≤ val_fraction < 1".into(),
        ));
    }
    Ok(())
}

/// Writes `img` as PNG to `out/name` (atomically), creating its folder.
fn write_png(out: &Path, name: &str, img: &RgbImage) -> Result<()> {
    let path = out.join(name);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(VisualGlmError::io("cannot create", dir))?;
    }
    let mut png = std::io::Cursor::new(Vec::new());
    img.write_to(&mut png, image::ImageFormat::Png)
        .map_err(|e| VisualGlmError::io("cannot encode", &path)(std::io::Error::other(e)))?;
    visualglm_files::write_atomic_bytes(&path, png.get_ref())
        .map_err(|e| VisualGlmError::io("cannot write", &path)(e.source))
}

/// Writes `train.json` and `val.json` (the last `val_fraction` of `records`).
fn write_split<R: Serialize>(out: &Path, records: &[R], val_fraction: f64) -> Result<SynthSummary> {
    let count = records.len();
    let n_val = ((count as f64) * val_fraction).round() as usize;
    let split = count - n_val;
    let train = out.join("train.json");
    let val = out.join("val.json");
    write_json_atomic(&train, &records[..split])?;
    write_json_atomic(&val, &records[split..])?;
    Ok(SynthSummary {
        train,
        val,
        counts: (split, n_val),
    })
}

fn write_json_atomic<R: Serialize>(path: &Path, records: &[R]) -> Result<()> {
    let text = serde_json::to_string_pretty(records)
        .map_err(|e| VisualGlmError::io("cannot encode", path)(std::io::Error::other(e)))?;
    visualglm_files::write_atomic_bytes(path, text.as_bytes())
        .map_err(|e| VisualGlmError::io("cannot write", path)(e.source))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenes_are_reproducible_and_captions_name_what_is_drawn() {
        let mut a = ChaCha8Rng::seed_from_u64(3);
        let mut b = ChaCha8Rng::seed_from_u64(3);
        let style = SceneStyle::default();
        let (ia, ca) = scene(&mut a, 64, &style);
        let (ib, cb) = scene(&mut b, 64, &style);
        assert_eq!(ca, cb);
        assert_eq!(ia.as_raw(), ib.as_raw());
        assert!(
            ca.contains("on the left") && ca.contains("on the right"),
            "{ca}"
        );
        // The left shape's colour appears in the left half.
        let left_color = COLORS
            .iter()
            .find(|(n, _)| ca.starts_with(&format!("a {n} ")))
            .map(|c| c.1)
            .unwrap();
        let found = (0..32).any(|x| (0..64).any(|y| ia.get_pixel(x, y).0 == left_color));
        assert!(found, "{ca}");
    }

    #[test]
    fn pairs_hold_one_and_two_shapes_and_the_answer_names_the_fuller() {
        let dir = tempfile::tempdir().unwrap();
        let style = SceneStyle::default();
        write_pairs_dataset(dir.path(), 40, 0.25, 5, 64, &style).unwrap();
        let train: Vec<serde_json::Value> =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join("train.json")).unwrap())
                .unwrap();
        assert_eq!(train.len(), 30);
        let grey = |name: &str| -> usize {
            let img = image::open(dir.path().join(name)).unwrap().to_rgb8();
            img.pixels().filter(|p| p.0 == [90, 90, 90]).count()
        };
        let mut firsts = 0;
        for r in &train {
            let imgs = r["img"].as_array().unwrap();
            let (a, b) = (imgs[0].as_str().unwrap(), imgs[1].as_str().unwrap());
            // The image with two shapes has fewer background pixels.
            let want = if grey(a) < grey(b) {
                "the first"
            } else {
                "the second"
            };
            assert_eq!(r["label"], want, "{r}");
            assert_eq!(r["prompt"], PAIRS_PROMPT);
            firsts += usize::from(want == "the first");
        }
        assert!(
            firsts > 5 && firsts < 25,
            "{firsts} of 30 answers are \"the first\""
        );
    }

    #[test]
    fn style_ranges_are_checked_and_jitter_moves_shapes() {
        let bad = SceneStyle {
            radius_min: 0.4,
            radius_max: 0.3,
            jitter: 0.1,
        };
        assert!(bad.validate().is_err());
        let dir = tempfile::tempdir().unwrap();
        assert!(write_dataset(dir.path(), 2, 0.0, 0, 64, &bad).is_err());
        // Without jitter and with a fixed radius, every scene draws its shapes in one place:
        // the grey pixels of two scenes with the same shapes coincide.
        let fixed = SceneStyle {
            jitter: 0.0,
            ..SceneStyle::default()
        };
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let scenes: Vec<_> = (0..60).map(|_| scene(&mut rng, 64, &fixed)).collect();
        let grey =
            |img: &RgbImage| -> Vec<bool> { img.pixels().map(|p| p.0 == [90, 90, 90]).collect() };
        let shapes_of = |c: &str| -> Vec<String> {
            c.split(' ')
                .filter(|w| SHAPES.contains(w))
                .map(String::from)
                .collect()
        };
        let mut compared = 0;
        for i in 0..scenes.len() {
            for k in i + 1..scenes.len() {
                if shapes_of(&scenes[i].1) == shapes_of(&scenes[k].1) {
                    assert_eq!(grey(&scenes[i].0), grey(&scenes[k].0));
                    compared += 1;
                }
            }
        }
        assert!(compared > 0);
    }
}
