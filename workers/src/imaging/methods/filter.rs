//! Neighbourhood filters: gaussian blur, PIL-style sharpness, unsharp mask.

use image::RgbImage;

use super::{reflect, to_u8};

/// A normalised, symmetric gaussian kernel of odd length `size` (even sizes
/// are raised by one).
pub fn gaussian_kernel(size: usize, sigma: f32) -> Vec<f32> {
    let size = size.max(1) | 1;
    let r = (size / 2) as f32;
    let sigma = sigma.max(1e-3);
    let mut k: Vec<f32> = (0..size)
        .map(|i| {
            let d = i as f32 - r;
            (-(d * d) / (2.0 * sigma * sigma)).exp()
        })
        .collect();
    let sum: f32 = k.iter().sum();
    for v in &mut k {
        *v /= sum;
    }
    k
}

/// Separable gaussian blur with mirrored (`reflect`) borders, streamed: calls
/// `emit(y, row)` for each output row, top to bottom, with the unrounded
/// interleaved RGB values (0–255). Memory is a few rows, whatever the image
/// size; both passes are multiply-adds over whole rows.
pub(crate) fn blurred_rows(
    img: &RgbImage,
    kernel_size: usize,
    sigma: f32,
    mut emit: impl FnMut(usize, &[f32]),
) {
    let (w, h) = (img.width() as usize, img.height() as usize);
    if w == 0 || h == 0 {
        return;
    }
    let stride = w * 3;
    let k = gaussian_kernel(kernel_size, sigma);
    let r = k.len() / 2;
    let src = img.as_raw();
    let mut column = vec![0f32; stride];
    let mut padded = vec![0f32; (w + 2 * r) * 3];
    let mut out = vec![0f32; stride];
    for y in 0..h {
        // Vertical pass for this row: a weighted sum of mirrored source rows.
        column.fill(0.0);
        for (i, kv) in k.iter().enumerate() {
            let sy = reflect(y as isize + i as isize - r as isize, h);
            if let Some(row) = src.get(sy * stride..(sy + 1) * stride) {
                for (c, v) in column.iter_mut().zip(row) {
                    *c += kv * f32::from(*v);
                }
            }
        }
        // Horizontal pass: mirror the row into a padded buffer, then add up
        // shifted copies of it.
        if let Some(mid) = padded.get_mut(r * 3..r * 3 + stride) {
            mid.copy_from_slice(&column);
        }
        for j in 0..r {
            for (dst, from) in [
                (j, reflect(j as isize - r as isize, w)),
                (r + w + j, reflect((w + j) as isize, w)),
            ] {
                if let (Some(d), Some(s)) = (
                    padded.get_mut(dst * 3..dst * 3 + 3),
                    column.get(from * 3..from * 3 + 3),
                ) {
                    d.copy_from_slice(s);
                }
            }
        }
        out.fill(0.0);
        for (i, kv) in k.iter().enumerate() {
            if let Some(shifted) = padded.get(i * 3..i * 3 + stride) {
                for (o, v) in out.iter_mut().zip(shifted) {
                    *o += kv * v;
                }
            }
        }
        emit(y, &out);
    }
}

/// AUG-009: gaussian blur with an odd `kernel_size` and standard deviation
/// `sigma` (pixels), borders mirrored as Kornia's default `reflect` does.
pub fn gaussian_blur(img: &RgbImage, kernel_size: u32, sigma: f32) -> RgbImage {
    let mut out = RgbImage::new(img.width(), img.height());
    let stride = img.width() as usize * 3;
    let buf: &mut [u8] = &mut out;
    blurred_rows(img, kernel_size as usize, sigma, |y, row| {
        if let Some(dst) = buf.get_mut(y * stride..(y + 1) * stride) {
            for (d, v) in dst.iter_mut().zip(row) {
                *d = to_u8(*v);
            }
        }
    });
    out
}

/// AUG-010: PIL's ImageEnhance.Sharpness. Blends the image with its smoothed
/// copy (3×3 kernel `[1 1 1; 1 5 1; 1 1 1] / 13`, border pixels kept):
/// `factor` 0 gives the smoothed image, 1 the original, above 1 sharper.
pub fn sharpness(img: &RgbImage, factor: f32) -> RgbImage {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let mut out = img.clone();
    if w < 3 || h < 3 {
        return out;
    }
    let stride = w * 3;
    let src = img.as_raw();
    let buf: &mut [u8] = &mut out;
    for (y, out_row) in buf.chunks_exact_mut(stride).enumerate().take(h - 1).skip(1) {
        let rows = (
            src.get((y - 1) * stride..y * stride),
            src.get(y * stride..(y + 1) * stride),
            src.get((y + 1) * stride..(y + 2) * stride),
        );
        let (Some(above), Some(row), Some(below)) = rows else {
            continue;
        };
        let Some(inner) = out_row.get_mut(3..stride - 3) else {
            continue;
        };
        // Each window of 7 bytes spans the left, centre and right pixel of
        // one channel: offsets 0, 3 and 6.
        let windows = above.windows(7).zip(row.windows(7)).zip(below.windows(7));
        for (o, ((a, b), c)) in inner.iter_mut().zip(windows) {
            if let ([a0, _, _, a3, _, _, a6], [b0, _, _, b3, _, _, b6], [c0, _, _, c3, _, _, c6]) =
                (a, b, c)
            {
                let sum = [a0, a3, a6, b0, b6, c0, c3, c6]
                    .iter()
                    .map(|v| u32::from(**v))
                    .sum::<u32>()
                    + 5 * u32::from(*b3);
                let smooth = ((sum + 6) / 13) as f32;
                *o = to_u8(smooth + factor * (f32::from(*b3) - smooth));
            }
        }
    }
    out
}

/// Kernel size that holds ±3 sigma.
pub(crate) fn kernel_for(sigma: f32) -> usize {
    (2.0 * (3.0 * sigma).ceil() + 1.0).max(3.0) as usize
}

/// Unsharp mask: `image + amount · (image − gaussian_blur(image, sigma))`.
/// A negative `amount` (down to −1, the blurred image) softens instead.
pub fn unsharp_mask(img: &RgbImage, sigma: f32, amount: f32) -> RgbImage {
    let blurred = gaussian_blur(img, kernel_for(sigma) as u32, sigma);
    blend_away(img, &blurred, amount)
}

/// `image + amount · (image − other)`, per value: extrapolates away from
/// `other` (amount > 0) or towards it (amount < 0).
pub(crate) fn blend_away(img: &RgbImage, other: &RgbImage, amount: f32) -> RgbImage {
    let mut out = img.clone();
    let buf: &mut [u8] = &mut out;
    for (v, o) in buf.iter_mut().zip(other.as_raw()) {
        let x = f32::from(*v);
        *v = to_u8(x + amount * (x - f32::from(*o)));
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use image::Rgb;

    use super::*;

    #[test]
    fn kernel_is_normalised_and_symmetric() {
        for (size, sigma) in [(3, 1.0), (7, 2.0), (27, 10.0), (5, 0.1)] {
            let k = gaussian_kernel(size, sigma);
            assert_eq!(k.len(), size);
            assert!((k.iter().sum::<f32>() - 1.0).abs() < 1e-5);
            for i in 0..size {
                assert!((k[i] - k[size - 1 - i]).abs() < 1e-7);
            }
            assert!(k[size / 2] >= k[0]);
        }
    }

    #[test]
    fn blur_of_constant_is_constant() {
        let img = RgbImage::from_pixel(13, 9, Rgb([40, 90, 250]));
        for (k, s) in [(3, 1.0), (27, 10.0)] {
            assert!(gaussian_blur(&img, k, s)
                .pixels()
                .all(|p| p.0 == [40, 90, 250]));
        }
    }

    #[test]
    fn blur_of_impulse_is_symmetric_and_keeps_the_sum() {
        let mut img = RgbImage::new(21, 21);
        img.put_pixel(10, 10, Rgb([255, 255, 255]));
        let mut raw = Vec::new();
        blurred_rows(&img, 7, 1.5, |_, row| raw.extend_from_slice(row));
        let at = |x: usize, y: usize| raw[(y * 21 + x) * 3];
        let sum: f32 = raw.iter().step_by(3).sum();
        assert!((sum - 255.0).abs() < 1e-2, "sum {sum}");
        for dy in 0..=3 {
            for dx in 0..=3 {
                let v = at(10 + dx, 10 + dy);
                for w in [
                    at(10 - dx, 10 + dy),
                    at(10 + dx, 10 - dy),
                    at(10 - dx, 10 - dy),
                    at(10 + dy, 10 + dx),
                ] {
                    assert!((v - w).abs() < 1e-3);
                }
            }
        }
        assert!(at(10, 10) > at(11, 10) && at(11, 10) > at(12, 10));
        assert_eq!(at(14, 10), 0.0);

        let out = gaussian_blur(&img, 7, 1.5);
        let total: u32 = out.pixels().map(|p| u32::from(p.0[0])).sum();
        assert!(total.abs_diff(255) <= 8, "rounded sum {total}");
        assert_eq!(out.get_pixel(9, 10), out.get_pixel(11, 10));
        assert_eq!(out.get_pixel(10, 9), out.get_pixel(10, 11));
    }

    #[test]
    fn blur_handles_images_smaller_than_the_kernel() {
        let img = RgbImage::from_fn(2, 1, |x, _| Rgb([(x * 100) as u8, 0, 0]));
        let out = gaussian_blur(&img, 27, 10.0);
        assert_eq!(out.dimensions(), (2, 1));
        assert!(out.get_pixel(0, 0).0[0] > 0 && out.get_pixel(1, 0).0[0] < 100);
    }

    #[test]
    fn sharpness_follows_pil() {
        let mut img = RgbImage::new(3, 3);
        img.put_pixel(1, 1, Rgb([130, 130, 130]));
        // Smoothed centre: 5·130 / 13 = 50.
        assert_eq!(sharpness(&img, 0.0).get_pixel(1, 1).0, [50; 3]);
        assert_eq!(sharpness(&img, 0.5).get_pixel(1, 1).0, [90; 3]);
        assert_eq!(sharpness(&img, 2.0).get_pixel(1, 1).0, [210; 3]);
        assert_eq!(sharpness(&img, 1.0), img);
        // Border pixels are kept.
        assert_eq!(sharpness(&img, 0.0).get_pixel(0, 1).0, [0; 3]);
        let flat = RgbImage::from_pixel(8, 8, Rgb([77, 88, 99]));
        assert_eq!(sharpness(&flat, 3.0), flat);
    }

    #[test]
    fn unsharp_mask_steepens_edges() {
        let img = RgbImage::from_fn(
            20,
            5,
            |x, _| if x < 10 { Rgb([100; 3]) } else { Rgb([150; 3]) },
        );
        let out = unsharp_mask(&img, 1.0, 1.0);
        assert!(out.get_pixel(9, 2).0[0] < 100);
        assert!(out.get_pixel(10, 2).0[0] > 150);
        assert_eq!(out.get_pixel(0, 2).0, [100; 3]);
        assert_eq!(unsharp_mask(&img, 1.0, 0.0), img);
    }
}
