//! `visualglm batch IMAGE|DIR|LIST... --out captions.jsonl`: caption many images, resumably;
//! in shards over several processes with `--shard K/N` or under a launcher (see
//! `batch_shard`).

pub(super) mod inputs;
pub(super) mod output;
pub(super) mod settings;

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;
use visualglm::defaults::ModelDefaults;
use visualglm::pipeline::Timings;
use visualglm_vision::decode::load_image;

use super::batch_shard::{merge_when_complete, Shard};
use super::model_args::{GenerationArgs, ModelArgs};
use inputs::{collect_images, image_key};
use output::{compact, Recorded};
use settings::Settings;

/// Arguments of `visualglm batch`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Images, directories of images and text files listing one image path per line
    /// (relative paths are relative to the list file), in any mix; each image is captioned
    /// once, in the order given.
    #[arg(required = true, value_name = "IMAGE|DIR|LIST")]
    inputs: Vec<PathBuf>,
    /// Output JSON Lines file: one `{"image", "caption"}` or `{"image", "error"}` per image.
    /// Images already in it are skipped, so an interrupted run can simply be restarted. The
    /// model, prompt and decoding settings are recorded in `OUT.meta.json`.
    #[arg(long)]
    out: PathBuf,
    /// Images encoded and decoded together.
    #[arg(long, default_value_t = 8)]
    batch_size: usize,
    /// The question (default: the model's, else the release's describe-this-image question).
    #[arg(long, short = 'p')]
    prompt: Option<String>,
    /// Caption again the images recorded with an error in the output (their lines are
    /// replaced in place).
    #[arg(long)]
    retry_errors: bool,
    /// Add to an output made with another model, prompt or decoding settings (refused
    /// without it); its `OUT.meta.json` then records this run's settings.
    #[arg(long)]
    force: bool,
    /// Caption only shard K of N (K from 0: every N-th image from the K-th) into
    /// `OUT.shard-K-of-N`; the shard that finishes last merges them into `--out`. Under
    /// `mpirun`, `srun` or torchrun the launcher's rank and world are used.
    #[arg(long, value_name = "K/N")]
    shard: Option<String>,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    generation: GenerationArgs,
}

/// Runs `batch`.
pub fn run(args: Args, verbose: bool) -> anyhow::Result<()> {
    if args.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    let all_images = collect_images(&args.inputs)?;
    let shard = Shard::choose(args.shard.as_deref())?;
    let images = shard.take(&all_images);
    let out_path = shard.output(&args.out);
    // The settings, known before the (slow) model load: a refused resume fails at once.
    let model_path = args.model.resolve()?;
    let defaults = ModelDefaults::for_model(&model_path)?;
    let question = args.generation.question(&defaults, args.prompt.clone())?;
    let settings = Settings::new(&model_path, &args.model, &question);
    let recorded = Recorded::read(&out_path)?;
    check_settings(&settings, &out_path, &recorded, shard, &args)?;
    let done = recorded.done(args.retry_errors);
    let todo: Vec<PathBuf> = images
        .iter()
        .filter(|p| !done.contains(&image_key(p)))
        .cloned()
        .collect();
    let skipped = images.len() - todo.len();
    if todo.is_empty() {
        compact(&out_path)?;
        eprintln!(
            "nothing to do: all {} images are already in {}",
            images.len(),
            out_path.display()
        );
        return merge_shards(&all_images, &args, shard, &settings);
    }
    let captioner = args.model.load()?;
    let mut out = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&out_path)
        .with_context(|| format!("cannot write {}", out_path.display()))?;
    let bar = ProgressBar::new(todo.len() as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:40} {pos}/{len} images [{elapsed_precise}<{eta_precise}] {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut timings = Timings::default();
    let (mut ok, mut failed) = (0usize, 0usize);
    for chunk in todo.chunks(args.batch_size) {
        let decoded: Vec<_> = chunk
            .par_iter()
            .map(|p| load_image(p, &Default::default()))
            .collect();
        // One line per image, in the input's order (a sharded run's merge writes the same).
        let mut lines: Vec<Option<serde_json::Value>> = vec![None; chunk.len()];
        let mut good = Vec::new();
        let mut good_images = Vec::new();
        for (i, (path, result)) in chunk.iter().zip(decoded).enumerate() {
            match result {
                Ok(image) => {
                    good.push(i);
                    good_images.push(image);
                }
                Err(e) => {
                    failed += 1;
                    lines[i] = Some(
                        serde_json::json!({"image": path.display().to_string(), "error": e.to_string()}),
                    );
                }
            }
        }
        if !good_images.is_empty() {
            match captioner.describe_batch(&good_images, &question) {
                Ok(batch) => {
                    timings += batch.timings;
                    for (&i, caption) in good.iter().zip(batch.answers) {
                        ok += 1;
                        lines[i] = Some(
                            serde_json::json!({"image": chunk[i].display().to_string(), "caption": caption}),
                        );
                    }
                }
                Err(e) => {
                    for &i in &good {
                        failed += 1;
                        lines[i] = Some(
                            serde_json::json!({"image": chunk[i].display().to_string(), "error": e.to_string()}),
                        );
                    }
                }
            }
        }
        let mut text = String::new();
        for line in lines.into_iter().flatten() {
            text.push_str(&line.to_string());
            text.push('\n');
        }
        // One write per chunk, then flushed to disk: a crash loses at most this chunk.
        out.write_all(text.as_bytes())
            .and_then(|()| out.sync_data())
            .with_context(|| format!("cannot write {}", out_path.display()))?;
        bar.inc(chunk.len() as u64);
        bar.set_message(format!("{ok} ok, {failed} failed"));
    }
    bar.finish();
    drop(out);
    // Retried images have a second line: one line per image again, in place.
    compact(&out_path)?;
    eprintln!(
        "{ok} captioned, {failed} failed, {skipped} skipped (already done); wrote {}",
        out_path.display()
    );
    if verbose {
        eprintln!("{}", timings.summary());
        if let Some(cache) = captioner.image_cache() {
            eprintln!("{}", cache.stats().summary());
        }
    }
    merge_shards(&all_images, &args, shard, &settings)
}

/// Refuses to add to outputs made with other settings (unless `--force`): this run's own
/// file when it holds records, and for a shard the merged output and the other shards'
/// files. Then records the settings beside this run's file.
fn check_settings(
    settings: &Settings,
    out_path: &Path,
    recorded: &Recorded,
    shard: Shard,
    args: &Args,
) -> anyhow::Result<()> {
    let mut outs: Vec<PathBuf> = shard
        .related_outputs(&args.out)
        .into_iter()
        .filter(|p| std::fs::metadata(p).is_ok_and(|m| m.len() > 0))
        .collect();
    if !recorded.is_empty() {
        outs.insert(0, out_path.to_path_buf());
    }
    settings.check(&outs, args.force)?;
    if recorded.is_empty() || Settings::read(out_path)?.as_ref() != Some(settings) {
        settings.write(out_path)?;
    }
    Ok(())
}

/// For a sharded run, merges the shard files into `--out` once they hold every image.
fn merge_shards(
    all_images: &[PathBuf],
    args: &Args,
    shard: Shard,
    settings: &Settings,
) -> anyhow::Result<()> {
    if shard.world == 1 {
        return Ok(());
    }
    let out = &args.out;
    let held = merge_when_complete(all_images, out, shard.world, settings, args.force)?;
    if held == all_images.len() {
        eprintln!("merged {} shards into {}", shard.world, out.display());
    } else {
        eprintln!(
            "{held} of {} images are in the shard files; {} is written when the last shard \
             finishes",
            all_images.len(),
            out.display()
        );
    }
    Ok(())
}
