//! `visualglm eval captions` (caption a data set with the model, then score it) and `eval
//! retrieval` (rank its captions with the trained ITC heads). `eval captions` runs in shards
//! over several processes (`--shard K/N`, or under a launcher): each shard writes the captions
//! of its items to its own file, and the last to finish merges them and scores.

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
use super::shard::Shard;

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
    /// Caption only shard K of N (K from 0: every N-th item from the K-th) into
    /// `PREDICTIONS.shard-K-of-N.jsonl` (needs `--predictions-out`); the shard that finishes
    /// last merges them into `--predictions-out` and scores. Under `mpirun`, `srun` or
    /// torchrun K/N come from the launcher. An existing shard file is resumed.
    #[arg(long, value_name = "K/N")]
    shard: Option<String>,
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
    let shard = Shard::choose(args.shard.as_deref())?;
    if shard.world > 1 {
        return run_captions_sharded(&args, &images, shard);
    }
    let captioner = args.model.load()?;
    let bar = progress_bar(images.len());
    let mut captions = Vec::with_capacity(images.len());
    for chunk in images.chunks(args.batch_size) {
        let decoded = decode_images(chunk, &args.data)?;
        captions.extend(describe_by_prompt(&captioner, &args, chunk, &decoded)?);
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    score_and_report(&args, &images, captions)
}

/// A sharded `eval captions`: captions this shard's items not yet in its shard file (saved
/// after every batch), then merges and scores once every shard's file is complete.
fn run_captions_sharded(
    args: &CaptionArgs,
    images: &[EvalImage],
    shard: Shard,
) -> anyhow::Result<()> {
    let Some(predictions) = &args.predictions_out else {
        anyhow::bail!(
            "a sharded eval captions needs --predictions-out: the shard files are named after it"
        );
    };
    let path = shard.output(predictions);
    let mut done = read_shard(&path, images)?;
    let todo: Vec<usize> = (0..images.len())
        .filter(|&i| shard.owns(i) && !done.contains_key(&i))
        .collect();
    if !todo.is_empty() {
        let captioner = args.model.load()?;
        let bar = progress_bar(todo.len());
        for indices in todo.chunks(args.batch_size) {
            let chunk: Vec<EvalImage> = indices.iter().map(|&i| images[i].clone()).collect();
            let decoded = decode_images(&chunk, &args.data)?;
            let captions = describe_by_prompt(&captioner, args, &chunk, &decoded)?;
            done.extend(indices.iter().copied().zip(captions));
            write_shard(&path, images, &done)?;
            bar.inc(chunk.len() as u64);
        }
        bar.finish_and_clear();
    } else if !path.exists() {
        // A shard without items (more shards than items) still marks itself finished.
        write_shard(&path, images, &done)?;
    }
    let Some(captions) = merge(predictions, shard, images)? else {
        return Ok(());
    };
    eprintln!(
        "merged {} shards into {}",
        shard.world,
        predictions.display()
    );
    score_and_report(args, images, captions)
}

/// The captions of a shard file of `images` by item index (in `images`), from its complete
/// lines (a shard still running may be mid-write); none when it does not exist. A file of
/// another data set (an item that is not the same image there) is an error.
fn read_shard(path: &Path, images: &[EvalImage]) -> anyhow::Result<BTreeMap<usize, String>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let complete = text.rfind('\n').map_or("", |i| &text[..=i]);
    let mut captions = BTreeMap::new();
    for (n, line) in complete.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = || format!("{}:{}", path.display(), n + 1);
        let v: serde_json::Value =
            serde_json::from_str(line).with_context(|| format!("{}: not a JSON line", at()))?;
        let item = v.get("item").and_then(serde_json::Value::as_u64);
        let caption = v.get("caption").and_then(serde_json::Value::as_str);
        let (Some(item), Some(caption)) = (item, caption) else {
            anyhow::bail!("{}: not a shard line (no \"item\" or \"caption\")", at());
        };
        let image = usize::try_from(item).ok().and_then(|i| images.get(i));
        let same = image.is_some_and(|image| {
            v.get("image_id").and_then(serde_json::Value::as_i64) == Some(image.id)
                && v.get("image").and_then(serde_json::Value::as_str) == Some(image.name().as_str())
        });
        if !same {
            anyhow::bail!(
                "{}: item {item} is not that item of this data set (another --data or --limit?); \
                 remove the shard files or write to another --predictions-out",
                at()
            );
        }
        captions.insert(item as usize, caption.to_string());
    }
    Ok(captions)
}

/// Writes the shard file `path` (atomically): `captions` by item index, in order, each line
/// a predictions line with its `"item"`.
fn write_shard(
    path: &Path,
    images: &[EvalImage],
    captions: &BTreeMap<usize, String>,
) -> anyhow::Result<()> {
    let mut text = String::new();
    for (&item, caption) in captions {
        let Some(image) = images.get(item) else {
            continue;
        };
        let line = serde_json::json!({
            "item": item,
            "image_id": image.id,
            "image": image.name(),
            "caption": caption,
        });
        text.push_str(&line.to_string());
        text.push('\n');
    }
    write_text_atomic(path, &text)
}

/// Every item's caption in the data set's order once the shard files of `predictions` hold
/// them all; else `None` (and a line saying how many they hold).
fn merge(
    predictions: &Path,
    shard: Shard,
    images: &[EvalImage],
) -> anyhow::Result<Option<Vec<String>>> {
    let mut all = BTreeMap::new();
    for other in shard.all() {
        all.extend(read_shard(&other.output(predictions), images)?);
    }
    if all.len() < images.len() {
        eprintln!(
            "{} of {} items are in the shard files; {} is written and scored when the last \
             shard finishes",
            all.len(),
            images.len(),
            predictions.display()
        );
        return Ok(None);
    }
    Ok(Some(all.into_values().collect()))
}

/// The progress bar of `len` images.
fn progress_bar(len: usize) -> ProgressBar {
    let bar = ProgressBar::new(len as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:40} {pos}/{len} images [{elapsed_precise}<{eta_precise}]",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

/// Writes `--predictions-out` (one line per item of `images`, in order), scores `captions`
/// against the references, writes `--out` and prints the summary.
fn score_and_report(
    args: &CaptionArgs,
    images: &[EvalImage],
    captions: Vec<String>,
) -> anyhow::Result<()> {
    let mut items = Vec::with_capacity(images.len());
    let mut predictions = String::new();
    for (image, caption) in images.iter().zip(captions) {
        predictions.push_str(&prediction_line(image, &caption));
        predictions.push('\n');
        items.push(CaptionItem {
            image_id: ImageId::Int(image.id),
            candidate: caption,
            references: image.captions.clone(),
        });
    }
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

/// The predictions line of `image`: `{"image_id", "image", "caption"}`.
fn prediction_line(image: &EvalImage, caption: &str) -> String {
    serde_json::json!({
        "image_id": image.id,
        "image": image.name(),
        "caption": caption,
    })
    .to_string()
}

/// Captions `decoded` (the images of `chunk`), asking each its record's prompt unless
/// `--prompt` is given: one batch per distinct question and number of images (items of
/// several images are asked about them together), answers in `chunk`'s order.
fn describe_by_prompt(
    captioner: &visualglm::pipeline::Captioner,
    args: &CaptionArgs,
    chunk: &[EvalImage],
    decoded: &[Vec<DynamicImage>],
) -> anyhow::Result<Vec<String>> {
    let query_of = |image: &EvalImage| match &args.prompt {
        Some(p) => Some(p.clone()),
        None if image.prompt.trim().is_empty() => None,
        None => Some(image.prompt.clone()),
    };
    let mut groups: BTreeMap<(Option<String>, usize), Vec<usize>> = BTreeMap::new();
    for (i, image) in chunk.iter().enumerate() {
        groups
            .entry((query_of(image), image.paths.len()))
            .or_default()
            .push(i);
    }
    let mut captions = vec![String::new(); chunk.len()];
    for ((query, per_item), members) in groups {
        let question = args.generation.question(captioner.defaults(), query)?;
        let images: Vec<DynamicImage> = members
            .iter()
            .flat_map(|&i| decoded[i].iter().cloned())
            .collect();
        let answers = if per_item == 1 {
            captioner.describe_batch(&images, &question)?.answers
        } else {
            // Slot j of every item's prompt holds its j-th image: [items, 32, width] each.
            let embeds = captioner.encode_images(&images)?;
            let (_, q, w) = embeds.dims3()?;
            let embeds = embeds.reshape((members.len(), per_item, q, w))?;
            let slots = (0..per_item)
                .map(|j| embeds.narrow(1, j, 1)?.squeeze(1))
                .collect::<candle_core::Result<Vec<_>>>()?;
            captioner.answer_image_set(&slots, &question)?.answers
        };
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
    if let Some(set) = images.iter().find(|i| i.paths.len() > 1) {
        anyhow::bail!(
            "{}: retrieval pairs one image with its captions, but a record lists {} images ({})",
            args.data.display(),
            set.paths.len(),
            set.name()
        );
    }
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
    let decoded: Vec<DynamicImage> = decode_images(&images, &args.data)?
        .into_iter()
        .flatten()
        .collect();
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

/// One image (or, for a record whose `"img"` is a list, one set of images asked about
/// together) of an evaluation data set with its captions (the references), in file order.
#[derive(Debug, Clone)]
struct EvalImage {
    id: i64,
    paths: Vec<PathBuf>,
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
                    paths: ex.images.clone(),
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

impl EvalImage {
    /// Its name in predictions: the image path, or the paths joined by ` + `.
    fn name(&self) -> String {
        let names: Vec<String> = self.paths.iter().map(|p| p.display().to_string()).collect();
        names.join(visualglm_eval::io::caption_set::IMAGE_SET_SEPARATOR)
    }
}

/// Decodes the images of `chunk` in parallel (each item's, in order); errors name the data
/// file.
fn decode_images(chunk: &[EvalImage], data: &Path) -> anyhow::Result<Vec<Vec<DynamicImage>>> {
    chunk
        .par_iter()
        .map(|image| {
            image
                .paths
                .iter()
                .map(|p| {
                    load_image(p, &Default::default())
                        .with_context(|| format!("image of {}", data.display()))
                })
                .collect()
        })
        .collect()
}
