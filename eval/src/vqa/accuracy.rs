//! The VQA accuracy: for each of the 10 ground-truth answers, `min(1, #matches among the
//! other 9 / 3)`, averaged; then means overall, per question type and per answer type, all
//! ×100 and rounded to `digits` decimals as Python's `round` does (LAVIS uses 2).

use std::collections::HashMap;

use serde::{Deserialize, Serialize, Serializer};

use super::normalize::{normalize_prediction, process_punctuation};
use crate::caption::ImageId;
use crate::error::{EvalError, Result};
use crate::stats::py_round;

/// One annotated question.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct VqaQuestion {
    /// Question id (integer or string).
    pub question_id: ImageId,
    /// Question type (e.g. `what color is the`).
    #[serde(default)]
    pub question_type: String,
    /// Answer type (`yes/no`, `number`, `other`).
    #[serde(default)]
    pub answer_type: String,
    /// The ground-truth answers (10 in VQA v2), raw.
    pub answers: Vec<String>,
}

/// One predicted answer.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct VqaPrediction {
    /// Question id.
    pub question_id: ImageId,
    /// The model's answer, raw.
    pub answer: String,
}

/// Per-question outcome.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VqaItemResult {
    /// Question id.
    pub question_id: ImageId,
    /// The prediction after normalisation.
    pub prediction_normalized: String,
    /// The ground-truth answers after the evaluation's processing.
    pub answers_after_eval: Vec<String>,
    /// Accuracy ×100, rounded to `digits`.
    pub accuracy: f64,
    /// Accuracy ×100, unrounded.
    pub accuracy_exact: f64,
}

/// Aggregated accuracies (×100, rounded), with the official key names.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VqaAccuracy {
    /// Mean over all questions.
    pub overall: f64,
    /// Mean per question type, in order of first appearance.
    #[serde(rename = "perQuestionType", serialize_with = "ordered_map")]
    pub per_question_type: Vec<(String, f64)>,
    /// Mean per answer type, in order of first appearance.
    #[serde(rename = "perAnswerType", serialize_with = "ordered_map")]
    pub per_answer_type: Vec<(String, f64)>,
}

/// Full VQA evaluation result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VqaReport {
    /// Decimals used for rounding.
    pub digits: usize,
    /// Aggregates.
    pub accuracy: VqaAccuracy,
    /// Per-question results in annotation order.
    pub per_question: Vec<VqaItemResult>,
}

fn ordered_map<S: Serializer>(
    pairs: &[(String, f64)],
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    s.collect_map(pairs.iter().map(|(k, v)| (k, v)))
}

/// Leave-one-out accuracy of a normalised prediction against processed answers (0..=1).
pub fn answer_accuracy(prediction: &str, answers: &[String]) -> f64 {
    if answers.is_empty() {
        return 0.0;
    }
    let total_matches = answers.iter().filter(|a| a.as_str() == prediction).count();
    let mut sum = 0.0f64;
    for answer in answers {
        let own = usize::from(answer.as_str() == prediction);
        let matches = (total_matches - own) as f64;
        sum += (matches / 3.0).min(1.0);
    }
    sum / answers.len() as f64
}

/// Scores `predictions` against `questions` (annotation order defines the report order).
///
/// Every question needs exactly one prediction and every prediction must match a question,
/// as the official `loadRes` requires.
pub fn evaluate(
    questions: &[VqaQuestion],
    predictions: &[VqaPrediction],
    digits: usize,
) -> Result<VqaReport> {
    if questions.is_empty() {
        return Err(EvalError::Input("no VQA questions".into()));
    }
    let mut by_id: HashMap<String, &str> = HashMap::with_capacity(predictions.len());
    for p in predictions {
        if by_id.insert(p.question_id.key(), &p.answer).is_some() {
            return Err(EvalError::Input(format!(
                "question {} has more than one prediction",
                p.question_id
            )));
        }
    }
    let mut per_question = Vec::with_capacity(questions.len());
    let mut all = Vec::with_capacity(questions.len());
    let mut by_qtype: Vec<(String, Vec<f64>)> = Vec::new();
    let mut by_atype: Vec<(String, Vec<f64>)> = Vec::new();
    for q in questions {
        let raw = by_id.remove(&q.question_id.key()).ok_or_else(|| {
            EvalError::Input(format!("question {} has no prediction", q.question_id))
        })?;
        if q.answers.is_empty() {
            return Err(EvalError::Input(format!(
                "question {} has no ground-truth answers",
                q.question_id
            )));
        }
        let prediction = normalize_prediction(raw);
        let all_same = q.answers.iter().all(|a| *a == q.answers[0]);
        let answers: Vec<String> = if all_same {
            q.answers.clone()
        } else {
            q.answers.iter().map(|a| process_punctuation(a)).collect()
        };
        let acc = answer_accuracy(&prediction, &answers);
        all.push(acc);
        push_group(&mut by_qtype, &q.question_type, acc);
        push_group(&mut by_atype, &q.answer_type, acc);
        per_question.push(VqaItemResult {
            question_id: q.question_id.clone(),
            prediction_normalized: prediction,
            answers_after_eval: answers,
            accuracy: py_round(100.0 * acc, digits),
            accuracy_exact: 100.0 * acc,
        });
    }
    if let Some(extra) = by_id.keys().next() {
        return Err(EvalError::Input(format!(
            "prediction for question {extra}, which is not in the annotations"
        )));
    }
    let pct = |v: &[f64]| {
        py_round(
            100.0 * v.iter().fold(0.0, |a, b| a + b) / v.len() as f64,
            digits,
        )
    };
    Ok(VqaReport {
        digits,
        accuracy: VqaAccuracy {
            overall: pct(&all),
            per_question_type: by_qtype.iter().map(|(k, v)| (k.clone(), pct(v))).collect(),
            per_answer_type: by_atype.iter().map(|(k, v)| (k.clone(), pct(v))).collect(),
        },
        per_question,
    })
}

fn push_group(groups: &mut Vec<(String, Vec<f64>)>, key: &str, value: f64) {
    match groups.iter_mut().find(|(k, _)| k == key) {
        Some((_, values)) => values.push(value),
        None => groups.push((key.to_string(), vec![value])),
    }
}

impl VqaReport {
    /// The aggregates as a Markdown table.
    pub fn to_markdown(&self) -> String {
        let d = self.digits;
        let mut out = String::from("| group | accuracy |\n| --- | ---: |\n");
        out.push_str(&format!("| overall | {:.d$} |\n", self.accuracy.overall));
        for (k, v) in &self.accuracy.per_answer_type {
            out.push_str(&format!("| answer type: {k} | {v:.d$} |\n"));
        }
        for (k, v) in &self.accuracy.per_question_type {
            out.push_str(&format!("| question type: {k} | {v:.d$} |\n"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leave_one_out() {
        let ans = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let yes7 = ans(&[
            "yes", "yes", "yes", "yes", "yes", "yes", "yes", "no", "no", "no",
        ]);
        assert_eq!(answer_accuracy("yes", &yes7), 1.0);
        assert!((answer_accuracy("no", &yes7) - 0.9).abs() < 1e-15);
        let one = ans(&["a", "b", "b", "b", "b", "b", "b", "b", "b", "b"]);
        assert!((answer_accuracy("a", &one) - 0.3).abs() < 1e-15);
        assert_eq!(answer_accuracy("c", &one), 0.0);
    }
}
