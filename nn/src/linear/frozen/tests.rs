//! The frozen op against f32 autograd through a plain matmul with the widened weight.

use std::collections::HashSet;
use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Module, Result, Tensor, Var};
use visualglm_testing::{max_abs, max_abs_diff};

use super::{attach, backward_input, block_rows};
use crate::linear::Linear;
use crate::lora::LoraAdapter;

const OUT: usize = 96;

/// A layer `[OUT, inp]` of each base kind, without bias.
fn layers(dev: &Device) -> Result<Vec<(&'static str, Linear)>> {
    let mut out = Vec::new();
    for (name, inp) in [
        ("f32", 64),
        ("f16", 64),
        ("bf16", 64),
        ("q8_0", 64),
        ("q4_0", 64),
        ("q4k", 256),
    ] {
        let w = Tensor::randn(0f32, 0.1, (OUT, inp), dev)?;
        let q = |t| -> Result<Linear> {
            Linear::from_quantized(Arc::new(QTensor::quantize(&w, t)?), None)
        };
        let layer = match name {
            "f32" => Linear::from_weights(w.clone(), None),
            "f16" => Linear::from_weights(w.to_dtype(DType::F16)?, None),
            "bf16" => Linear::from_weights(w.to_dtype(DType::BF16)?, None),
            "q8_0" => q(GgmlDType::Q8_0)?,
            "q4_0" => q(GgmlDType::Q4_0)?,
            _ => q(GgmlDType::Q4K)?,
        };
        out.push((name, layer));
    }
    Ok(out)
}

/// The layer's weight widened to f32 `[out, in]`.
fn f32_weight(layer: &Linear) -> Result<Tensor> {
    layer.dequantized_weight()?.to_dtype(DType::F32)
}

/// `|got - want| / max |want|`.
fn rel_diff(got: &Tensor, want: &Tensor) -> f32 {
    max_abs_diff(got, want) / max_abs(want).max(1e-12)
}

/// The gradient of `sum(f(x) * r)` with respect to the variable `x`.
fn input_grad(x: &Var, y: &Tensor, r: &Tensor) -> Result<Tensor> {
    let grads = (y * r)?.sum_all()?.backward()?;
    Ok(grads.get(x.as_tensor()).expect("x has a gradient").clone())
}

#[test]
fn input_gradient_matches_f32_autograd_for_every_base() -> Result<()> {
    let dev = Device::Cpu;
    for (name, layer) in layers(&dev)? {
        let (out, inp) = layer.dims()?;
        let w = f32_weight(&layer)?;
        let bias = Tensor::randn(0f32, 1.0, out, &dev)?;
        for dims in [vec![15, inp], vec![3, 5, inp]] {
            let x = Var::randn(0f32, 1.0, dims.clone(), &dev)?;
            let mut out_dims = dims.clone();
            *out_dims.last_mut().unwrap() = out;
            let r = Tensor::randn(0f32, 1.0, out_dims, &dev)?;
            let plain = x.broadcast_matmul(&w.t()?)?;
            let want = input_grad(&x, &plain, &r)?;
            // The blocked product alone, with several (and a partial last) block.
            for rows in [7, OUT, block_rows(inp)] {
                let got = backward_input(layer.base(), &r, rows)?;
                assert_eq!(got.dtype(), DType::F32);
                let diff = rel_diff(&got, &want);
                assert!(diff <= 1e-5, "{name} {dims:?} rows {rows}: {diff}");
            }
            // Through the graph: the op with 7-row blocks, then the layer (with and without
            // bias, the bias fixed or trainable).
            let y = layer.forward_base(&x.detach())?;
            let got = input_grad(&x, &attach(x.as_tensor(), &y, layer.base(), 7)?, &r)?;
            let diff = rel_diff(&got, &want);
            assert!(diff <= 1e-5, "{name} {dims:?} op: {diff}");
            let trainable = Var::from_tensor(&bias)?;
            for b in [
                None,
                Some(bias.clone()),
                Some(trainable.as_tensor().clone()),
            ] {
                let mut biased = layer.clone();
                biased.bias = b.clone();
                let y = biased.forward(x.as_tensor())?;
                let grads = (&y * &r)?.sum_all()?.backward()?;
                let got = grads.get(x.as_tensor()).expect("x has a gradient");
                let diff = rel_diff(got, &want);
                assert!(diff <= 1e-5, "{name} {dims:?} layer: {diff}");
                let b_grad = grads.get(trainable.as_tensor());
                if b.as_ref().is_some_and(|b| b.track_op()) {
                    let want = r.flatten_to(r.rank() - 2)?.sum(0)?;
                    let diff = rel_diff(b_grad.expect("the bias has a gradient"), &want);
                    assert!(diff <= 1e-5, "{name} {dims:?} bias: {diff}");
                } else {
                    assert!(b_grad.is_none());
                }
            }
        }
    }
    Ok(())
}

#[test]
fn frozen_weights_get_no_gradient_where_a_plain_matmul_computes_one() -> Result<()> {
    let dev = Device::Cpu;
    let w = Tensor::randn(0f32, 0.1, (OUT, 64), &dev)?;
    let x = Var::randn(0f32, 1.0, (3, 5, 64), &dev)?;
    let ids = |grads: &candle_core::backprop::GradStore| -> HashSet<_> {
        grads.get_ids().copied().collect()
    };
    // candle's matmul backward fills in the (non-variable) weight side too.
    let wt = w.t()?;
    let grads = x.broadcast_matmul(&wt)?.sum_all()?.backward()?;
    assert!(grads.get(&wt).is_some());
    assert!(ids(&grads).len() > 1);
    // The frozen layer: the input's gradient and nothing else.
    let layer = Linear::from_weights(w.clone(), Some(Tensor::ones(OUT, DType::F32, &dev)?));
    let grads = layer.forward(x.as_tensor())?.sum_all()?.backward()?;
    assert!(grads.get(&w).is_none());
    assert_eq!(ids(&grads), HashSet::from([x.as_tensor().id()]));
    Ok(())
}

#[test]
fn a_trainable_weight_keeps_its_gradient() -> Result<()> {
    let dev = Device::Cpu;
    let w = Var::randn(0f32, 0.1, (OUT, 64), &dev)?;
    let x = Var::randn(0f32, 1.0, (15, 64), &dev)?;
    let r = Tensor::randn(0f32, 1.0, (15, OUT), &dev)?;
    let layer = Linear::from_weights(w.as_tensor().clone(), None);
    let grads = (layer.forward(x.as_tensor())? * &r)?
        .sum_all()?
        .backward()?;
    let want = r.t()?.matmul(x.as_tensor())?;
    let diff = rel_diff(grads.get(w.as_tensor()).expect("w has a gradient"), &want);
    assert!(diff <= 1e-5, "{diff}");
    let diff = rel_diff(
        grads.get(x.as_tensor()).expect("x has a gradient"),
        &r.matmul(w.as_tensor())?,
    );
    assert!(diff <= 1e-5, "{diff}");
    Ok(())
}

#[test]
fn adapters_on_a_frozen_quantized_base_get_the_f32_gradients() -> Result<()> {
    let dev = Device::Cpu;
    for (dtype, inp) in [(GgmlDType::Q4_0, 64), (GgmlDType::Q4K, 256)] {
        let w = Tensor::randn(0f32, 0.1, (OUT, inp), &dev)?;
        let bias = Tensor::randn(0f32, 1.0, OUT, &dev)?;
        let a = Var::randn(0f32, 0.1, (4, inp), &dev)?;
        let b = Var::randn(0f32, 0.1, (OUT, 4), &dev)?;
        let adapter = LoraAdapter::new(
            "t",
            vec![a.as_tensor().clone()],
            vec![b.as_tensor().clone()],
            2.0,
        )
        .expect("adapter");
        let mut layer =
            Linear::from_quantized(Arc::new(QTensor::quantize(&w, dtype)?), Some(bias.clone()))?;
        layer.add_adapter(adapter.clone())?;
        let wq = f32_weight(&layer)?;
        let x = Var::randn(0f32, 1.0, (3, 5, inp), &dev)?;
        let r = Tensor::randn(0f32, 1.0, (3, 5, OUT), &dev)?;
        let got = (layer.forward(x.as_tensor())? * &r)?
            .sum_all()?
            .backward()?;
        let plain = x
            .broadcast_matmul(&wq.t()?)?
            .broadcast_add(&bias)?
            .add(&adapter.forward(x.as_tensor())?)?;
        let want = (plain * &r)?.sum_all()?.backward()?;
        for (what, t) in [("x", &x), ("A", &a), ("B", &b)] {
            let diff = rel_diff(
                got.get(t.as_tensor()).expect("gradient"),
                want.get(t.as_tensor()).expect("gradient"),
            );
            assert!(diff <= 1e-5, "{dtype:?} {what}: {diff}");
        }
    }
    Ok(())
}

#[test]
fn tracked_forward_values_equal_the_inference_path() -> Result<()> {
    let dev = Device::Cpu;
    for (name, mut layer) in layers(&dev)? {
        let (out, inp) = layer.dims()?;
        layer.bias = Some(Tensor::randn(0f32, 1.0, out, &dev)?);
        // 2, 8 and 300 rows: the few-row, swapped and many-row kernels.
        for dims in [vec![2, inp], vec![2, 4, inp], vec![300, inp]] {
            let x = Var::randn(0f32, 1.0, dims.clone(), &dev)?;
            let tracked = layer.forward(x.as_tensor())?;
            let inference = layer.forward(&x.as_tensor().detach())?;
            assert!(tracked.track_op() && !inference.track_op());
            assert_eq!(tracked.dtype(), DType::F32);
            assert_eq!(
                max_abs_diff(&tracked, &inference),
                0.0,
                "{name} {dims:?}: the tracked output differs"
            );
            // Half-precision weights take the f32 input cast to their dtype.
            let want = x
                .broadcast_matmul(&f32_weight(&layer)?.t()?)?
                .broadcast_add(layer.bias().unwrap())?;
            let tol = if name == "f32" { 1e-5 } else { 2e-2 };
            let diff = rel_diff(&tracked, &want);
            assert!(diff <= tol, "{name} {dims:?}: {diff}");
        }
    }
    Ok(())
}

#[test]
fn the_op_copies_a_strided_or_offset_output() -> Result<()> {
    let dev = Device::Cpu;
    let layer = Linear::from_weights(Tensor::randn(0f32, 0.1, (OUT, 64), &dev)?, None);
    let x = Var::randn(0f32, 1.0, (15, 64), &dev)?;
    let wide = Tensor::randn(0f32, 1.0, (15, OUT + 10), &dev)?;
    let tall = Tensor::randn(0f32, 1.0, (OUT, 15), &dev)?;
    for y in [wide.narrow(1, 3, OUT)?, tall.t()?] {
        let got = attach(x.as_tensor(), &y, layer.base(), 7)?;
        assert!(got.is_contiguous());
        assert_eq!(max_abs_diff(&got, &y), 0.0);
    }
    Ok(())
}

#[test]
fn half_inputs_get_gradients_in_their_dtype() -> Result<()> {
    let dev = Device::Cpu;
    let w = Tensor::randn(0f32, 0.1, (OUT, 64), &dev)?;
    let layer = Linear::from_weights(w.to_dtype(DType::F16)?, None);
    let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (15, 64), &dev)?.to_dtype(DType::F16)?)?;
    let grads = layer.forward(x.as_tensor())?.sum_all()?.backward()?;
    let got = grads.get(x.as_tensor()).expect("x has a gradient");
    assert_eq!(got.dtype(), DType::F16);
    let want = Tensor::ones((15, OUT), DType::F32, &dev)?.matmul(&f32_weight(&layer)?)?;
    let diff = rel_diff(got, &want);
    assert!(diff <= 1e-3, "{diff}");
    Ok(())
}
