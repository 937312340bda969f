//! Data-parallel fine-tuning over a [`Collective`]: every rank takes its own share of each
//! global batch (global batch = `batch_size` × ranks, one sampler keyed on the global sample
//! order, so the shares are disjoint and deterministic), the autoregressive loss is divided by
//! the **global** count of answer tokens, and the gradients are summed over the ranks before
//! clipping and AdamW, so every rank applies the same update to the same weights. A world of
//! one is exactly the single-process run.

use candle_core::Tensor;
use visualglm_dist::Collective;
use visualglm_train::grads::Gradients;
use visualglm_train::optim::ParamSet;

use crate::error::{Result, VisualGlmError};

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
