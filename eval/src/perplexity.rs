//! Perplexity from per-token log-likelihoods.

use crate::error::{EvalError, Result};

/// `exp(-mean(log p))` over natural-log token log-likelihoods.
///
/// Fails on an empty slice or a non-finite / positive log-likelihood.
pub fn perplexity(log_likelihoods: &[f64]) -> Result<f64> {
    if log_likelihoods.is_empty() {
        return Err(EvalError::Input("perplexity of zero tokens".into()));
    }
    let mut total = 0.0;
    for (i, &lp) in log_likelihoods.iter().enumerate() {
        if !lp.is_finite() || lp > 0.0 {
            return Err(EvalError::Input(format!(
                "token {i}: log-likelihood {lp} is not a finite value <= 0"
            )));
        }
        total += lp;
    }
    Ok((-total / log_likelihoods.len() as f64).exp())
}

/// Perplexity from a summed negative log-likelihood over `tokens` tokens.
pub fn perplexity_from_nll(total_nll: f64, tokens: usize) -> Result<f64> {
    if tokens == 0 || !total_nll.is_finite() || total_nll < 0.0 {
        return Err(EvalError::Input(format!(
            "perplexity needs tokens > 0 and a finite NLL >= 0 (got {total_nll} over {tokens})"
        )));
    }
    Ok((total_nll / tokens as f64).exp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_distribution_gives_vocab_size() {
        let lp = vec![(0.25f64).ln(); 12];
        assert!((perplexity(&lp).unwrap() - 4.0).abs() < 1e-12);
        assert!((perplexity_from_nll(12.0 * 4f64.ln(), 12).unwrap() - 4.0).abs() < 1e-12);
    }

    #[test]
    fn certain_tokens_give_one_and_bad_input_fails() {
        assert_eq!(perplexity(&[0.0, 0.0]).unwrap(), 1.0);
        assert!(perplexity(&[]).is_err());
        assert!(perplexity(&[f64::NAN]).is_err());
        assert!(perplexity(&[0.5]).is_err());
        assert!(perplexity_from_nll(1.0, 0).is_err());
    }
}
