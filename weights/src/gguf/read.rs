//! Reading a VisualGLM GGUF file back: the header and its metadata checks, the tensor checks
//! against the expected parameters, and [`GgufReader`], which hands out one tensor at a time.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufReader, Read, Seek};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use visualglm_nn::quant::dtype_name;
use visualglm_nn::QuantizedWeight;

use super::error::GgufError;
use super::format::{is_glm_linear_weight, GGUF_MAGIC, KEY_LM_HEAD_TIED, LM_HEAD, WORD_EMBEDDINGS};
use crate::checkpoint::FORMAT_NAME;
use crate::config::{CheckpointFamily, VisualGlmConfig};

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

/// An open GGUF file written by [`write_gguf`](super::write_gguf), checked against the
/// parameters its consumer expects, that hands out one tensor at a time: dense tensors
/// converted to the dtype asked for, quantized ones as GGML blocks.
pub struct GgufReader {
    path: PathBuf,
    reader: BufReader<File>,
    content: Content,
    config: VisualGlmConfig,
    lm_head_tied: bool,
    quantized: HashSet<String>,
}

impl GgufReader {
    /// Opens `path` and checks its header and metadata; `config_path`, when set, replaces the
    /// embedded configuration (it must describe the same model).
    pub fn open(path: &Path, config_path: Option<&Path>) -> Result<Self, GgufError> {
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
        if let Some(p) = config_path {
            config = VisualGlmConfig::from_file(p)?.0;
        }
        Ok(Self {
            path: path.to_path_buf(),
            reader,
            content,
            config,
            lm_head_tied,
            quantized: HashSet::new(),
        })
    }

    /// The model configuration (embedded, or the one passed to [`GgufReader::open`]).
    pub fn config(&self) -> &VisualGlmConfig {
        &self.config
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether `lm_head.weight` is the quantized word-embedding table (not stored on its own).
    pub fn lm_head_tied(&self) -> bool {
        self.lm_head_tied
    }

    /// Checks names, shapes and types against `expected` (name, shape) and remembers which
    /// tensors are quantized.
    pub fn check(&mut self, expected: &[(String, Vec<usize>)]) -> Result<(), GgufError> {
        self.quantized = check_tensors(&self.path, &self.content, expected, self.lm_head_tied)?;
        Ok(())
    }

    /// Whether the tensor `name` is stored quantized (after [`GgufReader::check`]); a tied
    /// `lm_head` counts as quantized.
    pub fn is_quantized(&self, name: &str) -> bool {
        self.quantized.contains(name) || (self.lm_head_tied && name == LM_HEAD)
    }

    /// The number of quantized tensors stored in the file (after [`GgufReader::check`]).
    pub fn quantized_count(&self) -> usize {
        self.quantized.len()
    }

    /// The dense tensor `name` in `dtype` on `device`.
    pub fn dense(
        &mut self,
        name: &str,
        dtype: DType,
        device: &Device,
    ) -> Result<Tensor, GgufError> {
        let q = self.quantized(name, device)?;
        let t = if dtype == DType::F16 && q.dtype() == GgmlDType::F16 {
            q.dequantize_f16(device)
        } else {
            q.dequantize(device)
        };
        t.and_then(|t| t.to_dtype(dtype))
            .map_err(self.tensor_err(name))
    }

    /// The tensor `name` as stored (GGML blocks for a quantized one) on `device`.
    pub fn quantized(&mut self, name: &str, device: &Device) -> Result<QTensor, GgufError> {
        let err = self.tensor_err(name);
        self.content
            .tensor(&mut self.reader, name, device)
            .map_err(err)
    }

    /// The quantized `[out, in]` weight `name` on `device`, ready for a layer. On the CPU its
    /// bytes are read once into the buffer the weight keeps (repacked there where the decode
    /// kernels want it: [`QuantizedWeight::from_ggml_bytes`]), so loading never holds a tensor
    /// twice; elsewhere it goes through candle's reader.
    pub fn quantized_weight(
        &mut self,
        name: &str,
        device: &Device,
    ) -> Result<QuantizedWeight, GgufError> {
        let err = self.tensor_err(name);
        let info = match self.content.tensor_infos.get(name) {
            Some(info) if device.is_cpu() && info.shape.rank() == 2 => info,
            _ => {
                let q = self.quantized(name, device)?;
                return QuantizedWeight::new(Arc::new(q)).map_err(err);
            }
        };
        let (dtype, dims) = (info.ggml_dtype, info.shape.dims2().map_err(&err)?);
        let block = dtype.block_size();
        let msg = |m: String| err(candle_core::Error::Msg(m));
        let len = match dims.0.checked_mul(dims.1) {
            Some(elems) if elems % block == 0 => (elems / block).checked_mul(dtype.type_size()),
            _ => None,
        }
        .ok_or_else(|| {
            msg(format!(
                "shape {dims:?} is not a whole number of {dtype:?} blocks"
            ))
        })?;
        let start = self.content.tensor_data_offset.saturating_add(info.offset);
        let io = |e: std::io::Error| err(candle_core::Error::wrap(e));
        let file_len = self.reader.get_ref().metadata().map_err(io)?.len();
        let remaining = file_len.saturating_sub(start);
        if remaining < len as u64 {
            return Err(msg(format!(
                "needs {len} bytes at offset {start}, only {remaining} remaining in the file \
                 (truncated?)"
            )));
        }
        let mut bytes = vec![0u8; len];
        self.reader
            .seek(std::io::SeekFrom::Start(start))
            .and_then(|_| self.reader.read_exact(&mut bytes))
            .map_err(io)?;
        QuantizedWeight::from_ggml_bytes(dtype, dims, bytes).map_err(err)
    }

    /// Maps a tensor error of `name` to [`GgufError::Tensor`].
    pub fn tensor_err(&self, name: &str) -> impl Fn(candle_core::Error) -> GgufError {
        let (p, n) = (self.path.clone(), name.to_string());
        move |source| GgufError::Tensor {
            path: p.clone(),
            name: n.clone(),
            source: Box::new(source),
        }
    }
}

/// Reads only the header of a GGUF file and returns `(name, type)` of every tensor, sorted,
/// after the same header checks as [`GgufReader::open`] (for `inspect`-style listings and tests).
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
