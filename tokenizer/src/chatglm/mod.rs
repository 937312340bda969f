//! [`tokenizer::ChatGlmTokenizer`]: the stages put together as ChatGLM uses them.
//!
//! * [`tokenizer`]: the type, encoding (ChatGLM rules, then SentencePiece) and decoding;
//! * [`specials`]: ChatGLM's special ids and the pieces a vocabulary must have;
//! * [`io`]: loading from a `.model`, a `tokenizer.json` or a model directory, saving as
//!   `tokenizer.json`;
//! * [`english`]: the ids English mode suppresses.

pub mod english;
pub mod io;
pub mod specials;
pub mod tokenizer;
