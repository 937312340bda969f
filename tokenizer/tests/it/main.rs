//! The crate's integration tests, one binary: one module per topic.

mod tokenizer_errors;
mod tokenizer_golden;
mod tokenizer_real_ice_text;
