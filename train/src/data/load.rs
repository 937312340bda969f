//! [`load_data_file`]: the format of a data file, detected or given, and the dispatch to the
//! reader of that format.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use super::example::Example;
use super::record::{LoadOptions, LoadReport, RecordSink};
use super::{coco, json_list, jsonl};
use crate::error::{Result, TrainError};

/// The on-disk data formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataFormat {
    /// The release's JSON list: `[{"img": path, "prompt": str, "label": str}, ...]`.
    JsonList,
    /// One such object per line (blank lines are ignored).
    JsonLines,
    /// COCO captions: `{"images":[{"id","file_name"}], "annotations":[{"image_id","caption"}]}`;
    /// one example per caption, with an empty prompt.
    CocoCaptions,
}

/// Reads `path` in `format` (or, if `None`, the format guessed by [`DataFormat::detect`]).
pub fn load_data_file(
    path: &Path,
    format: Option<DataFormat>,
    opts: &LoadOptions,
) -> Result<(Vec<Example>, LoadReport)> {
    let format = match format {
        Some(f) => f,
        None => DataFormat::detect(path)?,
    };
    let file = File::open(path).map_err(|e| TrainError::io(path, "open", e))?;
    let reader = BufReader::with_capacity(1 << 16, file);
    let mut sink = RecordSink::new(path, opts);
    match format {
        DataFormat::JsonList => json_list::read(reader, &mut sink)?,
        DataFormat::JsonLines => jsonl::read(reader, &mut sink)?,
        DataFormat::CocoCaptions => coco::read(reader, &mut sink)?,
    }
    Ok(sink.finish())
}

impl DataFormat {
    /// Guesses the format: `.jsonl`/`.ndjson` → JSON Lines; otherwise the first
    /// non-blank byte `[` → JSON list, `{` → COCO captions.
    pub fn detect(path: &Path) -> Result<Self> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        if matches!(ext.as_deref(), Some("jsonl" | "ndjson")) {
            return Ok(Self::JsonLines);
        }
        let file = File::open(path).map_err(|e| TrainError::io(path, "open", e))?;
        let mut r = BufReader::new(file.take(1 << 20));
        let mut first = None;
        'outer: loop {
            let buf = r.fill_buf().map_err(|e| TrainError::io(path, "read", e))?;
            if buf.is_empty() {
                break;
            }
            for &b in buf {
                if !(b.is_ascii_whitespace() || b == 0xEF || b == 0xBB || b == 0xBF) {
                    first = Some(b);
                    break 'outer;
                }
            }
            let n = buf.len();
            r.consume(n);
        }
        match first {
            Some(b'[') => Ok(Self::JsonList),
            Some(b'{') => Ok(Self::CocoCaptions),
            _ => Err(TrainError::BadDataFile {
                path: path.to_path_buf(),
                reason: "cannot tell the format: expected a JSON list `[...]`, COCO `{...}`, \
                         or a .jsonl file"
                    .into(),
            }),
        }
    }
}
