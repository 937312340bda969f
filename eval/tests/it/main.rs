//! The crate's integration tests, one binary: one module per topic.

mod golden_captions;
mod golden_retrieval;
mod golden_vqa;
mod properties;
mod ptb_fixtures;
mod readers;
