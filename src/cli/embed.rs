//! `visualglm embed`: retrieval embeddings of images and texts from a model's ITC heads.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use visualglm::itc::ItcHeads;
use visualglm::retrieval::{embed_images, embed_texts};
use visualglm_vision::decode::load_image;

use super::model_args::ModelArgs;

/// Arguments of `visualglm embed`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Images to embed (repeatable).
    #[arg(long = "image", value_name = "PATH")]
    images: Vec<PathBuf>,
    /// Texts to embed (repeatable).
    #[arg(long = "text", value_name = "TEXT")]
    texts: Vec<String>,
    /// ITC heads (default: `itc.safetensors` in the model directory, written by a training
    /// run with `itc_weight` > 0).
    #[arg(long)]
    itc: Option<PathBuf>,
    /// Images (and texts) run together.
    #[arg(long, default_value_t = 16)]
    batch_size: usize,
    /// Write the JSON lines to this file (atomically) instead of standard output.
    #[arg(long)]
    out: Option<PathBuf>,
    #[command(flatten)]
    model: ModelArgs,
}

/// Runs `embed`: one JSON line per input, images first: `{"image", "embedding": [32][d]}`
/// and `{"text", "embedding": [d]}`, unit vectors. An image and a text score as the largest
/// of the 32 query–text dot products.
pub fn run(args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(
        !(args.images.is_empty() && args.texts.is_empty()),
        "nothing to embed: give --image PATH and/or --text TEXT"
    );
    let itc_path = args.model.itc_path(args.itc.as_deref())?;
    let images = args
        .images
        .iter()
        .map(|p| load_image(p, &Default::default()).with_context(|| p.display().to_string()))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let captioner = args.model.load()?;
    let heads = ItcHeads::from_file(&itc_path, captioner.model().device())?;
    let mut text = String::new();
    if !images.is_empty() {
        let e = embed_images(&captioner, &heads, &images, args.batch_size)?;
        for (path, rows) in args.images.iter().zip(e.to_vec3::<f32>()?) {
            let line = serde_json::json!({"image": path.display().to_string(), "embedding": rows});
            text.push_str(&line.to_string());
            text.push('\n');
        }
    }
    if !args.texts.is_empty() {
        let refs: Vec<&str> = args.texts.iter().map(String::as_str).collect();
        let e = embed_texts(&captioner, &heads, &refs, args.batch_size)?;
        for (t, row) in args.texts.iter().zip(e.to_vec2::<f32>()?) {
            let line = serde_json::json!({"text": t, "embedding": row});
            text.push_str(&line.to_string());
            text.push('\n');
        }
    }
    match &args.out {
        Some(path) => visualglm_files::write_atomic_bytes(path, text.as_bytes())?,
        None => std::io::stdout().lock().write_all(text.as_bytes())?,
    }
    Ok(())
}
