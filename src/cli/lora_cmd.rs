//! `visualglm lora`: extract adapters from a SAT LoRA fine-tune, and merge adapters into a
//! base checkpoint.

use std::path::PathBuf;

use anyhow::Context;
use candle_core::DType;
use visualglm::checkpoint::{self, LoadOptions, SaveOptions};
use visualglm::lora;

use super::convert::DtypeArg;
use super::model_args::HubArgs;

/// Subcommands of `visualglm lora`.
#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Merge adapters into a base checkpoint and write one canonical safetensors file.
    Merge(MergeArgs),
    /// Write the adapters of a SAT LoRA fine-tune as an adapter directory.
    Extract(ExtractArgs),
}

/// Arguments of `visualglm lora merge`.
#[derive(clap::Args, Debug)]
pub struct MergeArgs {
    /// Base checkpoint (any form `convert` reads, or a hub id). May be left out when `--lora`
    /// is a SAT LoRA fine-tune: its own base weights are used.
    #[arg(long, short = 'm', env = "VISUALGLM_MODEL")]
    pub model: Option<String>,
    #[command(flatten)]
    pub hub: HubArgs,
    /// Adapters: an adapter directory (`adapter_config.json` + `adapter_model.safetensors`)
    /// or a SAT LoRA fine-tune directory.
    #[arg(long)]
    pub lora: PathBuf,
    /// Output safetensors file (written atomically).
    #[arg(long)]
    pub out: PathBuf,
    /// Convert floating-point tensors to this dtype (default: keep each stored dtype; merged
    /// weights are f32).
    #[arg(long, value_enum)]
    pub dtype: Option<DtypeArg>,
}

/// Arguments of `visualglm lora extract`.
#[derive(clap::Args, Debug)]
pub struct ExtractArgs {
    /// The SAT LoRA fine-tune directory (`latest`, `model_config.json` with `use_lora`).
    #[arg(long)]
    pub lora: PathBuf,
    /// Output adapter directory.
    #[arg(long)]
    pub out: PathBuf,
}

/// Runs a `visualglm lora` subcommand.
pub fn run(cmd: Command) -> anyhow::Result<()> {
    match cmd {
        Command::Merge(args) => merge(args),
        Command::Extract(args) => extract(args),
    }
}

fn merge(args: MergeArgs) -> anyhow::Result<()> {
    let opts = LoadOptions::default();
    let (mut ck, adapters) = match &args.model {
        Some(spec) => {
            let base = args.hub.resolve(spec)?;
            let ck = checkpoint::load(&base, &opts)
                .with_context(|| format!("loading {}", base.display()))?;
            let adapters = lora::read_any_adapters(&args.lora, &opts)?;
            (ck, adapters)
        }
        None => {
            let ft = lora::load_sat_lora(&args.lora, &opts).with_context(|| {
                format!(
                    "{} is not a SAT LoRA fine-tune; pass the base with --model",
                    args.lora.display()
                )
            })?;
            (ft.base, ft.adapters)
        }
    };
    lora::merge_checkpoint(&mut ck, &adapters)?;
    let save = SaveOptions {
        dtype: args.dtype.map(DType::from),
    };
    checkpoint::save_canonical(&ck, &args.out, &save, &mut |_, _| {})
        .with_context(|| format!("writing {}", args.out.display()))?;
    eprintln!(
        "merged {} adapters (rank {}, scaling {}) into {} tensors; wrote {}",
        adapters.len(),
        adapters.config().rank,
        adapters.config().scaling(),
        ck.tensors.len(),
        args.out.display()
    );
    Ok(())
}

fn extract(args: ExtractArgs) -> anyhow::Result<()> {
    let ft = lora::load_sat_lora(&args.lora, &LoadOptions::default())?;
    lora::save_adapters(&ft.adapters, &args.out, Some(ft.base.family))?;
    eprintln!(
        "wrote {} adapters (rank {}, alpha {}) to {}",
        ft.adapters.len(),
        ft.adapters.config().rank,
        ft.adapters.config().alpha,
        args.out.display()
    );
    Ok(())
}
