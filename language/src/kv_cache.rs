//! Per-layer key/value cache for incremental decoding (keys cached after RoPE).
//!
//! Each layer keeps one preallocated `[B, H, capacity, D]` buffer for keys and one for values;
//! a decode step writes its new position in place and returns a view of the filled prefix, so
//! a step costs O(new tokens) instead of re-copying the whole history (`Tensor::cat`). A new
//! buffer has room for up to [`CAPACITY_STEP`] more positions (capacities are multiples of it),
//! or exactly as many as the generation will need when the caller says so
//! ([`KvCache::expect_positions`]); when full it grows by half (one layer at a time, so a growth
//! holds one layer's old buffer beside the new ones). A long prompt's cache is large (28
//! layers × 1 500 positions is 1.4 GB in f32), so the headroom is kept small.

use candle_core::{DType, Result, Tensor};

/// Capacities are multiples of this many positions.
pub const CAPACITY_STEP: usize = 256;

/// One layer's buffers and how many positions are filled.
#[derive(Debug)]
struct LayerCache {
    k: Tensor,
    v: Tensor,
    len: usize,
}

impl LayerCache {
    fn capacity(&self) -> usize {
        self.k.dims().get(2).copied().unwrap_or(0)
    }

    /// Keys and values of the filled prefix, `[B, H, len, D]` views of the buffers.
    fn filled(&self) -> Result<(Tensor, Tensor)> {
        Ok((
            self.k.narrow(2, 0, self.len)?,
            self.v.narrow(2, 0, self.len)?,
        ))
    }

    /// A buffer shaped like `like` with `capacity` positions, holding `prefix` (if any) first.
    fn buffer(like: &Tensor, capacity: usize, prefix: Option<&Tensor>) -> Result<Tensor> {
        let (b, h, _, d) = like.dims4()?;
        let buf = Tensor::zeros((b, h, capacity, d), like.dtype(), like.device())?;
        if let Some(p) = prefix {
            buf.slice_set(&p.contiguous()?, 2, 0)?;
        }
        Ok(buf)
    }
}

/// Cached keys and values of every layer, each `[B, H, S, D]`.
#[derive(Debug, Default)]
pub struct KvCache {
    layers: Vec<Option<LayerCache>>,
    /// The dtype keys and values are stored in (`None`: as they come).
    dtype: Option<DType>,
    /// The most positions the caller expects to store ([`KvCache::expect_positions`]).
    expected: Option<usize>,
}

fn round_up(n: usize) -> usize {
    n.div_ceil(CAPACITY_STEP).max(1) * CAPACITY_STEP
}

/// The capacity of a new buffer for `len` positions: at least one free position, and no more
/// than `expected` positions in all when the caller expects no more (but at least `len`).
fn initial_capacity(len: usize, expected: Option<usize>) -> usize {
    let cap = round_up(len + 1);
    expected.map_or(cap, |e| cap.min(e.max(len)))
}

impl KvCache {
    /// An empty cache for `num_layers` layers, storing keys and values in their own dtype.
    pub fn new(num_layers: usize) -> Self {
        Self::with_dtype(num_layers, None)
    }

    /// An empty cache for `num_layers` layers that stores keys and values in `dtype` (e.g. f16
    /// for an f32 model: half the memory, values rounded to f16), or as they come (`None`).
    /// [`KvCache::append`] returns views in that dtype.
    pub fn with_dtype(num_layers: usize, dtype: Option<DType>) -> Self {
        Self {
            layers: (0..num_layers).map(|_| None).collect(),
            dtype,
            expected: None,
        }
    }

    /// Tells the cache that it will hold at most `positions` positions (prompt and answer): a
    /// layer's first buffer then has no room beyond them (a generation of known length
    /// allocates once and exactly). More appends still work: the buffers grow as usual.
    pub fn expect_positions(&mut self, positions: usize) {
        self.expected = Some(positions);
    }

    /// Positions the first layer's buffers hold before they must grow (0 when empty).
    pub fn capacity(&self) -> usize {
        self.layers
            .first()
            .and_then(|l| l.as_ref())
            .map_or(0, LayerCache::capacity)
    }

    /// The dtype keys and values are stored in (`None`: as they come).
    pub fn dtype(&self) -> Option<DType> {
        self.dtype
    }

    /// Number of cached positions (0 when empty).
    pub fn seq_len(&self) -> usize {
        self.layers
            .first()
            .and_then(|l| l.as_ref())
            .map(|l| l.len)
            .unwrap_or(0)
    }

    /// Appends new keys/values `[B, H, S_new, D]` for `layer` and returns the full
    /// keys/values `[B, H, past + S_new, D]` (views of the cache's buffers).
    pub fn append(&mut self, layer: usize, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let slot = self
            .layers
            .get_mut(layer)
            .ok_or_else(|| candle_core::Error::Msg(format!("no cache slot for layer {layer}")))?;
        // Stored in the cache's dtype (`to_dtype` of the same dtype copies nothing).
        let (k, v) = match self.dtype {
            Some(d) => (&k.to_dtype(d)?, &v.to_dtype(d)?),
            None => (k, v),
        };
        let new = k.dim(2)?;
        match slot {
            None => {
                let cap = initial_capacity(new, self.expected);
                let c = LayerCache {
                    k: LayerCache::buffer(k, cap, Some(k))?,
                    v: LayerCache::buffer(v, cap, Some(v))?,
                    len: new,
                };
                let out = c.filled()?;
                *slot = Some(c);
                Ok(out)
            }
            Some(c) => {
                let (kb, kh, _, kd) = c.k.dims4()?;
                if k.dims4()? != (kb, kh, new, kd) || v.dims4()? != (kb, kh, new, kd) {
                    candle_core::bail!(
                        "layer {layer}: new keys {:?} / values {:?} do not match the cache {:?}",
                        k.dims(),
                        v.dims(),
                        c.k.dims()
                    );
                }
                let needed = c.len + new;
                if needed > c.capacity() {
                    let cap = round_up(needed.max(c.capacity() + c.capacity() / 2));
                    let (pk, pv) = c.filled()?;
                    c.k = LayerCache::buffer(k, cap, Some(&pk))?;
                    c.v = LayerCache::buffer(v, cap, Some(&pv))?;
                }
                c.k.slice_set(&k.contiguous()?, 2, c.len)?;
                c.v.slice_set(&v.contiguous()?, 2, c.len)?;
                c.len = needed;
                c.filled()
            }
        }
    }

    /// Keeps, for every layer, the batch rows `indices` (in that order): beam search reorders
    /// its hypotheses with this.
    pub fn select_batch(&mut self, indices: &Tensor) -> Result<()> {
        for c in self.layers.iter_mut().flatten() {
            c.k = c.k.index_select(indices, 0)?;
            c.v = c.v.index_select(indices, 0)?;
        }
        Ok(())
    }

    /// A deep copy: appends to the copy never write into this cache's buffers (the cache is
    /// not `Clone`, because sharing buffers that are written in place would be unsound).
    pub fn try_clone(&self) -> Result<Self> {
        let layers = self
            .layers
            .iter()
            .map(|l| {
                l.as_ref()
                    .map(|l| {
                        Ok(LayerCache {
                            k: l.k.copy()?,
                            v: l.v.copy()?,
                            len: l.len,
                        })
                    })
                    .transpose()
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            layers,
            dtype: self.dtype,
            expected: self.expected,
        })
    }

    /// The filled keys and values of every layer, `[B, H, len, D]` views (`None` for a layer
    /// not written yet). With [`KvCache::from_layers`], lets a caller rearrange a cache (merge
    /// batches, pad or trim positions) for continuous batching.
    pub fn layers(&self) -> Result<Vec<Option<(Tensor, Tensor)>>> {
        self.layers
            .iter()
            .map(|l| l.as_ref().map(LayerCache::filled).transpose())
            .collect()
    }

    /// A cache holding `layers` (copied into fresh buffers with room to grow); the inverse of
    /// [`KvCache::layers`]. Every written layer's keys and values must have the same shape;
    /// later appends are stored in the dtype of the first written layer's keys.
    pub fn from_layers(layers: Vec<Option<(Tensor, Tensor)>>) -> Result<Self> {
        let dtype = layers.iter().flatten().next().map(|(k, _)| k.dtype());
        let layers = layers
            .into_iter()
            .enumerate()
            .map(|(i, l)| {
                l.map(|(k, v)| {
                    if k.dims4()? != v.dims4()? {
                        candle_core::bail!(
                            "layer {i}: keys {:?} and values {:?} differ in shape",
                            k.dims(),
                            v.dims()
                        );
                    }
                    let len = k.dim(2)?;
                    let cap = initial_capacity(len, None);
                    Ok(LayerCache {
                        k: LayerCache::buffer(&k, cap, Some(&k))?,
                        v: LayerCache::buffer(&v, cap, Some(&v))?,
                        len,
                    })
                })
                .transpose()
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            layers,
            dtype,
            expected: None,
        })
    }

    /// Forgets everything (the expected length too).
    pub fn clear(&mut self) {
        for l in &mut self.layers {
            *l = None;
        }
        self.expected = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};
    use visualglm_testing::max_abs_diff;

    #[test]
    fn appends_match_concatenation_across_growth() -> Result<()> {
        let dev = Device::Cpu;
        let mut cache = KvCache::new(2);
        let first = Tensor::randn(0f32, 1.0, (2, 3, 5, 4), &dev)?;
        let (k, _) = cache.append(1, &first, &first)?;
        assert_eq!(k.dims(), &[2, 3, 5, 4]);
        let mut all_k = first.clone();
        let mut all_v = (&first * 2.0)?;
        cache.clear();
        cache.append(1, &first, &all_v)?;
        // Enough single steps to force at least two reallocations.
        for _ in 0..(3 * CAPACITY_STEP) {
            let nk = Tensor::randn(0f32, 1.0, (2, 3, 1, 4), &dev)?;
            let nv = Tensor::randn(0f32, 1.0, (2, 3, 1, 4), &dev)?;
            all_k = Tensor::cat(&[&all_k, &nk], 2)?;
            all_v = Tensor::cat(&[&all_v, &nv], 2)?;
            let (k, v) = cache.append(1, &nk, &nv)?;
            assert_eq!(k.dims(), all_k.dims());
            assert_eq!(max_abs_diff(&k, &all_k), 0.0);
            assert_eq!(max_abs_diff(&v, &all_v), 0.0);
        }
        assert_eq!(cache.seq_len(), 0, "layer 0 is still empty");
        assert!(cache.append(2, &first, &first).is_err());
        let bad = Tensor::zeros((1, 3, 1, 4), DType::F32, &dev)?;
        assert!(cache.append(1, &bad, &bad).is_err());
        Ok(())
    }

    #[test]
    fn layers_round_trip_and_keep_growing() -> Result<()> {
        let dev = Device::Cpu;
        let mut a = KvCache::new(2);
        let x = Tensor::randn(0f32, 1.0, (2, 3, 5, 4), &dev)?;
        a.append(0, &x, &(&x * 2.0)?)?;
        let layers = a.layers()?;
        assert!(layers[1].is_none());
        let (k, v) = layers[0].clone().expect("layer 0 written");
        assert_eq!(max_abs_diff(&k, &x), 0.0);
        let mut b = KvCache::from_layers(layers)?;
        assert_eq!(b.seq_len(), 5);
        let one = Tensor::ones((2, 3, 1, 4), DType::F32, &dev)?;
        let (k2, v2) = b.append(0, &one, &one)?;
        assert_eq!(max_abs_diff(&k2.narrow(2, 0, 5)?, &x), 0.0);
        assert_eq!(max_abs_diff(&v2.narrow(2, 0, 5)?, &v), 0.0);
        assert_eq!(max_abs_diff(&k2.narrow(2, 5, 1)?, &one), 0.0);
        let bad = Tensor::zeros((2, 3, 4, 4), DType::F32, &dev)?;
        assert!(KvCache::from_layers(vec![Some((x, bad))]).is_err());
        Ok(())
    }

    #[test]
    fn an_f16_cache_stores_rounded_values_and_keeps_its_dtype() -> Result<()> {
        let dev = Device::Cpu;
        let mut cache = KvCache::with_dtype(1, Some(DType::F16));
        assert_eq!(cache.dtype(), Some(DType::F16));
        let x = Tensor::randn(0f32, 1.0, (1, 2, 3, 4), &dev)?;
        let (k, v) = cache.append(0, &x, &(&x * 2.0)?)?;
        assert_eq!((k.dtype(), v.dtype()), (DType::F16, DType::F16));
        let rounded = x.to_dtype(DType::F16)?.to_dtype(DType::F32)?;
        assert_eq!(max_abs_diff(&k.to_dtype(DType::F32)?, &rounded), 0.0);
        // Growth, clones and rearranged caches stay in f16.
        for _ in 0..CAPACITY_STEP {
            cache.append(0, &x.narrow(2, 0, 1)?, &x.narrow(2, 0, 1)?)?;
        }
        let mut copy = cache.try_clone()?;
        let (k, _) = copy.append(0, &x, &x)?;
        assert_eq!(k.dtype(), DType::F16);
        let mut rebuilt = KvCache::from_layers(cache.layers()?)?;
        assert_eq!(rebuilt.dtype(), Some(DType::F16));
        let (k, _) = rebuilt.append(0, &x, &x)?;
        assert_eq!((k.dtype(), k.dim(2)?), (DType::F16, 3 + CAPACITY_STEP + 3));
        Ok(())
    }

    #[test]
    fn clones_are_independent_and_batches_reorder() -> Result<()> {
        let dev = Device::Cpu;
        let mut a = KvCache::new(1);
        let x = Tensor::arange(0f32, 16.0, &dev)?.reshape((2, 1, 2, 4))?;
        a.append(0, &x, &x)?;
        let mut b = a.try_clone()?;
        let one = Tensor::ones((2, 1, 1, 4), DType::F32, &dev)?;
        let zero = Tensor::zeros((2, 1, 1, 4), DType::F32, &dev)?;
        let (ka, _) = a.append(0, &one, &one)?;
        let (kb, _) = b.append(0, &zero, &zero)?;
        assert_eq!(max_abs_diff(&ka.narrow(2, 2, 1)?, &one), 0.0);
        assert_eq!(max_abs_diff(&kb.narrow(2, 2, 1)?, &zero), 0.0);
        a.select_batch(&Tensor::new(&[1u32, 1], &dev)?)?;
        let (k, _) = a.append(0, &zero, &zero)?;
        assert_eq!(k.dims(), &[2, 1, 4, 4]);
        assert_eq!(max_abs_diff(&k.narrow(0, 0, 1)?, &k.narrow(0, 1, 1)?), 0.0);
        assert_eq!(a.seq_len(), 4);
        Ok(())
    }

    #[test]
    fn an_expected_length_sizes_the_first_buffers_exactly_and_growth_still_works() -> Result<()> {
        let dev = Device::Cpu;
        let prompt = Tensor::randn(0f32, 1.0, (1, 2, 5, 4), &dev)?;
        let step = Tensor::randn(0f32, 1.0, (1, 2, 1, 4), &dev)?;
        // No expectation: rounded up with headroom.
        let mut plain = KvCache::new(1);
        plain.append(0, &prompt, &prompt)?;
        assert_eq!(plain.capacity(), CAPACITY_STEP);
        // 5 prompt positions and 3 more expected: 8, then growth past it as usual.
        let mut planned = KvCache::new(1);
        planned.expect_positions(8);
        planned.append(0, &prompt, &prompt)?;
        assert_eq!(planned.capacity(), 8);
        let mut want = prompt.clone();
        for _ in 0..6 {
            want = Tensor::cat(&[&want, &step], 2)?;
            let (k, _) = planned.append(0, &step, &step)?;
            assert_eq!(max_abs_diff(&k, &want), 0.0);
        }
        assert!(planned.capacity() >= 11);
        // An expectation below the prompt still holds the prompt; one above the usual
        // headroom does not enlarge it.
        for (expected, cap) in [(2, 5), (10 * CAPACITY_STEP, CAPACITY_STEP)] {
            let mut c = KvCache::new(1);
            c.expect_positions(expected);
            c.append(0, &prompt, &prompt)?;
            assert_eq!(c.capacity(), cap, "expected {expected}");
        }
        Ok(())
    }
}
