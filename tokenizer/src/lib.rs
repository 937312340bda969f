//! The ChatGLM-6B tokenizer (spec §5), id-exact with the official Python code, organised by
//! pipeline stage as the `tokenizers` crate is:
//!
//! * [`normalize`]: the text rules before segmentation — ChatGLM's newline, tab and
//!   space-run pieces, SentencePiece's `▁` and whitespace collapsing;
//! * [`model`]: segmentation — the `tokenizers` pipeline ([`model::pipeline`]) and the lean
//!   encoder that drives it without offset bookkeeping: the unigram Viterbi lattice over a
//!   double-array trie, BPE merges for short words, a word cache;
//! * [`decode`]: ids back to text — SentencePiece's piece decoding, ChatGLM's reverse rules
//!   and Hugging Face's tokenization-space cleanup;
//! * [`formats`]: files — SentencePiece `.model` (protobuf via `prost`), its conversion into a
//!   `tokenizers::Tokenizer`, and `tokenizer.json` read and write;
//! * [`train`]: a small unigram vocabulary in `ice_text.model`'s layout (`tokenizer train`);
//! * [`chatglm`]: [`ChatGlmTokenizer`], the stages put together, and its special ids.
//!
//! [`vocab`] (piece texts and types) and [`error`] are shared by every stage.

pub mod chatglm;
pub mod decode;
pub mod error;
pub mod files;
pub mod formats;
pub mod model;
pub mod normalize;
pub mod train;
pub mod vocab;

pub use chatglm::specials::SpecialIds;
pub use chatglm::tokenizer::ChatGlmTokenizer;
pub use decode::options::DecodeOptions;
pub use error::{Result, TokenizerError};
pub use files::write_atomic;
pub use formats::spm::{ModelKind, SpModel};
pub use train::{train_unigram, write_model, TrainSummary, TrainedModel, TrainerConfig};
pub use vocab::{PieceKind, PieceTable};
