//! VQA annotation and prediction files.
//!
//! Annotations: the official `{"annotations": [...]}` JSON, a JSON array or JSONL of
//! `{"question_id", "question_type", "answer_type", "answers"}` where `answers` holds strings
//! or official `{"answer": ...}` objects. Predictions: the official result JSON
//! `[{"question_id", "answer"}]` or JSONL of the same objects.

use std::path::Path;

use serde::Deserialize;

use super::records::read_records;
use crate::caption::ImageId;
use crate::error::{EvalError, Result};
use crate::vqa::{VqaPrediction, VqaQuestion};

#[derive(Deserialize)]
#[serde(untagged)]
enum AnswerField {
    Text(String),
    Object { answer: String },
}

#[derive(Deserialize)]
struct QuestionRecord {
    question_id: ImageId,
    #[serde(default)]
    question_type: String,
    #[serde(default)]
    answer_type: String,
    answers: Vec<AnswerField>,
}

/// Reads VQA annotations in file order.
pub fn read_vqa_annotations(path: &Path) -> Result<Vec<VqaQuestion>> {
    let records = read_records::<QuestionRecord>(path, Some("annotations"))?;
    records
        .into_iter()
        .map(|r| {
            let q = r.value;
            if q.answers.is_empty() {
                return Err(EvalError::Content {
                    path: path.to_path_buf(),
                    message: format!("{}: question {} has no answers", r.location, q.question_id),
                });
            }
            Ok(VqaQuestion {
                question_id: q.question_id,
                question_type: q.question_type,
                answer_type: q.answer_type,
                answers: q
                    .answers
                    .into_iter()
                    .map(|a| match a {
                        AnswerField::Text(s) | AnswerField::Object { answer: s } => s,
                    })
                    .collect(),
            })
        })
        .collect()
}

/// Reads VQA predictions in file order.
pub fn read_vqa_predictions(path: &Path) -> Result<Vec<VqaPrediction>> {
    Ok(read_records::<VqaPrediction>(path, None)?
        .into_iter()
        .map(|r| r.value)
        .collect())
}
