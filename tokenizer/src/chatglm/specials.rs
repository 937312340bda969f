//! ChatGLM's special pieces ([`SpecialIds`]) and the pieces its text rules need: what a
//! vocabulary must have to be a ChatGLM vocabulary.

use std::path::Path;

use crate::error::{Result, TokenizerError};
use crate::normalize::chatglm::{blank_piece, MAX_BLANK, NEWLINE, TAB};
use crate::vocab::{PieceKind, PieceTable};

/// Ids of ChatGLM's special pieces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpecialIds {
    /// `[MASK]`.
    pub mask: u32,
    /// `[gMASK]` (ends every prompt, before `<sop>`).
    pub gmask: u32,
    /// `<sop>`, the bos token.
    pub sop: u32,
    /// `<eop>`, the eos token (generation stops on it).
    pub eop: u32,
    /// `<pad>` (also SAT's image placeholder).
    pub pad: u32,
    /// `<unk>` (also HF's image placeholder).
    pub unk: u32,
}

/// The id of `piece` in `table`; [`TokenizerError::MissingPiece`] (naming `path`) if absent.
fn find(table: &PieceTable, piece: &str, path: &Path) -> Result<u32> {
    table
        .pieces()
        .iter()
        .position(|p| p == piece)
        .map(|i| i as u32)
        .ok_or_else(|| TokenizerError::MissingPiece {
            path: path.to_path_buf(),
            piece: piece.to_string(),
        })
}

impl SpecialIds {
    /// Finds the special pieces in `table`; `path` names the file in errors.
    pub fn find(table: &PieceTable, path: &Path) -> Result<Self> {
        Ok(Self {
            mask: find(table, "[MASK]", path)?,
            gmask: find(table, "[gMASK]", path)?,
            sop: find(table, "<sop>", path)?,
            eop: find(table, "<eop>", path)?,
            pad: find(table, "<pad>", path)?,
            unk: table.unk_id(),
        })
    }
}

/// Checks that the pieces ChatGLM's text rules emit (`<n>`, `<|tab|>`, `<|blank_2|>` …
/// `<|blank_80|>`) are in `table` as atomic (user-defined) pieces.
pub fn check_text_pieces(table: &PieceTable, path: &Path) -> Result<()> {
    let mut needed = vec![NEWLINE.to_string(), TAB.to_string()];
    needed.extend((2..=MAX_BLANK).map(blank_piece));
    for piece in needed {
        let id = find(table, &piece, path)?;
        if table.kind(id) != Some(PieceKind::UserDefined) {
            return Err(TokenizerError::Unsupported {
                path: path.to_path_buf(),
                what: format!("piece {piece:?} is not a user-defined piece"),
            });
        }
    }
    Ok(())
}
