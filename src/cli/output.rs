//! Atomic output files for the CLI.

use std::collections::HashMap;
use std::path::Path;

use anyhow::Context;
use candle_core::Tensor;

/// Writes `tensors` to `path` as safetensors, atomically ([`visualglm_files`]), so a crash
/// never leaves a half-written file under the final name.
pub fn write_safetensors_atomic(
    tensors: &HashMap<String, Tensor>,
    path: &Path,
) -> anyhow::Result<()> {
    let bytes = safetensors::serialize(tensors, None)
        .with_context(|| format!("serialising the tensors for {}", path.display()))?;
    visualglm_files::write_atomic_bytes(path, &bytes)?;
    Ok(())
}

/// `err` and its causes on one line, each cause once: a cause whose text an outer message
/// already quotes (as `thiserror` messages with `{source}` do) is not repeated.
pub fn error_message(err: &anyhow::Error) -> String {
    let mut message = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if text.is_empty() || message.contains(&text) {
            continue;
        }
        if !message.is_empty() {
            message.push_str(": ");
        }
        message.push_str(&text);
    }
    message
}
