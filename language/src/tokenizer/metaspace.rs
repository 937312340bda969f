//! SentencePiece's whitespace symbol, which the converter, the fast encoder and the trainer
//! all write in place of spaces.

/// The dummy-prefix / whitespace symbol `▁` (U+2581).
pub const SPACE: char = '\u{2581}';
