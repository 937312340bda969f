//! [`beam_search`]: length-normalised beam search over one prompt.

use std::ops::Range;

use candle_core::Tensor;
use visualglm_language::positions::position_at;
use visualglm_language::{EmbedSpan, GenerationConfig, Sampler};

use super::request::token_budget;
use crate::error::Result;
use crate::model::VisualGlm;

/// Beam search over one prompt (and its images, see [`GenRequest::images`](super::GenRequest)): keeps `cfg.num_beams` hypotheses,
/// scores them by summed log-probability divided by length, and returns the best one
/// (without `<eop>`). With one beam it equals greedy decoding.
///
/// Each step extends every live hypothesis by its `2·beams` most likely tokens (after the
/// repetition penalty and the invalid ranges of [`Sampler::adjust`]) and keeps the `beams`
/// best by summed log-probability. A hypothesis that takes `<eop>` is finished: its score
/// counts the `<eop>` log-probability, its length does not (a length of 0 counts as 1).
/// Impossible extensions (log-probability −∞, e.g. invalid ids) are never kept. The search
/// stops when `beams` hypotheses have finished, none is live, or the token budget is spent;
/// the live ones then compete with the finished ones.
pub fn beam_search(
    model: &VisualGlm,
    ids: &[u32],
    images: &[EmbedSpan],
    cfg: &GenerationConfig,
    invalid: &[Range<usize>],
) -> Result<Vec<u32>> {
    let beams = cfg.num_beams.max(1);
    let budget = token_budget(model, ids.len(), cfg)?;
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
    cache.expect_positions(ids.len() + budget - 1);
    let (context_len, gmask_index) = model.prompt_layout(ids);
    let hidden = model.prompt_hidden_batch(ids, images, 1, &mut cache)?;
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
            if next_alive.len() == beams || score == f64::NEG_INFINITY {
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
