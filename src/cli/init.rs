//! `visualglm init`: a randomly initialised model directory to train from scratch.

use std::path::PathBuf;

use anyhow::Context;
use visualglm::config::VisualGlmConfig;
use visualglm::init::{adopt_tokenizer, random_checkpoint};
use visualglm::model_dir::write_model_dir;
use visualglm_tokenizer::ChatGlmTokenizer;

/// Arguments of `visualglm init`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Model configuration: an HF `config.json` (with `eva_config`, `qformer_config`) or a SAT
    /// `model_config.json`.
    #[arg(long)]
    config: PathBuf,
    /// Tokenizer (`.model` or `.json`); sets the vocabulary size and special-token ids.
    #[arg(long)]
    tokenizer: PathBuf,
    /// Output model directory.
    #[arg(long)]
    out: PathBuf,
    /// Seed of the initialisation.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

/// Runs `init`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let (mut config, family) = VisualGlmConfig::from_file(&args.config)?;
    let tokenizer = ChatGlmTokenizer::from_file(&args.tokenizer)
        .with_context(|| format!("cannot load the tokenizer {}", args.tokenizer.display()))?;
    adopt_tokenizer(&mut config, &tokenizer);
    let ck = random_checkpoint(&config, family, args.seed)?;
    let params: usize = ck.tensors.values().map(|t| t.elem_count()).sum();
    let weights = write_model_dir(&ck, &args.tokenizer, &args.out)?;
    println!(
        "wrote {} ({} parameters, vocabulary {})",
        weights.display(),
        params,
        config.glm.vocab_size
    );
    Ok(())
}
