//! The vocabulary every stage shares: each piece's text and SentencePiece type, in id order.

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

    /// The byte piece `id` stands for (`None` for other pieces and ids outside the table).
    pub fn byte_value(&self, id: u32) -> Option<u8> {
        self.byte_value.get(id as usize).copied().flatten()
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
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A small table with every kind of piece (shared with the decoding tests).
    pub(crate) fn table() -> PieceTable {
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
