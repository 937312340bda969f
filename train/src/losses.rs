//! Training losses, built only from ops that have a backward pass in candle 0.11.1
//! (no fused softmax / layer-norm; see toolchain-notes §5).
//!
//! * [`ar_loss`]: the release's autoregressive loss (shift, CE in f32, ignore −100, mean
//!   over supervised tokens).
//! * [`itc_loss`]: BLIP-2's image-text contrastive loss (LAVIS `Blip2Qformer.forward`).
//! * [`itc_loss_queued`]: the same with extra text negatives from earlier batches.
//! * [`total_loss`]: `ar + λ·itc`.

use candle_core::{DType, Device, Tensor, Var, D};
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};
use crate::labels::IGNORE_INDEX;

/// `log_softmax` over `dim`, differentiable (the max is a detached stabiliser).
pub fn log_softmax(x: &Tensor, dim: usize) -> Result<Tensor> {
    let max = x.max_keepdim(dim)?.detach();
    let shifted = x.broadcast_sub(&max)?;
    let lse = shifted.exp()?.sum_keepdim(dim)?.log()?;
    Ok(shifted.broadcast_sub(&lse)?)
}

/// The autoregressive loss of one batch.
#[derive(Debug, Clone)]
pub struct ArLoss {
    /// Sum of the per-token cross-entropies (f32 scalar).
    pub sum: Tensor,
    /// Number of supervised tokens (labels ≠ −100 after the shift).
    pub n_supervised: usize,
}

impl ArLoss {
    /// No supervised token: a zero sum.
    pub(crate) fn zero(device: &Device) -> Result<Self> {
        Ok(Self {
            sum: Tensor::zeros((), DType::F32, device)?,
            n_supervised: 0,
        })
    }

    /// The mean over supervised tokens, as the release reports it. With no supervised
    /// token it is 0 (torch would give NaN); skip such a batch.
    pub fn mean(&self) -> Result<Tensor> {
        Ok((&self.sum / self.n_supervised.max(1) as f64)?)
    }
}

/// The release's loss: `CE(logits[:, :-1], labels[:, 1:], ignore_index=-100)` in f32.
///
/// `logits` is `[B, T, V]` (any float dtype; computed in f32), `labels` `[B, T]` integer
/// ids or −100. Only supervised rows go through the softmax, so the gradient of every
/// other position is exactly 0. For gradient accumulation over micro-batches, add the
/// [`ArLoss::sum`]s and divide by the total count.
pub fn ar_loss(logits: &Tensor, labels: &Tensor) -> Result<ArLoss> {
    let (b, t, v) = logits.dims3()?;
    let (lb, lt) = labels.dims2()?;
    if (lb, lt) != (b, t) {
        return Err(TrainError::Config(format!(
            "ar_loss: logits are [{b}, {t}, {v}] but labels are [{lb}, {lt}]"
        )));
    }
    let device = logits.device();
    let Some(sup) = supervised_rows(labels, v)? else {
        return ArLoss::zero(device);
    };
    let n = sup.rows.len();
    let flat = logits.reshape((b * t, v))?;
    let rows = Tensor::from_vec(sup.rows, n, device)?;
    let picked = flat.index_select(&rows, 0)?.to_dtype(DType::F32)?;
    let logp = log_softmax(&picked, 1)?;
    let targets = Tensor::from_vec(sup.targets, (n, 1), device)?;
    let sum = logp.gather(&targets, 1)?.sum_all()?.neg()?;
    Ok(ArLoss {
        sum,
        n_supervised: n,
    })
}

/// The supervised rows of a `[B, T]` label tensor after the shift by one, and their targets.
pub(crate) struct Supervised {
    /// Flat row indices `b·T + t` (`t < T − 1`) into `[B·T, …]` whose next label is kept.
    pub(crate) rows: Vec<u32>,
    /// The label each of those rows predicts.
    pub(crate) targets: Vec<u32>,
}

/// Scans `labels` `[B, T]` for the rows the release's shifted loss supervises: row `(b, t)`
/// predicts `labels[b, t + 1]` unless that is −100. Labels outside `0..vocab` are an error.
/// `None` when no row is supervised (including `T < 2`). Shared by [`ar_loss`] and
/// [`crate::chunked_ce::ar_loss_chunked`].
pub(crate) fn supervised_rows(labels: &Tensor, vocab: usize) -> Result<Option<Supervised>> {
    let (_, t) = labels.dims2()?;
    if t < 2 {
        return Ok(None);
    }
    let shifted = labels
        .narrow(1, 1, t - 1)?
        .to_dtype(DType::I64)?
        .flatten_all()?
        .to_vec1::<i64>()?;
    let mut rows = Vec::new();
    let mut targets = Vec::new();
    for (i, &l) in shifted.iter().enumerate() {
        if l == IGNORE_INDEX {
            continue;
        }
        if l < 0 || l >= vocab as i64 {
            return Err(TrainError::Config(format!(
                "ar_loss: label {l} at batch {}, position {} is outside the vocabulary 0..{vocab}",
                i / (t - 1),
                i % (t - 1) + 1
            )));
        }
        rows.push(((i / (t - 1)) * t + i % (t - 1)) as u32);
        targets.push(l as u32);
    }
    Ok((!rows.is_empty()).then_some(Supervised { rows, targets }))
}

/// `F.normalize(x, dim=-1, eps)`: `x / max(‖x‖₂, eps)`.
pub fn l2_normalize(x: &Tensor, eps: f64) -> Result<Tensor> {
    let norm = x.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?;
    let eps = Tensor::full(eps as f32, norm.shape(), norm.device())?.to_dtype(norm.dtype())?;
    Ok(x.broadcast_div(&norm.maximum(&eps)?)?)
}

/// The `eps` of `F.normalize` that BLIP-2 uses.
pub const NORMALIZE_EPS: f64 = 1e-12;

/// Which pairs ITC treats as positives.
#[derive(Debug, Clone, Copy)]
pub enum ItcTargets<'a> {
    /// Pair `b` with `b` (BLIP-2 pre-training).
    InBatch,
    /// Every pair with equal image ids is positive, weighted `1/#positives` per row
    /// (LAVIS's COCO fine-tune branch, `samples["image_id"]`).
    ImageIds(&'a [i64]),
}

/// ITC options.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ItcConfig {
    /// Label smoothing ε (BLIP-2: 0.1): targets are `(1−ε)·positives + ε/B`.
    pub label_smoothing: f64,
}

impl Default for ItcConfig {
    fn default() -> Self {
        Self {
            label_smoothing: 0.1,
        }
    }
}

/// The ITC loss and its similarity matrices.
#[derive(Debug, Clone)]
pub struct ItcOutput {
    /// `(CE(sim_i2t) + CE(sim_t2i)) / 2`, f32 scalar.
    pub loss: Tensor,
    /// `[B, B]` (`[B, B + E]` with a queue of `E` texts):
    /// `max_q ⟨image_feat[b, q], text_feat[c]⟩ / temp`.
    pub sim_i2t: Tensor,
    /// `[B, B]`: `sim_i2tᵀ`.
    pub sim_t2i: Tensor,
}

/// BLIP-2 ITC from raw projections: normalises (`eps` 1e-12) then calls
/// [`itc_loss_normalized`].
///
/// `image_proj` is `[B, Q, D]` (projected query outputs), `text_proj` `[B, D]`
/// (projected text feature), `temp` a scalar tensor (usually [`Temperature::tensor`]).
pub fn itc_loss(
    image_proj: &Tensor,
    text_proj: &Tensor,
    temp: &Tensor,
    targets: ItcTargets<'_>,
    cfg: &ItcConfig,
) -> Result<ItcOutput> {
    let image_feats = l2_normalize(image_proj, NORMALIZE_EPS)?;
    let text_feat = l2_normalize(text_proj, NORMALIZE_EPS)?;
    itc_loss_normalized(&image_feats, &text_feat, temp, targets, cfg)
}

/// BLIP-2 ITC from already normalised features.
pub fn itc_loss_normalized(
    image_feats: &Tensor,
    text_feat: &Tensor,
    temp: &Tensor,
    targets: ItcTargets<'_>,
    cfg: &ItcConfig,
) -> Result<ItcOutput> {
    let (b, q, d) = image_feats.dims3()?;
    let (tb, td) = text_feat.dims2()?;
    if (tb, td) != (b, d) {
        return Err(TrainError::Config(format!(
            "itc_loss: image features are [{b}, {q}, {d}] but text features are [{tb}, {td}]"
        )));
    }
    let sim_i2t = best_query_similarity(image_feats, text_feat, temp)?;
    let sim_t2i = sim_i2t.t()?;
    let target = soft_targets(b, targets, cfg.label_smoothing, image_feats.device())?;
    let loss_i2t = soft_cross_entropy(&sim_i2t, &target)?;
    let loss_t2i = soft_cross_entropy(&sim_t2i, &target)?;
    let loss = ((loss_i2t + loss_t2i)? / 2.0)?;
    Ok(ItcOutput {
        loss,
        sim_i2t,
        sim_t2i,
    })
}

/// `[B, T]`: `max_q ⟨image_feats[b, q], texts[t]⟩ / temp` in f32, for `[B, Q, D]` image and
/// `[T, D]` text features.
pub(crate) fn best_query_similarity(
    image_feats: &Tensor,
    texts: &Tensor,
    temp: &Tensor,
) -> Result<Tensor> {
    let (b, q, d) = image_feats.dims3()?;
    let t = texts.dim(0)?;
    let per_query = image_feats
        .to_dtype(DType::F32)?
        .reshape((b * q, d))?
        .matmul(&texts.to_dtype(DType::F32)?.t()?)?
        .reshape((b, q, t))?;
    Ok(per_query
        .max(1)?
        .broadcast_div(&temp.to_dtype(DType::F32)?)?)
}

/// The `[B, B]` target distribution of each row.
fn soft_targets(b: usize, targets: ItcTargets<'_>, eps: f64, device: &Device) -> Result<Tensor> {
    match targets {
        ItcTargets::InBatch => {
            let ids: Vec<i64> = (0..b as i64).collect();
            id_targets(&ids, &ids, eps, device)
        }
        ItcTargets::ImageIds(ids) => {
            if ids.len() != b {
                return Err(TrainError::Config(format!(
                    "itc_loss: {} image ids for a batch of {b}",
                    ids.len()
                )));
            }
            id_targets(ids, ids, eps, device)
        }
    }
}

/// `[rows, cols]` targets: each row spreads `1 − eps` evenly over the columns with its id,
/// plus `eps / cols` everywhere (label smoothing). A row whose id no column has gets only the
/// smoothing mass.
pub(crate) fn id_targets(rows: &[i64], cols: &[i64], eps: f64, device: &Device) -> Result<Tensor> {
    let n = cols.len();
    let mut t = vec![0f32; rows.len() * n];
    for (i, &id) in rows.iter().enumerate() {
        let pos = cols.iter().filter(|&&c| c == id).count();
        if pos == 0 {
            continue;
        }
        for (j, &c) in cols.iter().enumerate() {
            if c == id {
                t[i * n + j] = 1.0 / pos as f32;
            }
        }
    }
    let t = Tensor::from_vec(t, (rows.len(), n), device)?;
    Ok(((t * (1.0 - eps))? + eps / n as f64)?)
}

/// BLIP-2 ITC whose image→text direction also ranks the texts of earlier batches, as ALBEF
/// and BLIP's retrieval fine-tune do with their text queue and `idx_queue`.
///
/// `image_feats` `[B, Q, D]`, `text_feat` `[B, D]` and `queue` `[E, D]` are already
/// normalised; `ids` (one per row) and `queue_ids` say which texts are the same caption:
/// every column with a row's id is a positive of that row. Image→text scores the `B + E`
/// texts (label smoothing over all of them); text→image stays in-batch. With an empty queue
/// this is [`itc_loss_normalized`] with [`ItcTargets::ImageIds`]. A queue that does not change
/// while training (a frozen text encoder) has no staleness.
pub fn itc_loss_queued(
    image_feats: &Tensor,
    text_feat: &Tensor,
    ids: &[i64],
    queue: &Tensor,
    queue_ids: &[i64],
    temp: &Tensor,
    cfg: &ItcConfig,
) -> Result<ItcOutput> {
    let (b, q, d) = image_feats.dims3()?;
    let (e, qd) = queue.dims2()?;
    if qd != d || queue_ids.len() != e || ids.len() != b {
        return Err(TrainError::Config(format!(
            "itc_loss_queued: image features [{b}, {q}, {d}] with {} ids, a queue of {:?} \
             with {} ids",
            ids.len(),
            queue.dims(),
            queue_ids.len()
        )));
    }
    if e == 0 {
        return itc_loss_normalized(image_feats, text_feat, temp, ItcTargets::ImageIds(ids), cfg);
    }
    let (tb, td) = text_feat.dims2()?;
    if (tb, td) != (b, d) {
        return Err(TrainError::Config(format!(
            "itc_loss_queued: image features are [{b}, {q}, {d}] but text features are [{tb}, {td}]"
        )));
    }
    let in_batch = best_query_similarity(image_feats, text_feat, temp)?;
    let to_queue = best_query_similarity(image_feats, queue, temp)?;
    let sim_i2t = Tensor::cat(&[&in_batch, &to_queue], 1)?;
    let sim_t2i = in_batch.t()?;
    let device = image_feats.device();
    let cols: Vec<i64> = ids.iter().chain(queue_ids).copied().collect();
    let target_i2t = id_targets(ids, &cols, cfg.label_smoothing, device)?;
    let target_t2i = id_targets(ids, ids, cfg.label_smoothing, device)?;
    let loss_i2t = soft_cross_entropy(&sim_i2t, &target_i2t)?;
    let loss_t2i = soft_cross_entropy(&sim_t2i, &target_t2i)?;
    let loss = ((loss_i2t + loss_t2i)? / 2.0)?;
    Ok(ItcOutput {
        loss,
        sim_i2t,
        sim_t2i,
    })
}

/// `−mean_rows Σ_c target · log_softmax(logits)`.
fn soft_cross_entropy(logits: &Tensor, target: &Tensor) -> Result<Tensor> {
    let rows = logits.dim(0)? as f64;
    let lp = log_softmax(logits, 1)?;
    Ok(((lp * target)?.sum_all()?.neg()? / rows)?)
}

/// BLIP-2's learnable temperature: init 0.07, clamped to `[0.001, 0.5]` before each step.
#[derive(Debug, Clone)]
pub struct Temperature {
    var: Var,
}

impl Temperature {
    /// BLIP-2's initial value.
    pub const INIT: f64 = 0.07;
    /// BLIP-2's clamp range.
    pub const RANGE: (f64, f64) = (0.001, 0.5);

    /// A new f32 scalar parameter with value `init`.
    pub fn new(init: f64, device: &Device) -> Result<Self> {
        Ok(Self {
            var: Var::from_tensor(&Tensor::new(init as f32, device)?)?,
        })
    }

    /// The parameter, to register with the optimiser and checkpoint.
    pub fn var(&self) -> &Var {
        &self.var
    }

    /// The value as a tensor in the graph (use it in [`itc_loss`]).
    pub fn tensor(&self) -> &Tensor {
        self.var.as_tensor()
    }

    /// `temp.clamp_(0.001, 0.5)` under no-grad, as BLIP-2 does at the start of each forward.
    pub fn clamp(&self) -> Result<()> {
        clamp_var(&self.var, Self::RANGE.0, Self::RANGE.1)
    }
}

/// Clamps a variable's value in place (no gradient involved).
pub fn clamp_var(var: &Var, min: f64, max: f64) -> Result<()> {
    let clamped = var.as_tensor().detach().clamp(min, max)?;
    var.set(&clamped)?;
    Ok(())
}

/// Mean of `hidden` `[B, T, H]` over the positions where `mask` `[B, T]` is non-zero: the
/// ITC text feature is this over the caption tokens of the frozen language model's final
/// hidden states, then a trainable projection. Rows with an empty mask give 0.
pub fn masked_mean(hidden: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let (b, t, _) = hidden.dims3()?;
    if mask.dims2()? != (b, t) {
        return Err(TrainError::Config(format!(
            "masked_mean: hidden is {:?} but the mask is {:?}",
            hidden.dims(),
            mask.dims()
        )));
    }
    let m = mask.ne(0u32)?.to_dtype(hidden.dtype())?;
    let count = m.sum_keepdim(1)?.clamp(1.0, f64::INFINITY)?;
    let summed = hidden.broadcast_mul(&m.unsqueeze(2)?)?.sum(1)?;
    Ok(summed.broadcast_div(&count)?)
}

/// `ar + λ·itc`.
pub fn total_loss(ar: &Tensor, itc: &Tensor, lambda: f64) -> Result<Tensor> {
    Ok((ar + (itc * lambda)?)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ar_loss_rejects_bad_labels_and_handles_no_supervision() {
        let d = Device::Cpu;
        let logits = Tensor::zeros((1, 3, 5), DType::F32, &d).unwrap();
        let bad = Tensor::new(&[[-100i64, 7, 1]], &d).unwrap();
        let err = ar_loss(&logits, &bad).unwrap_err().to_string();
        assert!(err.contains("label 7 at batch 0, position 1"), "{err}");
        let none = Tensor::new(&[[-100i64, -100, -100]], &d).unwrap();
        let out = ar_loss(&logits, &none).unwrap();
        assert_eq!(out.n_supervised, 0);
        assert_eq!(out.mean().unwrap().to_scalar::<f32>().unwrap(), 0.0);
        let wrong = Tensor::new(&[[1i64, 2]], &d).unwrap();
        assert!(ar_loss(&logits, &wrong).is_err());
        // Uniform logits: each supervised token costs ln 5.
        let one = Tensor::new(&[[-100i64, 2, 4]], &d).unwrap();
        let out = ar_loss(&logits, &one).unwrap();
        assert_eq!(out.n_supervised, 2);
        let m = out.mean().unwrap().to_scalar::<f32>().unwrap();
        assert!((m - 5f32.ln()).abs() < 1e-6);
    }

    #[test]
    fn temperature_clamps_in_place() {
        let t = Temperature::new(0.9, &Device::Cpu).unwrap();
        t.clamp().unwrap();
        assert_eq!(t.tensor().to_scalar::<f32>().unwrap(), 0.5);
        let t = Temperature::new(1e-5, &Device::Cpu).unwrap();
        t.clamp().unwrap();
        assert_eq!(t.tensor().to_scalar::<f32>().unwrap(), 0.001);
        let t = Temperature::new(Temperature::INIT, &Device::Cpu).unwrap();
        t.clamp().unwrap();
        assert_eq!(t.tensor().to_scalar::<f32>().unwrap(), 0.07);
    }

    #[test]
    fn masked_mean_pools_only_masked_positions_with_gradient() {
        let d = Device::Cpu;
        let h = Var::new(&[[[1f32, 2.0], [3.0, 4.0], [100.0, 100.0]]], &d).unwrap();
        let mask = Tensor::new(&[[1u8, 1, 0]], &d).unwrap();
        let m = masked_mean(h.as_tensor(), &mask).unwrap();
        assert_eq!(m.to_vec2::<f32>().unwrap(), [[2.0, 3.0]]);
        let g = m.sum_all().unwrap().backward().unwrap();
        let g = g.get(h.as_tensor()).unwrap().to_vec3::<f32>().unwrap();
        assert_eq!(g, [[[0.5, 0.5], [0.5, 0.5], [0.0, 0.0]]]);
        let fmask = Tensor::new(&[[0f32, 1.0, 1.0]], &d).unwrap();
        let m = masked_mean(h.as_tensor(), &fmask).unwrap();
        assert_eq!(m.to_vec2::<f32>().unwrap(), [[51.5, 52.0]]);
        let empty = Tensor::new(&[[0u8, 0, 0]], &d).unwrap();
        assert_eq!(
            masked_mean(h.as_tensor(), &empty)
                .unwrap()
                .to_vec2::<f32>()
                .unwrap(),
            [[0.0, 0.0]]
        );
    }

    #[test]
    fn total_is_ar_plus_lambda_itc() {
        let d = Device::Cpu;
        let t = total_loss(
            &Tensor::new(2f32, &d).unwrap(),
            &Tensor::new(3f32, &d).unwrap(),
            0.5,
        )
        .unwrap();
        assert_eq!(t.to_scalar::<f32>().unwrap(), 3.5);
    }

    /// Plain-loop reference of one smoothed cross-entropy row.
    fn ce_row(logits: &[f64], target: &[f64]) -> f64 {
        let m = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let lse = logits.iter().map(|l| (l - m).exp()).sum::<f64>().ln() + m;
        -logits
            .iter()
            .zip(target)
            .map(|(l, t)| t * (l - lse))
            .sum::<f64>()
    }

    #[test]
    fn queued_itc_matches_a_plain_reference_and_the_in_batch_loss_without_queue() {
        let d = Device::Cpu;
        let (b, q, dim, e) = (3, 2, 4, 5);
        let vals = |n: usize, seed: f32| -> Vec<f32> {
            (0..n).map(|i| ((i as f32 + seed) * 0.731).sin()).collect()
        };
        let img = l2_normalize(
            &Tensor::from_vec(vals(b * q * dim, 1.0), (b, q, dim), &d).unwrap(),
            NORMALIZE_EPS,
        )
        .unwrap();
        let txt = l2_normalize(
            &Tensor::from_vec(vals(b * dim, 2.0), (b, dim), &d).unwrap(),
            NORMALIZE_EPS,
        )
        .unwrap();
        let queue = l2_normalize(
            &Tensor::from_vec(vals(e * dim, 3.0), (e, dim), &d).unwrap(),
            NORMALIZE_EPS,
        )
        .unwrap();
        let ids = [7i64, 8, 7];
        let queue_ids = [8i64, 9, 9, 7, 10];
        let temp = Tensor::new(0.07f32, &d).unwrap();
        let cfg = ItcConfig::default();

        let empty = Tensor::zeros((0, dim), DType::F32, &d).unwrap();
        let plain = itc_loss_normalized(&img, &txt, &temp, ItcTargets::ImageIds(&ids), &cfg)
            .unwrap()
            .loss
            .to_scalar::<f32>()
            .unwrap();
        let no_queue = itc_loss_queued(&img, &txt, &ids, &empty, &[], &temp, &cfg)
            .unwrap()
            .loss
            .to_scalar::<f32>()
            .unwrap();
        assert_eq!(plain, no_queue);

        let out = itc_loss_queued(&img, &txt, &ids, &queue, &queue_ids, &temp, &cfg).unwrap();
        assert_eq!(out.sim_i2t.dims(), [b, b + e]);
        let im = img.to_vec3::<f32>().unwrap();
        let texts: Vec<Vec<f32>> = txt
            .to_vec2::<f32>()
            .unwrap()
            .into_iter()
            .chain(queue.to_vec2::<f32>().unwrap())
            .collect();
        let cols: Vec<i64> = ids.iter().chain(&queue_ids).copied().collect();
        let sim = |i: usize, c: usize| -> f64 {
            im[i]
                .iter()
                .map(|qv| {
                    qv.iter()
                        .zip(&texts[c])
                        .map(|(a, b)| f64::from(a * b))
                        .sum::<f64>()
                })
                .fold(f64::NEG_INFINITY, f64::max)
                / 0.07
        };
        let targets = |row: i64, cols: &[i64]| -> Vec<f64> {
            let pos = cols.iter().filter(|&&c| c == row).count() as f64;
            cols.iter()
                .map(|&c| 0.9 * f64::from(u8::from(c == row)) / pos + 0.1 / cols.len() as f64)
                .collect()
        };
        let mut i2t = 0.0;
        let mut t2i = 0.0;
        for i in 0..b {
            let row: Vec<f64> = (0..b + e).map(|c| sim(i, c)).collect();
            i2t += ce_row(&row, &targets(ids[i], &cols));
            let col: Vec<f64> = (0..b).map(|j| sim(j, i)).collect();
            t2i += ce_row(&col, &targets(ids[i], &ids));
        }
        let want = (i2t + t2i) / (2.0 * b as f64);
        let got = f64::from(out.loss.to_scalar::<f32>().unwrap());
        assert!((got - want).abs() < 1e-4, "{got} vs {want}");
        // The queue adds negatives: the loss differs from the in-batch one.
        assert!((got - f64::from(plain)).abs() > 1e-3);

        let bad = Tensor::zeros((2, dim), DType::F32, &d).unwrap();
        assert!(itc_loss_queued(&img, &txt, &ids, &bad, &[1], &temp, &cfg).is_err());
    }

    #[test]
    fn image_id_targets_need_one_id_per_row() {
        let d = Device::Cpu;
        let img = Tensor::ones((2, 3, 4), DType::F32, &d).unwrap();
        let txt = Tensor::ones((2, 4), DType::F32, &d).unwrap();
        let temp = Tensor::new(0.07f32, &d).unwrap();
        let r = itc_loss(
            &img,
            &txt,
            &temp,
            ItcTargets::ImageIds(&[1]),
            &ItcConfig::default(),
        );
        assert!(r.is_err());
        let bad = Tensor::ones((2, 5), DType::F32, &d).unwrap();
        assert!(itc_loss(
            &img,
            &bad,
            &temp,
            ItcTargets::InBatch,
            &ItcConfig::default()
        )
        .is_err());
    }
}
