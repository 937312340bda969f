//! File readers (JSON / JSONL) for predictions, references and score files. Reports are
//! written by the caller (the CLI uses `visualglm-files`).

pub mod caption_set;
pub mod captions;
mod records;
pub mod retrieval;
pub mod vqa;

pub use caption_set::{
    match_captions, read_caption_set_with, read_predictions, read_references, CaptionSet,
    CaptionSetOptions, Prediction, References,
};
pub use captions::{
    pair_captions, read_caption_predictions, read_caption_references, read_caption_set,
};
pub use records::Record;
