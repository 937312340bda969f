//! `visualglm selftest`: runs the tiny golden model of the official Python code on a device and
//! checks every stage against the recorded outputs (the CUDA parity check of `bench/gpu/`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use candle_core::{DType, Device, Tensor};
use visualglm::{EmbedSpan, LoadOptions, VisualGlm};

/// Arguments of `visualglm selftest`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The golden fixtures folder (holding `model/tiny_visualglm_hf.safetensors`,
    /// `model/config.json` and `model/golden_hf.safetensors`).
    #[arg(long)]
    golden: PathBuf,
    /// Device: auto, cpu, cuda, cuda:N.
    #[arg(long, default_value = "auto")]
    device: String,
    /// Weight dtype: f32 (the fixtures' own; the parity tests' tolerances), f16, or bf16 (GPU
    /// only); in half precision the tolerance is 2 % of each stage's largest value.
    #[arg(long, default_value = "f32")]
    dtype: String,
}

/// One compared stage: its name, the largest absolute difference and the tolerance.
struct Check {
    stage: String,
    max_abs_diff: f64,
    tolerance: f64,
}

/// Runs `selftest`: prints one line per stage and fails when any is outside its tolerance.
pub fn run(args: Args) -> anyhow::Result<()> {
    let device = visualglm::runtime::parse_device(&args.device)?;
    let dtype = visualglm::runtime::parse_dtype(&args.dtype, &device)?;
    let model_dir = args.golden.join("model");
    let opts = LoadOptions {
        config_path: Some(model_dir.join("config.json")),
        ..Default::default()
    };
    let weights = model_dir.join("tiny_visualglm_hf.safetensors");
    let model = VisualGlm::load(&weights, &device, dtype, &opts)
        .with_context(|| format!("loading {}", weights.display()))?;
    let golden = load_golden(&model_dir.join("golden_hf.safetensors"), &device)?;
    let checks = compare_stages(&model, &golden, dtype)?;
    println!("selftest on {device:?}, {dtype:?}: stage\tmax|Δ|\ttolerance");
    let mut failed = Vec::new();
    for c in &checks {
        let ok = c.max_abs_diff <= c.tolerance;
        let verdict = if ok { "ok" } else { "FAILED" };
        println!(
            "{}\t{:.3e}\t{:.1e}\t{verdict}",
            c.stage, c.max_abs_diff, c.tolerance
        );
        if !ok {
            failed.push(c.stage.as_str());
        }
    }
    if !failed.is_empty() {
        bail!(
            "selftest: {} of {} stages outside their tolerance: {}",
            failed.len(),
            checks.len(),
            failed.join(", ")
        );
    }
    println!("selftest: all {} stages within tolerance", checks.len());
    Ok(())
}

/// The golden tensors, on `device`.
fn load_golden(path: &Path, device: &Device) -> anyhow::Result<HashMap<String, Tensor>> {
    candle_core::safetensors::load(path, device)
        .with_context(|| format!("reading the golden outputs {}", path.display()))
}

/// The tensor `name` of the golden file, or an error naming it.
fn get<'a>(golden: &'a HashMap<String, Tensor>, name: &str) -> anyhow::Result<&'a Tensor> {
    golden
        .get(name)
        .with_context(|| format!("the golden file has no `{name}`"))
}

/// Token ids stored as integers of any type.
fn ids(t: &Tensor) -> anyhow::Result<Vec<u32>> {
    t.flatten_all()?
        .to_dtype(DType::I64)?
        .to_vec1::<i64>()?
        .into_iter()
        .map(|v| u32::try_from(v).context("a negative token id"))
        .collect()
}

/// Runs every stage the golden file records and measures each against it.
fn compare_stages(
    model: &VisualGlm,
    golden: &HashMap<String, Tensor>,
    dtype: DType,
) -> anyhow::Result<Vec<Check>> {
    let mut checks = Vec::new();
    let mut check = |stage: &str, got: &Tensor, want: &Tensor, base: f64| -> anyhow::Result<()> {
        checks.push(measure(stage, got, want, tolerance(dtype, base, want)?)?);
        Ok(())
    };

    let pixels = get(golden, "pixel_values")?.to_dtype(dtype)?;
    let stages = model.encode_image_stages(&pixels)?;
    check("vit_out", &stages.vit_out, get(golden, "vit_out")?, 5e-5)?;
    check(
        "qformer_out",
        &stages.qformer_out,
        get(golden, "qformer_out")?,
        5e-5,
    )?;
    let image = stages.image_embeds;
    check("image_embeds", &image, get(golden, "image_embeds")?, 5e-5)?;

    let prompt = ids(get(golden, "input_ids")?)?;
    // The image's placeholders are the first run of `image_length` unk (0) ids.
    let pre_image = prompt
        .iter()
        .position(|&t| t == 0)
        .context("the golden prompt has no image placeholder")?;
    let spans = [EmbedSpan::new(pre_image, image)];
    let mut layers = Vec::new();
    let hidden = model.prompt_hidden(&prompt, &spans, None, Some(&mut layers))?;
    let want_layers = get(golden, "glm_layer_outputs")?;
    for (i, out) in layers.iter().enumerate() {
        check(&format!("glm_layer_{i}"), out, &want_layers.get(i)?, 5e-5)?;
    }
    check("final_hidden", &hidden, get(golden, "final_hidden")?, 5e-5)?;
    let logits = model.language_model().logits(&hidden)?;
    check("logits", &logits, get(golden, "logits")?, 1e-4)?;

    let text = ids(get(golden, "text_only_input_ids")?)?;
    let text_logits = model.prompt_logits(&text, &[])?;
    let want = get(golden, "text_only_logits")?;
    check("text_only_logits", &text_logits, want, 1e-4)?;

    // Greedy decoding with the KV cache: the same tokens, and each step's logits.
    let want_ids = ids(get(golden, "gen_ids")?)?;
    let (got_ids, step_logits) = model.generate_greedy(&prompt, &spans, want_ids.len())?;
    let same = got_ids
        .iter()
        .zip(&want_ids)
        .filter(|(a, b)| a == b)
        .count();
    let step_logits = if got_ids == want_ids {
        let got = Tensor::stack(&step_logits, 0)?;
        let want = get(golden, "gen_step_logits")?;
        let tol = tolerance(dtype, 1e-4, want)?;
        Some(measure("gen_step_logits", &got, want, tol)?)
    } else {
        None
    };
    checks.push(Check {
        stage: format!("gen_ids ({same} of {} tokens equal)", want_ids.len()),
        max_abs_diff: (want_ids.len() - same.min(want_ids.len())) as f64,
        tolerance: 0.0,
    });
    checks.extend(step_logits);
    Ok(checks)
}

/// The tolerance of a stage: in f32 the parity tests' `base`; in half precision 2 % of the
/// stage's largest value (at least 1).
fn tolerance(dtype: DType, base: f64, want: &Tensor) -> anyhow::Result<f64> {
    if dtype == DType::F32 {
        return Ok(base);
    }
    let scale = want
        .abs()?
        .max_all()?
        .to_dtype(DType::F64)?
        .to_scalar::<f64>()?;
    Ok(2e-2 * scale.max(1.0))
}

/// `got` against `want`: the largest absolute difference (infinite when a NaN appears, so that
/// it fails every tolerance).
fn measure(stage: &str, got: &Tensor, want: &Tensor, tolerance: f64) -> anyhow::Result<Check> {
    if got.dims() != want.dims() {
        bail!(
            "{stage}: shape {:?}, the golden has {:?}",
            got.dims(),
            want.dims()
        );
    }
    let diff = (got.to_dtype(DType::F32)? - want.to_dtype(DType::F32)?)?;
    let d = diff
        .abs()?
        .max_all()?
        .to_dtype(DType::F64)?
        .to_scalar::<f64>()?;
    Ok(Check {
        stage: stage.to_string(),
        max_abs_diff: if d.is_nan() { f64::INFINITY } else { d },
        tolerance,
    })
}
