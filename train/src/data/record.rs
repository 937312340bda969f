//! Options, the load report and the shared record rules for all data readers.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;

use super::example::{Example, RecordSource};
use crate::error::{Result, TrainError};

/// How data files are read.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Skip (and count) malformed records instead of failing on the first one.
    pub skip_malformed: bool,
    /// The largest JSONL line / JSON-list record accepted, in bytes (default 16 MiB).
    /// Larger ones are refused without being buffered.
    pub max_record_bytes: usize,
    /// The largest COCO document accepted, in bytes (default 1 GiB); COCO JSON is parsed
    /// as one document.
    pub max_document_bytes: u64,
    /// Directory that relative image paths are resolved against. `None` (the default)
    /// means the directory containing the data file.
    pub image_root: Option<PathBuf>,
    /// How many skipped-record messages [`LoadReport`] keeps (default 32).
    pub max_reported_skips: usize,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            skip_malformed: false,
            max_record_bytes: 16 << 20,
            max_document_bytes: 1 << 30,
            image_root: None,
            max_reported_skips: 32,
        }
    }
}

/// What a load did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Examples produced.
    pub loaded: usize,
    /// Malformed records skipped (only with `skip_malformed`).
    pub skipped: usize,
    /// The first `max_reported_skips` skip messages (file, line/record, reason).
    pub skip_messages: Vec<String>,
}

/// Collects examples, applying the shared rules: path resolution, image ids and the
/// skip-or-fail policy.
pub(crate) struct RecordSink<'a> {
    pub(crate) path: Arc<Path>,
    pub(crate) opts: &'a LoadOptions,
    base_dir: PathBuf,
    examples: Vec<Example>,
    report: LoadReport,
    image_ids: HashMap<Vec<PathBuf>, i64>,
}

impl<'a> RecordSink<'a> {
    /// An empty sink for the records of `path`.
    pub(crate) fn new(path: &Path, opts: &'a LoadOptions) -> Self {
        let base_dir = match &opts.image_root {
            Some(root) => root.clone(),
            None => path.parent().map(Path::to_path_buf).unwrap_or_default(),
        };
        Self {
            path: Arc::from(path),
            opts,
            base_dir,
            examples: Vec::new(),
            report: LoadReport::default(),
            image_ids: HashMap::new(),
        }
    }

    /// The examples collected and the report.
    pub(crate) fn finish(mut self) -> (Vec<Example>, LoadReport) {
        self.report.loaded = self.examples.len();
        (self.examples, self.report)
    }

    /// Resolves an image path from a record against the base directory.
    pub(crate) fn resolve(&self, img: &str) -> PathBuf {
        let p = Path::new(img);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }

    /// `location` for a record starting at `line` (0 = unknown) with index `record`.
    pub(crate) fn location(line: u64, record: u64) -> String {
        if line > 0 {
            format!("{line} (record {record})")
        } else {
            format!("record {record}")
        }
    }

    /// Handles a bad record: an error, or (with `skip_malformed`) a counted skip.
    pub(crate) fn malformed(&mut self, location: String, reason: String) -> Result<()> {
        let err = TrainError::MalformedRecord {
            path: self.path.to_path_buf(),
            location,
            reason,
        };
        self.skip_or_fail(err)
    }

    /// Skips `err` if allowed, else returns it.
    pub(crate) fn skip_or_fail(&mut self, err: TrainError) -> Result<()> {
        if !self.opts.skip_malformed {
            return Err(err);
        }
        self.report.skipped += 1;
        if self.report.skip_messages.len() < self.opts.max_reported_skips {
            self.report.skip_messages.push(err.to_string());
        }
        tracing::warn!("skipping: {err}");
        Ok(())
    }

    /// Adds a `{"img","prompt","label"}` record (list / JSONL formats).
    pub(crate) fn push_release_record(
        &mut self,
        value: Value,
        line: u64,
        record: u64,
    ) -> Result<()> {
        match parse_release_record(&value) {
            Ok((imgs, prompt, label)) => {
                let images: Vec<PathBuf> = imgs.iter().map(|i| self.resolve(i)).collect();
                let next = self.image_ids.len() as i64;
                let image_id = *self.image_ids.entry(images.clone()).or_insert(next);
                let (prompt, label) = (prompt.to_owned(), label.to_owned());
                self.push(images, prompt, label, image_id, line, record);
                Ok(())
            }
            Err(reason) => self.malformed(Self::location(line, record), reason),
        }
    }

    /// Adds an already validated example.
    pub(crate) fn push(
        &mut self,
        images: Vec<PathBuf>,
        prompt: String,
        label: String,
        image_id: i64,
        line: u64,
        record: u64,
    ) {
        self.examples.push(Example {
            images,
            prompt,
            label,
            image_id,
            source: RecordSource {
                file: self.path.clone(),
                line,
                record,
            },
        });
    }
}

/// Checks one release record; returns `(images, prompt, label)` or why it is malformed.
/// `"img"` is a path, or a non-empty list of paths (a multi-image example).
fn parse_release_record(v: &Value) -> std::result::Result<(Vec<&str>, &str, &str), String> {
    let obj = v
        .as_object()
        .ok_or_else(|| format!("expected an object, found {}", kind(v)))?;
    let field = |name: &str| -> std::result::Result<&str, String> {
        match obj.get(name) {
            Some(Value::String(s)) => Ok(s.as_str()),
            Some(other) => Err(format!(
                "field \"{name}\" must be a string, found {}",
                kind(other)
            )),
            None => Err(format!("missing field \"{name}\"")),
        }
    };
    let images = match obj.get("img") {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::String(s) => Ok(s.as_str()),
                other => Err(format!(
                    "field \"img\"[{i}] must be a string, found {}",
                    kind(other)
                )),
            })
            .collect::<std::result::Result<Vec<_>, _>>()?,
        Some(other) => {
            return Err(format!(
                "field \"img\" must be a string or a list of strings, found {}",
                kind(other)
            ))
        }
        None => return Err("missing field \"img\"".into()),
    };
    if images.is_empty() {
        return Err("field \"img\" is an empty list".into());
    }
    if images.iter().any(|i| i.is_empty()) {
        return Err("field \"img\" is empty".into());
    }
    Ok((images, field("prompt")?, field("label")?))
}

/// A short name of a JSON value's type.
pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
