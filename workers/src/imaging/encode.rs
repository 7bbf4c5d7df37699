//! Encoding results in the source's container. The encoders are
//! deterministic: the same pixels give the same bytes, so a re-run job writes
//! byte-identical outputs (and hashes).

mod jpeg;

use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::{ExtendedColorType, ImageEncoder, RgbImage};

use super::ImagingError;

/// JPEG quality of generated images.
pub const JPEG_QUALITY: u8 = 90;

/// The containers outputs are written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutputFormat {
    Jpeg,
    Png,
}

impl OutputFormat {
    /// The file extension, without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            OutputFormat::Jpeg => "jpg",
            OutputFormat::Png => "png",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            OutputFormat::Jpeg => "image/jpeg",
            OutputFormat::Png => "image/png",
        }
    }
}

/// Encodes as JPEG (baseline, quality [`JPEG_QUALITY`], no chroma
/// subsampling; our own encoder, [`jpeg`]) or PNG (default compression,
/// adaptive filters). No metadata is written, so no EXIF orientation either.
pub fn encode(img: &RgbImage, format: OutputFormat) -> Result<Vec<u8>, ImagingError> {
    let (w, h) = img.dimensions();
    match format {
        OutputFormat::Jpeg => jpeg::encode(img, JPEG_QUALITY).ok_or_else(|| {
            ImagingError::Encode(format!("{w}×{h} pixels cannot be written as JPEG"))
        }),
        OutputFormat::Png => {
            let mut out = Vec::new();
            PngEncoder::new_with_quality(&mut out, CompressionType::Default, FilterType::Adaptive)
                .write_image(img.as_raw(), w, h, ExtendedColorType::Rgb8)
                .map_err(|e| ImagingError::Encode(e.to_string()))?;
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests {

    use image::Rgb;

    use super::super::low_byte;
    use super::*;

    #[test]
    fn same_pixels_same_bytes() {
        let img = RgbImage::from_fn(33, 17, |x, y| {
            Rgb([low_byte(x * 7), low_byte(y * 13), low_byte(x ^ y)])
        });
        for format in [OutputFormat::Jpeg, OutputFormat::Png] {
            let a = encode(&img, format).unwrap();
            assert_eq!(a, encode(&img, format).unwrap());
            assert!(!a.is_empty());
        }
        assert_eq!(&encode(&img, OutputFormat::Png).unwrap()[1..4], b"PNG");
        assert_eq!(
            &encode(&img, OutputFormat::Jpeg).unwrap()[..2],
            &[0xFF, 0xD8]
        );
    }

    #[test]
    fn png_is_lossless_and_jpeg_close() {
        let img = RgbImage::from_fn(16, 16, |x, y| {
            Rgb([low_byte(x * 16), low_byte(y * 16), 100])
        });
        let png = image::load_from_memory(&encode(&img, OutputFormat::Png).unwrap()).unwrap();
        assert_eq!(png.to_rgb8(), img);
        let jpeg = image::load_from_memory(&encode(&img, OutputFormat::Jpeg).unwrap()).unwrap();
        let jpeg = jpeg.to_rgb8();
        let worst = img
            .as_raw()
            .iter()
            .zip(jpeg.as_raw())
            .map(|(a, b)| a.abs_diff(*b))
            .max()
            .unwrap();
        assert!(worst < 24, "worst JPEG error {worst}");
    }
}
