//! The ITC loss of some rows of a batch, for data-parallel ranks: each rank holds the image and
//! text features of the whole global batch (gathered) and computes the loss of its own rows,
//! divided by the size of the whole batch, so the ranks' losses add up to
//! [`itc_loss_queued`](crate::losses::itc_loss_queued) of the whole batch, and so do their
//! gradients.

use std::ops::Range;

use candle_core::Tensor;

use crate::error::{Result, TrainError};
use crate::losses::{best_query_similarity, id_targets, log_softmax, ItcConfig};

/// The share of rows `rows` in [`itc_loss_queued`](crate::losses::itc_loss_queued) of the
/// batch `image_feats` `[B, Q, D]` / `text_feat` `[B, D]` (both normalised) with caption `ids`
/// and the `[E, D]` `queue`: `(Σ_{i∈rows} CE_i2t(i) + Σ_{j∈rows} CE_t2i(j)) / 2B`, image→text
/// over the `B + E` texts, text→image over the `B` images. Summing it over a partition of
/// `0..B` gives the whole batch's loss.
#[allow(clippy::too_many_arguments)]
pub fn itc_loss_queued_rows(
    image_feats: &Tensor,
    text_feat: &Tensor,
    ids: &[i64],
    rows: Range<usize>,
    queue: &Tensor,
    queue_ids: &[i64],
    temp: &Tensor,
    cfg: &ItcConfig,
) -> Result<Tensor> {
    let (b, q, d) = image_feats.dims3()?;
    let (tb, td) = text_feat.dims2()?;
    let (e, qd) = queue.dims2()?;
    if (tb, td) != (b, d) || qd != d || ids.len() != b || queue_ids.len() != e || rows.end > b {
        return Err(TrainError::Config(format!(
            "itc_loss_queued_rows: image features [{b}, {q}, {d}], text features [{tb}, {td}], \
             {} ids, a queue of {:?} with {} ids, rows {rows:?}",
            ids.len(),
            queue.dims(),
            queue_ids.len()
        )));
    }
    let n = rows.len();
    if n == 0 {
        // No rows of its own (a rank with an empty share): 0, still joined to the inputs so
        // that a backward pass reaches them (with zero gradients). A product with a zero
        // tensor, not `* 0.0`: candle's backward prunes an affine op whose factor is 0.
        let inputs = (image_feats.sum_all()? + text_feat.sum_all()?)?
            .broadcast_add(&temp.to_dtype(image_feats.dtype())?)?;
        return Ok(inputs.broadcast_mul(&inputs.zeros_like()?)?);
    }
    let device = image_feats.device();
    let own_images = image_feats.narrow(0, rows.start, n)?;
    let own_texts = text_feat.narrow(0, rows.start, n)?;
    let own_ids = &ids[rows];
    let mut i2t = vec![best_query_similarity(&own_images, text_feat, temp)?];
    if e > 0 {
        i2t.push(best_query_similarity(&own_images, queue, temp)?);
    }
    let sim_i2t = Tensor::cat(&i2t, 1)?;
    let sim_t2i = best_query_similarity(image_feats, &own_texts, temp)?.t()?;
    let cols: Vec<i64> = ids.iter().chain(queue_ids).copied().collect();
    let target_i2t = id_targets(own_ids, &cols, cfg.label_smoothing, device)?;
    let target_t2i = id_targets(own_ids, ids, cfg.label_smoothing, device)?;
    let ce_sum = |logits: &Tensor, target: &Tensor| -> Result<Tensor> {
        Ok((log_softmax(logits, 1)? * target)?.sum_all()?.neg()?)
    };
    let sum = (ce_sum(&sim_i2t, &target_i2t)? + ce_sum(&sim_t2i, &target_t2i)?)?;
    Ok((sum / (2.0 * b as f64))?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::losses::itc_loss_queued;
    use candle_core::{Device, Var};

    fn normalized(t: Tensor) -> Tensor {
        let norm = t
            .sqr()
            .unwrap()
            .sum_keepdim(t.rank() - 1)
            .unwrap()
            .sqrt()
            .unwrap();
        t.broadcast_div(&norm).unwrap()
    }

    #[test]
    fn shares_of_a_partition_add_up_to_the_whole_loss_and_gradient() -> Result<()> {
        let dev = Device::Cpu;
        let (b, q, d, e) = (5usize, 3usize, 4usize, 2usize);
        let images = Var::from_tensor(&normalized(Tensor::randn(0f32, 1.0, (b, q, d), &dev)?))?;
        let texts = Var::from_tensor(&normalized(Tensor::randn(0f32, 1.0, (b, d), &dev)?))?;
        let queue = normalized(Tensor::randn(0f32, 1.0, (e, d), &dev)?);
        let temp = Var::new(0.07f32, &dev)?;
        let ids = [0i64, 1, 0, 2, 3];
        let queue_ids = [1i64, 4];
        let cfg = ItcConfig::default();
        for queued in [true, false] {
            let (queue, queue_ids) = if queued {
                (queue.clone(), &queue_ids[..])
            } else {
                (
                    Tensor::zeros((0, d), candle_core::DType::F32, &dev)?,
                    &[][..],
                )
            };
            let whole =
                itc_loss_queued(&images, &texts, &ids, &queue, queue_ids, &temp, &cfg)?.loss;
            let parts = [0..2, 2..2, 2..5]
                .into_iter()
                .map(|rows| {
                    itc_loss_queued_rows(
                        &images, &texts, &ids, rows, &queue, queue_ids, &temp, &cfg,
                    )
                })
                .collect::<Result<Vec<_>>>()?;
            let sum = parts
                .iter()
                .try_fold(Tensor::new(0f32, &dev)?, |a, p| a + p)?;
            let (w, s) = (whole.to_scalar::<f32>()?, sum.to_scalar::<f32>()?);
            assert!((w - s).abs() <= 1e-5 * w.abs().max(1.0), "{w} vs {s}");
            let (gw, gs) = (whole.backward()?, sum.backward()?);
            let max_abs = |t: &Tensor| -> Result<f32> {
                Ok(t.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?)
            };
            for v in [images.as_tensor(), texts.as_tensor(), temp.as_tensor()] {
                let (a, b) = (gw.get(v).unwrap(), gs.get(v).unwrap());
                let diff = max_abs(&(a - b)?)?;
                // f32 sums in another order: relative to the gradient's size.
                let scale = max_abs(a)?.max(1.0);
                assert!(
                    diff <= 1e-5 * scale,
                    "gradient differs by {diff} (scale {scale})"
                );
            }
        }
        Ok(())
    }
}
