//! Data readers, the sampler and the prefetcher.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use visualglm_train::data::{
    load_data_file, DataFormat, Dataset, ImageLoader, LoadOptions, Prefetcher, Sampler,
    SamplerConfig,
};
use visualglm_train::TrainError;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn skip() -> LoadOptions {
    LoadOptions {
        skip_malformed: true,
        ..LoadOptions::default()
    }
}

#[test]
fn json_list_reads_records_and_resolves_paths() {
    let d = tempfile::tempdir().unwrap();
    let p = write(
        d.path(),
        "data.json",
        "\u{feff}[\n {\"img\": \"imgs/a.png\", \"prompt\": \"what?\", \"label\": \"a \\\"cat\\\" [x]\"},\n\
         {\"img\": \"/abs/b.png\", \"prompt\": \"\", \"label\": \"b\", \"extra\": {\"k\": [1,2]}},\n\
         {\"img\": \"imgs/a.png\", \"prompt\": \"again\", \"label\": \"c\"}\n]\n",
    );
    let (ex, report) = load_data_file(&p, None, &LoadOptions::default()).unwrap();
    assert_eq!(report.loaded, 3);
    assert_eq!(report.skipped, 0);
    assert_eq!(ex[0].image(), d.path().join("imgs/a.png"));
    assert_eq!(ex[0].label, "a \"cat\" [x]");
    assert_eq!(ex[1].image(), PathBuf::from("/abs/b.png"));
    assert_eq!(
        (ex[0].source.line, ex[1].source.line, ex[2].source.line),
        (2, 3, 4)
    );
    assert_eq!((ex[0].image_id, ex[1].image_id, ex[2].image_id), (0, 1, 0));
    // An explicit image root overrides the data file's directory.
    let opts = LoadOptions {
        image_root: Some(PathBuf::from("/data/root")),
        ..LoadOptions::default()
    };
    let (ex, _) = load_data_file(&p, Some(DataFormat::JsonList), &opts).unwrap();
    assert_eq!(ex[0].image(), PathBuf::from("/data/root/imgs/a.png"));
}

#[test]
fn img_may_be_a_list_of_images_and_bad_lists_name_their_line() {
    let d = tempfile::tempdir().unwrap();
    let p = write(
        d.path(),
        "pairs.jsonl",
        "{\"img\": [\"a.png\", \"/abs/b.png\"], \"prompt\": \"which?\", \"label\": \"the first\"}\n\
         {\"img\": \"a.png\", \"prompt\": \"p\", \"label\": \"l\"}\n\
         {\"img\": [\"a.png\", \"/abs/b.png\"], \"prompt\": \"again\", \"label\": \"the second\"}\n",
    );
    let (ex, report) = load_data_file(&p, None, &LoadOptions::default()).unwrap();
    assert_eq!(report.loaded, 3);
    assert_eq!(
        ex[0].images,
        [d.path().join("a.png"), PathBuf::from("/abs/b.png")]
    );
    assert_eq!(ex[0].image(), d.path().join("a.png"));
    assert_eq!(ex[1].images, [d.path().join("a.png")]);
    // The same list is the same image identity; one of its images alone is another.
    assert_eq!((ex[0].image_id, ex[1].image_id, ex[2].image_id), (0, 1, 0));
    for (bad, why) in [
        ("[]", "empty list"),
        ("[\"a.png\", 3]", "\"img\"[1] must be a string"),
        ("[\"\"]", "is empty"),
        ("{}", "a string or a list of strings"),
    ] {
        let p = write(
            d.path(),
            "bad.jsonl",
            &format!(
                "{{\"img\": \"a.png\", \"prompt\": \"p\", \"label\": \"l\"}}\n\
                 {{\"img\": {bad}, \"prompt\": \"p\", \"label\": \"l\"}}\n"
            ),
        );
        let err = load_data_file(&p, None, &LoadOptions::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("bad.jsonl") && err.contains(":2") && err.contains(why),
            "{bad}: {err}"
        );
    }
}

#[test]
fn json_list_malformed_record_names_file_line_and_index() {
    let d = tempfile::tempdir().unwrap();
    let text = "[\n{\"img\": \"a\", \"prompt\": \"p\", \"label\": \"l\"},\n\
                {\"img\": \"b\", \"prompt\": 3, \"label\": \"l\"},\n\
                {\"img\": \"c\", \"prompt\": \"p\"\n  \"label\": \"l\"},\n\
                {\"img\": \"d\", \"prompt\": \"p\", \"label\": \"l\"}\n]";
    let p = write(d.path(), "bad.json", text);
    let err = load_data_file(&p, None, &LoadOptions::default()).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, TrainError::MalformedRecord { .. }), "{msg}");
    assert!(msg.contains("bad.json:3 (record 1)"), "{msg}");
    assert!(msg.contains("\"prompt\" must be a string"), "{msg}");

    let (ex, report) = load_data_file(&p, None, &skip()).unwrap();
    assert_eq!(ex.len(), 2);
    assert_eq!(report.skipped, 2);
    // The syntax error is reported at the line inside the record where it is.
    assert!(
        report.skip_messages[1].contains("bad.json:5 (record 2)"),
        "{:?}",
        report.skip_messages
    );
    assert_eq!(ex[1].label, "l");
    assert_eq!(ex[1].source.record, 3);
}

#[test]
fn json_list_structural_errors_are_fatal_even_when_skipping() {
    let d = tempfile::tempdir().unwrap();
    let truncated = write(
        d.path(),
        "t.json",
        "[{\"img\": \"a\", \"prompt\": \"p\", \"label\": \"l\"},\n{\"img\":",
    );
    let err = load_data_file(&truncated, Some(DataFormat::JsonList), &skip()).unwrap_err();
    assert!(err.to_string().contains("truncated"), "{err}");
    let not_list = write(d.path(), "n.json", "  \"hello\"");
    let err = load_data_file(&not_list, Some(DataFormat::JsonList), &skip()).unwrap_err();
    assert!(err.to_string().contains("expected a JSON list"), "{err}");
    let trailing = write(d.path(), "x.json", "[]\n[]");
    assert!(load_data_file(&trailing, Some(DataFormat::JsonList), &skip()).is_err());
    let empty = write(d.path(), "e.json", " [ ] ");
    assert_eq!(load_data_file(&empty, None, &skip()).unwrap().0.len(), 0);
    let stray = write(
        d.path(),
        "s.json",
        "[{\"img\":\"a\",\"prompt\":\"\",\"label\":\"\"},]",
    );
    let err = load_data_file(&stray, None, &LoadOptions::default()).unwrap_err();
    assert!(err.to_string().contains("stray comma"), "{err}");
}

#[test]
fn oversized_records_are_refused_or_skipped() {
    let d = tempfile::tempdir().unwrap();
    let big = "x".repeat(5000);
    let rec = |l: &str| format!("{{\"img\": \"a\", \"prompt\": \"p\", \"label\": \"{l}\"}}");
    let small = LoadOptions {
        max_record_bytes: 1024,
        ..LoadOptions::default()
    };
    let list = write(
        d.path(),
        "l.json",
        &format!("[{},\n{},\n{}]", rec("1"), rec(&big), rec("3")),
    );
    let err = load_data_file(&list, None, &small).unwrap_err();
    assert!(matches!(err, TrainError::RecordTooLarge { .. }), "{err}");
    assert!(err.to_string().contains("l.json:2 (record 1)"), "{err}");
    let (ex, rep) = load_data_file(
        &list,
        None,
        &LoadOptions {
            skip_malformed: true,
            ..small.clone()
        },
    )
    .unwrap();
    assert_eq!((ex.len(), rep.skipped), (2, 1));
    assert_eq!(ex[1].label, "3");

    let jsonl = write(
        d.path(),
        "l.jsonl",
        &format!("{}\n{}\n\n{}\n", rec("1"), rec(&big), rec("3")),
    );
    let err = load_data_file(&jsonl, None, &small).unwrap_err();
    assert!(err.to_string().contains("l.jsonl:2 (record 1)"), "{err}");
    let (ex, rep) = load_data_file(
        &jsonl,
        None,
        &LoadOptions {
            skip_malformed: true,
            ..small
        },
    )
    .unwrap();
    assert_eq!((ex.len(), rep.skipped), (2, 1));
    assert_eq!(ex[1].source.line, 4);
}

#[test]
fn jsonl_reads_and_reports_bad_lines() {
    let d = tempfile::tempdir().unwrap();
    let p = write(
        d.path(),
        "d.jsonl",
        "{\"img\":\"a.png\",\"prompt\":\"q\",\"label\":\"x\"}\r\n\n[1,2]\n{\"img\":\"\",\"prompt\":\"q\",\"label\":\"y\"}\n{oops\n{\"img\":\"b.png\",\"prompt\":\"q\",\"label\":\"z\"}",
    );
    let err = load_data_file(&p, None, &LoadOptions::default()).unwrap_err();
    assert!(err.to_string().contains("d.jsonl:3 (record 1)"), "{err}");
    assert!(err.to_string().contains("expected an object"), "{err}");
    let (ex, rep) = load_data_file(&p, None, &skip()).unwrap();
    assert_eq!(ex.len(), 2);
    assert_eq!(rep.skipped, 3);
    assert!(rep.skip_messages[1].contains("\"img\" is empty"));
    assert!(rep.skip_messages[2].contains("d.jsonl:5"));
    assert_eq!(ex[1].image(), d.path().join("b.png"));
    assert_eq!(ex[1].source.line, 6);
}

#[test]
fn coco_captions_give_one_example_per_caption() {
    let d = tempfile::tempdir().unwrap();
    let p = write(
        d.path(),
        "captions.json",
        r#"{"info": {}, "images": [{"id": 7, "file_name": "val/7.jpg"}, {"id": 9, "file_name": "val/9.jpg"}],
           "annotations": [{"image_id": 9, "id": 1, "caption": "a dog"},
                           {"image_id": 7, "id": 2, "caption": "a cat"},
                           {"image_id": 9, "id": 3, "caption": "the dog"},
                           {"image_id": 5, "id": 4, "caption": "nobody"}]}"#,
    );
    let err = load_data_file(&p, None, &LoadOptions::default()).unwrap_err();
    assert!(err.to_string().contains("annotations[3]"), "{err}");
    assert!(err.to_string().contains("image_id 5"), "{err}");
    let (ex, rep) = load_data_file(&p, Some(DataFormat::CocoCaptions), &skip()).unwrap();
    assert_eq!(rep.skipped, 1);
    assert_eq!(ex.len(), 3);
    assert_eq!(ex[0].image(), d.path().join("val/9.jpg"));
    assert_eq!((ex[0].image_id, ex[1].image_id, ex[2].image_id), (9, 7, 9));
    assert!(ex.iter().all(|e| e.prompt.is_empty()));
    assert_eq!(ex[2].label, "the dog");
    let bad = write(d.path(), "b.json", "{\"images\": [}");
    let err = load_data_file(&bad, None, &skip()).unwrap_err();
    assert!(err.to_string().contains("b.json: line 1"), "{err}");
    let too_big = LoadOptions {
        max_document_bytes: 10,
        ..LoadOptions::default()
    };
    assert!(matches!(
        load_data_file(&p, None, &too_big).unwrap_err(),
        TrainError::RecordTooLarge { .. }
    ));
}

#[test]
fn dataset_concatenates_files() {
    let d = tempfile::tempdir().unwrap();
    let a = write(
        d.path(),
        "a.jsonl",
        "{\"img\":\"1\",\"prompt\":\"\",\"label\":\"x\"}\n",
    );
    let b = write(
        d.path(),
        "b.json",
        "[{\"img\":\"2\",\"prompt\":\"\",\"label\":\"y\"}]",
    );
    let (ds, rep) = Dataset::load(&[(&a, None), (&b, None)], &LoadOptions::default()).unwrap();
    assert_eq!((ds.len(), rep.loaded), (2, 2));
    assert_eq!(ds.get(1).unwrap().label, "y");
}

#[test]
fn prefetcher_loads_ahead_and_reports_failures() {
    let d = tempfile::tempdir().unwrap();
    let mut text = String::from("[");
    for i in 0..10 {
        if i > 0 {
            text.push(',');
        }
        text.push_str(&format!(
            "{{\"img\":\"{i}.png\",\"prompt\":\"\",\"label\":\"{i}\"}}"
        ));
    }
    text.push(']');
    let p = write(d.path(), "d.json", &text);
    let (ds, _) = Dataset::load(&[(&p, None)], &LoadOptions::default()).unwrap();
    let ds = Arc::new(ds);
    let cfg = SamplerConfig {
        seed: 3,
        batch_size: 4,
        shuffle: true,
        drop_last: false,
    };
    let loader = Arc::new(|path: &Path| -> Result<usize, String> {
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
        if stem == "7" {
            return Err("cannot decode".into());
        }
        if stem == "3" {
            panic!("decoder bug");
        }
        stem.parse::<usize>().map_err(|e| e.to_string())
    });
    fn assert_loader<L: ImageLoader>(_: &L) {}
    assert_loader(&*loader);

    let mut reference = Sampler::new(ds.len(), cfg).unwrap();
    let pre = Prefetcher::spawn(
        ds.clone(),
        Sampler::new(ds.len(), cfg).unwrap(),
        loader,
        2,
        Some(6),
    );
    let mut n = 0;
    let mut failures = 0;
    for batch in pre {
        let idx = reference.next_batch();
        assert_eq!(batch.position_after, reference.position());
        let expected: Vec<usize> = idx.into_iter().filter(|&i| i != 7 && i != 3).collect();
        let expected: Vec<Vec<usize>> = expected.into_iter().map(|i| vec![i]).collect();
        assert_eq!(batch.images, expected);
        assert_eq!(batch.examples.len(), batch.images.len());
        for f in &batch.failed {
            let m = f.to_string();
            let decode = m.contains("7.png") && m.contains("d.json:1 (record 7)");
            let panicked = m.contains("3.png") && m.contains("the image loader panicked");
            assert!(decode || panicked, "{m}");
        }
        failures += batch.failed.len();
        n += 1;
    }
    assert_eq!(n, 6);
    assert_eq!(
        failures, 4,
        "images 3 (loader panics) and 7 (load error) fail once per epoch; 6 batches of 4 cover 2 epochs"
    );

    // Dropping an endless prefetcher early stops its thread.
    let loader = Arc::new(|_: &Path| -> Result<(), String> { Ok(()) });
    let mut endless = Prefetcher::spawn(
        ds.clone(),
        Sampler::new(ds.len(), cfg).unwrap(),
        loader,
        1,
        None,
    );
    assert!(endless.next_batch().is_some());
    drop(endless);
}
