//! Next-token selection with the release's semantics (SAT `BaseStrategy`, spec §6.5):
//! repetition penalty that divides the logits of generated tokens, temperature, invalid id
//! ranges, top-k then top-p (always applied), softmax and a seeded multinomial draw.

use std::ops::Range;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// The logit SAT writes into filtered-out entries (the most negative f16).
const FILTER_VALUE: f32 = -65504.0;

/// How to pick tokens. Defaults are those of the release's demos (`cli_demo.py`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GenerationConfig {
    /// Most new tokens to generate.
    pub max_new_tokens: usize,
    /// Most tokens in prompt + answer (the release's `max_length`, 2048).
    pub max_length: usize,
    /// Sample (true) or take the most likely token (false).
    pub do_sample: bool,
    /// Softmax temperature (0.8).
    pub temperature: f32,
    /// Nucleus threshold (0.4); applied after top-k, always.
    pub top_p: f32,
    /// Keep the k most likely tokens (100); 0 disables.
    pub top_k: usize,
    /// Divide logits of already generated ids by this (1.2); 1 disables.
    pub repetition_penalty: f32,
    /// Beam search width; 1 means no beam search.
    pub num_beams: usize,
    /// Seed of the sampler's random generator (reproducible sampling).
    pub seed: u64,
}

impl Default for GenerationConfig {
    fn default() -> Self {
        Self {
            max_new_tokens: 512,
            max_length: 2048,
            do_sample: true,
            temperature: 0.8,
            top_p: 0.4,
            top_k: 100,
            repetition_penalty: 1.2,
            num_beams: 1,
            seed: 42,
        }
    }
}

impl GenerationConfig {
    /// Greedy decoding without penalties (what `inspect --generate` and captions use).
    pub fn greedy() -> Self {
        Self {
            do_sample: false,
            repetition_penalty: 1.0,
            ..Self::default()
        }
    }
}

/// Applies the release's logit processing and draws tokens.
#[derive(Debug, Clone)]
pub struct Sampler {
    config: GenerationConfig,
    invalid: Vec<Range<usize>>,
    rng: ChaCha8Rng,
}

impl Sampler {
    /// A sampler; `invalid` id ranges are never chosen (ids without a piece, the CJK range in
    /// English mode).
    pub fn new(config: GenerationConfig, invalid: Vec<Range<usize>>) -> Self {
        let rng = ChaCha8Rng::seed_from_u64(config.seed);
        Self {
            config,
            invalid,
            rng,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &GenerationConfig {
        &self.config
    }

    /// Repetition penalty, temperature and invalid ranges, in place (steps 1–4 of §6.5).
    pub fn adjust(&self, logits: &mut [f32], generated: &[u32]) {
        for l in logits.iter_mut() {
            if l.is_nan() {
                *l = FILTER_VALUE;
            }
        }
        let penalty = self.config.repetition_penalty;
        if penalty != 1.0 && penalty > 0.0 {
            let mut seen = vec![false; logits.len()];
            for &t in generated {
                let t = t as usize;
                if t < logits.len() && !seen[t] {
                    seen[t] = true;
                    logits[t] /= penalty;
                }
            }
        }
        if self.config.do_sample && self.config.temperature > 0.0 && self.config.temperature != 1.0
        {
            for l in logits.iter_mut() {
                *l /= self.config.temperature;
            }
        }
        for r in &self.invalid {
            let end = r.end.min(logits.len());
            for l in logits.iter_mut().take(end).skip(r.start) {
                *l = f32::NEG_INFINITY;
            }
        }
    }

    /// Picks the next token from raw logits, given the ids generated so far (not the prompt).
    pub fn next_token(&mut self, logits: &[f32], generated: &[u32]) -> u32 {
        let mut logits = logits.to_vec();
        self.adjust(&mut logits, generated);
        if !self.config.do_sample {
            return argmax(&logits);
        }
        let candidates = top_k_top_p(&logits, self.config.top_k, self.config.top_p);
        let max = candidates
            .iter()
            .map(|&(_, l)| l)
            .fold(f32::NEG_INFINITY, f32::max);
        let weights: Vec<f64> = candidates
            .iter()
            .map(|&(_, l)| ((l - max) as f64).exp())
            .collect();
        let total: f64 = weights.iter().sum();
        if total.is_nan() || total <= 0.0 || !total.is_finite() {
            return argmax(&logits);
        }
        let mut u = self.rng.random::<f64>() * total;
        for (&(id, _), w) in candidates.iter().zip(&weights) {
            if u < *w {
                return id;
            }
            u -= w;
        }
        candidates.last().map(|&(id, _)| id).unwrap_or(0)
    }
}

/// The log-softmax of `logits` in f32 (the largest logit subtracted first): the model's raw
/// log-probabilities, before any repetition penalty, temperature or filtering.
pub fn log_softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = logits.iter().map(|&l| (l - max).exp()).sum();
    let log_sum = max + sum.ln();
    logits.iter().map(|&l| l - log_sum).collect()
}

/// Index of the largest value (the first on ties).
pub fn argmax(values: &[f32]) -> u32 {
    let mut best = 0usize;
    for (i, &v) in values.iter().enumerate() {
        if v > values[best] {
            best = i;
        }
    }
    best as u32
}

/// The candidates kept by top-k then top-p, most likely first: `(id, logit)`.
///
/// Top-p keeps the smallest prefix whose probability mass exceeds `top_p` (at least one
/// token, so `top_p = 0` is greedy), as the release does.
pub fn top_k_top_p(logits: &[f32], top_k: usize, top_p: f32) -> Vec<(u32, f32)> {
    let mut idx: Vec<u32> = (0..logits.len() as u32)
        .filter(|&i| logits[i as usize] > FILTER_VALUE)
        .collect();
    if idx.is_empty() {
        return vec![(argmax(logits), 0.0)];
    }
    let by_logit = |a: &u32, b: &u32| {
        logits[*b as usize]
            .partial_cmp(&logits[*a as usize])
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(a.cmp(b))
    };
    if top_k > 0 && top_k < idx.len() {
        idx.select_nth_unstable_by(top_k - 1, by_logit);
        // Keep ties with the k-th value, as `logits < kth` filtering does.
        let kth = logits[idx[top_k - 1] as usize];
        idx.retain(|&i| logits[i as usize] >= kth);
    }
    idx.sort_by(by_logit);
    let max = logits[idx[0] as usize];
    let weights: Vec<f64> = idx
        .iter()
        .map(|&i| ((logits[i as usize] - max) as f64).exp())
        .collect();
    let total: f64 = weights.iter().sum();
    let mut kept = Vec::new();
    let mut cumulative = 0.0;
    for (&i, w) in idx.iter().zip(&weights) {
        kept.push((i, logits[i as usize]));
        cumulative += w / total;
        if cumulative > top_p as f64 {
            break;
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repetition_penalty_divides_even_negative_logits_once() {
        let s = Sampler::new(
            GenerationConfig {
                repetition_penalty: 2.0,
                do_sample: false,
                ..Default::default()
            },
            vec![],
        );
        let mut l = vec![4.0, -4.0, 1.0];
        s.adjust(&mut l, &[0, 1, 1]);
        assert_eq!(l, vec![2.0, -2.0, 1.0]);
    }

    #[test]
    fn invalid_ranges_are_never_chosen() {
        let forbidden: Range<usize> = 0..2;
        let mut s = Sampler::new(GenerationConfig::greedy(), vec![forbidden]);
        assert_eq!(s.next_token(&[9.0, 8.0, 1.0], &[]), 2);
    }

    #[test]
    fn top_p_zero_is_greedy_and_top_k_limits() {
        let l = [0.1, 3.0, 2.0, 2.5];
        assert_eq!(top_k_top_p(&l, 0, 0.0), vec![(1, 3.0)]);
        let kept: Vec<u32> = top_k_top_p(&l, 2, 1.0).iter().map(|c| c.0).collect();
        assert_eq!(kept, vec![1, 3]);
    }

    #[test]
    fn seeded_sampling_is_reproducible() {
        let cfg = GenerationConfig {
            top_p: 1.0,
            top_k: 0,
            temperature: 1.0,
            repetition_penalty: 1.0,
            seed: 7,
            ..Default::default()
        };
        let logits: Vec<f32> = (0..50).map(|i| (i % 7) as f32 * 0.3).collect();
        let draw = |seed: u64| {
            let mut s = Sampler::new(
                GenerationConfig {
                    seed,
                    ..cfg.clone()
                },
                vec![],
            );
            (0..20)
                .map(|_| s.next_token(&logits, &[]))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
    }
}
