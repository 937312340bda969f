//! `visualglm bench`: times image encoding, LM prefill and decode with the full-size widths
//! and random weights made in memory (no files), for one weight format per run.
//!
//! The GLM and ViT depths are configurable (default 2 GLM and 4 ViT layers, full widths,
//! full 12-layer Q-Former, full 130 528-token vocabulary) so a run fits in a few GB; the
//! per-layer and `lm_head` times are printed separately so 28-/39-layer figures can be
//! extrapolated. Peak RSS (`VmHWM`) is for the whole process, so run one format per process
//! (bench/run_rust.sh does).
//!
//! Weights are made so that the build never holds more than the final model plus one layer's
//! f32 weight: quantized weights (GLM layers, `lm_head`, the embedding table) are drawn and
//! quantized a block of rows at a time, dense ones are drawn directly in their dtype (e.g. the
//! f16 image encoder). `--memory-only` builds the full model, encodes one image, prefills a
//! short prompt and decodes 2 tokens, and prints only the RSS figures.

use std::collections::HashMap;
use std::time::Instant;

use anyhow::Context;
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use visualglm::gguf::is_glm_linear_weight;
use visualglm::quantize::{parse_quantize_type, QuantizeOptions};
use visualglm::{
    expected_parameters, BuildOptions, EmbedSpan, LoadOptions, VisualGlm, VisualGlmConfig,
};
use visualglm_language::positions::position_at;
use visualglm_nn::quant::{dtype_name, fit_dtype};
use visualglm_nn::QuantizedWeight;

/// Arguments of `visualglm bench`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Weight format: f32, f16, or a quantization type (q8_0, q4_0, q4k, …) applied to the GLM
    /// layer weights (activations and other weights f32).
    #[arg(long, default_value = "f32")]
    format: String,
    /// Load this checkpoint (any form `--model` takes elsewhere, read one tensor at a time and
    /// quantized as --format, --lm-head and --embeddings say) instead of drawing random
    /// weights; --glm-layers and --vit-layers are then the checkpoint's. A hub id works too.
    /// (`VISUALGLM_MODEL` is not read here: without --model the bench draws random weights.)
    #[arg(long, short = 'm')]
    model: Option<String>,
    #[command(flatten)]
    hub: super::model_args::HubArgs,
    #[command(flatten)]
    pub(super) alloc: super::model_args::AllocArgs,
    /// Number of GLM layers (full width 4096); the released model has 28.
    #[arg(long, default_value_t = 2)]
    pub(super) glm_layers: usize,
    /// Number of ViT layers (full width 1408); the released model has 39.
    #[arg(long, default_value_t = 4)]
    pub(super) vit_layers: usize,
    /// Prompt length for the prefill [default: 300; 32 with --memory-only].
    #[arg(long)]
    prompt_len: Option<usize>,
    /// Decode steps timed after the prefill.
    #[arg(long, default_value_t = 16)]
    decode_steps: usize,
    /// Image batch sizes to time.
    #[arg(long, value_delimiter = ',', default_value = "1,8")]
    image_batch: Vec<usize>,
    /// Timed repetitions of each measurement (after one warm-up); the best is reported.
    #[arg(long, default_value_t = 2)]
    reps: usize,
    /// Skip the image encoder timings.
    #[arg(long)]
    no_vision: bool,
    /// Also quantize `lm_head` with the layers' type (needs a quantized --format).
    #[arg(long)]
    lm_head: bool,
    /// Quantize the word-embedding table with the layers' type and share it with `lm_head`
    /// (tied, as in the HF layout and chatglm.cpp; implies --lm-head).
    #[arg(long)]
    embeddings: bool,
    /// Dtype of a dense (not --embeddings) word-embedding table: f32 or f16 (lookups are cast
    /// to the activation dtype). Default: the run dtype.
    #[arg(long)]
    embeddings_dtype: Option<String>,
    /// Dtype of the image encoder (ViT, Q-Former, glm_proj): f32 or f16. Default: the run
    /// dtype (f32 for the quantized formats).
    #[arg(long)]
    vision_dtype: Option<String>,
    /// Dtype of the KV cache: f32 or f16. Default: the run dtype.
    #[arg(long)]
    kv_cache_dtype: Option<String>,
    /// Only measure memory: build, encode one image, prefill a prompt with it (--prompt-len
    /// tokens, 32 unless set, plus the image's) and decode 2 tokens; print the RSS after the
    /// build and the peak RSS, no timings.
    #[arg(long)]
    memory_only: bool,
    /// Take turns with another runtime (bench/lockstep.py): print `ready`, then for each line
    /// read on stdin run one unit of work and print its ms, until `quit` or the end of input.
    /// `decode`: one decode step after the prefill; `prefill`: one prefill of the prompt;
    /// `encode`: one image batch (the first --image-batch size; ms per image). Nothing else is
    /// timed.
    #[arg(long, value_enum)]
    lockstep: Option<Lockstep>,
    /// Time the release's LoRA fine-tune updates instead (see `bench_train`): full 320-token
    /// examples, the adapters on GLM layers 0 and 14, a resume; prints seconds per update and
    /// the peak RSS.
    #[arg(long)]
    pub(super) train: bool,
    /// `--train`: dtype of the frozen linears, tables and image encoder (f32 or f16).
    #[arg(long, default_value = "f16")]
    pub(super) base_dtype: String,
    /// `--train`: hold the frozen ChatGLM linears as this GGML type (q4_0, q8_0, …).
    #[arg(long)]
    pub(super) base_quantize: Option<String>,
    /// `--train`: recompute each block in the backward pass.
    #[arg(long)]
    pub(super) checkpoint_activations: bool,
    /// `--train`: timed updates before the resume.
    #[arg(long, default_value_t = 3)]
    pub(super) steps: usize,
    /// `--train`: examples per update.
    #[arg(long, default_value_t = 4)]
    pub(super) train_batch: usize,
}

impl Args {
    /// The prompt length: `--prompt-len`, else 300 (32 for `--memory-only`).
    fn prompt_len(&self) -> usize {
        self.prompt_len
            .unwrap_or(if self.memory_only { 32 } else { 300 })
    }
}

/// The unit of work of `--lockstep`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Lockstep {
    /// One decode step.
    Decode,
    /// One prefill of the --prompt-len prompt (a fresh KV cache) and its last row's logits.
    Prefill,
    /// One batch of images through the image encoder.
    Encode,
}

/// A random `shape` tensor uniform in ±0.02, drawn directly in `dtype` (no f32 copy).
fn rand_in(shape: &[usize], dtype: DType) -> anyhow::Result<Tensor> {
    Ok(Tensor::zeros((), dtype, &Device::Cpu)?
        .broadcast_as(shape)?
        .rand_like(-0.02, 0.02)?)
}

/// A random `[rows, cols]` weight quantized to `dtype`, drawn and quantized 1024 rows at a
/// time into the buffer the weight keeps (no full f32 copy, no second quantized copy: the
/// bytes are repacked in place where the decode kernels want it), as a GGUF file is loaded.
fn quantized_random(rows: usize, cols: usize, dtype: GgmlDType) -> anyhow::Result<QuantizedWeight> {
    let row_bytes = cols / dtype.block_size() * dtype.type_size();
    let mut bytes = Vec::with_capacity(rows * row_bytes);
    let mut start = 0;
    while start < rows {
        let n = 1024.min(rows - start);
        let w = Tensor::rand(-0.02f32, 0.02, (n, cols), &Device::Cpu)?;
        bytes.extend_from_slice(&QTensor::quantize(&w, dtype)?.data()?);
        start += n;
    }
    Ok(QuantizedWeight::from_ggml_bytes(
        dtype,
        (rows, cols),
        bytes,
    )?)
}

fn parse_float_dtype(flag: &str, s: &str) -> anyhow::Result<DType> {
    match s.to_ascii_lowercase().as_str() {
        "f32" => Ok(DType::F32),
        "f16" => Ok(DType::F16),
        "bf16" => anyhow::bail!("{flag} bf16: not supported on the CPU (no CPU bf16 matmul)"),
        other => anyhow::bail!("{flag} {other}: use f32 or f16"),
    }
}

/// Which weights [`random_weights`] leaves as zero-stride placeholders (to be replaced by
/// quantized tensors), and the dtypes of the others.
struct WeightPlan {
    dtype: DType,
    vision_dtype: DType,
    embeddings_dtype: DType,
    layer_placeholders: bool,
    embeddings_placeholder: bool,
    lm_head_placeholder: bool,
}

/// Random weights for every parameter of `cfg`: LayerNorm weights 1, other 1-D tensors 0,
/// matrices uniform in ±0.02, the image encoder's in `plan.vision_dtype`. `lm_head` shares the
/// word-embedding storage unless it is a placeholder. Placeholders are zero-stride views (no
/// memory), to be replaced by quantized tensors.
fn random_weights(
    cfg: &VisualGlmConfig,
    plan: &WeightPlan,
) -> anyhow::Result<HashMap<String, Tensor>> {
    const EMB: &str = "transformer.word_embeddings.weight";
    const LM_HEAD: &str = "lm_head.weight";
    let dev = Device::Cpu;
    let mut out = HashMap::new();
    let params = expected_parameters(cfg)?;
    for (name, shape) in &params {
        let dtype = if name.starts_with(visualglm::checkpoint::HF_IMAGE_PREFIX) {
            plan.vision_dtype
        } else if name == EMB {
            plan.embeddings_dtype
        } else {
            plan.dtype
        };
        let placeholder = (plan.layer_placeholders && is_glm_linear_weight(name))
            || (plan.embeddings_placeholder && name == EMB)
            || (plan.lm_head_placeholder && name == LM_HEAD);
        let t = if placeholder {
            Tensor::zeros((), dtype, &dev)?.broadcast_as(shape.as_slice())?
        } else if name == LM_HEAD {
            continue;
        } else if shape.len() <= 1 {
            let norm = name.contains("norm") || name.contains("ln_");
            if norm && name.ends_with("weight") {
                Tensor::ones(shape.as_slice(), dtype, &dev)?
            } else {
                Tensor::zeros(shape.as_slice(), dtype, &dev)?
            }
        } else {
            rand_in(shape, dtype)?
        };
        out.insert(name.clone(), t);
    }
    if !out.contains_key(LM_HEAD) {
        let emb = out
            .get(EMB)
            .cloned()
            .context("config has no word embeddings")?;
        out.insert(LM_HEAD.into(), emb);
    }
    Ok(out)
}

/// A `/proc/self/status` memory entry (`VmHWM:` = peak RSS, `VmRSS:` = current) in MiB.
pub(super) fn proc_status_mib(key: &str) -> Option<f64> {
    proc_file_mib("/proc/self/status", key)
}

/// A `kB` value from a `/proc` file of `key: value kB` lines, in MiB (Linux).
fn proc_file_mib(path: &str, key: &str) -> Option<f64> {
    let s = std::fs::read_to_string(path).ok()?;
    let line = s.lines().find(|l| l.starts_with(key))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Best (minimum) wall time in ms of `reps` runs of `f` after one warm-up run: the least
/// disturbed by other processes on a shared machine.
fn time_ms(reps: usize, mut f: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<f64> {
    f()?;
    let mut v = Vec::with_capacity(reps.max(1));
    for _ in 0..reps.max(1) {
        let t = Instant::now();
        f()?;
        v.push(t.elapsed().as_secs_f64() * 1e3);
    }
    Ok(v.iter().copied().fold(f64::INFINITY, f64::min))
}

/// Loads `path` (one tensor at a time, quantizing as asked) instead of drawing weights.
fn load_checkpoint(
    path: &std::path::Path,
    dtype: DType,
    vision_dtype: DType,
    quantize: Option<(GgmlDType, QuantizeOptions)>,
) -> anyhow::Result<VisualGlm> {
    let opts = LoadOptions {
        vision_dtype: Some(vision_dtype),
        ..Default::default()
    };
    let loading = || format!("loading {}", path.display());
    let model = match quantize {
        None => VisualGlm::load(path, &Device::Cpu, dtype, &opts).with_context(loading)?,
        Some((q, qopts)) => {
            let (model, report) =
                VisualGlm::load_quantized(path, &Device::Cpu, dtype, &opts, q, &qopts)
                    .with_context(loading)?;
            eprintln!("quantized GLM weights: {}", report.summary());
            model
        }
    };
    let c = model.config();
    eprintln!(
        "bench: {} ({} GLM layers, {} ViT layers), vision {vision_dtype:?}",
        path.display(),
        c.glm.num_layers,
        c.vision.num_layers
    );
    Ok(model)
}

/// Runs `bench`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let fmt = args.format.to_ascii_lowercase();
    let (dtype, quant) = match fmt.as_str() {
        "f32" => (DType::F32, None),
        "f16" => (DType::F16, None),
        q => (DType::F32, Some(parse_quantize_type(q)?)),
    };
    let vision_dtype = match &args.vision_dtype {
        Some(s) => parse_float_dtype("--vision-dtype", s)?,
        None => dtype,
    };
    let embeddings_dtype = match &args.embeddings_dtype {
        Some(_) if args.embeddings => {
            anyhow::bail!("--embeddings-dtype is for a dense table; drop it or --embeddings")
        }
        Some(s) => parse_float_dtype("--embeddings-dtype", s)?,
        None => dtype,
    };
    let lm_head = args.lm_head || args.embeddings;
    if lm_head && quant.is_none() {
        anyhow::bail!("--lm-head/--embeddings need a quantized --format (q8_0, q4_0, q4k, …)");
    }
    let t0 = Instant::now();
    let (mut model, cfg) = match &args.model {
        Some(spec) => {
            let path = &args.hub.resolve(spec)?;
            anyhow::ensure!(
                args.embeddings_dtype.is_none(),
                "--embeddings-dtype draws a random table; it does not apply to --model"
            );
            let qopts = QuantizeOptions {
                lm_head,
                embeddings: args.embeddings,
            };
            let model = load_checkpoint(path, dtype, vision_dtype, quant.map(|q| (q, qopts)))?;
            let cfg = model.config().clone();
            (model, cfg)
        }
        None => {
            let mut cfg = VisualGlmConfig::visualglm_6b();
            cfg.glm.num_layers = args.glm_layers;
            cfg.vision.num_layers = args.vit_layers;
            let threads = rayon_threads();
            eprintln!(
                "bench: format {fmt}, {} GLM layers, {} ViT layers, vision {vision_dtype:?}, \
             lm_head {}, embeddings {}, {threads} threads, CPU kernels {} (override: {}=scalar|avx2|avx512)",
                args.glm_layers,
                args.vit_layers,
                if lm_head { fmt.as_str() } else { "dense" },
                if args.embeddings {
                    fmt.clone()
                } else {
                    format!("{embeddings_dtype:?}")
                },
                visualglm_nn::kernels::isa::active(),
                visualglm_nn::kernels::isa::ENV_VAR,
            );
            // The quantized lm_head / embedding table first, while little else is allocated: its
            // bytes are briefly held twice.
            let head_table = match quant {
                Some(q) if lm_head => {
                    let (vocab, hidden) = (cfg.glm.vocab_size, cfg.glm.hidden_size);
                    let d = fit_dtype(q, hidden).context("lm_head: no quantized type fits")?;
                    Some(quantized_random(vocab, hidden, d)?)
                }
                _ => None,
            };
            let plan = WeightPlan {
                dtype,
                vision_dtype,
                embeddings_dtype,
                layer_placeholders: quant.is_some(),
                embeddings_placeholder: args.embeddings,
                lm_head_placeholder: lm_head,
            };
            let weights = random_weights(&cfg, &plan)?;
            let vb = VarBuilder::from_tensors(weights, dtype, &Device::Cpu);
            let build = BuildOptions {
                vision_dtype: Some(vision_dtype),
            };
            let mut model = VisualGlm::from_var_builder(&cfg, vb, &build)?;
            if embeddings_dtype != dtype {
                // The VarBuilder cast the table to the run dtype; put a table in its own dtype back.
                let glm = model.language_model_mut();
                let (vocab, hidden) = glm.word_embeddings().dims()?;
                let table = rand_in(&[vocab, hidden], embeddings_dtype)?;
                glm.set_word_embeddings(visualglm_language::WordEmbeddings::dense(table)?)?;
            }
            if let Some(table) = head_table {
                let glm = model.language_model_mut();
                if args.embeddings {
                    glm.set_quantized_embeddings(table, true)?;
                    anyhow::ensure!(glm.lm_head_shares_embeddings(), "lm_head is not tied");
                } else {
                    glm.set_quantized_lm_head(table)?;
                }
            }
            if let Some(q) = quant {
                // One weight at a time: peak memory stays that of the quantized model.
                let mut types = Vec::new();
                for (name, linear) in model.language_model_mut().named_linears_mut(false) {
                    let (out, inp) = linear.dims()?;
                    let d = fit_dtype(q, inp).with_context(|| format!("{name}: no type fits"))?;
                    linear.set_quantized_weight(quantized_random(out, inp, d)?)?;
                    types.push(dtype_name(d));
                }
                types.dedup();
                eprintln!("quantized GLM weights: {}", types.join(", "));
            }
            (model, cfg)
        }
    };
    if let Some(s) = &args.kv_cache_dtype {
        let d = parse_float_dtype("--kv-cache-dtype", s)?;
        model.language_model_mut().set_kv_cache_dtype(Some(d));
    }
    visualglm_alloc::release_free_memory();
    eprintln!("built in {:.1} s", t0.elapsed().as_secs_f64());
    let mut rows: Vec<(String, f64, &str)> = Vec::new();
    if let Some(rss) = proc_status_mib("VmRSS:") {
        rows.push(("rss_after_build_mib".into(), rss, "MiB"));
    }
    if let Some(huge) = proc_file_mib("/proc/self/smaps_rollup", "AnonHugePages:") {
        rows.push(("huge_pages_after_build_mib".into(), huge, "MiB"));
    }
    if args.memory_only {
        memory_run(&model, &args, vision_dtype)?;
        if let Some(rss) = proc_status_mib("VmRSS:") {
            rows.push(("rss_after_run_mib".into(), rss, "MiB"));
        }
        if let Some(rss) = proc_status_mib("VmHWM:") {
            rows.push(("peak_rss_mib".into(), rss, "MiB"));
        }
        for (k, v, unit) in rows {
            println!("{fmt}\t{k}\t{v:.2}\t{unit}");
        }
        return Ok(());
    }

    if args.lockstep == Some(Lockstep::Encode) {
        let b = args.image_batch.first().copied().unwrap_or(1).max(1);
        let pixels = Tensor::randn(0f32, 1.0, (b, 3, 224, 224), &Device::Cpu)?.to_dtype(dtype)?;
        model.encode_image(&pixels)?;
        return lockstep(&mut |_| {
            let t = Instant::now();
            model.encode_image(&pixels)?;
            Ok(t.elapsed().as_secs_f64() * 1e3 / b as f64)
        });
    }
    if !args.no_vision {
        for &b in &args.image_batch {
            let pixels =
                Tensor::randn(0f32, 1.0, (b, 3, 224, 224), &Device::Cpu)?.to_dtype(dtype)?;
            let ms = time_ms(args.reps, || {
                model.encode_image(&pixels)?;
                Ok(())
            })?;
            rows.push((
                format!("image_encode_b{b}_ms_per_image"),
                ms / b as f64,
                "ms",
            ));
        }
    }

    let weight_bytes = super::bench_memory::decode_weight_bytes(&mut model);
    let g = &cfg.glm;
    let n = args.prompt_len().max(3);
    let mut ids: Vec<u32> = (0..n - 2).map(|i| 5 + (i as u32 * 7919) % 60000).collect();
    ids.push(g.gmask_token_id);
    ids.push(g.bos_token_id);
    let glm = model.language_model();
    let prefill = || -> anyhow::Result<Tensor> {
        let mut cache = glm.new_cache();
        let h = model.prompt_hidden(&ids, &[], Some(&mut cache), None)?;
        Ok(glm.logits(&h.narrow(1, n - 1, 1)?)?)
    };
    if args.lockstep == Some(Lockstep::Prefill) {
        return lockstep(&mut |_| {
            let t = Instant::now();
            prefill()?;
            Ok(t.elapsed().as_secs_f64() * 1e3)
        });
    }
    let prefill_ms = time_ms(args.reps, || prefill().map(drop))?;
    rows.push((
        "prefill_tok_per_s".into(),
        n as f64 / (prefill_ms / 1e3),
        "tok/s",
    ));
    rows.push(("prefill_ms".into(), prefill_ms, "ms"));

    // Decode: prefill once, then time each step (embed, layers with the cache, lm_head).
    let (context_len, gmask_index) = model.prompt_layout(&ids);
    let mut cache = glm.new_cache();
    let h = model.prompt_hidden(&ids, &[], Some(&mut cache), None)?;
    let mut next = glm
        .logits(&h.narrow(1, n - 1, 1)?)?
        .flatten_all()?
        .argmax(0)?
        .to_scalar::<u32>()?;
    let mut step = |step: usize| -> anyhow::Result<(f64, f64)> {
        let t = Instant::now();
        let (p0, p1) = position_at(n + step, context_len, gmask_index);
        let pos = Tensor::new(&[[[p0], [p1]]], &Device::Cpu)?;
        let x = glm.embed(&Tensor::new(&[[next]], &Device::Cpu)?)?;
        let hidden = glm.forward_embeds(&x, &pos, None, Some(&mut cache), None)?;
        let th = Instant::now();
        let logits = glm.logits(&hidden)?.flatten_all()?;
        next = logits.argmax(0)?.to_scalar::<u32>()?;
        let ms = |t: Instant| t.elapsed().as_secs_f64() * 1e3;
        Ok((ms(t), ms(th)))
    };
    if args.lockstep == Some(Lockstep::Decode) {
        return lockstep(&mut |i| Ok(step(i)?.0));
    }
    let mut step_ms = Vec::new();
    let mut head_ms = Vec::new();
    for i in 0..args.decode_steps.max(1) {
        let (total, head) = step(i)?;
        head_ms.push(head);
        step_ms.push(total);
    }
    let best = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    let step = best(&step_ms);
    let head = best(&head_ms);
    rows.push(("decode_ms_per_token".into(), step, "ms"));
    rows.push(("decode_lm_head_ms".into(), head, "ms"));
    let per_layer = (step - head) / cfg.glm.num_layers.max(1) as f64;
    rows.push(("decode_ms_per_glm_layer".into(), per_layer, "ms"));
    let est = head + 28.0 * per_layer;
    rows.push(("decode_ms_per_token_28_layers_est".into(), est, "ms"));
    let bandwidth = super::bench_memory::read_bandwidth_gb_per_s();
    rows.extend(super::bench_memory::rows(
        bandwidth,
        weight_bytes,
        per_layer,
        head,
    ));
    for past in [300usize, 2000] {
        let ms = super::bench_memory::kv_append_ms(&cfg, dtype, past)?;
        rows.push((format!("kv_append_ms_per_layer_at_{past}"), ms, "ms"));
    }
    if let Some(rss) = proc_status_mib("VmHWM:") {
        rows.push(("peak_rss_mib".into(), rss, "MiB"));
    }
    for (k, v, unit) in rows {
        println!("{fmt}\t{k}\t{v:.2}\t{unit}");
    }
    Ok(())
}

/// `--lockstep`: `ready`, then one unit of work (its ms printed) per stdin line until `quit`.
fn lockstep(work: &mut dyn FnMut(usize) -> anyhow::Result<f64>) -> anyhow::Result<()> {
    use std::io::{BufRead, Write};
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready")?;
    out.flush()?;
    for (i, line) in std::io::stdin().lock().lines().enumerate() {
        if line?.trim() == "quit" {
            break;
        }
        let ms = work(i)?;
        writeln!(out, "{ms:.3}")?;
        out.flush()?;
    }
    Ok(())
}

/// `--memory-only`: one image, a short prefill with the image spliced in after 2 tokens, and
/// 2 greedy decode steps.
fn memory_run(model: &VisualGlm, args: &Args, vision_dtype: DType) -> anyhow::Result<()> {
    let dev = Device::Cpu;
    let pixels = Tensor::randn(0f32, 1.0, (1, 3, 224, 224), &dev)?.to_dtype(vision_dtype)?;
    let image = model.encode_image(&pixels)?;
    let n_img = image.dim(1)?;
    let g = &model.config().glm;
    let text = args.prompt_len().max(4);
    let mut ids: Vec<u32> = (0..text - 2)
        .map(|i| 5 + (i as u32 * 7919) % 60000)
        .collect();
    ids.splice(2..2, std::iter::repeat_n(3u32, n_img));
    ids.push(g.gmask_token_id);
    ids.push(g.bos_token_id);
    let (_, steps) = model.generate_greedy(&ids, &[EmbedSpan::new(2, image.clone())], 3)?;
    eprintln!(
        "memory run: image encoded, {}-token prefill, {} decode steps",
        ids.len(),
        steps.len().saturating_sub(1)
    );
    Ok(())
}

pub(super) fn rayon_threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        })
}
