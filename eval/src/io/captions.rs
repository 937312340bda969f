//! Caption predictions and references.
//!
//! Predictions: JSONL with `{"image_id" | "id": ..., "caption": "..."}` per line, or a COCO
//! result JSON `[{"image_id": ..., "caption": "..."}]`.
//! References: COCO annotation JSON `{"annotations": [{"image_id", "caption"}], ...}`, JSONL
//! with `{"image_id": ..., "captions": ["...", ...]}` per line (a line may also carry a
//! single `"caption"`; repeated ids accumulate), or the release's `{"img", "prompt", "label"}`
//! records ([`super::caption_set`], which also matches predictions by image path).

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;

use super::caption_set::{read_caption_set_with, read_references, CaptionSetOptions};
use super::records::{read_records, Record};
use crate::caption::{CaptionItem, ImageId};
use crate::error::{EvalError, Result};

#[derive(Deserialize)]
struct CaptionRecord {
    image_id: Option<ImageId>,
    id: Option<ImageId>,
    caption: Option<String>,
}

impl CaptionRecord {
    fn image_id(&self) -> Option<&ImageId> {
        self.image_id.as_ref().or(self.id.as_ref())
    }
}

fn content(path: &Path, location: &str, message: impl std::fmt::Display) -> EvalError {
    EvalError::Content {
        path: path.to_path_buf(),
        message: format!("{location}: {message}"),
    }
}

/// Reads predictions: `(image id, caption)` per record, in file order.
pub fn read_caption_predictions(path: &Path) -> Result<Vec<Record<(ImageId, String)>>> {
    let records: Vec<Record<CaptionRecord>> = read_records(path, None)?;
    records
        .into_iter()
        .map(|r| {
            let id =
                r.value.image_id().cloned().ok_or_else(|| {
                    content(path, &r.location, "missing \"image_id\" (or \"id\")")
                })?;
            let caption = r
                .value
                .caption
                .ok_or_else(|| content(path, &r.location, "missing \"caption\""))?;
            Ok(Record {
                location: r.location,
                value: (id, caption),
            })
        })
        .collect()
}

/// Reads references grouped by image, in order of first appearance (also the release's
/// `{"img", "prompt", "label"}` records: see [`super::caption_set`]).
pub fn read_caption_references(path: &Path) -> Result<Vec<(ImageId, Vec<String>)>> {
    Ok(read_references(path, None)?
        .into_iter()
        .map(|r| (r.image_id, r.captions))
        .collect())
}

/// Joins predictions with their references, in prediction order.
///
/// Every prediction needs references; an image predicted twice is an error. References for
/// images without a prediction are ignored (as `COCOEvalCap` evaluates the result's images).
pub fn pair_captions(
    predictions: Vec<Record<(ImageId, String)>>,
    references: Vec<(ImageId, Vec<String>)>,
    predictions_path: &Path,
    references_path: &Path,
) -> Result<Vec<CaptionItem>> {
    let mut refs: HashMap<String, Vec<String>> = references
        .into_iter()
        .map(|(id, caps)| (id.key(), caps))
        .collect();
    let mut seen: HashMap<String, String> = HashMap::new();
    let mut items = Vec::with_capacity(predictions.len());
    for p in predictions {
        let (image_id, candidate) = p.value;
        let key = image_id.key();
        if let Some(first) = seen.insert(key.clone(), p.location.clone()) {
            return Err(content(
                predictions_path,
                &p.location,
                format!("image {image_id} already has a prediction ({first})"),
            ));
        }
        let references = refs.remove(&key).ok_or_else(|| {
            content(
                predictions_path,
                &p.location,
                format!(
                    "image {image_id} has no references in {}",
                    references_path.display()
                ),
            )
        })?;
        items.push(CaptionItem {
            image_id,
            candidate,
            references,
        });
    }
    if items.is_empty() {
        return Err(EvalError::Content {
            path: predictions_path.to_path_buf(),
            message: "no predictions".into(),
        });
    }
    Ok(items)
}

/// Reads both files and matches them by image id or path
/// ([`read_caption_set_with`]); references
/// without a prediction are left out.
pub fn read_caption_set(predictions: &Path, references: &Path) -> Result<Vec<CaptionItem>> {
    Ok(read_caption_set_with(predictions, references, &CaptionSetOptions::default())?.items)
}
