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
        println!("{}", serde_json::to_string_pretty(&report.summary())?);
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

/// Arguments of `eval retrieval`.
#[derive(clap::Args, Debug)]
pub struct RetrievalModelArgs {
    /// Dataset (same formats as `eval captions`); its distinct captions are the texts.
    #[arg(long)]
    data: PathBuf,
    /// Directory relative image paths are resolved against (default: the data file's).
    #[arg(long)]
    images: Option<PathBuf>,
    /// Use at most this many images (in the data file's order).
    #[arg(long)]
    limit: Option<usize>,
    /// ITC heads from training (default: `itc.safetensors` in the model directory).
    #[arg(long)]
    itc: Option<PathBuf>,
    /// Images (and texts) run together.
    #[arg(long, default_value_t = 16)]
    batch_size: usize,
    /// Write the full report (metrics and ranks) to this JSON file.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print a Markdown table instead of JSON.
    #[arg(long)]
    markdown: bool,
    #[command(flatten)]
    model: ModelArgs,
}

/// Runs `eval retrieval`: ranks the data set's distinct captions for each image (and the
/// images for each caption) with the trained ITC heads, and reports Recall@K as LAVIS does.
pub fn run_retrieval(args: RetrievalModelArgs) -> anyhow::Result<()> {
    let opts = LoadOptions {
        image_root: args.images.clone(),
        ..LoadOptions::default()
    };
    let (examples, _) = load_data_file(&args.data, None, &opts)
        .with_context(|| format!("reading {}", args.data.display()))?;
    // Images in file order with their captions; texts are the distinct captions.
    let mut image_index: BTreeMap<i64, usize> = BTreeMap::new();
    let mut images: Vec<(PathBuf, Vec<usize>)> = Vec::new();
    let mut texts: Vec<String> = Vec::new();
    let mut text_index: BTreeMap<String, usize> = BTreeMap::new();
    for ex in examples {
        let i = *image_index.entry(ex.image_id).or_insert_with(|| {
            images.push((ex.image.clone(), Vec::new()));
            images.len() - 1
        });
        if args.limit.is_some_and(|n| i >= n) {
            continue;
        }
        let t = *text_index.entry(ex.label.clone()).or_insert_with(|| {
            texts.push(ex.label.clone());
            texts.len() - 1
        });
        if let Some(entry) = images.get_mut(i) {
            if !entry.1.contains(&t) {
                entry.1.push(t);
            }
        }
    }
    if let Some(n) = args.limit {
        images.truncate(n);
    }
    if images.is_empty() {
        anyhow::bail!("{} has no images", args.data.display());
    }
    let itc_path = match &args.itc {
        Some(p) => p.clone(),
        None if std::path::Path::new(&args.model.model).is_dir() => {
            std::path::Path::new(&args.model.model).join(visualglm::itc::ITC_FILE)
        }
        None => anyhow::bail!("--itc is needed when --model is not a local directory"),
    };
    let captioner = args.model.load()?;
    let heads = visualglm::itc::ItcHeads::from_file(&itc_path, captioner.model().device())?;
    let decoded = images
        .par_iter()
        .map(|(p, _)| load_image(p).with_context(|| format!("image of {}", args.data.display())))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let text_refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let scores_i2t = visualglm::itc::retrieval_similarities(
        &captioner,
        &heads,
        &decoded,
        &text_refs,
        args.batch_size,
    )?;
    let scores_t2i: Vec<Vec<f64>> = (0..texts.len())
        .map(|t| scores_i2t.iter().map(|row| row[t]).collect())
        .collect();
    // A caption shared by several images belongs, for text → image, to the first of them.
    let mut txt2img = vec![0; texts.len()];
    for (i, (_, ts)) in images.iter().enumerate().rev() {
        for &t in ts {
            txt2img[t] = i;
        }
    }
    let scores = visualglm_eval::retrieval::RetrievalScores {
        scores_i2t,
        scores_t2i,
        txt2img,
        img2txt: images.iter().map(|(_, ts)| ts.clone()).collect(),
    };
    let report = visualglm_eval::retrieval::evaluate(&scores)?;
    if let Some(path) = &args.out {
        write_text_atomic(path, &(serde_json::to_string_pretty(&report)? + "\n"))?;
    }
    if args.markdown {
        print!("{}", report.metrics.to_markdown());
    } else {
        println!("{}", serde_json::to_string_pretty(&report.metrics)?);
    }
    Ok(())
}
