//! Weight-only quantization of VisualGLM's language model (GGML block types via candle's
//! `QMatMul`), and the `--quantize` value parser.
//!
//! As in the release's HF path (spec §9), only ChatGLM's per-layer `query_key_value`, `dense`,
//! `dense_h_to_4h` and `dense_4h_to_h` weights are quantized by default; `lm_head` and the
//! word embeddings optionally ([`QuantizeOptions`]). When both are asked for and `lm_head` is
//! tied to the embeddings (HF layout), the table is quantized once and shared, as chatglm.cpp
//! stores it. LayerNorms, biases, the ViT, the Q-Former and `glm_proj` stay dense. A weight whose input width is not a multiple of the type's block size (32, or
//! 256 for K-quants) falls back per [`visualglm_nn::quant::fit_dtype`] (K-quant → legacy
//! type of about the same size; dense when even 32 does not divide it), with a warning.

use candle_core::quantized::GgmlDType;
use visualglm_nn::quant::{dtype_name, parse_dtype, QUANT_TYPES};

use crate::error::{Result, VisualGlmError};
use crate::model::VisualGlm;

/// What to quantize besides the GLM layer weights (options of
/// [`VisualGlm::quantize_language`]); the default is the release's choice, layers only.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QuantizeOptions {
    /// Also quantize `lm_head` (the release keeps it in fp16).
    pub lm_head: bool,
    /// Also quantize the word-embedding table (lookups dequantize only the rows they need).
    /// With `lm_head` and a tied `lm_head` (same values), one quantized tensor serves both.
    pub embeddings: bool,
}

/// Per-weight result of a quantization: canonical weight name and the type used (`None`:
/// left dense because no type fits its width).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QuantizeReport {
    /// `(weight name, type used)` in model order (GLM layers, then the word embeddings and
    /// `lm_head` when asked for).
    pub weights: Vec<(String, Option<GgmlDType>)>,
    /// `lm_head` and the word embeddings share one quantized tensor.
    pub lm_head_tied: bool,
}

impl QuantizeReport {
    /// One line about the weights that did not get `wanted` (see
    /// [`visualglm_nn::quant::fallback_summary`]), or `None`.
    pub fn fallbacks(&self, wanted: GgmlDType) -> Option<String> {
        visualglm_nn::quant::fallback_summary(wanted, self.weights.iter().map(|(_, d)| d))
    }

    /// One line: how many weights got each type.
    pub fn summary(&self) -> String {
        let mut counts: Vec<(&'static str, usize)> = Vec::new();
        for (_, d) in &self.weights {
            let n = d.map(dtype_name).unwrap_or("dense");
            match counts.iter_mut().find(|(k, _)| *k == n) {
                Some((_, c)) => *c += 1,
                None => counts.push((n, 1)),
            }
        }
        let s = counts
            .iter()
            .map(|(k, c)| format!("{c}×{k}"))
            .collect::<Vec<_>>()
            .join(", ");
        if self.lm_head_tied {
            format!("{s} (lm_head shares the embedding table)")
        } else {
            s
        }
    }
}

/// Parses a `--quantize` value: `q8_0`, `q4_0`, `q4_1`, `q5_0`, `q5_1`, `q8_1`, `q2k`, `q3k`,
/// `q4k`, `q5k` or `q6k` (case-insensitive; `q4_k` style accepted).
pub fn parse_quantize_type(s: &str) -> Result<GgmlDType> {
    parse_dtype(s).ok_or_else(|| {
        let names: Vec<&str> = QUANT_TYPES.iter().map(|(n, _)| *n).collect();
        VisualGlmError::Input(format!(
            "unknown quantization type `{s}`: use one of {}",
            names.join(", ")
        ))
    })
}

impl VisualGlm {
    /// Quantizes the GLM layer weights to `dtype` and, as `opts` says, `lm_head` and/or the
    /// word embeddings too (a tied `lm_head` shares the quantized table, see
    /// [`QuantizeOptions::embeddings`]). The default options are the release's HF behaviour:
    /// `lm_head`, embeddings, ViT, Q-Former and `glm_proj` stay in the run dtype.
    pub fn quantize_language(
        &mut self,
        dtype: GgmlDType,
        opts: &QuantizeOptions,
    ) -> Result<QuantizeReport> {
        let glm = self.language_model_mut();
        let mut weights = glm.quantize(dtype)?;
        if opts.embeddings {
            weights.extend(glm.quantize_embeddings(dtype, opts.lm_head)?);
        } else if opts.lm_head {
            let d = glm.quantize_lm_head(dtype)?;
            weights.push(("lm_head.weight".to_string(), d));
        }
        let report = QuantizeReport {
            weights,
            lm_head_tied: glm.lm_head_shares_embeddings(),
        };
        if let Some(line) = report.fallbacks(dtype) {
            tracing::warn!("{line}");
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_types() {
        assert_eq!(parse_quantize_type("Q4K").unwrap(), GgmlDType::Q4K);
        assert_eq!(parse_quantize_type("q8_0").unwrap(), GgmlDType::Q8_0);
        let err = parse_quantize_type("int4").unwrap_err().to_string();
        assert!(err.contains("q4k") && err.contains("int4"), "{err}");
    }

    #[test]
    fn summarizes() {
        let r = QuantizeReport {
            weights: vec![
                ("a".into(), Some(GgmlDType::Q4K)),
                ("b".into(), Some(GgmlDType::Q4_0)),
                ("c".into(), Some(GgmlDType::Q4K)),
                ("d".into(), None),
            ],
            lm_head_tied: false,
        };
        assert_eq!(r.summary(), "2×q4k, 1×q4_0, 1×dense");
        let line = r.fallbacks(GgmlDType::Q4K).unwrap();
        assert!(line.starts_with("2 weight(s) could not take q4k"), "{line}");
        assert!(line.contains("1×q4_0, 1×dense"), "{line}");
        assert_eq!(
            r.fallbacks(GgmlDType::Q8_0).unwrap().split(' ').next(),
            Some("4")
        );
        let all = QuantizeReport {
            weights: vec![("a".into(), Some(GgmlDType::Q4K))],
            lm_head_tied: false,
        };
        assert_eq!(all.fallbacks(GgmlDType::Q4K), None);
    }
}
