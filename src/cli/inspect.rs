//! `visualglm inspect`: run the model on raw token ids and write every stage (parity tool).

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{bail, Context};
use candle_core::{DType, Device, Tensor};
use visualglm::{EmbedSpan, LoadOptions, VisualGlm};

use super::model_args::ModelSource;
use super::output::write_safetensors_atomic;

/// Arguments of `visualglm inspect`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    model: ModelSource,
    #[command(flatten)]
    alloc: super::model_args::AllocArgs,
    /// Config file, for a single weights file without one beside it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Image to encode; without it the prompt runs text-only.
    #[arg(long)]
    image: Option<PathBuf>,
    /// Comma-separated token ids of the prompt (32 placeholders included).
    #[arg(long, value_delimiter = ',', num_args = 1..)]
    input_ids: Vec<u32>,
    /// Index of the first image placeholder (the number of tokens of `<img>`).
    #[arg(long, default_value_t = 0)]
    pre_image: usize,
    /// Output safetensors file.
    #[arg(long)]
    out: PathBuf,
    /// Also decode this many tokens greedily with the KV cache (`gen_ids`).
    #[arg(long, default_value_t = 0)]
    generate: usize,
    /// Device: auto, cpu, cuda, cuda:N.
    #[arg(long, default_value = "auto")]
    device: String,
    /// Weight dtype: auto (f32 on CPU, f16 on GPU), f32, f16, bf16 (GPU only).
    #[arg(long, default_value = "auto")]
    dtype: String,
    /// Quantize the GLM layer weights after loading: q8_0, q4_0, q4_1, q5_0, q5_1, q8_1, q2k,
    /// q3k, q4k, q5k, q6k.
    #[arg(long)]
    quantize: Option<String>,
}

/// Runs `inspect`.
pub fn run(args: Args) -> anyhow::Result<()> {
    if args.input_ids.is_empty() {
        bail!("--input-ids is empty: give the prompt's token ids, e.g. --input-ids 11,12,0,...");
    }
    let device = visualglm::runtime::parse_device(&args.device)?;
    let dtype = visualglm::runtime::parse_dtype(&args.dtype, &device)?;
    let opts = LoadOptions {
        config_path: args.config.clone(),
        ..Default::default()
    };
    args.alloc.apply();
    let path = args.model.resolve()?;
    let loading = || format!("loading {}", path.display());
    let model = match &args.quantize {
        None => VisualGlm::load(&path, &device, dtype, &opts).with_context(loading)?,
        Some(q) => {
            let q = visualglm::quantize::parse_quantize_type(q)?;
            let (model, report) =
                VisualGlm::load_quantized(&path, &device, dtype, &opts, q, &Default::default())
                    .with_context(loading)?;
            eprintln!("quantized GLM weights: {}", report.summary());
            model
        }
    };
    let mut out: HashMap<String, Tensor> = HashMap::new();
    let f32_cpu = |t: &Tensor| -> anyhow::Result<Tensor> {
        Ok(t.to_dtype(DType::F32)?.to_device(&Device::Cpu)?)
    };

    let image_embeds = match &args.image {
        Some(path) => {
            let pre = model.image_preprocessor();
            let pixels = pre.preprocess_file(path, &device)?;
            let stages = model.encode_image_stages(&pixels)?;
            out.insert("pixel_values".into(), f32_cpu(&pixels)?);
            out.insert("vit_out".into(), f32_cpu(&stages.vit_out)?);
            out.insert("qformer_out".into(), f32_cpu(&stages.qformer_out)?);
            out.insert("image_embeds".into(), f32_cpu(&stages.image_embeds)?);
            Some(stages.image_embeds)
        }
        None => None,
    };
    let image: Vec<EmbedSpan> = image_embeds
        .map(|e| EmbedSpan::new(args.pre_image, e))
        .into_iter()
        .collect();
    let logits = model.prompt_logits(&args.input_ids, &image)?;
    out.insert("logits".into(), f32_cpu(&logits)?);
    if args.generate > 0 {
        let (ids, _) = model.generate_greedy(&args.input_ids, &image, args.generate)?;
        let ids: Vec<i64> = ids.into_iter().map(i64::from).collect();
        let n = ids.len();
        out.insert("gen_ids".into(), Tensor::from_vec(ids, n, &Device::Cpu)?);
    }
    write_safetensors_atomic(&out, &args.out)?;
    eprintln!("wrote {} tensors to {}", out.len(), args.out.display());
    Ok(())
}
