//! Per-token log-probabilities for a [`BatchDecoder`](super::BatchDecoder) row that asks for
//! them ([`BatchDecoder::set_logprobs`](super::BatchDecoder::set_logprobs)): the raw
//! log-softmax of the step's logits, before repetition penalty, temperature, invalid ids and
//! top-k/top-p.

use visualglm_language::sampling::log_softmax;

/// The log-probability of a generated token and the most likely alternatives at its step.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprobs {
    /// The generated token.
    pub token: u32,
    /// Its log-probability.
    pub logprob: f32,
    /// The `k` most likely tokens and their log-probabilities, most likely first (lower id
    /// first on ties).
    pub top: Vec<(u32, f32)>,
}

/// The most alternatives a row may ask for.
pub const MAX_TOP_LOGPROBS: usize = 20;

/// `token`'s log-probability under `logits` and the `top` (at most [`MAX_TOP_LOGPROBS`])
/// most likely tokens.
pub fn token_logprobs(logits: &[f32], token: u32, top: usize) -> TokenLogprobs {
    let lp = log_softmax(logits);
    let k = top.min(MAX_TOP_LOGPROBS).min(lp.len());
    let mut best: Vec<(u32, f32)> = Vec::with_capacity(k + 1);
    if k > 0 {
        for (id, &l) in lp.iter().enumerate() {
            if best.len() == k && best.last().is_some_and(|&(_, w)| l.total_cmp(&w).is_le()) {
                continue;
            }
            let at = best.partition_point(|&(_, w)| w.total_cmp(&l).is_ge());
            best.insert(at, (id as u32, l));
            best.truncate(k);
        }
    }
    TokenLogprobs {
        token,
        logprob: lp.get(token as usize).copied().unwrap_or(f32::NEG_INFINITY),
        top: best,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_alternatives_are_sorted_and_sum_to_one() {
        let logits = [1.0, 3.0, 2.0, 3.0, -1.0];
        let t = token_logprobs(&logits, 2, 3);
        let ids: Vec<u32> = t.top.iter().map(|&(i, _)| i).collect();
        assert_eq!(ids, [1, 3, 2]);
        assert!((t.logprob - t.top[2].1).abs() < 1e-6);
        let total: f32 = log_softmax(&logits).iter().map(|l| l.exp()).sum();
        assert!((total - 1.0).abs() < 1e-5);
        assert!(token_logprobs(&logits, 0, 0).top.is_empty());
        assert_eq!(token_logprobs(&logits, 0, 50).top.len(), 5);
    }
}
