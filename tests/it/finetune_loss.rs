//! The fine-tune loss on the tiny model is unchanged by how it is computed: the chunked
//! cross-entropy through `lm_head` equals the full-logits one, and padding a batch to its longest
//! example equals padding it to the release's full length (loss and gradients).

use crate::support;

use candle_core::{Device, Tensor};
use support::{golden, tiny_tokenizer};
use visualglm::finetune::{
    batch_hidden, batch_loss, example_ids, finetune, lm_loss, load_trainable, FinetuneConfig,
    TrainableModel,
};
use visualglm_testing::{max_abs, max_abs_diff};
use visualglm_tokenizer::ChatGlmTokenizer;
use visualglm_train::labels::{pad_batch, LabelConfig, LabeledIds, PadTo};
use visualglm_train::losses::ar_loss;
use visualglm_vision::decode::load_image;

const LABELS: LabelConfig = LabelConfig {
    max_source_length: 48,
    max_target_length: 16,
    mask_pad_id_in_answer: true,
};

/// Two examples of different lengths (both shorter than 48 + 16) and their pixels.
fn batch(tm: &TrainableModel, dir: &std::path::Path) -> (Tensor, Vec<LabeledIds>, usize) {
    let tok = ChatGlmTokenizer::from_file(tiny_tokenizer(dir)).unwrap();
    let image_length = tm.model.config().image_length;
    let mut ids = Vec::new();
    let mut pre = 0;
    for (prompt, label) in [
        ("Describe.", "a cat"),
        ("Describe the image.", "an astronaut in a white suit"),
    ] {
        let (x, p) = example_ids(&tok, image_length, prompt, label, true, &LABELS).unwrap();
        ids.push(x);
        pre = p;
    }
    let images: Vec<_> = ["images/chelsea.png", "images/astronaut.png"]
        .iter()
        .map(|p| load_image(golden(p), &Default::default()).unwrap())
        .collect();
    let pixels = tm
        .model
        .image_preprocessor()
        .preprocess_batch(&images, &Device::Cpu)
        .unwrap();
    (pixels, ids, pre)
}

/// The loss value and the gradient of each trainable variable.
fn value_and_grads(tm: &TrainableModel, loss: &Tensor) -> (f32, Vec<(String, Tensor)>) {
    let grads = loss.backward().unwrap();
    let g = tm
        .vars
        .iter()
        .map(|(name, v)| {
            let g = grads.get(v.as_tensor()).unwrap_or_else(|| panic!("{name}"));
            (name.clone(), g.clone())
        })
        .collect();
    (loss.to_scalar::<f32>().unwrap(), g)
}

/// Asserts two losses and their gradients agree to `tol`, relative.
fn assert_same(what: &str, a: &(f32, Vec<(String, Tensor)>), b: &(f32, Vec<(String, Tensor)>)) {
    let tol = 1e-6;
    let rel = ((a.0 - b.0) / b.0).abs();
    eprintln!("{what}: loss {} vs {} (relative {rel:e})", a.0, b.0);
    assert!(rel < tol, "{what}: loss {} vs {}", a.0, b.0);
    for ((name, ga), (_, gb)) in a.1.iter().zip(&b.1) {
        let scale = max_abs(gb);
        let d = max_abs_diff(ga, gb) / scale;
        eprintln!("{what}: {name} max|Δ|/max|g| = {d:e}");
        assert!(
            scale > 0.0 && d < tol,
            "{what}: {name} differs by {d} (relative)"
        );
    }
}

#[test]
fn chunked_lm_head_loss_equals_the_full_logits_loss() {
    let dir = tempfile::tempdir().unwrap();
    let trainable = [
        "image_encoder.glm_proj".to_string(),
        "transformer.layers.1.mlp".to_string(),
    ];
    let tm = load_trainable(&golden("checkpoints/hf"), &trainable, &Device::Cpu).unwrap();
    let (pixels, ids, pre) = batch(&tm, dir.path());
    let out = batch_hidden(&tm.model, &pixels, &ids, pre, None).unwrap();
    let glm = tm.model.language_model();
    // The computation before the switch: full `[B, T, vocab]` logits, then `ar_loss`.
    let full = ar_loss(&glm.logits(&out.hidden).unwrap(), &out.labels).unwrap();
    assert!(full.n_supervised > 10);
    let full = value_and_grads(&tm, &full.mean().unwrap());
    // What training runs now (the tiny vocabulary fits one chunk)…
    let now = batch_loss(&tm.model, &pixels, &ids, pre).unwrap();
    assert_same("batch_loss", &value_and_grads(&tm, &now), &full);
    // …and with several chunks, the last one partial.
    for rows in [1, 3, 7] {
        let chunked = lm_loss(glm, &out.hidden, &out.labels, Some(rows)).unwrap();
        assert_eq!(chunked.n_supervised, ids_supervised(&ids));
        let what = format!("{rows} rows a chunk");
        assert_same(
            &what,
            &value_and_grads(&tm, &chunked.mean().unwrap()),
            &full,
        );
    }
}

fn ids_supervised(ids: &[LabeledIds]) -> usize {
    ids.iter()
        .map(|x| x.labels[1..].iter().filter(|&&l| l >= 0).count())
        .sum()
}

#[test]
fn a_trainable_lm_head_still_gets_its_gradient() {
    let dir = tempfile::tempdir().unwrap();
    let trainable = ["lm_head".to_string(), "image_encoder.glm_proj".to_string()];
    let tm = load_trainable(&golden("checkpoints/hf"), &trainable, &Device::Cpu).unwrap();
    assert!(tm.vars.iter().any(|(n, _)| n == "lm_head.weight"));
    let (pixels, ids, pre) = batch(&tm, dir.path());
    let loss = batch_loss(&tm.model, &pixels, &ids, pre).unwrap();
    let (_, grads) = value_and_grads(&tm, &loss);
    assert!(grads.iter().all(|(_, g)| max_abs(g) > 0.0));
}

#[test]
fn padding_to_the_longest_example_changes_no_loss_or_gradient() {
    let dir = tempfile::tempdir().unwrap();
    let trainable = [
        "image_encoder.glm_proj".to_string(),
        "transformer.layers.0.attention".to_string(),
    ];
    let tm = load_trainable(&golden("checkpoints/hf"), &trainable, &Device::Cpu).unwrap();
    let (pixels, full_ids, pre) = batch(&tm, dir.path());
    let mut longest = full_ids.clone();
    pad_batch(&mut longest, PadTo::Longest);
    let lens: Vec<usize> = full_ids.iter().map(|x| x.unpadded_len).collect();
    assert_ne!(lens[0], lens[1], "mixed lengths");
    assert_eq!(longest[0].input_ids.len(), lens[0].max(lens[1]));
    assert!(longest[0].input_ids.len() < LABELS.max_seq_len());
    assert_eq!(full_ids[0].input_ids.len(), LABELS.max_seq_len());
    let full = batch_loss(&tm.model, &pixels, &full_ids, pre).unwrap();
    let cut = batch_loss(&tm.model, &pixels, &longest, pre).unwrap();
    assert_same(
        "longest vs max_length",
        &value_and_grads(&tm, &cut),
        &value_and_grads(&tm, &full),
    );
}

#[test]
fn pad_to_option_gives_the_same_run() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("train.json");
    let records = serde_json::json!([
        {"img": golden("images/chelsea.png"), "prompt": "Describe.", "label": "a cat"},
        {"img": golden("images/astronaut.png"), "prompt": "Describe the image.", "label": "an astronaut in a white suit"},
    ]);
    std::fs::write(&data, records.to_string()).unwrap();
    let run = |pad_to: PadTo, out: &str| {
        let cfg = FinetuneConfig {
            data: data.clone(),
            val_data: Some(data.clone()),
            model: golden("checkpoints/hf"),
            tokenizer: Some(tiny_tokenizer(dir.path())),
            out: dir.path().join(out),
            trainable: vec!["image_encoder.glm_proj".into()],
            steps: 2,
            batch_size: 2,
            lr: 3e-3,
            warmup_steps: 0,
            save_every: 0,
            max_source_length: LABELS.max_source_length,
            max_target_length: LABELS.max_target_length,
            english: true,
            pad_to,
            export: false,
            ..FinetuneConfig::default()
        };
        finetune(&cfg, &Device::Cpu, &mut |_| true).unwrap()
    };
    let longest = run(PadTo::Longest, "longest");
    let full = run(PadTo::MaxLength, "full");
    assert_eq!(longest.len(), 2);
    for (a, b) in longest.iter().zip(&full) {
        let close = |x: f64, y: f64| ((x - y) / y).abs() < 1e-5;
        assert!(
            close(a.loss, b.loss),
            "step {}: {} vs {}",
            a.step,
            a.loss,
            b.loss
        );
        assert!(close(a.grad_norm, b.grad_norm), "step {}", a.step);
    }
    let (a, b) = (longest[1].val_loss.unwrap(), full[1].val_loss.unwrap());
    assert!(((a - b) / b).abs() < 1e-5, "validation {a} vs {b}");
}
