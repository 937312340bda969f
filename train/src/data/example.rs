//! One training example and where it came from.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where a record was read from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordSource {
    /// The data file.
    pub file: Arc<Path>,
    /// 1-based line of the start of the record (0 if unknown).
    pub line: u64,
    /// 0-based index of the record in its file (for COCO: of the annotation).
    pub record: u64,
}

impl fmt::Display for RecordSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(
                f,
                "{}:{} (record {})",
                self.file.display(),
                self.line,
                self.record
            )
        } else {
            write!(f, "{} (record {})", self.file.display(), self.record)
        }
    }
}

/// One (images, prompt, answer) triple: usually one image; several when the record's `"img"`
/// is a list (one `<img>` block each, in order).
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    /// The image files (at least one), already resolved against the data file's directory
    /// (or the configured image root).
    pub images: Vec<PathBuf>,
    /// The question / instruction (empty for COCO captions).
    pub prompt: String,
    /// The target text.
    pub label: String,
    /// An image identity for ITC's image-id soft targets: the COCO `image_id`, or for the
    /// list/JSONL formats a dense index of distinct image lists in order of first appearance.
    pub image_id: i64,
    /// Where the record was read from.
    pub source: RecordSource,
}

impl Example {
    /// The first (usually the only) image.
    pub fn image(&self) -> &Path {
        self.images.first().map_or(Path::new(""), PathBuf::as_path)
    }
}
