//! Fine-tuning on examples whose `"img"` is a list: each image fills its own `<img>` block,
//! mixed batches train, ITC takes only the one-image examples, and a source too short for
//! the images is a clear error.

use candle_core::Device;
use visualglm::finetune::{
    batch_hidden, example_ids, example_ids_images, finetune, FinetuneConfig, ImageSlots,
};
use visualglm_train::labels::LabelConfig;

use crate::finetune::config;
use crate::support::{golden, golden_model, max_abs_diff, tiny_tokenizer, two_cat_examples};

/// `config`'s run, batch 3, on a data file with one two-image record and two one-image
/// records.
fn mixed(dir: &std::path::Path, out: &str, steps: u64) -> FinetuneConfig {
    let cfg = config(dir, out, steps);
    let records = serde_json::json!([
        {"img": [golden("images/chelsea.png"), golden("images/astronaut.png")],
         "prompt": "Which is the cat?", "label": "the first"},
        {"img": golden("images/astronaut.png"), "prompt": "Describe the image.",
         "label": "an astronaut in a suit"},
        {"img": golden("images/chelsea.png"), "prompt": "Describe the image.",
         "label": "a cat on a floor"},
    ]);
    std::fs::write(&cfg.data, records.to_string()).unwrap();
    FinetuneConfig {
        max_source_length: 100,
        batch_size: 3,
        ..cfg
    }
}

#[test]
fn mixed_one_and_two_image_examples_train_with_and_without_itc() {
    let dir = tempfile::tempdir().unwrap();
    let reports = finetune(&mixed(dir.path(), "ar", 5), &Device::Cpu, &mut |_| true).unwrap();
    assert!(reports.iter().all(|r| !r.skipped && r.loss.is_finite()));
    assert!(
        reports[4].loss < reports[0].loss,
        "loss did not decrease: {} -> {}",
        reports[0].loss,
        reports[4].loss
    );
    // ITC contrasts the two one-image examples (images with their captions): a positive
    // extra term.
    let itc = FinetuneConfig {
        itc_weight: 0.5,
        itc_dim: 16,
        ..mixed(dir.path(), "itc", 2)
    };
    let with_itc = finetune(&itc, &Device::Cpu, &mut |_| true).unwrap();
    assert!(with_itc.iter().all(|r| r.loss.is_finite()));
    assert!(with_itc[0].loss > reports[0].loss, "{with_itc:?}");
    // Only two-image examples: ITC has nothing to pair and the run still trains.
    let only_pairs = FinetuneConfig {
        itc_weight: 0.5,
        itc_dim: 16,
        batch_size: 1,
        ..mixed(dir.path(), "pairs", 1)
    };
    let records = serde_json::json!([
        {"img": [golden("images/chelsea.png"), golden("images/astronaut.png")],
         "prompt": "Which is the cat?", "label": "the first"},
    ]);
    std::fs::write(&only_pairs.data, records.to_string()).unwrap();
    let r = finetune(&only_pairs, &Device::Cpu, &mut |_| true).unwrap();
    assert!(r[0].loss.is_finite() && !r[0].skipped, "{r:?}");
}

#[test]
fn a_source_too_short_for_the_images_is_an_error_naming_the_record() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = FinetuneConfig {
        max_source_length: 48,
        ..mixed(dir.path(), "short", 1)
    };
    let err = finetune(&cfg, &Device::Cpu, &mut |_| true)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("max_source_length") && err.contains("train.json"),
        "{err}"
    );
}

#[test]
fn per_row_slots_of_one_image_rows_equal_the_shared_slot() {
    let dir = tempfile::tempdir().unwrap();
    let tok_path = tiny_tokenizer(dir.path());
    let tok = visualglm_tokenizer::ChatGlmTokenizer::from_file(&tok_path).unwrap();
    let model = golden_model();
    let (pixels, batch, pre) = two_cat_examples(&model, &tok);
    let shared = batch_hidden(&model, &pixels, &batch, pre, None).unwrap();
    let per_row = batch_hidden(
        &model,
        &pixels,
        &batch,
        ImageSlots::PerRow(vec![vec![pre], vec![pre]]),
        None,
    )
    .unwrap();
    let diff = max_abs_diff(&shared.hidden, &per_row.hidden);
    assert!(diff < 1e-5, "{diff}");
    // Too few images for the slots is an error.
    let err = batch_hidden(
        &model,
        &pixels,
        &batch,
        ImageSlots::PerRow(vec![vec![pre, pre + 40], vec![pre]]),
        None,
    );
    assert!(err.is_err());
    // The one-image ids are the release's; two images add a block.
    let labels = LabelConfig {
        max_source_length: 100,
        max_target_length: 16,
        ..Default::default()
    };
    let n = model.config().image_length;
    let (one, p1) = example_ids(&tok, n, "Which?", "the first", true, &labels).unwrap();
    let (two, starts) =
        example_ids_images(&tok, 2, n, "Which?", "the first", true, &labels).unwrap();
    assert_eq!(starts[0], p1);
    assert!(two.unpadded_len > one.unpadded_len + n);
}
