//! Tokenizer files.
//!
//! * [`proto`]: the `prost` messages of SentencePiece's `ModelProto` (the `.model` file);
//! * [`spm`]: reading a `.model` into [`spm::SpModel`], refusing settings this port does not
//!   implement;
//! * [`convert`]: a SentencePiece model as a `tokenizers` pipeline (BPE or Unigram, byte
//!   fallback, user-defined pieces);
//! * [`json`]: `tokenizer.json` read and write;
//! * [`section`]: the SentencePiece facts `tokenizer.json` carries in its post-processor.

pub mod convert;
pub mod json;
pub mod proto;
pub mod section;
pub mod spm;
