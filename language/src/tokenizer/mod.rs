//! The ChatGLM-6B tokenizer (spec §5), id-exact with the official Python code.
//!
//! * [`spm`] reads a SentencePiece `.model` (protobuf, via `prost` messages in [`proto`]) and
//!   refuses settings it does not implement;
//! * [`convert`] turns it into a `tokenizers::Tokenizer` (BPE or Unigram, byte fallback,
//!   user-defined pieces) and reads/writes `tokenizer.json`;
//! * [`fast`] drives the `tokenizers` model without the pipeline's offset bookkeeping;
//! * [`lattice`] is a string-free copy of `tokenizers`' Unigram Viterbi search for it, over
//!   the double-array trie of [`trie`];
//! * [`merges`] is the same for BPE merges (short words);
//! * [`metaspace`] holds the whitespace symbol `▁` they share;
//! * [`pieces`] holds piece texts/types and SentencePiece's decoding;
//! * [`text`] has ChatGLM's newline/tab/blank rules and HF's decode cleanup;
//! * [`chatglm`] puts them together as [`ChatGlmTokenizer`];
//! * [`train`] trains a small unigram vocabulary in the same layout (`tokenizer train`).

pub mod chatglm;
pub mod convert;
pub mod error;
pub mod fast;
pub mod lattice;
pub mod merges;
pub mod metaspace;
pub mod pieces;
pub mod proto;
pub mod spm;
pub mod text;
pub mod train;
pub mod trie;

pub use chatglm::{write_atomic, ChatGlmTokenizer, DecodeOptions, SpecialIds};
pub use error::{Result, TokenizerError};
pub use pieces::{PieceKind, PieceTable};
pub use spm::{ModelKind, SpModel};
pub use train::{train_unigram, write_model, TrainSummary, TrainedModel, TrainerConfig};
