//! `run.toml` text → `FinetuneConfig`, as `visualglm train --config` parses it, then what
//! `finetune` derives from the configuration alone before it reads any file: the
//! learning-rate schedule (every rate finite and within `[0, lr]`) and the LoRA
//! configuration.
#![no_main]
use libfuzzer_sys::fuzz_target;
use visualglm::finetune::FinetuneConfig;
use visualglm::lora::{LoraConfig, TargetRule, GLM_LAYERS};
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
    if cfg.lora_rank > 0 {
        let mut config = LoraConfig::glm(cfg.lora_rank, cfg.lora_alpha, cfg.lora_layers.clone());
        if cfg.lora_mlp {
            for module in ["mlp.dense_h_to_4h", "mlp.dense_4h_to_h"] {
                config.targets.push(TargetRule::new(
                    GLM_LAYERS,
                    module,
                    1,
                    cfg.lora_layers.clone(),
                ));
            }
        }
        let _ = config.validate();
    }
});
