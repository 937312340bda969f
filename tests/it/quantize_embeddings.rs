//! Quantized word embeddings (shared with a tied `lm_head`) and a separate image-encoder dtype,
//! on the tiny golden model: logits stay close to f32, the greedy tokens are unchanged, the
//! tied table is really one tensor, and a GGUF file with it round-trips exactly.

use crate::support;
use visualglm::EmbedSpan;

use std::collections::HashMap;

use candle_core::quantized::GgmlDType;
use candle_core::{DType, Device, Tensor};
use visualglm::gguf::{gguf_tensor_types, write_gguf, GgufWriteOptions};
use visualglm::quantize::QuantizeOptions;
use visualglm::{LoadOptions, VisualGlm};

use support::{cosine, golden, ids_u32, max_abs_diff};

fn fixture() -> HashMap<String, Tensor> {
    support::fixture("model/golden_hf.safetensors")
}

fn load(opts: &LoadOptions) -> VisualGlm {
    VisualGlm::load(&golden("checkpoints/hf"), &Device::Cpu, DType::F32, opts)
        .expect("tiny model loads")
}

/// Prompt logits of `model` on the fixture's image prompt.
fn logits(model: &VisualGlm, g: &HashMap<String, Tensor>) -> Tensor {
    let image = model.encode_image(&g["pixel_values"]).unwrap();
    let ids = ids_u32(&g["input_ids"]);
    model
        .prompt_logits(&ids, &[EmbedSpan::new(2, image.clone())])
        .unwrap()
}

fn greedy(model: &VisualGlm, g: &HashMap<String, Tensor>, n: usize) -> Vec<u32> {
    let image = model.encode_image(&g["pixel_values"]).unwrap();
    let ids = ids_u32(&g["input_ids"]);
    model
        .generate_greedy(&ids, &[EmbedSpan::new(2, image.clone())], n)
        .unwrap()
        .0
}

fn tied() -> QuantizeOptions {
    QuantizeOptions {
        lm_head: true,
        embeddings: true,
    }
}

#[test]
fn q8_0_embeddings_tied_with_lm_head_stay_close_and_share_one_tensor() {
    let g = fixture();
    let want = ids_u32(&g["gen_ids"]);
    let base = load(&LoadOptions::default());
    let reference = logits(&base, &g);

    let mut m = base.clone();
    let report = m.quantize_language(GgmlDType::Q8_0, &tied()).unwrap();
    let n_layers = base.config().glm.num_layers;
    assert_eq!(report.weights.len(), 4 * n_layers + 2);
    let tail: Vec<_> = report.weights[4 * n_layers..].to_vec();
    assert_eq!(
        tail,
        vec![
            (
                "transformer.word_embeddings.weight".to_string(),
                Some(GgmlDType::Q8_0)
            ),
            ("lm_head.weight".to_string(), Some(GgmlDType::Q8_0)),
        ]
    );
    assert!(report.lm_head_tied, "{report:?}");
    assert!(report.summary().contains("shares"), "{}", report.summary());
    let glm = m.language_model();
    assert!(glm.lm_head_shares_embeddings());
    assert!(glm.word_embeddings().dense_table().is_none());
    assert!(glm.lm_head().weight().is_none());
    assert_eq!(glm.dtype(), DType::F32);

    let cos = cosine(&logits(&m, &g), &reference);
    assert!(cos >= 0.999, "tied q8_0 embeddings: cosine {cos}");
    assert_eq!(greedy(&m, &g, want.len()), want, "q8_0 + tied embeddings");
}

#[test]
fn embeddings_alone_leave_lm_head_dense() {
    let g = fixture();
    let base = load(&LoadOptions::default());
    let mut m = base.clone();
    let report = m
        .quantize_language(
            GgmlDType::Q4_0,
            &QuantizeOptions {
                lm_head: false,
                embeddings: true,
            },
        )
        .unwrap();
    assert!(!report.lm_head_tied);
    let glm = m.language_model();
    assert_eq!(
        glm.word_embeddings().quantized_dtype(),
        Some(GgmlDType::Q4_0)
    );
    assert!(glm.lm_head().weight().is_some());
    assert!(!glm.lm_head_shares_embeddings());
    let cos = cosine(&logits(&m, &g), &logits(&base, &g));
    assert!(cos >= 0.99, "q4_0 embeddings: cosine {cos}");
}

#[test]
fn gguf_with_quantized_embeddings_round_trips_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let ck = visualglm::load(&golden("checkpoints/hf"), &LoadOptions::default()).unwrap();
    let g = fixture();
    for (lm_head, embeddings) in [(true, true), (false, true)] {
        let out = dir.path().join(format!("tiny-{lm_head}-{embeddings}.gguf"));
        let opts = GgufWriteOptions {
            quantization: GgmlDType::Q8_0,
            lm_head,
            embeddings,
            dense: GgmlDType::F32,
        };
        write_gguf(&ck, &out, &opts, &mut |_, _, _| {}).unwrap();
        let types: HashMap<String, GgmlDType> =
            gguf_tensor_types(&out).unwrap().into_iter().collect();
        assert_eq!(
            types.get("transformer.word_embeddings.weight"),
            Some(&GgmlDType::Q8_0)
        );
        // Tied: the table is stored once.
        let head = types.get("lm_head.weight").copied();
        assert_eq!(head, (!lm_head).then_some(GgmlDType::F32), "{lm_head}");

        let loaded = VisualGlm::load(&out, &Device::Cpu, DType::F32, &Default::default()).unwrap();
        assert_eq!(loaded.language_model().lm_head_shares_embeddings(), lm_head);
        let mut in_memory = load(&LoadOptions::default());
        in_memory
            .quantize_language(
                GgmlDType::Q8_0,
                &QuantizeOptions {
                    lm_head,
                    embeddings,
                },
            )
            .unwrap();
        let d = max_abs_diff(&logits(&loaded, &g), &logits(&in_memory, &g));
        assert_eq!(
            d, 0.0,
            "lm_head {lm_head}: GGUF logits differ from in memory"
        );
    }
}

#[test]
fn f16_vision_with_f32_language_stays_close() {
    let g = fixture();
    let want = ids_u32(&g["gen_ids"]);
    let base = load(&LoadOptions::default());
    let opts = LoadOptions {
        vision_dtype: Some(DType::F16),
        ..LoadOptions::default()
    };
    let m = load(&opts);
    assert_eq!(m.vision_dtype(), DType::F16);
    assert_eq!(m.dtype(), DType::F32);
    let stages = m.encode_image_stages(&g["pixel_values"]).unwrap();
    assert_eq!(stages.vit_out.dtype(), DType::F16);
    assert_eq!(stages.image_embeds.dtype(), DType::F32);
    let reference = base.encode_image(&g["pixel_values"]).unwrap();
    let cos = cosine(&stages.image_embeds, &reference);
    assert!(cos >= 0.999, "f16 vision image embeddings: cosine {cos}");
    assert_eq!(greedy(&m, &g, want.len()), want, "f16 vision");

    // The same from a GGUF file.
    let dir = tempfile::tempdir().unwrap();
    let ck = visualglm::load(&golden("checkpoints/hf"), &LoadOptions::default()).unwrap();
    let out = dir.path().join("tiny.gguf");
    write_gguf(
        &ck,
        &out,
        &GgufWriteOptions {
            dense: GgmlDType::F32,
            ..GgufWriteOptions::new(GgmlDType::Q8_0)
        },
        &mut |_, _, _| {},
    )
    .unwrap();
    let q = VisualGlm::load(&out, &Device::Cpu, DType::F32, &opts).unwrap();
    assert_eq!(q.vision_dtype(), DType::F16);
    let d = max_abs_diff(
        &q.encode_image(&g["pixel_values"]).unwrap(),
        &stages.image_embeds,
    );
    assert_eq!(d, 0.0, "GGUF f16 vision differs from checkpoint f16 vision");
}

#[test]
fn bf16_vision_on_the_cpu_is_refused() {
    let opts = LoadOptions {
        vision_dtype: Some(DType::BF16),
        ..LoadOptions::default()
    };
    let err = VisualGlm::load(&golden("checkpoints/hf"), &Device::Cpu, DType::F32, &opts)
        .unwrap_err()
        .to_string();
    assert!(err.contains("bf16"), "{err}");
}

#[test]
fn quantize_cli_stores_a_tied_table_once() {
    let dir = tempfile::tempdir().unwrap();
    let gguf = dir.path().join("tiny.gguf");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_visualglm"))
        .args(["quantize", "--model"])
        .arg(golden("checkpoints/hf"))
        .arg("--out")
        .arg(&gguf)
        .args([
            "--type",
            "q8_0",
            "--lm-head",
            "--embeddings",
            "--dense",
            "f32",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let types: HashMap<String, GgmlDType> = gguf_tensor_types(&gguf).unwrap().into_iter().collect();
    assert!(!types.contains_key("lm_head.weight"));
    assert_eq!(
        types.get("transformer.word_embeddings.weight"),
        Some(&GgmlDType::Q8_0)
    );
    let m = VisualGlm::load(&gguf, &Device::Cpu, DType::F32, &Default::default()).unwrap();
    assert!(m.language_model().lm_head_shares_embeddings());
}
