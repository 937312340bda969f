//! Resuming a run: its metrics log cut back to its latest checkpoint.

use std::path::Path;

use visualglm_train::checkpoint::CheckpointManager;

use super::error::train_err;
use crate::error::{Result, VisualGlmError};

/// Prepares the metrics log `metrics` (one [`StepReport`](super::StepReport) JSON line per update, applied or
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

/// What a run's checkpoints record about the base they were trained over (in
/// `state.json`'s `extra.base`): the model path, the frozen dtype and the quantization.
pub(super) fn base_record(model: &Path, base: &super::base::BaseWeights) -> serde_json::Value {
    let model = std::fs::canonicalize(model).unwrap_or_else(|_| model.to_path_buf());
    serde_json::json!({
        "model": model.display().to_string(),
        "dtype": format!("{:?}", base.dtype).to_lowercase(),
        "quantize": base
            .quantize
            .map(|q| visualglm_nn::quant::dtype_name(q).to_string()),
    })
}

/// Refuses to resume from a checkpoint made over another base (model, dtype or
/// quantization), naming both. Checkpoints from before the record was kept are accepted.
pub(super) fn check_base(
    saved: &serde_json::Value,
    current: &serde_json::Value,
    checkpoint: &Path,
) -> Result<()> {
    let Some(saved) = saved.get("base") else {
        return Ok(());
    };
    if saved == current {
        return Ok(());
    }
    let describe = |v: &serde_json::Value| {
        format!(
            "{} (base_dtype {}, base_quantize {})",
            v["model"].as_str().unwrap_or("?"),
            v["dtype"].as_str().unwrap_or("?"),
            v["quantize"].as_str().unwrap_or("none"),
        )
    };
    Err(VisualGlmError::Input(format!(
        "{} was trained over {}, but this run's base is {}: resume with the same base, or \
         write to another `out`",
        checkpoint.display(),
        describe(saved),
        describe(current)
    )))
}
