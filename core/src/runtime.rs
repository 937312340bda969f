//! Choosing where and in what precision the model runs: `--device` and `--dtype` values.

use candle_core::{DType, Device};

use crate::error::{Result, VisualGlmError};

/// Parses `auto`, `cpu`, `cuda` or `cuda:N` into a candle device.
///
/// `auto` picks CUDA device 0 when this build has CUDA and a GPU is present, else the CPU.
pub fn parse_device(spec: &str) -> Result<Device> {
    let spec = spec.trim().to_ascii_lowercase();
    let unavailable = |what: &str, e: candle_core::Error| {
        VisualGlmError::Input(format!(
            "device `{what}` is not available ({}): it needs a GPU with its driver and a build \
             with `--features cuda`; use `--device cpu` or `auto`",
            crate::error::first_line(&e)
        ))
    };
    match spec.as_str() {
        "auto" => Ok(Device::cuda_if_available(0).unwrap_or(Device::Cpu)),
        "cpu" => Ok(Device::Cpu),
        "cuda" => Device::new_cuda(0).map_err(|e| unavailable("cuda", e)),
        s if s.starts_with("cuda:") => {
            let n: usize = s[5..]
                .parse()
                .map_err(|_| VisualGlmError::Input(format!("bad device `{s}`: expected cuda:N")))?;
            Device::new_cuda(n).map_err(|e| unavailable(s, e))
        }
        other => Err(VisualGlmError::Input(format!(
            "unknown device `{other}`: use auto, cpu, cuda or cuda:N"
        ))),
    }
}

/// Parses `f32`, `f16` or `bf16`. `auto` is f32 on the CPU (candle's CPU bf16 matmul is slow)
/// and f16 on a GPU.
pub fn parse_dtype(spec: &str, device: &Device) -> Result<DType> {
    match spec.trim().to_ascii_lowercase().as_str() {
        "auto" => Ok(if device.is_cpu() {
            DType::F32
        } else {
            DType::F16
        }),
        "f32" | "float32" => Ok(DType::F32),
        "f16" | "float16" | "half" => Ok(DType::F16),
        "bf16" | "bfloat16" => Ok(DType::BF16),
        other => Err(VisualGlmError::Input(format!(
            "unknown dtype `{other}`: use auto, f32, f16 or bf16"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_devices_and_dtypes() {
        assert!(parse_device("cpu").unwrap().is_cpu());
        assert!(parse_device("gpu0").is_err());
        assert!(parse_device("cuda:x").is_err());
        // No Metal build exists, so `metal` is an unknown device, not an unavailable one.
        let err = parse_device("metal").unwrap_err().to_string();
        assert!(err.contains("unknown device `metal`"), "{err}");
        assert_eq!(parse_dtype("f16", &Device::Cpu).unwrap(), DType::F16);
        assert_eq!(parse_dtype("auto", &Device::Cpu).unwrap(), DType::F32);
        assert!(parse_dtype("f8", &Device::Cpu).is_err());
    }

    #[test]
    fn an_unavailable_gpu_is_a_one_line_error() {
        // Without a GPU (always the case in CI) asking for one fails with a single line, even
        // when candle attaches a backtrace.
        if let Err(e) = parse_device("cuda") {
            let msg = e.to_string();
            assert!(!msg.contains('\n'), "{msg}");
            assert!(msg.contains("--device cpu"), "{msg}");
        }
    }
}
