//! The piece table (text and type of every id) and SentencePiece's id → text decoding.

/// SentencePiece piece types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PieceKind {
    /// An ordinary piece produced by segmentation.
    Normal,
    /// `<unk>`: decodes to the unknown surface (`" ⁇ "`).
    Unknown,
    /// `<s>`, `</s>`, `<pad>`: never matched in text, decode to nothing.
    Control,
    /// Matched verbatim in text before segmentation (`<n>`, `[gMASK]`, ...).
    UserDefined,
    /// Reserved, never produced.
    Unused,
    /// `<0xXX>`: one raw byte (byte fallback).
    Byte,
}

impl PieceKind {
    /// The name used in `tokenizer.json`'s extra `sentencepiece` section.
    pub fn name(self) -> &'static str {
        match self {
            PieceKind::Normal => "normal",
            PieceKind::Unknown => "unknown",
            PieceKind::Control => "control",
            PieceKind::UserDefined => "user_defined",
            PieceKind::Unused => "unused",
            PieceKind::Byte => "byte",
        }
    }
}

/// Every piece's text and type, plus what SentencePiece needs to turn ids back into text.
#[derive(Debug, Clone)]
pub struct PieceTable {
    pieces: Vec<String>,
    kinds: Vec<PieceKind>,
    byte_value: Vec<Option<u8>>,
    unk_id: u32,
    unk_surface: String,
}

/// The byte a `<0xXX>` piece stands for.
fn parse_byte_piece(piece: &str) -> Option<u8> {
    let hex = piece.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

impl PieceTable {
    /// Builds the table; fails (with a reason) without exactly one `<unk>` piece or with a
    /// byte piece whose text is not `<0xXX>`.
    pub fn new(
        pieces: Vec<String>,
        kinds: Vec<PieceKind>,
        unk_surface: String,
    ) -> Result<Self, String> {
        if pieces.len() != kinds.len() {
            return Err("piece and type lists differ in length".into());
        }
        if pieces.len() > u32::MAX as usize {
            return Err("too many pieces".into());
        }
        let unk: Vec<usize> = (0..kinds.len())
            .filter(|&i| kinds[i] == PieceKind::Unknown)
            .collect();
        let unk_id = match unk.as_slice() {
            [one] => *one as u32,
            [] => return Err("there is no <unk> piece".into()),
            _ => return Err("there is more than one <unk> piece".into()),
        };
        let mut byte_value = Vec::with_capacity(pieces.len());
        for (piece, kind) in pieces.iter().zip(&kinds) {
            if *kind == PieceKind::Byte {
                match parse_byte_piece(piece) {
                    Some(b) => byte_value.push(Some(b)),
                    None => return Err(format!("byte piece {piece:?} is not of the form <0xXX>")),
                }
            } else {
                byte_value.push(None);
            }
        }
        Ok(Self {
            pieces,
            kinds,
            byte_value,
            unk_id,
            unk_surface,
        })
    }

    /// Number of pieces (the vocabulary size).
    pub fn len(&self) -> usize {
        self.pieces.len()
    }

    /// Whether the table is empty (never, for a valid model).
    pub fn is_empty(&self) -> bool {
        self.pieces.is_empty()
    }

    /// The text of piece `id`.
    pub fn piece(&self, id: u32) -> Option<&str> {
        self.pieces.get(id as usize).map(String::as_str)
    }

    /// The type of piece `id`.
    pub fn kind(&self, id: u32) -> Option<PieceKind> {
        self.kinds.get(id as usize).copied()
    }

    /// All pieces, in id order.
    pub fn pieces(&self) -> &[String] {
        &self.pieces
    }

    /// All piece types, in id order.
    pub fn kinds(&self) -> &[PieceKind] {
        &self.kinds
    }

    /// The id of `<unk>`.
    pub fn unk_id(&self) -> u32 {
        self.unk_id
    }

    /// What `<unk>` decodes to.
    pub fn unk_surface(&self) -> &str {
        &self.unk_surface
    }

    /// The ids of the 256 byte pieces, indexed by byte, if all are present.
    pub fn byte_ids(&self) -> Option<[u32; 256]> {
        let mut ids = [u32::MAX; 256];
        for (id, b) in self.byte_value.iter().enumerate() {
            if let Some(b) = b {
                ids[*b as usize] = id as u32;
            }
        }
        ids.iter().all(|&i| i != u32::MAX).then_some(ids)
    }

    /// SentencePiece `DecodeIds`: control pieces vanish, `<unk>` gives the unknown surface,
    /// runs of byte pieces are decoded as UTF-8 (U+FFFD for each invalid byte), `▁` becomes a
    /// space, and the first piece loses one leading `▁` (the dummy prefix).
    /// Returns the first id outside the table as the error.
    pub fn decode(&self, ids: &[u32]) -> Result<String, u32> {
        let mut out = String::new();
        let mut bytes: Vec<u8> = Vec::new();
        let mut at_start = true;
        for &id in ids {
            let kind = *self.kinds.get(id as usize).ok_or(id)?;
            match kind {
                PieceKind::Control => continue,
                PieceKind::Byte => {
                    if let Some(b) = self.byte_value[id as usize] {
                        bytes.push(b);
                    }
                    at_start = false;
                    continue;
                }
                _ => {}
            }
            flush_bytes(&mut bytes, &mut out);
            if kind == PieceKind::Unknown {
                out.push_str(&self.unk_surface);
            } else {
                let mut piece = self.pieces[id as usize].as_str();
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
    use super::*;

    fn table() -> PieceTable {
        let pieces = [
            "<unk>",
            "<s>",
            "\u{2581}",
            "\u{2581}a",
            "b",
            "<n>",
            "<0x41>",
            "<0xE5>",
        ];
        let kinds = [
            PieceKind::Unknown,
            PieceKind::Control,
            PieceKind::Normal,
            PieceKind::Normal,
            PieceKind::Normal,
            PieceKind::UserDefined,
            PieceKind::Byte,
            PieceKind::Byte,
        ];
        PieceTable::new(
            pieces.iter().map(|s| s.to_string()).collect(),
            kinds.to_vec(),
            " \u{2047} ".into(),
        )
        .unwrap()
    }

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

    #[test]
    fn table_needs_one_unk_and_well_formed_bytes() {
        let r = PieceTable::new(vec!["a".into()], vec![PieceKind::Normal], String::new());
        assert!(r.unwrap_err().contains("no <unk>"));
        let r = PieceTable::new(
            vec!["<unk>".into(), "<0xZZ>".into()],
            vec![PieceKind::Unknown, PieceKind::Byte],
            String::new(),
        );
        assert!(r.unwrap_err().contains("<0xZZ>"));
        assert_eq!(table().byte_ids(), None);
    }
}
