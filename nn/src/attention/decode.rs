//! Attention for a few query rows at a time (decode), in one pass over the key/value cache.
//!
//! The general path ([`crate::attention::scaled_dot_product_attention`]) converts the whole
//! cached `k` to f32 each step, runs two small batched matmuls and an f16 softmax round trip:
//! 2.2 ms per layer of a 6B model (32 heads of 128) at 300 cached positions and 15.5 ms at 2000 (two threads). Here each
//! (batch, head) task reads its keys and values once, straight from the cache's storage (f16
//! or f32, any row strides), a tile of rows at a time widened to f32: the scores, the softmax
//! and the weighted sum of the values are all in f32.

use candle_core::{DType, Result, Storage, Tensor};
use rayon::prelude::*;

use crate::kernels::fast_math::simd_kernel;

/// The most query rows (per batch row and head) this path takes; more go to the batched
/// matmuls, which reuse each key across rows better.
pub const MAX_QUERIES: usize = 16;

/// Whether [`attention`] handles these inputs: untracked CPU tensors (there is no backward),
/// `q` `[B, H, Sq, D]` with 1 to [`MAX_QUERIES`] rows, `k` and `v` `[B, H, Sk, D]` in f16 or
/// f32 with unit stride along `D` (views of a cache buffer qualify), and a mask, if any, that
/// broadcasts to `[B, H, Sq, Sk]`.
pub fn applies(q: &Tensor, k: &Tensor, v: &Tensor, mask: Option<&Tensor>) -> bool {
    let on_cpu = |t: &Tensor| t.device().is_cpu() && !t.track_op();
    let kv_ok = |t: &Tensor| {
        matches!(t.dtype(), DType::F16 | DType::F32)
            && t.layout().stride().last() == Some(&1)
            && t.rank() == 4
    };
    let (Ok((b, h, sq, d)), Ok((kb, kh, sk, kd))) = (q.dims4(), k.dims4()) else {
        return false;
    };
    on_cpu(q)
        && on_cpu(k)
        && on_cpu(v)
        && mask.is_none_or(|m| on_cpu(m) && m.broadcast_as((b, h, sq, sk)).is_ok())
        && (1..=MAX_QUERIES).contains(&sq)
        && (kb, kh, kd) == (b, h, d)
        && v.dims() == k.dims()
        && kv_ok(k)
        && kv_ok(v)
}

/// `softmax(q·kᵀ·scale + mask)·v` for inputs [`applies`] accepts, in f32, returned in `q`'s
/// dtype `[B, H, Sq, D]`. Other inputs are refused with an error.
pub fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    scale: f64,
    mask: Option<&Tensor>,
) -> Result<Tensor> {
    match try_attention(q, k, v, scale, mask)? {
        Some(out) => Ok(out),
        None => candle_core::bail!(
            "decode attention: unsupported inputs q {:?} {:?}, k {:?} {:?}, v {:?} {:?}",
            q.dims(),
            q.dtype(),
            k.dims(),
            k.dtype(),
            v.dims(),
            v.dtype()
        ),
    }
}

/// [`attention`] when [`applies`] accepts the inputs, `None` (nothing computed) otherwise: one
/// check for callers that fall back to another path.
pub fn try_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    scale: f64,
    mask: Option<&Tensor>,
) -> Result<Option<Tensor>> {
    if !applies(q, k, v, mask) {
        return Ok(None);
    }
    let (b, h, sq, d) = q.dims4()?;
    let sk = k.dim(2)?;
    // The queries and the mask are small next to the cache: copied out as f32.
    let qs = (q.to_dtype(DType::F32)? * scale)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    let mask = match mask {
        Some(m) => Some(
            m.to_dtype(DType::F32)?
                .broadcast_as((b, h, sq, sk))?
                .flatten_all()?
                .to_vec1::<f32>()?,
        ),
        None => None,
    };
    let mut out = vec![0f32; b * h * sq * d];
    with_rows(k, |keys| {
        with_rows(v, |values| {
            out.par_chunks_mut(sq * d)
                .enumerate()
                .for_each(|(bh, out)| {
                    let (bi, hi) = (bh / h, bh % h);
                    head_attention(
                        &qs[bh * sq * d..(bh + 1) * sq * d],
                        mask.as_deref()
                            .map(|m| &m[bh * sq * sk..(bh + 1) * sq * sk]),
                        keys.head(bi, hi),
                        values.head(bi, hi),
                        (sk, d),
                        out,
                    );
                });
        })
    })??;
    Tensor::from_vec(out, (b, h, sq, d), q.device())?
        .to_dtype(q.dtype())
        .map(Some)
}

/// Stored values, f16 or f32.
#[derive(Clone, Copy)]
enum Values<'a> {
    F16(&'a [half::f16]),
    F32(&'a [f32]),
}

/// Where a `[B, H, S, D]` tensor's rows lie in its storage.
struct Rows<'a> {
    values: Values<'a>,
    start: usize,
    /// Strides of the batch, head and position dimensions.
    strides: [usize; 3],
    /// `S` and `D`.
    len: usize,
    width: usize,
}

/// One (batch, head) pair's rows: row `j` is `values[j·stride..j·stride + D]`.
#[derive(Clone, Copy)]
struct HeadRows<'a> {
    values: Values<'a>,
    stride: usize,
}

impl<'a> Rows<'a> {
    /// The rows of head `h` of batch row `b` (the span was checked against the storage by
    /// [`with_rows`]; were it not there, the rows would read as empty and give zeros).
    fn head(&self, b: usize, h: usize) -> HeadRows<'a> {
        let from = self.start + b * self.strides[0] + h * self.strides[1];
        let span = from..from + self.len.saturating_sub(1) * self.strides[2] + self.width;
        let values = match self.values {
            Values::F16(v) => Values::F16(v.get(span).unwrap_or(&[])),
            Values::F32(v) => Values::F32(v.get(span).unwrap_or(&[])),
        };
        HeadRows {
            values,
            stride: self.strides[2],
        }
    }
}

/// Calls `f` with the rows of `t` (`[B, H, S, D]`, f16 or f32, unit stride along `D`) under its
/// storage's read lock.
fn with_rows<T>(t: &Tensor, f: impl FnOnce(Rows<'_>) -> T) -> Result<T> {
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cpu(cpu) = &*storage else {
        candle_core::bail!("decode attention: the tensor is not on the CPU");
    };
    let (b, h, n, d) = t.dims4()?;
    let s = layout.stride();
    let (Some(&sb), Some(&sh), Some(&ss)) = (s.first(), s.get(1), s.get(2)) else {
        candle_core::bail!("decode attention: expected a rank-4 tensor");
    };
    let (values, stored) = match t.dtype() {
        DType::F16 => {
            let v = cpu.as_slice::<half::f16>()?;
            (Values::F16(v), v.len())
        }
        DType::F32 => {
            let v = cpu.as_slice::<f32>()?;
            (Values::F32(v), v.len())
        }
        other => candle_core::bail!("decode attention: unsupported dtype {other:?}"),
    };
    let end = layout.start_offset()
        + b.saturating_sub(1) * sb
        + h.saturating_sub(1) * sh
        + n.saturating_sub(1) * ss
        + d;
    if end > stored {
        candle_core::bail!("decode attention: the layout reaches past the storage");
    }
    Ok(f(Rows {
        values,
        start: layout.start_offset(),
        strides: [sb, sh, ss],
        len: n,
        width: d,
    }))
}

/// One (batch, head) pair's attention: `q` `[Sq, D]` (already scaled), `mask` `[Sq, Sk]`,
/// `Sk` keys and values; writes `[Sq, D]` into `out` (zeroed).
fn head_attention(
    q: &[f32],
    mask: Option<&[f32]>,
    keys: HeadRows<'_>,
    values: HeadRows<'_>,
    (sk, d): (usize, usize),
    out: &mut [f32],
) {
    if d == 0 || sk == 0 {
        return;
    }
    let sq = q.len() / d;
    let mut scores = vec![0f32; sq * sk];
    for (q, s) in q.chunks_exact(d).zip(scores.chunks_exact_mut(sk)) {
        match keys.values {
            Values::F16(k) => dot_rows_f16(q, k, keys.stride, s),
            Values::F32(k) => dot_rows_f32(q, k, keys.stride, s),
        }
    }
    if let Some(m) = mask {
        for (s, m) in scores.iter_mut().zip(m) {
            *s += m;
        }
    }
    let mut probs = vec![0f32; sq * sk];
    crate::softmax::softmax_rows(&scores, &mut probs, sk);
    for (p, o) in probs.chunks_exact(sk).zip(out.chunks_exact_mut(d)) {
        match values.values {
            Values::F16(v) => weighted_sum_f16(p, v, values.stride, o),
            Values::F32(v) => weighted_sum_f32(p, v, values.stride, o),
        }
    }
}

/// A stored value widened to f32.
trait Widen: Copy {
    fn widen(self) -> f32;
}

impl Widen for f32 {
    #[inline(always)]
    fn widen(self) -> f32 {
        self
    }
}

impl Widen for half::f16 {
    #[inline(always)]
    fn widen(self) -> f32 {
        crate::kernels::fast_math::f16_bits_to_f32(self.to_bits())
    }
}

/// `scores[j] = q · row j` for rows `stride` apart in `rows` (each `q.len()` wide).
#[inline(always)]
fn dot_rows_kernel<T: Widen>(q: &[f32], rows: &[T], stride: usize, scores: &mut [f32]) {
    let d = q.len();
    for (j, s) in scores.iter_mut().enumerate() {
        let Some(row) = rows.get(j * stride..j * stride + d) else {
            return;
        };
        let mut acc = [0f32; 16];
        let (qc, rc) = (q.chunks_exact(16), row.chunks_exact(16));
        let tail: f32 = qc
            .remainder()
            .iter()
            .zip(rc.remainder())
            .map(|(a, b)| a * b.widen())
            .sum();
        for (a, b) in qc.zip(rc) {
            for ((acc, x), y) in acc.iter_mut().zip(a).zip(b) {
                *acc += x * y.widen();
            }
        }
        *s = acc.iter().sum::<f32>() + tail;
    }
}

simd_kernel!(
    /// [`dot_rows_kernel`] for f16 rows on the active instruction-set path ([`crate::kernels::isa`]).
    fn dot_rows_f16, dot_rows_f16_with => dot_rows_kernel(q: &[f32], rows: &[half::f16], stride: usize, scores: &mut [f32])
);

simd_kernel!(
    /// [`dot_rows_kernel`] for f32 rows on the active instruction-set path ([`crate::kernels::isa`]).
    fn dot_rows_f32, dot_rows_f32_with => dot_rows_kernel(q: &[f32], rows: &[f32], stride: usize, scores: &mut [f32])
);

/// `out += Σ_j p[j] · row j` for rows `stride` apart in `rows` (each `out.len()` wide).
#[inline(always)]
fn weighted_sum_kernel<T: Widen>(p: &[f32], rows: &[T], stride: usize, out: &mut [f32]) {
    let d = out.len();
    for (j, &w) in p.iter().enumerate() {
        let Some(row) = rows.get(j * stride..j * stride + d) else {
            return;
        };
        for (o, &x) in out.iter_mut().zip(row) {
            *o += w * x.widen();
        }
    }
}

simd_kernel!(
    /// [`weighted_sum_kernel`] for f16 rows on the active instruction-set path ([`crate::kernels::isa`]).
    fn weighted_sum_f16, weighted_sum_f16_with => weighted_sum_kernel(p: &[f32], rows: &[half::f16], stride: usize, out: &mut [f32])
);

simd_kernel!(
    /// [`weighted_sum_kernel`] for f32 rows on the active instruction-set path ([`crate::kernels::isa`]).
    fn weighted_sum_f32, weighted_sum_f32_with => weighted_sum_kernel(p: &[f32], rows: &[f32], stride: usize, out: &mut [f32])
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attention::composed_attention;
    use candle_core::{Device, Var};
    use visualglm_testing::max_abs_diff;

    /// Keys and values as a KV cache holds them: a `[B, H, S, D]` view of a longer buffer.
    fn cached(b: usize, h: usize, s: usize, d: usize, dtype: DType) -> Result<Tensor> {
        Tensor::randn(0f32, 1.0, (b, h, s + 7, d), &Device::Cpu)?
            .to_dtype(dtype)?
            .narrow(2, 3, s)
    }

    #[test]
    fn every_path_matches_the_baseline_kernels() {
        use crate::kernels::fast_math::path_tests::{check_every_path, values};
        // Head widths with and without a 16-lane tail; rows `stride` apart (a cache view).
        for (d, rows) in [(1usize, 3usize), (5, 1), (37, 9), (128, 17), (133, 4)] {
            let stride = d + 3;
            let q = values(d, d as u64, 1.0);
            let p = values(rows, 50 + rows as u64, 1.0);
            let keys = values(rows * stride, 99, 2.0);
            let keys16: Vec<half::f16> = keys.iter().map(|&v| half::f16::from_f32(v)).collect();
            let what = |name: &str| format!("{name} d={d} rows={rows}");

            let mut want = vec![0f32; rows];
            dot_rows_kernel(&q, &keys, stride, &mut want);
            check_every_path(&what("dot_rows_f32"), &want, 1e-6, |isa| {
                let mut got = vec![0f32; rows];
                dot_rows_f32_with(isa, &q, &keys, stride, &mut got);
                got
            });
            dot_rows_kernel(&q, &keys16, stride, &mut want);
            check_every_path(&what("dot_rows_f16"), &want, 1e-6, |isa| {
                let mut got = vec![0f32; rows];
                dot_rows_f16_with(isa, &q, &keys16, stride, &mut got);
                got
            });

            let start = values(d, 7, 1.0);
            let mut want = start.clone();
            weighted_sum_kernel(&p, &keys, stride, &mut want);
            check_every_path(&what("weighted_sum_f32"), &want, 1e-6, |isa| {
                let mut got = start.clone();
                weighted_sum_f32_with(isa, &p, &keys, stride, &mut got);
                got
            });
            let mut want = start.clone();
            weighted_sum_kernel(&p, &keys16, stride, &mut want);
            check_every_path(&what("weighted_sum_f16"), &want, 1e-6, |isa| {
                let mut got = start.clone();
                weighted_sum_f16_with(isa, &p, &keys16, stride, &mut got);
                got
            });
        }
    }

    #[test]
    fn matches_the_batched_matmul_path() -> Result<()> {
        let dev = Device::Cpu;
        for dtype in [DType::F32, DType::F16] {
            let tol = if dtype == DType::F32 { 2e-6 } else { 4e-3 };
            for (b, h, sq, sk, d) in [
                (1usize, 1usize, 1usize, 1usize, 8usize),
                (2, 3, 1, 5, 8),
                (1, 4, 3, 131, 128),
                (2, 2, MAX_QUERIES, 257, 20),
            ] {
                let q = Tensor::randn(0f32, 1.0, (b, h, sq, d), &dev)?.to_dtype(dtype)?;
                let k = cached(b, h, sk, d, dtype)?;
                let v = cached(b, h, sk, d, dtype)?;
                // A prefix-LM style mask: the last query row may not see the first position.
                let mut m = vec![0f32; sq * sk];
                if sk > 1 {
                    m[(sq - 1) * sk] = f32::NEG_INFINITY;
                }
                let mask = Tensor::from_vec(m, (1, 1, sq, sk), &dev)?;
                for mask in [None, Some(&mask)] {
                    assert!(applies(&q, &k, &v, mask));
                    let scale = 1.0 / (d as f64).sqrt();
                    let got = attention(&q, &k, &v, scale, mask)?;
                    let want = composed_attention(&q, &k, &v, scale, mask)?;
                    assert_eq!(got.dims(), &[b, h, sq, d]);
                    assert_eq!(got.dtype(), dtype);
                    let diff = max_abs_diff(&got, &want);
                    assert!(diff <= tol, "{dtype:?} {:?}: {diff}", (b, h, sq, sk, d));
                }
            }
        }
        Ok(())
    }

    #[test]
    fn refuses_what_it_does_not_handle() -> Result<()> {
        let dev = Device::Cpu;
        let q = Tensor::randn(0f32, 1.0, (1, 2, 1, 8), &dev)?;
        let k = Tensor::randn(0f32, 1.0, (1, 2, 4, 8), &dev)?;
        // Too many query rows, a key stride of 2 along D, mismatched heads, a wrong mask.
        let many = Tensor::randn(0f32, 1.0, (1, 2, MAX_QUERIES + 1, 8), &dev)?;
        assert!(!applies(&many, &k, &k, None));
        let strided = Tensor::randn(0f32, 1.0, (1, 2, 8, 4), &dev)?.transpose(2, 3)?;
        assert!(!applies(&q, &strided, &strided, None));
        let heads = Tensor::randn(0f32, 1.0, (1, 3, 4, 8), &dev)?;
        assert!(!applies(&q, &heads, &heads, None));
        let mask = Tensor::zeros((1, 1, 1, 5), DType::F32, &dev)?;
        assert!(!applies(&q, &k, &k, Some(&mask)));
        assert!(attention(&q, &heads, &heads, 1.0, None).is_err());
        // A tracked query keeps the differentiable path, and its gradient flows.
        let v = Var::randn(0f32, 1.0, (1, 2, 1, 8), &dev)?;
        assert!(!applies(v.as_tensor(), &k, &k, None));
        let y = crate::scaled_dot_product_attention(v.as_tensor(), &k, &k, 0.5, None)?;
        let g = y.sum_all()?.backward()?;
        assert!(g.get(v.as_tensor()).is_some());
        Ok(())
    }
}
