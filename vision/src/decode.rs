//! Image decoding: file or bytes → [`DynamicImage`] (→ RGB with [`convert_rgb`]), as the
//! release's `Image.open(p).convert('RGB')`.
//!
//! * Decoding uses the `image` crate (any format it was built with), with resource limits
//!   ([`DecodeLimits`]) checked from the header before the pixel buffer is allocated, and a
//!   truncation check for JPEG (the `image` crate silently grey-fills a truncated JPEG, where
//!   Pillow raises `image file is truncated`).
//! * [`convert_rgb`] follows Pillow's `.convert('RGB')`: alpha is dropped (not composited), grey is
//!   replicated, palettes are expanded by the decoder.
//! * EXIF orientation is **not** applied (neither does the release).
//!
//! Resizing and normalisation are in [`crate::preprocess`].

use std::io::Cursor;
use std::path::Path;

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, RgbImage};

/// Errors of image reading and decoding; each names the file (or input) at fault.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
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
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, DecodeError>;

/// Resource limits applied to the image header before any pixel buffer is allocated: the
/// options of [`load_image`] and [`decode_image`].
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

/// Reads and decodes an image file within `limits` (`&Default::default()`: the defaults).
pub fn load_image(path: impl AsRef<Path>, limits: &DecodeLimits) -> Result<DynamicImage> {
    let path = path.as_ref();
    let name = path.display().to_string();
    let io_err = |source| DecodeError::Io {
        name: name.clone(),
        source,
    };
    let file_len = std::fs::metadata(path).map_err(io_err)?.len();
    if file_len > limits.max_alloc {
        return Err(DecodeError::FileTooLarge {
            name,
            bytes: file_len,
            max_alloc: limits.max_alloc,
        });
    }
    let bytes = std::fs::read(path).map_err(io_err)?;
    decode_image(&bytes, &name, limits)
}

/// Decodes an in-memory image within `limits`; `name` is used in errors.
///
/// The format is guessed from the content. The first frame of animated images is returned,
/// without EXIF orientation applied.
pub fn decode_image(bytes: &[u8], name: &str, limits: &DecodeLimits) -> Result<DynamicImage> {
    let decode_err = |source| DecodeError::Decode {
        name: name.to_owned(),
        source,
    };
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|source| DecodeError::Io {
            name: name.to_owned(),
            source,
        })?;
    let format = reader.format().ok_or_else(|| DecodeError::UnknownFormat {
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
        return Err(DecodeError::TooLarge {
            name: name.to_owned(),
            width,
            height,
            bytes: bytes_needed,
            max_pixels: limits.max_pixels,
            max_alloc: limits.max_alloc,
        });
    }
    if pixels == 0 {
        return Err(DecodeError::Empty {
            name: name.to_owned(),
            width,
            height,
        });
    }
    if format == ImageFormat::Jpeg {
        check_jpeg_complete(bytes).map_err(|detail| DecodeError::Truncated {
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
