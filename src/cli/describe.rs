//! `visualglm describe IMAGE...`: print a description of each image.

use std::path::PathBuf;

use anyhow::Context;
use visualglm::pipeline::Answers;
use visualglm_vision::decode::load_image;

use super::model_args::{GenerationArgs, ModelArgs};

/// Arguments of `visualglm describe`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Images to describe.
    #[arg(required = true)]
    images: Vec<PathBuf>,
    /// The question (default: the release's describe-this-image question).
    #[arg(long, short = 'p')]
    prompt: Option<String>,
    /// Print one JSON object per image: {"image", "caption"}.
    #[arg(long)]
    json: bool,
    /// Print image-encode ms and prefill/decode tokens per second to stderr.
    #[arg(long)]
    timings: bool,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    generation: GenerationArgs,
}

/// Runs `describe`.
pub fn run(args: Args, verbose: bool) -> anyhow::Result<()> {
    // Read every image first, so a bad path fails before the model loads.
    let images = args
        .images
        .iter()
        .map(|p| {
            load_image(p, &Default::default())
                .with_context(|| format!("cannot describe {}", p.display()))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let captioner = args.model.load()?;
    let question = args.generation.question(args.prompt.clone());
    let Answers {
        answers: captions,
        timings,
    } = captioner.describe_batch(&images, &question)?;
    for (path, caption) in args.images.iter().zip(&captions) {
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
    }
    Ok(())
}
