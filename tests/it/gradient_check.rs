//! The training loss's gradients are right, not merely non-zero: the analytic gradient of a
//! few weights in every part of the image path (ViT, Q-Former, glm_proj) matches central
//! finite differences of the loss.

use crate::support;

use candle_core::{Device, Tensor};
use support::{golden, tiny_tokenizer};
use visualglm::finetune::{batch_loss, example_ids, load_trainable};
use visualglm_tokenizer::ChatGlmTokenizer;
use visualglm_train::labels::LabelConfig;
use visualglm_vision::decode::load_image;

#[test]
fn image_path_gradients_match_finite_differences() {
    let dir = tempfile::tempdir().unwrap();
    let tok = ChatGlmTokenizer::from_file(tiny_tokenizer(dir.path())).unwrap();
    let tm = load_trainable(
        &golden("checkpoints/hf"),
        &["image_encoder.".to_string()],
        &Device::Cpu,
    )
    .unwrap();
    let labels = LabelConfig {
        max_source_length: 48,
        max_target_length: 16,
        ..LabelConfig::default()
    };
    let image_length = tm.model.config().image_length;
    let (ids, pre) = example_ids(&tok, image_length, "Describe.", "a cat", true, &labels).unwrap();
    let image = load_image(golden("images/chelsea.png"), &Default::default()).unwrap();
    let pixels = tm
        .model
        .image_preprocessor()
        .preprocess_batch(&[image], &Device::Cpu)
        .unwrap();
    let loss = || -> f64 {
        let l = batch_loss(&tm.model, &pixels, std::slice::from_ref(&ids), pre).unwrap();
        f64::from(l.to_scalar::<f32>().unwrap())
    };
    let grads = batch_loss(&tm.model, &pixels, std::slice::from_ref(&ids), pre)
        .unwrap()
        .backward()
        .unwrap();
    let names = [
        "image_encoder.vit.mixins.patch_embedding.proj.weight",
        "image_encoder.vit.transformer.position_embeddings.weight",
        "image_encoder.vit.transformer.layers.0.attention.query_key_value.weight",
        "image_encoder.vit.transformer.layers.1.mlp.dense_h_to_4h.weight",
        "image_encoder.vit.mixins.cls.ln_vision.weight",
        "image_encoder.qformer.transformer.layers.0.cross_attention.key_value.weight",
        "image_encoder.qformer.transformer.layers.1.attention.query_key_value.weight",
        "image_encoder.qformer.transformer.word_embeddings.weight",
        "image_encoder.glm_proj.weight",
    ];
    for name in names {
        let var = &tm.vars.iter().find(|(n, _)| n == name).unwrap().1;
        let g = grads.get(var.as_tensor()).expect(name);
        let flat_g: Vec<f32> = g.flatten_all().unwrap().to_vec1().unwrap();
        // The coordinate with the largest gradient.
        let (k, &gk) = flat_g
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
            .unwrap();
        let orig = var.as_tensor().copy().unwrap();
        let mut values: Vec<f32> = orig.flatten_all().unwrap().to_vec1().unwrap();
        // A step large enough that f32 rounding of the loss (~1e-7 relative) stays well below the
        // central difference's own error, on every CPU path (AVX2 and AVX-512 sum differently).
        let h = 1e-2f32 * values[k].abs().max(0.5);
        let mut at = |delta: f32| -> f64 {
            values[k] = orig.flatten_all().unwrap().to_vec1::<f32>().unwrap()[k] + delta;
            var.set(&Tensor::from_vec(values.clone(), orig.dims(), &Device::Cpu).unwrap())
                .unwrap();
            loss()
        };
        let numeric = (at(h) - at(-h)) / (2.0 * f64::from(h));
        var.set(&orig).unwrap();
        let rel = (numeric - f64::from(gk)).abs() / f64::from(gk.abs()).max(1e-6);
        assert!(
            rel < 0.05,
            "{name}[{k}]: analytic {gk:e}, numeric {numeric:e} (relative error {rel:.3})"
        );
        eprintln!("{name}: analytic {gk:e} numeric {numeric:e}");
    }
}
