//! Resizing, through fast_image_resize (SIMD Lanczos3 convolution).

use fast_image_resize::{ResizeOptions, Resizer};
use image::RgbImage;

use crate::imaging::{check_output_size, ImagingError};

/// Resizes to exactly `width`×`height` with a Lanczos3 filter.
pub fn resize(img: &RgbImage, width: u32, height: u32) -> Result<RgbImage, ImagingError> {
    if img.dimensions() == (width, height) {
        return Ok(img.clone());
    }
    resize_with(img, width, height, &ResizeOptions::new())
}

/// Resizes the source window `(left, top, width, height)` (fractional pixels
/// allowed) to exactly `width`×`height`.
pub fn resize_region(
    img: &RgbImage,
    (left, top, w, h): (f64, f64, f64, f64),
    width: u32,
    height: u32,
) -> Result<RgbImage, ImagingError> {
    resize_with(
        img,
        width,
        height,
        &ResizeOptions::new().crop(left, top, w, h),
    )
}

fn resize_with(
    img: &RgbImage,
    width: u32,
    height: u32,
    options: &ResizeOptions,
) -> Result<RgbImage, ImagingError> {
    check_output_size(width, height)?;
    if img.width() == 0 || img.height() == 0 || width == 0 || height == 0 {
        return Ok(RgbImage::new(width, height));
    }
    let mut out = RgbImage::new(width, height);
    Resizer::new()
        .resize(img, &mut out, options)
        .map_err(|e| ImagingError::Resize(e.to_string()))?;
    Ok(out)
}

/// AUG-017: upscales by an integer `factor` (2–4) with a Lanczos3 filter.
/// This is interpolation, not a learned model: it gives models larger
/// inputs without inventing detail.
pub fn super_resolution(img: &RgbImage, factor: u32) -> Result<RgbImage, ImagingError> {
    let width = img.width().saturating_mul(factor);
    let height = img.height().saturating_mul(factor);
    check_output_size(width, height)?;
    resize(img, width, height)
}

/// PRE-009: resizes to the reference image's size, so a whole project
/// shares one resolution.
pub fn high_resolution(img: &RgbImage, reference: &RgbImage) -> Result<RgbImage, ImagingError> {
    resize(img, reference.width(), reference.height())
}

#[cfg(test)]
mod tests {

    use image::Rgb;

    use super::*;

    #[test]
    fn super_resolution_doubles_the_size() {
        let img = RgbImage::from_pixel(31, 17, Rgb([10, 120, 230]));
        let out = super_resolution(&img, 2).unwrap();
        assert_eq!(out.dimensions(), (62, 34));
        assert!(out.pixels().all(|p| p.0 == [10, 120, 230]));
        assert_eq!(super_resolution(&img, 4).unwrap().dimensions(), (124, 68));
    }

    #[test]
    fn super_resolution_keeps_structure() {
        // A vertical edge stays an edge in the same place.
        let img = RgbImage::from_fn(
            20,
            4,
            |x, _| if x < 10 { Rgb([0; 3]) } else { Rgb([255; 3]) },
        );
        let out = super_resolution(&img, 2).unwrap();
        assert_eq!(out.get_pixel(5, 3).0, [0; 3]);
        assert_eq!(out.get_pixel(34, 3).0, [255; 3]);
    }

    #[test]
    fn super_resolution_refuses_giant_outputs() {
        let img = RgbImage::new(9000, 1);
        assert!(matches!(
            super_resolution(&img, 2),
            Err(ImagingError::OutputTooLarge { .. })
        ));
    }

    #[test]
    fn high_resolution_takes_the_reference_size() {
        let img = RgbImage::from_pixel(40, 30, Rgb([5, 6, 7]));
        let reference = RgbImage::new(64, 48);
        let out = high_resolution(&img, &reference).unwrap();
        assert_eq!(out.dimensions(), (64, 48));
        assert!(out.pixels().all(|p| p.0 == [5, 6, 7]));
        let small = RgbImage::new(10, 5);
        assert_eq!(high_resolution(&img, &small).unwrap().dimensions(), (10, 5));
    }
}
