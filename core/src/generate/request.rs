//! What every decoder shares: one prompt to answer ([`GenRequest`]), its token budget, and
//! what a per-token callback answers ([`Flow`]).

use std::ops::Range;

use candle_core::DType;
use visualglm_language::{EmbedSpan, GenerationConfig};

use crate::error::{Result, VisualGlmError};
use crate::model::VisualGlm;

/// What the per-step callback tells the generator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Keep going.
    Continue,
    /// Stop now (e.g. the client went away).
    Stop,
}

/// How many new tokens a prompt of `prompt_len` may get from `model` under `cfg`, or an error
/// when the prompt alone does not fit: both `cfg.max_length` and the model's own
/// `max_sequence_length` bound prompt + answer ([`VisualGlm::length_limit`]).
pub fn token_budget(model: &VisualGlm, prompt_len: usize, cfg: &GenerationConfig) -> Result<usize> {
    let limit = model.length_limit(cfg.max_length);
    if prompt_len >= limit {
        let whose = if limit < cfg.max_length {
            "the model's maximum sequence length"
        } else {
            "the maximum length"
        };
        return Err(VisualGlmError::Input(format!(
            "the prompt has {prompt_len} tokens but {whose} is {limit}: shorten the prompt or \
             clear the chat history"
        )));
    }
    Ok(cfg.max_new_tokens.min(limit - prompt_len))
}

/// One prompt to answer in a [`generate_many`](super::generate_many) batch.
#[derive(Debug, Clone)]
pub struct GenRequest<'a> {
    /// Prompt ids, ending with `[gMASK] <sop>`.
    pub ids: &'a [u32],
    /// The prompt's images: `[1, 32, width]` embeddings each, spliced where they start (see
    /// [`PromptInputs::image_spans`](visualglm_language::prompt::PromptInputs::image_spans)).
    pub images: &'a [EmbedSpan],
    /// How to decode this request.
    pub config: &'a GenerationConfig,
    /// Ids this request must never produce.
    pub invalid: &'a [Range<usize>],
}

impl GenRequest<'_> {
    /// Whether `other` asks the same prompt: the same ids and the same images (starts and
    /// embedding values). Such requests (e.g. the `n` samples of one chat request) can share
    /// one prefill.
    pub fn same_prompt(&self, other: &GenRequest<'_>) -> Result<bool> {
        if self.ids != other.ids || self.images.len() != other.images.len() {
            return Ok(false);
        }
        for (a, b) in self.images.iter().zip(other.images) {
            if a.start != b.start || a.embeds.dims() != b.embeds.dims() {
                return Ok(false);
            }
            if a.embeds.id() == b.embeds.id() {
                continue;
            }
            let diff = (a.embeds.to_dtype(DType::F32)? - b.embeds.to_dtype(DType::F32)?)?
                .abs()?
                .max_all()?
                .to_scalar::<f32>()?;
            if diff != 0.0 {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// Which requests run their prefill: the first of each group of [`GenRequest::same_prompt`]
/// requests. Returns their indices and, for every request, the index (into them) of the one
/// whose prefill it copies.
pub(crate) fn prefill_groups(requests: &[&GenRequest<'_>]) -> Result<(Vec<usize>, Vec<u32>)> {
    let mut unique: Vec<usize> = Vec::new();
    let mut source = Vec::with_capacity(requests.len());
    for (i, r) in requests.iter().enumerate() {
        let mut found = None;
        for (k, &u) in unique.iter().enumerate() {
            if requests[u].same_prompt(r)? {
                found = Some(k);
                break;
            }
        }
        let k = match found {
            Some(k) => k,
            None => {
                unique.push(i);
                unique.len() - 1
            }
        };
        source.push(k as u32);
    }
    Ok((unique, source))
}
