//! Data-parallel fine-tuning with ranks as threads (`ThreadGroup`): two ranks of batch 2 make
//! the same updates as one process of batch 4, resume across world sizes at the same global
//! batch, refuse another global batch, and a rank that fails ends the run on every rank.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use candle_core::Device;
use visualglm::finetune::{finetune, finetune_on, FinetuneConfig, StepReport};
use visualglm_dist::{Collective, ThreadGroup};

use crate::support::golden;

/// `crate::finetune::config` on five captioned images (an odd count: the last global batch of
/// an epoch is short, and one rank's share of it is empty) with per-rank batch `batch_size`.
fn config(dir: &Path, out: &str, steps: u64, batch_size: usize) -> FinetuneConfig {
    let mut cfg = crate::finetune::config(dir, out, steps);
    let records = serde_json::json!([
        {"img": golden("images/chelsea.png"), "prompt": "Describe the image.", "label": "a cat on a floor"},
        {"img": golden("images/astronaut.png"), "prompt": "Describe the image.", "label": "an astronaut in a suit"},
        {"img": golden("images/chelsea.png"), "prompt": "What animal is this?", "label": "a cat"},
        {"img": golden("images/astronaut.png"), "prompt": "Who is this?", "label": "a person in a white space suit holding a flag"},
        {"img": golden("images/chelsea.png"), "prompt": "Colour?", "label": "orange and brown"},
    ]);
    cfg.data = dir.join("five.json");
    std::fs::write(&cfg.data, records.to_string()).unwrap();
    cfg.batch_size = batch_size;
    cfg
}

/// Runs `cfg` on `world` thread ranks; each rank's reports (or error text), by rank.
fn run_ranks(
    world: usize,
    cfg: &FinetuneConfig,
    stop_after: Option<u64>,
    fail_rank: Option<usize>,
) -> Vec<Result<Vec<StepReport>, String>> {
    let group = ThreadGroup::new(world, Duration::from_secs(120));
    std::thread::scope(|s| {
        let handles: Vec<_> = group
            .into_iter()
            .map(|rank| {
                s.spawn(move || {
                    if fail_rank == Some(rank.rank()) {
                        rank.fail("injected fault");
                        return Err("failed on purpose".to_string());
                    }
                    finetune_on(cfg, &Device::Cpu, Arc::new(rank), &mut |r| {
                        stop_after.is_none_or(|s| r.step < s)
                    })
                    .map_err(|e| e.to_string())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("rank panicked"))
            .collect()
    })
}

fn assert_same_losses(one: &[StepReport], other: &[StepReport]) {
    assert_eq!(one.len(), other.len());
    for (a, b) in one.iter().zip(other) {
        assert_eq!(a.step, b.step);
        let tol = 2e-5 * a.loss.abs().max(1.0);
        assert!(
            (a.loss - b.loss).abs() <= tol,
            "step {}: {} vs {}",
            a.step,
            a.loss,
            b.loss
        );
        let tol = 1e-4 * a.grad_norm.abs().max(1.0);
        assert!(
            (a.grad_norm - b.grad_norm).abs() <= tol,
            "step {}: grad norm {} vs {}",
            a.step,
            a.grad_norm,
            b.grad_norm
        );
    }
}

#[test]
fn two_ranks_of_batch_2_make_the_updates_of_one_process_of_batch_4() {
    let dir = tempfile::tempdir().unwrap();
    let steps = 4;
    let one = finetune(
        &config(dir.path(), "one", steps, 4),
        &Device::Cpu,
        &mut |_| true,
    )
    .unwrap();
    let ranks = run_ranks(2, &config(dir.path(), "two", steps, 2), None, None);
    for r in &ranks {
        let reports = r.as_ref().expect("rank failed");
        assert_same_losses(&one, reports);
        // Each update reports its time in collectives; the one-process run has none.
        assert!(reports
            .iter()
            .all(|r| r.comm_seconds.is_some_and(|s| s >= 0.0)));
    }
    assert!(one.iter().all(|r| r.comm_seconds.is_none()));
    // Rank 0 alone wrote the checkpoints, recording the world.
    let out = dir.path().join("two");
    let latest = std::fs::read_to_string(out.join("latest")).unwrap();
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join(latest.trim()).join("state.json")).unwrap(),
    )
    .unwrap();
    let dp = &state["extra"]["data_parallel"];
    assert_eq!(
        (dp["world_size"].as_u64(), dp["global_batch"].as_u64()),
        (Some(2), Some(4))
    );
    // And its weights are those of the one-process run, within a third of one Adam step
    // (lr): Adam divides each gradient by its own running size, so a parameter whose gradient
    // is float noise (a key bias, which the softmax ignores) moves by noise-driven steps.
    let load = |run: &str| {
        let dir = dir.path().join(run);
        let latest = std::fs::read_to_string(dir.join("latest")).unwrap();
        candle_core::safetensors::load(
            dir.join(latest.trim()).join("weights.safetensors"),
            &Device::Cpu,
        )
        .unwrap()
    };
    let (a, b) = (load("one"), load("two"));
    assert_eq!(a.len(), b.len());
    for (name, t) in &a {
        let diff = (t - &b[name])
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(diff <= 1e-3, "{name}: {diff}");
    }
}

#[test]
fn a_two_rank_run_resumes_as_one_process_at_the_same_global_batch_and_refuses_another() {
    let dir = tempfile::tempdir().unwrap();
    let full = finetune(&config(dir.path(), "full", 4, 4), &Device::Cpu, &mut |_| {
        true
    });
    let full = full.unwrap();
    // Two ranks stop after update 2 (checkpointed), one process of batch 4 goes on.
    let first = run_ranks(2, &config(dir.path(), "split", 4, 2), Some(2), None);
    assert!(first.iter().all(|r| r.as_ref().is_ok_and(|v| v.len() == 2)));
    let err = finetune(
        &config(dir.path(), "split", 4, 3),
        &Device::Cpu,
        &mut |_| true,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("global batch 4") && err.contains("global batch 3"),
        "{err}"
    );
    let rest = finetune(
        &config(dir.path(), "split", 4, 4),
        &Device::Cpu,
        &mut |_| true,
    )
    .unwrap();
    assert_eq!(rest.first().map(|r| r.step), Some(3));
    assert_same_losses(&full[2..], &rest);
}

#[test]
fn a_failing_rank_ends_the_run_on_every_rank_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_ranks(2, &config(dir.path(), "fail", 2, 2), None, Some(1));
    let err = out[0].as_ref().unwrap_err();
    assert!(err.contains("rank 1 failed: injected fault"), "{err}");
}

#[test]
fn a_world_of_one_thread_is_the_single_process_run() {
    let dir = tempfile::tempdir().unwrap();
    let one = finetune(&config(dir.path(), "a", 2, 2), &Device::Cpu, &mut |_| true).unwrap();
    let mut group = ThreadGroup::new(1, Duration::from_secs(10));
    let rank = group.remove(0);
    assert_eq!(rank.world_size(), 1);
    let same = finetune_on(
        &config(dir.path(), "b", 2, 2),
        &Device::Cpu,
        Arc::new(rank),
        &mut |_| true,
    )
    .unwrap();
    let strip = |r: &[StepReport]| -> Vec<StepReport> {
        r.iter()
            .map(|r| StepReport {
                peak_rss_mib: None,
                ..r.clone()
            })
            .collect()
    };
    assert_eq!(strip(&one), strip(&same));
}

#[test]
fn itc_with_a_queue_and_a_trainable_image_encoder_across_two_ranks_matches_one_process() {
    // The contrastive loss sees every rank's images and captions (gathered with gradient), the
    // queue holds the whole batch's captions, and the ViT, Q-Former and heads train.
    let dir = tempfile::tempdir().unwrap();
    let itc = |out: &str, batch_size: usize| FinetuneConfig {
        itc_weight: 0.5,
        itc_dim: 16,
        itc_queue: 3,
        trainable: vec![
            "image_encoder.vit".into(),
            "image_encoder.qformer".into(),
            "image_encoder.glm_proj".into(),
        ],
        ..config(dir.path(), out, 4, batch_size)
    };
    let one = finetune(&itc("one", 4), &Device::Cpu, &mut |_| true).unwrap();
    let ranks = run_ranks(2, &itc("two", 2), None, None);
    for r in &ranks {
        assert_same_losses(&one, r.as_ref().unwrap_or_else(|_| panic!("{ranks:?}")));
    }
    // The same after a stop at update 2 and a resume with two ranks.
    let first = run_ranks(2, &itc("split", 2), Some(2), None);
    assert!(first.iter().all(|r| r.as_ref().is_ok_and(|v| v.len() == 2)));
    let rest = run_ranks(2, &itc("split", 2), None, None);
    for r in &rest {
        assert_same_losses(&one[2..], r.as_ref().expect("rank failed"));
    }
}

#[test]
fn two_ranks_split_the_validation_set_and_report_the_one_process_val_loss() {
    // Five validation examples in batches of 2 and 4: three batches split 2 + 1 between the
    // ranks against two batches in one process; the loss per answer token is the same.
    let dir = tempfile::tempdir().unwrap();
    let with_val = |out: &str, batch_size: usize| {
        let mut cfg = config(dir.path(), out, 2, batch_size);
        cfg.val_data = Some(cfg.data.clone());
        cfg.val_every = 1;
        cfg
    };
    let one = finetune(&with_val("one", 4), &Device::Cpu, &mut |_| true).unwrap();
    let ranks = run_ranks(2, &with_val("two", 2), None, None);
    for r in &ranks {
        let reports = r.as_ref().expect("rank failed");
        assert_same_losses(&one, reports);
        for (a, b) in one.iter().zip(reports) {
            let (a, b) = (
                a.val_loss.expect("no val loss"),
                b.val_loss.expect("no val loss"),
            );
            assert!(a > 0.0, "{a}");
            assert!((a - b).abs() <= 1e-4 * a.abs().max(1.0), "{a} vs {b}");
        }
    }
}

#[test]
fn a_hung_rank_is_named_when_the_collective_times_out() {
    // Rank 1 joins the group but never calls a collective (it hangs past the timeout): rank 0
    // stops at its first collective with an error naming rank 1 and the collective.
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "hang", 2, 2);
    let mut group = ThreadGroup::new(2, Duration::from_secs(3));
    let hung = group.pop().unwrap();
    let rank0 = group.pop().unwrap();
    let err = std::thread::scope(|s| {
        let hang = s.spawn(move || {
            std::thread::sleep(Duration::from_secs(5));
            drop(hung);
        });
        let err = finetune_on(&cfg, &Device::Cpu, Arc::new(rank0), &mut |_| true)
            .map(|r| r.len())
            .unwrap_err()
            .to_string();
        hang.join().expect("hung rank panicked");
        err
    });
    assert!(err.contains("rank 1 did not arrive at"), "{err}");
}
