//! The training loop: [`finetune`] runs (or resumes) a fine-tune and reports each update.

use std::collections::HashMap;
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use serde::Serialize;
use visualglm_dist::{shard, Collective, Solo};
use visualglm_nn::checkpoint::Checkpointing;
use visualglm_tokenizer::ChatGlmTokenizer;
use visualglm_train::checkpoint::{CheckpointManager, TrainState};
use visualglm_train::data::{load_data_file, LoadOptions, Sampler, SamplerConfig};
use visualglm_train::grads::Gradients;
use visualglm_train::labels::LabelConfig;
use visualglm_train::last_update::{LastUpdate, Snapshot};
use visualglm_train::losses::total_loss;
use visualglm_train::optim::{AdamW, AdamWConfig, ParamSet};
use visualglm_train::schedule::LrSchedule;
use visualglm_train::step::{apply_step, StepOutcome};

use super::batch::{batch_hidden, prepare_batch, validation_loss, ExampleContext};
use super::config::{itc_lambda, FinetuneConfig};
use super::data_parallel::{
    all_reduce_gradients, check_same_start, check_world, dist_err, global_sum, itc_across_ranks,
    world_record, Timed,
};
use super::error::train_err;
use super::export::{export_model, ExportParts};
use super::head::lm_loss;
use super::resume::{base_record, check_base};
use super::trainable::{attach_trainable_lora, load_trainable_with};
use crate::error::{Result, VisualGlmError};
use crate::itc::{caption_features, CaptionIds, ItcHeads, TextQueue};

/// The gradients of `params` in `loss`, with those the checkpointed blocks collected in their
/// recomputation (see [`Checkpointing`]).
pub fn gradients(
    loss: &candle_core::Tensor,
    checkpointing: Option<&Checkpointing>,
    params: &ParamSet,
) -> Result<Gradients> {
    let mut store = loss.backward();
    if let (Ok(store), Some(ck)) = (store.as_mut(), checkpointing) {
        ck.merge_into(store)?;
    } else if let Some(ck) = checkpointing {
        ck.clear();
    }
    Gradients::from_store(&store?, params).map_err(train_err)
}

/// What one optimiser update did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepReport {
    /// Updates applied so far.
    pub step: u64,
    /// Mean loss over the update's micro-batches.
    pub loss: f64,
    /// Learning rate used (0 for a skipped step).
    pub lr: f64,
    /// Gradient norm before clipping.
    pub grad_norm: f64,
    /// Whether the step was skipped (non-finite loss or gradient).
    pub skipped: bool,
    /// Mean autoregressive loss per answer token on the validation data, when computed at
    /// this step (data-parallel: each rank computes a share, summed over the ranks).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub val_loss: Option<f64>,
    /// Peak resident memory of the process so far, MiB (Linux).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peak_rss_mib: Option<f64>,
    /// Data-parallel runs: seconds this rank spent in collectives during the update (moving
    /// data and waiting for the slowest rank).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comm_seconds: Option<f64>,
}

/// Runs (or resumes, from the latest checkpoint in `cfg.out`) a fine-tune in this process;
/// `on_step` sees every update and returns whether to go on (stopping early writes a
/// checkpoint there, so the run resumes from that update). Returns the reports of the updates
/// made by this call.
pub fn finetune(
    cfg: &FinetuneConfig,
    device: &Device,
    on_step: &mut dyn FnMut(&StepReport) -> bool,
) -> Result<Vec<StepReport>> {
    finetune_on(cfg, device, Arc::new(Solo), on_step)
}

/// [`finetune`] as one rank of a data-parallel group (see `data_parallel`): `cfg.batch_size`
/// is the per-rank batch, every rank reports the same global losses, and rank 0 alone
/// writes checkpoints and the exported model. Every rank must see the same `cfg.out`.
pub fn finetune_on(
    cfg: &FinetuneConfig,
    device: &Device,
    comm: Arc<dyn Collective>,
    on_step: &mut dyn FnMut(&StepReport) -> bool,
) -> Result<Vec<StepReport>> {
    finetune_with(cfg, device, comm, None, on_step)
}

/// The checkpoints of the run `cfg` describes (`cfg.out`, `cfg.keep_last`), for
/// [`finetune_with`].
pub fn run_checkpoints(cfg: &FinetuneConfig) -> Result<LastUpdate> {
    let manager = CheckpointManager::new(&cfg.out, cfg.keep_last).map_err(train_err)?;
    Ok(LastUpdate::new(manager))
}

/// [`finetune_on`] that, given `last` (made by [`run_checkpoints`]), saves through it and, on
/// the main rank, records a [`Snapshot`] of every completed update in it, so another thread
/// can write the last completed update's checkpoint at any moment
/// ([`LastUpdate::save_last`]: Ctrl-C, SIGTERM) — the checkpoint a save at that update would
/// write. The snapshot costs a copy of the trainable weights per update (and holds the
/// optimiser state of the last update), in host memory.
pub fn finetune_with(
    cfg: &FinetuneConfig,
    device: &Device,
    comm: Arc<dyn Collective>,
    last: Option<&LastUpdate>,
    on_step: &mut dyn FnMut(&StepReport) -> bool,
) -> Result<Vec<StepReport>> {
    let timed = Arc::new(Timed::new(comm));
    let comm_arc: Arc<dyn Collective> = timed.clone();
    let comm: &dyn Collective = comm_arc.as_ref();
    let world = comm.world_size();
    if cfg.batch_size == 0 || cfg.grad_accum == 0 {
        return Err(VisualGlmError::Input(
            "batch_size and grad_accum must be at least 1".into(),
        ));
    }
    cfg.check_data_files()?;
    let opts = LoadOptions {
        skip_malformed: cfg.skip_malformed,
        image_root: cfg.image_root.clone(),
        ..LoadOptions::default()
    };
    let (examples, report) = load_data_file(&cfg.data, None, &opts).map_err(train_err)?;
    if report.skipped > 0 {
        tracing::warn!(
            "{}: skipped {} malformed records",
            cfg.data.display(),
            report.skipped
        );
    }
    if examples.is_empty() {
        return Err(VisualGlmError::Input(format!(
            "{} has no examples",
            cfg.data.display()
        )));
    }
    let val_examples = match &cfg.val_data {
        Some(path) => load_data_file(path, None, &opts).map_err(train_err)?.0,
        None => Vec::new(),
    };
    let tokenizer = match &cfg.tokenizer {
        Some(t) => ChatGlmTokenizer::from_path(t)?,
        None => ChatGlmTokenizer::from_dir(crate::model_dir::folder_of(&cfg.model))?,
    };
    let base = cfg.base_weights(device)?;
    let mut tm = load_trainable_with(&cfg.model, &cfg.trainable, device, &base)?;
    let lora = attach_trainable_lora(cfg, &mut tm, device)?;
    let heads = if cfg.itc_weight > 0.0 {
        let c = tm.model.config();
        Some(ItcHeads::new(
            c.qformer.hidden_size,
            c.glm.hidden_size,
            cfg.itc_dim,
            cfg.seed,
            cfg.itc_caption_layout,
            device,
        )?)
    } else {
        None
    };
    let mut all_vars = tm.vars.clone();
    if let Some((_, vars)) = &lora {
        all_vars.extend(vars.iter().cloned());
    }
    if let Some(h) = &heads {
        all_vars.extend(h.vars().iter().cloned());
    }
    let checkpointing = cfg.checkpoint_activations.then(|| {
        Checkpointing::new(
            all_vars
                .iter()
                .map(|(_, v)| v.as_tensor().clone())
                .collect(),
        )
    });
    tm.model.set_checkpointing(checkpointing.clone());
    if all_vars.is_empty() {
        return Err(VisualGlmError::Input(
            "nothing trains: give `trainable` prefixes, `lora_rank` or `itc_weight`".into(),
        ));
    }
    let params = ParamSet::new(all_vars).map_err(train_err)?;
    let mut opt = AdamW::new(
        params,
        AdamWConfig {
            weight_decay: cfg.weight_decay,
            ..AdamWConfig::default()
        },
    )
    .map_err(train_err)?;
    let mut schedule = LrSchedule::cosine(cfg.lr, cfg.warmup_steps, cfg.steps, cfg.min_lr_ratio)
        .map_err(train_err)?;
    if cfg.auto_warmup_steps > 0 {
        schedule.auto_warmup = Some((cfg.auto_warmup_steps, cfg.auto_warmup_rate));
        schedule.validate().map_err(train_err)?;
    }
    let own;
    let checkpoints = match last {
        Some(last) if last.manager().root() == cfg.out.as_path() => last,
        Some(last) => {
            return Err(VisualGlmError::Input(format!(
                "checkpoints go to {}, but this run's out is {}",
                last.manager().root().display(),
                cfg.out.display()
            )))
        }
        None => {
            own = run_checkpoints(cfg)?;
            &own
        }
    };
    let manager = checkpoints.manager();
    let mut state = TrainState::default();
    let caption_ids = CaptionIds::new(examples.iter().map(|ex| ex.label.as_str()));
    let mut queue = TextQueue::new(cfg.itc_queue);
    let base_rec = base_record(&cfg.model, &base);
    let world_rec = world_record(comm, cfg.batch_size);
    if let Some(ck) = manager.load_latest(device).map_err(train_err)? {
        check_base(&ck.state.extra, &base_rec, &ck.dir)?;
        check_world(&ck.state.extra, &world_rec, &ck.dir)?;
        ck.restore(&mut opt).map_err(train_err)?;
        queue = TextQueue::from_tensors(cfg.itc_queue, &ck.optimizer)?;
        tracing::info!("resumed from {}", ck.dir.display());
        state = ck.state;
    }
    check_same_start(state.counters.step, comm)?;
    state.extra = serde_json::json!({ "base": base_rec, "data_parallel": world_rec });
    let sampler_cfg = SamplerConfig {
        seed: cfg.seed,
        batch_size: cfg.batch_size * world,
        shuffle: true,
        drop_last: false,
    };
    let mut sampler =
        Sampler::resume(examples.len(), sampler_cfg, state.data_position).map_err(train_err)?;
    let labels_cfg = LabelConfig {
        max_source_length: cfg.max_source_length,
        max_target_length: cfg.max_target_length,
        ..LabelConfig::default()
    };
    let preprocessor = tm.model.image_preprocessor();
    let image_length = tm.model.config().image_length;
    let ctx = ExampleContext {
        tokenizer: &tokenizer,
        preprocessor: &preprocessor,
        labels: &labels_cfg,
        pad_to: cfg.pad_to,
        image_length,
        english: cfg.english,
        device,
    };
    let mut reports = Vec::new();
    while state.counters.step < cfg.steps {
        let mut accumulated: Option<Gradients> = None;
        let mut loss_sum = 0.0;
        for _ in 0..cfg.grad_accum {
            let global = sampler.next_batch();
            let indices = shard(&global, comm.rank(), cfg.batch_size);
            let batch: Vec<_> = indices.iter().filter_map(|&i| examples.get(i)).collect();
            // The AR loss of this rank's share, and the ITC inputs (Q-Former outputs, caption
            // features, caption ids) when ITC trains.
            let (mut loss, itc_inputs) = if batch.is_empty() {
                // The short last batch of an epoch left this rank nothing: it still takes
                // part in the count, the ITC gather and, at the end of the update, the sums.
                global_sum(0.0, comm)?;
                (Tensor::zeros((), DType::F32, device)?, None)
            } else {
                let (pixels, labeled, slots) = prepare_batch(&batch, &ctx)?;
                let image_rows = slots.image_rows(batch.len());
                let out = batch_hidden(
                    &tm.model,
                    &pixels,
                    &labeled,
                    slots,
                    cfg.embedding_grad_shrink,
                )?;
                let ar = lm_loss(tm.model.language_model(), &out.hidden, &out.labels, None)?;
                // The mean over the answer tokens of the whole global batch (all ranks).
                let answer_tokens = global_sum(ar.n_supervised as f64, comm)?;
                let loss = (&ar.sum / answer_tokens.max(1.0))?;
                let itc_inputs = match &heads {
                    // ITC pairs one image with one caption: examples with several images
                    // take no part in it (their answer still trains the AR loss).
                    Some(h) => match one_image_rows(&batch, &image_rows, &out.qformer_out)? {
                        Some((rows, image)) => {
                            let captions: Vec<&str> =
                                rows.iter().map(|&i| batch[i].label.as_str()).collect();
                            let text = caption_features(
                                &tm.model,
                                &tokenizer,
                                &captions,
                                h.caption_layout(),
                            )?;
                            let image = if cfg.itc_detach {
                                image.detach()
                            } else {
                                image
                            };
                            Some((image, text, caption_ids.of(&captions)))
                        }
                        None => None,
                    },
                    None => None,
                };
                (loss, itc_inputs)
            };
            if let Some(h) = &heads {
                let itc = if world == 1 {
                    match itc_inputs {
                        Some((image, text, ids)) => {
                            let itc = h.loss(&image, &text, &ids, Some(&queue))?;
                            queue.push(&text, &ids)?;
                            itc
                        }
                        // Only multi-image examples in this batch: no ITC term.
                        None => Tensor::zeros((), DType::F32, device)?,
                    }
                } else {
                    let gathered = itc_across_ranks(
                        h,
                        itc_inputs,
                        tm.model.config(),
                        &queue,
                        &comm_arc,
                        device,
                    )?;
                    queue.push(&gathered.texts, &gathered.ids)?;
                    gathered.loss
                };
                let lambda = itc_lambda(cfg, state.counters.step);
                loss = total_loss(&loss, &itc, lambda).map_err(train_err)?;
            } else if batch.is_empty() {
                continue;
            }
            let loss_value = f64::from(loss.to_dtype(DType::F32)?.to_scalar::<f32>()?);
            loss_sum += loss_value;
            let grads = gradients(&loss, checkpointing.as_ref(), opt.params())?;
            accumulated = Some(match accumulated {
                None => grads,
                Some(mut acc) => {
                    acc.add(&grads).map_err(train_err)?;
                    acc
                }
            });
        }
        let grads = accumulated.unwrap_or_else(|| Gradients::new(vec![None; opt.params().len()]));
        let mut grads = all_reduce_gradients(grads, opt.params(), comm)?;
        if cfg.grad_accum > 1 {
            grads
                .scale(1.0 / cfg.grad_accum as f64)
                .map_err(train_err)?;
        }
        let loss = global_sum(loss_sum, comm)? / cfg.grad_accum as f64;
        let clip = (cfg.clip > 0.0).then_some(cfg.clip);
        let outcome = apply_step(&mut opt, &schedule, &mut state.counters, loss, grads, clip)
            .map_err(train_err)?;
        state.data_position = sampler.position();
        let report = match outcome {
            StepOutcome::Applied { grad_norm, lr } => StepReport {
                step: state.counters.step,
                loss,
                lr,
                grad_norm,
                skipped: false,
                val_loss: None,
                peak_rss_mib: None,
                comm_seconds: None,
            },
            StepOutcome::Skipped { grad_norm, .. } => StepReport {
                step: state.counters.step,
                loss,
                lr: 0.0,
                grad_norm,
                skipped: true,
                val_loss: None,
                peak_rss_mib: None,
                comm_seconds: None,
            },
        };
        let mut report = report;
        let at_end = state.counters.step >= cfg.steps;
        let due = cfg.val_every > 0 && state.counters.step % cfg.val_every == 0;
        if !val_examples.is_empty() && (due || at_end) {
            report.val_loss = Some(validation_loss(
                &tm.model,
                &val_examples,
                cfg.batch_size,
                &ctx,
                comm,
            )?);
        }
        report.peak_rss_mib = super::memory::peak_rss_mib();
        let comm_seconds = timed.take_seconds();
        report.comm_seconds = (world > 1).then_some(comm_seconds);
        state.metrics.insert("loss".into(), loss);
        if let Some(v) = report.val_loss {
            state.metrics.insert("val_loss".into(), v);
        }
        // Recorded before `on_step` sees the update: once a caller has seen update N, a
        // signal saves at least N.
        if let (Some(last), true) = (last, comm.is_main()) {
            let (weights, optimizer) = checkpoint_tensors(&opt, &queue)?;
            last.record(Snapshot::new(&state, &weights, &optimizer).map_err(train_err)?);
        }
        let go_on = on_step(&report);
        reports.push(report);
        // Every rank stops where any rank's `on_step` asked to, after a checkpoint.
        let stopping = global_sum(f64::from(u8::from(!go_on)), comm)? > 0.0;
        let save_due =
            at_end || stopping || (cfg.save_every > 0 && state.counters.step % cfg.save_every == 0);
        if save_due && comm.is_main() {
            let (weights, optimizer) = checkpoint_tensors(&opt, &queue)?;
            checkpoints
                .save(&state, &weights, &optimizer)
                .map_err(train_err)?;
        }
        if save_due {
            // No rank runs ahead of a checkpoint it could be asked to resume from.
            comm.barrier().map_err(dist_err)?;
        }
        if at_end && cfg.export && comm.is_main() {
            let export = ExportParts {
                tokenizer: tokenizer.source(),
                base: &cfg.model,
                lora: lora.as_ref().map(|(set, _)| set),
                heads: heads.as_ref(),
                english: cfg.english,
            };
            export_model(&tm, &export, &cfg.out)?;
        }
        if stopping {
            break;
        }
    }
    Ok(reports)
}

/// What a checkpoint holds besides the state: the trainable weights, and the optimiser state
/// with the ITC text queue.
fn checkpoint_tensors(
    opt: &AdamW,
    queue: &TextQueue,
) -> Result<(HashMap<String, Tensor>, HashMap<String, Tensor>)> {
    let mut optimizer = opt.state_tensors().map_err(train_err)?;
    optimizer.extend(queue.tensors()?);
    Ok((opt.params().tensors(), optimizer))
}

/// The examples of `batch` with exactly one image and their Q-Former outputs (rows of
/// `qformer_out`, whose images are in row order as `image_rows` says); `None` when there
/// are none.
fn one_image_rows(
    batch: &[&visualglm_train::data::Example],
    image_rows: &[std::ops::Range<usize>],
    qformer_out: &Tensor,
) -> Result<Option<(Vec<usize>, Tensor)>> {
    let rows: Vec<usize> = (0..batch.len())
        .filter(|&i| batch[i].images.len() == 1)
        .collect();
    if rows.is_empty() {
        return Ok(None);
    }
    if rows.len() == qformer_out.dim(0)? {
        return Ok(Some((rows, qformer_out.clone())));
    }
    let index: Vec<u32> = rows
        .iter()
        .filter_map(|&i| image_rows.get(i).map(|r| r.start as u32))
        .collect();
    let index = Tensor::new(index.as_slice(), qformer_out.device())?;
    Ok(Some((rows, qformer_out.index_select(&index, 0)?)))
}
