//! Error handling, resource limits and `.convert('RGB')` semantics of image decoding, and the
//! preprocessor's own errors.

use std::io::Cursor;

use candle_core::Device;
use image::{DynamicImage, ImageBuffer, ImageFormat, Luma, LumaA, Rgb, RgbImage, Rgba};
use visualglm_vision::decode::{convert_rgb, decode_image, load_image, DecodeError, DecodeLimits};
use visualglm_vision::preprocess::{ImagePreprocessor, PreprocessError};

const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/golden");

fn golden_image(file: &str) -> String {
    format!("{GOLDEN}/images/{file}")
}

fn encode(image: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    image.write_to(&mut out, format).unwrap();
    out.into_inner()
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn small_rgb() -> DynamicImage {
    DynamicImage::ImageRgb8(RgbImage::from_fn(16, 16, |x, y| {
        Rgb([(x * 16) as u8, (y * 16) as u8, 128])
    }))
}

#[test]
fn missing_file_names_the_path() {
    let path = golden_image("no_such_image.png");
    let err = load_image(&path, &Default::default()).unwrap_err();
    assert!(matches!(err, DecodeError::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("no_such_image.png"), "{err}");
}

#[test]
fn undecodable_file_names_the_path() {
    let path = golden_image("LICENSES.md");
    let err = load_image(&path, &Default::default()).unwrap_err();
    assert!(matches!(err, DecodeError::UnknownFormat { .. }), "{err:?}");
    assert!(err.to_string().contains("LICENSES.md"), "{err}");

    // A valid signature followed by garbage is a decode error.
    let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
    bytes.extend_from_slice(&[0x55; 64]);
    let err = decode_image(&bytes, "garbage.png", &Default::default()).unwrap_err();
    assert!(matches!(err, DecodeError::Decode { .. }), "{err:?}");
    assert!(err.to_string().contains("garbage.png"), "{err}");
}

#[test]
fn truncated_jpeg_is_an_error() {
    // The `image` crate alone decodes this file "successfully" (grey-filled); Pillow raises.
    let path = golden_image("bad_truncated_rocket.jpg");
    let err = load_image(&path, &Default::default()).unwrap_err();
    assert!(matches!(err, DecodeError::Truncated { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("bad_truncated_rocket.jpg") && msg.contains("truncated"),
        "{msg}"
    );

    let full = std::fs::read(golden_image("rocket.jpg")).unwrap();
    assert_eq!(
        decode_image(&full, "rocket.jpg", &Default::default())
            .unwrap()
            .width(),
        640
    );
    // Only the final EOI marker missing.
    let err = decode_image(&full[..full.len() - 2], "no_eoi.jpg", &Default::default()).unwrap_err();
    assert!(matches!(err, DecodeError::Truncated { .. }), "{err:?}");
    // Bytes after EOI are ignored, as by libjpeg.
    let mut trailing = full.clone();
    trailing.extend_from_slice(b"trailing junk");
    assert!(decode_image(&trailing, "trailing.jpg", &Default::default()).is_ok());
}

#[test]
fn truncated_png_is_an_error() {
    let full = std::fs::read(golden_image("chelsea.png")).unwrap();
    let err =
        decode_image(&full[..full.len() * 2 / 5], "cut.png", &Default::default()).unwrap_err();
    assert!(matches!(err, DecodeError::Decode { .. }), "{err:?}");
    assert!(err.to_string().contains("cut.png"), "{err}");
}

#[test]
fn huge_png_header_is_refused_before_decoding() {
    let mut png = encode(&small_rgb(), ImageFormat::Png);
    assert_eq!(&png[12..16], b"IHDR");
    png[16..20].copy_from_slice(&100_000u32.to_be_bytes());
    png[20..24].copy_from_slice(&100_000u32.to_be_bytes());
    let crc = crc32(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());
    let err = decode_image(&png, "huge.png", &Default::default()).unwrap_err();
    match &err {
        DecodeError::TooLarge { width, height, .. } => {
            assert_eq!((*width, *height), (100_000, 100_000))
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert!(err.to_string().contains("huge.png"), "{err}");
}

#[test]
fn huge_jpeg_header_is_refused_before_decoding() {
    let mut jpg = encode(&small_rgb(), ImageFormat::Jpeg);
    let sof = jpg
        .windows(2)
        .position(|w| w == [0xFF, 0xC0])
        .expect("baseline SOF0 marker");
    // [FF C0][length: 2][precision: 1][height: 2][width: 2]
    jpg[sof + 5..sof + 7].copy_from_slice(&60_000u16.to_be_bytes());
    jpg[sof + 7..sof + 9].copy_from_slice(&60_000u16.to_be_bytes());
    let err = decode_image(&jpg, "huge.jpg", &Default::default()).unwrap_err();
    assert!(
        matches!(
            err,
            DecodeError::TooLarge {
                width: 60_000,
                height: 60_000,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn custom_limits_apply() {
    let tight = DecodeLimits {
        max_pixels: 10_000,
        ..DecodeLimits::default()
    };
    let err = load_image(golden_image("chelsea.png"), &tight).unwrap_err();
    assert!(
        matches!(
            err,
            DecodeError::TooLarge {
                width: 451,
                height: 300,
                ..
            }
        ),
        "{err:?}"
    );
    let by_bytes = DecodeLimits {
        max_alloc: 100_000,
        ..DecodeLimits::default()
    };
    let file_cap = DecodeLimits {
        max_alloc: 1000,
        ..DecodeLimits::default()
    };
    let err = load_image(golden_image("camera.png"), &file_cap).unwrap_err();
    assert!(
        matches!(err, DecodeError::FileTooLarge { bytes: 139_512, .. }),
        "{err:?}"
    );
    let bytes = std::fs::read(golden_image("camera.png")).unwrap();
    // 512 x 512 grey = 262144 bytes decoded.
    assert!(matches!(
        decode_image(&bytes, "camera.png", &by_bytes),
        Err(DecodeError::TooLarge { .. })
    ));
    assert!(decode_image(&bytes, "camera.png", &DecodeLimits::default()).is_ok());
}

#[test]
fn other_formats_decode() {
    let src = small_rgb();
    for format in [
        ImageFormat::Bmp,
        ImageFormat::Tiff,
        ImageFormat::Gif,
        ImageFormat::Png,
    ] {
        let bytes = encode(&src, format);
        let decoded = decode_image(&bytes, "x", &Default::default()).unwrap();
        assert_eq!((decoded.width(), decoded.height()), (16, 16), "{format:?}");
    }
}

#[test]
fn convert_rgb_follows_pillow() {
    // RGBA: alpha dropped, not composited.
    let rgba = ImageBuffer::from_pixel(2, 1, Rgba([10u8, 20, 30, 0]));
    assert_eq!(
        convert_rgb(&DynamicImage::ImageRgba8(rgba)).get_pixel(1, 0),
        &Rgb([10, 20, 30])
    );
    // Grey (+alpha) replicated.
    let la = ImageBuffer::from_pixel(1, 1, LumaA([77u8, 3]));
    assert_eq!(
        convert_rgb(&DynamicImage::ImageLumaA8(la)).get_pixel(0, 0),
        &Rgb([77; 3])
    );
    // 16-bit colour keeps the high byte (0x12FF -> 0x12, not rounded to 0x13).
    let rgb16 = ImageBuffer::from_pixel(1, 1, Rgb([0x12FFu16, 0x00FF, 0xFFFF]));
    assert_eq!(
        convert_rgb(&DynamicImage::ImageRgb16(rgb16)).get_pixel(0, 0),
        &Rgb([0x12, 0x00, 0xFF])
    );
    let rgba16 = ImageBuffer::from_pixel(1, 1, Rgba([0x8000u16, 0x7FFF, 1, 0]));
    assert_eq!(
        convert_rgb(&DynamicImage::ImageRgba16(rgba16)).get_pixel(0, 0),
        &Rgb([0x80, 0x7F, 0])
    );
    // 16-bit grey is Pillow's I;16: values clip at 255.
    let l16 = ImageBuffer::from_fn(2, 1, |x, _| Luma([if x == 0 { 200u16 } else { 4000 }]));
    let l16 = convert_rgb(&DynamicImage::ImageLuma16(l16));
    assert_eq!(
        (l16.get_pixel(0, 0), l16.get_pixel(1, 0)),
        (&Rgb([200; 3]), &Rgb([255; 3]))
    );
}

#[test]
fn invalid_settings_and_empty_batch() {
    let img = small_rgb();
    let err = ImagePreprocessor::new(0)
        .preprocess(&img, &Device::Cpu)
        .unwrap_err();
    assert!(matches!(err, PreprocessError::InvalidConfig(_)), "{err:?}");
    let mut bad_std = ImagePreprocessor::default();
    bad_std.std[1] = 0.0;
    assert!(matches!(
        bad_std.preprocess(&img, &Device::Cpu),
        Err(PreprocessError::InvalidConfig(_))
    ));
    let err = ImagePreprocessor::default()
        .preprocess_batch(&[], &Device::Cpu)
        .unwrap_err();
    assert!(matches!(err, PreprocessError::EmptyBatch), "{err:?}");
}
