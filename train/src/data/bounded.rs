//! Reading with size limits, so a huge line is refused without being buffered.

use std::io::{self, BufRead};

/// The outcome of [`read_line_bounded`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum LineRead {
    /// End of input; nothing was read.
    Eof,
    /// A line (without its `\n` / `\r\n`) is in the buffer.
    Line,
    /// The line is longer than the limit. Only the first `limit` bytes were buffered; if
    /// `discard` was set the rest of the line was consumed (not stored), else the reader
    /// stopped at the limit.
    TooLong,
}

/// Reads one line into `buf` (cleared first), storing at most `limit` bytes.
pub(crate) fn read_line_bounded<R: BufRead>(
    r: &mut R,
    buf: &mut Vec<u8>,
    limit: usize,
    discard: bool,
) -> io::Result<LineRead> {
    buf.clear();
    let mut any = false;
    let mut too_long = false;
    loop {
        let avail = match r.fill_buf() {
            Ok(a) => a,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if avail.is_empty() {
            break;
        }
        any = true;
        let (chunk, used, done) = match avail.iter().position(|&b| b == b'\n') {
            Some(i) => (&avail[..i], i + 1, true),
            None => (avail, avail.len(), false),
        };
        if !too_long {
            let room = limit - buf.len();
            if chunk.len() > room {
                buf.extend_from_slice(&chunk[..room]);
                too_long = true;
                if !discard {
                    r.consume(room);
                    return Ok(LineRead::TooLong);
                }
            } else {
                buf.extend_from_slice(chunk);
            }
        }
        r.consume(used);
        if done {
            break;
        }
    }
    if !any {
        return Ok(LineRead::Eof);
    }
    if too_long {
        return Ok(LineRead::TooLong);
    }
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    Ok(LineRead::Line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_lines_and_refuses_long_ones() {
        let data = b"ab\r\n\nxxxxxxxxxx\ncd";
        let mut r = io::BufReader::with_capacity(3, &data[..]);
        let mut buf = Vec::new();
        assert_eq!(
            read_line_bounded(&mut r, &mut buf, 4, true).unwrap(),
            LineRead::Line
        );
        assert_eq!(buf, b"ab");
        assert_eq!(
            read_line_bounded(&mut r, &mut buf, 4, true).unwrap(),
            LineRead::Line
        );
        assert!(buf.is_empty());
        assert_eq!(
            read_line_bounded(&mut r, &mut buf, 4, true).unwrap(),
            LineRead::TooLong
        );
        assert_eq!(buf.len(), 4);
        assert_eq!(
            read_line_bounded(&mut r, &mut buf, 4, true).unwrap(),
            LineRead::Line
        );
        assert_eq!(buf, b"cd");
        assert_eq!(
            read_line_bounded(&mut r, &mut buf, 4, true).unwrap(),
            LineRead::Eof
        );
    }

    #[test]
    fn without_discard_stops_at_the_limit() {
        let data = b"xxxxxxxxxx\ncd\n";
        let mut r = io::BufReader::with_capacity(3, &data[..]);
        let mut buf = Vec::new();
        assert_eq!(
            read_line_bounded(&mut r, &mut buf, 4, false).unwrap(),
            LineRead::TooLong
        );
        let mut rest = Vec::new();
        io::Read::read_to_end(&mut r, &mut rest).unwrap();
        assert_eq!(rest, b"xxxxxx\ncd\n");
    }
}
