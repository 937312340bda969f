//! `visualglm batch DIR|LIST --out captions.jsonl`: caption many images, resumably; in shards
//! over several processes with `--shard K/N` or under a launcher (see `batch_shard`).

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;
use visualglm::pipeline::Timings;
use visualglm_vision::decode::load_image;

use super::batch_shard::{merge_when_complete, Shard};
use super::model_args::{GenerationArgs, ModelArgs};

/// File extensions taken from a directory.
const IMAGE_EXTENSIONS: [&str; 9] = [
    "jpg", "jpeg", "png", "gif", "bmp", "webp", "tif", "tiff", "jfif",
];

/// Arguments of `visualglm batch`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// A directory of images, or a text file listing one image path per line
    /// (relative paths are relative to the list file).
    input: PathBuf,
    /// Output JSON Lines file: one `{"image", "caption"}` or `{"image", "error"}` per image.
    /// Images already in it are skipped, so an interrupted run can simply be restarted.
    #[arg(long)]
    out: PathBuf,
    /// Images encoded and decoded together.
    #[arg(long, default_value_t = 8)]
    batch_size: usize,
    /// The question (default: the release's describe-this-image question).
    #[arg(long, short = 'p')]
    prompt: Option<String>,
    /// Caption again the images recorded with an error in the output.
    #[arg(long)]
    retry_errors: bool,
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
    let all_images = collect_images(&args.input)?;
    let shard = Shard::choose(args.shard.as_deref())?;
    let images = shard.take(&all_images);
    let out_path = shard.output(&args.out);
    let done = finished_images(&out_path, args.retry_errors)?;
    let todo: Vec<PathBuf> = images
        .into_iter()
        .filter(|p| !done.contains(&p.display().to_string()))
        .collect();
    if todo.is_empty() {
        eprintln!(
            "nothing to do: every image is already in {}",
            out_path.display()
        );
        return merge_shards(&all_images, &args.out, shard);
    }
    let captioner = args.model.load()?;
    let question = args
        .generation
        .question(captioner.defaults(), args.prompt.clone())?;
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
        out.write_all(text.as_bytes())?;
        out.sync_data()?;
        bar.inc(chunk.len() as u64);
        bar.set_message(format!("{ok} ok, {failed} failed"));
    }
    bar.finish();
    eprintln!(
        "{ok} captioned, {failed} failed, {} skipped (already done); wrote {}",
        done.len(),
        out_path.display()
    );
    if verbose {
        eprintln!("{}", timings.summary());
    }
    merge_shards(&all_images, &args.out, shard)
}

/// For a sharded run, merges the shard files into `out` once they hold every image.
fn merge_shards(all_images: &[PathBuf], out: &Path, shard: Shard) -> anyhow::Result<()> {
    if shard.world == 1 {
        return Ok(());
    }
    let held = merge_when_complete(all_images, out, shard.world)?;
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

/// The images of a directory (sorted, not recursive) or of a list file.
fn collect_images(input: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if input.is_dir() {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(input)
            .with_context(|| format!("cannot read directory {}", input.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.is_file()
                    && p.extension().and_then(|e| e.to_str()).is_some_and(|e| {
                        IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str())
                    })
            })
            .collect();
        paths.sort();
        return Ok(paths);
    }
    let file = File::open(input).with_context(|| format!("cannot open {}", input.display()))?;
    let base = input.parent().unwrap_or(Path::new("."));
    let mut paths = Vec::new();
    for (n, line) in BufReader::new(file).lines().enumerate() {
        let line =
            line.with_context(|| format!("{}:{}: not UTF-8 text", input.display(), n + 1))?;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let p = Path::new(line);
        paths.push(if p.is_absolute() {
            p.to_path_buf()
        } else {
            base.join(p)
        });
    }
    Ok(paths)
}

/// Images already recorded in the output. A last line cut short by a crash is removed so
/// that appending continues on a clean line.
fn finished_images(out: &Path, retry_errors: bool) -> anyhow::Result<HashSet<String>> {
    let mut done = HashSet::new();
    let Ok(mut file) = OpenOptions::new().read(true).write(true).open(out) else {
        return Ok(done);
    };
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {}", out.display()))?;
    if !bytes.is_empty() && !bytes.ends_with(b"\n") {
        let keep = bytes
            .iter()
            .rposition(|&b| b == b'\n')
            .map(|i| i + 1)
            .unwrap_or(0);
        file.set_len(keep as u64)?;
        file.seek(SeekFrom::End(0))?;
        bytes.truncate(keep);
        tracing::warn!("{}: removed an incomplete last line", out.display());
    }
    let text =
        String::from_utf8(bytes).with_context(|| format!("{} is not UTF-8 text", out.display()))?;
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(line)
            .with_context(|| format!("{}:{}: not a JSON line", out.display(), n + 1))?;
        if retry_errors && v.get("error").is_some() {
            continue;
        }
        if let Some(image) = v.get("image").and_then(|i| i.as_str()) {
            done.insert(image.to_string());
        }
    }
    Ok(done)
}
