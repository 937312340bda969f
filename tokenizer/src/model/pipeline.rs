//! [`HfPipeline`]: the segmentation model at run time — a `tokenizers` pipeline, the piece
//! table, the SentencePiece facts the pipeline does not hold ([`SpSection`]) and, for the
//! plain pipeline (no charsmap), the lean [`FastEncoder`] that drives its model directly.
//!
//! Encoding follows SentencePiece `EncodeAsIds`: the caller steps (whitespace collapsing,
//! dummy prefix `▁`) are applied here, then the lean encoder or the full pipeline segments.
//! [`crate::formats`] builds a pipeline from a `.model` or a `tokenizer.json`.

use std::collections::HashMap;

use ahash::AHashMap;
use tokenizers::{ModelWrapper, PreTokenizerWrapper, Tokenizer};

use super::encoder::FastEncoder;
use super::lattice::FastUnigram;
use super::merges::FastBpe;
use crate::normalize::sentencepiece::{collapse_spaces, SPACE};
use crate::vocab::{PieceKind, PieceTable};

/// SentencePiece facts that the `tokenizers` pipeline does not hold by itself.
#[derive(Debug, Clone, PartialEq)]
pub struct SpSection {
    /// `"bpe"` or `"unigram"`.
    pub model_type: String,
    /// Callers prepend `▁` to non-empty input (SentencePiece `add_dummy_prefix`).
    pub add_dummy_prefix: bool,
    /// Callers strip and collapse spaces first (SentencePiece `remove_extra_whitespaces`).
    pub remove_extra_whitespaces: bool,
    /// What `<unk>` decodes to.
    pub unk_surface: String,
    /// Ids of every piece that is not `normal`, by type name.
    pub piece_types: HashMap<String, Vec<u32>>,
}

/// A `tokenizers` pipeline plus what is needed to use it exactly like SentencePiece.
#[derive(Debug, Clone)]
pub struct HfPipeline {
    /// The `tokenizers` pipeline.
    pub tokenizer: Tokenizer,
    /// Piece texts and types.
    pub table: PieceTable,
    /// SentencePiece flags.
    pub section: SpSection,
    /// The lean driver, when the pipeline has no charsmap normaliser.
    pub fast: Option<FastEncoder>,
}

impl HfPipeline {
    /// SentencePiece `EncodeAsIds` of already-normalised-by-the-caller text: whitespace
    /// cleanup and the dummy prefix per the section flags, then the lean driver (or the
    /// pipeline when there is none).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, String> {
        self.encode_prepared(text, false)
    }

    /// As [`HfPipeline::encode`], always through the full `tokenizers` pipeline (the
    /// reference the lean driver is tested against).
    pub fn encode_reference(&self, text: &str) -> Result<Vec<u32>, String> {
        self.encode_prepared(text, true)
    }

    fn encode_prepared(&self, text: &str, reference: bool) -> Result<Vec<u32>, String> {
        let mut owned;
        let mut text = text;
        if self.section.remove_extra_whitespaces {
            owned = collapse_spaces(text);
            text = owned.as_str();
        }
        if text.is_empty() {
            return Ok(Vec::new());
        }
        if self.section.add_dummy_prefix {
            owned = format!("{SPACE}{text}");
            text = owned.as_str();
        }
        match &self.fast {
            Some(fast) if !reference => fast.encode(self.tokenizer.get_model(), text),
            _ => self.encode_pipeline(text),
        }
    }

    /// The same through the full `tokenizers` pipeline (`encode_fast`), without the caller
    /// steps (whitespace cleanup, dummy prefix).
    pub fn encode_pipeline(&self, text: &str) -> Result<Vec<u32>, String> {
        let enc = self
            .tokenizer
            .encode_fast(text, false)
            .map_err(|e| e.to_string())?;
        Ok(enc.get_ids().to_vec())
    }
}

/// The lean driver for a pipeline whose normaliser is only `' '` → `▁` (`plain`).
pub fn fast_encoder(
    tokenizer: &Tokenizer,
    table: &PieceTable,
    plain: bool,
) -> Result<Option<FastEncoder>, String> {
    if !plain {
        return Ok(None);
    }
    let split = match tokenizer.get_pre_tokenizer() {
        Some(PreTokenizerWrapper::Metaspace(m)) => m.get_split(),
        _ => return Ok(None),
    };
    let user = table
        .pieces()
        .iter()
        .zip(table.kinds())
        .enumerate()
        .filter(|(_, (_, k))| **k == PieceKind::UserDefined)
        .map(|(id, (p, _))| (p.clone(), id as u32))
        .collect();
    let unigram = match tokenizer.get_model() {
        ModelWrapper::Unigram(u) => Some(FastUnigram::new(u, table.unk_id(), table.byte_ids())?),
        _ => None,
    };
    let bpe = match (tokenizer.get_model(), table.byte_ids()) {
        (ModelWrapper::BPE(b), Some(bytes)) if b.byte_fallback && b.dropout.is_none() => {
            let value = serde_json::to_value(b).map_err(|e| e.to_string())?;
            let merges: Vec<(String, String)> =
                serde_json::from_value(value["merges"].clone()).map_err(|e| e.to_string())?;
            let vocab: AHashMap<String, u32> = b.get_vocab().into_iter().collect();
            FastBpe::new(&vocab, &merges, bytes)
        }
        _ => None,
    };
    FastEncoder::new(user, split, unigram, bpe).map(Some)
}
