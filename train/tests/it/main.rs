//! The crate's integration tests, one binary: one module per topic.

mod checkpoint_io;
mod data_formats;
mod e2e_toy;
mod losses_golden;
