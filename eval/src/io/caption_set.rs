//! Caption predictions matched with their references, by image id or by image path.
//!
//! References are a COCO annotation JSON, JSONL `{"image_id", "captions"}`, or the release's
//! fine-tuning data, `[{"img", "prompt", "label"}]` (a JSON list, or JSONL), as `visualglm data
//! synth` writes and `eval captions` reads: the labels of an image are its references, its
//! path (relative paths resolved against the data file's directory, or `image_root`) its
//! identity, and its id the position of its first record among the file's distinct images
//! (the `image_id` that `eval captions --predictions-out` writes).
//!
//! Predictions are `{"image_id" | "id", "caption"}` and/or `{"image", "caption"}` records
//! (`visualglm batch` writes `{"image", "caption"}`). A prediction with an `"image"` is matched
//! by path when the references have paths: paths are compared after resolving symlinks and
//! `.`/`..` (relative ones from the current directory, else from the predictions file's); an
//! `image_id` it also carries must then be that image's. Otherwise it is matched by id.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::records::{read_records, Record};
use crate::caption::{CaptionItem, ImageId};
use crate::error::{EvalError, Result};

/// One predicted caption and the image it is for.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    /// `"image_id"` (or `"id"`).
    pub image_id: Option<ImageId>,
    /// `"image"`: the image's path.
    pub image: Option<String>,
    /// The caption.
    pub caption: String,
}

/// The reference captions of one image.
#[derive(Debug, Clone, PartialEq)]
pub struct References {
    /// The image's id: the file's `image_id`, or for release records its position among the
    /// file's distinct images.
    pub image_id: ImageId,
    /// For release records, the image's path as written (`"img"`) and resolved.
    pub image: Option<(String, PathBuf)>,
    /// The captions (at least one).
    pub captions: Vec<String>,
}

impl References {
    /// How the image is named in messages and reports: its path as written, else its id.
    fn name(&self) -> ImageId {
        match &self.image {
            Some((written, _)) => ImageId::Str(written.clone()),
            None => self.image_id.clone(),
        }
    }
}

/// Predictions matched with references.
#[derive(Debug, Clone, PartialEq)]
pub struct CaptionSet {
    /// One item per prediction, in prediction order.
    pub items: Vec<CaptionItem>,
    /// The images that have references but no prediction, in reference order (not scored).
    pub unpredicted: Vec<ImageId>,
}

/// Options of [`read_caption_set_with`].
#[derive(Debug, Clone, Default)]
pub struct CaptionSetOptions {
    /// Directory relative `"img"` paths of release references are resolved against (default:
    /// the references file's directory).
    pub image_root: Option<PathBuf>,
}

/// Any record of a predictions or references file.
#[derive(Deserialize)]
struct AnyRecord {
    image_id: Option<ImageId>,
    id: Option<ImageId>,
    image: Option<String>,
    img: Option<ImgField>,
    caption: Option<String>,
    captions: Option<Vec<String>>,
    label: Option<String>,
}

/// A release record's `"img"`: one path, or a list (a multi-image record).
#[derive(Deserialize)]
#[serde(untagged)]
enum ImgField {
    One(String),
    Many(Vec<String>),
}

/// How the paths of a multi-image record are joined into one name (as `visualglm eval
/// captions` writes a set's `"image"` in its predictions).
pub const IMAGE_SET_SEPARATOR: &str = " + ";

fn content(path: &Path, location: &str, message: impl std::fmt::Display) -> EvalError {
    EvalError::Content {
        path: path.to_path_buf(),
        message: format!("{location}: {message}"),
    }
}

/// Reads predictions, in file order; each needs a `"caption"` and an `"image_id"` (or
/// `"id"`) or an `"image"`.
pub fn read_predictions(path: &Path) -> Result<Vec<Record<Prediction>>> {
    let records: Vec<Record<AnyRecord>> = read_records(path, None)?;
    records
        .into_iter()
        .map(|r| {
            let v = r.value;
            let image_id = v.image_id.or(v.id);
            if image_id.is_none() && v.image.is_none() {
                return Err(content(
                    path,
                    &r.location,
                    "missing \"image_id\" (or \"id\", or \"image\")",
                ));
            }
            let caption = v
                .caption
                .ok_or_else(|| content(path, &r.location, "missing \"caption\""))?;
            Ok(Record {
                location: r.location,
                value: Prediction {
                    image_id,
                    image: v.image,
                    caption,
                },
            })
        })
        .collect()
}

/// Reads references grouped by image, in order of first appearance.
pub fn read_references(path: &Path, image_root: Option<&Path>) -> Result<Vec<References>> {
    let records: Vec<Record<AnyRecord>> = read_records(path, Some("annotations"))?;
    let root = match image_root {
        Some(root) => root.to_path_buf(),
        None => path.parent().map(Path::to_path_buf).unwrap_or_default(),
    };
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut out: Vec<References> = Vec::new();
    let mut images = 0i64;
    for r in records {
        let v = r.value;
        let mut captions = v.captions.unwrap_or_default();
        captions.extend(v.caption);
        captions.extend(v.label);
        if captions.is_empty() {
            let what = "no \"caption\", \"captions\" or \"label\"";
            return Err(content(path, &r.location, what));
        }
        let (key, image_id, image) = match (v.img, v.image_id.or(v.id)) {
            (Some(img), _) => {
                let paths = match img {
                    ImgField::One(p) => vec![p],
                    ImgField::Many(ps) => ps,
                };
                let img = paths.join(IMAGE_SET_SEPARATOR);
                let resolved = PathBuf::from(
                    paths
                        .iter()
                        .map(|p| root.join(p).display().to_string())
                        .collect::<Vec<_>>()
                        .join(IMAGE_SET_SEPARATOR),
                );
                let key = format!("path {}", set_key(&resolved, path_key).display());
                let id = ImageId::Int(images);
                (key, id, Some((img, resolved)))
            }
            (None, Some(id)) => (format!("id {}", id.key()), id, None),
            (None, None) => {
                let what = "missing \"image_id\" (or \"img\")";
                return Err(content(path, &r.location, what));
            }
        };
        let slot = *index.entry(key).or_insert_with(|| {
            if image.is_some() {
                images += 1;
            }
            out.push(References {
                image_id,
                image,
                captions: Vec::new(),
            });
            out.len() - 1
        });
        if let Some(group) = out.get_mut(slot) {
            group.captions.extend(captions);
        }
    }
    if out.is_empty() {
        return Err(EvalError::Content {
            path: path.to_path_buf(),
            message: "no reference captions".into(),
        });
    }
    Ok(out)
}

/// The identity of an image path: canonical when the file exists, else absolute.
/// The key of an image or of a set of images (paths joined by [`IMAGE_SET_SEPARATOR`]): each
/// path's `key`, joined the same way.
fn set_key(name: &Path, key: impl Fn(&Path) -> PathBuf) -> PathBuf {
    let text = name.to_string_lossy();
    if !text.contains(IMAGE_SET_SEPARATOR) {
        return key(name);
    }
    let keys: Vec<String> = text
        .split(IMAGE_SET_SEPARATOR)
        .map(|p| key(Path::new(p)).display().to_string())
        .collect();
    PathBuf::from(keys.join(IMAGE_SET_SEPARATOR))
}

fn path_key(path: &Path) -> PathBuf {
    std::fs::canonicalize(path)
        .or_else(|_| std::path::absolute(path))
        .unwrap_or_else(|_| path.to_path_buf())
}

/// The identity of a prediction's image: relative paths from the current directory, or when
/// nothing is there, from the predictions file's directory.
fn prediction_key(image: &str, predictions_path: &Path) -> PathBuf {
    let p = Path::new(image);
    if p.is_relative() && !p.exists() {
        if let Some(beside) = predictions_path.parent().map(|d| d.join(p)) {
            if beside.exists() {
                return path_key(&beside);
            }
        }
    }
    path_key(p)
}

/// Matches predictions with references (see the module docs). A prediction without
/// references, or a second prediction of an image, is an error; references without a
/// prediction are listed in [`CaptionSet::unpredicted`].
pub fn match_captions(
    predictions: Vec<Record<Prediction>>,
    references: Vec<References>,
    predictions_path: &Path,
    references_path: &Path,
) -> Result<CaptionSet> {
    let mut by_id: HashMap<String, usize> = HashMap::new();
    let mut by_path: HashMap<PathBuf, usize> = HashMap::new();
    for (i, r) in references.iter().enumerate() {
        by_id.entry(r.image_id.key()).or_insert(i);
        if let Some((_, resolved)) = &r.image {
            by_path.entry(set_key(resolved, path_key)).or_insert(i);
        }
    }
    let mut predicted: Vec<Option<String>> = vec![None; references.len()];
    let mut items = Vec::with_capacity(predictions.len());
    for p in predictions {
        let Prediction {
            image_id,
            image,
            caption,
        } = p.value;
        let at = |message: String| content(predictions_path, &p.location, message);
        let no_refs = |name: &dyn std::fmt::Display| {
            at(format!(
                "image {name} has no references in {}",
                references_path.display()
            ))
        };
        let slot = match (&image, &image_id) {
            (Some(image), _) if !by_path.is_empty() => {
                let slot = *by_path
                    .get(&set_key(Path::new(image), |p| {
                        prediction_key(&p.to_string_lossy(), predictions_path)
                    }))
                    .ok_or_else(|| no_refs(image))?;
                let want = &references[slot].image_id;
                if let Some(id) = image_id.as_ref().filter(|id| id.key() != want.key()) {
                    return Err(at(format!(
                        "image {image} has image_id {id} here but {want} in {}",
                        references_path.display()
                    )));
                }
                slot
            }
            (_, Some(id)) => *by_id.get(&id.key()).ok_or_else(|| no_refs(id))?,
            (Some(image), None) => {
                return Err(at(format!(
                    "image {image} has no \"image_id\", and {} names no image paths to \
                     match it by (release records {{\"img\", \"label\"}} do)",
                    references_path.display()
                )))
            }
            (None, None) => return Err(at("no \"image_id\" or \"image\"".into())),
        };
        let refs = &references[slot];
        if let Some(first) = predicted[slot].replace(p.location.clone()) {
            return Err(at(format!(
                "image {} already has a prediction ({first})",
                refs.name()
            )));
        }
        items.push(CaptionItem {
            image_id: refs.name(),
            candidate: caption,
            references: refs.captions.clone(),
        });
    }
    if items.is_empty() {
        return Err(EvalError::Content {
            path: predictions_path.to_path_buf(),
            message: "no predictions".into(),
        });
    }
    let unpredicted = references
        .iter()
        .zip(&predicted)
        .filter(|(_, p)| p.is_none())
        .map(|(r, _)| r.name())
        .collect();
    Ok(CaptionSet { items, unpredicted })
}

/// Reads both files and matches them ([`match_captions`]).
pub fn read_caption_set_with(
    predictions: &Path,
    references: &Path,
    opts: &CaptionSetOptions,
) -> Result<CaptionSet> {
    let preds = read_predictions(predictions)?;
    let refs = read_references(references, opts.image_root.as_deref())?;
    match_captions(preds, refs, predictions, references)
}
