//! File readers: accepted formats and clear errors for malformed files.

use std::path::{Path, PathBuf};

use visualglm_eval::io::vqa::{read_vqa_annotations, read_vqa_predictions};
use visualglm_eval::io::{
    read_caption_predictions, read_caption_references, read_caption_set, read_caption_set_with,
    read_references, CaptionSetOptions,
};
use visualglm_eval::ImageId;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path
}

#[test]
fn predictions_jsonl_and_coco_result_json() {
    let dir = tempfile::tempdir().unwrap();
    let jsonl = write(
        dir.path(),
        "p.jsonl",
        "{\"image_id\": 1, \"caption\": \"A cat.\"}\n\n{\"id\": \"x7\", \"caption\": \"b\", \"score\": 3}\n",
    );
    let preds = read_caption_predictions(&jsonl).unwrap();
    assert_eq!(preds.len(), 2);
    assert_eq!(preds[0].value, (ImageId::Int(1), "A cat.".to_string()));
    assert_eq!(preds[1].value.0, ImageId::Str("x7".into()));
    assert_eq!(preds[1].location, "line 3");

    let coco = write(
        dir.path(),
        "p.json",
        "[{\"image_id\": 1, \"caption\": \"A cat.\"}]",
    );
    assert_eq!(
        read_caption_predictions(&coco).unwrap()[0].value.1,
        "A cat."
    );
}

#[test]
fn references_coco_and_jsonl() {
    let dir = tempfile::tempdir().unwrap();
    let coco = write(
        dir.path(),
        "r.json",
        r#"{"images": [], "annotations": [{"image_id": 2, "id": 10, "caption": "x"},
            {"image_id": 1, "caption": "y"}, {"image_id": 2, "caption": "z"}]}"#,
    );
    let refs = read_caption_references(&coco).unwrap();
    assert_eq!(
        refs[0],
        (ImageId::Int(2), vec!["x".to_string(), "z".to_string()])
    );
    assert_eq!(refs[1].1, vec!["y".to_string()]);

    let jsonl = write(
        dir.path(),
        "r.jsonl",
        "{\"image_id\": 1, \"captions\": [\"a\", \"b\"]}\n{\"image_id\": \"2\", \"captions\": [\"c\"]}\n",
    );
    let refs = read_caption_references(&jsonl).unwrap();
    assert_eq!(refs.len(), 2);
    // A one-line JSONL file is read too.
    let one = write(
        dir.path(),
        "one.jsonl",
        "{\"image_id\": 1, \"captions\": [\"a\"]}\n",
    );
    assert_eq!(read_caption_references(&one).unwrap().len(), 1);

    // Integer and string ids match by their text.
    let preds = write(
        dir.path(),
        "p.jsonl",
        "{\"image_id\": \"1\", \"caption\": \"a\"}\n{\"image_id\": 2, \"caption\": \"c\"}\n",
    );
    let items = read_caption_set(&preds, &jsonl).unwrap();
    assert_eq!(items[0].references, vec!["a".to_string(), "b".to_string()]);
    assert_eq!(items[1].references, vec!["c".to_string()]);
}

#[test]
fn malformed_files_name_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let bad = write(
        dir.path(),
        "bad.jsonl",
        "{\"image_id\": 1, \"caption\": \"a\"}\n{\"image_id\": 2, \"caption\": }\n",
    );
    let err = read_caption_predictions(&bad).unwrap_err().to_string();
    assert!(err.contains("bad.jsonl:2:"), "{err}");

    let missing = write(
        dir.path(),
        "m.jsonl",
        "{\"image_id\": 1, \"caption\": \"a\"}\n{\"image_id\": 2}\n",
    );
    let err = read_caption_predictions(&missing).unwrap_err().to_string();
    assert!(
        err.contains("m.jsonl") && err.contains("line 2") && err.contains("caption"),
        "{err}"
    );

    let no_id = write(dir.path(), "n.json", "[{\"caption\": \"a\"}]");
    let err = read_caption_predictions(&no_id).unwrap_err().to_string();
    assert!(
        err.contains("n.json") && err.contains("record 1") && err.contains("image_id"),
        "{err}"
    );

    let truncated = write(dir.path(), "t.json", "{\"annotations\": [{\"image_id\": 1,");
    let err = read_caption_references(&truncated).unwrap_err().to_string();
    assert!(
        err.contains("t.json") && err.contains("invalid JSON"),
        "{err}"
    );

    let wrong_type = write(
        dir.path(),
        "w.jsonl",
        "{\"image_id\": 1, \"captions\": \"not a list\"}\n",
    );
    let err = read_caption_references(&wrong_type)
        .unwrap_err()
        .to_string();
    assert!(err.contains("w.jsonl:1:"), "{err}");

    let empty = write(dir.path(), "e.jsonl", "  \n");
    assert!(read_caption_predictions(&empty)
        .unwrap_err()
        .to_string()
        .contains("empty"));

    let absent = dir.path().join("absent.jsonl");
    let err = read_caption_predictions(&absent).unwrap_err().to_string();
    assert!(err.contains("absent.jsonl"), "{err}");
}

#[test]
fn pairing_errors() {
    let dir = tempfile::tempdir().unwrap();
    let refs = write(
        dir.path(),
        "r.jsonl",
        "{\"image_id\": 1, \"captions\": [\"a\"]}\n",
    );
    let dup = write(
        dir.path(),
        "d.jsonl",
        "{\"image_id\": 1, \"caption\": \"a\"}\n{\"image_id\": 1, \"caption\": \"b\"}\n",
    );
    let err = read_caption_set(&dup, &refs).unwrap_err().to_string();
    assert!(
        err.contains("d.jsonl") && err.contains("line 2") && err.contains("line 1"),
        "{err}"
    );
    let unknown = write(
        dir.path(),
        "u.jsonl",
        "{\"image_id\": 3, \"caption\": \"a\"}\n",
    );
    let err = read_caption_set(&unknown, &refs).unwrap_err().to_string();
    assert!(err.contains("image 3") && err.contains("r.jsonl"), "{err}");
}

#[test]
fn vqa_files() {
    let dir = tempfile::tempdir().unwrap();
    let ann = write(
        dir.path(),
        "a.json",
        r#"{"annotations": [{"question_id": 5, "question_type": "what", "answer_type": "other",
            "answers": [{"answer": "x", "answer_id": 1}, {"answer": "y", "answer_id": 2}]}]}"#,
    );
    let qs = read_vqa_annotations(&ann).unwrap();
    assert_eq!(qs[0].answers, vec!["x".to_string(), "y".to_string()]);
    let ann2 = write(
        dir.path(),
        "a.jsonl",
        "{\"question_id\": 5, \"answers\": [\"x\"]}\n",
    );
    assert_eq!(read_vqa_annotations(&ann2).unwrap()[0].answer_type, "");
    let preds = write(
        dir.path(),
        "p.jsonl",
        "{\"question_id\": 5, \"answer\": \"x\"}\n",
    );
    assert_eq!(read_vqa_predictions(&preds).unwrap()[0].answer, "x");
    let bad = write(dir.path(), "b.json", "[{\"question_id\": 5}]");
    let err = read_vqa_predictions(&bad).unwrap_err().to_string();
    assert!(err.contains("b.json") && err.contains("answer"), "{err}");
}

#[test]
fn release_references_match_predictions_by_path_or_id() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    std::fs::create_dir(&images).unwrap();
    for name in ["a.png", "b.png", "c.png"] {
        std::fs::write(images.join(name), b"png").unwrap();
    }
    // The release's list: an image's labels are its references; ids follow first appearance.
    let refs = write(
        dir.path(),
        "val.json",
        r#"[{"img": "images/a.png", "prompt": "Describe.", "label": "one"},
            {"img": "images/b.png", "prompt": "Describe.", "label": "two"},
            {"img": "images/a.png", "prompt": "Describe.", "label": "uno"},
            {"img": "images/c.png", "prompt": "Describe.", "label": "three"}]"#,
    );
    let groups = read_references(&refs, None).unwrap();
    assert_eq!(groups.len(), 3);
    assert_eq!(groups[0].captions, ["one", "uno"]);
    assert_eq!(groups[2].image_id, ImageId::Int(2));
    // `visualglm batch` output: by path, however it is spelled; a second spelling of one
    // image is a second prediction.
    let a = images.join("a.png");
    let b = images.join(".").join("b.png");
    let preds = write(
        dir.path(),
        "batch.jsonl",
        &format!(
            "{}\n{}\n",
            serde_json::json!({"image": a, "caption": "one"}),
            serde_json::json!({"image": b, "caption": "too"})
        ),
    );
    let set = read_caption_set_with(&preds, &refs, &CaptionSetOptions::default()).unwrap();
    assert_eq!(set.items.len(), 2);
    assert_eq!(set.items[0].image_id, ImageId::Str("images/a.png".into()));
    assert_eq!(set.items[1].references, ["two"]);
    assert_eq!(set.unpredicted, [ImageId::Str("images/c.png".into())]);
    // `eval captions --predictions-out`: by id, and an id that disagrees with the path fails.
    let by_id = write(
        dir.path(),
        "ids.jsonl",
        "{\"image_id\": 2, \"caption\": \"3\"}\n",
    );
    let set = read_caption_set_with(&by_id, &refs, &CaptionSetOptions::default()).unwrap();
    assert_eq!(set.items[0].references, ["three"]);
    assert_eq!(set.unpredicted.len(), 2);
    let wrong = write(
        dir.path(),
        "wrong.jsonl",
        &format!(
            "{}\n",
            serde_json::json!({"image_id": 1, "image": a, "caption": "x"})
        ),
    );
    let err = read_caption_set(&wrong, &refs).unwrap_err().to_string();
    assert!(err.contains("image_id 1") && err.contains("but 0"), "{err}");
    let twice = write(
        dir.path(),
        "twice.jsonl",
        &format!(
            "{}\n{}\n",
            serde_json::json!({"image": a, "caption": "x"}),
            serde_json::json!({"image": images.join("..").join("images").join("a.png"), "caption": "y"})
        ),
    );
    let err = read_caption_set(&twice, &refs).unwrap_err().to_string();
    assert!(err.contains("line 2") && err.contains("already"), "{err}");
    let elsewhere = write(
        dir.path(),
        "else.jsonl",
        "{\"image\": \"nowhere/a.png\", \"caption\": \"x\"}\n",
    );
    let err = read_caption_set(&elsewhere, &refs).unwrap_err().to_string();
    assert!(
        err.contains("nowhere/a.png") && err.contains("val.json"),
        "{err}"
    );
    // A path-keyed prediction needs references with paths.
    let coco = write(
        dir.path(),
        "coco.json",
        r#"{"annotations": [{"image_id": 1, "caption": "x"}]}"#,
    );
    let err = read_caption_set(&preds, &coco).unwrap_err().to_string();
    assert!(err.contains("image_id"), "{err}");
}

#[test]
fn release_references_with_image_lists_match_set_predictions() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    std::fs::create_dir(&images).unwrap();
    for name in ["a.png", "b.png"] {
        std::fs::write(images.join(name), b"png").unwrap();
    }
    // A two-image record, the same pair again, and one of its images alone: two items.
    let refs = write(
        dir.path(),
        "pairs.json",
        r#"[{"img": ["images/a.png", "images/b.png"], "prompt": "Which?", "label": "the first"},
            {"img": ["images/a.png", "images/b.png"], "prompt": "Which?", "label": "first"},
            {"img": "images/a.png", "prompt": "Describe.", "label": "one"}]"#,
    );
    let groups = read_references(&refs, None).unwrap();
    assert_eq!(groups.len(), 2);
    assert_eq!(groups[0].captions, ["the first", "first"]);
    // `eval captions --predictions-out` names a set by its paths joined with " + ", however
    // each path is spelled; the order of the images matters.
    let set_name = format!(
        "{}{}{}",
        images.join("a.png").display(),
        visualglm_eval::io::caption_set::IMAGE_SET_SEPARATOR,
        images.join(".").join("b.png").display()
    );
    let preds = write(
        dir.path(),
        "preds.jsonl",
        &format!(
            "{}\n",
            serde_json::json!({"image": set_name, "caption": "the first"})
        ),
    );
    let set = read_caption_set_with(&preds, &refs, &CaptionSetOptions::default()).unwrap();
    assert_eq!(set.items.len(), 1);
    assert_eq!(set.items[0].references, ["the first", "first"]);
    assert_eq!(set.unpredicted.len(), 1);
    let swapped = write(
        dir.path(),
        "swapped.jsonl",
        &format!(
            "{}\n",
            serde_json::json!({"image": format!("{} + {}", images.join("b.png").display(),
                                                images.join("a.png").display()),
                               "caption": "x"})
        ),
    );
    assert!(read_caption_set(&swapped, &refs).is_err());
}
