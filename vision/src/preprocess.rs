//! Image loading and preprocessing, matching the release's `BlipImageEvalProcessor(224)`:
//! `Image.open(p).convert('RGB')` → squash `Resize((224, 224), BICUBIC)` → `ToTensor()` →
//! `Normalize(CLIP mean, CLIP std)`.
//!
//! * Decoding uses the `image` crate (any format it was built with), with resource limits
//!   ([`DecodeLimits`]) checked from the header before the pixel buffer is allocated, and a
//!   truncation check for JPEG (the `image` crate silently grey-fills a truncated JPEG, where
//!   Pillow raises `image file is truncated`).
//! * [`convert_rgb`] follows Pillow's `.convert('RGB')`: alpha is dropped (not composited), grey is
//!   replicated, palettes are expanded by the decoder.
//! * Resizing is Pillow-exact bicubic ([`crate::resize`]); normalisation is done in f32 in the same
//!   order as torchvision, so the result is bit-identical to the reference for the same RGB input.
//! * EXIF orientation is **not** applied (neither does the release).

use std::io::Cursor;
use std::path::Path;

use candle_core::{Device, Tensor};
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, RgbImage};
use rayon::prelude::*;

use crate::resize::resize_rgb_bicubic;

/// CLIP (OpenAI) per-channel mean used by the release.
pub const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
/// CLIP (OpenAI) per-channel standard deviation used by the release.
// The digits are the release's literals; they round to the same f32 values torch uses.
#[allow(clippy::excessive_precision)]
pub const CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_58, 0.275_777_11];
/// Input size of the released model (`BlipImageEvalProcessor(224)`).
pub const DEFAULT_IMAGE_SIZE: u32 = 224;

/// Errors of image loading and preprocessing; each names the file (or input) at fault.
#[derive(Debug, thiserror::Error)]
pub enum PreprocessError {
    /// The file could not be read.
    #[error("cannot read image file {name}: {source}")]
    Io {
        /// File name.
        name: String,
        /// Underlying I/O error.
        source: std::io::Error,
    },
    /// The bytes are not an image in a supported format.
    #[error("{name}: not a recognised image format (supported: jpeg, png, gif, bmp, webp, tiff)")]
    UnknownFormat {
        /// File name.
        name: String,
    },
    /// The decoder rejected the data.
    #[error("cannot decode image {name}: {source}")]
    Decode {
        /// File name.
        name: String,
        /// Underlying decoder error.
        source: image::ImageError,
    },
    /// The file ends before the image data is complete.
    #[error("image file {name} is truncated: {detail}")]
    Truncated {
        /// File name.
        name: String,
        /// Where the data ended.
        detail: String,
    },
    /// The header announces an image larger than the configured [`DecodeLimits`].
    #[error(
        "image {name} is too large: header claims {width}x{height} ({bytes} bytes decoded), \
         limits are {max_pixels} pixels and {max_alloc} bytes"
    )]
    TooLarge {
        /// File name.
        name: String,
        /// Width from the header.
        width: u32,
        /// Height from the header.
        height: u32,
        /// Size of the decoded buffer.
        bytes: u64,
        /// Configured pixel limit.
        max_pixels: u64,
        /// Configured allocation limit.
        max_alloc: u64,
    },
    /// The file itself is larger than [`DecodeLimits::max_alloc`].
    #[error("image file {name} is too large: {bytes} bytes, limit {max_alloc}")]
    FileTooLarge {
        /// File name.
        name: String,
        /// File size.
        bytes: u64,
        /// Configured allocation limit.
        max_alloc: u64,
    },
    /// The image has a zero width or height.
    #[error("image {name} is empty ({width}x{height})")]
    Empty {
        /// File name.
        name: String,
        /// Width from the header.
        width: u32,
        /// Height from the header.
        height: u32,
    },
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

/// Resource limits applied to the image header before any pixel buffer is allocated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Maximum width × height (default 100 megapixels).
    pub max_pixels: u64,
    /// Maximum size in bytes of the file, of the decoded buffer and of decoder allocations
    /// (default 1 GiB).
    pub max_alloc: u64,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self {
            max_pixels: 100_000_000,
            max_alloc: 1 << 30,
        }
    }
}

/// Reads and decodes an image file with the default [`DecodeLimits`].
pub fn load_image(path: impl AsRef<Path>) -> Result<DynamicImage> {
    load_image_with_limits(path, &DecodeLimits::default())
}

/// Reads and decodes an image file with the given limits.
pub fn load_image_with_limits(
    path: impl AsRef<Path>,
    limits: &DecodeLimits,
) -> Result<DynamicImage> {
    let path = path.as_ref();
    let name = path.display().to_string();
    let io_err = |source| PreprocessError::Io {
        name: name.clone(),
        source,
    };
    let file_len = std::fs::metadata(path).map_err(io_err)?.len();
    if file_len > limits.max_alloc {
        return Err(PreprocessError::FileTooLarge {
            name,
            bytes: file_len,
            max_alloc: limits.max_alloc,
        });
    }
    let bytes = std::fs::read(path).map_err(io_err)?;
    decode_image_with_limits(&bytes, &name, limits)
}

/// Decodes an in-memory image with the default [`DecodeLimits`]; `name` is used in errors.
pub fn decode_image(bytes: &[u8], name: &str) -> Result<DynamicImage> {
    decode_image_with_limits(bytes, name, &DecodeLimits::default())
}

/// Decodes an in-memory image with the given limits; `name` is used in errors.
///
/// The format is guessed from the content. The first frame of animated images is returned,
/// without EXIF orientation applied.
pub fn decode_image_with_limits(
    bytes: &[u8],
    name: &str,
    limits: &DecodeLimits,
) -> Result<DynamicImage> {
    let decode_err = |source| PreprocessError::Decode {
        name: name.to_owned(),
        source,
    };
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|source| PreprocessError::Io {
            name: name.to_owned(),
            source,
        })?;
    let format = reader
        .format()
        .ok_or_else(|| PreprocessError::UnknownFormat {
            name: name.to_owned(),
        })?;
    let mut image_limits = image::Limits::default();
    image_limits.max_alloc = Some(limits.max_alloc);
    reader.limits(image_limits);
    let decoder = reader.into_decoder().map_err(decode_err)?;

    let (width, height) = decoder.dimensions();
    let pixels = u64::from(width) * u64::from(height);
    let bytes_needed = decoder.total_bytes();
    if pixels > limits.max_pixels || bytes_needed > limits.max_alloc {
        return Err(PreprocessError::TooLarge {
            name: name.to_owned(),
            width,
            height,
            bytes: bytes_needed,
            max_pixels: limits.max_pixels,
            max_alloc: limits.max_alloc,
        });
    }
    if pixels == 0 {
        return Err(PreprocessError::Empty {
            name: name.to_owned(),
            width,
            height,
        });
    }
    if format == ImageFormat::Jpeg {
        check_jpeg_complete(bytes).map_err(|detail| PreprocessError::Truncated {
            name: name.to_owned(),
            detail,
        })?;
    }
    DynamicImage::from_decoder(decoder).map_err(decode_err)
}

/// Checks that a JPEG stream reaches its EOI marker, walking the marker segments and the
/// entropy-coded data of every scan. Returns where the data ran out otherwise.
///
/// Like libjpeg, stray bytes before a marker are tolerated; data after EOI is ignored.
fn check_jpeg_complete(data: &[u8]) -> std::result::Result<(), String> {
    if data.get(..2) != Some(&[0xFF, 0xD8][..]) {
        return Err("missing SOI marker".to_owned());
    }
    let mut pos = 2;
    loop {
        // Skip stray bytes and 0xFF fill bytes up to the marker code.
        while data.get(pos).is_some_and(|&b| b != 0xFF) {
            pos += 1;
        }
        while data.get(pos) == Some(&0xFF) {
            pos += 1;
        }
        let Some(&marker) = data.get(pos) else {
            return Err(format!(
                "no EOI marker before the end of the data ({} bytes)",
                data.len()
            ));
        };
        pos += 1;
        match marker {
            0xD9 => return Ok(()),
            // Markers without a length field (and stuffed zeros outside a scan).
            0x00 | 0x01 | 0xD0..=0xD8 => continue,
            _ => {}
        }
        let Some(len) = data.get(pos..pos + 2) else {
            return Err(format!(
                "segment length of marker 0xFF{marker:02X} missing at byte {pos}"
            ));
        };
        let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
        if len < 2 {
            return Err(format!("invalid segment length {len} at byte {pos}"));
        }
        if pos + len > data.len() {
            return Err(format!(
                "segment 0xFF{marker:02X} at byte {pos} needs {len} bytes, {} left",
                data.len() - pos
            ));
        }
        pos += len;
        if marker == 0xDA {
            pos = skip_entropy_coded_data(data, pos)?;
        }
    }
}

/// Returns the offset of the first marker (not a stuffed byte or restart marker) after the
/// entropy-coded data starting at `pos`.
fn skip_entropy_coded_data(data: &[u8], mut pos: usize) -> std::result::Result<usize, String> {
    let scan_start = pos;
    loop {
        let Some(offset) = data[pos..].iter().position(|&b| b == 0xFF) else {
            return Err(format!(
                "scan data starting at byte {scan_start} ends without a marker ({} bytes)",
                data.len()
            ));
        };
        pos += offset;
        match data.get(pos + 1) {
            None => return Err(format!("scan data ends inside a marker at byte {pos}")),
            Some(0x00 | 0xD0..=0xD7) => pos += 2,
            Some(0xFF) => pos += 1,
            Some(_) => return Ok(pos),
        }
    }
}

/// Converts any decoded image to 8-bit RGB like Pillow's `.convert('RGB')`.
///
/// Alpha is dropped (transparent pixels keep their colour), grey is replicated. 16-bit colour
/// keeps the most significant byte (Pillow's `;16B` unpackers); 16-bit grey (Pillow mode
/// `I;16`) is clipped to 255, as Pillow's `I;16 → RGB` conversion does. Float images use the
/// `image` crate's conversion.
pub fn convert_rgb(image: &DynamicImage) -> RgbImage {
    let (w, h) = (image.width(), image.height());
    let msb = |v: u16| (v >> 8) as u8;
    let rgb: Option<Vec<u8>> = match image {
        DynamicImage::ImageRgb8(img) => return img.clone(),
        DynamicImage::ImageRgb16(img) => Some(img.as_raw().iter().map(|&v| msb(v)).collect()),
        DynamicImage::ImageRgba16(img) => Some(
            img.pixels()
                .flat_map(|p| [msb(p[0]), msb(p[1]), msb(p[2])])
                .collect(),
        ),
        DynamicImage::ImageLumaA16(img) => {
            Some(img.pixels().flat_map(|p| [msb(p[0]); 3]).collect())
        }
        DynamicImage::ImageLuma16(img) => Some(
            img.pixels()
                .flat_map(|p| [p[0].min(255) as u8; 3])
                .collect(),
        ),
        _ => None,
    };
    rgb.and_then(|data| RgbImage::from_raw(w, h, data))
        .unwrap_or_else(|| image.to_rgb8())
}

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

    /// Loads an image file and preprocesses it into `[1, 3, size, size]`.
    pub fn preprocess_file(&self, path: impl AsRef<Path>, device: &Device) -> Result<Tensor> {
        self.preprocess(&load_image(path)?, device)
    }
}
