//! `visualglm bench --train`: the release's LoRA fine-tune updates on the full-size model with
//! random weights made in memory (no files), timed, with the peak resident memory.
//!
//! Protocol (issue 18): full 320-token examples (64 + 256, no padding shortcut), batch 4, the
//! release's adapters (rank 10, alpha 1, layers 0 and 14), AdamW and clipping as the release;
//! the frozen base held as `--base-dtype` with `--base-quantize` ChatGLM linears (QLoRA), a
//! tied embedding table and `lm_head`; the image encoder in memory and run on every update. The
//! peak includes building the model. After `--steps` updates the LoRA state is saved as a
//! checkpoint, restored, and one more update is run (the resume). The last line is JSON.

use std::time::Instant;

use anyhow::Context;
use candle_core::{DType, Device, Tensor};
use visualglm::checkpoint::CheckpointFamily;
use visualglm::finetune::{
    batch_forward, gradients, memory_plan, peak_rss_mib, trainable_from_tensors, BaseWeights,
    FinetuneConfig, FrozenForm,
};
use visualglm::lora::recipe::release_config;
use visualglm::{expected_parameters, VisualGlmConfig};
use visualglm_nn::checkpoint::Checkpointing;
use visualglm_nn::lora::LoraAdapters;
use visualglm_train::checkpoint::{CheckpointManager, TrainState};
use visualglm_train::labels::{build_labeled_ids, LabelConfig, LabeledIds, SpecialIds};
use visualglm_train::optim::{AdamW, AdamWConfig, ParamSet};
use visualglm_train::schedule::LrSchedule;
use visualglm_train::step::{apply_step, StepOutcome};

use super::bench::Args;

/// A random tensor of `shape` for parameter `name` made directly in `dtype`: LayerNorm gains
/// 1, other vectors 0, matrices uniform in ±0.02.
fn random_param(name: &str, shape: &[usize], dtype: DType) -> anyhow::Result<Tensor> {
    let dev = Device::Cpu;
    if shape.len() <= 1 {
        let norm = name.contains("norm") || name.contains("ln_");
        return Ok(if norm && name.ends_with("weight") {
            Tensor::ones(shape, dtype, &dev)?
        } else {
            Tensor::zeros(shape, dtype, &dev)?
        });
    }
    Ok(Tensor::zeros((), dtype, &dev)?
        .broadcast_as(shape)?
        .rand_like(-0.02, 0.02)?)
}

/// Four full-length examples: source `<img>`-style prefix, 32 image placeholders and a
/// suffix filling `max_source_length − 1`, then an answer filling `max_target_length − 2`.
fn full_length_batch(
    cfg: &VisualGlmConfig,
    labels: &LabelConfig,
    batch: usize,
) -> anyhow::Result<(Vec<LabeledIds>, usize)> {
    let g = &cfg.glm;
    let special = SpecialIds {
        gmask: g.gmask_token_id,
        sop: g.bos_token_id,
        eop: g.eos_token_id.context("the config has no eos id")?,
        pad: g.pad_token_id,
    };
    let pre_image = 2;
    let word = |i: usize| 20_000 + (i as u32 * 7919) % 100_000;
    let mut out = Vec::with_capacity(batch);
    for b in 0..batch {
        let mut source: Vec<u32> = (0..labels.max_source_length - 1)
            .map(|i| word(i + 1000 * b))
            .collect();
        for slot in source.iter_mut().skip(pre_image).take(cfg.image_length) {
            *slot = g.pad_token_id;
        }
        let answer: Vec<u32> = (0..labels.max_target_length - 2)
            .map(|i| word(i + 500 + 1000 * b))
            .collect();
        let ids = build_labeled_ids(&source, &answer, &special, labels)?;
        anyhow::ensure!(ids.unpadded_len == labels.max_seq_len(), "not full length");
        out.push(ids);
    }
    Ok((out, pre_image))
}

/// Runs `bench --train`.
pub fn run(args: &Args) -> anyhow::Result<()> {
    let dev = Device::Cpu;
    let mut config = VisualGlmConfig::visualglm_6b();
    config.glm.num_layers = args.glm_layers;
    config.vision.num_layers = args.vit_layers;
    let run_cfg = FinetuneConfig {
        trainable: vec![],
        base_dtype: args.base_dtype.clone(),
        base_quantize: args.base_quantize.clone(),
        checkpoint_activations: args.checkpoint_activations,
        batch_size: args.train_batch,
        lora_rank: 10,
        lora_alpha: 1.0,
        lora_layers: Some(vec![0, 14]),
        ..FinetuneConfig::default()
    };
    let base = run_cfg.base_weights(&dev)?;
    let threads = super::bench::rayon_threads();
    eprintln!(
        "bench --train: {} GLM layers, {} ViT layers, base {:?}, quantize {}, checkpointing \
         {}, batch {} × {} tokens, {threads} threads",
        args.glm_layers,
        args.vit_layers,
        base.dtype,
        args.base_quantize.as_deref().unwrap_or("none"),
        args.checkpoint_activations,
        args.train_batch,
        run_cfg.max_source_length + run_cfg.max_target_length,
    );
    eprintln!("{}", memory_plan(&run_cfg, &config, &base)?);

    let t0 = Instant::now();
    let tm = build(&config, &base)?;
    let mut tm = tm;
    let lora = LoraAdapters::init(release_config(), &tm.frozen, 1234, &dev)?;
    let (set, vars) = lora.to_vars()?;
    tm.model.attach_lora(&set)?;
    let checkpointing = args
        .checkpoint_activations
        .then(|| Checkpointing::new(vars.iter().map(|(_, v)| v.as_tensor().clone()).collect()));
    tm.model.set_checkpointing(checkpointing.clone());
    let build_s = t0.elapsed().as_secs_f64();
    let rss_built = super::bench::proc_status_mib("VmRSS:");
    eprintln!(
        "built in {build_s:.1} s, {} adapters ({} tensors); RSS {:.2} GiB",
        set.len(),
        vars.len(),
        rss_built.unwrap_or(0.0) / 1024.0
    );

    let mut opt = AdamW::new(ParamSet::new(vars)?, AdamWConfig::default())?;
    let schedule = LrSchedule::sat_release(300);
    let labels = LabelConfig {
        max_source_length: run_cfg.max_source_length,
        max_target_length: run_cfg.max_target_length,
        ..LabelConfig::default()
    };
    let (batch, pre_image) = full_length_batch(&config, &labels, args.train_batch)?;
    let pixels = Tensor::randn(0f32, 1.0, (args.train_batch, 3, 224, 224), &dev)?;
    let mut state = TrainState::default();
    let update = |opt: &mut AdamW, state: &mut TrainState| -> anyhow::Result<(f64, f64)> {
        let t = Instant::now();
        let (loss, _) = batch_forward(&tm.model, &pixels, &batch, pre_image, None)?;
        let loss_value = f64::from(loss.to_dtype(DType::F32)?.to_scalar::<f32>()?);
        let grads = gradients(&loss, checkpointing.as_ref(), opt.params())?;
        drop(loss);
        let outcome = apply_step(
            opt,
            &schedule,
            &mut state.counters,
            loss_value,
            grads,
            Some(0.1),
        )?;
        anyhow::ensure!(
            matches!(outcome, StepOutcome::Applied { .. }),
            "update {} was skipped (loss {loss_value})",
            state.counters.step
        );
        Ok((t.elapsed().as_secs_f64(), loss_value))
    };
    let mut seconds = Vec::new();
    let mut losses = Vec::new();
    for i in 0..args.steps.max(1) {
        let (s, loss) = update(&mut opt, &mut state)?;
        eprintln!(
            "update {}: {s:.1} s, loss {loss:.4}, peak RSS {:.2} GiB",
            i + 1,
            peak_rss_mib().unwrap_or(0.0) / 1024.0
        );
        seconds.push(s);
        losses.push(loss);
    }
    // The resume: save the LoRA and AdamW state, restore it, and run one more update.
    let dir = std::env::temp_dir().join(format!("visualglm-bench-train-{}", std::process::id()));
    let manager = CheckpointManager::new(&dir, 1)?;
    manager.save_training(&state, &opt)?;
    let ck = manager
        .load_latest(&dev)?
        .context("the checkpoint just saved is missing")?;
    ck.restore(&mut opt)?;
    let mut resumed = ck.state;
    std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    let (resume_s, resume_loss) = update(&mut opt, &mut resumed)?;
    eprintln!("update after resume: {resume_s:.1} s, loss {resume_loss:.4}");
    anyhow::ensure!(
        losses.iter().chain([&resume_loss]).all(|l| l.is_finite()),
        "non-finite loss: {losses:?} {resume_loss}"
    );
    let mean = seconds.iter().sum::<f64>() / seconds.len() as f64;
    let peak = peak_rss_mib();
    eprintln!(
        "mean {mean:.1} s per update; peak RSS {:.2} GiB",
        peak.unwrap_or(0.0) / 1024.0
    );
    let json = serde_json::json!({
        "bench": "train",
        "glm_layers": args.glm_layers,
        "vit_layers": args.vit_layers,
        "base_dtype": args.base_dtype,
        "base_quantize": args.base_quantize,
        "checkpoint_activations": args.checkpoint_activations,
        "batch": args.train_batch,
        "tokens": labels.max_seq_len(),
        "threads": threads,
        "build_s": build_s,
        "seconds_per_update": seconds,
        "mean_seconds_per_update": mean,
        "resume_seconds": resume_s,
        "losses": losses,
        "resume_loss": resume_loss,
        "peak_rss_mib": peak,
    });
    println!("{json}");
    Ok(())
}

/// The trainable model over random frozen weights made tensor by tensor in their frozen form
/// (dense ones directly in their dtype; quantized ones drawn in f32 one matrix at a time).
fn build(
    config: &VisualGlmConfig,
    base: &BaseWeights,
) -> anyhow::Result<visualglm::finetune::TrainableModel> {
    const EMB: &str = "transformer.word_embeddings.weight";
    const LM_HEAD: &str = "lm_head.weight";
    let mut params = expected_parameters(config)?;
    // The table first, so the tied lm_head can share it.
    params.sort_by_key(|(n, _)| (n != EMB, n.clone()));
    let mut table: Option<Tensor> = None;
    let mut failure = None;
    let tensors = params.into_iter().map_while(|(name, shape)| {
        let made = if name == LM_HEAD {
            table
                .clone()
                .context("no embedding table to tie lm_head to")
        } else {
            let dtype = match base.frozen_form(&name, &shape) {
                FrozenForm::Dense(d) => d,
                FrozenForm::Quantized(_) => DType::F32,
            };
            random_param(&name, &shape, dtype)
        };
        match made {
            Ok(t) => {
                if name == EMB {
                    table = Some(t.clone());
                }
                Some((name, t))
            }
            Err(e) => {
                failure = Some(e);
                None
            }
        }
    });
    let tm = trainable_from_tensors(
        config,
        CheckpointFamily::Hf,
        tensors.map(Ok),
        &[],
        &Device::Cpu,
        base,
    );
    if let Some(e) = failure {
        return Err(e);
    }
    Ok(tm?)
}
