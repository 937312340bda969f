//! Flags shared by the commands that load a model and generate text.

use std::path::PathBuf;

use anyhow::Context;
use visualglm::defaults::ModelDefaults;
use visualglm::pipeline::{Captioner, CaptionerOptions, Question};
use visualglm::quantize::QuantizeOptions;
use visualglm::LoadOptions;
use visualglm_language::GenerationConfig;

/// Where the model is and how to run it.
#[derive(clap::Args, Debug, Clone)]
pub struct ModelArgs {
    #[command(flatten)]
    pub source: ModelSource,
    #[command(flatten)]
    pub alloc: AllocArgs,
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
    /// Keep encoded images (32 embeddings each, a SHA-256 of their pixels as the key) in an
    /// LRU cache of this many MiB, so a repeated image skips the encoder; 0: off. On a GPU
    /// the cache is GPU memory.
    #[arg(long, default_value_t = 256, value_name = "MIB")]
    pub image_cache_mb: usize,
}

/// How a model named on the command line is found.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct HubArgs {
    /// Never touch the network: a hub id must already be in the cache. `HF_HUB_OFFLINE`
    /// takes 1/0, true/false, yes/no, on/off (empty: unset), as Hugging Face documents.
    #[arg(long, env = "HF_HUB_OFFLINE", value_parser = visualglm::hub::parse_flag)]
    pub offline: bool,
}

impl HubArgs {
    /// The local path of `spec`: a path as given (a training run directory: its exported
    /// model), or a hub id's cached snapshot, downloaded first unless offline.
    pub fn resolve(&self, spec: &str) -> anyhow::Result<PathBuf> {
        Ok(visualglm::hub::resolve_model(spec, self.offline)?)
    }
}

/// How the weights' memory is allocated (commands that run a model).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct AllocArgs {
    /// Keep large buffers (the weights) on ordinary 4 KiB pages instead of asking Linux for
    /// transparent huge pages, which make CPU decoding faster.
    #[arg(long)]
    pub no_huge_pages: bool,
}

impl AllocArgs {
    /// Applies the choice; call before the weights are allocated.
    pub fn apply(&self) {
        if self.no_huge_pages {
            visualglm_alloc::set_huge_pages(false);
        }
    }
}

/// The model a command reads (`-m`/`--model`, `VISUALGLM_MODEL`, hub ids).
#[derive(clap::Args, Debug, Clone)]
pub struct ModelSource {
    /// Model: a local directory (HF shards, SAT, safetensors), a weights file, or a hub id
    /// such as THUDM/visualglm-6b (downloaded into the Hugging Face cache).
    #[arg(long, short = 'm', env = "VISUALGLM_MODEL")]
    pub model: String,
    #[command(flatten)]
    pub hub: HubArgs,
}

impl ModelSource {
    /// The model's local path (see [`HubArgs::resolve`]).
    pub fn resolve(&self) -> anyhow::Result<PathBuf> {
        self.hub.resolve(&self.model)
    }
}

impl ModelArgs {
    /// The model's local path (see [`HubArgs::resolve`]).
    pub fn resolve(&self) -> anyhow::Result<PathBuf> {
        self.source.resolve()
    }

    /// The ITC heads file: `explicit`, else `itc.safetensors` beside the model (written by a
    /// training run with `itc_weight` > 0); an error naming it when it is not there.
    pub fn itc_path(&self, explicit: Option<&std::path::Path>) -> anyhow::Result<PathBuf> {
        let path = match explicit {
            Some(p) => p.to_path_buf(),
            None => {
                let model = self.resolve()?;
                visualglm::model_dir::folder_of(&model).join(visualglm::itc::ITC_FILE)
            }
        };
        anyhow::ensure!(
            path.is_file(),
            "{} not found: this model has no ITC heads (a training run with `itc_weight` > 0 \
             exports them), or pass --itc FILE",
            path.display()
        );
        Ok(path)
    }

    /// Loads the model and its tokenizer.
    pub fn load(&self) -> anyhow::Result<Captioner> {
        self.alloc.apply();
        let model = self.resolve()?;
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
        visualglm_alloc::release_free_memory();
        if self.image_cache_mb > 0 {
            let cache = visualglm::image_cache::ImageCache::with_mib(self.image_cache_mb);
            captioner.set_image_cache(Some(std::sync::Arc::new(cache)));
        }
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

/// Decoding flags. Each one left out takes the model's default: its `generation_config.json`,
/// else the release demo's (shown in brackets).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct GenerationArgs {
    /// Use the English template and suppress Chinese tokens.
    #[arg(long, conflicts_with = "chinese")]
    pub english: bool,
    /// Use the Chinese template (for a model whose default is English).
    #[arg(long)]
    pub chinese: bool,
    /// Most new tokens [512].
    #[arg(long)]
    pub max_new_tokens: Option<usize>,
    /// Most tokens of prompt + answer, never more than the model's `max_sequence_length` [2048].
    #[arg(long)]
    pub max_length: Option<usize>,
    /// Take the most likely token each step instead of sampling.
    #[arg(long, conflicts_with = "sample")]
    pub greedy: bool,
    /// Sample (for a model whose default is greedy).
    #[arg(long)]
    pub sample: bool,
    /// Sampling temperature [0.8].
    #[arg(long)]
    pub temperature: Option<f32>,
    /// Nucleus sampling threshold [0.4].
    #[arg(long)]
    pub top_p: Option<f32>,
    /// Keep only the k most likely tokens, 0: all [100].
    #[arg(long)]
    pub top_k: Option<usize>,
    /// Divide logits of already generated tokens by this [1.2].
    #[arg(long)]
    pub repetition_penalty: Option<f32>,
    /// Beam search with this many beams (deterministic; good for captions); 1: none [1].
    #[arg(long, value_parser = at_least_one)]
    pub beams: Option<usize>,
    /// Random seed for sampling [42].
    #[arg(long)]
    pub seed: Option<u64>,
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
    /// The generation config: `defaults` with these flags over them.
    pub fn config(&self, defaults: &ModelDefaults) -> anyhow::Result<GenerationConfig> {
        let mut g = defaults.generation.clone();
        fn set<T: Copy>(slot: &mut T, flag: Option<T>) {
            if let Some(v) = flag {
                *slot = v;
            }
        }
        set(&mut g.max_new_tokens, self.max_new_tokens);
        set(&mut g.max_length, self.max_length);
        set(&mut g.top_k, self.top_k);
        set(&mut g.num_beams, self.beams);
        set(&mut g.seed, self.seed);
        set(&mut g.temperature, self.temperature);
        set(&mut g.top_p, self.top_p);
        set(&mut g.repetition_penalty, self.repetition_penalty);
        if self.greedy {
            g.do_sample = false;
        } else if self.sample {
            g.do_sample = true;
        }
        if g.num_beams > 1 {
            g.do_sample = false;
        }
        visualglm::defaults::check_generation(&g).map_err(anyhow::Error::msg)?;
        Ok(g)
    }

    /// Whether to use the English template: the flags, else the model's default.
    pub fn english(&self, defaults: &ModelDefaults) -> bool {
        if self.english {
            true
        } else if self.chinese {
            false
        } else {
            defaults.english
        }
    }

    /// A question with these settings over the model's `defaults`; `query` `None` asks the
    /// model's default question.
    pub fn question(
        &self,
        defaults: &ModelDefaults,
        query: Option<String>,
    ) -> anyhow::Result<Question> {
        let english = self.english(defaults);
        // The model's own question is in its own language; in the other, ask the release's.
        let query = match query {
            None if english != defaults.english => None,
            query => query.or_else(|| defaults.question.clone()),
        };
        Ok(Question {
            query,
            english,
            generation: self.config(defaults)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        generation: GenerationArgs,
    }

    fn args(flags: &[&str]) -> GenerationArgs {
        let argv = std::iter::once("x").chain(flags.iter().copied());
        Cli::try_parse_from(argv).unwrap().generation
    }

    fn greedy_english() -> ModelDefaults {
        ModelDefaults {
            generation: GenerationConfig::greedy(),
            english: true,
            question: Some("Describe the image.".into()),
        }
    }

    #[test]
    fn no_flags_take_the_models_defaults() {
        let d = greedy_english();
        let q = args(&[]).question(&d, None).unwrap();
        assert_eq!(q, d.question(None));
        let release = ModelDefaults::default();
        assert_eq!(
            args(&[]).question(&release, None).unwrap(),
            release.question(None)
        );
    }

    #[test]
    fn flags_override_the_models_defaults() {
        let d = greedy_english();
        let q = args(&[
            "--sample",
            "--temperature",
            "0.5",
            "--chinese",
            "--top-k",
            "7",
        ])
        .question(&d, None)
        .unwrap();
        assert!(q.generation.do_sample && !q.english);
        assert_eq!((q.generation.temperature, q.generation.top_k), (0.5, 7));
        // The model's English question is not asked in Chinese: the release's is.
        assert_eq!(q.text(), visualglm::pipeline::DEFAULT_QUERY_ZH);
        let q = args(&["--greedy", "--english", "--beams", "3"])
            .question(&ModelDefaults::default(), Some("What?".into()))
            .unwrap();
        assert!(!q.generation.do_sample && q.english);
        assert_eq!((q.generation.num_beams, q.text()), (3, "What?"));
        assert!(Cli::try_parse_from(["x", "--greedy", "--sample"]).is_err());
        assert!(Cli::try_parse_from(["x", "--english", "--chinese"]).is_err());
        assert!(args(&["--top-p", "0"]).question(&d, None).is_err());
    }
}
