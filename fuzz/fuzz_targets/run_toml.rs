//! `run.toml` text → `FinetuneConfig`, as `visualglm train --config` parses it, then what
//! `finetune` derives from the configuration alone before it reads any file: the
//! learning-rate schedule (every rate finite and within `[0, lr]`) and the LoRA
//! configuration.
#![no_main]
use libfuzzer_sys::fuzz_target;
use visualglm::finetune::FinetuneConfig;
use visualglm_train::schedule::LrSchedule;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(cfg) = toml::from_str::<FinetuneConfig>(text) else {
        return;
    };
    if let Ok(s) = LrSchedule::cosine(cfg.lr, cfg.warmup_steps, cfg.steps, cfg.min_lr_ratio) {
        for step in [
            0,
            1,
            cfg.warmup_steps,
            cfg.steps / 2,
            cfg.steps,
            cfg.steps.saturating_add(1),
        ] {
            let lr = s.lr_at(step);
            assert!(
                lr.is_finite() && (0.0..=cfg.lr).contains(&lr),
                "lr {lr} at step {step} of {cfg:?}"
            );
        }
    }
    if let Some(config) = cfg.lora_config() {
        let _ = config.validate();
    }
});
