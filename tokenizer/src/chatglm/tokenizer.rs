//! [`ChatGlmTokenizer`]: SentencePiece segmentation plus the ChatGLM text rules, id-exact
//! with the official `ChatGLMTokenizer` (`num_image_tokens = 0`). Loading and saving are in
//! [`super::io`], the English-mode ranges in [`super::english`].

use std::path::{Path, PathBuf};

use super::specials::{check_text_pieces, SpecialIds};
use crate::decode::options::DecodeOptions;
use crate::decode::text::{clean_up_tokenization, postprocess};
use crate::error::{Result, TokenizerError};
use crate::model::pipeline::HfPipeline;
use crate::normalize::chatglm::preprocess;
use crate::vocab::PieceTable;

/// The ChatGLM-6B tokenizer, loaded from a SentencePiece `.model` or a converted
/// `tokenizer.json`.
#[derive(Debug, Clone)]
pub struct ChatGlmTokenizer {
    pub(super) pipeline: HfPipeline,
    pub(super) specials: SpecialIds,
    pub(super) source: PathBuf,
}

impl ChatGlmTokenizer {
    /// Wraps a pipeline loaded from `path`, checking that its vocabulary has ChatGLM's special
    /// pieces and the pieces of its text rules.
    pub(super) fn from_pipeline(pipeline: HfPipeline, path: &Path) -> Result<Self> {
        let specials = SpecialIds::find(&pipeline.table, path)?;
        check_text_pieces(&pipeline.table, path)?;
        Ok(Self {
            pipeline,
            specials,
            source: path.to_path_buf(),
        })
    }

    /// The file this tokenizer was loaded from.
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// Token ids of `text` (ChatGLM rules, then SentencePiece with its dummy prefix), without
    /// `[gMASK]`/`<sop>` — HF `encode(text, add_special_tokens=False)`.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        self.pipeline
            .encode(&preprocess(text))
            .map_err(|reason| TokenizerError::Encode {
                path: self.source.clone(),
                reason,
            })
    }

    /// [`ChatGlmTokenizer::encode`] through the full `tokenizers` pipeline instead of the lean
    /// driver: slower, same ids (kept as the reference for tests).
    pub fn encode_reference(&self, text: &str) -> Result<Vec<u32>> {
        self.pipeline
            .encode_reference(&preprocess(text))
            .map_err(|reason| TokenizerError::Encode {
                path: self.source.clone(),
                reason,
            })
    }

    /// `encode(text)` followed by `[gMASK]`, `<sop>` — HF `encode(text)`.
    pub fn encode_with_special_tokens(&self, text: &str) -> Result<Vec<u32>> {
        let mut ids = self.encode(text)?;
        ids.extend([self.specials.gmask, self.specials.sop]);
        Ok(ids)
    }

    /// Text of `ids`: `<pad>` removed, special tokens optionally dropped, SentencePiece
    /// decoding, `<n>`/`<|tab|>`/`<|blank_N|>` turned back into whitespace, and optionally HF's
    /// tokenization-space cleanup, as `opts` says (`&Default::default()`: as HF `decode(ids)`).
    /// An id outside the vocabulary is an error.
    pub fn decode(&self, ids: &[u32], opts: &DecodeOptions) -> Result<String> {
        let size = self.num_pieces();
        if let Some(&id) = ids.iter().find(|&&id| id as usize >= size) {
            return Err(TokenizerError::IdOutOfRange {
                id,
                size,
                path: self.source.clone(),
            });
        }
        let s = &self.specials;
        let skipped = [s.sop, s.eop, s.unk, s.pad, s.mask];
        let kept: Vec<u32> = ids
            .iter()
            .copied()
            .filter(|&id| id != s.pad && !(opts.skip_special_tokens && skipped.contains(&id)))
            .collect();
        let raw = self
            .table()
            .decode(&kept)
            .map_err(|id| TokenizerError::IdOutOfRange {
                id,
                size,
                path: self.source.clone(),
            })?;
        let out = postprocess(&raw);
        Ok(if opts.clean_up_tokenization_spaces {
            clean_up_tokenization(&out)
        } else {
            out
        })
    }

    /// The special ids.
    pub fn special_ids(&self) -> SpecialIds {
        self.specials
    }

    /// `[gMASK]`.
    pub fn gmask_id(&self) -> u32 {
        self.specials.gmask
    }

    /// `[MASK]`.
    pub fn mask_id(&self) -> u32 {
        self.specials.mask
    }

    /// `<sop>` (bos).
    pub fn sop_id(&self) -> u32 {
        self.specials.sop
    }

    /// `<eop>` (eos).
    pub fn eop_id(&self) -> u32 {
        self.specials.eop
    }

    /// `<pad>`.
    pub fn pad_id(&self) -> u32 {
        self.specials.pad
    }

    /// `<unk>`.
    pub fn unk_id(&self) -> u32 {
        self.specials.unk
    }

    /// Number of pieces (130344 for `ice_text.model`). The embedding has more rows
    /// (130528); ids at or above this have no piece and must never be sampled.
    pub fn num_pieces(&self) -> usize {
        self.pipeline.table.len()
    }

    /// The id of a piece, if it is in the vocabulary.
    pub fn piece_to_id(&self, piece: &str) -> Option<u32> {
        self.pipeline.tokenizer.token_to_id(piece)
    }

    /// The piece of an id.
    pub fn id_to_piece(&self, id: u32) -> Option<&str> {
        self.pipeline.table.piece(id)
    }

    /// Piece texts and types.
    pub fn table(&self) -> &PieceTable {
        &self.pipeline.table
    }

    /// The underlying `tokenizers` pipeline (SentencePiece-exact when `▁` is prepended to
    /// non-empty input; see the `convert` module).
    pub fn hf_tokenizer(&self) -> &tokenizers::Tokenizer {
        &self.pipeline.tokenizer
    }
}
