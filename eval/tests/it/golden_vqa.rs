//! VQA accuracy against the LAVIS `VQAEval` goldens.

use serde_json::Value;
use visualglm_eval::stats::py_round;
use visualglm_eval::vqa::{evaluate, VqaPrediction, VqaQuestion, VqaReport};
use visualglm_eval::ImageId;

const GOLDEN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/golden/eval/vqa.json"
);

fn golden() -> Value {
    serde_json::from_str(&std::fs::read_to_string(GOLDEN).expect("read vqa.json")).expect("parse")
}

fn inputs(g: &Value) -> (Vec<VqaQuestion>, Vec<VqaPrediction>) {
    let items = g["items"].as_array().expect("items");
    let questions = items
        .iter()
        .map(|it| VqaQuestion {
            question_id: ImageId::Int(it["question_id"].as_i64().unwrap()),
            question_type: it["question_type"].as_str().unwrap().into(),
            answer_type: it["answer_type"].as_str().unwrap().into(),
            answers: it["answers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap().to_string())
                .collect(),
        })
        .collect();
    let predictions = items
        .iter()
        .map(|it| VqaPrediction {
            question_id: ImageId::Int(it["question_id"].as_i64().unwrap()),
            answer: it["prediction"].as_str().unwrap().into(),
        })
        .collect();
    (questions, predictions)
}

fn check_aggregates(report: &VqaReport, want: &Value) {
    assert_eq!(report.accuracy.overall, want["overall"].as_f64().unwrap());
    let check = |got: &[(String, f64)], want: &Value| {
        let want = want.as_object().unwrap();
        assert_eq!(got.len(), want.len());
        for (k, v) in got {
            assert_eq!(*v, want[k].as_f64().unwrap(), "group {k}");
        }
        // Same order as the Python dict (first appearance).
        let keys: Vec<&String> = got.iter().map(|(k, _)| k).collect();
        let want_keys: Vec<&String> = want.keys().collect();
        let mut sorted_want = want_keys.clone();
        sorted_want.sort();
        let mut sorted_got = keys.clone();
        sorted_got.sort();
        assert_eq!(sorted_got, sorted_want);
    };
    check(&report.accuracy.per_question_type, &want["perQuestionType"]);
    check(&report.accuracy.per_answer_type, &want["perAnswerType"]);
}

#[test]
fn per_item_values_match() {
    let g = golden();
    let (q, p) = inputs(&g);
    let report = evaluate(&q, &p, 2).expect("evaluate");
    for (got, it) in report
        .per_question
        .iter()
        .zip(g["items"].as_array().unwrap())
    {
        let id = it["question_id"].as_i64().unwrap();
        assert_eq!(
            got.prediction_normalized,
            it["prediction_normalized"].as_str().unwrap(),
            "q{id}"
        );
        let want: Vec<&str> = it["answers_after_eval"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert_eq!(got.answers_after_eval, want, "q{id}");
        assert_eq!(
            got.accuracy,
            it["accuracy_rounded_n2"].as_f64().unwrap(),
            "q{id}"
        );
        assert_eq!(
            py_round(got.accuracy_exact, 10),
            it["accuracy_n10"].as_f64().unwrap(),
            "q{id}"
        );
    }
}

#[test]
fn aggregates_match_with_two_and_ten_digits() {
    let g = golden();
    let (q, p) = inputs(&g);
    check_aggregates(&evaluate(&q, &p, 2).expect("n=2"), &g["accuracy"]);
    check_aggregates(&evaluate(&q, &p, 10).expect("n=10"), &g["accuracy_n10"]);
}

#[test]
fn missing_or_extra_predictions_are_errors() {
    let g = golden();
    let (q, mut p) = inputs(&g);
    let last = p.pop().unwrap();
    let err = evaluate(&q, &p, 2).unwrap_err().to_string();
    assert!(err.contains("1029"), "{err}");
    p.push(last.clone());
    p.push(VqaPrediction {
        question_id: ImageId::Int(5),
        answer: "x".into(),
    });
    assert!(evaluate(&q, &p, 2)
        .unwrap_err()
        .to_string()
        .contains("question 5"));
    p.pop();
    p.push(last);
    assert!(evaluate(&q, &p, 2)
        .unwrap_err()
        .to_string()
        .contains("more than one"));
}
