//! A synthetic image-text data set for quick from-scratch experiments: scenes of coloured
//! shapes with captions that state their colours, shapes and positions.

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

/// Draws one scene: a shape on the left half and one on the right half of a `size`² image on a
/// grey background, and its caption.
pub fn scene(rng: &mut ChaCha8Rng, size: u32) -> (RgbImage, String) {
    let mut img = RgbImage::from_pixel(size, size, Rgb([90, 90, 90]));
    let mut parts = Vec::new();
    for (side, x0) in [("left", 0), ("right", size / 2)] {
        let (cname, rgb) = COLORS[rng.random_range(0..COLORS.len())];
        let shape = SHAPES[rng.random_range(0..SHAPES.len())];
        let half = size / 2;
        let r = (half as f32 * rng.random_range(0.25..0.4)) as i64;
        let cx = i64::from(x0 + half / 2) + rng.random_range(-(r / 3)..=(r / 3));
        let cy = i64::from(size / 2) + rng.random_range(-(r / 2)..=(r / 2));
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
) -> Result<SynthSummary> {
    if count == 0 || size < 16 || !(0.0..1.0).contains(&val_fraction) {
        return Err(VisualGlmError::Input(
            "need count ≥ 1, size ≥ 16 and 0 ≤ val_fraction < 1".into(),
        ));
    }
    let images = out.join("images");
    std::fs::create_dir_all(&images)
        .map_err(|e| VisualGlmError::Input(format!("cannot create {}: {e}", images.display())))?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut records = Vec::with_capacity(count);
    for i in 0..count {
        let (img, caption) = scene(&mut rng, size);
        let name = format!("images/{i:06}.png");
        img.save(out.join(&name))
            .map_err(|e| VisualGlmError::Input(format!("cannot write {name}: {e}")))?;
        records.push(SynthRecord {
            img: name,
            prompt: SYNTH_PROMPT.into(),
            label: caption,
        });
    }
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

fn write_json_atomic(path: &Path, records: &[SynthRecord]) -> Result<()> {
    let text = serde_json::to_string_pretty(records)
        .map_err(|e| VisualGlmError::Input(format!("{}: {e}", path.display())))?;
    visualglm_language::fs::write_atomic(path, text.as_bytes())
        .map_err(|e| VisualGlmError::Input(format!("cannot write {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenes_are_reproducible_and_captions_name_what_is_drawn() {
        let mut a = ChaCha8Rng::seed_from_u64(3);
        let mut b = ChaCha8Rng::seed_from_u64(3);
        let (ia, ca) = scene(&mut a, 64);
        let (ib, cb) = scene(&mut b, 64);
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
}
