//! Numeric helpers that mirror how the reference Python code sums and rounds.

/// Sum in the order numpy's pairwise summation uses for a contiguous float64 array
/// (blocks of up to 128 values with 8 interleaved accumulators, halves above that).
pub fn pairwise_sum(values: &[f64]) -> f64 {
    const BLOCK: usize = 128;
    let n = values.len();
    if n < 8 {
        values.iter().fold(0.0, |acc, v| acc + v)
    } else if n <= BLOCK {
        let mut r = [0.0f64; 8];
        r.copy_from_slice(&values[..8]);
        let full = n - n % 8;
        let mut i = 8;
        while i < full {
            for (j, acc) in r.iter_mut().enumerate() {
                *acc += values[i + j];
            }
            i += 8;
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for v in &values[full..] {
            res += v;
        }
        res
    } else {
        let mut half = n / 2;
        half -= half % 8;
        pairwise_sum(&values[..half]) + pairwise_sum(&values[half..])
    }
}

/// Arithmetic mean as `numpy.mean` computes it; 0 for an empty slice (numpy would give NaN).
pub fn mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        0.0
    } else {
        pairwise_sum(values) / values.len() as f64
    }
}

/// Python's `round(x, digits)`: round the exact binary value half-to-even at `digits`
/// decimals, then return the nearest double.
pub fn py_round(x: f64, digits: usize) -> f64 {
    if !x.is_finite() {
        return x;
    }
    // Rust prints the exact decimal expansion when asked for enough digits (every finite
    // double has at most 1074 fractional digits).
    let exact = format!("{:.1100}", x.abs());
    let (int_part, frac_part) = exact.split_once('.').unwrap_or((exact.as_str(), ""));
    let kept = &frac_part[..digits.min(frac_part.len())];
    let rest = &frac_part[kept.len()..];
    let mut digits_vec: Vec<u8> = int_part
        .bytes()
        .chain(kept.bytes())
        .map(|b| b - b'0')
        .collect();
    let first = rest.as_bytes().first().copied().unwrap_or(b'0');
    let tail_nonzero = rest.bytes().skip(1).any(|b| b != b'0');
    let last_odd = digits_vec.last().is_some_and(|d| d % 2 == 1);
    let round_up = first > b'5' || (first == b'5' && (tail_nonzero || last_odd));
    if round_up {
        let mut i = digits_vec.len();
        loop {
            if i == 0 {
                digits_vec.insert(0, 1);
                break;
            }
            i -= 1;
            if digits_vec[i] == 9 {
                digits_vec[i] = 0;
            } else {
                digits_vec[i] += 1;
                break;
            }
        }
    }
    let split = digits_vec.len() - kept.len();
    let mut text = String::with_capacity(digits_vec.len() + 2);
    if x.is_sign_negative() {
        text.push('-');
    }
    for d in &digits_vec[..split] {
        text.push(char::from(b'0' + d));
    }
    text.push('.');
    for d in &digits_vec[split..] {
        text.push(char::from(b'0' + d));
    }
    text.push('0');
    text.parse().unwrap_or(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairwise_matches_plain_sum_for_exact_values() {
        let v: Vec<f64> = (0..1000).map(f64::from).collect();
        assert_eq!(pairwise_sum(&v), 499_500.0);
        assert_eq!(pairwise_sum(&v[..5]), 10.0);
        assert_eq!(pairwise_sum(&v[..100]), 4950.0);
        assert_eq!(mean(&[]), 0.0);
    }

    #[test]
    fn python_rounding() {
        assert_eq!(py_round(88.666_666_666_666_67, 2), 88.67);
        assert_eq!(py_round(0.125, 2), 0.12);
        assert_eq!(py_round(0.375, 2), 0.38);
        assert_eq!(py_round(2.675, 2), 2.67); // binary value is below the tie
        assert_eq!(py_round(99.995, 2), 100.0); // binary value is above the tie
        assert_eq!(py_round(9.9999, 2), 10.0);
        assert_eq!(py_round(83.888_888_888_888_89, 10), 83.888_888_888_9);
        assert_eq!(py_round(-1.5, 0), -2.0);
    }
}
