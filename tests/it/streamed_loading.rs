//! Checkpoints are read one tensor at a time: `checkpoint::open` reads exactly what `load`
//! reads, a model built from the open checkpoint equals one built from the tensors in memory,
//! and quantizing while loading gives the same model as quantizing after.

use std::collections::HashMap;
use visualglm::EmbedSpan;

use crate::support::{golden, ids_u32};
use candle_core::quantized::GgmlDType;
use candle_core::{DType, Device, Tensor};
use visualglm::checkpoint::{self, LoadOptions};
use visualglm::quantize::QuantizeOptions;
use visualglm::VisualGlm;
use visualglm_testing::values_f32;

fn fixture() -> HashMap<String, Tensor> {
    crate::support::fixture("model/golden_hf.safetensors")
}

fn prompt_logits(model: &VisualGlm, g: &HashMap<String, Tensor>) -> Vec<f32> {
    let image = model.encode_image(&g["pixel_values"]).unwrap();
    let logits = model
        .prompt_logits(
            &ids_u32(&g["input_ids"]),
            &[EmbedSpan::new(2, image.clone())],
        )
        .unwrap();
    logits.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

#[test]
fn open_reads_exactly_what_load_reads() {
    let sat = LoadOptions::default();
    for rel in ["checkpoints/hf", "checkpoints/sat/visualglm-tiny"] {
        let path = golden(rel);
        let eager = checkpoint::load(&path, &sat).unwrap();
        let lazy = checkpoint::open(&path, &sat).unwrap();
        assert_eq!(lazy.names(), eager.names(), "{rel}");
        assert_eq!(lazy.family, eager.family);
        let mut bytes = 0;
        for name in eager.names() {
            let want = eager.get(name).unwrap();
            let stored = lazy.get(name).unwrap();
            assert_eq!(stored.dims(), want.dims(), "{rel}: {name}");
            assert_eq!(stored.dtype(), want.dtype(), "{rel}: {name}");
            let got = stored.read().unwrap();
            assert_eq!(values_f32(&got), values_f32(want), "{rel}: {name}");
            bytes += want.elem_count() * want.dtype().size_in_bytes();
        }
        assert_eq!(lazy.stored_bytes(), bytes, "{rel}");
    }
}

#[test]
fn a_model_built_while_reading_equals_one_built_from_memory() {
    let g = fixture();
    let path = golden("checkpoints/hf");
    let ck = checkpoint::load(&path, &LoadOptions::default()).unwrap();
    let from_memory = VisualGlm::from_var_builder(
        &ck.config,
        ck.var_builder(DType::F32, &Device::Cpu),
        &Default::default(),
    )
    .unwrap();
    let streamed = VisualGlm::load(&path, &Device::Cpu, DType::F32, &Default::default()).unwrap();
    let want = prompt_logits(&from_memory, &g);
    assert!(want.iter().all(|x| x.is_finite()));
    assert_eq!(prompt_logits(&streamed, &g), want);
}

#[test]
fn quantizing_while_loading_equals_quantizing_after() {
    // The release's shards (lm_head shares the embeddings' storage) and a converted file
    // (lm_head stored apart with the same values): both tie the quantized table.
    let dir = tempfile::tempdir().unwrap();
    let converted = dir.path().join("tiny.safetensors");
    let ck = checkpoint::load(&golden("checkpoints/hf"), &LoadOptions::default()).unwrap();
    checkpoint::save_canonical(&ck, &converted, &Default::default(), &mut |_, _| {}).unwrap();
    let lazy = checkpoint::open(&converted, &LoadOptions::default()).unwrap();
    let (lm_head, table) = (
        lazy.get(checkpoint::LM_HEAD).unwrap(),
        lazy.get(checkpoint::WORD_EMBEDDINGS).unwrap(),
    );
    assert!(!lm_head.same_data(table), "stored apart");
    for path in [golden("checkpoints/hf"), converted] {
        quantized_while_loading_equals_after(&path);
    }
}

fn quantized_while_loading_equals_after(path: &std::path::Path) {
    let g = fixture();
    let cases = [
        (GgmlDType::Q8_0, QuantizeOptions::default()),
        (GgmlDType::Q4_0, QuantizeOptions::default()),
        (
            GgmlDType::Q4_0,
            QuantizeOptions {
                lm_head: true,
                embeddings: true,
            },
        ),
        (
            GgmlDType::Q8_0,
            QuantizeOptions {
                lm_head: true,
                embeddings: false,
            },
        ),
        (
            GgmlDType::Q8_0,
            QuantizeOptions {
                lm_head: false,
                embeddings: true,
            },
        ),
        // 256-blocks do not divide the tiny width 64: the fallback type must agree too.
        (GgmlDType::Q4K, QuantizeOptions::default()),
    ];
    for (dtype, opts) in cases {
        let mut after =
            VisualGlm::load(path, &Device::Cpu, DType::F32, &Default::default()).unwrap();
        let want_report = after.quantize_language(dtype, &opts).unwrap();
        let (streamed, report) = VisualGlm::load_quantized(
            path,
            &Device::Cpu,
            DType::F32,
            &Default::default(),
            dtype,
            &opts,
        )
        .unwrap();
        assert_eq!(
            report,
            want_report,
            "{}: {dtype:?} {opts:?}",
            path.display()
        );
        assert_eq!(
            report.lm_head_tied,
            opts.lm_head && opts.embeddings,
            "{}: {dtype:?} {opts:?}",
            path.display()
        );
        assert!(
            report.weights.iter().all(|(_, d)| d.is_some()),
            "{report:?}"
        );
        assert_eq!(
            prompt_logits(&streamed, &g),
            prompt_logits(&after, &g),
            "{}: {dtype:?} {opts:?}",
            path.display()
        );
    }
}

#[test]
fn a_tied_lm_head_is_held_once_for_fine_tuning() {
    use visualglm::finetune::{load_trainable_with, BaseWeights};
    // A checkpoint that stores no lm_head: it is the word-embedding table.
    let dir = tempfile::tempdir().unwrap();
    let (lm_head, table) = (checkpoint::LM_HEAD, checkpoint::WORD_EMBEDDINGS);
    let mut ck = checkpoint::load(&golden("checkpoints/hf"), &LoadOptions::default()).unwrap();
    ck.tensors.remove(lm_head);
    let tied = dir.path().join("tied.safetensors");
    checkpoint::save_canonical(&ck, &tied, &Default::default(), &mut |_, _| {}).unwrap();
    let lazy = checkpoint::open(&tied, &LoadOptions::default()).unwrap();
    assert!(lazy
        .get(lm_head)
        .unwrap()
        .same_data(lazy.get(table).unwrap()));
    for dtype in [DType::F32, DType::F16] {
        let base = BaseWeights {
            dtype,
            quantize: Some(GgmlDType::Q8_0),
        };
        let tm = load_trainable_with(&tied, &[], &Device::Cpu, &base).unwrap();
        let (a, b) = (&tm.frozen[lm_head], &tm.frozen[table]);
        assert_eq!(a.dtype(), dtype);
        assert_eq!(a.id(), b.id(), "{dtype:?}: one tensor for both names");
    }
}
