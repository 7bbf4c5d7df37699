//! Decoding uploaded bytes, with limits checked before any pixel memory is
//! allocated: a file whose header claims 60000×60000 is refused after
//! reading the header, not after the allocator gives up.

use std::io::Cursor;

use image::metadata::Orientation;
use image::{
    ColorType, DynamicImage, ImageDecoder, ImageError, ImageFormat, ImageReader, Limits, RgbImage,
};

use super::buffers;
use super::encode::OutputFormat;
use super::ImagingError;

/// What a decode may cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    pub max_width: u32,
    pub max_height: u32,
    /// Most bytes the decoder may allocate at once, the decoded image
    /// included.
    pub max_alloc: u64,
}

impl Default for DecodeLimits {
    /// Sources up to 8000×8000; 512 MiB covers such an image even at 16 bits
    /// per channel with alpha.
    fn default() -> Self {
        DecodeLimits {
            max_width: 8000,
            max_height: 8000,
            max_alloc: 512 * 1024 * 1024,
        }
    }
}

/// A decoded source image.
#[derive(Debug, Clone)]
pub struct Decoded {
    /// The pixels as stored, 8-bit RGB (alpha dropped, gray expanded, 16-bit
    /// reduced). The EXIF orientation is not applied: that is PRE-000's job.
    pub image: RgbImage,
    /// The container it came in; outputs are written in the same one.
    pub format: OutputFormat,
    /// The EXIF orientation (`NoTransforms` when absent or unreadable).
    pub orientation: Orientation,
}

/// Reads only the header: format and dimensions, checked against `limits`.
pub fn probe(
    bytes: &[u8],
    limits: &DecodeLimits,
) -> Result<(OutputFormat, u32, u32), ImagingError> {
    let (format, decoder) = open(bytes, limits)?;
    let (width, height) = decoder.dimensions();
    Ok((format, width, height))
}

/// Decodes a PNG or JPEG. Errors, never panics, on corrupt data; refuses
/// images beyond `limits` from the header alone.
pub fn decode(bytes: &[u8], limits: &DecodeLimits) -> Result<Decoded, ImagingError> {
    let (format, mut decoder) = open(bytes, limits)?;
    // A broken EXIF block is no reason to refuse the pixels.
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let image = if decoder.color_type() == ColorType::Rgb8 {
        // Straight into a kept buffer; the decoder writes every byte.
        let (width, height) = decoder.dimensions();
        let mut raw = buffers::take(usize::try_from(decoder.total_bytes()).unwrap_or(usize::MAX));
        decoder.read_image(&mut raw).map_err(from_image_error)?;
        RgbImage::from_raw(width, height, raw)
            .ok_or_else(|| ImagingError::Corrupt("the decoder gave a short image".into()))?
    } else {
        DynamicImage::from_decoder(decoder)
            .map_err(from_image_error)?
            .to_rgb8()
    };
    Ok(Decoded {
        image,
        format,
        orientation,
    })
}

fn open<'a>(
    bytes: &'a [u8],
    limits: &DecodeLimits,
) -> Result<(OutputFormat, impl ImageDecoder + 'a), ImagingError> {
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| ImagingError::Corrupt(e.to_string()))?;
    let format = match reader.format() {
        Some(ImageFormat::Jpeg) => OutputFormat::Jpeg,
        Some(ImageFormat::Png) => OutputFormat::Png,
        Some(other) => {
            return Err(ImagingError::Unsupported(format!(
                "{other:?} images are not supported; upload PNG or JPEG"
            )))
        }
        None => {
            return Err(ImagingError::Unsupported(
                "not a PNG or JPEG image".to_owned(),
            ))
        }
    };
    // Dimension limits are checked by hand below for a clearer message; the
    // allocation limit goes to the decoder.
    let mut reader = reader;
    reader.limits(alloc_limits(limits.max_alloc));
    let mut decoder = reader.into_decoder().map_err(from_image_error)?;
    let (width, height) = decoder.dimensions();
    if width > limits.max_width || height > limits.max_height {
        return Err(ImagingError::TooLarge {
            width,
            height,
            max_width: limits.max_width,
            max_height: limits.max_height,
        });
    }
    if width == 0 || height == 0 {
        return Err(ImagingError::Corrupt(format!(
            "the image claims to be {width}×{height}"
        )));
    }
    let mut full = alloc_limits(limits.max_alloc);
    full.max_image_width = Some(limits.max_width);
    full.max_image_height = Some(limits.max_height);
    decoder.set_limits(full).map_err(from_image_error)?;
    if decoder.total_bytes() > limits.max_alloc {
        return Err(ImagingError::Limits(format!(
            "decoding needs {} bytes, more than the {} allowed",
            decoder.total_bytes(),
            limits.max_alloc
        )));
    }
    Ok((format, decoder))
}

fn alloc_limits(max_alloc: u64) -> Limits {
    let mut l = Limits::default();
    l.max_alloc = Some(max_alloc);
    l
}

fn from_image_error(e: ImageError) -> ImagingError {
    match e {
        ImageError::Limits(l) => ImagingError::Limits(l.to_string()),
        ImageError::Unsupported(u) => ImagingError::Unsupported(u.to_string()),
        other => ImagingError::Corrupt(other.to_string()),
    }
}

#[cfg(test)]
mod tests {

    use std::time::{Duration, Instant};

    use image::Rgb;

    use super::super::encode::encode;
    use super::super::low_byte;
    use super::*;

    fn sample() -> RgbImage {
        RgbImage::from_fn(16, 8, |x, y| Rgb([low_byte(x * 16), low_byte(y * 32), 128]))
    }

    /// CRC-32 (IEEE), enough to forge PNG chunks.
    fn crc32(data: &[u8]) -> u32 {
        let mut crc = 0xFFFF_FFFFu32;
        for b in data {
            crc ^= u32::from(*b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    /// A real 1×1 PNG whose IHDR is rewritten to claim `w`×`h`.
    fn forged_png(w: u32, h: u32) -> Vec<u8> {
        let mut png = encode(&RgbImage::new(1, 1), OutputFormat::Png).unwrap();
        // Signature (8), IHDR length (4), "IHDR" (4), width, height …
        assert_eq!(&png[12..16], b"IHDR");
        png[16..20].copy_from_slice(&w.to_be_bytes());
        png[20..24].copy_from_slice(&h.to_be_bytes());
        let crc = crc32(&png[12..29]);
        png[29..33].copy_from_slice(&crc.to_be_bytes());
        png
    }

    #[test]
    fn png_and_jpeg_round_trip() {
        let img = sample();
        let png = decode(
            &encode(&img, OutputFormat::Png).unwrap(),
            &DecodeLimits::default(),
        )
        .unwrap();
        assert_eq!(png.format, OutputFormat::Png);
        assert_eq!(png.image, img);
        assert_eq!(png.orientation, Orientation::NoTransforms);
        let jpeg = decode(
            &encode(&img, OutputFormat::Jpeg).unwrap(),
            &DecodeLimits::default(),
        )
        .unwrap();
        assert_eq!(jpeg.format, OutputFormat::Jpeg);
        assert_eq!(jpeg.image.dimensions(), (16, 8));
    }

    #[test]
    fn forged_giant_header_fails_fast() {
        let bytes = forged_png(60_000, 60_000);
        let start = Instant::now();
        let err = decode(&bytes, &DecodeLimits::default()).unwrap_err();
        assert!(start.elapsed() < Duration::from_secs(1));
        match err {
            ImagingError::TooLarge {
                width,
                height,
                max_width,
                max_height,
            } => {
                assert_eq!(
                    (width, height, max_width, max_height),
                    (60_000, 60_000, 8000, 8000)
                );
            }
            other => panic!("expected TooLarge, got {other:?}"),
        }
        assert!(err_text(&bytes).contains("60000×60000"));
        assert!(matches!(
            probe(&bytes, &DecodeLimits::default()),
            Err(ImagingError::TooLarge { .. })
        ));
    }

    fn err_text(bytes: &[u8]) -> String {
        decode(bytes, &DecodeLimits::default())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn limits_are_configurable() {
        let bytes = encode(&sample(), OutputFormat::Png).unwrap();
        let narrow = DecodeLimits {
            max_width: 15,
            ..DecodeLimits::default()
        };
        assert!(matches!(
            decode(&bytes, &narrow),
            Err(ImagingError::TooLarge { .. })
        ));
        let stingy = DecodeLimits {
            max_alloc: 100,
            ..DecodeLimits::default()
        };
        assert!(matches!(
            decode(&bytes, &stingy),
            Err(ImagingError::Limits(_))
        ));
        assert!(decode(
            &bytes,
            &DecodeLimits {
                max_width: 16,
                max_height: 8,
                ..DecodeLimits::default()
            }
        )
        .is_ok());
    }

    #[test]
    fn corrupt_jpeg_errors() {
        let jpeg = encode(&sample(), OutputFormat::Jpeg).unwrap();
        // Truncated after the headers.
        assert!(decode(&jpeg[..jpeg.len() / 3], &DecodeLimits::default()).is_err());
        // A JPEG signature followed by garbage.
        let mut garbage = vec![0xFF, 0xD8, 0xFF, 0xE0];
        garbage.extend((0..500u32).map(|i| low_byte(i * 7 + 3)));
        assert!(decode(&garbage, &DecodeLimits::default()).is_err());
        // Not an image at all.
        assert!(matches!(
            decode(b"hello, world", &DecodeLimits::default()),
            Err(ImagingError::Unsupported(_))
        ));
        assert!(decode(&[], &DecodeLimits::default()).is_err());
    }

    #[test]
    fn damaged_bytes_never_panic() {
        for format in [OutputFormat::Jpeg, OutputFormat::Png] {
            let good = encode(&sample(), format).unwrap();
            for i in (0..good.len()).step_by(3) {
                let mut bad = good.clone();
                bad[i] ^= 0x5A;
                let _ = decode(&bad, &DecodeLimits::default());
                let _ = decode(&good[..i], &DecodeLimits::default());
            }
        }
    }

    #[test]
    fn exif_orientation_is_read_from_jpeg() {
        use image::codecs::jpeg::JpegEncoder;
        use image::ImageEncoder;
        // A big-endian TIFF block with one IFD entry: Orientation (0x0112),
        // SHORT, count 1, value 6 (rotate 90° clockwise to view).
        let exif: Vec<u8> = [
            &b"MM\x00\x2a\x00\x00\x00\x08"[..],
            &[0x00, 0x01],
            &[
                0x01, 0x12, 0x00, 0x03, 0x00, 0x00, 0x00, 0x01, 0x00, 0x06, 0x00, 0x00,
            ],
            &[0x00, 0x00, 0x00, 0x00],
        ]
        .concat();
        let img = sample();
        let mut bytes = Vec::new();
        let mut enc = JpegEncoder::new_with_quality(&mut bytes, 90);
        enc.set_exif_metadata(exif).unwrap();
        enc.write_image(img.as_raw(), 16, 8, image::ExtendedColorType::Rgb8)
            .unwrap();
        let decoded = decode(&bytes, &DecodeLimits::default()).unwrap();
        assert_eq!(decoded.orientation, Orientation::Rotate90);
        // Stored as is; turning it upright is PRE-000's job.
        assert_eq!(decoded.image.dimensions(), (16, 8));
    }

    #[test]
    fn gray_and_alpha_become_rgb() {
        let gray = image::GrayImage::from_pixel(3, 2, image::Luma([77]));
        let mut bytes = Vec::new();
        DynamicImage::ImageLuma8(gray)
            .write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png)
            .unwrap();
        let decoded = decode(&bytes, &DecodeLimits::default()).unwrap();
        assert!(decoded.image.pixels().all(|p| p.0 == [77; 3]));
    }
}
