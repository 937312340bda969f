//! The crate's integration tests, one binary: one module per topic.

mod preprocess_errors;
mod preprocess_golden;
