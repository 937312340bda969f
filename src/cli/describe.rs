//! `visualglm describe IMAGE...`: print a description of each image, or with `--together`
//! one answer about all of them.

use std::io::Read;
use std::path::{Path, PathBuf};

use image::DynamicImage;
use visualglm::pipeline::Answers;
use visualglm_vision::decode::{decode_image, load_image, DecodeLimits};

use super::model_args::{GenerationArgs, ModelArgs};
use super::output::error_message;

/// Arguments of `visualglm describe`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Images to describe; `-` reads one from standard input.
    #[arg(required = true)]
    images: Vec<PathBuf>,
    /// The question (default: the model's, else the release's describe-this-image question).
    #[arg(long, short = 'p')]
    prompt: Option<String>,
    /// Print one JSON object per image: {"image", "caption"} (or {"image", "error"}).
    #[arg(long)]
    json: bool,
    /// Print image-encode ms and prefill/decode tokens per second to stderr.
    #[arg(long)]
    timings: bool,
    /// Ask one question about all the images together (one `<img>` block each, in order) and
    /// print one answer. The released weights saw one image per prompt: answers about
    /// several are only as good as a fine-tune on such prompts.
    #[arg(long)]
    together: bool,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    generation: GenerationArgs,
}

/// Reads one image argument: a file, or `-` for standard input.
fn read_image(path: &Path) -> anyhow::Result<DynamicImage> {
    let limits = DecodeLimits::default();
    if path == Path::new("-") {
        let mut bytes = Vec::new();
        std::io::stdin()
            .lock()
            .take(limits.max_alloc.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(|e| anyhow::anyhow!("cannot read the image from standard input: {e}"))?;
        if bytes.len() as u64 > limits.max_alloc {
            anyhow::bail!(
                "the image on standard input is larger than {} bytes",
                limits.max_alloc
            );
        }
        return Ok(decode_image(&bytes, "standard input", &limits)?);
    }
    Ok(load_image(path, &limits)?)
}

/// Runs `describe`: every readable image is described; each unreadable one is reported on
/// its own line, and the command fails at the end if any was.
pub fn run(args: Args, verbose: bool) -> anyhow::Result<()> {
    if args.images.iter().filter(|p| *p == Path::new("-")).count() > 1 {
        anyhow::bail!("`-` (standard input) can be given once");
    }
    // Read every image first, so bad paths are found before the model loads.
    let mut good: Vec<(&PathBuf, DynamicImage)> = Vec::new();
    if args.together && args.images.len() < 2 {
        anyhow::bail!("--together needs at least two images");
    }
    let mut failed = 0usize;
    let report = |path: &Path, err: &anyhow::Error| {
        let message = error_message(err);
        if args.json {
            let line = serde_json::json!({ "image": path.display().to_string(), "error": message });
            println!("{line}");
        } else {
            eprintln!("error: cannot describe {}: {message}", path.display());
        }
    };
    for path in &args.images {
        match read_image(path) {
            Ok(image) => good.push((path, image)),
            Err(e) => {
                report(path, &e);
                failed += 1;
            }
        }
    }
    if !good.is_empty() {
        let captioner = args.model.load()?;
        let question = args
            .generation
            .question(captioner.defaults(), args.prompt.clone())?;
        let images: Vec<DynamicImage> = good.iter().map(|(_, i)| i.clone()).collect();
        if args.together {
            // One unreadable image changes the question: answer nothing.
            if failed > 0 {
                anyhow::bail!(
                    "{failed} of {} images could not be read: no answer about them together",
                    args.images.len()
                );
            }
            let Answers { answers, timings } = captioner.describe_together(&images, &question)?;
            let answer = answers.into_iter().next().unwrap_or_default();
            if args.json {
                let names: Vec<String> =
                    good.iter().map(|(p, _)| p.display().to_string()).collect();
                println!(
                    "{}",
                    serde_json::json!({ "images": names, "answer": answer })
                );
            } else {
                println!("{answer}");
            }
            if args.timings || verbose {
                eprintln!("{}", timings.summary());
            }
            return Ok(());
        }
        let Answers {
            answers: captions,
            timings,
        } = captioner.describe_batch(&images, &question)?;
        for ((path, _), caption) in good.iter().zip(&captions) {
            if args.json {
                let line =
                    serde_json::json!({ "image": path.display().to_string(), "caption": caption });
                println!("{line}");
            } else if args.images.len() == 1 {
                println!("{caption}");
            } else {
                println!("{}: {caption}", path.display());
            }
        }
        if args.timings || verbose {
            eprintln!("{}", timings.summary());
            if let Some(cache) = captioner.image_cache() {
                eprintln!("{}", cache.stats().summary());
            }
        }
    }
    match failed {
        0 => Ok(()),
        n => anyhow::bail!("{n} of {} images could not be described", args.images.len()),
    }
}
