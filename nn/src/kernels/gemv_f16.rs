//! A decode-time matrix-vector product for dense f16 weights on x86-64 (`y = W·x` for one or
//! a few input rows), used instead of candle's generic f16 matmul on the [`Isa::Avx2`] and
//! [`Isa::Avx512`] paths ([`super::isa`]; on [`Isa::Scalar`] it declines and candle computes
//! the product).
//!
//! Decode is bound by how fast the weight streams from memory, and candle 0.11's f16 matmul
//! runs a `[1, k] × [k, n]` product on one thread (and a few rows far slower). Here the weight
//! is read once, straight from the tensor's storage, rows split over rayon's pool in chunks
//! (see [`super::gemv_q4_0`]); values are widened with F16C, 16 at a time with AVX-512
//! (`_mm512_cvtph_ps`) or 8 with AVX2, and accumulated in f32:
//!
//! * with AVX-512, one input row up to 8192 wide: one weight row at a time against the f16
//!   input (at most 16 KiB, it stays in L1), four accumulator chains, so each thread reads its
//!   part of the weight as one sequential stream;
//! * otherwise (AVX2, several input rows up to 4 per pass, or a wider one): a group of 2 to 8
//!   weight rows at a time against the f32 input, one accumulator per weight row and input
//!   row, so each input load serves the whole group.
//!
//! A width that is not a multiple of the vector step ends in a scalar tail.

use candle_core::{DType, Result, Tensor};

use super::isa::{self, Isa};
use super::par_row_groups;

/// The most input rows [`applies`] accepts, and the most one pass over the weight serves.
pub const MAX_ROWS: usize = 4;

/// With AVX-512, up to this width a single input row is multiplied by one weight row at a time:
/// its f16 copy (at most 16 KiB) stays in L1 and each thread reads its weight rows as one
/// sequential stream, which measured faster there than sharing the input among several rows.
/// With AVX2 that kernel converts the input again for every row (two conversions per eight
/// weights) and measured at half the memory bandwidth; the row-group kernel with an f32 input
/// (eight weight rows per pass) took a 2-layer decode's `lm_head` from 90 to 56 ms (AMD EPYC,
/// 2 threads). Wider inputs, more than one input row, and AVX2 take the row-group kernel.
const SINGLE_ROW_MAX_K: usize = 8192;

/// Which instruction set the kernel runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    /// 512-bit: `_mm512_cvtph_ps` and 16-wide FMA.
    Avx512,
    /// 256-bit: `_mm256_cvtph_ps` and 8-wide FMA.
    Avx2,
}

/// The kernels for path `isa` (clamped to the host's); none on [`Isa::Scalar`].
fn level(isa: Isa) -> Option<Level> {
    match isa.clamped() {
        Isa::Scalar => None,
        Isa::Avx2 => Some(Level::Avx2),
        Isa::Avx512 => Some(Level::Avx512),
    }
}

/// Whether [`matmul`] handles `x · wᵀ` here: a contiguous CPU f16 weight `[n, k]`, an f16
/// CPU input `[.., k]` (rank 2 or more) of 1 to [`MAX_ROWS`] rows (decode), neither of them
/// tracked for gradients (the result has no backward), and an active path other than
/// [`Isa::Scalar`] ([`isa::active`]). Otherwise the caller keeps candle's matmul.
pub fn applies(w: &Tensor, x: &Tensor) -> bool {
    applies_with(isa::active(), w, x)
}

/// [`applies`] on path `isa`.
fn applies_with(isa: Isa, w: &Tensor, x: &Tensor) -> bool {
    let rows = x.dims().iter().rev().skip(1).product::<usize>();
    !w.track_op()
        && !x.track_op()
        && w.dtype() == DType::F16
        && x.dtype() == DType::F16
        && w.device().is_cpu()
        && x.device().is_cpu()
        && x.rank() >= 2
        && (1..=MAX_ROWS).contains(&rows)
        && w.dims2().is_ok_and(|(_, k)| x.dims().last() == Some(&k))
        && w.is_contiguous()
        && level(isa).is_some()
}

/// `x · wᵀ` for a contiguous `[n, k]` f16 weight and an f16 input `[.., k]`, accumulated in
/// f32 and returned as `[.., n]` in f16 (check [`applies`] first: it is meant for decode rows;
/// more rows work but take one pass over the weight per [`MAX_ROWS`]). Other dtypes, widths
/// or layouts are refused with an error, and so is every input on [`Isa::Scalar`].
pub fn matmul(w: &Tensor, x: &Tensor) -> Result<Tensor> {
    matmul_with(isa::active(), w, x)
}

/// [`matmul`] on path `isa` (clamped to the host's).
fn matmul_with(isa: Isa, w: &Tensor, x: &Tensor) -> Result<Tensor> {
    let Some(level) = level(isa) else {
        candle_core::bail!("the f16 GEMV needs AVX2, FMA and F16C (path {isa} here)");
    };
    let (n, k) = w.dims2()?;
    let in_dims = x.dims().to_vec();
    if in_dims.last() != Some(&k) {
        candle_core::bail!("f16 GEMV: input {in_dims:?} does not end in {k}");
    }
    if w.dtype() != DType::F16 || x.dtype() != DType::F16 {
        candle_core::bail!(
            "f16 GEMV: needs an f16 weight and input, got {:?} and {:?}",
            w.dtype(),
            x.dtype()
        );
    }
    if !w.device().is_cpu() || !x.device().is_cpu() {
        candle_core::bail!(
            "f16 GEMV: needs CPU tensors, got {:?} and {:?}",
            w.device().location(),
            x.device().location()
        );
    }
    if !w.is_contiguous() {
        candle_core::bail!("f16 GEMV: the weight is not contiguous");
    }
    let rows = in_dims.iter().rev().skip(1).product::<usize>();
    let out_dims = super::output_dims(&in_dims, n);
    if rows == 0 || n == 0 || k == 0 {
        return Tensor::zeros(out_dims, x.dtype(), x.device());
    }
    let mut out = vec![0f32; rows * n];
    // The input is small (decode rows): copied out, so that only one storage lock is held.
    if rows == 1 && k <= SINGLE_ROW_MAX_K && level == Level::Avx512 {
        let xs = with_f16_bits(&x.contiguous()?, <[u16]>::to_vec)?;
        with_f16_bits(w, |bits| gemv_single(level, bits, &xs, &mut out))?;
    } else {
        let xs = x.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        with_f16_bits(w, |bits| {
            for (xg, yg) in xs.chunks(MAX_ROWS * k).zip(out.chunks_mut(MAX_ROWS * n)) {
                gemv(level, bits, k, xg, yg);
            }
        })?;
    }
    Tensor::from_vec(out, out_dims, x.device())?.to_dtype(x.dtype())
}

/// Calls `f` with the f16 values of contiguous CPU f16 tensor `t` as their `u16` bits,
/// straight from its storage (no copy), under the storage's read lock.
fn with_f16_bits<T>(t: &Tensor, f: impl FnOnce(&[u16]) -> T) -> Result<T> {
    super::fast_math::with_cpu_slice::<half::f16, _>(t, |data| {
        // SAFETY: `half::f16` is `#[repr(transparent)]` over `u16`, so the same pointer and
        // length describe the same memory as `u16` bit patterns; the slice borrows `data`,
        // which lives until the closure returns.
        let bits: &[u16] = unsafe { std::slice::from_raw_parts(data.as_ptr().cast(), data.len()) };
        f(bits)
    })
}

/// `y[r] = dot(w row r, x)` for one f16 input row `x` of width `k` and every row `r` of `w`
/// (`y` holds one value per row), one row at a time, rows split over the pool in chunks.
fn gemv_single(level: Level, w: &[u16], x: &[u16], y: &mut [f32]) {
    let k = x.len();
    let one = |r: usize, out: &mut [f32]| {
        if let (Some(o), Some(row)) = (out.first_mut(), w.get(r * k..(r + 1) * k)) {
            *o = dot_row(level, row, x);
        }
    };
    par_row_groups(y, 1, 1, one, one);
}

/// `y[i][r] = dot(w row r, x row i)` for the `m = x.len() / k` (1 to [`MAX_ROWS`]) input rows
/// in `x` and every row of `w`; `y` is `[m, n]`.
fn gemv(level: Level, w: &[u16], k: usize, x: &[f32], y: &mut [f32]) {
    // Weight rows per pass (`R`), from the in-cache rates of the kernels on Zen 4: eight
    // accumulator chains for one (wide) input row, and at most 8 accumulators with AVX2's 16
    // registers. Four input rows are bound by the FMA rate (four FMAs per weight vector)
    // whatever `R`.
    match (x.len() / k, level) {
        (1, _) => gemv_rows::<1, 8>(level, w, k, x, y),
        (2, _) => gemv_rows::<2, 4>(level, w, k, x, y),
        (3, Level::Avx512) => gemv_rows::<3, 4>(level, w, k, x, y),
        (3, Level::Avx2) => gemv_rows::<3, 2>(level, w, k, x, y),
        (4, Level::Avx512) => gemv_rows::<4, 4>(level, w, k, x, y),
        (4, Level::Avx2) => gemv_rows::<4, 2>(level, w, k, x, y),
        // Not reached: `matmul_with` passes 1 to `MAX_ROWS` rows.
        _ => {}
    }
}

/// [`gemv`] for `M` input rows, `R` weight rows per pass.
fn gemv_rows<const M: usize, const R: usize>(
    level: Level,
    w: &[u16],
    k: usize,
    x: &[f32],
    y: &mut [f32],
) {
    let n = y.len() / M;
    let xr: [&[f32]; M] = std::array::from_fn(|i| &x[i * k..(i + 1) * k]);
    let row = |r: usize| &w[r * k..(r + 1) * k];
    // The products land weight-row-major (`[n, M]`) so that each rayon task owns a contiguous
    // piece; one input row needs no transpose.
    let mut t = if M == 1 {
        Vec::new()
    } else {
        vec![0f32; n * M]
    };
    let dst = if M == 1 { &mut *y } else { &mut t[..] };
    par_row_groups(
        dst,
        M,
        R,
        |r, out| {
            let d: [[f32; M]; R] = dot_block(level, std::array::from_fn(|j| row(r + j)), xr);
            for (o, v) in out.chunks_exact_mut(M).zip(d) {
                o.copy_from_slice(&v);
            }
        },
        |r, out| {
            let [d] = dot_block::<M, 1>(level, [row(r)], xr);
            out.copy_from_slice(&d);
        },
    );
    if M > 1 {
        for (r, v) in t.chunks_exact(M).enumerate() {
            for (i, val) in v.iter().enumerate() {
                y[i * n + r] = *val;
            }
        }
    }
}

/// The dot product of one f16 weight row and one f16 input, over the shorter of them.
fn dot_row(level: Level, w: &[u16], x: &[u16]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        let k = w.len().min(x.len());
        // SAFETY: `level` returns a level only for a path at or below the host's (clamped),
        // whose features `isa::host` detected: AVX2, FMA and F16C, and AVX-512F for
        // `Level::Avx512`; both slices hold at least `k` values.
        unsafe {
            match level {
                Level::Avx512 => x86::dot_row_avx512(w, x, k),
                Level::Avx2 => x86::dot_row_avx2(w, x, k),
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (level, w, x);
        0.0
    }
}

/// The `R × M` dot products of `R` weight rows with `M` input rows, over the shortest of them.
fn dot_block<const M: usize, const R: usize>(
    level: Level,
    w: [&[u16]; R],
    x: [&[f32]; M],
) -> [[f32; M]; R] {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: as in `dot_row`, the level's features were detected on this CPU; the
        // kernels read no further than the shortest slice.
        unsafe {
            match level {
                Level::Avx512 => x86::dot_block_avx512(w, x),
                Level::Avx2 => x86::dot_block_avx2(w, x),
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (level, w, x);
        [[0.0; M]; R]
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use crate::kernels::x86::hsum;
    use std::arch::x86_64::*;

    /// The length of the shortest slice.
    fn shortest<const M: usize, const R: usize>(w: &[&[u16]; R], x: &[&[f32]; M]) -> usize {
        let lw = w.iter().map(|s| s.len()).min().unwrap_or(0);
        let lx = x.iter().map(|s| s.len()).min().unwrap_or(0);
        lw.min(lx)
    }

    /// One f16 bit pattern as f32.
    ///
    /// # Safety
    /// The CPU must have F16C.
    #[inline]
    #[target_feature(enable = "f16c")]
    unsafe fn f16_to_f32(bits: u16) -> f32 {
        _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(bits))))
    }

    /// The scalar dot product of `w[from..k]` and `x[from..k]`.
    ///
    /// # Safety
    /// The CPU must have F16C.
    #[inline]
    #[target_feature(enable = "f16c")]
    unsafe fn tail(w: &[u16], x: &[f32], from: usize, k: usize) -> f32 {
        let mut s = 0f32;
        for (wb, xv) in w[from..k].iter().zip(&x[from..k]) {
            s += f16_to_f32(*wb) * xv;
        }
        s
    }

    /// The scalar dot product of `w[from..k]` and `x[from..k]`, both f16.
    ///
    /// # Safety
    /// The CPU must have F16C.
    #[inline]
    #[target_feature(enable = "f16c")]
    unsafe fn tail_f16(w: &[u16], x: &[u16], from: usize, k: usize) -> f32 {
        let mut s = 0f32;
        for (wb, xb) in w[from..k].iter().zip(&x[from..k]) {
            s += f16_to_f32(*wb) * f16_to_f32(*xb);
        }
        s
    }

    /// Adds the scalar dot products over `full..k` of each weight row with each input.
    ///
    /// # Safety
    /// The CPU must have F16C.
    #[target_feature(enable = "f16c")]
    unsafe fn add_tails<const M: usize, const R: usize>(
        out: &mut [[f32; M]; R],
        w: &[&[u16]; R],
        x: &[&[f32]; M],
        full: usize,
        k: usize,
    ) {
        for (o, wr) in out.iter_mut().zip(w) {
            for (oi, xi) in o.iter_mut().zip(x) {
                *oi += tail(wr, xi, full, k);
            }
        }
    }

    /// One weight row against one input over `k` values, with four accumulator chains of 16.
    ///
    /// # Safety
    /// The CPU must have AVX-512F, AVX2, FMA and F16C; both slices must hold `k` values.
    #[target_feature(enable = "avx512f,avx2,fma,f16c")]
    pub(super) unsafe fn dot_row_avx512(w: &[u16], x: &[u16], k: usize) -> f32 {
        let full = k / 64 * 64;
        let mut acc = [_mm512_setzero_ps(); 4];
        let mut c = 0;
        while c < full {
            // In bounds: `c + 64 <= full <= k`.
            for (j, a) in acc.iter_mut().enumerate() {
                let p = c + 16 * j;
                let wv = _mm512_cvtph_ps(_mm256_loadu_si256(w.as_ptr().add(p).cast()));
                let xv = _mm512_cvtph_ps(_mm256_loadu_si256(x.as_ptr().add(p).cast()));
                *a = _mm512_fmadd_ps(wv, xv, *a);
            }
            c += 64;
        }
        let s = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
        _mm512_reduce_add_ps(s) + tail_f16(w, x, full, k)
    }

    /// [`dot_row_avx512`] with four accumulator chains of 8.
    ///
    /// # Safety
    /// The CPU must have AVX2, FMA and F16C; both slices must hold `k` values.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn dot_row_avx2(w: &[u16], x: &[u16], k: usize) -> f32 {
        let full = k / 32 * 32;
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut c = 0;
        while c < full {
            // In bounds: `c + 32 <= full <= k`.
            for (j, a) in acc.iter_mut().enumerate() {
                let p = c + 8 * j;
                let wv = _mm256_cvtph_ps(_mm_loadu_si128(w.as_ptr().add(p).cast()));
                let xv = _mm256_cvtph_ps(_mm_loadu_si128(x.as_ptr().add(p).cast()));
                *a = _mm256_fmadd_ps(wv, xv, *a);
            }
            c += 32;
        }
        let s = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
        hsum(s) + tail_f16(w, x, full, k)
    }

    /// `R` weight rows against `M` inputs, 16 values a step: one input load per step for all
    /// `R` rows, one weight load per step for all `M` inputs, `R × M` accumulator chains.
    ///
    /// # Safety
    /// The CPU must have AVX-512F, AVX2, FMA and F16C. Reads stop at the shortest slice.
    #[target_feature(enable = "avx512f,avx2,fma,f16c")]
    pub(super) unsafe fn dot_block_avx512<const M: usize, const R: usize>(
        w: [&[u16]; R],
        x: [&[f32]; M],
    ) -> [[f32; M]; R] {
        let k = shortest(&w, &x);
        let full = k / 16 * 16;
        let mut acc = [[_mm512_setzero_ps(); M]; R];
        let mut xv = [_mm512_setzero_ps(); M];
        let mut c = 0;
        while c < full {
            // In bounds: `c + 16 <= full <= k`, and every slice holds at least `k` values.
            for i in 0..M {
                xv[i] = _mm512_loadu_ps(x[i].as_ptr().add(c));
            }
            for r in 0..R {
                let wv = _mm512_cvtph_ps(_mm256_loadu_si256(w[r].as_ptr().add(c).cast()));
                for i in 0..M {
                    acc[r][i] = _mm512_fmadd_ps(wv, xv[i], acc[r][i]);
                }
            }
            c += 16;
        }
        let mut out = [[0f32; M]; R];
        for (o, a) in out.iter_mut().zip(&acc) {
            for (oi, ai) in o.iter_mut().zip(a) {
                *oi = _mm512_reduce_add_ps(*ai);
            }
        }
        if full < k {
            add_tails(&mut out, &w, &x, full, k);
        }
        out
    }

    /// [`dot_block_avx512`] with 256-bit vectors, 8 values a step.
    ///
    /// # Safety
    /// The CPU must have AVX2, FMA and F16C. Reads stop at the shortest slice.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn dot_block_avx2<const M: usize, const R: usize>(
        w: [&[u16]; R],
        x: [&[f32]; M],
    ) -> [[f32; M]; R] {
        let k = shortest(&w, &x);
        let full = k / 8 * 8;
        let mut acc = [[_mm256_setzero_ps(); M]; R];
        let mut xv = [_mm256_setzero_ps(); M];
        let mut c = 0;
        while c < full {
            // In bounds: `c + 8 <= full <= k`, and every slice holds at least `k` values.
            for i in 0..M {
                xv[i] = _mm256_loadu_ps(x[i].as_ptr().add(c));
            }
            for r in 0..R {
                let wv = _mm256_cvtph_ps(_mm_loadu_si128(w[r].as_ptr().add(c).cast()));
                for i in 0..M {
                    acc[r][i] = _mm256_fmadd_ps(wv, xv[i], acc[r][i]);
                }
            }
            c += 8;
        }
        let mut out = [[0f32; M]; R];
        for (o, a) in out.iter_mut().zip(&acc) {
            for (oi, ai) in o.iter_mut().zip(a) {
                *oi = hsum(*ai);
            }
        }
        if full < k {
            add_tails(&mut out, &w, &x, full, k);
        }
        out
    }
}

#[cfg(test)]
mod tests;
