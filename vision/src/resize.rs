//! Pillow-exact bicubic resampling of 8-bit images (`Image.resize(size, BICUBIC)`).
//!
//! This re-implements the algorithm of Pillow's `libImaging/Resample.c` (written from its
//! description, not copied), because torchvision's `Resize` on a PIL image delegates to it and the
//! model was trained on its output:
//!
//! * cubic convolution kernel with `a = -0.5`, support 2; when downscaling the kernel is stretched
//!   by the scale factor (antialiasing) and the weights of each output sample are normalised to 1;
//! * weights are converted to fixed point with [`PRECISION_BITS`] (22) fractional bits, rounding
//!   half away from zero;
//! * a horizontal pass writes a rounded, clipped `u8` intermediate image, then a vertical pass
//!   produces the output. A pass whose size does not change is skipped, as in Pillow.
//!
//! `fast_image_resize`'s CatmullRom filter (Pillow-SIMD's 16-bit coefficients) and `image`'s
//! `CatmullRom` were measured against the golden Pillow output and differ by up to 5 levels, which
//! is why this module exists.

/// Fractional bits of the fixed-point weights (Pillow: `32 - 8 - 2`).
pub const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Support (half-width) of the bicubic kernel at scale 1.
const BICUBIC_SUPPORT: f64 = 2.0;

/// Pillow's bicubic kernel (Keys cubic convolution with `a = -0.5`).
pub fn bicubic_kernel(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// Fixed-point filter weights for one axis: output sample `i` reads input samples
/// `starts[i] .. starts[i] + lens[i]` with weights `weights[i * taps ..][.. lens[i]]`.
#[derive(Debug, Clone)]
struct AxisWeights {
    taps: usize,
    starts: Vec<usize>,
    lens: Vec<usize>,
    weights: Vec<i32>,
}

impl AxisWeights {
    /// Weights that resample `in_size` samples to `out_size` samples (Pillow's
    /// `precompute_coeffs` followed by `normalize_coeffs_8bpc`, for the full input box).
    fn new(in_size: usize, out_size: usize) -> Self {
        let scale = in_size as f64 / out_size as f64;
        let filter_scale = scale.max(1.0);
        let support = BICUBIC_SUPPORT * filter_scale;
        let taps = support.ceil() as usize * 2 + 1;
        let inv_filter_scale = 1.0 / filter_scale;
        let fixed_one = f64::from(1u32 << PRECISION_BITS);

        let mut starts = Vec::with_capacity(out_size);
        let mut lens = Vec::with_capacity(out_size);
        let mut weights = vec![0i32; out_size * taps];
        let mut float_weights = vec![0f64; taps];
        for (i, row) in weights.chunks_exact_mut(taps).enumerate() {
            let center = (i as f64 + 0.5) * scale;
            // `as` truncates toward zero and saturates, exactly like C's (int) for these ranges.
            let start = ((center - support + 0.5) as i64).max(0) as usize;
            let end = ((center + support + 0.5) as i64).clamp(0, in_size as i64) as usize;
            let len = end.saturating_sub(start).min(taps);
            let mut total = 0.0;
            for (k, w) in float_weights[..len].iter_mut().enumerate() {
                *w = bicubic_kernel(((k + start) as f64 - center + 0.5) * inv_filter_scale);
                total += *w;
            }
            for (fixed, &w) in row.iter_mut().zip(&float_weights[..len]) {
                let w = if total != 0.0 { w / total } else { w };
                let offset = if w < 0.0 { -0.5 } else { 0.5 };
                *fixed = (offset + w * fixed_one) as i32;
            }
            starts.push(start);
            lens.push(len);
        }
        Self {
            taps,
            starts,
            lens,
            weights,
        }
    }

    /// The taps of output sample `i`: first input index and its weights.
    fn taps_of(&self, i: usize) -> (usize, &[i32]) {
        let row = &self.weights[i * self.taps..(i + 1) * self.taps];
        (self.starts[i], &row[..self.lens[i]])
    }
}

/// Rounds a fixed-point accumulator (already offset by one half) to a clipped `u8`.
#[inline]
fn clip8(acc: i32) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Initial accumulator value: one half in fixed point, so that the final shift rounds.
const HALF: i32 = 1 << (PRECISION_BITS - 1);

// The accumulators cannot overflow i32: the weights of one output sample sum to 1 in absolute
// value at most ~1.25 (the cubic's negative lobes), so |acc| <= 1.25 * 255 * 2^22 + 2^21 < 2^31.

/// Horizontal pass over interleaved `u8` rows with `C` channels.
fn resample_horizontal<const C: usize>(
    src: &[u8],
    src_width: usize,
    height: usize,
    axis: &AxisWeights,
) -> Vec<u8> {
    let out_width = axis.starts.len();
    let mut out = vec![0u8; out_width * height * C];
    if src_width == 0 {
        return out;
    }
    for (src_row, out_row) in src
        .chunks_exact(src_width * C)
        .zip(out.chunks_exact_mut(out_width * C))
    {
        for (x, out_px) in out_row.chunks_exact_mut(C).enumerate() {
            let (start, weights) = axis.taps_of(x);
            let mut acc = [HALF; C];
            let pixels = src_row[start * C..].chunks_exact(C);
            for (px, &w) in pixels.zip(weights) {
                for c in 0..C {
                    acc[c] += i32::from(px[c]) * w;
                }
            }
            for c in 0..C {
                out_px[c] = clip8(acc[c]);
            }
        }
    }
    out
}

/// Vertical pass over interleaved `u8` rows with `C` channels.
fn resample_vertical<const C: usize>(src: &[u8], width: usize, axis: &AxisWeights) -> Vec<u8> {
    let out_height = axis.starts.len();
    let row_len = width * C;
    let mut out = vec![0u8; row_len * out_height];
    if row_len == 0 {
        return out;
    }
    let mut acc = vec![0i32; row_len];
    for (y, out_row) in out.chunks_exact_mut(row_len).enumerate() {
        let (start, weights) = axis.taps_of(y);
        acc.fill(HALF);
        let rows = src[start * row_len..].chunks_exact(row_len);
        for (src_row, &w) in rows.zip(weights) {
            for (a, &v) in acc.iter_mut().zip(src_row) {
                *a += i32::from(v) * w;
            }
        }
        for (o, &a) in out_row.iter_mut().zip(&acc) {
            *o = clip8(a);
        }
    }
    out
}

/// Resizes an interleaved 8-bit image with `C` channels exactly like Pillow's
/// `Image.resize((out_width, out_height), Image.BICUBIC)`.
///
/// `src` must hold `src_width * src_height * C` bytes; the result holds
/// `out_width * out_height * C` bytes. Returns `None` if `src` has the wrong length.
pub fn resize_bicubic<const C: usize>(
    src: &[u8],
    src_width: usize,
    src_height: usize,
    out_width: usize,
    out_height: usize,
) -> Option<Vec<u8>> {
    let expected = src_width.checked_mul(src_height)?.checked_mul(C)?;
    if src.len() != expected {
        return None;
    }
    if out_width == 0 || out_height == 0 {
        return Some(Vec::new());
    }
    let horizontal = if out_width != src_width {
        let axis = AxisWeights::new(src_width, out_width);
        resample_horizontal::<C>(src, src_width, src_height, &axis)
    } else {
        src.to_vec()
    };
    let vertical = if out_height != src_height {
        let axis = AxisWeights::new(src_height, out_height);
        resample_vertical::<C>(&horizontal, out_width, &axis)
    } else {
        horizontal
    };
    Some(vertical)
}

/// Pillow-exact bicubic resize of an RGB image (see [`resize_bicubic`]).
pub fn resize_rgb_bicubic(
    src: &image::RgbImage,
    out_width: u32,
    out_height: u32,
) -> image::RgbImage {
    let (w, h) = src.dimensions();
    let data = resize_bicubic::<3>(
        src.as_raw(),
        w as usize,
        h as usize,
        out_width as usize,
        out_height as usize,
    );
    // An `RgbImage` always holds exactly w * h * 3 bytes, and the result out_w * out_h * 3.
    data.and_then(|d| image::RgbImage::from_raw(out_width, out_height, d))
        .unwrap_or_else(|| image::RgbImage::new(out_width, out_height))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_values() {
        assert_eq!(bicubic_kernel(0.0), 1.0);
        assert_eq!(bicubic_kernel(1.0), 0.0);
        assert_eq!(bicubic_kernel(2.0), 0.0);
        assert_eq!(bicubic_kernel(0.5), 0.5625);
        assert_eq!(bicubic_kernel(-1.5), -0.0625);
    }

    #[test]
    fn weights_sum_to_one_in_fixed_point() {
        for (n_in, n_out) in [(451, 224), (100, 224), (224, 224), (3, 1), (1000, 7)] {
            let axis = AxisWeights::new(n_in, n_out);
            for i in 0..n_out {
                let (start, w) = axis.taps_of(i);
                assert!(start + w.len() <= n_in);
                let sum: i32 = w.iter().sum();
                let one = 1i32 << PRECISION_BITS;
                assert!(
                    (sum - one).abs() <= w.len() as i32,
                    "{n_in}->{n_out} at {i}: {sum}"
                );
            }
        }
    }

    #[test]
    fn constant_image_stays_constant() {
        let src = vec![77u8; 37 * 23 * 3];
        for (w, h) in [(224, 224), (10, 5), (37, 100)] {
            let out = resize_bicubic::<3>(&src, 37, 23, w, h).unwrap();
            assert!(out.iter().all(|&v| v == 77));
        }
    }

    #[test]
    fn same_size_is_identity() {
        let src: Vec<u8> = (0..(9 * 4 * 3)).map(|i| (i * 7 % 256) as u8).collect();
        assert_eq!(resize_bicubic::<3>(&src, 9, 4, 9, 4).unwrap(), src);
    }

    #[test]
    fn overshoot_is_clipped() {
        // A hard edge makes the cubic over/undershoot; values must clip, not wrap.
        let mut src = vec![0u8; 8];
        src[4..].fill(255);
        let out = resize_bicubic::<1>(&src, 8, 1, 16, 1).unwrap();
        assert!(out.contains(&0) && out.contains(&255));
        assert!(out.windows(2).all(|p| p[0] <= p[1]), "{out:?}");
    }

    #[test]
    fn wrong_length_is_rejected() {
        assert!(resize_bicubic::<3>(&[0u8; 5], 2, 1, 4, 4).is_none());
    }
}
