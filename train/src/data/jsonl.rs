//! JSON Lines of release records, one per line, each read with a size limit.

use std::io::BufRead;

use super::bounded::{read_line_bounded, LineRead};
use super::record::RecordSink;
use crate::error::{Result, TrainError};

/// Reads JSON Lines into `sink`; blank lines are ignored.
pub(crate) fn read<R: BufRead>(mut r: R, sink: &mut RecordSink<'_>) -> Result<()> {
    let limit = sink.opts.max_record_bytes;
    let skip = sink.opts.skip_malformed;
    let mut buf = Vec::new();
    let mut line: u64 = 0;
    let mut record: u64 = 0;
    loop {
        line += 1;
        let got = read_line_bounded(&mut r, &mut buf, limit, skip)
            .map_err(|e| TrainError::io(sink.path.to_path_buf(), "read", e))?;
        match got {
            LineRead::Eof => return Ok(()),
            LineRead::TooLong => {
                sink.skip_or_fail(TrainError::RecordTooLarge {
                    path: sink.path.to_path_buf(),
                    location: RecordSink::location(line, record),
                    limit: limit as u64,
                })?;
            }
            LineRead::Line => {
                let text = buf.trim_ascii();
                if text.is_empty() {
                    continue;
                }
                match serde_json::from_slice::<serde_json::Value>(text) {
                    Ok(v) => sink.push_release_record(v, line, record)?,
                    Err(e) => sink.malformed(
                        RecordSink::location(line, record),
                        format!("invalid JSON: {e}"),
                    )?,
                }
            }
        }
        record += 1;
    }
}
