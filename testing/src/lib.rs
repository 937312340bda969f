//! Comparisons and fixture paths the workspace's tests share.
//!
//! Every helper here propagates NaN: a NaN (or an infinity minus an infinity) anywhere in either
//! operand makes the result NaN, and the `assert_*` helpers fail on it. candle's `max`/`max_all`
//! and Rust's `f32::max` skip NaN unless it comes first, so a comparison built on them lets a stage
//! that outputs NaN pass; use these instead.

use std::path::PathBuf;

use candle_core::{DType, Tensor};

/// A path under the shared golden fixtures, `../shared/golden` beside the workspace.
pub fn golden(rel: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/golden")).join(rel)
}

/// The largest of `values`, or NaN if any of them is NaN; 0 for none.
pub fn nan_max(values: impl IntoIterator<Item = f32>) -> f32 {
    let mut max = 0f32;
    for v in values {
        if v.is_nan() {
            return f32::NAN;
        }
        if v > max {
            max = v;
        }
    }
    max
}

/// The largest `|a[i] − b[i]|`, or NaN if any difference is NaN. Panics if the lengths differ.
pub fn max_abs_diff_slices(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    nan_max(a.iter().zip(b).map(|(x, y)| (x - y).abs()))
}

/// All elements of `t`, widened to f32, in row-major order.
pub fn values_f32(t: &Tensor) -> Vec<f32> {
    t.to_dtype(DType::F32)
        .and_then(|t| t.flatten_all())
        .and_then(|t| t.to_vec1::<f32>())
        .expect("tensor readable as f32")
}

/// The largest absolute elementwise difference of two tensors of the same shape, compared in
/// f32; NaN if either holds a NaN where the other does not hold the same finite value.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims(), "shape mismatch");
    max_abs_diff_slices(&values_f32(a), &values_f32(b))
}

/// The largest `|t[i]|` in f32, or NaN if `t` holds a NaN.
pub fn max_abs(t: &Tensor) -> f32 {
    nan_max(values_f32(t).into_iter().map(f32::abs))
}

/// Asserts `max |ours − reference| ≤ atol`, failing on NaN.
pub fn assert_max_abs_diff(name: &str, ours: &Tensor, reference: &Tensor, atol: f32) {
    let d = max_abs_diff(ours, reference);
    assert!(d <= atol, "{name}: max|Δ| = {d} > {atol}");
}

/// Asserts `|ours − reference| ≤ atol + rtol·|reference|` elementwise, failing on NaN.
pub fn assert_close(name: &str, ours: &Tensor, reference: &Tensor, atol: f32, rtol: f32) {
    assert_eq!(ours.dims(), reference.dims(), "{name}: shape mismatch");
    let (a, b) = (values_f32(ours), values_f32(reference));
    let bad = a
        .iter()
        .zip(&b)
        .filter(|(x, y)| {
            let (d, tol) = ((*x - *y).abs(), atol + rtol * y.abs());
            d.is_nan() || d > tol
        })
        .count();
    assert_eq!(
        bad,
        0,
        "{name}: {bad} values out of tolerance (NaN counts), max|Δ| = {}",
        max_abs_diff_slices(&a, &b)
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn t(v: &[f32]) -> Tensor {
        Tensor::new(v, &Device::Cpu).unwrap()
    }

    #[test]
    fn candle_max_skips_a_nan_that_is_not_first() {
        // The reason this crate exists: if candle ever propagates NaN here, the helpers can go.
        let m = t(&[0.0, f32::NAN, 1.0]).max(0).unwrap();
        assert!(!m.to_scalar::<f32>().unwrap().is_nan());
    }

    #[test]
    fn a_nan_anywhere_makes_the_difference_nan() {
        let want = t(&[1.0, 2.0, 3.0, 4.0]);
        for at in 0..4 {
            let mut v = vec![1.0, 2.0, 3.0, 4.0];
            v[at] = f32::NAN;
            assert!(max_abs_diff(&t(&v), &want).is_nan(), "NaN at {at}");
            assert!(
                max_abs_diff(&want, &t(&v)).is_nan(),
                "NaN in the reference at {at}"
            );
        }
        let inf = t(&[1.0, f32::INFINITY]);
        assert!(max_abs_diff(&inf, &inf).is_nan(), "inf − inf");
        assert!(max_abs(&t(&[1.0, f32::NAN])).is_nan());
        assert_eq!(max_abs(&t(&[1.0, -3.0])), 3.0);
        assert_eq!(max_abs_diff(&want, &t(&[1.5, 2.0, 1.0, 4.0])), 2.0);
    }

    #[test]
    #[should_panic(expected = "max|Δ| = NaN")]
    fn assert_max_abs_diff_fails_on_nan() {
        assert_max_abs_diff("x", &t(&[0.0, f32::NAN]), &t(&[0.0, 0.0]), 1.0);
    }

    #[test]
    #[should_panic(expected = "1 values out of tolerance")]
    fn assert_close_fails_on_nan() {
        assert_close(
            "x",
            &t(&[0.0, 0.0, f32::NAN]),
            &t(&[0.0, 0.0, 0.0]),
            1.0,
            1.0,
        );
    }

    #[test]
    fn assert_close_accepts_within_tolerance() {
        assert_close("x", &t(&[1.0, 10.5]), &t(&[1.05, 10.0]), 0.1, 0.05);
        assert_max_abs_diff("x", &t(&[1.0, 2.0]), &t(&[1.0, 2.5]), 0.5);
    }

    #[test]
    fn f16_inputs_are_compared_in_f32() {
        let a = t(&[1.0, 2.0]).to_dtype(DType::F16).unwrap();
        assert_eq!(max_abs_diff(&a, &t(&[1.0, 2.25])), 0.25);
    }
}
