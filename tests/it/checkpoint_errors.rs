//! Damaged or incomplete checkpoints give clear errors (never panics).

use crate::checkpoint_common;

use std::io::Write;
use std::path::{Path, PathBuf};

use checkpoint_common::golden;
use visualglm::checkpoint::{self, CheckpointError, LoadOptions};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn truncate(path: &Path, keep_fraction: f64) {
    let bytes = std::fs::read(path).unwrap();
    let keep = (bytes.len() as f64 * keep_fraction) as usize;
    std::fs::write(path, &bytes[..keep]).unwrap();
}

fn load_err(path: &Path, opts: &LoadOptions) -> CheckpointError {
    match checkpoint::load(path, opts) {
        Ok(_) => panic!("{} loaded but should not have", path.display()),
        Err(e) => e,
    }
}

fn with_config() -> LoadOptions {
    LoadOptions {
        config_path: Some(golden().join("model/config.json")),
        ..LoadOptions::default()
    }
}

fn sat_copy(tmp: &Path) -> PathBuf {
    let dir = tmp.join("sat");
    copy_dir(&golden().join("checkpoints/sat/visualglm-tiny"), &dir);
    dir
}

#[test]
fn truncated_safetensors() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("m.safetensors");
    std::fs::copy(golden().join("model/tiny_visualglm_hf.safetensors"), &file).unwrap();
    truncate(&file, 0.5);
    let err = load_err(&file, &with_config());
    assert!(matches!(err, CheckpointError::Safetensors { .. }), "{err}");
    assert!(err.to_string().contains("m.safetensors"), "{err}");

    std::fs::write(&file, [1u8, 2, 3]).unwrap();
    let err = load_err(&file, &with_config());
    assert!(err.to_string().contains("too short"), "{err}");
}

#[test]
fn absurd_safetensors_header_is_refused_before_allocating() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("huge.safetensors");
    let mut bytes = (1u64 << 60).to_le_bytes().to_vec();
    bytes.extend_from_slice(b"{}");
    std::fs::write(&file, bytes).unwrap();
    let err = load_err(&file, &with_config());
    assert!(err.to_string().contains("header claims"), "{err}");
}

#[test]
fn truncated_sat_pickle() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = sat_copy(tmp.path());
    let pt = dir.join("1/mp_rank_00_model_states.pt");
    truncate(&pt, 0.7);
    let err = load_err(&dir, &LoadOptions::default());
    assert!(matches!(err, CheckpointError::Zip { .. }), "{err}");
    assert!(
        err.to_string().contains("mp_rank_00_model_states.pt"),
        "{err}"
    );
}

#[test]
fn truncated_hf_shard_and_flipped_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("hf");
    copy_dir(&golden().join("checkpoints/hf"), &dir);
    let shard = dir.join("pytorch_model-00002-of-00002.bin");
    let mut bytes = std::fs::read(&shard).unwrap();
    // Corrupt tensor data in the middle: the zip CRC check must catch it.
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 64] {
        *b ^= 0x5a;
    }
    std::fs::write(&shard, &bytes).unwrap();
    let err = load_err(&dir, &LoadOptions::default());
    assert!(
        err.to_string().contains("pytorch_model-00002-of-00002.bin"),
        "{err}"
    );

    truncate(&shard, 0.3);
    let err = load_err(&dir, &LoadOptions::default());
    assert!(
        err.to_string().contains("pytorch_model-00002-of-00002.bin"),
        "{err}"
    );
}

#[test]
fn missing_shard_named_in_index() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("hf");
    copy_dir(&golden().join("checkpoints/hf"), &dir);
    std::fs::remove_file(dir.join("pytorch_model-00001-of-00002.bin")).unwrap();
    let err = load_err(&dir, &LoadOptions::default());
    match &err {
        CheckpointError::MissingShard { shard, .. } => {
            assert_eq!(shard, "pytorch_model-00001-of-00002.bin")
        }
        other => panic!("wrong error: {other}"),
    }
    assert!(
        err.to_string().contains("pytorch_model.bin.index.json"),
        "{err}"
    );
}

#[test]
fn bad_index_files() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("hf");
    copy_dir(&golden().join("checkpoints/hf"), &dir);
    let index = dir.join("pytorch_model.bin.index.json");
    std::fs::write(&index, r#"{"weight_map": {"a": "../../etc/passwd"}}"#).unwrap();
    let err = load_err(&dir, &LoadOptions::default());
    assert!(err.to_string().contains("not a plain file name"), "{err}");
    std::fs::write(&index, r#"{"weight_map": {"#).unwrap();
    let err = load_err(&dir, &LoadOptions::default());
    assert!(err.to_string().contains("not valid JSON"), "{err}");
    std::fs::write(
        &index,
        r#"{"weight_map": {"not.there": "pytorch_model-00001-of-00002.bin"}}"#,
    )
    .unwrap();
    let err = load_err(&dir, &LoadOptions::default());
    assert!(err.to_string().contains("`not.there`"), "{err}");
}

#[test]
fn corrupt_latest() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = sat_copy(tmp.path());
    for bad in [
        "",
        "../1",
        "7",
        "\u{0}\u{1}garbage",
        "1\n2\n3 and more words",
    ] {
        std::fs::write(dir.join("latest"), bad).unwrap();
        let err = load_err(&dir, &LoadOptions::default());
        assert!(
            matches!(err, CheckpointError::Latest { .. }),
            "{bad:?}: {err}"
        );
        assert!(err.to_string().contains("latest"), "{err}");
    }
    std::fs::write(dir.join("latest"), "x".repeat(10_000)).unwrap();
    assert!(matches!(
        load_err(&dir, &LoadOptions::default()),
        CheckpointError::Latest { .. }
    ));
}

#[test]
fn missing_config() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("alone.safetensors");
    std::fs::copy(golden().join("model/tiny_visualglm_sat.safetensors"), &file).unwrap();
    let err = load_err(&file, &LoadOptions::default());
    assert!(
        matches!(err, CheckpointError::MissingConfig { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("config.json"), "{err}");

    let dir = sat_copy(tmp.path());
    std::fs::remove_file(dir.join("model_config.json")).unwrap();
    let err = load_err(&dir, &LoadOptions::default());
    assert!(
        matches!(err, CheckpointError::MissingConfig { .. }),
        "{err}"
    );
}

#[test]
fn config_with_missing_key_names_file_and_key() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = sat_copy(tmp.path());
    let cfg_path = dir.join("model_config.json");
    let text = std::fs::read_to_string(&cfg_path).unwrap();
    let mut cfg: serde_json::Value = serde_json::from_str(&text).unwrap();
    cfg["qformer_args"]
        .as_object_mut()
        .unwrap()
        .remove("cross_attn_hidden_size");
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    let msg = load_err(&dir, &LoadOptions::default()).to_string();
    assert!(msg.contains("qformer_args.cross_attn_hidden_size"), "{msg}");
    assert!(msg.contains("model_config.json"), "{msg}");
}

#[test]
fn mixed_hf_and_sat_names_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("mixed.safetensors");
    let t =
        candle_core::Tensor::zeros(4, candle_core::DType::F32, &candle_core::Device::Cpu).unwrap();
    let map = std::collections::HashMap::from([
        ("image_encoder.glm_proj.bias".to_string(), t.clone()),
        ("mixins.eva.model.glm_proj.weight".to_string(), t),
    ]);
    candle_core::safetensors::save(&map, &file).unwrap();
    let err = load_err(&file, &with_config());
    assert!(matches!(err, CheckpointError::MixedNaming { .. }), "{err}");
}

/// Builds a minimal torch zip file around a hand-written pickle.
fn torch_zip(path: &Path, pickle: &[u8], storages: &[(&str, &[u8])]) {
    use zip::write::SimpleFileOptions;
    let opts = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let mut z = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    z.start_file("archive/data.pkl", opts).unwrap();
    z.write_all(pickle).unwrap();
    for (key, bytes) in storages {
        z.start_file(format!("archive/data/{key}"), opts).unwrap();
        z.write_all(bytes).unwrap();
    }
    z.finish().unwrap();
}

fn unicode(s: &str) -> Vec<u8> {
    let mut v = vec![b'X'];
    v.extend_from_slice(&(s.len() as u32).to_le_bytes());
    v.extend_from_slice(s.as_bytes());
    v
}

/// `{name: _rebuild_tensor_v2(storage(FloatStorage, "0", n_storage), 0, (numel,), (1,)),
///   "junk": __builtin__.set(())}`, pickle protocol 2.
fn tensor_pickle(name: &str, numel: u8, n_storage: u8) -> Vec<u8> {
    let mut p = vec![0x80, 2, b'}', b'('];
    p.extend(unicode(name));
    p.extend_from_slice(b"ctorch._utils\n_rebuild_tensor_v2\n((");
    p.extend(unicode("storage"));
    p.extend_from_slice(b"ctorch\nFloatStorage\n");
    p.extend(unicode("0"));
    p.extend(unicode("cpu"));
    p.extend_from_slice(&[
        b'K', n_storage, b't', b'Q', b'K', 0, b'K', numel, 0x85, b'K', 1, 0x85, 0x89,
    ]);
    p.extend_from_slice(b"ccollections\nOrderedDict\n)Rt");
    p.push(b'R');
    p.extend(unicode("junk"));
    p.extend_from_slice(b"c__builtin__\nset\n)R");
    p.extend_from_slice(b"u.");
    p
}

#[test]
fn handmade_pickle_reads_and_skips_junk() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("ok.bin");
    let data: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0]
        .iter()
        .flat_map(|f| f.to_le_bytes())
        .collect();
    torch_zip(&file, &tensor_pickle("w", 4, 4), &[("0", &data)]);
    let tensors = checkpoint::pth::read_state_dict(&file).unwrap();
    assert_eq!(tensors.len(), 1, "the `set` junk entry must be skipped");
    assert_eq!(tensors[0].0, "w");
    assert_eq!(
        tensors[0].1.to_vec1::<f32>().unwrap(),
        vec![1.0, 2.0, 3.0, 4.0]
    );
}

#[test]
fn tensor_larger_than_its_storage_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("short.bin");
    let data = [0u8; 16];
    torch_zip(&file, &tensor_pickle("w", 200, 4), &[("0", &data)]);
    let err = checkpoint::pth::read_state_dict(&file).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("`w`") && msg.contains("short.bin"), "{msg}");

    // A storage entry that is absent from the archive.
    let file = tmp.path().join("nostorage.bin");
    torch_zip(&file, &tensor_pickle("w", 4, 4), &[]);
    let msg = checkpoint::pth::read_state_dict(&file)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("`w`") && msg.contains("archive/data/0"),
        "{msg}"
    );
}

#[test]
fn garbage_pickle_and_legacy_format() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("garbage.bin");
    torch_zip(&file, b"\x80\x02\xff\xfe", &[]);
    let err = checkpoint::pth::read_state_dict(&file).unwrap_err();
    assert!(matches!(err, CheckpointError::Pickle { .. }), "{err}");

    let legacy = tmp.path().join("legacy.bin");
    std::fs::write(&legacy, b"\x80\x02\x8a\x0alegacy").unwrap();
    let msg = checkpoint::pth::read_state_dict(&legacy)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("legacy"), "{msg}");
}

#[test]
fn a_damaged_storage_is_found_when_its_tensor_is_read() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("flipped.bin");
    let data: Vec<u8> = [1.5f32, 2.5, 3.5, 4.5]
        .iter()
        .flat_map(|f| f.to_le_bytes())
        .collect();
    torch_zip(&file, &tensor_pickle("w", 4, 4), &[("0", &data)]);
    let mut bytes = std::fs::read(&file).unwrap();
    let at = bytes
        .windows(data.len())
        .position(|w| w == data.as_slice())
        .expect("the storage is stored uncompressed");
    bytes[at + 5] ^= 0x40;
    std::fs::write(&file, &bytes).unwrap();
    // Opening only indexes the file; the damage shows when the tensor is read.
    let stored = checkpoint::pth::open_state_dict(&file).unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].1.dims(), &[4]);
    let msg = stored[0].1.read().unwrap_err().to_string();
    assert!(
        msg.contains("`w`") && msg.contains("CRC") && msg.contains("flipped.bin"),
        "{msg}"
    );
    let msg = checkpoint::pth::read_state_dict(&file)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("damaged"), "{msg}");
}
