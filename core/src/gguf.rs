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
//!   ([`visualglm_lora::quant::fit_dtype`] fallback per weight), 1-D tensors in f32 and the
//!   other dense tensors in the chosen dense type (f16 by default). When both `lm_head` and the
//!   embeddings are quantized and hold the same values (the HF layout ties them), only the
//!   embedding table is written and `visualglm.lm_head_tied` is true: on loading, one quantized
//!   tensor serves both (chatglm.cpp's layout).
//!
//! [`load_gguf`] reads such a file back into a [`VisualGlm`] whose quantized layers run with
//! `QMatMul`; a file that is not GGUF, is truncated, or was not written by this crate is
//! refused with a message naming the file and the problem.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufReader, Read, Seek};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use visualglm_lora::quant::{dtype_name, fit_dtype};

use crate::checkpoint::{Checkpoint, CheckpointError, LoadOptions, FORMAT_NAME};
use crate::config::{CheckpointFamily, ConfigError, VisualGlmConfig};
use crate::error::VisualGlmError;
use crate::model::VisualGlm;
use crate::param_shapes::expected_parameters;

/// `general.architecture` of our files.
pub const ARCHITECTURE: &str = "visualglm";
/// Metadata key of the requested quantization type.
pub const KEY_QUANTIZATION: &str = "visualglm.quantization";
/// Metadata key saying whether `lm_head` was quantized.
pub const KEY_LM_HEAD: &str = "visualglm.lm_head_quantized";
/// Metadata key saying whether the word embeddings were quantized.
pub const KEY_EMBEDDINGS: &str = "visualglm.embeddings_quantized";
/// Metadata key saying that `lm_head.weight` is not stored because it is the (quantized)
/// word-embedding table.
pub const KEY_LM_HEAD_TIED: &str = "visualglm.lm_head_tied";
const LM_HEAD: &str = "lm_head.weight";
const WORD_EMBEDDINGS: &str = "transformer.word_embeddings.weight";
const ALIGNMENT: u64 = 32;
const GGUF_MAGIC: [u8; 4] = *b"GGUF";

/// Errors reading or writing a VisualGLM GGUF file.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    /// The file could not be opened, read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file does not start with the GGUF magic.
    #[error("{path}: not a GGUF file (starts with {found:?}, expected \"GGUF\")")]
    NotGguf {
        /// The file.
        path: PathBuf,
        /// Its first bytes.
        found: String,
    },
    /// The GGUF header or a tensor could not be parsed (truncated or corrupt file).
    #[error("{path}: corrupt or truncated GGUF: {message}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        message: String,
    },
    /// A valid GGUF file that this crate did not write (e.g. a llama.cpp model).
    #[error(
        "{path}: a GGUF file for `{architecture}`, not one written by `visualglm quantize` \
         (metadata `format` is {format:?}, expected \"{FORMAT_NAME}\")"
    )]
    Foreign {
        /// The file.
        path: PathBuf,
        /// Its `general.architecture`, or `unknown`.
        architecture: String,
        /// Its `format` value, if any.
        format: Option<String>,
    },
    /// A metadata entry is missing or has a bad value.
    #[error("{path}: metadata `{key}`: {message}")]
    Metadata {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
        /// What was wrong.
        message: String,
    },
    /// The embedded configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The tensors do not match the configuration.
    #[error("{path}: tensors do not match the model:{report}")]
    Mismatch {
        /// The file.
        path: PathBuf,
        /// One line per problem.
        report: String,
    },
    /// A tensor could not be read, converted or quantized.
    #[error("{path}: tensor `{name}`: {source}")]
    Tensor {
        /// The file.
        path: PathBuf,
        /// The tensor.
        name: String,
        /// The underlying error.
        #[source]
        source: Box<candle_core::Error>,
    },
    /// The input checkpoint of [`write_gguf`] could not be loaded.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// Building the model from the file's tensors failed.
    #[error("{path}: {source}")]
    Model {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: Box<VisualGlmError>,
    },
}

impl From<visualglm_files::Error> for GgufError {
    /// An atomic write failed: the file and the I/O error.
    fn from(e: visualglm_files::Error) -> Self {
        GgufError::Io {
            path: e.path,
            source: e.source,
        }
    }
}

impl From<GgufError> for VisualGlmError {
    fn from(e: GgufError) -> Self {
        match e {
            GgufError::Checkpoint(c) => VisualGlmError::Checkpoint(c),
            GgufError::Config(c) => VisualGlmError::Config(c),
            GgufError::Model { source, .. } => *source,
            other => VisualGlmError::Input(other.to_string()),
        }
    }
}

/// Whether `path` names a GGUF file (by its `.gguf` extension).
pub fn is_gguf_path(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
}

/// Whether the canonical tensor `name` is a GLM layer linear weight (quantized in our files).
pub fn is_glm_linear_weight(name: &str) -> bool {
    name.starts_with("transformer.layers.")
        && [
            ".attention.query_key_value.weight",
            ".attention.dense.weight",
            ".mlp.dense_h_to_4h.weight",
            ".mlp.dense_4h_to_h.weight",
        ]
        .iter()
        .any(|s| name.ends_with(s))
}

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
    tensor: &'a Tensor,
    dtype: GgmlDType,
    bytes: u64,
}

/// Writes `ck` to `out` as GGUF (see the module documentation), under a temporary name renamed
/// into place when complete. Tensors are converted one at a time, so peak memory is the
/// checkpoint plus one tensor. `progress(done, total, name)` is called after each tensor.
pub fn write_gguf(
    ck: &Checkpoint,
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
    let tied = match (
        opts.embeddings && opts.lm_head,
        ck.get(WORD_EMBEDDINGS),
        ck.get(LM_HEAD),
    ) {
        (true, Some(e), Some(l)) => {
            let in_dim = e.dims().last().copied().unwrap_or(0);
            fit_dtype(opts.quantization, in_dim).is_some()
                && visualglm_language::embedding::same_values(e, l).map_err(|source| {
                    GgufError::Tensor {
                        path: out.to_path_buf(),
                        name: LM_HEAD.into(),
                        source: Box::new(source),
                    }
                })?
        }
        _ => false,
    };
    let mut plan = Vec::new();
    for name in ck.names() {
        if tied && name == LM_HEAD {
            continue;
        }
        let Some(t) = ck.get(name) else { continue };
        if !t.dtype().is_float() {
            return Err(GgufError::Tensor {
                path: out.to_path_buf(),
                name: name.to_string(),
                source: Box::new(candle_core::Error::Msg(format!(
                    "dtype {:?} is not a float",
                    t.dtype()
                ))),
            });
        }
        let quantize = is_glm_linear_weight(name)
            || (opts.lm_head && name == LM_HEAD)
            || (opts.embeddings && name == WORD_EMBEDDINGS);
        let dtype = if quantize {
            let in_dim = t.dims().last().copied().unwrap_or(0);
            match fit_dtype(opts.quantization, in_dim) {
                Some(d) => {
                    if d != opts.quantization {
                        tracing::warn!(
                            "{name}: input width {in_dim} does not fit {}; writing {}",
                            dtype_name(opts.quantization),
                            dtype_name(d)
                        );
                    }
                    d
                }
                None => {
                    tracing::warn!("{name}: input width {in_dim} fits no quantized type; dense");
                    opts.dense
                }
            }
        } else if t.rank() <= 1 {
            GgmlDType::F32
        } else {
            opts.dense
        };
        let bytes = (t.elem_count() / dtype.block_size() * dtype.type_size()) as u64;
        plan.push(Planned {
            name,
            tensor: t,
            dtype,
            bytes,
        });
    }
    let metadata = vec![
        ("general.architecture", Value::String(ARCHITECTURE.into())),
        ("general.alignment", Value::U32(ALIGNMENT as u32)),
        ("format", Value::String(FORMAT_NAME.into())),
        ("qkv_layout", Value::String("blocks".into())),
        ("family", Value::String(ck.family.as_str().into())),
        ("config", Value::String(ck.config.to_hf_json().to_string())),
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
            let q = QTensor::quantize(p.tensor, p.dtype).map_err(tensor_err)?;
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
        let dims = p.tensor.dims();
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

/// The parsed header of one of our GGUF files.
struct Header {
    content: Content,
    config: VisualGlmConfig,
    /// `lm_head.weight` is the quantized word-embedding table (not stored on its own).
    lm_head_tied: bool,
}

fn meta_str<'a>(path: &Path, content: &'a Content, key: &str) -> Result<&'a str, GgufError> {
    match content.metadata.get(key) {
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(GgufError::Metadata {
            path: path.to_path_buf(),
            key: key.into(),
            message: format!("expected a string, found {:?}", other.value_type()),
        }),
        None => Err(GgufError::Metadata {
            path: path.to_path_buf(),
            key: key.into(),
            message: "missing".into(),
        }),
    }
}

/// Opens `path`, checks the magic, parses the header and our metadata.
fn read_header(path: &Path, reader: &mut BufReader<File>) -> Result<Header, GgufError> {
    let io = |source| GgufError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut magic = [0u8; 4];
    let n = read_up_to(reader, &mut magic).map_err(io)?;
    if n < 4 || magic != GGUF_MAGIC {
        return Err(GgufError::NotGguf {
            path: path.to_path_buf(),
            found: String::from_utf8_lossy(&magic[..n]).into_owned(),
        });
    }
    reader.rewind().map_err(io)?;
    // candle's reader checks every count and length against the file size; it divides by
    // `general.alignment` unchecked, so a hostile 0 must not reach it as a panic.
    let parsed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Content::read(reader)));
    let content = match parsed {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            return Err(GgufError::Malformed {
                path: path.to_path_buf(),
                message: e.to_string(),
            })
        }
        Err(_) => {
            return Err(GgufError::Malformed {
                path: path.to_path_buf(),
                message: "the header could not be parsed (bad alignment or sizes)".into(),
            })
        }
    };
    let format = meta_str(path, &content, "format").ok().map(str::to_string);
    if format.as_deref() != Some(FORMAT_NAME) {
        let architecture = meta_str(path, &content, "general.architecture")
            .unwrap_or("unknown")
            .to_string();
        return Err(GgufError::Foreign {
            path: path.to_path_buf(),
            architecture,
            format,
        });
    }
    let layout = meta_str(path, &content, "qkv_layout")?;
    if layout != "blocks" {
        return Err(GgufError::Metadata {
            path: path.to_path_buf(),
            key: "qkv_layout".into(),
            message: format!("{layout:?}: only \"blocks\" GGUF files are supported"),
        });
    }
    let family_s = meta_str(path, &content, "family")?;
    let family = CheckpointFamily::parse(family_s).ok_or_else(|| GgufError::Metadata {
        path: path.to_path_buf(),
        key: "family".into(),
        message: format!("{family_s:?}, expected \"hf\" or \"sat\""),
    })?;
    let label = PathBuf::from(format!("{} (metadata `config`)", path.display()));
    let (mut config, _) =
        VisualGlmConfig::from_json_str(meta_str(path, &content, "config")?, &label)?;
    config.apply_family_conventions(family);
    let lm_head_tied = match content.metadata.get(KEY_LM_HEAD_TIED) {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return Err(GgufError::Metadata {
                path: path.to_path_buf(),
                key: KEY_LM_HEAD_TIED.into(),
                message: format!("expected a bool, found {:?}", other.value_type()),
            })
        }
    };
    Ok(Header {
        content,
        config,
        lm_head_tied,
    })
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Checks names, shapes and types against the configuration; returns the quantized names.
fn check_tensors(
    path: &Path,
    content: &Content,
    expected: &[(String, Vec<usize>)],
    lm_head_tied: bool,
) -> Result<HashSet<String>, GgufError> {
    let mut problems = Vec::new();
    let mut quantized = HashSet::new();
    let wanted: HashSet<&str> = expected.iter().map(|(n, _)| n.as_str()).collect();
    if lm_head_tied {
        match content.tensor_infos.get(WORD_EMBEDDINGS) {
            Some(i)
                if !matches!(
                    i.ggml_dtype,
                    GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16
                ) => {}
            _ => problems.push(format!(
                "`{KEY_LM_HEAD_TIED}` is true but `{WORD_EMBEDDINGS}` is not quantized"
            )),
        }
        if content.tensor_infos.contains_key(LM_HEAD) {
            problems.push(format!(
                "`{KEY_LM_HEAD_TIED}` is true but `{LM_HEAD}` is stored too"
            ));
        }
    }
    for (name, shape) in expected {
        match content.tensor_infos.get(name) {
            None if lm_head_tied && name == LM_HEAD => {}
            None => problems.push(format!("missing `{name}`")),
            Some(info) => {
                if info.shape.dims() != shape.as_slice() {
                    problems.push(format!(
                        "`{name}` has shape {:?}, expected {shape:?}",
                        info.shape.dims()
                    ));
                    continue;
                }
                match info.ggml_dtype {
                    GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16 => {}
                    d if is_glm_linear_weight(name)
                        || name == LM_HEAD
                        || name == WORD_EMBEDDINGS =>
                    {
                        let in_dim = shape.last().copied().unwrap_or(0);
                        if in_dim % d.block_size() != 0 {
                            problems.push(format!(
                                "`{name}` is {} but its width {in_dim} is not a multiple of {}",
                                dtype_name(d),
                                d.block_size()
                            ));
                        } else {
                            quantized.insert(name.clone());
                        }
                    }
                    d => problems.push(format!(
                        "`{name}` is {}, but only GLM linear weights, `lm_head` and the word \
                         embeddings may be quantized",
                        dtype_name(d)
                    )),
                }
            }
        }
    }
    let mut extra: Vec<&String> = content
        .tensor_infos
        .keys()
        .filter(|n| !wanted.contains(n.as_str()))
        .collect();
    extra.sort();
    for n in extra.iter().take(10) {
        problems.push(format!("unexpected `{n}`"));
    }
    if extra.len() > 10 {
        problems.push(format!(
            "… and {} more unexpected tensors",
            extra.len() - 10
        ));
    }
    if problems.is_empty() {
        Ok(quantized)
    } else {
        Err(GgufError::Mismatch {
            path: path.to_path_buf(),
            report: problems.iter().map(|p| format!("\n  {p}")).collect(),
        })
    }
}

/// Loads a GGUF file written by [`write_gguf`]: dense tensors converted to `dtype` on `device`
/// (the image encoder's to `opts.vision_dtype` when set), quantized GLM linears, `lm_head` and
/// word embeddings kept as GGML blocks (linears run with `QMatMul`; a tied `lm_head` shares the
/// embedding table). `opts.config_path`, when set, must describe the same model (it replaces
/// the embedded config).
pub fn load_gguf(
    path: &Path,
    device: &Device,
    dtype: DType,
    opts: &LoadOptions,
) -> Result<VisualGlm, GgufError> {
    let file = File::open(path).map_err(|source| GgufError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut reader = BufReader::new(file);
    let Header {
        content,
        mut config,
        lm_head_tied,
    } = read_header(path, &mut reader)?;
    if let Some(p) = &opts.config_path {
        config = VisualGlmConfig::from_file(p)?.0;
    }
    let expected = expected_parameters(&config).map_err(|e| GgufError::Model {
        path: path.to_path_buf(),
        source: Box::new(e),
    })?;
    let quantized = check_tensors(path, &content, &expected, lm_head_tied)?;
    let vision_dtype = opts.vision_dtype.unwrap_or(dtype);

    let tensor_err = |name: &str| {
        let (p, n) = (path.to_path_buf(), name.to_string());
        move |source| GgufError::Tensor {
            path: p,
            name: n,
            source: Box::new(source),
        }
    };
    let mut tensors: HashMap<String, Tensor> = HashMap::with_capacity(expected.len());
    for (name, shape) in &expected {
        let dtype = if name.starts_with(crate::checkpoint::HF_IMAGE_PREFIX) {
            vision_dtype
        } else {
            dtype
        };
        let t = if quantized.contains(name) || (lm_head_tied && name == LM_HEAD) {
            // Placeholder: a zero-stride view of one zero; replaced by the GGML weight below.
            Tensor::zeros((), dtype, device)
                .and_then(|z| z.broadcast_as(shape.as_slice()))
                .map_err(tensor_err(name))?
        } else {
            let q = content
                .tensor(&mut reader, name, device)
                .map_err(tensor_err(name))?;
            let t = if dtype == DType::F16 && q.dtype() == GgmlDType::F16 {
                q.dequantize_f16(device)
            } else {
                q.dequantize(device)
            };
            t.and_then(|t| t.to_dtype(dtype))
                .map_err(tensor_err(name))?
        };
        tensors.insert(name.clone(), t);
    }
    let vb = VarBuilder::from_tensors(tensors, dtype, device);
    let mut model =
        VisualGlm::from_var_builder_with(&config, vb, opts.vision_dtype).map_err(|e| {
            GgufError::Model {
                path: path.to_path_buf(),
                source: Box::new(e),
            }
        })?;
    let mut seen = 0;
    if quantized.contains(WORD_EMBEDDINGS) {
        let q = content
            .tensor(&mut reader, WORD_EMBEDDINGS, device)
            .map_err(tensor_err(WORD_EMBEDDINGS))?;
        model
            .language_model_mut()
            .set_quantized_embeddings(Arc::new(q), lm_head_tied)
            .map_err(tensor_err(WORD_EMBEDDINGS))?;
        seen += 1;
    }
    for (name, linear) in model.language_model_mut().named_linears_mut(true) {
        if !quantized.contains(&name) {
            continue;
        }
        let q = content
            .tensor(&mut reader, &name, device)
            .map_err(tensor_err(&name))?;
        linear
            .set_quantized_base(Arc::new(q))
            .map_err(tensor_err(&name))?;
        seen += 1;
    }
    if seen != quantized.len() {
        return Err(GgufError::Mismatch {
            path: path.to_path_buf(),
            report: format!(
                "\n  {} quantized tensors, but the model has {seen} places for them",
                quantized.len()
            ),
        });
    }
    Ok(model)
}

/// Reads only the header of a GGUF file and returns `(name, type)` of every tensor, sorted,
/// after the same checks as [`load_gguf`] (for `inspect`-style listings and tests).
pub fn gguf_tensor_types(path: &Path) -> Result<Vec<(String, GgmlDType)>, GgufError> {
    let file = File::open(path).map_err(|source| GgufError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut reader = BufReader::new(file);
    let header = read_header(path, &mut reader)?;
    let mut v: Vec<(String, GgmlDType)> = header
        .content
        .tensor_infos
        .iter()
        .map(|(n, i)| (n.clone(), i.ggml_dtype))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(v)
}
