//! Text rules applied before segmentation.
//!
//! * [`chatglm`]: ChatGLM's `_preprocess` (`\n` → `<n>`, tab → `<|tab|>`, space runs →
//!   `<|blank_N|>`) and the names of those pieces;
//! * [`sentencepiece`]: SentencePiece's whitespace symbol `▁` and its
//!   `remove_extra_whitespaces` step.

pub mod chatglm;
pub mod sentencepiece;
