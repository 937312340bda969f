//! [`FinetuneConfig`]: the settings of a fine-tuning run (`run.toml`), and what follows from
//! them alone.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use visualglm_nn::lora::{LoraConfig, TargetRule};
use visualglm_train::labels::PadTo;

use super::base::BaseWeights;
use crate::itc::CaptionLayout;
use crate::lora::recipe::{glm_config, GLM_LAYERS};

/// A fine-tuning run, as read from `run.toml` (every key optional but `data`, `model`, `out`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FinetuneConfig {
    /// Training data: the release's JSON list, JSONL, or COCO captions.
    pub data: PathBuf,
    /// Directory relative image paths resolve against (default: the data file's).
    pub image_root: Option<PathBuf>,
    /// Base checkpoint (any form `visualglm` loads).
    pub model: PathBuf,
    /// Tokenizer file or directory (default: beside the model).
    pub tokenizer: Option<PathBuf>,
    /// Output directory for checkpoints and `metrics.jsonl`.
    pub out: PathBuf,
    /// Name prefixes of the weights that train (always f32).
    pub trainable: Vec<String>,
    /// Dtype of the frozen linear weights and embedding tables: `"f32"`, `"f16"`, or `"bf16"`
    /// (GPU only). Norms, biases, trainable tensors, gradients and AdamW state stay f32.
    pub base_dtype: String,
    /// Hold the frozen ChatGLM layer linears as GGML blocks of this type (`"q8_0"`, `"q4_0"`,
    /// `"q4k"`, … as `--quantize` takes): QLoRA. `None`: dense in `base_dtype`.
    pub base_quantize: Option<String>,
    /// Optimiser updates.
    pub steps: u64,
    /// Examples per micro-batch.
    pub batch_size: usize,
    /// Micro-batches per update.
    pub grad_accum: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Linear warmup steps.
    pub warmup_steps: u64,
    /// Cosine decay ends at `min_lr_ratio · lr`.
    pub min_lr_ratio: f64,
    /// SAT's fine-tune-mode cap: the first `auto_warmup_steps` updates use at most
    /// `auto_warmup_rate · lr` (the release: 100 and 0.05; 0 turns it off).
    pub auto_warmup_steps: u64,
    /// See `auto_warmup_steps`.
    pub auto_warmup_rate: f64,
    /// AdamW weight decay.
    pub weight_decay: f64,
    /// Global gradient-norm clip (`0` disables).
    pub clip: f64,
    /// Seed of the data order.
    pub seed: u64,
    /// Recompute each ChatGLM and ViT block (and Q-Former layer, ViT frozen) in the backward
    /// pass instead of keeping its activations (SAT's `checkpoint_activations`): about one
    /// more forward pass of compute for activation memory of one block's input per layer.
    /// Gradients are unchanged.
    pub checkpoint_activations: bool,
    /// Save a checkpoint every this many updates (and at the end).
    pub save_every: u64,
    /// Checkpoints kept.
    pub keep_last: usize,
    /// Source budget (prompt + 32 image tokens), as the release's `max_source_length`.
    pub max_source_length: usize,
    /// Target budget, as the release's `max_target_length`.
    pub max_target_length: usize,
    /// Pad each micro-batch (training and validation) to its longest example (`"longest"`) or
    /// every example to `max_source_length + max_target_length` as the release
    /// (`"max_length"`). The losses are the same; the longest is cheaper.
    pub pad_to: PadTo,
    /// Use the English template (`Q:…\nA:`).
    pub english: bool,
    /// Skip (and count) malformed data records.
    pub skip_malformed: bool,
    /// GLM-130B embedding gradient shrink α on the word embeddings (e.g. 0.1); `None`: off.
    pub embedding_grad_shrink: Option<f64>,
    /// Held-out data (same formats) for the validation loss.
    pub val_data: Option<PathBuf>,
    /// Compute the validation loss every this many updates (0: only at the end).
    pub val_every: u64,
    /// λ of `AR + λ·ITC`; 0 (the release's recipe) turns the contrastive loss off.
    pub itc_weight: f64,
    /// Width of the ITC projections (BLIP-2: 256).
    pub itc_dim: usize,
    /// Train the ITC heads as a probe on detached image features: the contrastive loss then
    /// trains only the heads and the encoder learns from the AR loss alone (the AR-only
    /// baseline whose retrieval can still be measured).
    pub itc_detach: bool,
    /// How the frozen language model reads a caption for the ITC text feature: `"context"`
    /// (`caption [gMASK] <sop>`, bidirectional) or `"answer"` (`[gMASK] <sop> caption`, causal,
    /// where a model trained only on answers has learned to read text).
    pub itc_caption_layout: CaptionLayout,
    /// Also rank each image against the captions of this many earlier training texts (a text
    /// queue, as in ALBEF/BLIP; 0 = in-batch only, BLIP-2's ITC). Equal captions in the queue
    /// count as positives. The queue is saved with checkpoints.
    pub itc_queue: usize,
    /// Ramp λ linearly from 0 at the first update to `itc_weight` at this update (0 = constant
    /// λ): the encoder first follows the AR loss, and the contrastive term grows later.
    pub itc_ramp_steps: u64,
    /// Rank of trainable LoRA adapters on the ChatGLM `query_key_value` and `dense` linears
    /// (0: no adapters; the release uses 10).
    pub lora_rank: usize,
    /// LoRA alpha; the update is scaled by `lora_alpha / lora_rank` (the release: 1).
    pub lora_alpha: f64,
    /// ChatGLM layers that get adapters (absent: every layer; the release: `[0, 14]`).
    pub lora_layers: Option<Vec<usize>>,
    /// Also adapt the two MLP linears (`dense_h_to_4h`, `dense_4h_to_h`) of those layers.
    pub lora_mlp: bool,
    /// Write the trained model (LoRA merged) to `out/model` at the end, with the tokenizer
    /// and, with ITC, the heads in `out/model/itc.safetensors`.
    pub export: bool,
}

impl FinetuneConfig {
    /// How the frozen weights are held (`base_dtype`, `base_quantize`), checked.
    pub fn base_weights(&self, device: &candle_core::Device) -> crate::Result<BaseWeights> {
        let dtype = if self.base_dtype.trim().eq_ignore_ascii_case("auto") {
            return Err(crate::VisualGlmError::Input(
                "base_dtype must be f32, f16 or bf16".into(),
            ));
        } else {
            crate::runtime::parse_dtype(&self.base_dtype, device)?
        };
        let quantize = self
            .base_quantize
            .as_deref()
            .map(crate::quantize::parse_quantize_type)
            .transpose()?;
        Ok(BaseWeights { dtype, quantize })
    }

    /// The LoRA adapters this run trains (`lora_*` keys): ChatGLM's `query_key_value` and
    /// `dense`, plus its MLP with `lora_mlp`; `None` when `lora_rank` is 0.
    pub fn lora_config(&self) -> Option<LoraConfig> {
        if self.lora_rank == 0 {
            return None;
        }
        let mut config = glm_config(self.lora_rank, self.lora_alpha, self.lora_layers.clone());
        if self.lora_mlp {
            for module in ["mlp.dense_h_to_4h", "mlp.dense_4h_to_h"] {
                config.targets.push(TargetRule::new(
                    GLM_LAYERS,
                    module,
                    1,
                    self.lora_layers.clone(),
                ));
            }
        }
        Some(config)
    }
}

impl Default for FinetuneConfig {
    fn default() -> Self {
        Self {
            data: PathBuf::new(),
            image_root: None,
            model: PathBuf::new(),
            tokenizer: None,
            out: PathBuf::from("runs/finetune"),
            trainable: vec!["image_encoder.glm_proj".into()],
            base_dtype: "f32".into(),
            base_quantize: None,
            steps: 300,
            batch_size: 4,
            grad_accum: 1,
            lr: 1e-4,
            warmup_steps: 6,
            min_lr_ratio: 0.1,
            auto_warmup_steps: 0,
            auto_warmup_rate: 0.05,
            weight_decay: 0.01,
            clip: 0.1,
            seed: 1234,
            checkpoint_activations: false,
            save_every: 100,
            keep_last: 3,
            max_source_length: 64,
            max_target_length: 256,
            pad_to: PadTo::Longest,
            english: false,
            skip_malformed: false,
            embedding_grad_shrink: None,
            val_data: None,
            val_every: 0,
            itc_weight: 0.0,
            itc_dim: 256,
            itc_detach: false,
            itc_caption_layout: CaptionLayout::Context,
            itc_queue: 0,
            itc_ramp_steps: 0,
            lora_rank: 0,
            lora_alpha: 1.0,
            lora_layers: None,
            lora_mlp: false,
            export: true,
        }
    }
}

/// λ of the update after `step` updates: `itc_weight`, ramped over `itc_ramp_steps`.
pub(super) fn itc_lambda(cfg: &FinetuneConfig, step: u64) -> f64 {
    if cfg.itc_ramp_steps == 0 {
        return cfg.itc_weight;
    }
    let progress = (step + 1) as f64 / cfg.itc_ramp_steps as f64;
    cfg.itc_weight * progress.min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pad_to_reads_from_run_toml_and_defaults_to_longest() {
        let cfg: FinetuneConfig = toml::from_str("pad_to = \"max_length\"").unwrap();
        assert_eq!(cfg.pad_to, PadTo::MaxLength);
        let cfg: FinetuneConfig = toml::from_str("pad_to = \"longest\"").unwrap();
        assert_eq!(cfg.pad_to, PadTo::Longest);
        assert_eq!(FinetuneConfig::default().pad_to, PadTo::Longest);
        assert!(toml::from_str::<FinetuneConfig>("pad_to = \"shortest\"").is_err());
    }

    #[test]
    fn itc_lambda_ramps_linearly_then_stays() {
        let cfg = FinetuneConfig {
            itc_weight: 0.1,
            itc_ramp_steps: 4,
            ..FinetuneConfig::default()
        };
        let got: Vec<f64> = (0..6).map(|s| itc_lambda(&cfg, s)).collect();
        let want = [0.025, 0.05, 0.075, 0.1, 0.1, 0.1];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-12, "{got:?}");
        }
        let constant = FinetuneConfig {
            itc_weight: 0.3,
            ..FinetuneConfig::default()
        };
        assert_eq!(itc_lambda(&constant, 0), 0.3);
    }
}
