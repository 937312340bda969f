//! The names and shapes a configuration expects, found by building the model's networks
//! (`Parts`) against a backend that records each request and allocates nothing.

use std::sync::Mutex;

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::VarBuilder;

use crate::config::VisualGlmConfig;
use crate::parts::Parts;

/// Records every `(name, shape)` asked for and answers with a zero-stride view of one zero.
#[derive(Default)]
struct ShapeRecorder {
    seen: Mutex<Vec<(String, Vec<usize>)>>,
}

impl SimpleBackend for ShapeRecorder {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _h: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        if let Ok(mut seen) = self.seen.lock() {
            seen.push((name.to_string(), s.dims().to_vec()));
        }
        Tensor::zeros((), dtype, dev)?.broadcast_as(s)
    }

    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> candle_core::Result<Tensor> {
        candle_core::bail!("shape recorder needs a shape for {name}")
    }

    fn contains_tensor(&self, _name: &str) -> bool {
        true
    }
}

/// Every parameter the model built from `config` reads: canonical (HF) name and shape, in
/// load order. Costs no weight memory, so it works for the full 7.8 B configuration.
pub fn expected_parameters(config: &VisualGlmConfig) -> crate::Result<Vec<(String, Vec<usize>)>> {
    let recorder = std::sync::Arc::new(ShapeRecorder::default());
    let backend: Box<dyn SimpleBackend> = Box::new(SharedRecorder(recorder.clone()));
    let vb = VarBuilder::from_backend(backend, DType::F32, Device::Cpu);
    Parts::load(config, vb, DType::F32)?;
    let seen = recorder.seen.lock().map(|s| s.clone()).unwrap_or_default();
    Ok(seen)
}

/// Lets the recorder be read after the `VarBuilder` consumed the backend.
struct SharedRecorder(std::sync::Arc<ShapeRecorder>);

impl SimpleBackend for SharedRecorder {
    fn get(
        &self,
        s: Shape,
        name: &str,
        h: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        self.0.get(s, name, h, dtype, dev)
    }
    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.0.get_unchecked(name, dtype, dev)
    }
    fn contains_tensor(&self, name: &str) -> bool {
        self.0.contains_tensor(name)
    }
}
