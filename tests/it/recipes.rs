//! The committed run configurations in `recipes/` parse, and the release recipes say what the
//! release's scripts do: their adapters are the release's LoRA configuration, their schedule
//! is SAT's (warmup 6, cosine to 0.1, the 100-update cap at 0.05·lr), and the QLoRA one
//! quantizes the frozen ChatGLM linears.

use std::path::Path;

use visualglm::finetune::FinetuneConfig;
use visualglm::lora::recipe::release_config;

fn recipe(name: &str) -> FinetuneConfig {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("recipes")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn every_recipe_parses() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("recipes");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".toml") {
            recipe(&name);
            n += 1;
        }
    }
    assert!(n >= 2, "{n} recipes");
}

#[test]
fn release_recipes_match_the_release() {
    for name in ["release-lora.toml", "release-qlora.toml"] {
        let cfg = recipe(name);
        assert_eq!(cfg.lora_config(), Some(release_config()), "{name}");
        assert!(cfg.trainable.is_empty(), "{name}: only adapters train");
        assert_eq!((cfg.steps, cfg.warmup_steps), (300, 6));
        assert_eq!((cfg.lr, cfg.min_lr_ratio, cfg.clip), (1e-4, 0.1, 0.1));
        assert_eq!((cfg.auto_warmup_steps, cfg.auto_warmup_rate), (100, 0.05));
        assert_eq!((cfg.max_source_length, cfg.max_target_length), (64, 256));
        assert_eq!(cfg.batch_size * cfg.grad_accum, 4, "{name}");
        assert!(cfg.checkpoint_activations);
    }
    assert_eq!(
        recipe("release-qlora.toml").base_quantize.as_deref(),
        Some("q4_0")
    );
    assert_eq!(recipe("release-qlora.toml").batch_size, 1);
}
