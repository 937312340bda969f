//! An LRU cache of encoded images (the 32 projected embeddings of each), bounded in bytes,
//! shared by every request of a server and by `chat`, `batch` and `describe`, so a repeated
//! image costs no encoder time.
//!
//! The key is a SHA-256 of what determines the embeddings: the decoded pixels after the
//! release's resize, the normalisation, and the identity of the image encoder that made them
//! (a random id drawn when a [`crate::pipeline::Captioner`] is built, kept by clones that share
//! its weights; unmerged LoRA adapters only touch the language model). A cryptographic hash of
//! the pixels means no client can make another's image hit its own entry; a file name or a
//! weak hash could be collided on purpose.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use candle_core::Tensor;
use image::RgbImage;
use lru::LruCache;
use sha2::{Digest, Sha256};
use visualglm_vision::preprocess::ImagePreprocessor;

/// The key of one encoded image.
pub type ImageKey = [u8; 32];

/// Counters of an [`ImageCache`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Lookups that found the image.
    pub hits: u64,
    /// Lookups that did not (the image was encoded).
    pub misses: u64,
    /// Images held now.
    pub entries: usize,
    /// Bytes held now (the embeddings' data).
    pub bytes: usize,
    /// The bound on `bytes`.
    pub capacity_bytes: usize,
}

impl CacheStats {
    /// One line: hits, misses, entries and bytes held.
    pub fn summary(&self) -> String {
        format!(
            "image cache: {} hits, {} misses, {} images held ({:.1} of {:.0} MiB)",
            self.hits,
            self.misses,
            self.entries,
            self.bytes as f64 / (1 << 20) as f64,
            self.capacity_bytes as f64 / (1 << 20) as f64
        )
    }
}

struct Entries {
    map: LruCache<ImageKey, Tensor>,
    bytes: usize,
}

/// Encoded images by key, least recently used dropped first; never more than its capacity
/// in bytes (an entry larger than the whole capacity is not kept).
pub struct ImageCache {
    entries: Mutex<Entries>,
    capacity_bytes: usize,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl std::fmt::Debug for ImageCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageCache")
            .field("stats", &self.stats())
            .finish()
    }
}

fn tensor_bytes(t: &Tensor) -> usize {
    t.elem_count() * t.dtype().size_in_bytes()
}

impl ImageCache {
    /// An empty cache holding at most `capacity_bytes` of embeddings.
    pub fn new(capacity_bytes: usize) -> Self {
        Self {
            entries: Mutex::new(Entries {
                map: LruCache::unbounded(),
                bytes: 0,
            }),
            capacity_bytes,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// An empty cache of `mib` MiB.
    pub fn with_mib(mib: usize) -> Self {
        Self::new(mib.saturating_mul(1 << 20))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        // A panic elsewhere while holding the lock leaves consistent entries (every update
        // below is complete before the guard drops), so a poisoned lock is still usable.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The embeddings stored under `key` (marked most recently used), counting a hit or a
    /// miss.
    pub fn get(&self, key: &ImageKey) -> Option<Tensor> {
        let found = self.lock().map.get(key).cloned();
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Stores `embeds` under `key`, dropping the least recently used entries past the bound.
    pub fn insert(&self, key: ImageKey, embeds: Tensor) {
        let size = tensor_bytes(&embeds);
        if size > self.capacity_bytes {
            return;
        }
        let mut e = self.lock();
        if let Some(old) = e.map.put(key, embeds) {
            e.bytes -= tensor_bytes(&old);
        }
        e.bytes += size;
        while e.bytes > self.capacity_bytes {
            match e.map.pop_lru() {
                Some((_, old)) => e.bytes -= tensor_bytes(&old),
                None => break,
            }
        }
    }

    /// The counters and the current size.
    pub fn stats(&self) -> CacheStats {
        let e = self.lock();
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            entries: e.map.len(),
            bytes: e.bytes,
            capacity_bytes: self.capacity_bytes,
        }
    }
}

/// The key of `resized` (an image after the preprocessor's resize) encoded by the encoder
/// `encoder_id` with `preprocessor`'s normalisation.
pub fn image_key(
    encoder_id: &[u8; 16],
    preprocessor: &ImagePreprocessor,
    resized: &RgbImage,
) -> ImageKey {
    let mut h = Sha256::new();
    h.update(b"visualglm image cache v1\0");
    h.update(encoder_id);
    h.update(preprocessor.size.to_le_bytes());
    for v in preprocessor.mean.iter().chain(&preprocessor.std) {
        h.update(v.to_le_bytes());
    }
    h.update(resized.width().to_le_bytes());
    h.update(resized.height().to_le_bytes());
    h.update(resized.as_raw());
    h.finalize().into()
}

/// The embeddings `[n, 32, hidden]` of `images`: those in `cache` from it, the others
/// encoded together by `encode` (pixels `[m, 3, size, size]`) and stored; an image that
/// appears twice in `images` is encoded once.
pub fn encode_cached(
    cache: &ImageCache,
    encoder_id: &[u8; 16],
    preprocessor: &ImagePreprocessor,
    images: &[image::DynamicImage],
    encode: impl FnOnce(&Tensor) -> crate::Result<Tensor>,
    device: &candle_core::Device,
) -> crate::Result<Tensor> {
    use rayon::prelude::*;
    preprocessor.validate()?;
    if images.is_empty() {
        return Err(visualglm_vision::preprocess::PreprocessError::EmptyBatch.into());
    }
    let resized: Vec<RgbImage> = images
        .par_iter()
        .map(|i| preprocessor.to_rgb_resized(i))
        .collect();
    let keys: Vec<ImageKey> = resized
        .par_iter()
        .map(|r| image_key(encoder_id, preprocessor, r))
        .collect();
    let mut found: Vec<Option<Tensor>> = Vec::with_capacity(images.len());
    // Distinct missing keys in order, each with the first image that has it.
    let mut missing: Vec<(ImageKey, usize)> = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        if missing.iter().any(|(k, _)| k == key) {
            found.push(None);
            continue;
        }
        let hit = cache.get(key);
        if hit.is_none() {
            missing.push((*key, i));
        }
        found.push(hit);
    }
    if !missing.is_empty() {
        let s = preprocessor.size as usize;
        let data: Vec<f32> = missing
            .par_iter()
            .flat_map_iter(|&(_, i)| preprocessor.normalize_chw(&resized[i]))
            .collect();
        let pixels = Tensor::from_vec(data, (missing.len(), 3, s, s), device)?;
        let embeds = encode(&pixels)?;
        for (j, (key, _)) in missing.iter().enumerate() {
            cache.insert(*key, embeds.get(j)?);
        }
        for (slot, key) in found.iter_mut().zip(&keys) {
            if slot.is_none() {
                let j = missing.iter().position(|(k, _)| k == key);
                if let Some(j) = j {
                    *slot = Some(embeds.get(j)?);
                }
            }
        }
    }
    let found: Vec<Tensor> = found.into_iter().flatten().collect();
    if found.len() != images.len() {
        return Err(crate::VisualGlmError::Input(
            "image cache: an image lost its embeddings".into(),
        ));
    }
    Ok(Tensor::stack(&found, 0)?)
}

/// A fresh random encoder identity (`rand`'s thread generator, seeded by the operating
/// system).
pub fn new_encoder_id() -> [u8; 16] {
    rand::random()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    fn entry(n: usize) -> Tensor {
        Tensor::zeros((n,), DType::F32, &Device::Cpu).unwrap()
    }

    #[test]
    fn never_exceeds_its_bound_and_drops_the_least_recently_used() {
        let cache = ImageCache::new(3 * 400);
        for k in 0..3u8 {
            cache.insert([k; 32], entry(100));
        }
        assert_eq!(cache.stats().entries, 3);
        assert!(
            cache.get(&[0; 32]).is_some(),
            "touch 0: 1 is now the oldest"
        );
        cache.insert([9; 32], entry(100));
        let s = cache.stats();
        assert_eq!((s.entries, s.bytes), (3, 1200));
        assert!(cache.get(&[1; 32]).is_none());
        assert!(cache.get(&[0; 32]).is_some() && cache.get(&[9; 32]).is_some());
        let s = cache.stats();
        assert_eq!((s.hits, s.misses), (3, 1));
        // Larger than the whole cache: not kept, nothing dropped.
        cache.insert([7; 32], entry(1000));
        assert_eq!(cache.stats().entries, 3);
        // Replacing an entry accounts its old size.
        cache.insert([9; 32], entry(50));
        assert_eq!(cache.stats().bytes, 1000);
    }

    #[test]
    fn keys_differ_with_pixels_encoder_and_normalisation() {
        let p = ImagePreprocessor::new(4);
        let img = RgbImage::from_pixel(4, 4, image::Rgb([1, 2, 3]));
        let mut other = img.clone();
        other.put_pixel(3, 3, image::Rgb([1, 2, 4]));
        let (a, b) = (new_encoder_id(), new_encoder_id());
        assert_ne!(a, b);
        let k = image_key(&a, &p, &img);
        assert_eq!(k, image_key(&a, &p, &img.clone()));
        assert_ne!(k, image_key(&a, &p, &other));
        assert_ne!(k, image_key(&b, &p, &img));
        let mut q = p.clone();
        q.mean[0] += 0.01;
        assert_ne!(k, image_key(&a, &q, &img));
    }
}
