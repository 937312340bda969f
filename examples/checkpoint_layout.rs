//! Prints the configuration (HF `config.json` keys) and every parameter name and shape of the
//! released VisualGLM-6B, optionally with fewer layers, as one JSON object:
//! `{"config": {...}, "params": [["name", [dims...]], ...]}`. `bench/load/make_torch_checkpoint.py`
//! writes a checkpoint of that layout with random values.
//! `cargo run --example checkpoint_layout -- [GLM_LAYERS [VIT_LAYERS]]`

use visualglm::{expected_parameters, VisualGlmConfig};

fn main() -> anyhow::Result<()> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    let mut config = VisualGlmConfig::visualglm_6b();
    if let Some(&n) = args.first() {
        config.glm.num_layers = n;
    }
    if let Some(&n) = args.get(1) {
        config.vision.num_layers = n;
    }
    let params = expected_parameters(&config)?;
    let out = serde_json::json!({ "config": config.to_hf_json(), "params": params });
    println!("{out}");
    Ok(())
}
