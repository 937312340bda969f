//! BLEU-1..4 as pycocoevalcap's `Bleu(4)` computes it: clipped n-gram counts against the
//! per-n-gram maximum over the references, the closest reference length (ties → shorter),
//! per-item scores smoothed with `tiny = 1e-15` / `small = 1e-9`, and a corpus score from the
//! summed statistics (not the mean of the per-item scores).

use serde::Serialize;

use super::ngrams::{Encoded, MAX_N};

const TINY: f64 = 1e-15;
const SMALL: f64 = 1e-9;

/// BLEU sufficient statistics (of one item, or summed over a corpus).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct BleuStats {
    /// Candidate length in tokens.
    pub testlen: usize,
    /// Effective reference length (closest to the candidate; summed for a corpus).
    pub reflen: usize,
    /// Candidate n-gram counts for n = 1..4.
    pub guess: [usize; MAX_N],
    /// Clipped matching n-gram counts for n = 1..4.
    pub correct: [usize; MAX_N],
}

impl BleuStats {
    /// Adds another item's statistics (corpus accumulation).
    pub fn add(&mut self, other: &BleuStats) {
        self.testlen += other.testlen;
        self.reflen += other.reflen;
        for k in 0..MAX_N {
            self.guess[k] += other.guess[k];
            self.correct[k] += other.correct[k];
        }
    }

    /// BLEU-1..4 from these statistics, with pycocoevalcap's smoothing and brevity penalty.
    pub fn scores(&self) -> [f64; MAX_N] {
        let mut out = [0.0; MAX_N];
        let mut product = 1.0f64;
        for (k, slot) in out.iter_mut().enumerate() {
            product *= (self.correct[k] as f64 + TINY) / (self.guess[k] as f64 + SMALL);
            *slot = product.powf(1.0 / (k as f64 + 1.0));
        }
        let ratio = (self.testlen as f64 + TINY) / (self.reflen as f64 + SMALL);
        if ratio < 1.0 {
            let penalty = (1.0 - 1.0 / ratio).exp();
            for slot in &mut out {
                *slot *= penalty;
            }
        }
        out
    }

    /// The candidate/reference length ratio pycocoevalcap prints.
    pub fn ratio(&self) -> f64 {
        (self.testlen as f64 + TINY) / (self.reflen as f64 + SMALL)
    }
}

/// Statistics of one candidate against its references.
///
/// `ref_max` is the sorted `(ngram id, max count over references)` list and `ref_lens` the
/// reference lengths in tokens.
pub(crate) fn item_stats(
    cand: &Encoded,
    ref_max: &[(u32, u32)],
    ref_lens: &[usize],
    order: &[u8],
) -> BleuStats {
    let testlen = cand.words.len();
    let reflen = ref_lens
        .iter()
        .map(|&l| (l.abs_diff(testlen), l))
        .min()
        .map_or(0, |(_, l)| l);
    let mut guess = [0usize; MAX_N];
    for (k, g) in guess.iter_mut().enumerate() {
        *g = (testlen + 1).saturating_sub(k + 1);
    }
    let mut correct = [0usize; MAX_N];
    let mut j = 0;
    for &(id, count) in &cand.grams {
        while j < ref_max.len() && ref_max[j].0 < id {
            j += 1;
        }
        if j < ref_max.len() && ref_max[j].0 == id {
            let k = usize::from(order[id as usize]) - 1;
            correct[k] += count.min(ref_max[j].1) as usize;
        }
    }
    BleuStats {
        testlen,
        reflen,
        guess,
        correct,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfect_match_and_empty() {
        let perfect = BleuStats {
            testlen: 5,
            reflen: 5,
            guess: [5, 4, 3, 2],
            correct: [5, 4, 3, 2],
        };
        for s in perfect.scores() {
            assert!((s - 1.0).abs() < 1e-8, "{s}");
        }
        let empty = BleuStats {
            testlen: 0,
            reflen: 7,
            ..Default::default()
        };
        assert_eq!(empty.scores(), [0.0; 4]);
    }

    #[test]
    fn brevity_penalty_applies_when_short() {
        let short = BleuStats {
            testlen: 2,
            reflen: 4,
            guess: [2, 1, 0, 0],
            correct: [2, 1, 0, 0],
        };
        let s = short.scores();
        assert!((s[0] - (1.0f64 - 2.0).exp()).abs() < 1e-8);
        assert!(s[3] < 1e-3);
    }
}
