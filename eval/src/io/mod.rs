//! File readers (JSON / JSONL) for predictions, references and score files, and an atomic
//! writer for reports.

mod atomic;
pub mod captions;
mod records;
pub mod retrieval;
pub mod vqa;

pub use atomic::write_atomic;
pub use captions::{
    pair_captions, read_caption_predictions, read_caption_references, read_caption_set,
};
pub use records::Record;
