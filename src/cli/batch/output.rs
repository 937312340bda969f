//! What a `batch` output file already holds, and its rewrite with one line per image.
//!
//! The output is JSON Lines, one `{"image", "caption"}` or `{"image", "error"}` record per
//! image. A run appends (a crash loses at most the chunk being written); an image captioned
//! again (`--retry-errors`) gets a second line, and the file is then rewritten atomically with
//! one line per image: the last record of each image, at the place of its first.

use std::collections::{HashMap, HashSet};
use std::fs::OpenOptions;
use std::io::Read;
use std::path::Path;

use anyhow::Context;

use super::inputs::image_key;

/// The complete records of an output file, in file order.
#[derive(Debug, Default)]
pub(crate) struct Recorded {
    /// `(image key, line)` per record; records without an `"image"` keep no key.
    lines: Vec<(Option<String>, String)>,
    /// The index in `lines` of the last record of each image.
    last: HashMap<String, usize>,
}

impl Recorded {
    /// Reads `out` (nothing when it does not exist). A last line cut short by a crash is
    /// removed from the file, so that appending continues on a clean line.
    pub(crate) fn read(out: &Path) -> anyhow::Result<Self> {
        let mut file = match OpenOptions::new().read(true).write(true).open(out) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(e).with_context(|| format!("cannot open {}", out.display())),
        };
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .with_context(|| format!("cannot read {}", out.display()))?;
        if !bytes.is_empty() && !bytes.ends_with(b"\n") {
            let keep = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            file.set_len(keep as u64)
                .with_context(|| format!("cannot truncate {}", out.display()))?;
            bytes.truncate(keep);
            tracing::warn!("{}: removed an incomplete last line", out.display());
        }
        let text = String::from_utf8(bytes)
            .with_context(|| format!("{} is not UTF-8 text", out.display()))?;
        Self::parse(&text, out)
    }

    /// Parses complete lines of `text` (read from `path`, named in errors).
    pub(crate) fn parse(text: &str, path: &Path) -> anyhow::Result<Self> {
        let mut recorded = Self::default();
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let v: serde_json::Value = serde_json::from_str(line)
                .with_context(|| format!("{}:{}: not a JSON line", path.display(), n + 1))?;
            let key = v
                .get("image")
                .and_then(|i| i.as_str())
                .map(|i| image_key(Path::new(i)));
            if let Some(key) = &key {
                recorded.last.insert(key.clone(), recorded.lines.len());
            }
            recorded.lines.push((key, line.to_string()));
        }
        Ok(recorded)
    }

    /// Whether the file holds no record.
    pub(crate) fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// The last record of the image with key `key`.
    pub(crate) fn last_line(&self, key: &str) -> Option<&str> {
        self.last.get(key).map(|&i| self.lines[i].1.as_str())
    }

    /// The keys of the images that need no new run: all recorded ones, or with
    /// `retry_errors` those whose last record is a caption.
    pub(crate) fn done(&self, retry_errors: bool) -> HashSet<String> {
        self.last
            .iter()
            .filter(|(_, &i)| !(retry_errors && is_error(&self.lines[i].1)))
            .map(|(key, _)| key.clone())
            .collect()
    }

    /// The file with one line per image (its last record, at the place of its first), or
    /// `None` when no image has two lines.
    pub(crate) fn compacted(&self) -> Option<String> {
        let keyed = self.lines.iter().filter(|(k, _)| k.is_some()).count();
        if keyed == self.last.len() {
            return None;
        }
        let mut written = HashSet::new();
        let mut text = String::new();
        for (key, line) in &self.lines {
            let line = match key {
                Some(key) if !written.insert(key) => continue,
                Some(key) => self.last_line(key).unwrap_or(line),
                None => line,
            };
            text.push_str(line);
            text.push('\n');
        }
        Some(text)
    }
}

/// Whether a record line is an `{"image", "error"}` record.
fn is_error(line: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(line)
        .is_ok_and(|v| v.get("error").is_some() && v.get("caption").is_none())
}

/// Rewrites `out` with one line per image when an image has several (see [`Recorded`]),
/// atomically. Returns how many lines were replaced.
pub(crate) fn compact(out: &Path) -> anyhow::Result<usize> {
    let recorded = Recorded::read(out)?;
    let Some(text) = recorded.compacted() else {
        return Ok(0);
    };
    write_atomic(out, &text)?;
    Ok(recorded.lines.len() - text.lines().count())
}

/// Writes `text` to `path` atomically (temporary file + rename).
pub(crate) fn write_atomic(path: &Path, text: &str) -> anyhow::Result<()> {
    visualglm_files::write_atomic_bytes(path, text.as_bytes())
        .map_err(|e| e.source)
        .with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retried_image_keeps_its_place_and_its_last_record() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let out = dir.path().join("c.jsonl");
        let a = dir.path().join("a.png").display().to_string();
        let b = dir.path().join("b.png").display().to_string();
        let lines = [
            serde_json::json!({"image": a, "error": "truncated"}),
            serde_json::json!({"image": b, "caption": "two"}),
            serde_json::json!({"image": a, "caption": "one"}),
        ];
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        // A cut last line is dropped from the file on reading.
        std::fs::write(&out, format!("{text}{{\"image\": \"x"))?;
        let recorded = Recorded::read(&out)?;
        assert_eq!(std::fs::read_to_string(&out)?, text);
        assert_eq!(recorded.done(true).len(), 2);
        assert_eq!(compact(&out)?, 1);
        let want = format!("{}\n{}\n", lines[2], lines[1]);
        assert_eq!(std::fs::read_to_string(&out)?, want);
        assert_eq!(compact(&out)?, 0);
        // An image whose last record is an error is redone only with --retry-errors.
        std::fs::write(&out, format!("{}\n", lines[0]))?;
        let recorded = Recorded::read(&out)?;
        assert!(recorded.done(true).is_empty());
        assert_eq!(recorded.done(false).len(), 1);
        Ok(())
    }
}
