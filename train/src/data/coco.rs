//! COCO caption JSON: one example per annotation, with an empty prompt.

use std::collections::HashMap;
use std::io::{BufRead, Read};
use std::path::PathBuf;

use serde_json::Value;

use super::record::{kind, RecordSink};
use crate::error::{Result, TrainError};

/// Reads a COCO caption document into `sink`.
///
/// Records are named `images[i]` / `annotations[i]` (COCO files are often one line, so
/// line numbers would say little). An annotation whose `image_id` has no image entry is
/// malformed. Examples follow the annotation order.
pub(crate) fn read<R: BufRead>(r: R, sink: &mut RecordSink<'_>) -> Result<()> {
    let path = sink.path.to_path_buf();
    let limit = sink.opts.max_document_bytes;
    let mut text = Vec::new();
    r.take(limit.saturating_add(1))
        .read_to_end(&mut text)
        .map_err(|e| TrainError::io(&path, "read", e))?;
    if text.len() as u64 > limit {
        return Err(TrainError::RecordTooLarge {
            path,
            location: "document".into(),
            limit,
        });
    }
    let doc: Value = serde_json::from_slice(&text).map_err(|e| TrainError::BadDataFile {
        path: path.clone(),
        reason: format!("line {}: invalid JSON: {e}", e.line()),
    })?;
    drop(text);
    let bad = |reason: String| TrainError::BadDataFile {
        path: path.clone(),
        reason,
    };
    let obj = doc
        .as_object()
        .ok_or_else(|| bad(format!("expected a COCO object, found {}", kind(&doc))))?;
    let images = obj
        .get("images")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("missing array \"images\"".into()))?;
    let annotations = obj
        .get("annotations")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("missing array \"annotations\"".into()))?;

    let mut files: HashMap<i64, PathBuf> = HashMap::with_capacity(images.len());
    for (i, im) in images.iter().enumerate() {
        let id = im.get("id").and_then(Value::as_i64);
        let name = im.get("file_name").and_then(Value::as_str);
        match (id, name) {
            (Some(id), Some(name)) if !name.is_empty() => {
                if files.insert(id, sink.resolve(name)).is_some() {
                    sink.malformed(format!("images[{i}]"), format!("duplicate image id {id}"))?;
                }
            }
            _ => sink.malformed(
                format!("images[{i}]"),
                "needs an integer \"id\" and a non-empty string \"file_name\"".into(),
            )?,
        }
    }
    for (i, ann) in annotations.iter().enumerate() {
        let image_id = ann.get("image_id").and_then(Value::as_i64);
        let caption = ann.get("caption").and_then(Value::as_str);
        match (image_id, caption) {
            (Some(id), Some(caption)) => match files.get(&id) {
                Some(file) => {
                    let file = file.clone();
                    sink.push(
                        vec![file],
                        String::new(),
                        caption.to_owned(),
                        id,
                        0,
                        i as u64,
                    );
                }
                None => sink.malformed(
                    format!("annotations[{i}]"),
                    format!("image_id {id} has no entry in \"images\""),
                )?,
            },
            _ => sink.malformed(
                format!("annotations[{i}]"),
                "needs an integer \"image_id\" and a string \"caption\"".into(),
            )?,
        }
    }
    Ok(())
}
