//! Choosing GGML block types for weight-only quantization of [`Linear`] layers.
//!
//! A GGML type quantizes each row in blocks along the inner (input) dimension: 32 values for
//! `Q4_0`, `Q4_1`, `Q5_0`, `Q5_1`, `Q8_0`, `Q8_1`, 256 for the K-quants (`Q2K`…`Q6K`). A layer
//! whose input width is not a multiple of the block size cannot use that type;
//! [`fit_dtype`] then falls back to the legacy type with the closest number of bits (K-quant
//! → `Q4_0`/`Q5_0`/`Q8_0`), and to no quantization (dense) when even 32 does not divide it.

use candle_core::quantized::GgmlDType;
use candle_core::Result;

use crate::Linear;

/// The GGML types accepted for weight quantization, with their command-line names.
pub const QUANT_TYPES: [(&str, GgmlDType); 11] = [
    ("q8_0", GgmlDType::Q8_0),
    ("q4_0", GgmlDType::Q4_0),
    ("q4_1", GgmlDType::Q4_1),
    ("q5_0", GgmlDType::Q5_0),
    ("q5_1", GgmlDType::Q5_1),
    ("q8_1", GgmlDType::Q8_1),
    ("q2k", GgmlDType::Q2K),
    ("q3k", GgmlDType::Q3K),
    ("q4k", GgmlDType::Q4K),
    ("q5k", GgmlDType::Q5K),
    ("q6k", GgmlDType::Q6K),
];

/// The command-line name of a GGML type (`"q4k"`, `"f16"`, …).
pub fn dtype_name(dtype: GgmlDType) -> &'static str {
    match dtype {
        GgmlDType::F32 => "f32",
        GgmlDType::F16 => "f16",
        GgmlDType::BF16 => "bf16",
        GgmlDType::Q8K => "q8k",
        other => QUANT_TYPES
            .iter()
            .find(|(_, d)| *d == other)
            .map(|(n, _)| *n)
            .unwrap_or("unknown"),
    }
}

/// Parses a name of [`QUANT_TYPES`] (case-insensitive; `q4_k` is accepted for `q4k`).
pub fn parse_dtype(name: &str) -> Option<GgmlDType> {
    let n = name.trim().to_ascii_lowercase().replace("_k", "k");
    QUANT_TYPES.iter().find(|(k, _)| *k == n).map(|(_, d)| *d)
}

/// Whether `dtype` is a K-quant (block of 256).
pub fn is_k_quant(dtype: GgmlDType) -> bool {
    matches!(
        dtype,
        GgmlDType::Q2K
            | GgmlDType::Q3K
            | GgmlDType::Q4K
            | GgmlDType::Q5K
            | GgmlDType::Q6K
            | GgmlDType::Q8K
    )
}

/// One line about the weights that could not take `wanted` because of their width (what they
/// got instead, by type), or `None` when every weight took it; `-v` logs each one.
pub fn fallback_summary<'a>(
    wanted: GgmlDType,
    chosen: impl IntoIterator<Item = &'a Option<GgmlDType>>,
) -> Option<String> {
    let mut counts: Vec<(&'static str, usize)> = Vec::new();
    for d in chosen {
        if *d == Some(wanted) {
            continue;
        }
        let n = d.map(dtype_name).unwrap_or("dense");
        match counts.iter_mut().find(|(k, _)| *k == n) {
            Some((_, c)) => *c += 1,
            None => counts.push((n, 1)),
        }
    }
    if counts.is_empty() {
        return None;
    }
    let total: usize = counts.iter().map(|(_, c)| c).sum();
    let got = counts
        .iter()
        .map(|(k, c)| format!("{c}×{k}"))
        .collect::<Vec<_>>()
        .join(", ");
    Some(format!(
        "{total} weight(s) could not take {} (input width not a multiple of {}): {got} \
         instead (-v lists them)",
        dtype_name(wanted),
        wanted.block_size()
    ))
}

/// The type to use for a weight with input width `in_dim` when `wanted` is asked for:
/// `wanted` when its block size divides `in_dim`, else the legacy 32-block type of about the
/// same size (`Q2K`/`Q3K`/`Q4K` → `Q4_0`, `Q5K` → `Q5_0`, `Q6K`/`Q8K` → `Q8_0`) when 32
/// divides it, else `None` (keep the layer dense).
pub fn fit_dtype(wanted: GgmlDType, in_dim: usize) -> Option<GgmlDType> {
    let fits = |d: GgmlDType| in_dim > 0 && in_dim.is_multiple_of(d.block_size());
    if fits(wanted) {
        return Some(wanted);
    }
    let fallback = match wanted {
        GgmlDType::Q2K | GgmlDType::Q3K | GgmlDType::Q4K => GgmlDType::Q4_0,
        GgmlDType::Q5K => GgmlDType::Q5_0,
        GgmlDType::Q6K | GgmlDType::Q8K => GgmlDType::Q8_0,
        _ => return None,
    };
    fits(fallback).then_some(fallback)
}

/// Quantizes `linear` (named `name` in messages) to the type [`fit_dtype`] picks for `wanted`,
/// logging a warning when it falls back or keeps the layer dense. Returns the type used
/// (`None`: left dense).
pub fn quantize_linear(
    name: &str,
    linear: &mut Linear,
    wanted: GgmlDType,
) -> Result<Option<GgmlDType>> {
    let (_, in_dim) = linear.dims()?;
    if let Some(stored) = linear.quantized_dtype() {
        // Already quantized (e.g. loaded from GGUF): quantizing again would round twice.
        let fits = fit_dtype(wanted, in_dim);
        if fits != Some(stored) {
            candle_core::bail!(
                "{name} is already quantized as {}; it cannot be quantized again to {} \
                 (that would round twice): quantize the f16/f32 checkpoint instead, or drop \
                 --quantize to run it as stored",
                dtype_name(stored),
                dtype_name(wanted)
            );
        }
        return Ok(Some(stored));
    }
    let chosen = fit_dtype(wanted, in_dim);
    match chosen {
        Some(d) if d != wanted => tracing::debug!(
            "{name}: input width {in_dim} is not a multiple of {} ({}); using {} instead",
            wanted.block_size(),
            dtype_name(wanted),
            dtype_name(d)
        ),
        None => tracing::debug!(
            "{name}: input width {in_dim} is not a multiple of {}; left unquantized",
            wanted.block_size()
        ),
        _ => {}
    }
    if let Some(d) = chosen {
        linear
            .quantize(d)
            .map_err(|e| e.context(format!("quantizing {name} to {}", dtype_name(d))))?;
    }
    Ok(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Module, Tensor};
    use visualglm_testing::{max_abs, max_abs_diff};

    #[test]
    fn names_round_trip() {
        for (n, d) in QUANT_TYPES {
            assert_eq!(parse_dtype(n), Some(d));
            assert_eq!(dtype_name(d), n);
        }
        assert_eq!(parse_dtype("Q4_K"), Some(GgmlDType::Q4K));
        assert_eq!(parse_dtype("int4"), None);
    }

    #[test]
    fn fits_block_sizes() {
        assert_eq!(fit_dtype(GgmlDType::Q4K, 4096), Some(GgmlDType::Q4K));
        assert_eq!(fit_dtype(GgmlDType::Q4K, 64), Some(GgmlDType::Q4_0));
        assert_eq!(fit_dtype(GgmlDType::Q6K, 96), Some(GgmlDType::Q8_0));
        assert_eq!(fit_dtype(GgmlDType::Q8_0, 48), None);
        assert_eq!(fit_dtype(GgmlDType::Q8_0, 0), None);
    }

    #[test]
    fn quantized_linear_is_close_to_dense() -> Result<()> {
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 1.0, (48, 64), &dev)?;
        let b = Tensor::randn(0f32, 1.0, 48, &dev)?;
        let x = Tensor::randn(0f32, 1.0, (2, 3, 64), &dev)?;
        let dense = Linear::from_weights(w, Some(b));
        let mut q = dense.clone();
        assert_eq!(
            quantize_linear("t", &mut q, GgmlDType::Q8_0)?,
            Some(GgmlDType::Q8_0)
        );
        assert!(q.weight().is_none());
        let (yd, yq) = (dense.forward(&x)?, q.forward(&x)?);
        assert_eq!(yq.dims(), &[2, 3, 48]);
        let err = max_abs_diff(&yd, &yq);
        let scale = max_abs(&yd);
        assert!(err < 0.02 * scale, "q8_0 error {err} vs scale {scale}");
        // 48 wide input: no 32-block type fits, the layer stays dense.
        let mut odd =
            Linear::from_weights(Tensor::zeros((4, 48), candle_core::DType::F32, &dev)?, None);
        assert_eq!(quantize_linear("odd", &mut odd, GgmlDType::Q4_0)?, None);
        assert!(odd.weight().is_some());
        Ok(())
    }

    #[test]
    fn an_already_quantized_linear_is_not_quantized_again() -> Result<()> {
        let dev = Device::Cpu;
        let mut q = Linear::from_weights(Tensor::randn(0f32, 1.0, (8, 64), &dev)?, None);
        quantize_linear("t", &mut q, GgmlDType::Q4_0)?;
        // The same type reports what the layer holds; another type is refused.
        assert_eq!(
            quantize_linear("t", &mut q, GgmlDType::Q4_0)?,
            Some(GgmlDType::Q4_0)
        );
        let err = quantize_linear("t", &mut q, GgmlDType::Q8_0)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("already quantized as q4_0") && err.contains("q8_0"),
            "{err}"
        );
        assert_eq!(q.quantized_dtype(), Some(GgmlDType::Q4_0));
        Ok(())
    }
}
