//! Per-layer key/value cache for incremental decoding (keys cached after RoPE).

use candle_core::{Result, Tensor};

/// Cached keys and values of every layer, each `[B, H, S, D]`.
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    layers: Vec<Option<(Tensor, Tensor)>>,
}

impl KvCache {
    /// An empty cache for `num_layers` layers.
    pub fn new(num_layers: usize) -> Self {
        Self {
            layers: vec![None; num_layers],
        }
    }

    /// Number of cached positions (0 when empty).
    pub fn seq_len(&self) -> usize {
        self.layers
            .first()
            .and_then(|l| l.as_ref())
            .and_then(|(k, _)| k.dim(2).ok())
            .unwrap_or(0)
    }

    /// Appends new keys/values for `layer` and returns the full keys/values.
    pub fn append(&mut self, layer: usize, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let slot = self
            .layers
            .get_mut(layer)
            .ok_or_else(|| candle_core::Error::Msg(format!("no cache slot for layer {layer}")))?;
        let (k, v) = match slot.take() {
            Some((pk, pv)) => (Tensor::cat(&[&pk, k], 2)?, Tensor::cat(&[&pv, v], 2)?),
            None => (k.clone(), v.clone()),
        };
        *slot = Some((k.clone(), v.clone()));
        Ok((k, v))
    }

    /// Keeps, for every layer, the batch rows `indices` (in that order): beam search reorders
    /// its hypotheses with this.
    pub fn select_batch(&mut self, indices: &Tensor) -> Result<()> {
        for (k, v) in self.layers.iter_mut().flatten() {
            *k = k.index_select(indices, 0)?;
            *v = v.index_select(indices, 0)?;
        }
        Ok(())
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        for l in &mut self.layers {
            *l = None;
        }
    }
}
