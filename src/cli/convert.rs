//! `visualglm convert`: any supported checkpoint → one canonical safetensors file.

use std::path::PathBuf;

use anyhow::Context;

use super::model_args::ModelSource;
use candle_core::DType;
use visualglm::checkpoint::{self, LoadOptions, QkvLayout, SaveOptions};

/// Arguments of `visualglm convert`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelSource,
    /// Output safetensors file (written atomically).
    #[arg(long)]
    pub out: PathBuf,
    /// Convert floating-point tensors to this dtype (default: keep each stored dtype).
    #[arg(long, value_enum)]
    pub dtype: Option<DtypeArg>,
    /// Configuration file, when none is beside the checkpoint or in its metadata.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The GLM QKV rows of a SAT checkpoint are per-head interleaved (SAT files from
    /// before July 2023).
    #[arg(long)]
    pub sat_interleaved_qkv: bool,
}

/// Output dtypes accepted by `--dtype`.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum DtypeArg {
    /// IEEE half precision.
    F16,
    /// Single precision.
    F32,
    /// bfloat16.
    Bf16,
}

impl From<DtypeArg> for DType {
    fn from(d: DtypeArg) -> Self {
        match d {
            DtypeArg::F16 => DType::F16,
            DtypeArg::F32 => DType::F32,
            DtypeArg::Bf16 => DType::BF16,
        }
    }
}

/// Loads `--model`, converts it to the canonical form and writes `--out`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let opts = LoadOptions {
        sat_qkv_layout: args.sat_interleaved_qkv.then_some(QkvLayout::Interleaved),
        config_path: args.config.clone(),
        ..LoadOptions::default()
    };
    let model = args.model.resolve()?;
    let ck =
        checkpoint::open(&model, &opts).with_context(|| format!("opening {}", model.display()))?;
    let total: u64 = ck
        .tensors
        .values()
        .map(|t| {
            let dtype = match args.dtype {
                Some(d) if t.dtype().is_float() => DType::from(d),
                _ => t.dtype(),
            };
            (t.elem_count() * dtype.size_in_bytes()) as u64
        })
        .sum();
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg:>12} [{bar:40}] {bytes}/{total_bytes} ({eta})",
        )?
        .progress_chars("=> "),
    );
    bar.set_message("writing");
    let save = SaveOptions {
        dtype: args.dtype.map(DType::from),
    };
    checkpoint::save_canonical(&ck, &args.out, &save, &mut |_, n| bar.inc(n))
        .with_context(|| format!("writing {}", args.out.display()))?;
    bar.finish_with_message("done");
    eprintln!(
        "wrote {} tensors ({} family, QKV as blocks) to {}",
        ck.tensors.len(),
        ck.family.as_str(),
        args.out.display()
    );
    Ok(())
}
