//! Flags shared by the commands that load a model and generate text.

use std::path::PathBuf;

use anyhow::Context;
use visualglm::pipeline::{Captioner, CaptionerOptions, Question};
use visualglm::quantize::QuantizeOptions;
use visualglm::LoadOptions;
use visualglm_language::GenerationConfig;

/// Where the model is and how to run it.
#[derive(clap::Args, Debug, Clone)]
pub struct ModelArgs {
    /// Model: a local directory (HF shards, SAT, safetensors), a weights file, or a hub id
    /// such as THUDM/visualglm-6b (downloaded into the Hugging Face cache).
    #[arg(long, short = 'm', env = "VISUALGLM_MODEL")]
    pub model: String,
    /// Never touch the network: a hub id must already be in the cache. `HF_HUB_OFFLINE`
    /// takes 1/0, true/false, yes/no, on/off (empty: unset), as Hugging Face documents.
    #[arg(long, env = "HF_HUB_OFFLINE", value_parser = truthy)]
    pub offline: bool,
    /// Tokenizer (`.model`, `tokenizer.json` or a directory); default: found beside the model.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Config file, for a weights file without one beside it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Device: auto, cpu, cuda, cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Weight dtype: auto (f32 on CPU, f16 on GPU), f32, f16, bf16 (GPU only).
    #[arg(long, default_value = "auto")]
    pub dtype: String,
    /// The checkpoint is a SAT file from before July 2023 (per-head interleaved QKV rows).
    #[arg(long)]
    pub sat_interleaved_qkv: bool,
    /// Quantize ChatGLM's linear weights at load time: q8_0, q4_0, q4_1, q5_0, q5_1, q8_1,
    /// q2k, q3k, q4k, q5k, q6k (on the CPU, q4k and q8_0 are the fast ones).
    #[arg(long)]
    pub quantize: Option<String>,
    /// With --quantize: also quantize lm_head (the release keeps it in fp16).
    #[arg(long, requires = "quantize")]
    pub quantize_lm_head: bool,
    /// With --quantize: also quantize the word-embedding table (rows are dequantized when
    /// looked up). With --quantize-lm-head and a tied lm_head (HF layout), one quantized
    /// table serves both, as in chatglm.cpp.
    #[arg(long, requires = "quantize")]
    pub quantize_embeddings: bool,
    /// Dtype of the image encoder (ViT, Q-Former, glm_proj): auto (= --dtype), f32, f16,
    /// bf16 (GPU only). E.g. f16 vision with a quantized f32 language model saves ~2 GB.
    #[arg(long, default_value = "auto")]
    pub vision_dtype: String,
    /// Dtype of the KV cache: auto (= --dtype), f32, f16, bf16 (GPU only). f16 with an f32
    /// (e.g. quantized) model halves the cache: 0.46 instead of 0.9 MB per position.
    #[arg(long, default_value = "auto")]
    pub kv_cache_dtype: String,
}

impl ModelArgs {
    /// Loads the model and its tokenizer.
    pub fn load(&self) -> anyhow::Result<Captioner> {
        let model = visualglm::hub::resolve_model(&self.model, self.offline)?;
        let device = visualglm::runtime::parse_device(&self.device)?;
        let dtype = visualglm::runtime::parse_dtype(&self.dtype, &device)?;
        let optional_dtype = |s: &str| -> anyhow::Result<_> {
            Ok(match s.trim().to_ascii_lowercase().as_str() {
                "auto" => None,
                s => Some(visualglm::runtime::parse_dtype(s, &device)?),
            })
        };
        let vision_dtype = optional_dtype(&self.vision_dtype)?;
        let kv_cache_dtype = optional_dtype(&self.kv_cache_dtype)?;
        anyhow::ensure!(
            !(device.is_cpu() && kv_cache_dtype == Some(candle_core::DType::BF16)),
            "--kv-cache-dtype bf16: not supported on the CPU (use f16 or f32)"
        );
        let checkpoint = LoadOptions {
            config_path: self.config.clone(),
            sat_qkv_layout: self
                .sat_interleaved_qkv
                .then_some(visualglm::QkvLayout::Interleaved),
            vision_dtype,
        };
        let quantize = self
            .quantize
            .as_deref()
            .map(visualglm::quantize::parse_quantize_type)
            .transpose()?
            .map(|dtype| {
                let opts = QuantizeOptions {
                    lm_head: self.quantize_lm_head,
                    embeddings: self.quantize_embeddings,
                };
                (dtype, opts)
            });
        let start = std::time::Instant::now();
        let opts = CaptionerOptions {
            checkpoint,
            tokenizer: self.tokenizer.clone(),
            quantize,
        };
        let mut captioner = Captioner::load(&model, &device, dtype, &opts)
            .with_context(|| format!("loading {}", model.display()))?;
        captioner.set_kv_cache_dtype(kv_cache_dtype);
        tracing::info!(
            "loaded {} on {:?} as {:?} in {:.1} s",
            model.display(),
            device,
            dtype,
            start.elapsed().as_secs_f64()
        );
        Ok(captioner)
    }
}

/// Decoding flags; defaults are the release's demo settings.
#[derive(clap::Args, Debug, Clone)]
pub struct GenerationArgs {
    /// Use the English template and suppress Chinese tokens.
    #[arg(long)]
    pub english: bool,
    /// Most new tokens.
    #[arg(long, default_value_t = 512)]
    pub max_new_tokens: usize,
    /// Most tokens of prompt + answer (never more than the model's `max_sequence_length`).
    #[arg(long, default_value_t = 2048)]
    pub max_length: usize,
    /// Take the most likely token each step instead of sampling.
    #[arg(long)]
    pub greedy: bool,
    /// Sampling temperature.
    #[arg(long, default_value_t = 0.8)]
    pub temperature: f32,
    /// Nucleus sampling threshold.
    #[arg(long, default_value_t = 0.4)]
    pub top_p: f32,
    /// Keep only the k most likely tokens (0: all).
    #[arg(long, default_value_t = 100)]
    pub top_k: usize,
    /// Divide logits of already generated tokens by this.
    #[arg(long, default_value_t = 1.2)]
    pub repetition_penalty: f32,
    /// Beam search with this many beams (deterministic; good for captions). 1: no beam search.
    #[arg(long, default_value_t = 1, value_parser = at_least_one)]
    pub beams: usize,
    /// Random seed for sampling.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

/// Parses an environment flag as Hugging Face does: `1`, `true`, `yes`, `on` (any case) are
/// true; `0`, `false`, `no`, `off` and the empty string are false.
fn truthy(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" | "y" | "t" => Ok(true),
        "" | "0" | "false" | "no" | "off" | "n" | "f" => Ok(false),
        other => Err(format!(
            "`{other}` is not 1/0, true/false, yes/no or on/off"
        )),
    }
}

/// Parses a count that must be 1 or more.
fn at_least_one(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

impl GenerationArgs {
    /// The generation config these flags describe.
    pub fn config(&self) -> GenerationConfig {
        GenerationConfig {
            max_new_tokens: self.max_new_tokens,
            max_length: self.max_length,
            do_sample: !self.greedy && self.beams <= 1,
            temperature: self.temperature,
            top_p: self.top_p,
            top_k: self.top_k,
            repetition_penalty: self.repetition_penalty,
            num_beams: self.beams,
            seed: self.seed,
        }
    }

    /// A question with these settings.
    pub fn question(&self, query: Option<String>) -> Question {
        Question {
            query,
            english: self.english,
            generation: self.config(),
        }
    }
}
