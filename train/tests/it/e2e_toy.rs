//! End to end on a toy MLP: optimiser + schedule + clipping + accumulation + checkpoints.
//!
//! (a) every trainable variable gets a non-zero gradient; (b) frozen variables are
//! bit-identical after training; (c) resuming from the step-k checkpoint reproduces the
//! uninterrupted run's step-2k loss and weights **bit-exactly** (CPU); (d) a NaN injected
//! into a batch skips that step, is counted, and training goes on.

use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};
use visualglm_train::checkpoint::{CheckpointManager, TrainState};
use visualglm_train::data::{DataPosition, Sampler, SamplerConfig};
use visualglm_train::grads::{GradAccumulator, Gradients};
use visualglm_train::optim::{AdamW, AdamWConfig, ParamSet};
use visualglm_train::rng::TrainRng;
use visualglm_train::schedule::LrSchedule;
use visualglm_train::step::{apply_step, StepCounters, StepOutcome};

const N: usize = 48;
const IN: usize = 4;
const HID: usize = 8;
const K: u64 = 6;
const ACCUM: usize = 2;

/// A deterministic regression set: y = sin(x·a) + 0.5·x₀.
fn dataset() -> (Vec<[f32; IN]>, Vec<f32>) {
    let mut rng = TrainRng::new(123);
    let xs: Vec<[f32; IN]> = (0..N)
        .map(|_| std::array::from_fn(|_| (rng.next_f64() * 2.0 - 1.0) as f32))
        .collect();
    let ys = xs
        .iter()
        .map(|x| (x[0] * 1.5 - x[1] + 0.5 * x[2]).sin() + 0.5 * x[0] + 0.1 * x[3])
        .collect();
    (xs, ys)
}

struct Toy {
    frozen: Var,
    w1: Var,
    b1: Var,
    w2: Var,
}

impl Toy {
    /// The frozen weights always come from the same "base model"; `seed` draws the
    /// trainable ones (a resumed run overwrites them from the checkpoint).
    fn new(seed: u64) -> Self {
        let d = Device::Cpu;
        let mut base = TrainRng::new(7);
        let frozen: Vec<f32> = (0..IN * IN)
            .map(|_| ((base.next_f64() * 2.0 - 1.0) * 0.8) as f32)
            .collect();
        let frozen = Var::from_tensor(&Tensor::from_vec(frozen, (IN, IN), &d).unwrap()).unwrap();
        let mut rng = TrainRng::new(seed);
        let mut t = |shape: (usize, usize), scale: f64| {
            let v: Vec<f32> = (0..shape.0 * shape.1)
                .map(|_| ((rng.next_f64() * 2.0 - 1.0) * scale) as f32)
                .collect();
            Var::from_tensor(&Tensor::from_vec(v, shape, &d).unwrap()).unwrap()
        };
        let w1 = t((IN, HID), 0.7);
        let w2 = t((HID, 1), 0.5);
        let b1 = Var::zeros(HID, DType::F32, &d).unwrap();
        Self { frozen, w1, b1, w2 }
    }

    fn params(&self) -> ParamSet {
        ParamSet::new([
            ("w1".to_string(), self.w1.clone()),
            ("b1".to_string(), self.b1.clone()),
            ("w2".to_string(), self.w2.clone()),
        ])
        .unwrap()
    }

    fn loss(&self, x: &Tensor, y: &Tensor) -> Tensor {
        let h = x.matmul(self.frozen.as_tensor()).unwrap();
        let h = h
            .matmul(self.w1.as_tensor())
            .unwrap()
            .broadcast_add(self.b1.as_tensor())
            .unwrap()
            .tanh()
            .unwrap();
        let out = h.matmul(self.w2.as_tensor()).unwrap().squeeze(1).unwrap();
        (out - y).unwrap().sqr().unwrap().mean_all().unwrap()
    }
}

struct RunResult {
    step_losses: Vec<(u64, f32)>,
    eval_loss: f32,
    counters: StepCounters,
    weights: Vec<Vec<u32>>,
    frozen_before: Vec<u32>,
    frozen_after: Vec<u32>,
    first_grads_nonzero: Option<Vec<(String, bool)>>,
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

/// Trains to `steps` applied updates. Resumes from `ckpt`'s latest checkpoint if any;
/// saves after update `save_at`; poisons the first micro-batch of attempt `nan_attempt`.
fn run(
    ckpt: &Path,
    steps: u64,
    save_at: Option<u64>,
    nan_attempt: Option<u64>,
    model_seed: u64,
) -> RunResult {
    let d = Device::Cpu;
    let (xs, ys) = dataset();
    let toy = Toy::new(model_seed);
    let frozen_before = bits(toy.frozen.as_tensor());
    let mut opt = AdamW::new(toy.params(), AdamWConfig::default()).unwrap();
    let schedule = LrSchedule::cosine(3e-2, 3, 2 * K, 0.1).unwrap();
    let mgr = CheckpointManager::new(ckpt, 2).unwrap();
    let mut state = TrainState {
        counters: StepCounters::default(),
        data_position: DataPosition::default(),
        rng: TrainRng::new(99).state(),
        metrics: Default::default(),
        extra: serde_json::Value::Null,
    };
    if let Some(ck) = mgr.load_latest(&d).unwrap() {
        ck.restore(&mut opt).unwrap();
        state = ck.state;
    }
    let scfg = SamplerConfig {
        seed: 5,
        batch_size: 8,
        shuffle: true,
        drop_last: true,
    };
    let mut sampler = Sampler::resume(N, scfg, state.data_position).unwrap();
    let mut rng = TrainRng::from_state(state.rng);
    let mut step_losses = Vec::new();
    let mut first_grads_nonzero = None;
    while state.counters.step < steps {
        let attempt = state.counters.step + state.counters.skipped_steps;
        let mut acc = GradAccumulator::new();
        let mut loss_sum = 0f64;
        for micro in 0..ACCUM {
            let idx = sampler.next_batch();
            let mut x: Vec<f32> = idx
                .iter()
                .flat_map(|&i| xs[i])
                .map(|v| v + (rng.next_f64() as f32 - 0.5) * 0.02)
                .collect();
            if nan_attempt == Some(attempt) && micro == 0 {
                x[0] = f32::NAN;
            }
            let y: Vec<f32> = idx.iter().map(|&i| ys[i]).collect();
            let x = Tensor::from_vec(x, (idx.len(), IN), &d).unwrap();
            let y = Tensor::from_vec(y, idx.len(), &d).unwrap();
            let loss = toy.loss(&x, &y);
            loss_sum += f64::from(loss.to_scalar::<f32>().unwrap());
            let store = loss.backward().unwrap();
            assert!(
                store.get(toy.frozen.as_tensor()).is_some(),
                "the frozen path must carry a gradient"
            );
            let g = Gradients::from_store(&store, opt.params()).unwrap();
            if first_grads_nonzero.is_none() {
                let flags = opt
                    .params()
                    .params()
                    .iter()
                    .enumerate()
                    .map(|(i, p)| {
                        let nz = g.get(i).is_some_and(|t| {
                            t.abs()
                                .unwrap()
                                .sum_all()
                                .unwrap()
                                .to_scalar::<f32>()
                                .unwrap()
                                > 0.0
                        });
                        (p.name.clone(), nz)
                    })
                    .collect();
                first_grads_nonzero = Some(flags);
                assert!(g.missing(opt.params()).is_empty());
            }
            acc.add(g).unwrap();
        }
        let grads = acc.take_mean().unwrap().unwrap();
        let mean_loss = loss_sum / ACCUM as f64;
        let outcome = apply_step(
            &mut opt,
            &schedule,
            &mut state.counters,
            mean_loss,
            grads,
            Some(1.0),
        )
        .unwrap();
        state.data_position = sampler.position();
        state.rng = rng.state();
        if let StepOutcome::Applied { grad_norm, .. } = outcome {
            assert!(grad_norm.is_finite());
            step_losses.push((state.counters.step, mean_loss as f32));
            state.metrics.insert("loss".into(), mean_loss);
            if save_at == Some(state.counters.step) {
                mgr.save_training(&state, &opt).unwrap();
            }
        }
    }
    let x: Vec<f32> = xs.iter().flatten().copied().collect();
    let x = Tensor::from_vec(x, (N, IN), &d).unwrap();
    let y = Tensor::from_vec(ys, N, &d).unwrap();
    let eval_loss = toy.loss(&x, &y).to_scalar::<f32>().unwrap();
    RunResult {
        step_losses,
        eval_loss,
        counters: state.counters,
        weights: opt
            .params()
            .params()
            .iter()
            .map(|p| bits(p.var.as_tensor()))
            .collect(),
        frozen_before,
        frozen_after: bits(toy.frozen.as_tensor()),
        first_grads_nonzero,
    }
}

#[test]
fn toy_training_grads_frozen_resume_and_nan_skip() {
    let dir = tempfile::tempdir().unwrap();

    // Uninterrupted run to 2k, checkpointing at k on the way.
    let full = run(&dir.path().join("full"), 2 * K, Some(K), None, 1);
    // (a) every trainable var got a non-zero gradient.
    for (name, nz) in full.first_grads_nonzero.clone().unwrap() {
        assert!(nz, "{name} got a zero gradient");
    }
    // (b) frozen vars are bit-identical.
    assert_eq!(full.frozen_before, full.frozen_after);
    // Training helps.
    let untrained = run(&dir.path().join("none"), 0, None, None, 1);
    assert!(
        full.eval_loss < 0.8 * untrained.eval_loss,
        "{} vs {}",
        full.eval_loss,
        untrained.eval_loss
    );
    assert_eq!(
        full.counters,
        StepCounters {
            step: 2 * K,
            skipped_steps: 0
        }
    );

    // (c) A run stopped at k, then resumed in a fresh model (different init, overwritten
    // by the checkpoint), reaches the same step-2k loss and weights, bit for bit.
    let part = dir.path().join("part");
    let first = run(&part, K, Some(K), None, 1);
    assert_eq!(first.step_losses[..], full.step_losses[..K as usize]);
    let resumed = run(&part, 2 * K, None, None, 42);
    assert_eq!(resumed.step_losses.first().map(|s| s.0), Some(K + 1));
    let full_tail: Vec<(u64, u32)> = full.step_losses[K as usize..]
        .iter()
        .map(|(s, l)| (*s, l.to_bits()))
        .collect();
    let resumed_tail: Vec<(u64, u32)> = resumed
        .step_losses
        .iter()
        .map(|(s, l)| (*s, l.to_bits()))
        .collect();
    assert_eq!(full_tail, resumed_tail);
    assert_eq!(full.weights, resumed.weights);
    assert_eq!(full.eval_loss.to_bits(), resumed.eval_loss.to_bits());

    // (d) A NaN in attempt 3's batch: skipped, counted, and the run still makes 2k updates.
    let nan = run(&dir.path().join("nan"), 2 * K, None, Some(3), 1);
    assert_eq!(
        nan.counters,
        StepCounters {
            step: 2 * K,
            skipped_steps: 1
        }
    );
    assert_eq!(nan.step_losses.len(), 2 * K as usize);
    assert!(nan.step_losses.iter().all(|(_, l)| l.is_finite()));
    assert_eq!(nan.step_losses[..3], full.step_losses[..3]);
    assert!(nan.eval_loss.is_finite());
    assert!(nan
        .weights
        .iter()
        .flatten()
        .all(|b| f32::from_bits(*b).is_finite()));
}
