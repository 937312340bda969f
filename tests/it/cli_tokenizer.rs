//! `visualglm tokenizer convert|encode|decode` end to end on a stand-in model.

use std::process::Command;

const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/golden/tokenizer");

fn visualglm(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_visualglm"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn golden_case(text: &str) -> serde_json::Value {
    let all: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{GOLDEN}/golden_standin.json")).unwrap(),
    )
    .unwrap();
    all["cases"]["bpe"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["text"] == text)
        .unwrap()
        .clone()
}

#[test]
fn convert_encode_decode_round_trip() {
    let model = format!("{GOLDEN}/standin_bpe.model");
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("tokenizer.json");
    let json_s = json.to_str().unwrap();
    let (ok, _, err) = visualglm(&["tokenizer", "convert", &model, "--out", json_s]);
    assert!(ok, "{err}");
    assert!(json.is_file());

    let text = "</img>问：描述这张图片。\n答：";
    let case = golden_case(text);
    let want = serde_json::to_string(&case["ids"]).unwrap();
    let dir_s = dir.path().to_str().unwrap();
    for source in [
        ["--tokenizer", model.as_str()],
        ["--tokenizer", json_s],
        ["--model", dir_s],
    ] {
        let (ok, out, err) = visualglm(&["tokenizer", "encode", source[0], source[1], text]);
        assert!(ok, "{err}");
        let got: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(serde_json::to_string(&got).unwrap(), want);
    }

    let case = golden_case("It 's a cat . Isn't it ? I 'm sure , they 're here !");
    let ids = case["ids_with_special_tokens"].as_array().unwrap();
    let commas: Vec<String> = ids.iter().map(|v| v.to_string()).collect();
    let (ok, out, err) = visualglm(&[
        "tokenizer",
        "decode",
        "--tokenizer",
        json_s,
        &commas.join(","),
    ]);
    assert!(ok, "{err}");
    assert_eq!(
        out.strip_suffix('\n').unwrap(),
        case["hf_decode_with_special_tokens"]
    );
    let list = serde_json::to_string(ids).unwrap();
    let (ok, out, _) = visualglm(&[
        "tokenizer",
        "decode",
        "--tokenizer",
        &model,
        "--skip-special-tokens",
        "--no-cleanup",
        &list,
    ]);
    assert!(ok);
    let no_cleanup = case["hf_decode_no_cleanup"].as_str().unwrap();
    assert_eq!(
        out.strip_suffix('\n').unwrap(),
        format!("{no_cleanup}[gMASK]")
    );
}

#[test]
fn bad_input_gives_clear_errors() {
    let model = format!("{GOLDEN}/standin_bpe.model");
    let (ok, _, err) = visualglm(&[
        "tokenizer",
        "encode",
        "--tokenizer",
        "/no/such/ice_text.model",
        "hi",
    ]);
    assert!(!ok);
    assert!(err.contains("/no/such/ice_text.model"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("corrupt.model");
    std::fs::write(&bad, b"\xff\xff\xff garbage").unwrap();
    let (ok, _, err) = visualglm(&[
        "tokenizer",
        "encode",
        "--tokenizer",
        bad.to_str().unwrap(),
        "hi",
    ]);
    assert!(!ok);
    assert!(
        err.contains("corrupt.model") && err.contains("not a SentencePiece model"),
        "{err}"
    );

    let (ok, _, err) = visualglm(&["tokenizer", "decode", "--tokenizer", &model, "1,two"]);
    assert!(!ok);
    assert!(err.contains("bad id \"two\""), "{err}");
    let (ok, _, err) = visualglm(&["tokenizer", "decode", "--tokenizer", &model, "[4, 99999]"]);
    assert!(!ok);
    assert!(
        err.contains("99999") && err.contains("outside the vocabulary"),
        "{err}"
    );

    let (ok, _, err) = visualglm(&["tokenizer", "encode", "hi"]);
    assert!(!ok);
    assert!(err.contains("--tokenizer"), "{err}");
    let (ok, _, err) = visualglm(&["tokenizer", "convert", "/no/such/dir", "--out", "x.json"]);
    assert!(!ok);
    assert!(err.contains("/no/such/dir"), "{err}");
}

#[test]
fn train_on_synthetic_captions_then_encode_and_decode() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("synth");
    let (ok, _, err) = visualglm(&[
        "data",
        "synth",
        "--out",
        data.to_str().unwrap(),
        "--count",
        "24",
        "--size",
        "32",
    ]);
    assert!(ok, "{err}");
    let train_json = data.join("train.json");
    let extra = dir.path().join("extra.txt");
    std::fs::write(&extra, "Where is the red circle?\nOn the left.\n").unwrap();
    let model = dir.path().join("tokenizer.model");
    let model_s = model.to_str().unwrap();
    let (ok, out, err) = visualglm(&[
        "tokenizer",
        "train",
        "--data",
        train_json.to_str().unwrap(),
        extra.to_str().unwrap(),
        "--text",
        "a green square",
        "--vocab-size",
        "160",
        "--out",
        model_s,
    ]);
    assert!(ok, "{err}");
    assert!(
        err.contains("160 pieces") && err.contains("[gMASK]=153"),
        "{err}"
    );
    let summary: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(summary["vocab_size"], 160);
    assert_eq!(summary["mask_id"], 152);
    assert_eq!(summary["gmask_id"], 153);
    assert_eq!(summary["sop_id"], 156);
    assert_eq!(summary["eop_id"], 157);
    assert_eq!(summary["pad_id"], 3);
    // 24 scenes, 10% held out: 22 prompts + 22 labels, 2 lines, 1 --text, and the prompt
    // template's own texts.
    let template = visualglm_language::prompt::template_texts().len();
    assert_eq!(summary["texts"], 47 + template);

    // Every training caption encodes without <unk> (id 0) and decodes back.
    let records: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&train_json).unwrap()).unwrap();
    let mut texts: Vec<String> = records
        .as_array()
        .unwrap()
        .iter()
        .take(5)
        .map(|r| r["label"].as_str().unwrap().to_string())
        .collect();
    texts.push("Describe the image.\n\ta  red circle".into());
    for text in &texts {
        let (ok, out, err) = visualglm(&["tokenizer", "encode", "--tokenizer", model_s, text]);
        assert!(ok, "{err}");
        let ids: Vec<u32> = serde_json::from_str(out.trim()).unwrap();
        assert!(!ids.is_empty() && !ids.contains(&0), "{text:?} -> {ids:?}");
        assert!(ids.iter().all(|&i| i < 160));
        let (ok, out, err) = visualglm(&[
            "tokenizer",
            "decode",
            "--tokenizer",
            model_s,
            "--no-cleanup",
            out.trim(),
        ]);
        assert!(ok, "{err}");
        assert_eq!(out.strip_suffix('\n').unwrap(), text);
    }
    let (ok, out, _) = visualglm(&[
        "tokenizer",
        "encode",
        "--tokenizer",
        model_s,
        "--special-tokens",
        "a red circle",
    ]);
    assert!(ok);
    assert!(out.trim().ends_with(",153,156]"), "{out}");

    // Same data, same bytes.
    let again = dir.path().join("again.model");
    let (ok, _, err) = visualglm(&[
        "tokenizer",
        "train",
        "--data",
        train_json.to_str().unwrap(),
        extra.to_str().unwrap(),
        "--text",
        "a green square",
        "--vocab-size",
        "160",
        "--out",
        again.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert_eq!(
        std::fs::read(&model).unwrap(),
        std::fs::read(&again).unwrap()
    );

    // Clear errors: vocabulary too small, wrong extension, missing data.
    let (ok, _, err) = visualglm(&[
        "tokenizer",
        "train",
        "--data",
        train_json.to_str().unwrap(),
        "--vocab-size",
        "100",
        "--out",
        model_s,
    ]);
    assert!(!ok);
    assert!(err.contains("vocab_size 100 is too small"), "{err}");
    let (ok, _, err) = visualglm(&["tokenizer", "train", "--text", "hi", "--out", "x.json"]);
    assert!(!ok);
    assert!(err.contains(".model"), "{err}");
    let (ok, _, err) = visualglm(&[
        "tokenizer",
        "train",
        "--data",
        "/no/such/train.json",
        "--out",
        model_s,
    ]);
    assert!(!ok);
    assert!(err.contains("/no/such/train.json"), "{err}");
}
