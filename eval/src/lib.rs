//! Evaluation for VisualGLM: COCO caption metrics (BLEU-1..4, ROUGE-L, CIDEr-D) as
//! pycocoevalcap computes them, VQA accuracy as the official VQA evaluation computes it,
//! retrieval Recall@K as LAVIS reports it, and perplexity. Independent of the model crates.

#![warn(missing_docs)]

pub mod caption;
pub mod error;
mod hash;
pub mod io;
pub mod perplexity;
pub mod report;
pub mod retrieval;
pub mod stats;
pub mod vqa;

pub use caption::{exact_match, score_captions, CaptionItem, ImageId, Tokenizer};
pub use error::{EvalError, Result};
pub use report::{CaptionReport, CaptionSummary, CorpusScores, ItemScores};
