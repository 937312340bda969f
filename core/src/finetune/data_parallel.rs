//! Data-parallel fine-tuning over a [`Collective`]: every rank takes its own share of each
//! global batch (global batch = `batch_size` × ranks, one sampler keyed on the global sample
//! order, so the shares are disjoint and deterministic), the autoregressive loss is divided by
//! the **global** count of answer tokens, and the gradients are summed over the ranks before
//! clipping and AdamW, so every rank applies the same update to the same weights. A world of
//! one is exactly the single-process run.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var};
use visualglm_dist::Collective;
use visualglm_nn::graph::join_output;
use visualglm_train::grads::Gradients;
use visualglm_train::optim::ParamSet;

use crate::config::VisualGlmConfig;
use crate::error::{Result, VisualGlmError};
use crate::itc::{ItcHeads, TextQueue};

/// Gradient values summed per collective call: 16 Mi f32 (64 MiB), as DDP's buckets bound
/// the extra memory of the reduction whatever the model's size.
const BUCKET_VALUES: usize = 16 << 20;

/// The dist crate's errors as the library's.
pub(super) fn dist_err(e: visualglm_dist::DistError) -> VisualGlmError {
    VisualGlmError::Input(format!("data-parallel run: {e}"))
}

/// The sum over ranks of `value` (counts, loss sums).
pub(super) fn global_sum(value: f64, comm: &dyn Collective) -> Result<f64> {
    let mut v = [value];
    comm.all_reduce_sum_f64(&mut v).map_err(dist_err)?;
    Ok(v[0])
}

/// Sums each parameter's gradient over the ranks, in buckets of at most [`BUCKET_VALUES`]
/// values. A parameter without a gradient on a rank counts as zeros there; it has a gradient
/// after the sum when any rank had one, so every rank ends with the same gradients.
pub(super) fn all_reduce_gradients(
    grads: Gradients,
    params: &ParamSet,
    comm: &dyn Collective,
) -> Result<Gradients> {
    if comm.world_size() == 1 {
        return Ok(grads);
    }
    let params = params.params();
    let mut present: Vec<f32> = (0..params.len())
        .map(|i| if grads.get(i).is_some() { 1.0 } else { 0.0 })
        .collect();
    comm.all_reduce_sum_f32(&mut present).map_err(dist_err)?;
    let mut out: Vec<Option<Tensor>> = vec![None; params.len()];
    let mut bucket: Vec<f32> = Vec::new();
    let mut members: Vec<usize> = Vec::new();
    let flush = |bucket: &mut Vec<f32>, members: &mut Vec<usize>, out: &mut [Option<Tensor>]| {
        comm.all_reduce_sum_f32(bucket).map_err(dist_err)?;
        let mut offset = 0;
        for &i in members.iter() {
            let var = params[i].var.as_tensor();
            let n = var.elem_count();
            out[i] = Some(Tensor::from_slice(
                &bucket[offset..offset + n],
                var.shape(),
                var.device(),
            )?);
            offset += n;
        }
        bucket.clear();
        members.clear();
        Ok::<(), VisualGlmError>(())
    };
    for (i, p) in params.iter().enumerate() {
        if present[i] == 0.0 {
            continue;
        }
        let n = p.var.elem_count();
        match grads.get(i) {
            Some(g) => bucket.extend(g.flatten_all()?.to_vec1::<f32>()?),
            None => bucket.resize(bucket.len() + n, 0.0),
        }
        members.push(i);
        if bucket.len() >= BUCKET_VALUES {
            flush(&mut bucket, &mut members, &mut out)?;
        }
    }
    if !members.is_empty() {
        flush(&mut bucket, &mut members, &mut out)?;
    }
    Ok(Gradients::new(out))
}

/// What a run's checkpoints record about its data parallelism (in `state.json`'s
/// `extra.data_parallel`): ranks, per-rank batch and the global batch the sampler position
/// counts in.
pub(super) fn world_record(comm: &dyn Collective, batch_size: usize) -> serde_json::Value {
    serde_json::json!({
        "world_size": comm.world_size(),
        "batch_size": batch_size,
        "global_batch": batch_size * comm.world_size(),
    })
}

/// Refuses to resume from a checkpoint whose global batch differs from this run's (its data
/// position and schedule count in global batches); another number of ranks at the same global
/// batch resumes. Checkpoints from before the record was kept are accepted.
pub(super) fn check_world(
    saved: &serde_json::Value,
    current: &serde_json::Value,
    checkpoint: &std::path::Path,
) -> Result<()> {
    let Some(saved) = saved.get("data_parallel") else {
        return Ok(());
    };
    if saved["global_batch"] == current["global_batch"] {
        return Ok(());
    }
    let show = |v: &serde_json::Value| {
        format!(
            "{} rank(s) × batch_size {} = global batch {}",
            v["world_size"], v["batch_size"], v["global_batch"]
        )
    };
    Err(VisualGlmError::Input(format!(
        "{} was trained with {}, but this run has {}: resume with the same global batch \
         (batch_size = {} / ranks), or write to another `out`",
        checkpoint.display(),
        show(saved),
        show(current),
        saved["global_batch"]
    )))
}

/// An error unless every rank resumes from the same update as rank 0 (each rank reads the
/// checkpoint from `out` itself, so `out` must be on storage every rank sees).
pub(super) fn check_same_start(step: u64, comm: &dyn Collective) -> Result<()> {
    if comm.world_size() == 1 {
        return Ok(());
    }
    let mut root = step.to_le_bytes().to_vec();
    comm.broadcast_bytes(&mut root, 0).map_err(dist_err)?;
    let root_step = <[u8; 8]>::try_from(root.as_slice())
        .map(u64::from_le_bytes)
        .map_err(|_| VisualGlmError::Input("data-parallel run: bad broadcast".into()))?;
    let mut mismatches = [f64::from(u8::from(root_step != step))];
    comm.all_reduce_sum_f64(&mut mismatches).map_err(dist_err)?;
    if mismatches[0] > 0.0 {
        return Err(VisualGlmError::Input(format!(
            "data-parallel run: rank 0 resumes at update {root_step} but {} rank(s) found \
             another checkpoint (this is rank {} at update {step}): every rank must see the \
             same `out` directory",
            mismatches[0],
            comm.rank()
        )));
    }
    Ok(())
}

/// The rows `[n_r, k]` of every rank concatenated in rank order, `[Σ n_r, k]`, as a graph op
/// whose backward sums the incoming gradient over the ranks and gives this rank its own rows
/// (what `torch.distributed.nn.all_gather` does; BLIP-2's `concat_all_gather` has no
/// gradient): every rank's loss on the gathered rows reaches every rank's features. Returns
/// the gathered rows and the range of this rank's rows in them. `x` must be tracked on every
/// rank or on none (the backward is a collective).
pub(super) fn gather_rows(
    x: &Tensor,
    comm: &Arc<dyn Collective>,
) -> Result<(Tensor, std::ops::Range<usize>)> {
    let (n, k) = x.dims2()?;
    let values = x.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    let parts = comm.all_gather_f32(&values).map_err(dist_err)?;
    if let Some(r) = parts.iter().position(|p| p.len() % k.max(1) != 0) {
        return Err(VisualGlmError::Input(format!(
            "data-parallel gather: rank {r} sent {} values, not rows of {k}",
            parts[r].len()
        )));
    }
    let offset = parts[..comm.rank()].iter().map(Vec::len).sum::<usize>() / k.max(1);
    let total = parts.iter().map(Vec::len).sum::<usize>() / k.max(1);
    let gathered = Tensor::from_vec(parts.concat(), (total, k), x.device())?;
    let rows = offset..offset + n;
    let comm = comm.clone();
    let y = join_output(
        &x.to_dtype(DType::F32)?,
        &gathered,
        "gather-rows",
        move |x, grad| {
            let mut g = grad.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
            comm.all_reduce_sum_f32(&mut g).map_err(|e| {
                candle_core::Error::Msg(format!("data-parallel gather backward: {e}"))
            })?;
            let own = &g[rows.start * k..rows.end * k];
            Ok(Some(
                Tensor::from_slice(own, x.shape(), x.device())?.to_dtype(x.dtype())?,
            ))
        },
    )?;
    Ok((y, offset..offset + n))
}

/// One rank's ITC over the gathered global batch.
pub(super) struct GatheredItc {
    /// This rank's share of the whole batch's ITC loss.
    pub(super) loss: Tensor,
    /// The whole batch's caption features `[B, W]` (detached), for the text queue.
    pub(super) texts: Tensor,
    /// The whole batch's caption ids.
    pub(super) ids: Vec<i64>,
}

/// This rank's share of the ITC loss of the whole global batch: the Q-Former outputs and
/// caption features of every rank gathered with gradient in one [`gather_rows`] (so the
/// backward holds one collective), the caption ids gathered, and the loss of this rank's rows
/// over all of them ([`ItcHeads::loss_rows`]); the ranks' shares and gradients add up to the
/// one-process loss of the whole batch. `inputs` (Q-Former outputs `[n, Q, H]`, caption
/// features `[n, W]`, ids) is `None` on a rank whose share of the batch is empty: it still
/// joins the gather. The gathered captions go to the text queue, which then holds what one
/// process would.
pub(super) fn itc_across_ranks(
    heads: &ItcHeads,
    inputs: Option<(Tensor, Tensor, Vec<i64>)>,
    config: &VisualGlmConfig,
    queue: &TextQueue,
    comm: &Arc<dyn Collective>,
    device: &Device,
) -> Result<GatheredItc> {
    let (q, h, w) = (
        config.qformer.num_queries(),
        config.qformer.hidden_size,
        config.glm.hidden_size,
    );
    // The rows are tracked on every rank whatever trains, so that every rank runs the
    // gather's backward: through a zero variable added to them, or (no rows: candle's ops
    // return an untracked result for an empty tensor) as an empty variable.
    let (rows, ids) = match inputs {
        Some((image, text, ids)) => {
            let n = image.dim(0)?;
            let image = image.to_dtype(DType::F32)?.reshape((n, q * h))?;
            let rows = Tensor::cat(&[&image, &text.to_dtype(DType::F32)?], 1)?;
            let anchor = Var::zeros((), DType::F32, device)?;
            (rows.broadcast_add(anchor.as_tensor())?, ids)
        }
        None => (
            Var::zeros((0, q * h + w), DType::F32, device)?.into_inner(),
            Vec::new(),
        ),
    };
    let (all, own) = gather_rows(&rows, comm)?;
    let total = all.dim(0)?;
    let images = all.narrow(1, 0, q * h)?.reshape((total, q, h))?;
    let texts = all.narrow(1, q * h, w)?;
    let id_bytes: Vec<u8> = ids.iter().flat_map(|i| i.to_le_bytes()).collect();
    let all_ids: Vec<i64> = comm
        .all_gather_bytes(&id_bytes)
        .map_err(dist_err)?
        .concat()
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
        .collect();
    let loss = heads.loss_rows(&images, &texts, &all_ids, own, Some(queue))?;
    Ok(GatheredItc {
        loss,
        texts: texts.detach(),
        ids: all_ids,
    })
}

/// A collective that adds the wall time of every call to a counter: the time an update spends
/// in collectives (moving data and waiting for the slowest rank), reported per update.
pub(super) struct Timed {
    inner: Arc<dyn Collective>,
    nanos: AtomicU64,
}

impl Timed {
    /// Times the calls to `inner`.
    pub(super) fn new(inner: Arc<dyn Collective>) -> Self {
        Self {
            inner,
            nanos: AtomicU64::new(0),
        }
    }

    /// The seconds spent in collectives since the last call, and resets the counter.
    pub(super) fn take_seconds(&self) -> f64 {
        self.nanos.swap(0, Ordering::Relaxed) as f64 * 1e-9
    }

    fn time<T>(&self, f: impl FnOnce() -> T) -> T {
        let start = Instant::now();
        let out = f();
        let spent = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.nanos.fetch_add(spent, Ordering::Relaxed);
        out
    }
}

impl Collective for Timed {
    fn rank(&self) -> usize {
        self.inner.rank()
    }

    fn world_size(&self) -> usize {
        self.inner.world_size()
    }

    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    fn all_reduce_sum_f32(&self, values: &mut [f32]) -> visualglm_dist::Result<()> {
        self.time(|| self.inner.all_reduce_sum_f32(values))
    }

    fn all_reduce_sum_f64(&self, values: &mut [f64]) -> visualglm_dist::Result<()> {
        self.time(|| self.inner.all_reduce_sum_f64(values))
    }

    fn all_gather_bytes(&self, bytes: &[u8]) -> visualglm_dist::Result<Vec<Vec<u8>>> {
        self.time(|| self.inner.all_gather_bytes(bytes))
    }

    fn broadcast_bytes(&self, bytes: &mut Vec<u8>, root: usize) -> visualglm_dist::Result<()> {
        self.time(|| self.inner.broadcast_bytes(bytes, root))
    }

    fn barrier(&self) -> visualglm_dist::Result<()> {
        self.time(|| self.inner.barrier())
    }

    fn fail(&self, why: &str) {
        self.inner.fail(why)
    }
}
