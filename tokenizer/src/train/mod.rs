//! Training a small SentencePiece unigram tokenizer with ChatGLM's special pieces
//! (`visualglm tokenizer train`).
//!
//! Texts go through ChatGLM's [`preprocess`](crate::normalize::chatglm::preprocess)
//! (newlines, tabs and space runs become `<n>`, `<|tab|>`, `<|blank_N|>`), are cut into words
//! the way the encoder will see them (dummy prefix `▁`, spaces as `▁`, user-defined pieces
//! matched first and left out, a word starting at each `▁`), and `tokenizers`'
//! [`UnigramTrainer`](tokenizers::models::unigram::UnigramTrainer) (SentencePiece's EM +
//! pruning) learns the ordinary pieces. The result is a SentencePiece `ModelProto` laid out like the
//! released `ice_text.model`:
//!
//! | ids | pieces | type |
//! | --- | --- | --- |
//! | 0 | `<unk>` | unknown |
//! | 1–3 | `<s>`, `</s>`, `<pad>` | control |
//! | 4–84 | `<n>`, `<|tab|>`, `<|blank_2|>` … `<|blank_80|>` | user-defined |
//! | (85–340) | `<0x00>` … `<0xFF>`, only with [`TrainerConfig::byte_fallback`] | byte |
//! | … | the trained pieces, best score first | normal |
//! | … | `<unused_K>` fillers, when the texts support fewer pieces than asked | unused |
//! | last 8 | `[MASK] [gMASK] [sMASK] <unused_0> <sop> <eop> <ENC> <dBLOCK>` | user-defined |
//!
//! with identity normalisation, the dummy prefix on and whitespace collapsing off (as in the
//! stand-in models), so [`ChatGlmTokenizer`](crate::ChatGlmTokenizer) loads it and encodes
//! like SentencePiece would.
//!
//! Training is deterministic: the same texts and settings give the same bytes (words are
//! counted in sorted order and the trainer runs on a one-thread pool, so its floating-point
//! sums do not depend on the machine's core count).
//!
//! Files: [`config`] (settings), [`words`] (texts → counted words), [`em`] (the trainer run),
//! [`layout`] (the reserved pieces and the `.model` protobuf), [`trained`] (the result).

use std::collections::BTreeSet;
use std::path::Path;

use crate::error::{Result, TokenizerError};
use crate::files::write_atomic;

pub mod config;
pub mod em;
pub mod layout;
pub mod trained;
pub mod words;

pub use config::TrainerConfig;
pub use trained::{TrainSummary, TrainedModel};

use layout::{lay_out, SPECIALS};
use words::WordCounter;

fn train_error(reason: impl Into<String>) -> TokenizerError {
    TokenizerError::Train {
        reason: reason.into(),
    }
}

/// Trains a unigram vocabulary of `cfg.vocab_size` pieces (reserved ones included) on
/// `texts` and lays it out like ChatGLM's `ice_text.model` (see the module docs).
///
/// Every character of the texts gets a piece, so every training text encodes without
/// `<unk>`. When the texts support fewer pieces than asked (a small corpus), the rest are
/// `<unused_K>` pieces that encoding never produces, so that the vocabulary still has exactly
/// `vocab_size` pieces and the specials keep the last 8 ids.
pub fn train_unigram(
    texts: impl Iterator<Item = String>,
    cfg: &TrainerConfig,
) -> Result<TrainedModel> {
    cfg.validate().map_err(train_error)?;
    let mut counter = WordCounter::new().map_err(train_error)?;
    for t in texts {
        counter.add(&t);
    }
    if counter.words.is_empty() {
        return Err(train_error("no training text (every text is empty)"));
    }
    let chars: BTreeSet<char> = counter.words.keys().flat_map(|w| w.chars()).collect();
    let reserved = cfg.reserved_pieces();
    let min_vocab = reserved + chars.len();
    if cfg.vocab_size < min_vocab {
        return Err(train_error(format!(
            "vocab_size {} is too small: the texts have {} distinct characters (each needs a \
             piece) and {reserved} pieces are reserved for ChatGLM's specials; use at least \
             {min_vocab}",
            cfg.vocab_size,
            chars.len()
        )));
    }
    // SentencePiece stores the size as an int32.
    let vocab_i32 = i32::try_from(cfg.vocab_size)
        .map_err(|_| train_error(format!("vocab_size {} is too large", cfg.vocab_size)))?;
    let target = cfg.vocab_size - reserved;
    tracing::info!(
        texts = counter.texts,
        words = counter.words.len(),
        characters = chars.len(),
        target_pieces = target,
        "training a unigram tokenizer"
    );

    let trained = em::learn_pieces(&counter, &chars, target, cfg).map_err(train_error)?;
    let unused = target - trained.len();
    if unused > 0 {
        tracing::warn!(
            trained = trained.len(),
            unused,
            "the texts support fewer pieces than asked; filling with <unused_K> pieces (a \
             smaller --vocab-size avoids them)"
        );
    }
    let trained_pieces = trained.len();
    let proto = lay_out(trained, unused, vocab_i32, cfg.byte_fallback);
    debug_assert_eq!(proto.pieces.len(), cfg.vocab_size);
    // Indices into SPECIALS.
    let first_special = (proto.pieces.len() - SPECIALS.len()) as u32;
    let special = |index: u32| first_special + index;
    let summary = TrainSummary {
        vocab_size: cfg.vocab_size,
        trained_pieces,
        unused_pieces: unused,
        texts: counter.texts,
        distinct_words: counter.words.len(),
        characters: chars.len(),
        byte_fallback: cfg.byte_fallback,
        unk_id: 0,
        pad_id: 3,
        mask_id: special(0),
        gmask_id: special(1),
        sop_id: special(4),
        eop_id: special(5),
    };
    Ok(TrainedModel { proto, summary })
}

/// Writes a trained model to `path` atomically (temporary sibling, then rename).
pub fn write_model(path: &Path, model: &TrainedModel) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| TokenizerError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    write_atomic(path, &model.to_bytes())
}

#[cfg(test)]
mod tests;
