//! SentencePiece's id → text decoding (`DecodeIds`) over the piece table.

use crate::vocab::{PieceKind, PieceTable};

impl PieceTable {
    /// SentencePiece `DecodeIds`: control pieces vanish, `<unk>` gives the unknown surface,
    /// runs of byte pieces are decoded as UTF-8 (U+FFFD for each invalid byte), `▁` becomes a
    /// space, and the first piece loses one leading `▁` (the dummy prefix).
    /// Returns the first id outside the table as the error.
    pub fn decode(&self, ids: &[u32]) -> Result<String, u32> {
        let mut out = String::new();
        let mut bytes: Vec<u8> = Vec::new();
        let mut at_start = true;
        for &id in ids {
            let kind = self.kind(id).ok_or(id)?;
            match kind {
                PieceKind::Control => continue,
                PieceKind::Byte => {
                    if let Some(b) = self.byte_value(id) {
                        bytes.push(b);
                    }
                    at_start = false;
                    continue;
                }
                _ => {}
            }
            flush_bytes(&mut bytes, &mut out);
            if kind == PieceKind::Unknown {
                out.push_str(self.unk_surface());
            } else {
                let mut piece = self.pieces()[id as usize].as_str();
                if at_start {
                    piece = piece.strip_prefix('\u{2581}').unwrap_or(piece);
                }
                out.extend(piece.chars().map(|c| if c == '\u{2581}' { ' ' } else { c }));
            }
            at_start = false;
        }
        flush_bytes(&mut bytes, &mut out);
        Ok(out)
    }
}

/// Appends pending byte-fallback bytes as text: each valid UTF-8 character as is, each byte
/// that does not start one as U+FFFD (SentencePiece's rule).
fn flush_bytes(bytes: &mut Vec<u8>, out: &mut String) {
    let mut i = 0;
    while i < bytes.len() {
        let want = match bytes[i] {
            0x00..=0x7F => 1,
            0xC0..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF7 => 4,
            _ => 0,
        };
        let ch = (want > 0 && i + want <= bytes.len())
            .then(|| std::str::from_utf8(&bytes[i..i + want]).ok())
            .flatten();
        match ch {
            Some(s) => {
                out.push_str(s);
                i += want;
            }
            None => {
                out.push('\u{FFFD}');
                i += 1;
            }
        }
    }
    bytes.clear();
}

#[cfg(test)]
mod tests {
    use crate::vocab::tests::table;

    #[test]
    fn decode_follows_sentencepiece() {
        let t = table();
        assert_eq!(t.decode(&[1, 3, 4]).unwrap(), "ab");
        assert_eq!(t.decode(&[1, 2, 2]).unwrap(), " ");
        assert_eq!(t.decode(&[0, 3]).unwrap(), " \u{2047}  a");
        assert_eq!(t.decode(&[6, 3]).unwrap(), "A a");
        assert_eq!(t.decode(&[7, 7, 5]).unwrap(), "\u{FFFD}\u{FFFD}<n>");
        assert_eq!(t.decode(&[99]), Err(99));
    }
}
