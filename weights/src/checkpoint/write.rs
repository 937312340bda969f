//! Writing a canonical checkpoint as one safetensors file, atomically.

use std::path::Path;

use candle_core::{DType, Tensor};
use serde_json::{json, Map, Value};

use super::error::CheckpointError;
use super::tensors::{CanonicalTensors, FORMAT_NAME};

/// Options of [`save_canonical`].
#[derive(Debug, Clone, Default)]
pub struct SaveOptions {
    /// Convert floating-point tensors to this dtype (`None`: keep each stored dtype).
    pub dtype: Option<DType>,
}

/// Writes `ck` to `out` as one safetensors file: canonical names, `[Q|K|V]` GLM rows, and
/// metadata `format = "visualglm-rs"`, `qkv_layout = "blocks"`, `family`, and `config`
/// (HF-style JSON). The file is written under a temporary name and renamed into place.
/// `progress(name, bytes)` is called after each tensor is written. Tensors are read and
/// converted one at a time (from a [`LazyCheckpoint`](super::LazyCheckpoint), the peak is one
/// tensor).
pub fn save_canonical(
    ck: &impl CanonicalTensors,
    out: &Path,
    opts: &SaveOptions,
    progress: &mut dyn FnMut(&str, u64),
) -> Result<(), CheckpointError> {
    let names = ck.sorted_names();
    let mut header = Map::new();
    header.insert(
        "__metadata__".into(),
        json!({
            "format": FORMAT_NAME,
            "qkv_layout": "blocks",
            "family": ck.family().as_str(),
            "config": ck.config().to_hf_json().to_string(),
        }),
    );
    let mut offset = 0u64;
    let mut plan = Vec::with_capacity(names.len());
    for name in &names {
        let (Some(dims), Some(stored)) = (ck.shape_of(name), ck.dtype_of(name)) else {
            continue;
        };
        let dtype = target_dtype(stored, opts.dtype);
        let tag = dtype_tag(dtype).ok_or_else(|| CheckpointError::Write {
            path: out.to_path_buf(),
            message: format!("tensor `{name}` has dtype {dtype:?}, which is not supported"),
        })?;
        let len = (dims.iter().product::<usize>() * dtype.size_in_bytes()) as u64;
        header.insert(
            (*name).to_string(),
            json!({"dtype": tag, "shape": dims, "data_offsets": [offset, offset + len]}),
        );
        offset += len;
        plan.push((*name, dtype));
    }
    let mut header_bytes = Value::Object(header).to_string().into_bytes();
    while !header_bytes.len().is_multiple_of(8) {
        header_bytes.push(b' ');
    }

    visualglm_files::write_atomic_with(out, |w| -> Result<(), CheckpointError> {
        let io = |e| CheckpointError::io(out, e);
        w.write_all(&(header_bytes.len() as u64).to_le_bytes())
            .map_err(io)?;
        w.write_all(&header_bytes).map_err(io)?;
        for (name, dtype) in plan {
            let t = ck.read(name)?.ok_or_else(|| CheckpointError::Write {
                path: out.to_path_buf(),
                message: format!("tensor `{name}` disappeared"),
            })?;
            let bytes = tensor_bytes(&t, dtype).map_err(|e| {
                CheckpointError::candle(
                    format!("converting tensor `{name}` for {}", out.display()),
                    e,
                )
            })?;
            w.write_all(&bytes).map_err(io)?;
            progress(name, bytes.len() as u64);
        }
        Ok(())
    })
}

fn target_dtype(stored: DType, wanted: Option<DType>) -> DType {
    match wanted {
        Some(w) if stored.is_float() => w,
        _ => stored,
    }
}

fn dtype_tag(d: DType) -> Option<&'static str> {
    Some(match d {
        DType::U8 => "U8",
        DType::U32 => "U32",
        DType::I16 => "I16",
        DType::I32 => "I32",
        DType::I64 => "I64",
        DType::BF16 => "BF16",
        DType::F16 => "F16",
        DType::F32 => "F32",
        DType::F64 => "F64",
        _ => return None,
    })
}

/// Little-endian bytes of `t` converted to `dtype`.
fn tensor_bytes(t: &Tensor, dtype: DType) -> candle_core::Result<Vec<u8>> {
    let t = t.to_dtype(dtype)?.flatten_all()?;
    fn le<T: Copy, const N: usize>(v: Vec<T>, f: impl Fn(T) -> [u8; N]) -> Vec<u8> {
        v.into_iter().flat_map(f).collect()
    }
    Ok(match dtype {
        DType::U8 => t.to_vec1::<u8>()?,
        DType::U32 => le(t.to_vec1::<u32>()?, u32::to_le_bytes),
        DType::I16 => le(t.to_vec1::<i16>()?, i16::to_le_bytes),
        DType::I32 => le(t.to_vec1::<i32>()?, i32::to_le_bytes),
        DType::I64 => le(t.to_vec1::<i64>()?, i64::to_le_bytes),
        DType::BF16 => le(t.to_vec1::<half::bf16>()?, half::bf16::to_le_bytes),
        DType::F16 => le(t.to_vec1::<half::f16>()?, half::f16::to_le_bytes),
        DType::F32 => le(t.to_vec1::<f32>()?, f32::to_le_bytes),
        DType::F64 => le(t.to_vec1::<f64>()?, f64::to_le_bytes),
        other => candle_core::bail!("dtype {other:?} cannot be written"),
    })
}
