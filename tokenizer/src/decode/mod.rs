//! Ids back to text.
//!
//! * [`pieces`]: SentencePiece `DecodeIds` on the piece table (control pieces vanish, byte
//!   pieces become UTF-8, `▁` a space, the dummy prefix dropped);
//! * [`text`]: ChatGLM's `postprocess` (`<n>`, `<|tab|>`, `<|blank_N|>` back to whitespace)
//!   and Hugging Face's `clean_up_tokenization`;
//! * [`options`]: which of Hugging Face's decoding steps to apply.

pub mod options;
pub mod pieces;
pub mod text;
