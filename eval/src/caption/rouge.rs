//! ROUGE-L as pycocoevalcap's `Rouge` computes it: longest common subsequence with every
//! reference, best precision and best recall taken separately over the references, then
//! F-measure with beta = 1.2.

const BETA: f64 = 1.2;

/// Token used for an empty caption: pycocoevalcap splits on `" "`, so `""` is one empty token.
const EMPTY_TOKEN: u32 = u32::MAX;

/// Length of the longest common subsequence of two token sequences.
pub fn lcs_len(a: &[u32], b: &[u32]) -> usize {
    let (long, short) = if a.len() >= b.len() { (a, b) } else { (b, a) };
    let mut row = vec![0usize; short.len() + 1];
    for &x in long {
        let mut diag = 0;
        for (j, &y) in short.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = if x == y { diag + 1 } else { above.max(row[j]) };
            diag = above;
        }
    }
    row[short.len()]
}

/// ROUGE-L of one candidate against its references (word ids).
pub fn rouge_l(candidate: &[u32], references: &[&[u32]]) -> f64 {
    let empty = [EMPTY_TOKEN];
    let cand = if candidate.is_empty() {
        &empty[..]
    } else {
        candidate
    };
    let mut prec_max = 0.0f64;
    let mut rec_max = 0.0f64;
    for reference in references {
        let r = if reference.is_empty() {
            &empty[..]
        } else {
            reference
        };
        let lcs = lcs_len(r, cand) as f64;
        prec_max = prec_max.max(lcs / cand.len() as f64);
        rec_max = rec_max.max(lcs / r.len() as f64);
    }
    if prec_max != 0.0 && rec_max != 0.0 {
        let b2 = BETA * BETA;
        ((1.0 + b2) * prec_max * rec_max) / (rec_max + b2 * prec_max)
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lcs_basics() {
        assert_eq!(lcs_len(&[1, 2, 3, 4], &[2, 4]), 2);
        assert_eq!(lcs_len(&[1, 2, 3], &[3, 2, 1]), 1);
        assert_eq!(lcs_len(&[], &[1]), 0);
    }

    #[test]
    fn identical_is_one_and_empty_is_zero() {
        let c = [1, 2, 3];
        assert!((rouge_l(&c, &[&[9, 9], &c]) - 1.0).abs() < 1e-15);
        assert_eq!(rouge_l(&[], &[&[1, 2]]), 0.0);
        // pycocoevalcap quirk: "" vs "" is one matching empty token.
        assert_eq!(rouge_l(&[], &[&[]]), 1.0);
    }
}
