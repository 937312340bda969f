//! VQA accuracy as the official VQA evaluation (`vqaEval.py`, also LAVIS `vqa_eval.py`)
//! computes it.

pub mod accuracy;
pub mod normalize;

pub use accuracy::{evaluate, VqaAccuracy, VqaItemResult, VqaPrediction, VqaQuestion, VqaReport};
