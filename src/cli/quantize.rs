//! `visualglm quantize`: write a checkpoint as one GGUF file with quantized GLM linears
//! (and optionally a quantized `lm_head` and word-embedding table, stored once when tied).

use std::path::PathBuf;

use anyhow::Context;

use super::model_args::ModelSource;
use candle_core::quantized::GgmlDType;
use visualglm::checkpoint::{self, LoadOptions};
use visualglm::gguf::{write_gguf, GgufWriteOptions};
use visualglm::quantize::parse_quantize_type;
use visualglm_nn::quant::dtype_name;

/// Arguments of `visualglm quantize`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    model: ModelSource,
    /// Config file, for a single weights file without one beside it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Output GGUF file.
    #[arg(long)]
    out: PathBuf,
    /// Type of the GLM layer weights: q8_0, q4_0, q4_1, q5_0, q5_1, q8_1, q2k, q3k, q4k, q5k,
    /// q6k.
    #[arg(long = "type", default_value = "q4k")]
    qtype: String,
    /// Also quantize lm_head (the release keeps it in fp16).
    #[arg(long)]
    lm_head: bool,
    /// Also quantize the word-embedding table. With --lm-head and a tied lm_head (the HF
    /// layout), the table is stored once and serves both (as chatglm.cpp stores it).
    #[arg(long)]
    embeddings: bool,
    /// Type of the other (dense) tensors of rank ≥ 2: f16 or f32 (1-D tensors are always f32).
    #[arg(long, default_value = "f16")]
    dense: String,
}

/// Runs `quantize`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let quantization = parse_quantize_type(&args.qtype)?;
    let dense = match args.dense.to_ascii_lowercase().as_str() {
        "f16" => GgmlDType::F16,
        "f32" => GgmlDType::F32,
        other => anyhow::bail!("--dense {other}: use f16 or f32"),
    };
    let opts = LoadOptions {
        config_path: args.config.clone(),
        ..Default::default()
    };
    let model = args.model.resolve()?;
    let ck =
        checkpoint::open(&model, &opts).with_context(|| format!("opening {}", model.display()))?;
    let bar = indicatif::ProgressBar::new(ck.tensors.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg:>12} [{bar:40}] {pos}/{len} ({eta})")?
            .progress_chars("=> "),
    );
    bar.set_message("quantizing");
    let wopts = GgufWriteOptions {
        quantization,
        lm_head: args.lm_head,
        embeddings: args.embeddings,
        dense,
    };
    let summary = write_gguf(&ck, &args.out, &wopts, &mut |done, _, _| {
        bar.set_position(done as u64)
    })
    .with_context(|| format!("writing {}", args.out.display()))?;
    bar.finish_with_message("done");
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for (_, d) in &summary.tensors {
        let n = dtype_name(*d);
        match counts.iter_mut().find(|(k, _)| *k == n) {
            Some((_, c)) => *c += 1,
            None => counts.push((n, 1)),
        }
    }
    let counts: Vec<String> = counts.iter().map(|(k, c)| format!("{c}×{k}")).collect();
    eprintln!(
        "wrote {} tensors ({}) to {} ({:.1} MiB)",
        summary.tensors.len(),
        counts.join(", "),
        args.out.display(),
        summary.bytes as f64 / (1 << 20) as f64
    );
    Ok(())
}
