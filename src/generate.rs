//! Token generation with the KV cache: greedy and sampled decoding of one prompt for one or
//! many images at once, with a per-step callback for streaming, and beam search.

use std::ops::Range;

use candle_core::Tensor;
use visualglm_language::positions::position_at;
use visualglm_language::{GenerationConfig, Sampler};

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

/// How many new tokens a prompt of `prompt_len` may get under `cfg`, or an error when the
/// prompt alone does not fit `max_length`.
pub fn token_budget(prompt_len: usize, cfg: &GenerationConfig) -> Result<usize> {
    if prompt_len >= cfg.max_length {
        return Err(VisualGlmError::Input(format!(
            "the prompt has {prompt_len} tokens but the maximum length is {}: shorten the \
             prompt or clear the chat history",
            cfg.max_length
        )));
    }
    Ok(cfg.max_new_tokens.min(cfg.max_length - prompt_len))
}

/// Generates answers to one prompt `ids` for each of `B` images (`images` `[B, 32, width]`,
/// spliced at `pre_image`), or for the text alone when `images` is `None` (B = 1).
///
/// Row `i` samples with seed `cfg.seed + i`. `on_step` sees the tokens of every row after each
/// step (finished rows repeat `<eop>`). Returns each row's tokens without the final `<eop>`.
pub fn generate(
    model: &VisualGlm,
    ids: &[u32],
    images: Option<(&Tensor, usize)>,
    cfg: &GenerationConfig,
    invalid: &[Range<usize>],
    on_step: &mut dyn FnMut(&[u32]) -> Flow,
) -> Result<Vec<Vec<u32>>> {
    let budget = token_budget(ids.len(), cfg)?;
    let batch = match images {
        Some((t, _)) => t.dim(0)?,
        None => 1,
    };
    let eos = model.config().glm.eos_id();
    let mut samplers: Vec<Sampler> = (0..batch)
        .map(|i| {
            let c = GenerationConfig {
                seed: cfg.seed.wrapping_add(i as u64),
                ..cfg.clone()
            };
            Sampler::new(c, invalid.to_vec())
        })
        .collect();
    let mut out: Vec<Vec<u32>> = vec![Vec::new(); batch];
    let mut done = vec![false; batch];
    if budget == 0 {
        return Ok(out);
    }
    let glm = model.language_model();
    let mut cache = glm.new_cache();
    let (context_len, gmask_index) = model.prompt_layout(ids);
    let hidden = model.prompt_hidden_batch(ids, images, batch, &mut cache)?;
    let mut logits = glm.logits(&hidden.narrow(1, ids.len() - 1, 1)?)?;
    for step in 0..budget {
        let rows: Vec<Vec<f32>> = logits.squeeze(1)?.to_vec2()?;
        let mut tokens = Vec::with_capacity(batch);
        for (i, row) in rows.iter().enumerate() {
            if done[i] {
                tokens.push(eos);
                continue;
            }
            let t = samplers[i].next_token(row, &out[i]);
            if t == eos {
                done[i] = true;
            } else {
                out[i].push(t);
            }
            tokens.push(t);
        }
        if on_step(&tokens) == Flow::Stop || done.iter().all(|&d| d) || step + 1 == budget {
            break;
        }
        let t = ids.len() + step;
        let (p0, p1) = position_at(t, context_len, gmask_index);
        let pos = Tensor::new(&[[[p0], [p1]]], model.device())?;
        let next = Tensor::new(tokens.as_slice(), model.device())?.unsqueeze(1)?;
        let x = glm.embed(&next)?;
        let hidden = glm.forward_embeds(&x, &pos, None, Some(&mut cache), None)?;
        logits = glm.logits(&hidden)?;
    }
    Ok(out)
}

/// Beam search over one prompt (and at most one image): keeps `cfg.num_beams` hypotheses,
/// scores them by summed log-probability divided by length, and returns the best one
/// (without `<eop>`). With one beam it equals greedy decoding.
pub fn beam_search(
    model: &VisualGlm,
    ids: &[u32],
    image: Option<(&Tensor, usize)>,
    cfg: &GenerationConfig,
    invalid: &[Range<usize>],
) -> Result<Vec<u32>> {
    let beams = cfg.num_beams.max(1);
    let budget = token_budget(ids.len(), cfg)?;
    if budget == 0 {
        return Ok(Vec::new());
    }
    let eos = model.config().glm.eos_id();
    let adjust = Sampler::new(
        GenerationConfig {
            do_sample: false,
            ..cfg.clone()
        },
        invalid.to_vec(),
    );
    let glm = model.language_model();
    let mut cache = glm.new_cache();
    let (context_len, gmask_index) = model.prompt_layout(ids);
    let hidden = model.prompt_hidden_batch(ids, image, 1, &mut cache)?;
    let mut logits = glm.logits(&hidden.narrow(1, ids.len() - 1, 1)?)?;
    // Alive hypotheses: (tokens, summed log-prob). Starts with one empty hypothesis.
    let mut alive: Vec<(Vec<u32>, f64)> = vec![(Vec::new(), 0.0)];
    let mut finished: Vec<(Vec<u32>, f64)> = Vec::new();
    let normalised = |tokens: &[u32], score: f64| score / (tokens.len().max(1) as f64);
    for step in 0..budget {
        let rows: Vec<Vec<f32>> = logits.squeeze(1)?.to_vec2()?;
        let mut candidates: Vec<(usize, u32, f64)> = Vec::new();
        for (b, row) in rows.iter().enumerate() {
            let mut row = row.clone();
            adjust.adjust(&mut row, &alive[b].0);
            let logp = log_softmax(&row);
            let mut idx: Vec<usize> = (0..logp.len()).collect();
            let k = (2 * beams).min(idx.len());
            idx.select_nth_unstable_by(k - 1, |&x, &y| logp[y].total_cmp(&logp[x]));
            for &t in &idx[..k] {
                candidates.push((b, t as u32, alive[b].1 + logp[t]));
            }
        }
        candidates.sort_by(|a, b| b.2.total_cmp(&a.2));
        let mut next_alive: Vec<(Vec<u32>, f64)> = Vec::new();
        let mut parents: Vec<u32> = Vec::new();
        let mut next_tokens: Vec<u32> = Vec::new();
        for (b, t, score) in candidates {
            if next_alive.len() == beams {
                break;
            }
            if t == eos {
                if finished.len() < beams {
                    finished.push((alive[b].0.clone(), score));
                }
                continue;
            }
            let mut tokens = alive[b].0.clone();
            tokens.push(t);
            next_alive.push((tokens, score));
            parents.push(b as u32);
            next_tokens.push(t);
        }
        alive = next_alive;
        if alive.is_empty() || finished.len() >= beams || step + 1 == budget {
            break;
        }
        let parents = Tensor::new(parents.as_slice(), model.device())?;
        cache.select_batch(&parents)?;
        let (p0, p1) = position_at(ids.len() + step, context_len, gmask_index);
        let pos = Tensor::new(&[[[p0], [p1]]], model.device())?;
        let next = Tensor::new(next_tokens.as_slice(), model.device())?.unsqueeze(1)?;
        let hidden = glm.forward_embeds(&glm.embed(&next)?, &pos, None, Some(&mut cache), None)?;
        logits = glm.logits(&hidden)?;
    }
    if finished.len() < beams {
        finished.extend(alive);
    }
    let best = finished
        .into_iter()
        .max_by(|a, b| normalised(&a.0, a.1).total_cmp(&normalised(&b.0, b.1)))
        .map(|(t, _)| t)
        .unwrap_or_default();
    Ok(best)
}

/// `log_softmax` of one row in f64 (so −∞ entries stay −∞).
fn log_softmax(row: &[f32]) -> Vec<f64> {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = row.iter().map(|&l| (l as f64 - max).exp()).sum();
    let lse = max + sum.ln();
    row.iter().map(|&l| l as f64 - lse).collect()
}
