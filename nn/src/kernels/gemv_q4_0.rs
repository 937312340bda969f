//! A decode-time matrix-vector product for Q4_0 weights on x86-64 (`y = W·x` for one or a few
//! input rows), used instead of candle's generic kernel on the [`Isa::Avx2`] and
//! [`Isa::Avx512`] paths ([`super::isa`]; on [`Isa::Scalar`] it declines and candle computes
//! the product).
//!
//! candle 0.11's Q4_0 path converts both f16 block scales through the `half` crate's
//! runtime-dispatched conversion and has no VNNI form; here the scales are converted with F16C,
//! the input is quantized once to 32-value blocks of `i8` (as GGML's `q8_0`, with an f32
//! scale), and with AVX-512 VNNI one `vpdpbusd` does each block's 32 multiply-adds on the raw
//! unsigned nibbles; the `-8` offset of Q4_0 is applied afterwards as `-8·Σx` per block.
//! The VNNI kernel runs on the [`Isa::Avx512`] path when the CPU also has AVX-512 VNNI and
//! VL; otherwise (AVX-512F without VNNI, or the [`Isa::Avx2`] path) the AVX2 kernel runs. Both
//! sum the same integers exactly. Rows are split over rayon's pool.

use super::isa::{self, Isa};
use super::{output_dims, par_row_groups};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Result, Tensor};

/// Values per Q4_0 block.
pub(crate) const QK: usize = 32;
/// Bytes per Q4_0 block: an f16 scale and 16 bytes of nibbles.
pub(crate) const BLOCK_BYTES: usize = 18;

/// Which kernel runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Avx512Vnni,
    Avx2,
}

/// The kernel for path `isa` (clamped to the host's): none on [`Isa::Scalar`], the VNNI one on
/// [`Isa::Avx512`] when the CPU has AVX-512 VNNI and VL, else the AVX2 one.
fn level(isa: Isa) -> Option<Level> {
    match isa.clamped() {
        Isa::Scalar => None,
        Isa::Avx2 => Some(Level::Avx2),
        Isa::Avx512 if isa::has_avx512_vnni() => Some(Level::Avx512Vnni),
        Isa::Avx512 => Some(Level::Avx2),
    }
}

/// Whether path `isa` (clamped to the host's) runs the AVX2 kernel: the one the eight-row
/// layout of [`super::packed8`] replaces.
pub(crate) fn uses_avx2_kernel(isa: Isa) -> bool {
    level(isa) == Some(Level::Avx2)
}

/// Whether [`matmul`] handles `x · wᵀ` for this weight and input: a CPU Q4_0 weight, a
/// contiguous f32 input of at most 4 rows (decode), and an active path other than
/// [`Isa::Scalar`] ([`isa::active`]).
pub fn applies(w: &QTensor, x: &Tensor) -> bool {
    applies_with(isa::active(), w, x)
}

/// [`applies`] on path `isa`.
fn applies_with(isa: Isa, w: &QTensor, x: &Tensor) -> bool {
    let rows = x.dims().iter().rev().skip(1).product::<usize>();
    q4_0_and_f32_on_cpu(w, x) && rows <= 4 && level(isa).is_some()
}

/// Whether `w` is a CPU Q4_0 weight `[n, k]` with `k` a multiple of 32 and `x` an f32 CPU input
/// `[.., k]`: what the Q4_0 kernels here and in [`super::gemm_q4_0`] read.
pub(crate) fn q4_0_and_f32_on_cpu(w: &QTensor, x: &Tensor) -> bool {
    w.dtype() == GgmlDType::Q4_0
        && matches!(w.device(), Device::Cpu)
        && x.device().is_cpu()
        && x.dtype() == DType::F32
        && w.shape()
            .dims2()
            .is_ok_and(|(_, k)| k % QK == 0 && x.dims().last() == Some(&k))
}

/// `x · wᵀ` for a `[out, in]` Q4_0 weight and an f32 input `[.., in]` (check [`applies`]),
/// on the active path; refused with an error on [`Isa::Scalar`].
pub fn matmul(w: &QTensor, x: &Tensor) -> Result<Tensor> {
    matmul_with(isa::active(), w, x)
}

/// [`matmul`] on path `isa` (clamped to the host's).
fn matmul_with(isa: Isa, w: &QTensor, x: &Tensor) -> Result<Tensor> {
    let Some(level) = level(isa) else {
        candle_core::bail!("the Q4_0 GEMV needs AVX2, FMA and F16C (path {isa} here)");
    };
    let (n, k) = w.shape().dims2()?;
    let in_dims = x.dims().to_vec();
    if in_dims.last() != Some(&k) {
        candle_core::bail!("Q4_0 GEMV: input {in_dims:?} does not end in {k}");
    }
    if k % QK != 0 {
        candle_core::bail!("Q4_0 GEMV: width {k} is not a multiple of {QK}");
    }
    let rows = in_dims.iter().rev().skip(1).product::<usize>();
    let data = w.data()?;
    if data.len() != n * (k / QK) * BLOCK_BYTES {
        candle_core::bail!("Q4_0 GEMV: {} weight bytes for [{n}, {k}]", data.len());
    }
    let xs = x.flatten_all()?.to_vec1::<f32>()?;
    let mut out = vec![0f32; rows * n];
    for (row, y) in xs.chunks_exact(k).zip(out.chunks_exact_mut(n)) {
        let q = QuantizedRow::new(row);
        gemv(level, &data, k, &q, y);
    }
    let out_dims = output_dims(&in_dims, n);
    Tensor::from_vec(out, out_dims, x.device())
}

/// One input row quantized to blocks of 32 `i8` with an f32 scale each, and per block
/// `8·scale·Σq` (the correction for Q4_0's `-8` offset).
pub(crate) struct QuantizedRow {
    pub(crate) qs: Vec<i8>,
    pub(crate) scale: Vec<f32>,
    pub(crate) offset: Vec<f32>,
}

impl QuantizedRow {
    pub(crate) fn new(x: &[f32]) -> Self {
        let blocks = x.len() / QK;
        let mut qs = vec![0i8; x.len()];
        let mut scale = Vec::with_capacity(blocks);
        let mut offset = Vec::with_capacity(blocks);
        for (src, dst) in x.chunks_exact(QK).zip(qs.chunks_exact_mut(QK)) {
            let amax = src.iter().fold(0f32, |m, v| m.max(v.abs()));
            let d = amax / 127.0;
            let id = if d > 0.0 { 1.0 / d } else { 0.0 };
            let mut sum = 0i32;
            for (q, v) in dst.iter_mut().zip(src) {
                *q = (v * id).round().clamp(-127.0, 127.0) as i8;
                sum += i32::from(*q);
            }
            scale.push(d);
            offset.push(8.0 * d * sum as f32);
        }
        Self { qs, scale, offset }
    }
}

/// `y[r] = dot(w row r, x)` for every row, rows split over the pool in chunks.
fn gemv(level: Level, w: &[u8], k: usize, x: &QuantizedRow, y: &mut [f32]) {
    let row_bytes = (k / QK) * BLOCK_BYTES;
    let row = |r: usize| &w[r * row_bytes..(r + 1) * row_bytes];
    // Eight rows at a time: eight independent accumulator chains sharing each input load.
    par_row_groups(
        y,
        1,
        8,
        |r, out| {
            let d: [f32; 8] = dot_rows(level, std::array::from_fn(|i| row(r + i)), x);
            out.copy_from_slice(&d);
        },
        |r, out| out[0] = dot(level, row(r), x),
    );
}

fn dot_rows<const N: usize>(level: Level, rows: [&[u8]; N], x: &QuantizedRow) -> [f32; N] {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: as in `dot`, for each of the four rows.
        unsafe {
            match level {
                Level::Avx512Vnni => x86::dot_rows_vnni(rows, x),
                Level::Avx2 => x86::dot_rows_avx2(rows, x),
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        rows.map(|r| dot(level, r, x))
    }
}

fn dot(level: Level, row: &[u8], x: &QuantizedRow) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: `level` returns a level only for a path at or below the host's (clamped),
        // whose features `isa::host` detected, and the VNNI level only after detecting
        // AVX-512 VNNI and VL; `row` holds `x.scale.len()` whole blocks (checked by
        // `matmul_with`).
        unsafe {
            match level {
                Level::Avx512Vnni => x86::dot_vnni(row, x),
                Level::Avx2 => x86::dot_avx2(row, x),
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (level, row, x);
        0.0
    }
}

/// The x86-64 kernels.
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86 {
    use super::{QuantizedRow, BLOCK_BYTES, QK};
    use crate::kernels::x86::hsum;
    use std::arch::x86_64::*;

    /// The 32 unsigned nibbles of a block, low nibbles first (GGML's element order).
    ///
    /// # Safety
    /// `p` must point to 16 readable bytes; the CPU must have AVX2.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn nibbles(p: *const u8) -> __m256i {
        let raw = _mm_loadu_si128(p as *const __m128i);
        let both = _mm256_set_m128i(_mm_srli_epi16(raw, 4), raw);
        _mm256_and_si256(both, _mm256_set1_epi8(0x0F))
    }

    /// The block's f16 scale as f32.
    ///
    /// # Safety
    /// `p` must point to 2 readable bytes; the CPU must have F16C.
    #[inline]
    #[target_feature(enable = "f16c")]
    unsafe fn scale(p: *const u8) -> f32 {
        let bits = u16::from_le_bytes([*p, *p.add(1)]);
        _mm_cvtss_f32(_mm_cvtph_ps(_mm_set1_epi16(bits as i16)))
    }

    /// # Safety
    /// The CPU must have AVX2, FMA and F16C; `row` must hold `x.scale.len()` blocks.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn dot_avx2(row: &[u8], x: &QuantizedRow) -> f32 {
        let ones = _mm256_set1_epi16(1);
        let mut acc = _mm256_setzero_ps();
        let mut corr = 0f32;
        for b in 0..x.scale.len() {
            let blk = row.as_ptr().add(b * BLOCK_BYTES);
            let dw = scale(blk);
            let d = dw * x.scale[b];
            let w = nibbles(blk.add(2));
            let q = _mm256_loadu_si256(x.qs.as_ptr().add(b * QK) as *const __m256i);
            // w is unsigned (0..15), q signed: maddubs gives exact i16 pair sums (≤ 2·15·127).
            let pairs = _mm256_maddubs_epi16(w, q);
            let sums = _mm256_madd_epi16(pairs, ones);
            acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sums), acc);
            corr += dw * x.offset[b];
        }
        hsum(acc) - corr
    }

    /// `N` rows against one input with [`dot_avx2`]'s arithmetic (the same value for each
    /// row): one input load per block and `N` independent accumulator chains, so the FMA
    /// latency of one row's chain no longer bounds the loop.
    ///
    /// # Safety
    /// As [`dot_avx2`], for each row.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn dot_rows_avx2<const N: usize>(
        rows: [&[u8]; N],
        x: &QuantizedRow,
    ) -> [f32; N] {
        let ones = _mm256_set1_epi16(1);
        let mut acc = [_mm256_setzero_ps(); N];
        let mut corr = [0f32; N];
        for b in 0..x.scale.len() {
            let q = _mm256_loadu_si256(x.qs.as_ptr().add(b * QK) as *const __m256i);
            let (xd, xo) = (x.scale[b], x.offset[b]);
            for r in 0..N {
                let blk = rows[r].as_ptr().add(b * BLOCK_BYTES);
                let dw = scale(blk);
                let pairs = _mm256_maddubs_epi16(nibbles(blk.add(2)), q);
                let sums = _mm256_madd_epi16(pairs, ones);
                acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(dw * xd), _mm256_cvtepi32_ps(sums), acc[r]);
                corr[r] += dw * xo;
            }
        }
        std::array::from_fn(|r| hsum(acc[r]) - corr[r])
    }

    /// # Safety
    /// The CPU must have AVX2, FMA, F16C, AVX-512 VNNI and AVX-512 VL; `row` must hold
    /// `x.scale.len()` blocks.
    #[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl")]
    pub(super) unsafe fn dot_vnni(row: &[u8], x: &QuantizedRow) -> f32 {
        let mut acc = _mm256_setzero_ps();
        let mut corr = 0f32;
        for b in 0..x.scale.len() {
            let blk = row.as_ptr().add(b * BLOCK_BYTES);
            let dw = scale(blk);
            let w = nibbles(blk.add(2));
            let q = _mm256_loadu_si256(x.qs.as_ptr().add(b * QK) as *const __m256i);
            let sums = _mm256_dpbusd_epi32(_mm256_setzero_si256(), w, q);
            acc = _mm256_fmadd_ps(
                _mm256_set1_ps(dw * x.scale[b]),
                _mm256_cvtepi32_ps(sums),
                acc,
            );
            corr += dw * x.offset[b];
        }
        hsum(acc) - corr
    }

    /// `N` rows against one input: one input load per block for `N` accumulator chains.
    ///
    /// # Safety
    /// As [`dot_vnni`], for each row.
    #[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl")]
    pub(super) unsafe fn dot_rows_vnni<const N: usize>(
        rows: [&[u8]; N],
        x: &QuantizedRow,
    ) -> [f32; N] {
        let mut acc = [_mm256_setzero_ps(); N];
        let mut corr = [0f32; N];
        for b in 0..x.scale.len() {
            let q = _mm256_loadu_si256(x.qs.as_ptr().add(b * QK) as *const __m256i);
            let xd = x.scale[b];
            for r in 0..N {
                let blk = rows[r].as_ptr().add(b * BLOCK_BYTES);
                let dw = scale(blk);
                let sums = _mm256_dpbusd_epi32(_mm256_setzero_si256(), nibbles(blk.add(2)), q);
                acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(dw * xd), _mm256_cvtepi32_ps(sums), acc[r]);
                corr[r] += dw * x.offset[b];
            }
        }
        std::array::from_fn(|r| hsum(acc[r]) - corr[r])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fixed pseudo-random values in [-2, 2): a random draw made the check against the
    /// dequantized product flaky (the [7, 64] case has only two blocks per row, so its error
    /// varies most).
    fn values(len: usize, seed: f32) -> Vec<f32> {
        (0..len)
            .map(|i| ((i as f32 * 12.9898 + seed).sin() * 43758.547).fract() * 2.0)
            .collect()
    }

    /// The scalar reference of [`dot`]: the same integer sums and scales, in f64 one value at a
    /// time; and a bound on the magnitude of every partial sum the kernels form (for the
    /// tolerance).
    fn reference_dot(row: &[u8], x: &QuantizedRow) -> (f64, f64) {
        let (mut sum, mut bound) = (0f64, 0f64);
        for (b, blk) in row.chunks_exact(BLOCK_BYTES).enumerate() {
            let dw = f64::from(half::f16::from_le_bytes([blk[0], blk[1]]).to_f32());
            let q = &x.qs[b * QK..(b + 1) * QK];
            let (mut dot, mut abs) = (0i64, 0i64);
            for (j, &byte) in blk[2..].iter().enumerate() {
                for (nibble, xq) in [(byte & 0x0f, q[j]), (byte >> 4, q[j + QK / 2])] {
                    let t = i64::from(nibble) * i64::from(xq);
                    dot += t;
                    abs += t.abs();
                }
            }
            let d = dw * f64::from(x.scale[b]);
            let corr = dw * f64::from(x.offset[b]);
            sum += d * dot as f64 - corr;
            bound += (d * abs as f64).abs() + corr.abs();
        }
        (sum, bound)
    }

    #[test]
    fn every_path_matches_the_scalar_reference() -> Result<()> {
        let dev = Device::Cpu;
        // Heights with and without a partial group of 8 rows and over one rayon task (64
        // rows); widths of 1 to 128 blocks; 1 to 4 input rows.
        let cases = [
            (7usize, 64usize, 1usize),
            (130, 256, 1),
            (33, 4096, 3),
            (9, 32, 2),
            (67, 96, 4),
        ];
        for isa in isa::supported_paths() {
            let kernel = level(isa);
            eprintln!("gemv_q4_0: path {isa} runs {kernel:?}");
            for &(n, k, rows) in &cases {
                let w = Tensor::from_vec(values(n * k, 1.0), (n, k), &dev)?;
                let q = QTensor::quantize(&w, GgmlDType::Q4_0)?;
                let x = Tensor::from_vec(values(rows * k, 2.0), (1, rows, k), &dev)?;
                let what = format!("{isa}: [{n}, {k}] x{rows}");
                let Some(lvl) = kernel else {
                    // The scalar path declines: candle computes the product.
                    assert!(!applies_with(isa, &q, &x), "{what}");
                    assert!(matmul_with(isa, &q, &x).is_err(), "{what}");
                    continue;
                };
                assert!(applies_with(isa, &q, &x), "{what}");
                let got = matmul_with(isa, &q, &x)?;
                assert_eq!(got.dims(), &[1, rows, n], "{what}");
                let got = got.flatten_all()?.to_vec1::<f32>()?;
                let xs = x.flatten_all()?.to_vec1::<f32>()?;
                let data = q.data()?;
                let rb = (k / QK) * BLOCK_BYTES;
                for (i, xrow) in xs.chunks_exact(k).enumerate() {
                    let xq = QuantizedRow::new(xrow);
                    for r in 0..n {
                        let row = &data[r * rb..(r + 1) * rb];
                        let (want, bound) = reference_dot(row, &xq);
                        // f32 accumulation of exact integer block sums: within a few f32
                        // roundings per block of the largest partial sum.
                        let tol = 2e-5 * bound + 1e-6;
                        let v = f64::from(got[i * n + r]);
                        assert!((v - want).abs() <= tol, "{what} [{i}, {r}]: {v} vs {want}");
                        let one = f64::from(dot(lvl, row, &xq));
                        assert!(
                            (one - want).abs() <= tol,
                            "{what} dot [{r}]: {one} vs {want}"
                        );
                    }
                    if n >= 8 {
                        let eight = dot_rows::<8>(
                            lvl,
                            std::array::from_fn(|r| &data[r * rb..(r + 1) * rb]),
                            &xq,
                        );
                        for (r, v) in eight.iter().enumerate() {
                            let (want, bound) = reference_dot(&data[r * rb..(r + 1) * rb], &xq);
                            if lvl == Level::Avx2 {
                                // The same arithmetic as one row at a time, bit for bit.
                                let one = dot(lvl, &data[r * rb..(r + 1) * rb], &xq);
                                assert_eq!(v.to_bits(), one.to_bits(), "{what} rows [{r}]");
                            }
                            let v = f64::from(*v);
                            assert!((v - want).abs() <= 2e-5 * bound + 1e-6, "{what} rows [{r}]");
                        }
                    }
                }
                // And against the product with the dequantized weight: the input is rounded to
                // 8 bits per block, relative error ≲ 1 %.
                let got = Tensor::from_vec(got, (1, rows, n), &dev)?;
                let want = x.broadcast_matmul(&q.dequantize(&dev)?.t()?)?;
                let err = (&got - &want)?.sqr()?.sum_all()?.to_scalar::<f32>()?.sqrt();
                let norm = want.sqr()?.sum_all()?.to_scalar::<f32>()?.sqrt();
                assert!(err / norm < 0.01, "{what}: {err} / {norm}");
            }
        }
        Ok(())
    }

    #[test]
    fn the_active_path_is_used_and_other_operands_are_refused() -> Result<()> {
        let dev = Device::Cpu;
        let w = Tensor::from_vec(values(8 * 64, 1.0), (8, 64), &dev)?;
        let q = QTensor::quantize(&w, GgmlDType::Q4_0)?;
        let x = Tensor::from_vec(values(64, 2.0), (1, 64), &dev)?;
        assert_eq!(applies(&q, &x), level(isa::active()).is_some());
        for isa in isa::supported_paths()
            .into_iter()
            .filter(|&i| i > Isa::Scalar)
        {
            // Five rows (prefill), a width that is not the weight's, a Q8_0 weight.
            let five = Tensor::from_vec(values(5 * 64, 3.0), (5, 64), &dev)?;
            assert!(!applies_with(isa, &q, &five));
            let narrow = Tensor::from_vec(values(32, 3.0), (1, 32), &dev)?;
            assert!(!applies_with(isa, &q, &narrow));
            assert!(matmul_with(isa, &q, &narrow).is_err());
            let q8 = QTensor::quantize(&w, GgmlDType::Q8_0)?;
            assert!(!applies_with(isa, &q8, &x));
        }
        Ok(())
    }
}
