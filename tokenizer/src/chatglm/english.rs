//! English mode's suppressed ids (`--english`: the release's `invalid_slices`).

use std::ops::Range;

use super::tokenizer::ChatGlmTokenizer;
use crate::vocab::PieceKind;

/// Number of pieces of the released `ice_text.model`.
const RELEASE_VOCAB: usize = 130_344;

fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3000..=0x303F        // CJK symbols and punctuation
        | 0x3400..=0x4DBF      // CJK extension A
        | 0x4E00..=0x9FFF      // CJK unified ideographs
        | 0xF900..=0xFAFF      // CJK compatibility ideographs
        | 0xFF00..=0xFFEF      // half- and full-width forms
        | 0x20000..=0x2FA1F) // CJK extensions B.. and compatibility supplement
}

impl ChatGlmTokenizer {
    /// Ids the release forbids in English mode (`--english`: `invalid_slices`).
    ///
    /// For the released vocabulary (130344 pieces, `。` below `[MASK]`) this is exactly the
    /// release's `63823..130000`, i.e. from the id of `。` up to `[MASK]` — the block of
    /// Chinese pieces of `ice_text.model`. Other vocabularies (the stand-ins) have no such
    /// block, so there it is every normal piece that contains a CJK character (Han, CJK
    /// punctuation, full-width forms), as maximal id ranges.
    pub fn english_suppressed_ranges(&self) -> Vec<Range<u32>> {
        let table = self.table();
        if table.len() == RELEASE_VOCAB {
            if let Some(start) = self.piece_to_id("。").filter(|&i| i < self.mask_id()) {
                return std::iter::once(start..self.mask_id()).collect();
            }
        }
        let mut ranges: Vec<Range<u32>> = Vec::new();
        for (id, (piece, kind)) in table.pieces().iter().zip(table.kinds()).enumerate() {
            let id = id as u32;
            if *kind != PieceKind::Normal || !piece.chars().any(is_cjk) {
                continue;
            }
            match ranges.last_mut() {
                Some(r) if r.end == id => r.end = id + 1,
                _ => ranges.push(id..id + 1),
            }
        }
        ranges
    }
}
