//! Turning the images of a request (`data:` URLs, raw base64, allowed local files) into
//! decoded images, with size limits and no network access.

use std::path::{Path, PathBuf};

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::{DecodePaddingMode, Engine};
use candle_core::Tensor;
use image::DynamicImage;
use visualglm::pipeline::Captioner;
use visualglm_vision::decode::{decode_image, load_image, DecodeError, DecodeLimits};

use super::error::ApiError;

/// What images a request may bring and how large they may be.
#[derive(Debug, Clone)]
pub struct ImagePolicy {
    /// Limits checked on the image header before decoding.
    pub limits: DecodeLimits,
    /// Local files are allowed only under this directory (canonical path); `None`: never.
    pub local_dir: Option<PathBuf>,
}

impl Default for ImagePolicy {
    fn default() -> Self {
        Self {
            limits: DecodeLimits {
                max_pixels: 50_000_000,
                max_alloc: 256 << 20,
            },
            local_dir: None,
        }
    }
}

/// Standard or URL-safe alphabet is not mixed; padding may be present or not.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);
const BASE64_URL: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

impl ImagePolicy {
    /// Loads the image an OpenAI `image_url.url` names: a `data:…;base64,` URL, or a path
    /// (or `file://` URL) under the allowed local directory. Remote URLs are refused.
    pub fn load_url(&self, url: &str) -> Result<DynamicImage, ApiError> {
        let url = url.trim();
        let param = "messages.content.image_url.url";
        if let Some(rest) = url.strip_prefix("data:") {
            return self.decode_data_url(rest).map_err(|e| e.with_param(param));
        }
        let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
        if lower.starts_with("http://") || lower.starts_with("https://") {
            return Err(ApiError::bad_request(
                "remote image URLs are not fetched: send the image inline as a \
                 `data:image/...;base64,...` URL",
            )
            .with_param(param)
            .with_code("invalid_image_url"));
        }
        let path = match url.strip_prefix("file://") {
            Some(p) => p,
            None if url.contains("://") => {
                return Err(ApiError::bad_request(
                    "unsupported image URL: use a `data:image/...;base64,...` URL",
                )
                .with_param(param)
                .with_code("invalid_image_url"))
            }
            None => url,
        };
        self.load_local(Path::new(path))
            .map_err(|e| e.with_param(param))
    }

    /// Decodes the release's `image` field: raw base64 or a `data:` URL.
    pub fn load_base64(&self, data: &str) -> Result<DynamicImage, ApiError> {
        let data = data.trim();
        let result = match data.strip_prefix("data:") {
            Some(rest) => self.decode_data_url(rest),
            None => self.decode_base64(data),
        };
        result.map_err(|e| e.with_param("image"))
    }

    fn decode_data_url(&self, rest: &str) -> Result<DynamicImage, ApiError> {
        let Some((meta, payload)) = rest.split_once(',') else {
            return Err(
                ApiError::bad_request("malformed data URL: no `,` before the data")
                    .with_code("invalid_image_url"),
            );
        };
        if !meta.split(';').any(|p| p.eq_ignore_ascii_case("base64")) {
            return Err(ApiError::bad_request(
                "only base64 data URLs are supported (`data:image/png;base64,...`)",
            )
            .with_code("invalid_image_url"));
        }
        let media = meta.split(';').next().unwrap_or("");
        if !media.is_empty() && !media.to_ascii_lowercase().starts_with("image/") {
            return Err(ApiError::bad_request(format!(
                "the data URL has media type `{media}`, not an image"
            ))
            .with_code("invalid_image_url"));
        }
        self.decode_base64(payload)
    }

    fn decode_base64(&self, payload: &str) -> Result<DynamicImage, ApiError> {
        let clean: Vec<u8> = payload
            .bytes()
            .filter(|b| !b.is_ascii_whitespace())
            .collect();
        let bytes = BASE64
            .decode(&clean)
            .or_else(|_| BASE64_URL.decode(&clean))
            .map_err(|e| {
                ApiError::bad_request(format!("the image is not valid base64: {e}"))
                    .with_code("invalid_base64")
            })?;
        decode_image(&bytes, "from the request", &self.limits).map_err(image_error)
    }

    fn load_local(&self, path: &Path) -> Result<DynamicImage, ApiError> {
        let Some(dir) = &self.local_dir else {
            return Err(ApiError::bad_request(
                "local image paths are disabled (start the server with --allow-local-dir); \
                 send the image as a `data:image/...;base64,...` URL",
            )
            .with_code("invalid_image_url"));
        };
        let refused = || {
            ApiError::bad_request(format!(
                "`{}` is not a readable file under the allowed image directory",
                path.display()
            ))
            .with_code("invalid_image_url")
        };
        let full = dir.join(path);
        let canonical = full.canonicalize().map_err(|_| refused())?;
        if !canonical.starts_with(dir) || !canonical.is_file() {
            return Err(refused());
        }
        load_image(&canonical, &self.limits).map_err(image_error)
    }
}

/// Too-large images are 413, everything else the decoder refuses is 400.
fn image_error(e: DecodeError) -> ApiError {
    match e {
        DecodeError::TooLarge { .. } | DecodeError::FileTooLarge { .. } => {
            ApiError::too_large(e.to_string()).with_code("image_too_large")
        }
        other => ApiError::bad_request(other.to_string()).with_code("invalid_image"),
    }
}

/// The image embeddings `[1, 32, width]` of every image of each request, in order; all
/// requests' images are encoded together, `image_batch` images per call (0: all at once).
pub fn encode_batch(
    captioner: &Captioner,
    images: &[&[DynamicImage]],
    image_batch: usize,
) -> visualglm::Result<Vec<Vec<Tensor>>> {
    let pictures: Vec<DynamicImage> = images.iter().flat_map(|i| i.iter().cloned()).collect();
    let chunk = if image_batch == 0 {
        pictures.len().max(1)
    } else {
        image_batch
    };
    let mut rows = Vec::with_capacity(pictures.len());
    for part in pictures.chunks(chunk) {
        let t = captioner.encode_images(part)?;
        for row in 0..t.dim(0)? {
            rows.push(t.narrow(0, row, 1)?);
        }
    }
    let mut rows = rows.into_iter();
    Ok(images
        .iter()
        .map(|i| rows.by_ref().take(i.len()).collect())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(w: u32, h: u32) -> Vec<u8> {
        let img = image::RgbImage::from_pixel(w, h, image::Rgb([10, 20, 30]));
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png)
            .map(|_| out.into_inner())
            .unwrap_or_default()
    }

    #[test]
    fn decodes_data_urls_and_refuses_the_rest() {
        let p = ImagePolicy::default();
        let b64 = base64::engine::general_purpose::STANDARD.encode(png(4, 3));
        let img = p.load_url(&format!("data:image/png;base64,{b64}")).unwrap();
        assert_eq!((img.width(), img.height()), (4, 3));
        assert_eq!(p.load_base64(&b64).unwrap().width(), 4);
        let unpadded = b64.trim_end_matches('=');
        assert_eq!(p.load_base64(unpadded).unwrap().height(), 3);
        for (url, code) in [
            ("https://example.com/cat.png", "invalid_image_url"),
            ("ftp://x/y.png", "invalid_image_url"),
            ("/etc/passwd", "invalid_image_url"),
            ("data:image/png,abc", "invalid_image_url"),
            ("data:text/plain;base64,aGk=", "invalid_image_url"),
            ("data:image/png;base64,@@@@", "invalid_base64"),
            ("data:image/png;base64,aGVsbG8gd29ybGQ=", "invalid_image"),
        ] {
            let e = p.load_url(url).unwrap_err();
            assert_eq!(e.status.as_u16(), 400, "{url}");
            assert_eq!(e.code, Some(code), "{url}: {e:?}");
        }
        let small = ImagePolicy {
            limits: DecodeLimits {
                max_pixels: 10,
                max_alloc: 1 << 20,
            },
            local_dir: None,
        };
        let e = small.load_base64(&b64).unwrap_err();
        assert_eq!(e.status.as_u16(), 413);
    }

    #[test]
    fn local_files_only_under_the_allowed_dir() {
        let dir = std::env::temp_dir().join(format!("vglm-image-{}", std::process::id()));
        let inner = dir.join("inner");
        std::fs::create_dir_all(&inner).unwrap();
        std::fs::write(inner.join("a.png"), png(2, 2)).unwrap();
        std::fs::write(dir.join("secret.png"), png(2, 2)).unwrap();
        let p = ImagePolicy {
            local_dir: Some(inner.canonicalize().unwrap()),
            ..ImagePolicy::default()
        };
        assert_eq!(p.load_url("a.png").unwrap().width(), 2);
        let abs = inner.join("a.png");
        assert!(p.load_url(&format!("file://{}", abs.display())).is_ok());
        assert!(p.load_url("../secret.png").is_err());
        assert!(p
            .load_url(&dir.join("secret.png").display().to_string())
            .is_err());
        assert!(p.load_url("missing.png").is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
