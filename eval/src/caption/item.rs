//! Image ids and the unit of caption scoring.

use std::fmt;

use serde::{Deserialize, Serialize};

/// An image id as written in the input files: a JSON integer or string.
///
/// Predictions and references are matched by the id's text, so `5` and `"5"` are the same
/// image; the original JSON form is kept for the report.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ImageId {
    /// A numeric id (COCO uses these).
    Int(i64),
    /// A textual id.
    Str(String),
}

impl ImageId {
    /// The matching key: the id's text.
    pub fn key(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for ImageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageId::Int(i) => write!(f, "{i}"),
            ImageId::Str(s) => f.write_str(s),
        }
    }
}

/// One image to score: the candidate caption and its reference captions (raw text).
#[derive(Debug, Clone, PartialEq)]
pub struct CaptionItem {
    /// The image id.
    pub image_id: ImageId,
    /// The generated caption.
    pub candidate: String,
    /// The ground-truth captions (at least one).
    pub references: Vec<String>,
}
