//! Every weight of the model receives a gradient through the autoregressive loss (the fused
//! candle ops without backward are avoided whenever a gradient must flow).

use crate::support;
use visualglm::EmbedSpan;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use support::{fixture, golden, ids_u32};
use visualglm::{LoadOptions, VisualGlm};

#[test]
fn every_parameter_gets_a_nonzero_gradient() {
    let ck = visualglm::load(&golden("checkpoints/hf"), &LoadOptions::default()).unwrap();
    let varmap = VarMap::new();
    {
        let mut data = varmap.data().lock().unwrap();
        for (name, t) in &ck.tensors {
            data.insert(
                name.clone(),
                Var::from_tensor(&t.to_dtype(DType::F32).unwrap()).unwrap(),
            );
        }
    }
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let model = VisualGlm::from_var_builder(&ck.config, vb, &Default::default()).unwrap();
    let g = fixture("model/golden_hf.safetensors");
    let ids = ids_u32(&g["input_ids"]);
    let image = model.encode_image(&g["pixel_values"]).unwrap();
    // Answer two tokens after <sop> so the causal part and the prefix both matter.
    let mut seq = ids.clone();
    seq.extend([66, 760]);
    let logits = model
        .prompt_logits(&seq, &[EmbedSpan::new(2, image.clone())])
        .unwrap();
    let n = seq.len();
    let targets = Tensor::new(&seq[n - 3 + 1..], &Device::Cpu).unwrap();
    let pred = logits.get(0).unwrap().narrow(0, n - 3, 2).unwrap();
    let targets = targets.narrow(0, 0, 2).unwrap();
    let loss = candle_nn::loss::cross_entropy(&pred, &targets).unwrap();
    let grads = loss.backward().unwrap();
    let mut missing = Vec::new();
    let data = varmap.data().lock().unwrap();
    for (name, var) in data.iter() {
        let nonzero = grads
            .get(var.as_tensor())
            .map(|gr| {
                gr.abs()
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap()
                    > 0.0
            })
            .unwrap_or(false);
        if !nonzero {
            missing.push(name.clone());
        }
    }
    missing.sort();
    // The word embeddings get a gradient only through the rows the prompt uses, and lm_head
    // is tied in the release but a separate tensor here: both still get non-zero gradients.
    assert!(
        missing.is_empty(),
        "no gradient for {} parameters: {missing:?}",
        missing.len()
    );
}
