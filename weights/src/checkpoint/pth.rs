//! Reading tensors from torch zip-format pickles (`pytorch_model*.bin`, SAT `*.pt`).
//!
//! The pickle program is run by candle's `candle_core::pickle::Stack`, which keeps any
//! global it does not know (`__builtin__.set`, `torch.Size`, numpy, `_codecs.encode`) as an
//! opaque `Class`/`Reduce` object instead of failing. The tensor records are then read here
//! rather than with candle's `PthTensors`, which can panic on malformed records and allocates
//! whatever size a record claims: every size is checked against the zip entry first.

use std::collections::BTreeMap;
use std::io::{Cursor, Read};
use std::path::Path;

use candle_core::pickle::{Object, Stack};
use candle_core::{DType, Device, Tensor};

use super::error::CheckpointError;
use super::pickle_guard;
use super::stored::{MappedFile, StoredTensor};

/// Largest `data.pkl` accepted (real state-dict pickles are well under 1 MiB).
const MAX_PICKLE_BYTES: u64 = 256 << 20;

/// One tensor record of the pickle.
struct Record {
    name: String,
    dtype: DType,
    shape: Vec<usize>,
    /// Offset into the storage, in elements.
    offset: usize,
    /// Storage key: the zip entry is `<prefix>data/<key>`.
    storage: String,
}

/// Reads the state dict of a torch zip file. If the top-level object is a dict with a
/// `module` entry (SAT / DeepSpeed `.pt`), that entry is read and everything else ignored.
/// Non-tensor values are skipped. Tensors keep their stored dtype and live on the CPU.
pub fn read_state_dict(path: &Path) -> Result<Vec<(String, Tensor)>, CheckpointError> {
    open_state_dict(path)?
        .into_iter()
        .map(|(name, t)| Ok((name, t.read()?)))
        .collect()
}

/// Lists the tensors of a torch zip file as [`read_state_dict`] reads them, each read from
/// the memory-mapped file (and its zip entry's CRC-32 checked) only when asked. Storages kept
/// compressed in the archive (torch never writes them) are read at once.
pub fn open_state_dict(path: &Path) -> Result<Vec<(String, StoredTensor)>, CheckpointError> {
    let file = std::fs::File::open(path).map_err(|e| CheckpointError::io(path, e))?;
    let file_len = file
        .metadata()
        .map_err(|e| CheckpointError::io(path, e))?
        .len();
    check_magic(path)?;
    let mut zip =
        zip::ZipArchive::new(std::io::BufReader::new(file)).map_err(|e| CheckpointError::Zip {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    let mut pkl_names = Vec::new();
    for n in zip.file_names() {
        let n = n.map_err(|e| CheckpointError::Zip {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        if n == "data.pkl" || n.ends_with("/data.pkl") {
            pkl_names.push(n.into_owned());
        }
    }
    let pkl_name = match pkl_names.as_slice() {
        [one] => one.clone(),
        [] => return Err(pickle_err(path, "the archive has no data.pkl")),
        _ => return Err(pickle_err(path, "the archive has several data.pkl entries")),
    };
    let prefix = pkl_name.trim_end_matches("data.pkl").to_string();
    let pickle = read_entry(&mut zip, path, &pkl_name, file_len, MAX_PICKLE_BYTES)?;

    pickle_guard::check(&pickle).map_err(|m| pickle_err(path, &m))?;
    let mut stack = Stack::empty();
    stack
        .read_loop(&mut Cursor::new(pickle.as_slice()))
        .map_err(|e| pickle_err(path, &e.to_string()))?;
    let top = stack
        .finalize()
        .map_err(|e| pickle_err(path, &e.to_string()))?;
    let entries = state_dict_entries(top).map_err(|m| pickle_err(path, &m))?;

    let mut records = Vec::new();
    for (key, value) in entries {
        let Object::Unicode(name) = key else { continue };
        match tensor_record(&value) {
            Ok(Some(parts)) => records.push(parts.into_record(name)),
            Ok(None) => tracing::debug!("{}: skipping non-tensor entry `{name}`", path.display()),
            Err(message) => return Err(CheckpointError::tensor(path, name, message)),
        }
    }

    // Locate each storage once (HF shards share one storage between lm_head and the embedding).
    let mapped = MappedFile::open(path)?;
    let mut by_storage: BTreeMap<String, Vec<Record>> = BTreeMap::new();
    for r in records {
        by_storage.entry(r.storage.clone()).or_default().push(r);
    }
    let mut out = Vec::new();
    for (key, recs) in by_storage {
        let entry = format!("{prefix}data/{key}");
        let first = recs.first().map(|r| r.name.clone()).unwrap_or_default();
        match stored_entry(&mut zip, path, &entry, file_len)
            .map_err(|e| CheckpointError::tensor(path, &first, format!("storage {entry}: {e}")))?
        {
            Some((span, crc)) => {
                for r in recs {
                    let range = record_range(path, &r, span.len())?;
                    let range = span.start + range.start..span.start + range.end;
                    let t = StoredTensor::mapped(&mapped, &r.name, r.dtype, r.shape, range)?;
                    out.push((r.name, t.with_crc(span.clone(), crc)));
                }
            }
            None => {
                let bytes =
                    read_entry(&mut zip, path, &entry, file_len, u64::MAX).map_err(|e| {
                        CheckpointError::tensor(path, &first, format!("storage {entry}: {e}"))
                    })?;
                for r in recs {
                    let range = record_range(path, &r, bytes.len())?;
                    let t = Tensor::from_raw_buffer(&bytes[range], r.dtype, &r.shape, &Device::Cpu)
                        .map_err(|e| {
                            CheckpointError::candle(
                                format!("{}: tensor `{}`", path.display(), r.name),
                                e,
                            )
                        })?;
                    out.push((r.name.clone(), StoredTensor::in_memory(&r.name, path, t)));
                }
            }
        }
    }
    Ok(out)
}

/// The byte span and CRC-32 of an uncompressed, unencrypted zip entry; `None` when it is
/// compressed or encrypted (it must then be read through the zip reader).
fn stored_entry<R: std::io::Read + std::io::Seek>(
    zip: &mut zip::ZipArchive<R>,
    path: &Path,
    name: &str,
    file_len: u64,
) -> Result<Option<(std::ops::Range<usize>, u32)>, CheckpointError> {
    let zerr = |message: String| CheckpointError::Zip {
        path: path.to_path_buf(),
        message: format!("entry {name}: {message}"),
    };
    let entry = zip.by_name(name).map_err(|e| zerr(e.to_string()))?;
    if entry.compression() != zip::CompressionMethod::Stored || entry.encrypted() {
        return Ok(None);
    }
    let size = entry.size();
    let start = entry
        .data_start()
        .ok_or_else(|| zerr("no data offset".into()))?;
    match start.checked_add(size) {
        Some(end) if end <= file_len && entry.compressed_size() == size => {
            Ok(Some((start as usize..end as usize, entry.crc32())))
        }
        _ => Err(zerr(format!(
            "claims {size} bytes at offset {start}; the file has {file_len} (truncated?)"
        ))),
    }
}

fn pickle_err(path: &Path, message: &str) -> CheckpointError {
    CheckpointError::Pickle {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

/// Refuses the legacy (torch < 1.6) tar/pickle serialisation with a clear message.
fn check_magic(path: &Path) -> Result<(), CheckpointError> {
    let mut head = [0u8; 4];
    let mut f = std::fs::File::open(path).map_err(|e| CheckpointError::io(path, e))?;
    let n = f
        .read(&mut head)
        .map_err(|e| CheckpointError::io(path, e))?;
    if n == 4 && &head == b"PK\x03\x04" {
        return Ok(());
    }
    if n >= 1 && head[0] == 0x80 {
        return Err(CheckpointError::Zip {
            path: path.to_path_buf(),
            message: "legacy (torch < 1.6) pickle format; re-save it with a newer torch".into(),
        });
    }
    Err(CheckpointError::Zip {
        path: path.to_path_buf(),
        message: "does not start with a zip header (truncated or not a torch file)".into(),
    })
}

/// Reads one zip entry after checking its size against the file and `limit`.
fn read_entry<R: std::io::Read + std::io::Seek>(
    zip: &mut zip::ZipArchive<R>,
    path: &Path,
    name: &str,
    file_len: u64,
    limit: u64,
) -> Result<Vec<u8>, CheckpointError> {
    let zerr = |e: zip::result::ZipError| CheckpointError::Zip {
        path: path.to_path_buf(),
        message: format!("entry {name}: {e}"),
    };
    let mut entry = zip.by_name(name).map_err(zerr)?;
    let size = entry.size();
    if size > file_len || size > limit {
        return Err(CheckpointError::Zip {
            path: path.to_path_buf(),
            message: format!(
                "entry {name} claims {size} bytes; the file has {file_len} (limit {limit})"
            ),
        });
    }
    let mut buf = Vec::with_capacity(size as usize);
    // Reading up to EOF (one byte past the size) makes the zip reader verify the CRC.
    entry
        .by_ref()
        .take(size.saturating_add(1))
        .read_to_end(&mut buf)
        .map_err(|e| CheckpointError::Zip {
            path: path.to_path_buf(),
            message: format!("entry {name}: {e}"),
        })?;
    if buf.len() as u64 != size {
        return Err(CheckpointError::Zip {
            path: path.to_path_buf(),
            message: format!("entry {name} is truncated: {} of {size} bytes", buf.len()),
        });
    }
    Ok(buf)
}

/// The `(key, value)` pairs of the state dict: the `module` entry if there is one.
fn state_dict_entries(top: Object) -> Result<Vec<(Object, Object)>, String> {
    let Object::Dict(entries) = top else {
        return Err("the top-level object is not a dict".into());
    };
    let module_pos = entries
        .iter()
        .position(|(k, _)| matches!(k, Object::Unicode(s) if s == "module"));
    match module_pos {
        Some(i) => match entries.into_iter().nth(i) {
            Some((_, Object::Dict(inner))) => Ok(inner),
            _ => Err("`module` is not a dict".into()),
        },
        None => Ok(entries),
    }
}

/// A tensor record before it is given its name.
struct Parts {
    dtype: DType,
    shape: Vec<usize>,
    offset: usize,
    storage: String,
}

impl Parts {
    fn into_record(self, name: String) -> Record {
        Record {
            name,
            dtype: self.dtype,
            shape: self.shape,
            offset: self.offset,
            storage: self.storage,
        }
    }
}

fn is_class(obj: &Object, module: &str, class: &str) -> bool {
    matches!(obj, Object::Class { module_name, class_name } if module_name == module && class_name == class)
}

/// Recognises `torch._utils._rebuild_tensor_v2(...)`, possibly wrapped in
/// `_rebuild_parameter` or `_rebuild_from_type_v2`. `Ok(None)` for anything else.
fn tensor_record(obj: &Object) -> Result<Option<Parts>, String> {
    let Object::Reduce { callable, args } = obj else {
        return Ok(None);
    };
    let Object::Tuple(args) = args.as_ref() else {
        return Ok(None);
    };
    if is_class(callable, "torch._utils", "_rebuild_parameter") {
        return match args.first() {
            Some(inner) => tensor_record(inner),
            None => Err("empty _rebuild_parameter arguments".into()),
        };
    }
    if is_class(callable, "torch._tensor", "_rebuild_from_type_v2") {
        return match (args.first(), args.get(2)) {
            (Some(func), Some(inner_args)) => tensor_record(&Object::Reduce {
                callable: Box::new(func.clone()),
                args: Box::new(inner_args.clone()),
            }),
            _ => Err("short _rebuild_from_type_v2 arguments".into()),
        };
    }
    if !is_class(callable, "torch._utils", "_rebuild_tensor_v2") {
        return Ok(None);
    }
    if args.len() < 4 {
        return Err(format!(
            "_rebuild_tensor_v2 has {} arguments, expected ≥ 4",
            args.len()
        ));
    }
    let Object::PersistentLoad(pid) = &args[0] else {
        return Err("storage argument is not a persistent id".into());
    };
    let Object::Tuple(pid) = pid.as_ref() else {
        return Err("storage persistent id is not a tuple".into());
    };
    if pid.len() < 5 {
        return Err(format!(
            "storage persistent id has {} fields, expected 5",
            pid.len()
        ));
    }
    let dtype = match &pid[1] {
        Object::Class { class_name, .. } => storage_dtype(class_name)?,
        _ => return Err("storage type is not a class".into()),
    };
    let storage = match &pid[2] {
        Object::Unicode(s) if !s.is_empty() && !s.contains("..") => s.clone(),
        _ => return Err("storage key is not a plain string".into()),
    };
    let offset = as_usize(&args[1]).ok_or("storage offset is not a non-negative integer")?;
    let shape = as_usize_tuple(&args[2]).ok_or("size is not a tuple of integers")?;
    let stride = as_usize_tuple(&args[3]).ok_or("stride is not a tuple of integers")?;
    if shape.len() != stride.len() {
        return Err(format!(
            "size {shape:?} and stride {stride:?} differ in rank"
        ));
    }
    let mut expected = 1usize;
    for (&dim, &st) in shape.iter().zip(stride.iter()).rev() {
        if dim > 1 && st != expected {
            return Err(format!(
                "non-contiguous layout (size {shape:?}, stride {stride:?}) is not supported"
            ));
        }
        expected = expected.saturating_mul(dim);
    }
    Ok(Some(Parts {
        dtype,
        shape,
        offset,
        storage,
    }))
}

fn storage_dtype(class: &str) -> Result<DType, String> {
    Ok(match class {
        "FloatStorage" => DType::F32,
        "HalfStorage" => DType::F16,
        "BFloat16Storage" => DType::BF16,
        "DoubleStorage" => DType::F64,
        "LongStorage" => DType::I64,
        "IntStorage" => DType::I32,
        "ShortStorage" => DType::I16,
        "ByteStorage" => DType::U8,
        other => return Err(format!("unsupported storage type torch.{other}")),
    })
}

fn as_usize(obj: &Object) -> Option<usize> {
    match obj {
        Object::Int(i) => usize::try_from(*i).ok(),
        Object::Long(i) => usize::try_from(*i).ok(),
        _ => None,
    }
}

fn as_usize_tuple(obj: &Object) -> Option<Vec<usize>> {
    match obj {
        Object::Tuple(items) => items.iter().map(as_usize).collect(),
        _ => None,
    }
}

/// The bytes of record `r` within its storage of `storage_len` bytes, after checking it fits.
fn record_range(
    path: &Path,
    r: &Record,
    storage_len: usize,
) -> Result<std::ops::Range<usize>, CheckpointError> {
    let size = r.dtype.size_in_bytes();
    let numel = r
        .shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| CheckpointError::tensor(path, &r.name, "element count overflows"))?;
    let start = r.offset.checked_mul(size);
    let end = numel
        .checked_mul(size)
        .and_then(|n| start.and_then(|s| s.checked_add(n)));
    match (start, end) {
        (Some(s), Some(e)) if e <= storage_len => Ok(s..e),
        _ => Err(CheckpointError::tensor(
            path,
            &r.name,
            format!(
                "shape {:?} at offset {} needs more than the {} bytes of storage {}",
                r.shape, r.offset, storage_len, r.storage
            ),
        )),
    }
}
