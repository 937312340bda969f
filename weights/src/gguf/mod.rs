//! VisualGLM in one GGUF file: quantized GLM linears as GGML blocks, every other tensor dense.
//!
//! Layout written by [`write_gguf`] (GGUF v3, 32-byte alignment):
//! * metadata `general.architecture = "visualglm"`, `format = "visualglm-rs"`,
//!   `qkv_layout = "blocks"`, `family` (`hf`/`sat`), `config` (HF-style JSON),
//!   `visualglm.quantization` (the requested type), `visualglm.lm_head_quantized`,
//!   `visualglm.embeddings_quantized` and `visualglm.lm_head_tied` (the last two are absent
//!   from older files, meaning false);
//! * tensors with their canonical (HF) names: the GLM `query_key_value` / `dense` /
//!   `dense_h_to_4h` / `dense_4h_to_h` weights (and `lm_head.weight` and/or
//!   `transformer.word_embeddings.weight` on request) in the quantized type
//!   ([`visualglm_nn::quant::fit_dtype`] fallback per weight), 1-D tensors in f32 and the
//!   other dense tensors in the chosen dense type (f16 by default). When both `lm_head` and the
//!   embeddings are quantized and hold the same values (the HF layout ties them), only the
//!   embedding table is written and `visualglm.lm_head_tied` is true: on loading, one quantized
//!   tensor serves both (chatglm.cpp's layout).
//!
//! [`GgufReader`] reads such a file back one tensor at a time (the `visualglm` crate's
//! `gguf::load_gguf` builds a model whose quantized layers run with `QMatMul` from it); a file
//! that is not GGUF, is truncated, or was not written by this project is refused with a
//! message naming the file and the problem.
//!
//! The writer, [`write_gguf`], lives here; the format's names and constants are in the
//! `format` submodule, the reader in `read` and the error type in `error`.

mod error;
mod format;
mod read;

use std::path::Path;

use candle_core::quantized::gguf_file::Value;
use candle_core::quantized::{GgmlDType, QTensor};
use visualglm_nn::quant::{dtype_name, fallback_summary, fit_dtype};

pub use error::GgufError;
pub use format::{
    is_gguf_path, is_glm_linear_weight, ARCHITECTURE, KEY_EMBEDDINGS, KEY_LM_HEAD,
    KEY_LM_HEAD_TIED, KEY_QUANTIZATION,
};
pub use read::{gguf_tensor_types, GgufReader};

use crate::checkpoint::{CanonicalTensors, FORMAT_NAME};
use format::{ALIGNMENT, GGUF_MAGIC, LM_HEAD, WORD_EMBEDDINGS};

/// Options of [`write_gguf`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GgufWriteOptions {
    /// Type of the GLM layer weights.
    pub quantization: GgmlDType,
    /// Also quantize `lm_head.weight`.
    pub lm_head: bool,
    /// Also quantize `transformer.word_embeddings.weight`; with `lm_head` and a tied
    /// `lm_head` (same values), the table is stored once for both.
    pub embeddings: bool,
    /// Type of the other tensors of rank ≥ 2: `F16` (default) or `F32`. 1-D tensors are f32.
    pub dense: GgmlDType,
}

impl GgufWriteOptions {
    /// GLM layers in `quantization`, the rest f16 (the release keeps everything else in fp16).
    pub fn new(quantization: GgmlDType) -> Self {
        Self {
            quantization,
            lm_head: false,
            embeddings: false,
            dense: GgmlDType::F16,
        }
    }
}

/// What [`write_gguf`] wrote.
#[derive(Debug, Clone, Default)]
pub struct GgufSummary {
    /// `(name, type)` of every tensor, in file order.
    pub tensors: Vec<(String, GgmlDType)>,
    /// File size in bytes.
    pub bytes: u64,
}

/// One tensor to write.
struct Planned<'a> {
    name: &'a str,
    dims: &'a [usize],
    dtype: GgmlDType,
    bytes: u64,
}

/// Writes `ck` to `out` as GGUF (see the module documentation), under a temporary name renamed
/// into place when complete. Tensors are converted one at a time, so peak memory is the
/// checkpoint plus one tensor (one tensor only, from a
/// [`LazyCheckpoint`](crate::checkpoint::LazyCheckpoint)). `progress(done, total, name)` is
/// called after each tensor.
pub fn write_gguf(
    ck: &impl CanonicalTensors,
    out: &Path,
    opts: &GgufWriteOptions,
    progress: &mut dyn FnMut(usize, usize, &str),
) -> Result<GgufSummary, GgufError> {
    if !matches!(opts.dense, GgmlDType::F16 | GgmlDType::F32) {
        return Err(GgufError::Metadata {
            path: out.to_path_buf(),
            key: "dense".into(),
            message: format!(
                "dense tensors must be f16 or f32, not {}",
                dtype_name(opts.dense)
            ),
        });
    }
    // Tied: store the quantized embedding table once, for `lm_head` too.
    let tied = opts.embeddings
        && opts.lm_head
        && ck.shape_of(WORD_EMBEDDINGS).is_some_and(|dims| {
            fit_dtype(opts.quantization, dims.last().copied().unwrap_or(0)).is_some()
        })
        && ck.lm_head_is_tied()?;
    let mut plan = Vec::new();
    let mut asked: Vec<Option<GgmlDType>> = Vec::new();
    for name in ck.sorted_names() {
        if tied && name == LM_HEAD {
            continue;
        }
        let (Some(dims), Some(stored)) = (ck.shape_of(name), ck.dtype_of(name)) else {
            continue;
        };
        if !stored.is_float() {
            return Err(GgufError::Tensor {
                path: out.to_path_buf(),
                name: name.to_string(),
                source: Box::new(candle_core::Error::Msg(format!(
                    "dtype {stored:?} is not a float"
                ))),
            });
        }
        let quantize = is_glm_linear_weight(name)
            || (opts.lm_head && name == LM_HEAD)
            || (opts.embeddings && name == WORD_EMBEDDINGS);
        let dtype = if quantize {
            let in_dim = dims.last().copied().unwrap_or(0);
            asked.push(fit_dtype(opts.quantization, in_dim));
            match fit_dtype(opts.quantization, in_dim) {
                Some(d) => {
                    if d != opts.quantization {
                        tracing::debug!(
                            "{name}: input width {in_dim} does not fit {}; writing {}",
                            dtype_name(opts.quantization),
                            dtype_name(d)
                        );
                    }
                    d
                }
                None => {
                    tracing::debug!("{name}: input width {in_dim} fits no quantized type; dense");
                    opts.dense
                }
            }
        } else if dims.len() <= 1 {
            GgmlDType::F32
        } else {
            opts.dense
        };
        let count: usize = dims.iter().product();
        let bytes = (count / dtype.block_size() * dtype.type_size()) as u64;
        plan.push(Planned {
            name,
            dims,
            dtype,
            bytes,
        });
    }
    if let Some(line) = fallback_summary(opts.quantization, &asked) {
        tracing::warn!("{line}");
    }
    let metadata = vec![
        ("general.architecture", Value::String(ARCHITECTURE.into())),
        ("general.alignment", Value::U32(ALIGNMENT as u32)),
        ("format", Value::String(FORMAT_NAME.into())),
        ("qkv_layout", Value::String("blocks".into())),
        ("family", Value::String(ck.family().as_str().into())),
        (
            "config",
            Value::String(ck.config().to_hf_json().to_string()),
        ),
        (
            KEY_QUANTIZATION,
            Value::String(dtype_name(opts.quantization).into()),
        ),
        (KEY_LM_HEAD, Value::Bool(opts.lm_head)),
        (KEY_EMBEDDINGS, Value::Bool(opts.embeddings)),
        (KEY_LM_HEAD_TIED, Value::Bool(tied)),
    ];

    visualglm_files::write_atomic_with(out, |w| -> Result<GgufSummary, GgufError> {
        let io = |source| GgufError::Io {
            path: out.to_path_buf(),
            source,
        };
        let header = encode_header(&metadata, &plan);
        w.write_all(&header).map_err(io)?;
        let mut written = header.len() as u64;
        let mut summary = GgufSummary::default();
        for (i, p) in plan.iter().enumerate() {
            let tensor_err = |source| GgufError::Tensor {
                path: out.to_path_buf(),
                name: p.name.to_string(),
                source: Box::new(source),
            };
            let t = ck.read(p.name)?.ok_or_else(|| {
                tensor_err(candle_core::Error::Msg(
                    "disappeared from the checkpoint".into(),
                ))
            })?;
            let q = QTensor::quantize(&t, p.dtype).map_err(tensor_err)?;
            drop(t);
            let data = q.data().map_err(tensor_err)?;
            if data.len() as u64 != p.bytes {
                return Err(GgufError::Tensor {
                    path: out.to_path_buf(),
                    name: p.name.to_string(),
                    source: Box::new(candle_core::Error::Msg(format!(
                        "quantized to {} bytes, expected {}",
                        data.len(),
                        p.bytes
                    ))),
                });
            }
            w.write_all(&data).map_err(io)?;
            let pad = padding(p.bytes);
            w.write_all(&vec![0u8; pad as usize]).map_err(io)?;
            written += p.bytes + pad;
            summary.tensors.push((p.name.to_string(), p.dtype));
            progress(i + 1, plan.len(), p.name);
        }
        summary.bytes = written;
        Ok(summary)
    })
}

fn padding(n: u64) -> u64 {
    (ALIGNMENT - n % ALIGNMENT) % ALIGNMENT
}

/// GGUF type id of a GGML type (ggml.h numbering).
fn type_id(d: GgmlDType) -> u32 {
    match d {
        GgmlDType::F32 => 0,
        GgmlDType::F16 => 1,
        GgmlDType::Q4_0 => 2,
        GgmlDType::Q4_1 => 3,
        GgmlDType::Q5_0 => 6,
        GgmlDType::Q5_1 => 7,
        GgmlDType::Q8_0 => 8,
        GgmlDType::Q8_1 => 9,
        GgmlDType::Q2K => 10,
        GgmlDType::Q3K => 11,
        GgmlDType::Q4K => 12,
        GgmlDType::Q5K => 13,
        GgmlDType::Q6K => 14,
        GgmlDType::Q8K => 15,
        GgmlDType::BF16 => 30,
    }
}

fn put_str(buf: &mut Vec<u8>, s: &str) {
    buf.extend_from_slice(&(s.len() as u64).to_le_bytes());
    buf.extend_from_slice(s.as_bytes());
}

/// Header, metadata and tensor infos, padded to the alignment (GGUF v3).
fn encode_header(metadata: &[(&str, Value)], plan: &[Planned]) -> Vec<u8> {
    let mut buf = Vec::new();
    buf.extend_from_slice(&GGUF_MAGIC);
    buf.extend_from_slice(&3u32.to_le_bytes());
    buf.extend_from_slice(&(plan.len() as u64).to_le_bytes());
    buf.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
    for (key, value) in metadata {
        put_str(&mut buf, key);
        match value {
            Value::String(s) => {
                buf.extend_from_slice(&8u32.to_le_bytes());
                put_str(&mut buf, s);
            }
            Value::U32(v) => {
                buf.extend_from_slice(&4u32.to_le_bytes());
                buf.extend_from_slice(&v.to_le_bytes());
            }
            Value::Bool(b) => {
                buf.extend_from_slice(&7u32.to_le_bytes());
                buf.push(u8::from(*b));
            }
            // Only the three kinds above are written.
            _ => {}
        }
    }
    let mut offset = 0u64;
    for p in plan {
        put_str(&mut buf, p.name);
        let dims = p.dims;
        buf.extend_from_slice(&(dims.len() as u32).to_le_bytes());
        for &d in dims.iter().rev() {
            buf.extend_from_slice(&(d as u64).to_le_bytes());
        }
        buf.extend_from_slice(&type_id(p.dtype).to_le_bytes());
        buf.extend_from_slice(&offset.to_le_bytes());
        offset += p.bytes + padding(p.bytes);
    }
    let pad = padding(buf.len() as u64);
    buf.resize(buf.len() + pad as usize, 0);
    buf
}
