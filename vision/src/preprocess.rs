//! Image preprocessing, matching the release's `BlipImageEvalProcessor(224)` after decoding
//! ([`crate::decode`]): `.convert('RGB')` → squash `Resize((224, 224), BICUBIC)` → `ToTensor()` →
//! `Normalize(CLIP mean, CLIP std)`.
//!
//! * Resizing is Pillow-exact bicubic ([`crate::resize`]); normalisation is done in f32 in the same
//!   order as torchvision, so the result is bit-identical to the reference for the same RGB input.

use std::path::Path;

use candle_core::{Device, Tensor};
use image::{DynamicImage, RgbImage};
use rayon::prelude::*;

use crate::decode::{convert_rgb, load_image, DecodeError, DecodeLimits};
use crate::resize::resize_rgb_bicubic;

/// CLIP (OpenAI) per-channel mean used by the release.
pub const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
/// CLIP (OpenAI) per-channel standard deviation used by the release.
// The digits are the release's literals; they round to the same f32 values torch uses.
#[allow(clippy::excessive_precision)]
pub const CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_58, 0.275_777_11];
/// Input size of the released model (`BlipImageEvalProcessor(224)`).
pub const DEFAULT_IMAGE_SIZE: u32 = 224;

/// Errors of preprocessing (and of the decoding [`ImagePreprocessor::preprocess_file`] does).
#[derive(Debug, thiserror::Error)]
pub enum PreprocessError {
    /// The image could not be read or decoded.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The preprocessor settings are unusable (zero size, non-positive std, ...).
    #[error("invalid preprocessor settings: {0}")]
    InvalidConfig(String),
    /// `preprocess_batch` was given no images.
    #[error("cannot preprocess an empty batch of images")]
    EmptyBatch,
    /// Building the output tensor failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, PreprocessError>;

/// The release's image transform: RGB → squash bicubic resize → `ToTensor` → `Normalize`.
#[derive(Debug, Clone, PartialEq)]
pub struct ImagePreprocessor {
    /// Output height and width in pixels (square, as `BlipImageEvalProcessor(size)`).
    pub size: u32,
    /// Per-channel mean subtracted after scaling to `[0, 1]`.
    pub mean: [f32; 3],
    /// Per-channel standard deviation divided by after subtracting the mean.
    pub std: [f32; 3],
}

impl Default for ImagePreprocessor {
    /// The release: 224 × 224 with the CLIP mean/std.
    fn default() -> Self {
        Self::new(DEFAULT_IMAGE_SIZE)
    }
}

impl ImagePreprocessor {
    /// A preprocessor for `size × size` images with the CLIP mean/std.
    pub fn new(size: u32) -> Self {
        Self {
            size,
            mean: CLIP_MEAN,
            std: CLIP_STD,
        }
    }

    /// Checks that the settings can produce a tensor.
    pub fn validate(&self) -> Result<()> {
        if self.size == 0 {
            return Err(PreprocessError::InvalidConfig(
                "size must be positive".into(),
            ));
        }
        if let Some(s) = self.std.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
            return Err(PreprocessError::InvalidConfig(format!(
                "std values must be finite and positive, got {s}"
            )));
        }
        if let Some(m) = self.mean.iter().find(|m| !m.is_finite()) {
            return Err(PreprocessError::InvalidConfig(format!(
                "mean values must be finite, got {m}"
            )));
        }
        Ok(())
    }

    /// `.convert('RGB')` followed by the Pillow-exact bicubic squash resize to `size × size`.
    pub fn to_rgb_resized(&self, image: &DynamicImage) -> RgbImage {
        match image {
            DynamicImage::ImageRgb8(rgb) => resize_rgb_bicubic(rgb, self.size, self.size),
            other => resize_rgb_bicubic(&convert_rgb(other), self.size, self.size),
        }
    }

    /// `ToTensor` + `Normalize` of an RGB image into planar CHW f32 values.
    pub fn normalize_chw(&self, rgb: &RgbImage) -> Vec<f32> {
        let plane = rgb.width() as usize * rgb.height() as usize;
        let mut out = vec![0f32; 3 * plane];
        let (r, rest) = out.split_at_mut(plane);
        let (g, b) = rest.split_at_mut(plane);
        let planes = [r, g, b];
        for (i, px) in rgb.pixels().enumerate() {
            for c in 0..3 {
                // Same f32 operations, in the same order, as ToTensor (x / 255) and Normalize.
                planes[c][i] = (f32::from(px[c]) / 255.0 - self.mean[c]) / self.std[c];
            }
        }
        out
    }

    /// Planar CHW values of one image (the `[3, size, size]` tensor's data).
    fn pixel_values(&self, image: &DynamicImage) -> Vec<f32> {
        self.normalize_chw(&self.to_rgb_resized(image))
    }

    /// Preprocesses one image into an f32 tensor `[1, 3, size, size]` on `device`.
    pub fn preprocess(&self, image: &DynamicImage, device: &Device) -> Result<Tensor> {
        self.validate()?;
        let s = self.size as usize;
        Ok(Tensor::from_vec(
            self.pixel_values(image),
            (1, 3, s, s),
            device,
        )?)
    }

    /// Preprocesses images in parallel (rayon) into an f32 tensor `[B, 3, size, size]`.
    pub fn preprocess_batch(&self, images: &[DynamicImage], device: &Device) -> Result<Tensor> {
        self.validate()?;
        if images.is_empty() {
            return Err(PreprocessError::EmptyBatch);
        }
        let s = self.size as usize;
        let per_image: Vec<Vec<f32>> = images.par_iter().map(|im| self.pixel_values(im)).collect();
        let data = per_image.concat();
        Ok(Tensor::from_vec(data, (images.len(), 3, s, s), device)?)
    }

    /// Loads an image file (default [`DecodeLimits`]) and preprocesses it into
    /// `[1, 3, size, size]`.
    pub fn preprocess_file(&self, path: impl AsRef<Path>, device: &Device) -> Result<Tensor> {
        self.preprocess(&load_image(path, &DecodeLimits::default())?, device)
    }
}
