//! Checkpoint atomicity, verification, pruning and exact restore.

use std::fs;

use candle_core::{Device, Tensor, Var};
use visualglm_train::checkpoint::{Checkpoint, CheckpointManager, TrainState, WEIGHTS_FILE};
use visualglm_train::data::DataPosition;
use visualglm_train::grads::Gradients;
use visualglm_train::optim::{AdamW, AdamWConfig, ParamSet};
use visualglm_train::rng::TrainRng;
use visualglm_train::step::StepCounters;
use visualglm_train::TrainError;

fn optimiser(seed: f32) -> AdamW {
    let d = Device::Cpu;
    let w = Var::from_tensor(
        &(Tensor::arange(0f32, 6.0, &d)
            .unwrap()
            .reshape((2, 3))
            .unwrap()
            * f64::from(seed))
        .unwrap(),
    )
    .unwrap();
    let b = Var::new(&[seed, -seed], &d).unwrap();
    let params = ParamSet::new([("w".to_string(), w), ("b".to_string(), b)]).unwrap();
    AdamW::new(params, AdamWConfig::default()).unwrap()
}

fn step_once(opt: &mut AdamW, g: f32) {
    let d = Device::Cpu;
    let grads = Gradients::new(vec![
        Some(Tensor::full(g, (2, 3), &d).unwrap()),
        Some(Tensor::new(&[g, 2.0 * g], &d).unwrap()),
    ]);
    opt.step(&grads, 1e-2).unwrap();
}

fn state(step: u64) -> TrainState {
    let mut metrics = std::collections::BTreeMap::new();
    metrics.insert("loss".to_string(), 0.25);
    metrics.insert("nan_metric".to_string(), f64::NAN);
    TrainState {
        counters: StepCounters {
            step,
            skipped_steps: 1,
        },
        data_position: DataPosition { epoch: 2, index: 5 },
        rng: TrainRng::new(11).state(),
        metrics,
        extra: serde_json::json!({"run": "toy"}),
    }
}

fn bits(t: &Tensor) -> Vec<u32> {
    t.flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .iter()
        .map(|x| x.to_bits())
        .collect()
}

#[test]
fn save_and_restore_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    let mgr = CheckpointManager::new(dir.path().join("ckpt"), 3).unwrap();
    assert!(mgr.load_latest(&Device::Cpu).unwrap().is_none());
    let mut a = optimiser(1.0);
    step_once(&mut a, 0.5);
    step_once(&mut a, -0.25);
    let saved = mgr.save_training(&state(2), &a).unwrap();
    assert_eq!(saved, dir.path().join("ckpt/step-2"));
    assert_eq!(
        fs::read_to_string(dir.path().join("ckpt/latest")).unwrap(),
        "step-2"
    );

    let mut b = optimiser(7.0);
    let ck = mgr.load_latest(&Device::Cpu).unwrap().unwrap();
    ck.restore(&mut b).unwrap();
    let mut want = state(2);
    want.metrics.remove("nan_metric");
    assert_eq!(ck.state, want);
    for (pa, pb) in a.params().params().iter().zip(b.params().params()) {
        assert_eq!(
            bits(pa.var.as_tensor()),
            bits(pb.var.as_tensor()),
            "{}",
            pa.name
        );
    }
    // The moments were restored too: the next step is identical.
    step_once(&mut a, 0.125);
    step_once(&mut b, 0.125);
    for (pa, pb) in a.params().params().iter().zip(b.params().params()) {
        assert_eq!(
            bits(pa.var.as_tensor()),
            bits(pb.var.as_tensor()),
            "{}",
            pa.name
        );
    }
}

#[test]
fn incomplete_and_corrupt_checkpoints_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("ckpt");
    let mgr = CheckpointManager::new(&root, 3).unwrap();
    let a = optimiser(1.0);
    mgr.save_training(&state(3), &a).unwrap();

    // A save that died half-way: a .tmp directory with some files. It is never loaded, and
    // `latest` still names the previous checkpoint.
    let tmp = root.join("step-4.tmp");
    fs::create_dir(&tmp).unwrap();
    fs::write(tmp.join(WEIGHTS_FILE), b"partial").unwrap();
    let err = Checkpoint::load(&tmp, &Device::Cpu).unwrap_err();
    assert!(err.to_string().contains("incomplete"), "{err}");
    let ck = mgr.load_latest(&Device::Cpu).unwrap().unwrap();
    assert_eq!(ck.state.counters.step, 3);
    assert!(mgr.list().unwrap().iter().all(|(s, _)| *s == 3));

    // A directory without a manifest.
    let nomani = root.join("step-9");
    fs::create_dir(&nomani).unwrap();
    let err = Checkpoint::load(&nomani, &Device::Cpu).unwrap_err();
    assert!(err.to_string().contains("no manifest.json"), "{err}");

    // A truncated weights file.
    let weights = root.join("step-3").join(WEIGHTS_FILE);
    let full = fs::read(&weights).unwrap();
    fs::write(&weights, &full[..full.len() - 5]).unwrap();
    let err = mgr.load_latest(&Device::Cpu).unwrap_err();
    assert!(matches!(err, TrainError::Checkpoint { .. }));
    assert!(err.to_string().contains("truncated"), "{err}");
    assert!(err.to_string().contains(WEIGHTS_FILE), "{err}");

    // A flipped byte of the same length.
    let mut flipped = full.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x40;
    fs::write(&weights, &flipped).unwrap();
    let err = mgr.load_latest(&Device::Cpu).unwrap_err();
    assert!(err.to_string().contains("FNV-1a-64"), "{err}");

    // `latest` naming something that is not a checkpoint.
    fs::write(&weights, &full).unwrap();
    assert!(mgr.load_latest(&Device::Cpu).is_ok());
    fs::write(root.join("latest"), "../etc").unwrap();
    assert!(mgr.load_latest(&Device::Cpu).is_err());
}

#[test]
fn keeps_only_the_last_k_and_replaces_a_resaved_step() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("ckpt");
    let mgr = CheckpointManager::new(&root, 2).unwrap();
    let a = optimiser(1.0);
    fs::create_dir_all(root.join("step-1.tmp")).unwrap();
    for s in 1..=4 {
        mgr.save_training(&state(s), &a).unwrap();
    }
    let steps: Vec<u64> = mgr.list().unwrap().into_iter().map(|(s, _)| s).collect();
    assert_eq!(steps, [3, 4]);
    assert!(!root.join("step-1.tmp").exists());
    // Saving the same step again replaces it atomically.
    let mut st = state(4);
    st.metrics.insert("loss".into(), 0.5);
    mgr.save_training(&st, &a).unwrap();
    let ck = mgr.load_latest(&Device::Cpu).unwrap().unwrap();
    assert_eq!(ck.state.metrics["loss"], 0.5);
    let names: Vec<String> = fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names
            .iter()
            .all(|n| !n.ends_with(".old") && !n.ends_with(".tmp")),
        "{names:?}"
    );
    assert!(CheckpointManager::new(&root, 0).is_err());
}
