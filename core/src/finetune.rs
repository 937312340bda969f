//! Fine-tuning VisualGLM on image-text pairs with the autoregressive loss (the release's
//! recipe), using the building blocks of `visualglm-train`.
//!
//! Which weights train is chosen by name prefix (`image_encoder.glm_proj`, `image_encoder.
//! qformer`, `transformer.layers.0.`, …); every other weight is a plain tensor, gets no
//! gradient and stays bit-identical.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Shape, Tensor, Var};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::VarBuilder;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use visualglm_language::tokenizer::ChatGlmTokenizer;
use visualglm_train::checkpoint::{CheckpointManager, TrainState};
use visualglm_train::data::{load_data_file, LoadOptions, Sampler, SamplerConfig};
use visualglm_train::grads::Gradients;
use visualglm_train::labels::{
    build_labeled_ids, collate, LabelConfig, LabeledIds, SourceIds, SpecialIds,
};
use visualglm_train::losses::{ar_loss, total_loss};
use visualglm_train::optim::{AdamW, AdamWConfig, ParamSet};
use visualglm_train::schedule::LrSchedule;
use visualglm_train::step::{apply_step, StepOutcome};
use visualglm_vision::preprocess::{load_image, ImagePreprocessor};

use crate::checkpoint::{self, LoadOptions as CheckpointOptions};
use crate::error::{Result, VisualGlmError};
use crate::itc::{caption_features, CaptionIds, CaptionLayout, ItcHeads, TextQueue, ITC_FILE};
use crate::lora::{LoraAdapters, LoraConfig, TargetRule, GLM_LAYERS};
use crate::model::{batch_prefix_inputs, RowLayout, VisualGlm};

/// A fine-tuning run, as read from `run.toml` (every key optional but `data`, `model`, `out`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FinetuneConfig {
    /// Training data: the release's JSON list, JSONL, or COCO captions.
    pub data: PathBuf,
    /// Directory relative image paths resolve against (default: the data file's).
    pub image_root: Option<PathBuf>,
    /// Base checkpoint (any form `visualglm` loads).
    pub model: PathBuf,
    /// Tokenizer file or directory (default: beside the model).
    pub tokenizer: Option<PathBuf>,
    /// Output directory for checkpoints and `metrics.jsonl`.
    pub out: PathBuf,
    /// Name prefixes of the weights that train.
    pub trainable: Vec<String>,
    /// Optimiser updates.
    pub steps: u64,
    /// Examples per micro-batch.
    pub batch_size: usize,
    /// Micro-batches per update.
    pub grad_accum: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Linear warmup steps.
    pub warmup_steps: u64,
    /// Cosine decay ends at `min_lr_ratio · lr`.
    pub min_lr_ratio: f64,
    /// AdamW weight decay.
    pub weight_decay: f64,
    /// Global gradient-norm clip (`0` disables).
    pub clip: f64,
    /// Seed of the data order.
    pub seed: u64,
    /// Save a checkpoint every this many updates (and at the end).
    pub save_every: u64,
    /// Checkpoints kept.
    pub keep_last: usize,
    /// Source budget (prompt + 32 image tokens), as the release's `max_source_length`.
    pub max_source_length: usize,
    /// Target budget, as the release's `max_target_length`.
    pub max_target_length: usize,
    /// Use the English template (`Q:…\nA:`).
    pub english: bool,
    /// Skip (and count) malformed data records.
    pub skip_malformed: bool,
    /// GLM-130B embedding gradient shrink α on the word embeddings (e.g. 0.1); `None`: off.
    pub embedding_grad_shrink: Option<f64>,
    /// Held-out data (same formats) for the validation loss.
    pub val_data: Option<PathBuf>,
    /// Compute the validation loss every this many updates (0: only at the end).
    pub val_every: u64,
    /// λ of `AR + λ·ITC`; 0 (the release's recipe) turns the contrastive loss off.
    pub itc_weight: f64,
    /// Width of the ITC projections (BLIP-2: 256).
    pub itc_dim: usize,
    /// Train the ITC heads as a probe on detached image features: the contrastive loss then
    /// trains only the heads and the encoder learns from the AR loss alone (the AR-only
    /// baseline whose retrieval can still be measured).
    pub itc_detach: bool,
    /// How the frozen language model reads a caption for the ITC text feature: `"context"`
    /// (`caption [gMASK] <sop>`, bidirectional) or `"answer"` (`[gMASK] <sop> caption`, causal,
    /// where a model trained only on answers has learned to read text).
    pub itc_caption_layout: CaptionLayout,
    /// Also rank each image against the captions of this many earlier training texts (a text
    /// queue, as in ALBEF/BLIP; 0 = in-batch only, BLIP-2's ITC). Equal captions in the queue
    /// count as positives. The queue is saved with checkpoints.
    pub itc_queue: usize,
    /// Ramp λ linearly from 0 at the first update to `itc_weight` at this update (0 = constant
    /// λ): the encoder first follows the AR loss, and the contrastive term grows later.
    pub itc_ramp_steps: u64,
    /// Rank of trainable LoRA adapters on the ChatGLM `query_key_value` and `dense` linears
    /// (0: no adapters; the release uses 10).
    pub lora_rank: usize,
    /// LoRA alpha; the update is scaled by `lora_alpha / lora_rank` (the release: 1).
    pub lora_alpha: f64,
    /// ChatGLM layers that get adapters (absent: every layer; the release: `[0, 14]`).
    pub lora_layers: Option<Vec<usize>>,
    /// Also adapt the two MLP linears (`dense_h_to_4h`, `dense_4h_to_h`) of those layers.
    pub lora_mlp: bool,
    /// Write the trained model (LoRA merged) to `out/model` at the end, with the tokenizer
    /// and, with ITC, the heads in `out/model/itc.safetensors`.
    pub export: bool,
}

impl FinetuneConfig {
    /// The LoRA adapters this run trains (`lora_*` keys): ChatGLM's `query_key_value` and
    /// `dense`, plus its MLP with `lora_mlp`; `None` when `lora_rank` is 0.
    pub fn lora_config(&self) -> Option<LoraConfig> {
        if self.lora_rank == 0 {
            return None;
        }
        let mut config = LoraConfig::glm(self.lora_rank, self.lora_alpha, self.lora_layers.clone());
        if self.lora_mlp {
            for module in ["mlp.dense_h_to_4h", "mlp.dense_4h_to_h"] {
                config.targets.push(TargetRule::new(
                    GLM_LAYERS,
                    module,
                    1,
                    self.lora_layers.clone(),
                ));
            }
        }
        Some(config)
    }
}

impl Default for FinetuneConfig {
    fn default() -> Self {
        Self {
            data: PathBuf::new(),
            image_root: None,
            model: PathBuf::new(),
            tokenizer: None,
            out: PathBuf::from("runs/finetune"),
            trainable: vec!["image_encoder.glm_proj".into()],
            steps: 300,
            batch_size: 4,
            grad_accum: 1,
            lr: 1e-4,
            warmup_steps: 6,
            min_lr_ratio: 0.1,
            weight_decay: 0.01,
            clip: 0.1,
            seed: 1234,
            save_every: 100,
            keep_last: 3,
            max_source_length: 64,
            max_target_length: 256,
            english: false,
            skip_malformed: false,
            embedding_grad_shrink: None,
            val_data: None,
            val_every: 0,
            itc_weight: 0.0,
            itc_dim: 256,
            itc_detach: false,
            itc_caption_layout: CaptionLayout::Context,
            itc_queue: 0,
            itc_ramp_steps: 0,
            lora_rank: 0,
            lora_alpha: 1.0,
            lora_layers: None,
            lora_mlp: false,
            export: true,
        }
    }
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
    /// Mean autoregressive loss on the validation data, when computed at this step.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub val_loss: Option<f64>,
}

/// Serves trainable names as variables and everything else as plain tensors.
struct TrainableBackend {
    frozen: HashMap<String, Tensor>,
    trainable: HashMap<String, Var>,
}

impl SimpleBackend for TrainableBackend {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _h: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let t = match self.trainable.get(name) {
            Some(v) => v.as_tensor().clone(),
            None => self
                .frozen
                .get(name)
                .ok_or_else(|| candle_core::Error::Msg(format!("cannot find tensor {name}")))?
                .clone(),
        };
        if t.shape() != &s {
            candle_core::bail!(
                "shape mismatch for {name}: expected {s:?}, got {:?}",
                t.shape()
            );
        }
        t.to_dtype(dtype)?.to_device(dev)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        let t = match self.trainable.get(name) {
            Some(v) => v.as_tensor().clone(),
            None => self
                .frozen
                .get(name)
                .ok_or_else(|| candle_core::Error::Msg(format!("cannot find tensor {name}")))?
                .clone(),
        };
        t.to_dtype(dtype)?.to_device(dev)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.trainable.contains_key(name) || self.frozen.contains_key(name)
    }
}

/// The model with its trainable weights as variables, plus their names.
pub struct TrainableModel {
    /// The model (built over the variables).
    pub model: VisualGlm,
    /// The trainable variables, by canonical name.
    pub vars: Vec<(String, Var)>,
    /// The frozen tensors (to check they never change).
    pub frozen: HashMap<String, Tensor>,
    /// The checkpoint family the weights came from (kept when the model is exported).
    pub family: checkpoint::CheckpointFamily,
}

/// Loads `path` in f32 on `device` with the weights whose names start with one of
/// `trainable` as variables.
pub fn load_trainable(
    path: &Path,
    trainable: &[String],
    device: &Device,
) -> Result<TrainableModel> {
    let ck = checkpoint::load(path, &CheckpointOptions::default())?;
    let expected = crate::param_shapes::expected_parameters(&ck.config)?;
    checkpoint::validate(&ck, &expected)?;
    let mut frozen = HashMap::new();
    let mut vars = Vec::new();
    for (name, t) in ck.tensors {
        let t = t.to_dtype(DType::F32)?.to_device(device)?;
        if trainable.iter().any(|p| name.starts_with(p.as_str())) {
            vars.push((name, Var::from_tensor(&t)?));
        } else {
            frozen.insert(name, t);
        }
    }
    if vars.is_empty() {
        return Err(VisualGlmError::Input(format!(
            "no weight matches the trainable prefixes {trainable:?}"
        )));
    }
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    let backend = TrainableBackend {
        frozen: frozen.clone(),
        trainable: vars.iter().cloned().collect(),
    };
    let vb = VarBuilder::from_backend(Box::new(backend), DType::F32, device.clone());
    let model = VisualGlm::from_var_builder(&ck.config, vb)?;
    Ok(TrainableModel {
        model,
        vars,
        frozen,
        family: ck.family,
    })
}

/// The release's training ids of one example: `encode("<img>")` + 32 pads +
/// `encode("</img>问：{prompt}\n答：")`, then the answer.
pub fn example_ids(
    tokenizer: &ChatGlmTokenizer,
    image_length: usize,
    prompt: &str,
    label: &str,
    english: bool,
    cfg: &LabelConfig,
) -> Result<(LabeledIds, usize)> {
    let (q, a) = if english {
        ("Q:", "\nA:")
    } else {
        ("问：", "\n答：")
    };
    let prefix = tokenizer.encode("<img>")?;
    let suffix = tokenizer.encode(&format!("</img>{q}{prompt}{a}"))?;
    let source = SourceIds::assemble(&prefix, image_length, tokenizer.pad_id(), &suffix);
    let answer = tokenizer.encode(label)?;
    let special = SpecialIds {
        gmask: tokenizer.gmask_id(),
        sop: tokenizer.sop_id(),
        eop: tokenizer.eop_id(),
        pad: tokenizer.pad_id(),
    };
    let ids = build_labeled_ids(&source.ids, &answer, &special, cfg)
        .map_err(|e| VisualGlmError::Input(e.to_string()))?;
    Ok((ids, source.pre_image))
}

/// The mean autoregressive loss of a batch: `pixels` `[B, 3, 224, 224]`, labeled ids of equal
/// length, the image placeholders at `pre_image`.
pub fn batch_loss(
    model: &VisualGlm,
    pixels: &Tensor,
    batch: &[LabeledIds],
    pre_image: usize,
) -> Result<Tensor> {
    Ok(batch_forward(model, pixels, batch, pre_image, None)?.0)
}

/// [`batch_loss`] and the Q-Former output `[B, 32, width]` (the ITC image side), with an
/// optional embedding gradient shrink.
pub fn batch_forward(
    model: &VisualGlm,
    pixels: &Tensor,
    batch: &[LabeledIds],
    pre_image: usize,
    shrink: Option<f64>,
) -> Result<(Tensor, Tensor)> {
    let device = model.device().clone();
    let (ids, labels) =
        collate(batch, &device).map_err(|e| VisualGlmError::Input(e.to_string()))?;
    let seq = ids.dim(1)?;
    let stages = model.encode_image_stages(pixels)?;
    let embeds =
        model.input_embeds_shrunk(&ids, Some((&stages.image_embeds, pre_image)), shrink)?;
    let g = &model.config().glm;
    let rows: Vec<RowLayout> = batch
        .iter()
        .map(|b| {
            let (context_len, gmask_index) = visualglm_language::positions::context_and_mask(
                &b.input_ids,
                g.bos_token_id,
                g.gmask_token_id,
                g.mask_token_id,
            );
            RowLayout {
                pad_left: 0,
                len: seq,
                context_len,
                gmask_index,
            }
        })
        .collect();
    let (pos, mask) = batch_prefix_inputs(&rows, seq, &device)?;
    let glm = model.language_model();
    let hidden = glm.forward_embeds(&embeds, &pos, Some(&mask), None, None)?;
    let logits = glm.logits(&hidden)?;
    let loss = ar_loss(&logits, &labels)
        .and_then(|l| l.mean())
        .map_err(train_err)?;
    Ok((loss, stages.qformer_out))
}

/// What turning examples into model inputs needs.
struct ExampleContext<'a> {
    tokenizer: &'a ChatGlmTokenizer,
    preprocessor: &'a ImagePreprocessor,
    labels: &'a LabelConfig,
    image_length: usize,
    english: bool,
    device: &'a Device,
}

/// Pixels `[B, 3, 224, 224]`, labeled ids and `pre_image` of a batch of examples (images
/// decoded in parallel).
fn prepare_batch(
    batch: &[&visualglm_train::data::Example],
    ctx: &ExampleContext<'_>,
) -> Result<(Tensor, Vec<LabeledIds>, usize)> {
    let images = batch
        .par_iter()
        .map(|ex| load_image(&ex.image).map_err(VisualGlmError::from))
        .collect::<Result<Vec<_>>>()?;
    let pixels = ctx.preprocessor.preprocess_batch(&images, ctx.device)?;
    let mut labeled = Vec::with_capacity(batch.len());
    let mut pre_image = 0;
    for ex in batch {
        let (ids, pre) = example_ids(
            ctx.tokenizer,
            ctx.image_length,
            &ex.prompt,
            &ex.label,
            ctx.english,
            ctx.labels,
        )?;
        pre_image = pre;
        labeled.push(ids);
    }
    Ok((pixels, labeled, pre_image))
}

/// The mean autoregressive loss over `examples`, in batches of `batch_size` (no update).
fn validation_loss(
    model: &VisualGlm,
    examples: &[visualglm_train::data::Example],
    batch_size: usize,
    ctx: &ExampleContext<'_>,
) -> Result<f64> {
    let mut total = 0.0;
    let mut n = 0usize;
    for chunk in examples.chunks(batch_size.max(1)) {
        let batch: Vec<&visualglm_train::data::Example> = chunk.iter().collect();
        let (pixels, labeled, pre_image) = prepare_batch(&batch, ctx)?;
        let loss = batch_loss(model, &pixels, &labeled, pre_image)?.detach();
        total += f64::from(loss.to_dtype(DType::F32)?.to_scalar::<f32>()?) * chunk.len() as f64;
        n += chunk.len();
    }
    Ok(total / n.max(1) as f64)
}

/// Adapters whose tensors are the trainable variables listed beside them.
type TrainableLora = (LoraAdapters, Vec<(String, Var)>);

/// Trainable LoRA adapters per `cfg.lora_*` on the frozen ChatGLM linears, attached unmerged
/// to `tm.model`; `None` when `lora_rank` is 0.
fn attach_trainable_lora(
    cfg: &FinetuneConfig,
    tm: &mut TrainableModel,
    device: &Device,
) -> Result<Option<TrainableLora>> {
    let Some(config) = cfg.lora_config() else {
        return Ok(None);
    };
    let lora_err = |e: crate::lora::LoraError| VisualGlmError::Input(e.to_string());
    let fresh =
        LoraAdapters::init(config, &tm.frozen, cfg.seed, device).map_err(|e| lora_err(e.into()))?;
    if fresh.is_empty() {
        return Err(VisualGlmError::Input(
            "lora_rank is set but no frozen ChatGLM linear matches lora_layers".into(),
        ));
    }
    let (set, vars) = fresh.to_vars().map_err(|e| lora_err(e.into()))?;
    tm.model.attach_lora(&set).map_err(lora_err)?;
    Ok(Some((set, vars)))
}

/// What besides the model weights goes into an exported model directory.
struct ExportParts<'a> {
    tokenizer: &'a Path,
    lora: Option<&'a LoraAdapters>,
    heads: Option<&'a ItcHeads>,
}

/// Writes the trained model as a model directory: frozen and trained weights, LoRA merged,
/// the tokenizer, and the ITC heads (`itc.safetensors`) when trained.
fn export_model(tm: &TrainableModel, parts: &ExportParts<'_>, dir: &Path) -> Result<()> {
    let mut tensors = tm.frozen.clone();
    for (name, var) in &tm.vars {
        tensors.insert(name.clone(), var.as_tensor().detach());
    }
    let mut ck = checkpoint::Checkpoint {
        config: tm.model.config().clone(),
        family: tm.family,
        tensors,
        source_of: HashMap::new(),
    };
    if let Some(set) = parts.lora {
        crate::lora::merge_checkpoint(&mut ck, set)
            .map_err(|e| VisualGlmError::Input(e.to_string()))?;
    }
    crate::model_dir::write_model_dir(&ck, parts.tokenizer, dir)?;
    if let Some(h) = parts.heads {
        h.save(&dir.join(ITC_FILE))?;
    }
    tracing::info!("exported the trained model to {}", dir.display());
    Ok(())
}

/// λ of the update after `step` updates: `itc_weight`, ramped over `itc_ramp_steps`.
fn itc_lambda(cfg: &FinetuneConfig, step: u64) -> f64 {
    if cfg.itc_ramp_steps == 0 {
        return cfg.itc_weight;
    }
    let progress = (step + 1) as f64 / cfg.itc_ramp_steps as f64;
    cfg.itc_weight * progress.min(1.0)
}

fn train_err(e: visualglm_train::TrainError) -> VisualGlmError {
    VisualGlmError::Input(e.to_string())
}

/// Prepares the metrics log `metrics` (one [`StepReport`] JSON line per update, applied or
/// skipped, in order) of the run in `out` for a resume from its latest checkpoint: the lines
/// that checkpoint had seen are kept and the later ones (written before a kill) dropped, so a
/// resumed run logs no step twice and its loss curve never goes back in time. A fresh run (no
/// checkpoint) starts an empty log. Rewrites the file atomically when it changes; returns the
/// step the run resumes from (0 for a fresh run).
pub fn resume_metrics(out: &Path, metrics: &Path) -> Result<u64> {
    let state = CheckpointManager::new(out, 1)
        .and_then(|m| m.latest_state())
        .map_err(train_err)?;
    let (step, seen) = state
        .map(|s| (s.counters.step, s.counters.step + s.counters.skipped_steps))
        .unwrap_or((0, 0));
    let io_err = |e: std::io::Error| {
        VisualGlmError::Input(format!("cannot rewrite {}: {e}", metrics.display()))
    };
    let text = match std::fs::read(metrics) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(step),
        Err(e) => return Err(io_err(e)),
    };
    let mut kept = String::new();
    let mut lines = 0u64;
    for line in text.lines() {
        if lines == seen {
            break;
        }
        // A line cut short by the kill does not parse: it is dropped with what follows it.
        let line_step = serde_json::from_str::<serde_json::Value>(line)
            .ok()
            .and_then(|v| v.get("step").and_then(serde_json::Value::as_u64));
        match line_step {
            Some(s) if s <= step => {
                kept.push_str(line);
                kept.push('\n');
                lines += 1;
            }
            _ => break,
        }
    }
    if kept != text {
        visualglm_files::write_atomic_bytes(metrics, kept.as_bytes())
            .map_err(|e| io_err(e.source))?;
    }
    Ok(step)
}

/// Runs (or resumes, from the latest checkpoint in `cfg.out`) a fine-tune; `on_step` sees
/// every update and returns whether to go on (stopping early leaves the run resumable from its
/// last checkpoint). Returns the reports of the updates made by this call.
pub fn finetune(
    cfg: &FinetuneConfig,
    device: &Device,
    on_step: &mut dyn FnMut(&StepReport) -> bool,
) -> Result<Vec<StepReport>> {
    if cfg.batch_size == 0 || cfg.grad_accum == 0 {
        return Err(VisualGlmError::Input(
            "batch_size and grad_accum must be at least 1".into(),
        ));
    }
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
        None => ChatGlmTokenizer::from_dir(if cfg.model.is_dir() {
            cfg.model.as_path()
        } else {
            cfg.model.parent().unwrap_or(Path::new("."))
        })?,
    };
    let mut tm = load_trainable(&cfg.model, &cfg.trainable, device)?;
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
    let params = ParamSet::new(all_vars).map_err(train_err)?;
    let mut opt = AdamW::new(
        params,
        AdamWConfig {
            weight_decay: cfg.weight_decay,
            ..AdamWConfig::default()
        },
    )
    .map_err(train_err)?;
    let schedule = LrSchedule::cosine(cfg.lr, cfg.warmup_steps, cfg.steps, cfg.min_lr_ratio)
        .map_err(train_err)?;
    let manager = CheckpointManager::new(&cfg.out, cfg.keep_last).map_err(train_err)?;
    let mut state = TrainState::default();
    let caption_ids = CaptionIds::new(examples.iter().map(|ex| ex.label.as_str()));
    let mut queue = TextQueue::new(cfg.itc_queue);
    if let Some(ck) = manager.load_latest(device).map_err(train_err)? {
        ck.restore(&mut opt).map_err(train_err)?;
        queue = TextQueue::from_tensors(cfg.itc_queue, &ck.optimizer)?;
        tracing::info!("resumed from {}", ck.dir.display());
        state = ck.state;
    }
    let sampler_cfg = SamplerConfig {
        seed: cfg.seed,
        batch_size: cfg.batch_size,
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
    let mut reports = Vec::new();
    while state.counters.step < cfg.steps {
        let mut accumulated: Option<Gradients> = None;
        let mut loss_sum = 0.0;
        for _ in 0..cfg.grad_accum {
            let indices = sampler.next_batch();
            let batch: Vec<_> = indices.iter().filter_map(|&i| examples.get(i)).collect();
            let ctx = ExampleContext {
                tokenizer: &tokenizer,
                preprocessor: &preprocessor,
                labels: &labels_cfg,
                image_length,
                english: cfg.english,
                device,
            };
            let (pixels, labeled, pre_image) = prepare_batch(&batch, &ctx)?;
            let (mut loss, qformer_out) = batch_forward(
                &tm.model,
                &pixels,
                &labeled,
                pre_image,
                cfg.embedding_grad_shrink,
            )?;
            if let Some(h) = &heads {
                let captions: Vec<&str> = batch.iter().map(|ex| ex.label.as_str()).collect();
                let text = caption_features(&tm.model, &tokenizer, &captions, h.caption_layout())?;
                let image = if cfg.itc_detach {
                    qformer_out.detach()
                } else {
                    qformer_out
                };
                let ids = caption_ids.of(&captions);
                let itc = h.loss(&image, &text, &ids, Some(&queue))?;
                queue.push(&text, &ids)?;
                let lambda = itc_lambda(cfg, state.counters.step);
                loss = total_loss(&loss, &itc, lambda).map_err(train_err)?;
            }
            let loss_value = f64::from(loss.to_dtype(DType::F32)?.to_scalar::<f32>()?);
            loss_sum += loss_value;
            let grads =
                Gradients::from_store(&loss.backward()?, opt.params()).map_err(train_err)?;
            accumulated = Some(match accumulated {
                None => grads,
                Some(mut acc) => {
                    acc.add(&grads).map_err(train_err)?;
                    acc
                }
            });
        }
        let mut grads = accumulated.ok_or_else(|| VisualGlmError::Input("empty update".into()))?;
        if cfg.grad_accum > 1 {
            grads
                .scale(1.0 / cfg.grad_accum as f64)
                .map_err(train_err)?;
        }
        let loss = loss_sum / cfg.grad_accum as f64;
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
            },
            StepOutcome::Skipped { grad_norm, .. } => StepReport {
                step: state.counters.step,
                loss,
                lr: 0.0,
                grad_norm,
                skipped: true,
                val_loss: None,
            },
        };
        let mut report = report;
        let at_end = state.counters.step >= cfg.steps;
        let due = cfg.val_every > 0 && state.counters.step % cfg.val_every == 0;
        if !val_examples.is_empty() && (due || at_end) {
            let ctx = ExampleContext {
                tokenizer: &tokenizer,
                preprocessor: &preprocessor,
                labels: &labels_cfg,
                image_length,
                english: cfg.english,
                device,
            };
            report.val_loss = Some(validation_loss(
                &tm.model,
                &val_examples,
                cfg.batch_size,
                &ctx,
            )?);
        }
        let go_on = on_step(&report);
        state.metrics.insert("loss".into(), loss);
        if let Some(v) = report.val_loss {
            state.metrics.insert("val_loss".into(), v);
        }
        reports.push(report);
        if at_end || (cfg.save_every > 0 && state.counters.step % cfg.save_every == 0) {
            let mut training_state = opt.state_tensors().map_err(train_err)?;
            training_state.extend(queue.tensors()?);
            manager
                .save(&state, &opt.params().tensors(), &training_state)
                .map_err(train_err)?;
        }
        if at_end && cfg.export {
            let export = ExportParts {
                tokenizer: tokenizer.source(),
                lora: lora.as_ref().map(|(set, _)| set),
                heads: heads.as_ref(),
            };
            export_model(&tm, &export, &cfg.out.join("model"))?;
        }
        if !go_on {
            break;
        }
    }
    Ok(reports)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn itc_lambda_ramps_linearly_then_stays() {
        let cfg = FinetuneConfig {
            itc_weight: 0.1,
            itc_ramp_steps: 4,
            ..FinetuneConfig::default()
        };
        let got: Vec<f64> = (0..6).map(|s| itc_lambda(&cfg, s)).collect();
        let want = [0.025, 0.05, 0.075, 0.1, 0.1, 0.1];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-12, "{got:?}");
        }
        let constant = FinetuneConfig {
            itc_weight: 0.3,
            ..FinetuneConfig::default()
        };
        assert_eq!(itc_lambda(&constant, 0), 0.3);
    }
}
