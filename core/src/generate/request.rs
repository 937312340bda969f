//! What every decoder shares: one prompt to answer ([`GenRequest`]), its token budget, and
//! what a per-token callback answers ([`Flow`]).

use std::ops::Range;

use candle_core::Tensor;
use visualglm_language::GenerationConfig;

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
    /// Image embeddings `[1, 32, width]`, spliced at `pre_image`.
    pub image: Option<&'a Tensor>,
    /// Index of the first image placeholder.
    pub pre_image: usize,
    /// How to decode this request.
    pub config: &'a GenerationConfig,
    /// Ids this request must never produce.
    pub invalid: &'a [Range<usize>],
}
