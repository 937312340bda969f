//! The committed from-scratch model (`assets/shapes`): it loads offline, describes its example
//! images, and on freshly drawn scenes it never saw names colours and shapes correctly and ranks
//! captions with its ITC heads (numbers and recipe in the README).

use candle_core::{DType, Device};
use visualglm::itc::{ItcHeads, ITC_FILE};
use visualglm::pipeline::{Captioner, Question};
use visualglm::retrieval::retrieval_similarities;
use visualglm_vision::decode::load_image;

fn assets() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/shapes")
}

fn captioner() -> Captioner {
    Captioner::load(&assets(), &Device::Cpu, DType::F32, &Default::default()).unwrap()
}

/// The data set's question, answered greedily (no repetition penalty: the captions repeat
/// "a", "on", "the" by design).
fn question() -> Question {
    Question {
        query: Some("Describe the image.".into()),
        english: true,
        generation: visualglm_language::GenerationConfig {
            do_sample: false,
            repetition_penalty: 1.0,
            max_new_tokens: 32,
            ..Default::default()
        },
    }
}

/// Per-slot accuracy of `[left colour, left shape, right colour, right shape]`.
fn slot_accuracy(pairs: &[(String, String)]) -> [f64; 4] {
    let mut hits = [0usize; 4];
    for (got, want) in pairs {
        let (g, w): (Vec<&str>, Vec<&str>) = (
            got.split_whitespace().collect(),
            want.split_whitespace().collect(),
        );
        for (k, i) in [1, 2, 8, 9].into_iter().enumerate() {
            hits[k] += usize::from(g.get(i).is_some() && g.get(i) == w.get(i));
        }
    }
    hits.map(|h| h as f64 / pairs.len() as f64)
}

#[test]
fn the_committed_shapes_model_describes_unseen_scenes() {
    let c = captioner();
    // The example images load and get a caption in the data set's grammar.
    let examples: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(assets().join("examples/examples.json")).unwrap(),
    )
    .unwrap();
    for ex in examples.as_array().unwrap() {
        let img = load_image(
            assets().join("examples").join(ex["img"].as_str().unwrap()),
            &Default::default(),
        )
        .unwrap();
        let caption = c.describe(&img, &question()).unwrap();
        assert!(
            caption.starts_with("a ")
                && caption.contains(" on the left and a ")
                && caption.ends_with(" on the right"),
            "{caption:?}"
        );
    }
    // Fresh scenes (a seed the training data never used).
    let dir = tempfile::tempdir().unwrap();
    let summary = visualglm::synth::write_dataset(
        dir.path(),
        48,
        0.0,
        4242,
        112,
        &visualglm::synth::SceneStyle::default(),
    )
    .unwrap();
    let records: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(&summary.train).unwrap()).unwrap();
    let images: Vec<_> = records
        .iter()
        .map(|r| {
            load_image(
                dir.path().join(r["img"].as_str().unwrap()),
                &Default::default(),
            )
            .unwrap()
        })
        .collect();
    let truth: Vec<String> = records
        .iter()
        .map(|r| r["label"].as_str().unwrap().to_string())
        .collect();
    let captions = c.describe_batch(&images, &question()).unwrap().answers;
    let pairs: Vec<(String, String)> = captions.into_iter().zip(truth.clone()).collect();
    let acc = slot_accuracy(&pairs);
    let exact = pairs.iter().filter(|(g, w)| g == w).count() as f64 / pairs.len() as f64;
    // Chance is 1/6 for a colour, 1/3 for a shape and 1/324 for a whole caption.
    assert!(acc.iter().all(|&a| a > 0.9), "slot accuracy: {acc:?}");
    assert!(exact > 0.9, "exact match {exact}");
    // Retrieval among the distinct true captions: the right one ranks first, and is in the
    // top 10, far more often than chance.
    let mut texts: Vec<&str> = truth.iter().map(String::as_str).collect();
    texts.sort();
    texts.dedup();
    let heads = ItcHeads::from_file(&assets().join(ITC_FILE), &Device::Cpu).unwrap();
    let sim = retrieval_similarities(&c, &heads, &images, &texts, 16).unwrap();
    let recall_at = |k: usize| {
        sim.iter()
            .zip(&truth)
            .filter(|(row, want)| {
                let target = texts.iter().position(|t| t == want).unwrap();
                row.iter().filter(|&&s| s > row[target]).count() < k
            })
            .count() as f64
            / truth.len() as f64
    };
    let (r1, r10) = (recall_at(1), recall_at(10));
    let chance = 1.0 / texts.len() as f64;
    eprintln!(
        "slot accuracy {acc:?}, exact {exact:.3}; image→text R@1 {r1:.3}, R@10 {r10:.3} \
         (chance {chance:.3} per rank)"
    );
    assert!(
        r1 > 0.9 && r1 > 10.0 * chance,
        "R@1 {r1} vs chance {chance}"
    );
    assert!(r10 > 0.9, "R@10 {r10}");
}

/// The shipped model has 128 positions: that bounds every path even when the caller allows more
/// (`--max-length 4096`), instead of running past the rotary table.
#[test]
fn the_models_own_length_limit_bounds_every_path() {
    use visualglm_server::request::{prepare_chat, PromptLimits};
    use visualglm_server::types::ChatCompletionRequest;

    let c = captioner();
    let limit = c.model().config().glm.max_sequence_length;
    assert_eq!(limit, 128, "the shipped model's positions");
    let long = "what colour is the shape on the left side of the picture ".repeat(40);
    let loose = visualglm_language::GenerationConfig {
        max_length: 4096,
        max_new_tokens: 1000,
        ..question().generation
    };
    // The budget of a fitting prompt stops at the model's limit.
    assert_eq!(
        visualglm::generate::token_budget(c.model(), 100, &loose).unwrap(),
        limit - 100
    );
    let err = visualglm::generate::token_budget(c.model(), limit, &loose).unwrap_err();
    assert!(
        err.to_string().contains("maximum sequence length is 128"),
        "{err}"
    );

    // describe
    let image = load_image(assets().join("examples/shapes-0.png"), &Default::default()).unwrap();
    let q = Question {
        query: Some(long.clone()),
        english: true,
        generation: loose.clone(),
    };
    assert!(c.describe(&image, &q).is_err());
    // A short question still gets an answer, within the limit.
    let short = Question {
        generation: loose.clone(),
        ..question()
    };
    assert!(!c.describe(&image, &short).unwrap().is_empty());

    // chat
    let mut chat = c.chat(true);
    chat.set_image(&image).unwrap();
    assert!(chat
        .ask(&long, &loose, &mut |_| visualglm::generate::Flow::Continue)
        .is_err());

    // the server, configured for more than the model has
    let body = serde_json::json!({"messages": [{"role": "user", "content": long}]});
    let req: ChatCompletionRequest = serde_json::from_value(body).unwrap();
    let limits = PromptLimits {
        max_length: 4096,
        default_max_tokens: Some(16),
        ..PromptLimits::default()
    };
    let policy = visualglm_server::ImagePolicy {
        limits: visualglm_vision::decode::DecodeLimits::default(),
        local_dir: None,
    };
    let e = prepare_chat(&c, &req, &policy, &limits).unwrap_err();
    assert_eq!(e.code, Some("context_length_exceeded"), "{e:?}");
    assert!(e.message.contains("128"), "{}", e.message);

    // the CLI
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_visualglm"))
        .arg("describe")
        .arg(assets().join("examples/shapes-0.png"))
        .arg("--model")
        .arg(assets())
        .args([
            "--english",
            "--greedy",
            "--max-length",
            "4096",
            "--prompt",
            &long,
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("maximum length"), "{stderr}");
}
