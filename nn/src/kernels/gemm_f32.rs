//! Dense f32 `x·Wᵀ + b` on the CPU for many rows (prefill, image tokens), as one independent
//! single-threaded product per thread.
//!
//! candle's matmul zeroes the output on one thread, then hands the product to the `gemm`
//! crate's own threading, which meets at a barrier after every packed block; the bias is one
//! more pass over the output. Here the output is split into one block per thread (by rows when
//! there are many, else by columns); each thread writes its block's bias, or zeros, and
//! accumulates its product onto it, single-threaded. On two threads, in lockstep with the
//! build before it, image encoding got 4–5 % faster (`BENCHMARKS.md`); more threads are
//! untested for speed.
//!
//! There is no instruction-set specific code here: the `gemm` crate picks its own
//! instructions (as it does inside candle's matmul), so this split runs the same on every
//! path of [`super::isa`], `VISUALGLM_CPU=scalar` included.

use std::mem::MaybeUninit;
use std::ops::Range;

use candle_core::{Result, Tensor};

use super::fast_math::with_f32;
use super::{output_dims, SWAP_MAX_ROWS};
use rayon::prelude::*;

/// The fewest rows this path takes: below, [`crate::Linear`] computes `(W·xᵀ)ᵀ` with candle's
/// matmul, which was faster for few rows (measured: 8–64).
pub const MIN_ROWS: usize = SWAP_MAX_ROWS + 1;

/// The fewest rows of a block when the output is split by rows: with fewer rows per thread it
/// is split by columns instead (measured on two threads: 2,056 rows gain 5–9 % split by rows,
/// 256–300 rows 2–5 % split by columns).
pub const MIN_BLOCK_ROWS: usize = 512;

/// Column blocks are multiples of this many columns (the width of the `gemm` crate's AVX
/// micro-tile along the output row), so only the last block has a partial tile.
const COLUMN_ALIGN: usize = 16;

/// Whether [`matmul`] takes these operands: untracked f32 CPU tensors, `weight` `[N, K]` and
/// `x` `[.., K]` contiguous with at least [`MIN_ROWS`] rows, and `bias`, if any, `[N]`.
pub fn applies(weight: &Tensor, bias: Option<&Tensor>, x: &Tensor) -> bool {
    let plain = super::fast_math::fused_applies;
    let Ok((n, k)) = weight.dims2() else {
        return false;
    };
    plain(weight)
        && plain(x)
        && k > 0
        && x.dims().last() == Some(&k)
        && x.elem_count() / k >= MIN_ROWS
        && bias.is_none_or(|b| plain(b) && b.dims() == [n])
}

/// `x·Wᵀ + bias` for operands [`applies`] accepts, shaped like `x` with `N` last; other
/// operands are refused with an error.
pub fn matmul(weight: &Tensor, bias: Option<&Tensor>, x: &Tensor) -> Result<Tensor> {
    if !applies(weight, bias, x) {
        candle_core::bail!(
            "f32 gemm: unsupported operands weight {:?} {:?}, x {:?} {:?}",
            weight.dims(),
            weight.dtype(),
            x.dims(),
            x.dtype()
        );
    }
    let (n, k) = weight.dims2()?;
    let m = x.elem_count() / k;
    let threads = rayon::current_num_threads();
    let mut out: Vec<f32> = Vec::with_capacity(m * n);
    with_f32(weight, |w| {
        with_f32(x, |xs| match bias {
            Some(b) => with_f32(b, |b| {
                fill_products(&mut out, xs, w, Some(b), (m, n, k), threads)
            }),
            None => {
                fill_products(&mut out, xs, w, None, (m, n, k), threads);
                Ok(())
            }
        })
    })???;
    Tensor::from_vec(out, output_dims(x.dims(), n), x.device())
}

/// The output blocks, one per thread: a grid of `(rows, columns)` ranges that covers `m × n`
/// once, with as many row parts as keep [`MIN_BLOCK_ROWS`] rows each (and divide the thread
/// count), and the columns split among the rest.
fn blocks(m: usize, n: usize, threads: usize) -> Vec<(Range<usize>, Range<usize>)> {
    let split = |len: usize, parts: usize, align: usize| -> Vec<Range<usize>> {
        let step = len.div_ceil(parts).div_ceil(align).max(1) * align;
        (0..len)
            .step_by(step)
            .map(|start| start..(start + step).min(len))
            .collect()
    };
    let threads = threads.max(1);
    let row_parts = (1..=threads)
        .rev()
        .find(|&p| threads.is_multiple_of(p) && m / p >= MIN_BLOCK_ROWS)
        .unwrap_or(1);
    let cols = split(n, threads / row_parts, COLUMN_ALIGN);
    split(m, row_parts, 1)
        .into_iter()
        .flat_map(|r| cols.iter().map(move |c| (r.clone(), c.clone())))
        .collect()
}

/// The output's base pointer, shared by the tasks that write its disjoint blocks.
#[derive(Clone, Copy)]
struct Output(*mut f32);

impl Output {
    /// The pointer (a method, so that closures capture the whole `Send` wrapper).
    fn ptr(self) -> *mut f32 {
        self.0
    }
}

// SAFETY: the pointer is only used by `fill_products`' tasks, each of which writes a block of
// the output that no other task touches (the blocks are disjoint), while `out` is borrowed
// mutably by `fill_products` and so not used elsewhere.
unsafe impl Send for Output {}
// SAFETY: as above: concurrent tasks never access the same element.
unsafe impl Sync for Output {}

/// Sets `out` (empty, capacity ≥ `m·n`) to `xs·wᵀ + bias`, `[m, n]` row-major, one block per
/// thread. The operands' lengths must be `m·k`, `n·k` and `n`; otherwise `out` is left empty.
fn fill_products(
    out: &mut Vec<f32>,
    xs: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    (m, n, k): (usize, usize, usize),
    threads: usize,
) {
    if xs.len() != m * k
        || w.len() != n * k
        || bias.is_some_and(|b| b.len() != n)
        || out.capacity() < m * n
        || m * n == 0
    {
        return;
    }
    let spare: &mut [MaybeUninit<f32>] = out.spare_capacity_mut();
    let base = Output(spare.as_mut_ptr().cast::<f32>());
    blocks(m, n, threads)
        .into_par_iter()
        .for_each(|(rows, cols)| {
            let base = base.ptr();
            let width = cols.len();
            // SAFETY: `base` points to at least `m·n` writable f32 slots (capacity checked
            // above). This task alone accesses rows `rows` × columns `cols` of the `[m, n]`
            // output (the blocks are disjoint), and initializes each slot here with a plain
            // write before `gemm` reads it.
            unsafe {
                for r in rows.clone() {
                    let row = base.add(r * n + cols.start);
                    for c in 0..width {
                        row.add(c).write(bias.map_or(0.0, |b| b[cols.start + c]));
                    }
                }
                // dst[r, c] += Σ_t x[r, t]·w[c, t]: x row-major `[m, k]`, `wᵀ` read from
                // `w` `[n, k]` (column c of wᵀ is row c of w). Every index gemm touches lies
                // in `xs`, `w` or this task's block, whose lengths were checked above.
                gemm::gemm(
                    rows.len(),
                    width,
                    k,
                    base.add(rows.start * n + cols.start),
                    1,
                    n as isize,
                    true,
                    xs.as_ptr().add(rows.start * k),
                    1,
                    k as isize,
                    w.as_ptr().add(cols.start * k),
                    k as isize,
                    1,
                    1.0,
                    1.0,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
            }
        });
    // SAFETY: the blocks cover all `m·n` slots, and every task above initialized its block
    // and has finished (`for_each` returns when all tasks are done).
    unsafe { out.set_len(m * n) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Var};
    use visualglm_testing::max_abs_diff;

    /// candle's product and bias add, the reference.
    fn reference(w: &Tensor, bias: Option<&Tensor>, x: &Tensor) -> Result<Tensor> {
        let y = x.broadcast_matmul(&w.t()?)?;
        match bias {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }

    #[test]
    fn blocks_cover_the_output_once() {
        for (m, n, threads) in [
            (2056, 6144, 2),
            (257, 1408, 2),
            (100, 30, 4),
            (65, 7, 3),
            (5000, 17, 8),
            (70, 100, 1),
            (2056, 1408, 16),
            (600, 40, 6),
        ] {
            let mut seen = vec![0u8; m * n];
            let blocks = blocks(m, n, threads);
            assert!(blocks.len() <= threads.max(1), "{m}x{n}: {blocks:?}");
            for (rows, cols) in blocks {
                assert!(cols.start % COLUMN_ALIGN == 0 || rows.len() < m);
                for r in rows {
                    for c in cols.clone() {
                        seen[r * n + c] += 1;
                    }
                }
            }
            assert!(seen.iter().all(|&s| s == 1), "{m}x{n} on {threads} threads");
        }
        // Many rows per thread split by rows, fewer by columns, and a grid in between.
        assert!(blocks(2056, 6144, 2).iter().all(|(_, c)| c.len() == 6144));
        assert!(blocks(257, 1408, 2).iter().all(|(r, _)| r.len() == 257));
        let grid = blocks(2056, 1408, 16);
        assert_eq!(grid.len(), 16);
        assert!(grid.iter().all(|(r, _)| r.len() == 514));
    }

    /// `x·wᵀ + bias` one value at a time, accumulated in f64: the scalar reference.
    fn scalar_reference(w: &Tensor, bias: Option<&Tensor>, x: &Tensor) -> Result<Tensor> {
        let (n, k) = w.dims2()?;
        let ws = w.flatten_all()?.to_vec1::<f32>()?;
        let xs = x.flatten_all()?.to_vec1::<f32>()?;
        let bs = bias.map(|b| b.to_vec1::<f32>()).transpose()?;
        let mut out = Vec::with_capacity(xs.len() / k * n);
        for xr in xs.chunks_exact(k) {
            for (c, wr) in ws.chunks_exact(k).enumerate() {
                let dot: f64 = wr
                    .iter()
                    .zip(xr)
                    .map(|(a, b)| f64::from(*a) * f64::from(*b))
                    .sum();
                out.push((dot + bs.as_ref().map_or(0.0, |b| f64::from(b[c]))) as f32);
            }
        }
        Tensor::from_vec(out, output_dims(x.dims(), n), x.device())
    }

    #[test]
    fn matches_the_scalar_reference_on_every_path() -> Result<()> {
        // One code path whatever `isa::active()` says (the `gemm` crate dispatches itself):
        // rows split by rows and by columns, odd widths (partial tiles).
        eprintln!(
            "gemm_f32: one path for all of {:?} (the gemm crate's own dispatch)",
            crate::kernels::isa::supported_paths()
        );
        let dev = &Device::Cpu;
        for (dims, n, k) in [(vec![2, 600, 37], 53, 37), (vec![97, 129], 31, 129)] {
            let x = Tensor::randn(0f32, 1.0, dims.as_slice(), dev)?;
            let w = Tensor::randn(0f32, 0.2, (n, k), dev)?;
            let b = Tensor::randn(0f32, 1.0, n, dev)?;
            let got = matmul(&w, Some(&b), &x)?;
            let want = scalar_reference(&w, Some(&b), &x)?;
            assert!(max_abs_diff(&got, &want) < 1e-4, "{dims:?} x [{n}, {k}]");
        }
        Ok(())
    }

    #[test]
    fn row_and_column_blocks_match_candle_with_and_without_bias() -> Result<()> {
        let dev = &Device::Cpu;
        // 1100 rows split by rows on two threads; 70 and 300 by columns (with a partial
        // tile); a 3-D input keeps its leading dimensions.
        for (dims, n, k) in [
            (vec![1100, 48], 40, 48),
            (vec![70, 33], 50, 33),
            (vec![3, 100, 64], 37, 64),
        ] {
            let x = Tensor::randn(0f32, 1.0, dims.as_slice(), dev)?;
            let w = Tensor::randn(0f32, 0.2, (n, k), dev)?;
            let b = Tensor::randn(0f32, 1.0, n, dev)?;
            for bias in [Some(&b), None] {
                assert!(applies(&w, bias, &x));
                let got = matmul(&w, bias, &x)?;
                let want = reference(&w, bias, &x)?;
                assert_eq!(got.dims(), want.dims());
                assert!(max_abs_diff(&got, &want) < 1e-5, "{dims:?} x [{n}, {k}]");
            }
        }
        Ok(())
    }

    #[test]
    fn every_thread_count_gives_the_same_product() -> Result<()> {
        let dev = &Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (1200, 24), dev)?;
        let w = Tensor::randn(0f32, 0.2, (52, 24), dev)?;
        let b = Tensor::randn(0f32, 1.0, 52, dev)?;
        let want = reference(&w, Some(&b), &x)?;
        for threads in [1, 2, 3, 4] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .map_err(candle_core::Error::wrap)?;
            let got = pool.install(|| matmul(&w, Some(&b), &x))?;
            assert!(max_abs_diff(&got, &want) < 1e-5, "{threads} threads");
        }
        Ok(())
    }

    #[test]
    fn other_operands_are_refused() -> Result<()> {
        let dev = &Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (80, 16), dev)?;
        let w = Tensor::randn(0f32, 1.0, (8, 16), dev)?;
        let b = Tensor::randn(0f32, 1.0, 8, dev)?;
        let tracked = Var::from_tensor(&x)?;
        let wide = Tensor::randn(0f32, 1.0, (80, 32), dev)?;
        let cases = [
            (w.clone(), Some(b.clone()), x.narrow(0, 0, MIN_ROWS - 1)?), // few rows
            (w.clone(), None, x.to_dtype(DType::F16)?),                  // f16 input
            (w.to_dtype(DType::F16)?, None, x.clone()),                  // f16 weight
            (w.clone(), None, wide.narrow(1, 0, 16)?),                   // strided input
            (w.clone(), Some(b.narrow(0, 0, 7)?), x.clone()),            // bias too short
            (w.narrow(1, 0, 15)?, None, x.clone()),                      // other inner width
            (w.clone(), None, tracked.as_tensor().clone()),              // tracked
        ];
        for (w, bias, x) in &cases {
            assert!(!applies(w, bias.as_ref(), x));
            assert!(matmul(w, bias.as_ref(), x).is_err());
        }
        Ok(())
    }
}
