//! The memory plan of a fine-tuning run: what the weights, the optimiser and the activations
//! take, computed from the configuration alone (no weights are read), and the measured peak.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use candle_core::DType;
use serde::Serialize;

use super::base::{BaseWeights, FrozenForm};
use super::config::FinetuneConfig;
use crate::config::VisualGlmConfig;
use crate::error::{Result, VisualGlmError};
use crate::param_shapes::expected_parameters;

/// Rows of logits the chunked cross-entropy holds at once (see `visualglm_train`).
const CE_CHUNK_BYTES: u64 = 64 << 20;

/// Parameter and byte counts of a group of tensors.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Footprint {
    /// Number of values.
    pub params: u64,
    /// Bytes they take.
    pub bytes: u64,
}

impl Footprint {
    fn add(&mut self, params: u64, bytes: u64) {
        self.params += params;
        self.bytes += bytes;
    }
}

/// What a run needs in memory, before it starts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MemoryPlan {
    /// Trainable tensors (f32), LoRA adapters included.
    pub trainable: Footprint,
    /// Frozen tensors, by how they are held (`f32`, `f16`, `q4_0`, …).
    pub frozen: BTreeMap<String, Footprint>,
    /// Gradients of the trainable tensors plus AdamW's two moments (f32).
    pub optimizer_bytes: u64,
    /// Estimated activations kept for the backward pass of one micro-batch.
    pub activation_bytes: u64,
    /// Tokens per micro-batch the estimate assumes (batch × padded length).
    pub tokens: u64,
}

impl MemoryPlan {
    /// Bytes of every frozen tensor.
    pub fn frozen_bytes(&self) -> u64 {
        self.frozen.values().map(|f| f.bytes).sum()
    }

    /// Weights, optimiser and activations together.
    pub fn total_bytes(&self) -> u64 {
        self.trainable.bytes + self.frozen_bytes() + self.optimizer_bytes + self.activation_bytes
    }
}

fn gib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 30) as f64
}

impl fmt::Display for MemoryPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "memory plan (estimate):")?;
        writeln!(
            f,
            "  trainable   {:>14} params  {:>8.3} GiB (f32)",
            self.trainable.params,
            gib(self.trainable.bytes)
        )?;
        for (form, fp) in &self.frozen {
            writeln!(
                f,
                "  frozen {form:<5}{:>14} params  {:>8.3} GiB",
                fp.params,
                gib(fp.bytes)
            )?;
        }
        writeln!(
            f,
            "  gradients + AdamW moments        {:>8.3} GiB",
            gib(self.optimizer_bytes)
        )?;
        writeln!(
            f,
            "  activations ({} tokens)       {:>8.3} GiB",
            self.tokens,
            gib(self.activation_bytes)
        )?;
        write!(
            f,
            "  total                            {:>8.3} GiB",
            gib(self.total_bytes())
        )
    }
}

/// The configuration of the model at `model` (a directory's `config.json` or
/// `model_config.json`, or the one beside a checkpoint file), without reading weights.
pub fn model_config(model: &Path) -> Result<VisualGlmConfig> {
    let dir = crate::model_dir::folder_of(model);
    for name in ["config.json", "model_config.json"] {
        let path = dir.join(name);
        if path.is_file() {
            return Ok(VisualGlmConfig::from_file(&path)?.0);
        }
    }
    Err(VisualGlmError::Input(format!(
        "{}: no config.json or model_config.json to plan from",
        dir.display()
    )))
}

/// Bytes of one value of `dtype`.
fn dtype_bytes(dtype: DType) -> u64 {
    dtype.size_in_bytes() as u64
}

/// The memory plan of `cfg` over a model of `config` whose frozen weights are held as `base`.
pub fn memory_plan(
    cfg: &FinetuneConfig,
    config: &VisualGlmConfig,
    base: &BaseWeights,
) -> Result<MemoryPlan> {
    let mut trainable = Footprint::default();
    let mut frozen: BTreeMap<String, Footprint> = BTreeMap::new();
    let mut shapes = expected_parameters(config)?;
    shapes.sort();
    let lora = cfg.lora_config();
    for (name, shape) in &shapes {
        let n: u64 = shape.iter().map(|&d| d as u64).product();
        if cfg.trainable.iter().any(|p| name.starts_with(p.as_str())) {
            trainable.add(n, 4 * n);
            continue;
        }
        if let (Some(lora), Some(target)) = (&lora, name.strip_suffix(".weight")) {
            if lora.rule_for(target).is_some() && shape.len() == 2 {
                // A_k [rank, in] per partition, B_k [out/parts, rank].
                let parts = lora.rule_for(target).map_or(1, |r| r.partitions) as u64;
                let (out, inp) = (shape[0] as u64, shape[1] as u64);
                let r = lora.rank as u64;
                let p = parts * r * inp + r * out;
                trainable.add(p, 4 * p);
            }
        }
        let (form, bytes) = match base.frozen_form(name, shape) {
            FrozenForm::Dense(d) => (format!("{d:?}").to_lowercase(), n * dtype_bytes(d)),
            FrozenForm::Quantized(q) => (
                visualglm_nn::quant::dtype_name(q).to_string(),
                n / q.block_size() as u64 * q.type_size() as u64,
            ),
        };
        frozen.entry(form).or_default().add(n, bytes);
    }
    let g = &config.glm;
    let seq = (cfg.max_source_length + cfg.max_target_length) as u64;
    let tokens = cfg.batch_size as u64 * seq;
    let (h, heads, layers) = (
        g.hidden_size as u64,
        g.num_attention_heads as u64,
        g.num_layers as u64,
    );
    // Kept per token by one ChatGLM block's backward (f32): the norms, QKV, rotated Q and K,
    // attention context and outputs (≈ 12·h), the MLP's up projection, GELU and its inputs
    // (≈ 14·h), and the attention probabilities and scores (2·heads·seq).
    let per_layer = tokens * (26 * h + 2 * heads * seq) * 4;
    let kept = if cfg.checkpoint_activations {
        // Each block's input and output, plus one block's internals during its recomputation.
        layers * tokens * h * 4 * 2 + per_layer
    } else {
        layers * per_layer
    };
    let activation_bytes = kept + CE_CHUNK_BYTES * 3 + tokens * h * 4 * 4;
    Ok(MemoryPlan {
        trainable,
        frozen,
        optimizer_bytes: 3 * trainable.bytes,
        activation_bytes,
        tokens,
    })
}

/// The process's peak resident memory so far (`VmHWM`, Linux) in MiB; `None` elsewhere.
pub fn peak_rss_mib() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::GgmlDType;

    /// The release's LoRA recipe on the full model: 28 layers × (3 + 1) adapters on layers 0
    /// and 14, the frozen model in f16 or with 4-bit ChatGLM linears.
    #[test]
    fn plans_the_release_lora_recipe() {
        let config = VisualGlmConfig::visualglm_6b();
        let cfg = FinetuneConfig {
            trainable: vec![],
            lora_rank: 10,
            lora_alpha: 1.0,
            lora_layers: Some(vec![0, 14]),
            checkpoint_activations: true,
            ..FinetuneConfig::default()
        };
        let f16 = BaseWeights {
            dtype: DType::F16,
            quantize: None,
        };
        let plan = memory_plan(&cfg, &config, &f16).unwrap();
        // qkv: 3 partitions × 10 × 4096 + 10 × 12288; dense: 10 × 4096 + 10 × 4096; 2 layers.
        let per_layer = 3 * 10 * 4096 + 10 * 12288 + 2 * 10 * 4096;
        assert_eq!(plan.trainable.params, 2 * per_layer);
        let total: u64 = expected_parameters(&config)
            .unwrap()
            .iter()
            .map(|(_, s)| s.iter().product::<usize>() as u64)
            .sum();
        let frozen_params: u64 = plan.frozen.values().map(|f| f.params).sum();
        assert_eq!(frozen_params, total);
        // Nearly everything in f16: between 2 and 2.01 bytes a value.
        let per_value = plan.frozen_bytes() as f64 / total as f64;
        assert!((2.0..2.01).contains(&per_value), "{per_value}");
        let q4 = BaseWeights {
            dtype: DType::F16,
            quantize: Some(GgmlDType::Q4_0),
        };
        let plan_q4 = memory_plan(&cfg, &config, &q4).unwrap();
        assert!(plan_q4.frozen.contains_key("q4_0"));
        assert!(plan_q4.frozen_bytes() < plan.frozen_bytes() / 2);
        let plain = FinetuneConfig {
            checkpoint_activations: false,
            ..cfg
        };
        let without = memory_plan(&plain, &config, &f16).unwrap();
        assert!(without.activation_bytes > 5 * plan.activation_bytes);
        let text = plan.to_string();
        assert!(
            text.contains("frozen f16") && text.contains("total"),
            "{text}"
        );
    }
}
