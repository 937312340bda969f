//! Bad GGUF files give clear errors, never panics.

use std::path::{Path, PathBuf};

use crate::support::golden;
use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use visualglm::gguf::{write_gguf, GgufError, GgufWriteOptions};
use visualglm::{LoadOptions, VisualGlm};

fn load_err(path: &Path) -> String {
    let err = VisualGlm::load(path, &Device::Cpu, DType::F32, &Default::default())
        .expect_err("must be refused");
    let msg = err.to_string();
    assert!(
        msg.contains(&path.display().to_string()),
        "names the file: {msg}"
    );
    msg
}

fn gguf_err(path: &Path) -> GgufError {
    match visualglm::gguf::load_gguf(path, &Device::Cpu, DType::F32, &LoadOptions::default()) {
        Ok(_) => panic!("{} must be refused", path.display()),
        Err(e) => e,
    }
}

/// A valid GGUF file of our own, written from the tiny checkpoint.
fn tiny_gguf(dir: &Path) -> PathBuf {
    let ck = visualglm::load(&golden("checkpoints/hf"), &LoadOptions::default()).unwrap();
    let out = dir.join("tiny.gguf");
    write_gguf(
        &ck,
        &out,
        &GgufWriteOptions::new(GgmlDType::Q8_0),
        &mut |_, _, _| {},
    )
    .unwrap();
    out
}

/// A GGUF written by candle's generic writer with the given metadata and one small tensor.
fn crafted(path: &Path, metadata: &[(&str, Value)], tensor_name: &str) {
    let t = Tensor::zeros((4, 32), DType::F32, &Device::Cpu).unwrap();
    let q = QTensor::quantize(&t, GgmlDType::Q8_0).unwrap();
    let md: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (*k, v)).collect();
    let mut f = std::fs::File::create(path).unwrap();
    gguf_file::write(&mut f, &md, &[(tensor_name, &q)]).unwrap();
}

#[test]
fn not_a_gguf_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("random.gguf");
    std::fs::write(&p, b"PK\x03\x04 definitely not gguf").unwrap();
    assert!(matches!(gguf_err(&p), GgufError::NotGguf { .. }));
    assert!(load_err(&p).contains("not a GGUF file"));
    let empty = dir.path().join("empty.gguf");
    std::fs::write(&empty, b"").unwrap();
    assert!(matches!(gguf_err(&empty), GgufError::NotGguf { .. }));
}

#[test]
fn missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("absent.gguf");
    assert!(matches!(gguf_err(&p), GgufError::Io { .. }));
}

#[test]
fn foreign_llama_gguf() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("llama.gguf");
    crafted(
        &p,
        &[
            ("general.architecture", Value::String("llama".into())),
            ("llama.block_count", Value::U32(1)),
        ],
        "blk.0.attn_q.weight",
    );
    match gguf_err(&p) {
        GgufError::Foreign { architecture, .. } => assert_eq!(architecture, "llama"),
        other => panic!("expected Foreign, got {other}"),
    }
    assert!(load_err(&p).contains("llama"));
}

#[test]
fn hostile_alignment_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("align0.gguf");
    crafted(&p, &[("general.alignment", Value::U32(0))], "x");
    assert!(matches!(gguf_err(&p), GgufError::Malformed { .. }));
}

#[test]
fn truncated_and_corrupt_files() {
    let dir = tempfile::tempdir().unwrap();
    let good = tiny_gguf(dir.path());
    let bytes = std::fs::read(&good).unwrap();

    // Cut inside the tensor data: the header parses, a tensor read runs past the end.
    let cut = dir.path().join("cut.gguf");
    std::fs::write(&cut, &bytes[..bytes.len() - 100]).unwrap();
    let msg = load_err(&cut);
    assert!(msg.contains("remaining"), "{msg}");

    // Cut inside a quantized tensor's data (read straight into the layer's buffer): the error
    // names the file and the tensor.
    let content = gguf_file::Content::read(&mut std::fs::File::open(&good).unwrap()).unwrap();
    let (name, info) = content
        .tensor_infos
        .iter()
        .filter(|(_, i)| i.ggml_dtype == GgmlDType::Q8_0 && i.shape.rank() == 2)
        .min_by_key(|(_, i)| i.offset)
        .expect("a quantized tensor");
    let at = (content.tensor_data_offset + info.offset) as usize + 10;
    let mid = dir.path().join("mid.gguf");
    std::fs::write(&mid, &bytes[..at]).unwrap();
    let mut reader = visualglm::gguf::GgufReader::open(&mid, None).unwrap();
    let err = match reader.quantized_weight(name, &Device::Cpu) {
        Ok(_) => panic!("a cut tensor must be refused"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("only 10 remaining") && err.contains(name.as_str()),
        "{err}"
    );
    assert!(err.contains(&mid.display().to_string()), "{err}");

    // Cut inside the header.
    let head = dir.path().join("head.gguf");
    std::fs::write(&head, &bytes[..40]).unwrap();
    assert!(matches!(gguf_err(&head), GgufError::Malformed { .. }));

    // An absurd tensor count in the header.
    let mut big = bytes.clone();
    big[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
    let huge = dir.path().join("huge.gguf");
    std::fs::write(&huge, &big).unwrap();
    assert!(matches!(gguf_err(&huge), GgufError::Malformed { .. }));
}

#[test]
fn our_format_with_wrong_tensors() {
    let dir = tempfile::tempdir().unwrap();
    let ck = visualglm::load(&golden("checkpoints/hf"), &LoadOptions::default()).unwrap();
    let p = dir.path().join("partial.gguf");
    crafted(
        &p,
        &[
            ("format", Value::String("visualglm-rs".into())),
            ("qkv_layout", Value::String("blocks".into())),
            ("family", Value::String("hf".into())),
            ("config", Value::String(ck.config.to_hf_json().to_string())),
        ],
        "transformer.word_embeddings.weight",
    );
    let msg = match gguf_err(&p) {
        GgufError::Mismatch { report, .. } => report,
        other => panic!("expected Mismatch, got {other}"),
    };
    assert!(msg.contains("missing `lm_head.weight`"), "{msg}");
    assert!(
        msg.contains("`transformer.word_embeddings.weight` has shape"),
        "{msg}"
    );

    let bad_family = dir.path().join("family.gguf");
    crafted(
        &bad_family,
        &[
            ("format", Value::String("visualglm-rs".into())),
            ("qkv_layout", Value::String("blocks".into())),
            ("family", Value::String("llama".into())),
        ],
        "x",
    );
    match gguf_err(&bad_family) {
        GgufError::Metadata { key, .. } => assert_eq!(key, "family"),
        other => panic!("expected Metadata, got {other}"),
    }
}
