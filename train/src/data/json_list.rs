//! The release's JSON list format, read record by record with a size limit per record.
//!
//! A small scanner splits the top-level array into elements (tracking strings, escapes and
//! nesting) so that each element is parsed on its own: errors name the record index and
//! the line it starts on, and an oversized record is refused without being buffered.

use std::io::{self, BufRead};

use super::record::RecordSink;
use crate::error::{Result, TrainError};

/// A byte source that counts lines.
struct Bytes<R> {
    r: R,
    line: u64,
    peeked: Option<u8>,
}

impl<R: BufRead> Bytes<R> {
    fn next(&mut self) -> io::Result<Option<u8>> {
        if let Some(b) = self.peeked.take() {
            return Ok(Some(b));
        }
        let b = loop {
            match self.r.fill_buf() {
                Ok([]) => return Ok(None),
                Ok(buf) => break buf[0],
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        };
        self.r.consume(1);
        if b == b'\n' {
            self.line += 1;
        }
        Ok(Some(b))
    }

    fn unread(&mut self, b: u8) {
        self.peeked = Some(b);
    }

    /// Skips whitespace (and a UTF-8 BOM); returns the next other byte.
    fn next_non_ws(&mut self) -> io::Result<Option<u8>> {
        loop {
            match self.next()? {
                Some(b) if b.is_ascii_whitespace() => continue,
                other => return Ok(other),
            }
        }
    }
}

/// How one element ended.
enum End {
    /// A `,`: more elements follow.
    Comma,
    /// The closing `]` of the list.
    Close,
}

/// Reads a JSON list of release records into `sink`.
pub(crate) fn read<R: BufRead>(r: R, sink: &mut RecordSink<'_>) -> Result<()> {
    let path = sink.path.to_path_buf();
    let io_err = |e| TrainError::io(&path, "read", e);
    let bad = |reason: String| TrainError::BadDataFile {
        path: path.clone(),
        reason,
    };
    let mut bytes = Bytes {
        r,
        line: 1,
        peeked: None,
    };
    // Optional UTF-8 BOM, then `[`.
    let mut first = bytes.next_non_ws().map_err(io_err)?;
    if first == Some(0xEF) {
        for expect in [0xBB, 0xBF] {
            if bytes.next().map_err(io_err)? != Some(expect) {
                return Err(bad("line 1: not a JSON list (bad byte-order mark)".into()));
            }
        }
        first = bytes.next_non_ws().map_err(io_err)?;
    }
    if first != Some(b'[') {
        return Err(bad(format!(
            "line {}: expected a JSON list starting with `[`",
            bytes.line
        )));
    }
    let limit = sink.opts.max_record_bytes;
    let mut elem = Vec::new();
    let mut record: u64 = 0;
    loop {
        let start = bytes.next_non_ws().map_err(io_err)?;
        let start_line = bytes.line;
        match start {
            None => {
                return Err(bad(format!(
                    "line {start_line}: unexpected end of file inside the list (truncated?)"
                )))
            }
            Some(b']') if record == 0 => break,
            Some(b) => bytes.unread(b),
        }
        elem.clear();
        let mut too_large = false;
        let end = scan_element(
            &mut bytes,
            &mut elem,
            limit,
            &mut too_large,
            sink.opts.skip_malformed,
        )
        .map_err(io_err)?;
        let end = match end {
            Some(end) => end,
            None if too_large && !sink.opts.skip_malformed => {
                return Err(TrainError::RecordTooLarge {
                    path: path.clone(),
                    location: RecordSink::location(start_line, record),
                    limit: limit as u64,
                })
            }
            None => {
                return Err(bad(format!(
                    "record {record} starting at line {start_line}: unexpected end of file \
                     (truncated?)"
                )))
            }
        };
        if too_large {
            sink.skip_or_fail(TrainError::RecordTooLarge {
                path: path.clone(),
                location: RecordSink::location(start_line, record),
                limit: limit as u64,
            })?;
        } else {
            while elem.last().is_some_and(u8::is_ascii_whitespace) {
                elem.pop();
            }
            if elem.is_empty() {
                sink.malformed(
                    RecordSink::location(start_line, record),
                    "empty record (stray comma?)".into(),
                )?;
            } else {
                match serde_json::from_slice::<serde_json::Value>(&elem) {
                    Ok(v) => sink.push_release_record(v, start_line, record)?,
                    Err(e) => {
                        let line = start_line + e.line().saturating_sub(1) as u64;
                        sink.malformed(
                            format!("{line} (record {record})"),
                            format!("invalid JSON: {e}"),
                        )?
                    }
                }
            }
        }
        record += 1;
        if let End::Close = end {
            break;
        }
    }
    match bytes.next_non_ws().map_err(io_err)? {
        None => Ok(()),
        Some(_) => Err(bad(format!(
            "line {}: unexpected data after the end of the list",
            bytes.line
        ))),
    }
}

/// Copies one element into `out` up to its terminating top-level `,` or `]`.
///
/// Returns `None` at end of input. If the element exceeds `limit` bytes, sets `too_large`
/// and then either stops (returns `None`) or, with `keep_going`, scans to its end without
/// storing it.
fn scan_element<R: BufRead>(
    bytes: &mut Bytes<R>,
    out: &mut Vec<u8>,
    limit: usize,
    too_large: &mut bool,
    keep_going: bool,
) -> io::Result<Option<End>> {
    let mut depth: u32 = 0;
    let mut in_string = false;
    let mut escaped = false;
    while let Some(b) = bytes.next()? {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else {
            match b {
                b'"' => in_string = true,
                b'{' | b'[' => depth += 1,
                b'}' | b']' if depth > 0 => depth -= 1,
                b']' => return Ok(Some(End::Close)),
                b',' if depth == 0 => return Ok(Some(End::Comma)),
                _ => {}
            }
        }
        if !*too_large {
            if out.len() >= limit {
                *too_large = true;
                out.clear();
                if !keep_going {
                    return Ok(None);
                }
            } else {
                out.push(b);
            }
        }
    }
    Ok(None)
}
