//! `visualglm eval captions` (caption a data set with the model, then score it) and `eval
//! retrieval` (rank its captions with the trained ITC heads).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use image::DynamicImage;
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;
use visualglm_eval::{score_captions, CaptionItem, ImageId, Tokenizer};
use visualglm_train::data::{load_data_file, LoadOptions};
use visualglm_vision::decode::load_image;

use super::model_args::{GenerationArgs, ModelArgs};

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
    /// The question asked of every image (default: each record's own `prompt`; for records
    /// without one, e.g. COCO captions, the model's default question).
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
    let images = read_eval_images(&args.data, args.images.clone(), args.limit, true)?;
    let captioner = args.model.load()?;
    let bar = ProgressBar::new(images.len() as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:40} {pos}/{len} images [{elapsed_precise}<{eta_precise}]",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut items = Vec::with_capacity(images.len());
    let mut predictions = String::new();
    for chunk in images.chunks(args.batch_size) {
        let decoded = decode_images(chunk, &args.data)?;
        let captions = describe_by_prompt(&captioner, &args, chunk, &decoded)?;
        for (image, caption) in chunk.iter().zip(captions) {
            predictions.push_str(
                &serde_json::json!({"image_id": image.id, "image": image.path.display().to_string(), "caption": caption})
                    .to_string(),
            );
            predictions.push('\n');
            items.push(CaptionItem {
                image_id: ImageId::Int(image.id),
                candidate: caption,
                references: image.captions.clone(),
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

/// Captions `decoded` (the images of `chunk`), asking each its record's prompt unless
/// `--prompt` is given: one batch per distinct question, answers in `chunk`'s order.
fn describe_by_prompt(
    captioner: &visualglm::pipeline::Captioner,
    args: &CaptionArgs,
    chunk: &[EvalImage],
    decoded: &[DynamicImage],
) -> anyhow::Result<Vec<String>> {
    let query_of = |image: &EvalImage| match &args.prompt {
        Some(p) => Some(p.clone()),
        None if image.prompt.trim().is_empty() => None,
        None => Some(image.prompt.clone()),
    };
    let mut groups: BTreeMap<Option<String>, Vec<usize>> = BTreeMap::new();
    for (i, image) in chunk.iter().enumerate() {
        groups.entry(query_of(image)).or_default().push(i);
    }
    let mut captions = vec![String::new(); chunk.len()];
    for (query, members) in groups {
        let question = args.generation.question(captioner.defaults(), query)?;
        let images: Vec<DynamicImage> = members.iter().map(|&i| decoded[i].clone()).collect();
        let answers = captioner.describe_batch(&images, &question)?.answers;
        for (i, answer) in members.into_iter().zip(answers) {
            captions[i] = answer;
        }
    }
    Ok(captions)
}

fn write_text_atomic(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    visualglm_files::write_atomic_bytes(path, text.as_bytes())
        .map_err(|e| e.source)
        .with_context(|| format!("writing {}", path.display()))
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
    let images = read_eval_images(&args.data, args.images.clone(), args.limit, false)?;
    // The texts are the distinct captions; each image lists the indices of its own.
    let mut texts: Vec<String> = Vec::new();
    let mut text_index: BTreeMap<&str, usize> = BTreeMap::new();
    let mut img2txt: Vec<Vec<usize>> = Vec::with_capacity(images.len());
    for image in &images {
        let mut own = Vec::new();
        for caption in &image.captions {
            let t = *text_index.entry(caption).or_insert_with(|| {
                texts.push(caption.clone());
                texts.len() - 1
            });
            if !own.contains(&t) {
                own.push(t);
            }
        }
        img2txt.push(own);
    }
    let itc_path = args.model.itc_path(args.itc.as_deref())?;
    let captioner = args.model.load()?;
    let heads = visualglm::itc::ItcHeads::from_file(&itc_path, captioner.model().device())?;
    let decoded = decode_images(&images, &args.data)?;
    let text_refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let scores_i2t = visualglm::retrieval::retrieval_similarities(
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
    for (i, ts) in img2txt.iter().enumerate().rev() {
        for &t in ts {
            txt2img[t] = i;
        }
    }
    let scores = visualglm_eval::retrieval::RetrievalScores {
        scores_i2t,
        scores_t2i,
        txt2img,
        img2txt,
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

/// One image of an evaluation data set with its captions (the references), in file order.
struct EvalImage {
    id: i64,
    path: PathBuf,
    /// The records' question (empty for COCO captions, or when not `by_prompt`).
    prompt: String,
    captions: Vec<String>,
}

/// The images of `data` (any format `visualglm train` reads) in file order with their
/// captions, at most `limit`; an error when there are none. With `by_prompt`, records of one
/// image with different prompts are different items (each prompt's labels its references).
fn read_eval_images(
    data: &Path,
    image_root: Option<PathBuf>,
    limit: Option<usize>,
    by_prompt: bool,
) -> anyhow::Result<Vec<EvalImage>> {
    let opts = LoadOptions {
        image_root,
        ..LoadOptions::default()
    };
    let (examples, _) =
        load_data_file(data, None, &opts).with_context(|| format!("reading {}", data.display()))?;
    let mut index: BTreeMap<(i64, String), usize> = BTreeMap::new();
    let mut images: Vec<EvalImage> = Vec::new();
    for ex in examples {
        let prompt = if by_prompt { ex.prompt } else { String::new() };
        let i = *index
            .entry((ex.image_id, prompt.clone()))
            .or_insert_with(|| {
                images.push(EvalImage {
                    id: ex.image_id,
                    path: ex.image.clone(),
                    prompt,
                    captions: Vec::new(),
                });
                images.len() - 1
            });
        if let Some(image) = images.get_mut(i) {
            image.captions.push(ex.label);
        }
    }
    if let Some(n) = limit {
        images.truncate(n);
    }
    if images.is_empty() {
        anyhow::bail!("{} has no images", data.display());
    }
    Ok(images)
}

/// Decodes the images of `chunk` in parallel; errors name the data file.
fn decode_images(chunk: &[EvalImage], data: &Path) -> anyhow::Result<Vec<DynamicImage>> {
    chunk
        .par_iter()
        .map(|image| {
            load_image(&image.path, &Default::default())
                .with_context(|| format!("image of {}", data.display()))
        })
        .collect()
}
