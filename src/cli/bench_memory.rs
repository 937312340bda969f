//! The memory side of `visualglm bench`: the cost of a KV-cache append, and the
//! memory-bandwidth roofline of decode. A decode step reads every
//! GLM layer weight and `lm_head` once, so it cannot take less than their bytes over the
//! machine's read bandwidth. The bench measures that bandwidth itself (a parallel sum over a
//! buffer far larger than the caches, on rayon's pool: the threads decode runs on) and
//! reports each decode time as a percentage of that floor; no other runtime is needed.

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use rayon::prelude::*;
use visualglm::{VisualGlm, VisualGlmConfig};

/// Bytes the bandwidth probe reads per pass (512 MiB: far past any CPU cache).
const PROBE_BYTES: usize = 512 << 20;
/// Timed passes of the probe (after one that touches the pages); the fastest counts.
const PROBE_PASSES: usize = 5;
/// `u64` words per rayon task of the probe (1 MiB).
const PROBE_CHUNK_WORDS: usize = (1 << 20) / 8;

/// The read bandwidth of this machine in GB/s (1e9 bytes per second) with rayon's threads:
/// the fastest of [`PROBE_PASSES`] parallel passes summing a 512 MiB buffer.
pub(super) fn read_bandwidth_gb_per_s() -> f64 {
    let words: Vec<u64> = (0..PROBE_BYTES / 8)
        .into_par_iter()
        .map(|i| i as u64)
        .collect();
    let pass = || {
        words
            .par_chunks(PROBE_CHUNK_WORDS)
            .map(|c| c.iter().fold(0u64, |a, &w| a ^ w))
            .reduce(|| 0, |a, b| a ^ b)
    };
    std::hint::black_box(pass());
    let mut best = f64::INFINITY;
    for _ in 0..PROBE_PASSES {
        let t = Instant::now();
        std::hint::black_box(pass());
        best = best.min(t.elapsed().as_secs_f64());
    }
    PROBE_BYTES as f64 / best / 1e9
}

/// Bytes a decode step reads from the language model's weights: `(per GLM layer, lm_head)`,
/// the layer figure averaged over the layers (each layer's four linears, base and bias, as
/// stored: quantized blocks or dense elements).
pub(super) fn decode_weight_bytes(model: &mut VisualGlm) -> (f64, f64) {
    let glm = model.language_model_mut();
    let layers = glm.config().num_layers.max(1) as f64;
    let lm_head = glm.lm_head().weight_bytes() as f64;
    let all: usize = glm
        .named_linears_mut(false)
        .iter()
        .map(|(_, l)| l.weight_bytes())
        .sum();
    (all as f64 / layers, lm_head)
}

/// The roofline rows for measured decode times: the bandwidth, the weight bytes, and each
/// time's share of its floor (`100 × bytes / bandwidth / time`), per GLM layer, for
/// `lm_head` and for the 28-layer estimate.
pub(super) fn rows(
    bandwidth_gb_per_s: f64,
    (layer_bytes, head_bytes): (f64, f64),
    layer_ms: f64,
    head_ms: f64,
) -> Vec<(String, f64, &'static str)> {
    let floor_ms = |bytes: f64| bytes / (bandwidth_gb_per_s * 1e9) * 1e3;
    let pct = |bytes: f64, ms: f64| 100.0 * floor_ms(bytes) / ms;
    let mib = |bytes: f64| bytes / f64::from(1u32 << 20);
    let full_bytes = 28.0 * layer_bytes + head_bytes;
    vec![
        ("read_bandwidth_gb_per_s".into(), bandwidth_gb_per_s, "GB/s"),
        (
            "decode_weight_mib_per_glm_layer".into(),
            mib(layer_bytes),
            "MiB",
        ),
        ("decode_weight_mib_lm_head".into(), mib(head_bytes), "MiB"),
        (
            "decode_glm_layer_roofline_pct".into(),
            pct(layer_bytes, layer_ms),
            "%",
        ),
        (
            "decode_lm_head_roofline_pct".into(),
            pct(head_bytes, head_ms),
            "%",
        ),
        (
            "decode_28_layers_roofline_pct".into(),
            pct(full_bytes, 28.0 * layer_ms + head_ms),
            "%",
        ),
    ]
}

/// Best time of one decode-step KV-cache append (keys and values of one layer) after
/// `past` cached positions.
pub(super) fn kv_append_ms(
    cfg: &VisualGlmConfig,
    dtype: DType,
    past: usize,
) -> anyhow::Result<f64> {
    let g = &cfg.glm;
    let (h, d) = (g.num_attention_heads, g.head_dim());
    let dev = Device::Cpu;
    let mut cache = visualglm_language::KvCache::new(1);
    let init = Tensor::zeros((1, h, past, d), dtype, &dev)?;
    cache.append(0, &init, &init)?;
    let step = Tensor::zeros((1, h, 1, d), dtype, &dev)?;
    let mut v = Vec::new();
    for _ in 0..8 {
        let t = Instant::now();
        cache.append(0, &step, &step)?;
        v.push(t.elapsed().as_secs_f64() * 1e3);
    }
    Ok(v.iter().copied().fold(f64::INFINITY, f64::min))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_time_at_the_floor_is_100_percent() {
        // 1 GB/s; a layer of 1e6 bytes takes at least 1 ms, lm_head of 2e6 bytes 2 ms.
        let r = rows(1.0, (1e6, 2e6), 2.0, 2.0);
        let get = |k: &str| r.iter().find(|(n, _, _)| n == k).map(|(_, v, _)| *v);
        assert_eq!(get("decode_glm_layer_roofline_pct"), Some(50.0));
        assert_eq!(get("decode_lm_head_roofline_pct"), Some(100.0));
        // 28 layers + head: 30e6 bytes = 30 ms at best, measured 58 ms.
        let full = get("decode_28_layers_roofline_pct").unwrap_or_default();
        assert!((full - 100.0 * 30.0 / 58.0).abs() < 1e-9, "{full}");
    }

    #[test]
    fn the_probe_measures_a_positive_finite_bandwidth() {
        let bw = read_bandwidth_gb_per_s();
        assert!(bw.is_finite() && bw > 0.1, "{bw}");
    }
}
