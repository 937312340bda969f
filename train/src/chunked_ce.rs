//! The autoregressive loss fused with the output projection, a chunk of rows at a time.
//!
//! [`crate::losses::ar_loss`] takes full logits `[B, T, V]`: at VisualGLM's size (1280 rows ×
//! 130,528 f32 = 0.67 GB a copy, several GB through the softmax and its gradient) they are the
//! memory peak of a training step. [`ar_loss_chunked`] takes the final hidden states instead and
//! only ever holds the logits of [`chunk_rows`](ar_loss_chunked) supervised rows:
//!
//! * forward: the supervised hidden rows are picked (`index_select`, which keeps the graph to
//!   `hidden`), then each chunk's logits go through `logsumexp − target logit` in f32 and only
//!   the summed loss is kept;
//! * backward (a custom op): each chunk's logits are recomputed, turned into
//!   `grad · (softmax − onehot)` and sent back through the head with
//!   [`LogitsHead::backward_input`].
//!
//! The head's own weights get no gradient here: use it for a frozen head (a trainable one needs
//! the full-logits path).

use std::sync::Arc;

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CudaStorage, CustomOp2, DType, Layout, Shape, Tensor};

use crate::error::{Result, TrainError};
use crate::losses::{supervised_rows, ArLoss};

/// Logits of a frozen output projection and the gradient to its input.
pub trait LogitsHead: Send + Sync {
    /// The vocabulary size `V` (labels must lie in `0..V`).
    fn vocab_size(&self) -> usize;

    /// Logits `[n, V]` (any float dtype; the loss works in f32) of untracked rows `[n, H]`.
    fn logits(&self, rows: &Tensor) -> Result<Tensor>;

    /// The gradient `[n, H]` (f32) to the input rows from the gradient `[n, V]` (f32) of their
    /// logits: `grad · W` for a linear head.
    fn backward_input(&self, grad_logits: &Tensor) -> Result<Tensor>;
}

/// The number of rows whose f32 logits take about `bytes` at vocabulary `vocab` (at least 1):
/// 128 rows for 64 MiB at ChatGLM-6B's 130,528.
pub fn chunk_rows_for(vocab: usize, bytes: usize) -> usize {
    (bytes / (vocab.max(1) * std::mem::size_of::<f32>())).max(1)
}

/// The budget of one chunk of f32 logits that [`chunk_rows_for`] is usually given: 64 MiB.
pub const CHUNK_BYTES: usize = 64 << 20;

/// [`crate::losses::ar_loss`] of the logits `head(hidden)` without ever forming them whole.
///
/// `hidden` is `[B, T, H]` (any float dtype), `labels` `[B, T]` integer ids or −100; the result
/// and every error are those of `ar_loss(head(hidden), labels)` (shift by one, ignore −100, CE
/// in f32, the same label checks). At most `chunk_rows` rows of logits exist at a time (0 is
/// taken as 1). The gradient flows to `hidden`, not to the head's weights.
pub fn ar_loss_chunked(
    hidden: &Tensor,
    labels: &Tensor,
    head: Arc<dyn LogitsHead>,
    chunk_rows: usize,
) -> Result<ArLoss> {
    let (b, t, h) = hidden.dims3()?;
    let (lb, lt) = labels.dims2()?;
    if (lb, lt) != (b, t) {
        return Err(TrainError::Config(format!(
            "ar_loss_chunked: hidden states are [{b}, {t}, {h}] but labels are [{lb}, {lt}]"
        )));
    }
    let device = hidden.device();
    let Some(sup) = supervised_rows(labels, head.vocab_size())? else {
        return ArLoss::zero(device);
    };
    let n = sup.rows.len();
    let rows = Tensor::from_vec(sup.rows, n, device)?;
    let picked = hidden.reshape((b * t, h))?.index_select(&rows, 0)?;
    let targets = Tensor::from_vec(sup.targets, (n, 1), device)?;
    let op = ChunkedCe {
        head,
        targets,
        chunk_rows: chunk_rows.max(1),
    };
    let value = op.loss(&picked.detach())?;
    let sum = picked.apply_op2(&value, op)?;
    Ok(ArLoss {
        sum,
        n_supervised: n,
    })
}

/// The summed cross-entropy of picked rows against their targets, by chunks.
struct ChunkedCe {
    head: Arc<dyn LogitsHead>,
    /// `[n, 1]` u32.
    targets: Tensor,
    chunk_rows: usize,
}

/// One chunk's f32 logits shifted by their row maximum, and `log Σ exp` of the shifted ones.
struct ChunkLogits {
    shifted: Tensor,
    lse: Tensor,
}

impl ChunkedCe {
    /// `(start, len)` of each chunk of `n` rows.
    fn chunks(&self, n: usize) -> impl Iterator<Item = (usize, usize)> {
        let step = self.chunk_rows;
        (0..n)
            .step_by(step)
            .map(move |start| (start, step.min(n - start)))
    }

    fn chunk_logits(&self, rows: &Tensor) -> Result<ChunkLogits> {
        let logits = self.head.logits(rows)?.to_dtype(DType::F32)?;
        // As `losses::log_softmax`: the row maximum is a stabiliser.
        let max = logits.max_keepdim(1)?;
        let shifted = logits.broadcast_sub(&max)?;
        let lse = shifted.exp()?.sum_keepdim(1)?.log()?;
        Ok(ChunkLogits { shifted, lse })
    }

    /// `Σ_rows logsumexp(logits) − logits[target]`, an f32 scalar (`picked` untracked).
    fn loss(&self, picked: &Tensor) -> Result<Tensor> {
        let n = picked.dim(0)?;
        let mut sum = Tensor::zeros((), DType::F32, picked.device())?;
        for (start, len) in self.chunks(n) {
            let c = self.chunk_logits(&picked.narrow(0, start, len)?)?;
            let target = c.shifted.gather(&self.targets.narrow(0, start, len)?, 1)?;
            sum = (sum + (c.lse - target)?.sum_all()?)?;
        }
        Ok(sum)
    }

    /// `grad · (softmax − onehot)` of each chunk through the head: `[n, H]` f32.
    fn grad_picked(&self, picked: &Tensor, grad: &Tensor) -> Result<Tensor> {
        let n = picked.dim(0)?;
        let grad = grad.to_dtype(DType::F32)?;
        let mut out = Vec::new();
        for (start, len) in self.chunks(n) {
            let c = self.chunk_logits(&picked.narrow(0, start, len)?)?;
            let softmax = c.shifted.broadcast_sub(&c.lse)?.exp()?;
            let minus_one = Tensor::full(-1f32, (len, 1), picked.device())?;
            let d_logits = softmax
                .scatter_add(&self.targets.narrow(0, start, len)?, &minus_one, 1)?
                .broadcast_mul(&grad)?;
            out.push(self.head.backward_input(&d_logits)?.to_dtype(DType::F32)?);
        }
        Ok(Tensor::cat(&out, 0)?)
    }
}

impl CustomOp2 for ChunkedCe {
    fn name(&self) -> &'static str {
        "chunked-cross-entropy"
    }

    /// The result is the loss computed beforehand (the second argument), copied.
    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        value: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        if layout.shape().elem_count() != 1 {
            candle_core::bail!("chunked-cross-entropy: the loss value must be a scalar");
        }
        let v = value.as_slice::<f32>()?[layout.start_offset()];
        Ok((CpuStorage::F32(vec![v]), Shape::from(())))
    }

    fn cuda_fwd(
        &self,
        _: &CudaStorage,
        _: &Layout,
        value: &CudaStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CudaStorage, Shape)> {
        // A fresh scalar (a `sum_all`), so the whole storage is the value.
        if layout.shape().elem_count() != 1 || layout.start_offset() != 0 {
            candle_core::bail!("chunked-cross-entropy: the loss value must be a fresh scalar");
        }
        Ok((value.try_clone(layout)?, Shape::from(())))
    }

    fn bwd(
        &self,
        picked: &Tensor,
        _value: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let g = self
            .grad_picked(&picked.detach(), grad_res)
            .map_err(|e| match e {
                TrainError::Candle(e) => e,
                other => candle_core::Error::Msg(other.to_string()),
            })?
            .to_dtype(picked.dtype())?;
        Ok((Some(g), None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::losses::ar_loss;
    use candle_core::{Device, Var};

    /// A plain `x · Wᵀ` head over a fixed weight `[V, H]`.
    struct Dense(Tensor);

    impl LogitsHead for Dense {
        fn vocab_size(&self) -> usize {
            self.0.dim(0).unwrap()
        }
        fn logits(&self, rows: &Tensor) -> Result<Tensor> {
            Ok(rows.matmul(&self.0.t()?)?)
        }
        fn backward_input(&self, grad_logits: &Tensor) -> Result<Tensor> {
            Ok(grad_logits.matmul(&self.0.to_dtype(DType::F32)?)?)
        }
    }

    fn max_rel(a: &Tensor, b: &Tensor) -> f32 {
        let diff = (a - b).unwrap().abs().unwrap().max_all().unwrap();
        let scale = b
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        diff.to_scalar::<f32>().unwrap() / scale.max(1e-30)
    }

    /// Loss and `d loss / d hidden` of the whole-logits and the chunked computation.
    fn both(
        hidden: &Var,
        weight: &Tensor,
        labels: &Tensor,
        chunk_rows: usize,
    ) -> [(f32, usize, Tensor); 2] {
        let whole = ar_loss(
            &hidden
                .as_tensor()
                .broadcast_matmul(&weight.t().unwrap())
                .unwrap(),
            labels,
        )
        .unwrap();
        let head: Arc<dyn LogitsHead> = Arc::new(Dense(weight.clone()));
        let chunked = ar_loss_chunked(hidden.as_tensor(), labels, head, chunk_rows).unwrap();
        [whole, chunked].map(|l| {
            let mean = l.mean().unwrap();
            let grads = mean.backward().unwrap();
            let g = grads
                .get(hidden.as_tensor())
                .cloned()
                .unwrap_or_else(|| hidden.as_tensor().zeros_like().unwrap());
            (mean.to_scalar::<f32>().unwrap(), l.n_supervised, g)
        })
    }

    #[test]
    fn chunked_loss_and_gradient_equal_the_whole_logits_ones() {
        let d = Device::Cpu;
        let (b, t, h, v) = (3, 7, 16, 50);
        let hidden = Var::from_tensor(&Tensor::randn(0f32, 1.0, (b, t, h), &d).unwrap()).unwrap();
        let weight = Tensor::randn(0f32, 0.5, (v, h), &d).unwrap();
        // Ignored prompt rows and trailing pads, a row with nothing supervised.
        let labels = Tensor::new(
            &[
                [-100i64, -100, 4, 17, 49, 0, -100],
                [-100, -100, -100, -100, -100, -100, -100],
                [-100, 3, 3, 8, 21, 33, 2],
            ],
            &d,
        )
        .unwrap();
        // 4 + 6 = 10 supervised rows: chunks of 1, 2, 4 (not dividing 10), 10 and more.
        for chunk_rows in [0, 1, 2, 4, 10, 64] {
            let [(lw, nw, gw), (lc, nc, gc)] = both(&hidden, &weight, &labels, chunk_rows);
            assert_eq!((nw, nc), (10, 10));
            assert!(
                ((lw - lc) / lw).abs() < 1e-6,
                "chunk {chunk_rows}: {lw} vs {lc}"
            );
            let rel = max_rel(&gc, &gw);
            assert!(rel < 1e-6, "chunk {chunk_rows}: gradient differs by {rel}");
            // Rows that predict an ignored label get exactly no gradient.
            let g = gc.to_vec3::<f32>().unwrap();
            assert!(g[1].iter().flatten().all(|&x| x == 0.0));
            assert!(g[0][6].iter().all(|&x| x == 0.0) && g[0][0].iter().all(|&x| x == 0.0));
        }
    }

    #[test]
    fn chunked_loss_keeps_the_dtype_and_errors_of_ar_loss() {
        let d = Device::Cpu;
        let weight = Tensor::randn(0f32, 0.5, (5, 4), &d).unwrap();
        let head: Arc<dyn LogitsHead> = Arc::new(Dense(weight));
        let hidden = Tensor::randn(0f32, 1.0, (1, 3, 4), &d).unwrap();
        let bad = Tensor::new(&[[-100i64, 7, 1]], &d).unwrap();
        let err = ar_loss_chunked(&hidden, &bad, head.clone(), 2)
            .unwrap_err()
            .to_string();
        assert!(err.contains("label 7 at batch 0, position 1"), "{err}");
        let wrong = Tensor::new(&[[1i64, 2]], &d).unwrap();
        assert!(ar_loss_chunked(&hidden, &wrong, head.clone(), 2).is_err());
        // No supervised token (and a sequence too short to have one): 0, no gradient.
        let hv = Var::from_tensor(&hidden).unwrap();
        let none = Tensor::new(&[[-100i64, -100, -100]], &d).unwrap();
        let out = ar_loss_chunked(hv.as_tensor(), &none, head.clone(), 2).unwrap();
        assert_eq!(out.n_supervised, 0);
        assert_eq!(out.mean().unwrap().to_scalar::<f32>().unwrap(), 0.0);
        let grads = out.mean().unwrap().backward().unwrap();
        assert!(grads.get(hv.as_tensor()).is_none());
        let short = ar_loss_chunked(
            &hidden.narrow(1, 0, 1).unwrap(),
            &Tensor::new(&[[2i64]], &d).unwrap(),
            head.clone(),
            2,
        )
        .unwrap();
        assert_eq!(short.n_supervised, 0);
        // f16 hidden states: the loss is f32 and the gradient comes back in f16.
        let h16 = Var::from_tensor(&hidden.to_dtype(DType::F16).unwrap()).unwrap();
        let w16: Arc<dyn LogitsHead> = Arc::new(Dense(
            Tensor::randn(0f32, 0.5, (5, 4), &d)
                .unwrap()
                .to_dtype(DType::F16)
                .unwrap(),
        ));
        let labels = Tensor::new(&[[-100i64, 2, 4]], &d).unwrap();
        let out = ar_loss_chunked(h16.as_tensor(), &labels, w16, 1).unwrap();
        assert_eq!(out.sum.dtype(), DType::F32);
        let grads = out.sum.backward().unwrap();
        assert_eq!(grads.get(h16.as_tensor()).unwrap().dtype(), DType::F16);
    }
}
