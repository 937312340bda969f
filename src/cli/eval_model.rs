//! `visualglm eval captions`: caption a dataset with the model, then score it.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;
use visualglm_eval::{score_captions, CaptionItem, ImageId, Tokenizer};
use visualglm_train::data::{load_data_file, LoadOptions};
use visualglm_vision::preprocess::load_image;

use super::model_args::{GenerationArgs, ModelArgs};
use super::output::temp_path;

/// Arguments of `eval captions`.
#[derive(clap::Args, Debug)]
pub struct CaptionArgs {
    /// Dataset: COCO caption JSON, or the release's JSON list / JSONL of
    /// `{"img", "prompt", "label"}` (the labels of an image are its references).
    #[arg(long)]
    data: PathBuf,
    /// Directory relative image paths are resolved against (default: the data file's).
    #[arg(long)]
    images: Option<PathBuf>,
    /// Caption at most this many images (in the data file's order).
    #[arg(long)]
    limit: Option<usize>,
    /// Images captioned together.
    #[arg(long, default_value_t = 8)]
    batch_size: usize,
    /// The question (default: the release's describe-this-image question).
    #[arg(long, short = 'p')]
    prompt: Option<String>,
    /// Write the generated captions as JSONL `{"image_id", "image", "caption"}`.
    #[arg(long)]
    predictions_out: Option<PathBuf>,
    /// Write the full report (corpus and per-image scores) to this JSON file.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print a Markdown table instead of JSON.
    #[arg(long)]
    markdown: bool,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    generation: GenerationArgs,
}

/// Runs `eval captions`.
pub fn run_captions(args: CaptionArgs) -> anyhow::Result<()> {
    if args.batch_size == 0 {
        anyhow::bail!("--batch-size must be at least 1");
    }
    let opts = LoadOptions {
        image_root: args.images.clone(),
        ..LoadOptions::default()
    };
    let (examples, _) = load_data_file(&args.data, None, &opts)
        .with_context(|| format!("reading {}", args.data.display()))?;
    // One entry per image, references in file order.
    let mut by_image: BTreeMap<i64, (PathBuf, Vec<String>)> = BTreeMap::new();
    let mut order = Vec::new();
    for ex in examples {
        let entry = by_image.entry(ex.image_id).or_insert_with(|| {
            order.push(ex.image_id);
            (ex.image.clone(), Vec::new())
        });
        entry.1.push(ex.label);
    }
    if let Some(n) = args.limit {
        order.truncate(n);
    }
    if order.is_empty() {
        anyhow::bail!("{} has no images", args.data.display());
    }
    let captioner = args.model.load()?;
    let question = args.generation.question(args.prompt.clone());
    let bar = ProgressBar::new(order.len() as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:40} {pos}/{len} images [{elapsed_precise}<{eta_precise}]",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut items = Vec::with_capacity(order.len());
    let mut predictions = String::new();
    for chunk in order.chunks(args.batch_size) {
        let paths: Vec<&PathBuf> = chunk
            .iter()
            .filter_map(|id| by_image.get(id).map(|e| &e.0))
            .collect();
        let images = paths
            .par_iter()
            .map(|p| load_image(p).with_context(|| format!("image of {}", args.data.display())))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let captions = captioner.describe_batch(&images, &question)?;
        for ((id, path), caption) in chunk.iter().zip(paths).zip(captions) {
            let references = by_image.get(id).map(|e| e.1.clone()).unwrap_or_default();
            predictions.push_str(
                &serde_json::json!({"image_id": id, "image": path.display().to_string(), "caption": caption})
                    .to_string(),
            );
            predictions.push('\n');
            items.push(CaptionItem {
                image_id: ImageId::Int(*id),
                candidate: caption,
                references,
            });
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    if let Some(path) = &args.predictions_out {
        write_text_atomic(path, &predictions)?;
    }
    let report = score_captions(&items, Tokenizer::Ptb)?;
    if let Some(path) = &args.out {
        write_text_atomic(path, &(serde_json::to_string_pretty(&report)? + "\n"))?;
    }
    if args.markdown {
        print!("{}", report.to_markdown());
    } else {
        println!("{}", serde_json::to_string_pretty(&report.corpus)?);
    }
    Ok(())
}

fn write_text_atomic(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    let tmp = temp_path(path);
    let mut f =
        std::fs::File::create(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}
