//! Reading a SentencePiece `.model` file and checking it uses only what this port implements.

use std::path::Path;

use prost::Message;

use super::proto::ModelProto;
use crate::error::{Result, TokenizerError};
use crate::vocab::{PieceKind, PieceTable};

/// The segmentation algorithm of a SentencePiece model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelKind {
    /// Viterbi over piece log-probabilities.
    Unigram,
    /// Greedy merges by piece score.
    Bpe,
}

/// A parsed and validated SentencePiece model.
#[derive(Debug, Clone)]
pub struct SpModel {
    /// Unigram or BPE.
    pub kind: ModelKind,
    /// Pieces, kinds and decoding settings.
    pub table: PieceTable,
    /// Piece scores, in id order.
    pub scores: Vec<f32>,
    /// Whether unknown characters become byte pieces.
    pub byte_fallback: bool,
    /// Whether `▁` is prepended to the input.
    pub add_dummy_prefix: bool,
    /// Whether leading/trailing spaces are stripped and runs of spaces collapsed.
    pub remove_extra_whitespaces: bool,
    /// The normaliser's precompiled charsmap; empty for identity normalisation.
    pub charsmap: Vec<u8>,
}

impl SpModel {
    /// Reads and validates a `.model` file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|source| TokenizerError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_bytes(&bytes, path)
    }

    /// Parses and validates the bytes of a `.model` file; `path` names it in errors.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Self> {
        let corrupt = |reason: String| TokenizerError::CorruptModel {
            path: path.to_path_buf(),
            reason,
        };
        let unsupported = |what: String| TokenizerError::Unsupported {
            path: path.to_path_buf(),
            what,
        };
        let proto = ModelProto::decode(bytes).map_err(|e| corrupt(e.to_string()))?;
        if proto.pieces.is_empty() {
            return Err(corrupt("it has no pieces".into()));
        }
        let trainer = proto.trainer_spec.unwrap_or_default();
        let normalizer = proto.normalizer_spec.unwrap_or_default();

        let kind = match trainer.model_type.unwrap_or(1) {
            1 => ModelKind::Unigram,
            2 => ModelKind::Bpe,
            3 => return Err(unsupported("model_type WORD".into())),
            4 => return Err(unsupported("model_type CHAR".into())),
            t => return Err(corrupt(format!("unknown model_type {t}"))),
        };
        if trainer.treat_whitespace_as_suffix.unwrap_or(false) {
            return Err(unsupported("treat_whitespace_as_suffix = true".into()));
        }
        if !normalizer.escape_whitespaces.unwrap_or(true) {
            return Err(unsupported("escape_whitespaces = false".into()));
        }
        let mut pieces = Vec::with_capacity(proto.pieces.len());
        let mut kinds = Vec::with_capacity(proto.pieces.len());
        let mut scores = Vec::with_capacity(proto.pieces.len());
        let mut seen = std::collections::HashSet::with_capacity(proto.pieces.len());
        for (id, p) in proto.pieces.into_iter().enumerate() {
            let text = p.piece.unwrap_or_default();
            if text.is_empty() {
                return Err(corrupt(format!("piece {id} is empty")));
            }
            if !seen.insert(text.clone()) {
                return Err(corrupt(format!("piece {text:?} appears twice")));
            }
            let kind = match p.r#type.unwrap_or(1) {
                1 => PieceKind::Normal,
                2 => PieceKind::Unknown,
                3 => PieceKind::Control,
                4 => PieceKind::UserDefined,
                5 => PieceKind::Unused,
                6 => PieceKind::Byte,
                t => return Err(corrupt(format!("piece {id} has unknown type {t}"))),
            };
            let score = p.score.unwrap_or(0.0);
            if !score.is_finite() {
                return Err(corrupt(format!("piece {id} has score {score}")));
            }
            pieces.push(text);
            kinds.push(kind);
            scores.push(score);
        }
        if kind == ModelKind::Bpe && kinds.contains(&PieceKind::Unused) {
            return Err(unsupported("BPE model with UNUSED pieces".into()));
        }
        let byte_fallback = trainer.byte_fallback.unwrap_or(false);
        let table = PieceTable::new(
            pieces,
            kinds,
            trainer
                .unk_surface
                .unwrap_or_else(|| " \u{2047} ".to_string()),
        )
        .map_err(&corrupt)?;
        if byte_fallback && table.byte_ids().is_none() {
            return Err(corrupt(
                "byte_fallback is on but the 256 <0xXX> pieces are missing".into(),
            ));
        }
        Ok(Self {
            kind,
            table,
            scores,
            byte_fallback,
            add_dummy_prefix: normalizer.add_dummy_prefix.unwrap_or(true),
            remove_extra_whitespaces: normalizer.remove_extra_whitespaces.unwrap_or(true),
            charsmap: normalizer.precompiled_charsmap.unwrap_or_default(),
        })
    }
}
