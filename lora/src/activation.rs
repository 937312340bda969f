//! Activations whose candle CPU kernels run on one thread, split over rayon's pool for
//! inference. Each element is computed with candle's own formula, so the result is
//! bit-identical to candle's op; only untracked (no-gradient) f32 CPU tensors take this path.

use candle_core::{CpuStorage, DType, Result, Storage, Tensor};
use rayon::prelude::*;

/// Below this many elements the split is not worth waking the pool: candle's op runs.
const MIN_PARALLEL: usize = 1 << 15;

/// Elements per rayon task.
const CHUNK: usize = 1 << 14;

/// Exact (`erf`) GELU, `x·(1 + erf(x/√2))/2`, as candle's `gelu_erf`, in parallel for large
/// untracked contiguous f32 CPU tensors (candle's runs on one thread); otherwise candle's op.
pub fn gelu_erf(x: &Tensor) -> Result<Tensor> {
    let parallel = x.dtype() == DType::F32
        && x.device().is_cpu()
        && !x.track_op()
        && x.is_contiguous()
        && x.elem_count() >= MIN_PARALLEL
        && rayon::current_num_threads() > 1;
    if !parallel {
        return x.gelu_erf();
    }
    let n = x.elem_count();
    let mut out = vec![0f32; n];
    {
        let (storage, layout) = x.storage_and_layout();
        let Storage::Cpu(CpuStorage::F32(data)) = &*storage else {
            candle_core::bail!("gelu_erf: expected CPU f32 storage");
        };
        let start = layout.start_offset();
        let Some(xs) = data.get(start..start + n) else {
            candle_core::bail!("gelu_erf: the storage does not hold {n} values at {start}");
        };
        out.par_chunks_mut(CHUNK)
            .zip(xs.par_chunks(CHUNK))
            .for_each(|(ys, xs)| {
                for (y, &v) in ys.iter_mut().zip(xs) {
                    *y = (candle_core::cpu::erf::erf_f32(v * std::f32::consts::FRAC_1_SQRT_2) + 1.)
                        * 0.5
                        * v;
                }
            });
    }
    Tensor::from_vec(out, x.shape(), x.device())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn parallel_gelu_erf_is_bit_identical_to_candles() -> Result<()> {
        let dev = Device::Cpu;
        for shape in [(3usize, 7usize), (257, 6144), (1, MIN_PARALLEL + 5)] {
            let x = (Tensor::randn(0f32, 2.0, shape, &dev)? * 1.5)?;
            let want = x.gelu_erf()?.flatten_all()?.to_vec1::<f32>()?;
            let got = gelu_erf(&x)?;
            assert_eq!(got.dims(), x.dims());
            assert_eq!(got.flatten_all()?.to_vec1::<f32>()?, want);
        }
        // A view that starts inside its storage.
        let big = Tensor::randn(0f32, 1.0, (2, MIN_PARALLEL), &dev)?;
        let row = big.get(1)?;
        assert_eq!(
            gelu_erf(&row)?.to_vec1::<f32>()?,
            row.gelu_erf()?.to_vec1::<f32>()?
        );
        // A tracked tensor keeps candle's op and its gradient.
        let v = Var::randn(0f32, 1.0, (1, MIN_PARALLEL), &dev)?;
        let y = gelu_erf(v.as_tensor())?;
        let g = y.sum_all()?.backward()?;
        assert!(g.get(v.as_tensor()).is_some());
        Ok(())
    }
}
