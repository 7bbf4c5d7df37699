//! Methods that change values, not positions: brightness, contrast, hue,
//! saturation, solarize, posterize, grayscale and gaussian noise.

use std::sync::OnceLock;

use image::RgbImage;
use tessera_domain::generation::SplitMix64;

use super::{luma601, lut, map_lut, map_pixels, to_u8};

/// AUG-011: multiplies every channel by `factor` (1 = unchanged), clamping at
/// white.
pub fn brightness(img: &RgbImage, factor: f32) -> RgbImage {
    map_lut(img, &lut(|v| v * factor))
}

/// AUG-014: moves every value away from (`factor` > 1) or towards
/// (`factor` < 1) the image's mean luma, like PIL's ImageEnhance.Contrast;
/// 0 gives a flat gray.
pub fn contrast(img: &RgbImage, factor: f32) -> RgbImage {
    let mean = mean_luma(img) as f32;
    map_lut(img, &lut(|v| mean + (v - mean) * factor))
}

/// Mean Rec. 601 luma, on 0–255: exact integer sums per channel.
pub fn mean_luma(img: &RgbImage) -> f64 {
    let n = u64::from(img.width()) * u64::from(img.height());
    if n == 0 {
        return 0.0;
    }
    let [r, g, b] = channel_sums(img.as_raw());
    (299 * r + 587 * g + 114 * b) as f64 / (1000 * n) as f64
}

/// Sums of the R, G and B values of an interleaved RGB buffer. Four pixels
/// (12 bytes) at a time into twelve lanes, so the additions vectorise.
pub(crate) fn channel_sums(raw: &[u8]) -> [u64; 3] {
    let mut total = [0u64; 3];
    // 65,536 blocks of 12 bytes keep every u32 lane below 2^24.
    for block in raw.chunks(12 * 65_536) {
        let mut lanes = [0u32; 12];
        let blocks = block.chunks_exact(12);
        for (i, v) in blocks.remainder().iter().enumerate() {
            if let Some(t) = total.get_mut(i % 3) {
                *t += u64::from(*v);
            }
        }
        for chunk in blocks {
            for (l, v) in lanes.iter_mut().zip(chunk) {
                *l += u32::from(*v);
            }
        }
        for (i, l) in lanes.iter().enumerate() {
            if let Some(t) = total.get_mut(i % 3) {
                *t += u64::from(*l);
            }
        }
    }
    total
}

/// `1 / d` for every difference of two channel values (0 for 0), so the
/// per-pixel HSV work needs no division.
fn reciprocals() -> [f32; 256] {
    std::array::from_fn(|d| if d == 0 { 0.0 } else { 1.0 / d as f32 })
}

/// AUG-012: turns the hue by `shift` of a full circle (±0.5 = opposite
/// colour), in HSV. Value (the maximum) and saturation (the spread) stay, so
/// each pixel keeps its largest and smallest channel values; only which
/// channel holds them and the middle value change. That is the HSV round
/// trip without its divisions.
pub fn hue(img: &RgbImage, shift: f32) -> RgbImage {
    if shift == 0.0 {
        return img.clone();
    }
    let recip = reciprocals();
    // The turn in sextants of the circle, 0..6.
    let turn = shift.rem_euclid(1.0) * 6.0;
    map_pixels(img, |px| {
        let [r, g, b] = px;
        let (max, min) = (r.max(g).max(b), r.min(g).min(b));
        let d = max - min;
        if d == 0 {
            return px;
        }
        let (base, num) = if max == r {
            (0.0, f32::from(g) - f32::from(b))
        } else if max == g {
            (2.0, f32::from(b) - f32::from(r))
        } else {
            (4.0, f32::from(r) - f32::from(g))
        };
        let inv = recip.get(usize::from(d)).copied().unwrap_or(0.0);
        // In -1..12: one wrap either way brings it into 0..6.
        let mut h = base + num * inv + turn;
        if h < 0.0 {
            h += 6.0;
        }
        if h >= 6.0 {
            h -= 6.0;
        }
        let sextant = (h as u32).min(5);
        let f = h - sextant as f32;
        let t = if sextant & 1 == 1 { 1.0 - f } else { f };
        let mid = to_u8(f32::from(min) + f32::from(d) * t);
        match sextant {
            0 => [max, mid, min],
            1 => [mid, max, min],
            2 => [min, max, mid],
            3 => [min, mid, max],
            4 => [mid, min, max],
            _ => [max, min, mid],
        }
    })
}

/// AUG-013: multiplies the HSV saturation by `factor` (0 = gray, 1 =
/// unchanged), clamping at full saturation. With hue and value fixed, every
/// channel sits at `max - s·t·max` for a `t` set by the hue, so scaling the
/// saturation scales each channel's distance from the maximum: no round trip
/// through HSV is needed.
pub fn saturation(img: &RgbImage, factor: f32) -> RgbImage {
    let factor = factor.max(0.0);
    let recip = reciprocals();
    map_pixels(img, |px| {
        let [r, g, b] = px;
        let (max, min) = (r.max(g).max(b), r.min(g).min(b));
        let maxf = f32::from(max);
        // Full saturation (min = 0) is as far as the factor can go; a gray
        // pixel (reciprocal 0) stays as it is.
        let inv = recip.get(usize::from(max - min)).copied().unwrap_or(0.0);
        let f = factor.min(maxf * inv);
        px.map(|c| to_u8(maxf - f * (maxf - f32::from(c))))
    })
}

/// AUG-015: as Kornia's solarize: on the 0–1 range, adds `addition`
/// (clamped), then replaces every value `x >= threshold` by `1 - x`.
pub fn solarize(img: &RgbImage, threshold: f32, addition: f32) -> RgbImage {
    map_lut(
        img,
        &lut(|v| {
            let x = (v / 255.0 + addition).clamp(0.0, 1.0);
            let y = if x < threshold { x } else { 1.0 - x };
            y * 255.0
        }),
    )
}

/// AUG-016: keeps the `bits` high bits of every channel (8 = unchanged,
/// 0 = black).
pub fn posterize(img: &RgbImage, bits: u8) -> RgbImage {
    let mask = if bits >= 8 {
        0xFF
    } else {
        !(0xFFu8 >> bits.min(8))
    };
    super::same_size(img, img.as_raw().iter().map(|v| v & mask).collect())
}

/// PRE-001: Rec. 601 luma (0.299 R + 0.587 G + 0.114 B, rounded), written
/// to all three channels. The pipeline stays RGB so every later step and the
/// encoder see one pixel layout; a three-channel gray JPEG costs little more
/// than a one-channel one.
pub fn grayscale(img: &RgbImage) -> RgbImage {
    map_pixels(img, |[r, g, b]| {
        let l = luma601(r, g, b);
        [l, l, l]
    })
}

/// AUG-008: adds independent gaussian noise to every channel of every pixel;
/// `mean` and `std` are on the 0–1 range. The noise comes from `rng`, so a
/// recorded seed gives the same noise again. Each 64-bit draw yields four
/// normal values through a table of 65,536 normal quantiles (tails cut at
/// ±4.3 sigma, invisible at 8 bits per channel).
pub fn gaussian_noise(img: &RgbImage, mean: f32, std: f32, rng: &mut SplitMix64) -> RgbImage {
    let table = normal_quantiles();
    let mut out = img.clone();
    let (mean, std) = (mean * 255.0, std * 255.0);
    let buf: &mut [u8] = &mut out;
    for chunk in buf.chunks_mut(4) {
        let bits = rng.next_u64();
        for (j, v) in chunk.iter_mut().enumerate() {
            let index = ((bits >> (16 * j)) & 0xFFFF) as usize;
            let n = table.get(index).copied().unwrap_or(0.0);
            *v = to_u8(f32::from(*v) + mean + std * n);
        }
    }
    out
}

/// The standard normal quantiles at `(i + 0.5) / 65536`, computed once by
/// integrating the density (trapezoids of 1e-4) and inverting the running
/// sum.
fn normal_quantiles() -> &'static [f32] {
    static TABLE: OnceLock<Vec<f32>> = OnceLock::new();
    TABLE.get_or_init(|| {
        const N: usize = 1 << 16;
        const STEP: f64 = 1e-4;
        let pdf = |x: f64| (-0.5 * x * x).exp() / std::f64::consts::TAU.sqrt();
        let mut table = Vec::with_capacity(N);
        // Below −9 lies less than 1e-18 of the mass.
        let (mut x, mut cdf) = (-9.0f64, 0.0f64);
        for i in 0..N {
            let target = (i as f64 + 0.5) / N as f64;
            // The running sum reaches 1 - 1e-9 near +6, so this ends.
            while x < 9.0 {
                let next = cdf + 0.5 * STEP * (pdf(x) + pdf(x + STEP));
                if next >= target {
                    let t = (target - cdf) / (next - cdf);
                    table.push((x + t * STEP) as f32);
                    break;
                }
                cdf = next;
                x += STEP;
            }
        }
        table
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use image::Rgb;

    use super::*;

    fn gray(v: u8) -> RgbImage {
        RgbImage::from_pixel(4, 3, Rgb([v, v, v]))
    }

    #[test]
    fn brightness_scales_and_clamps() {
        assert!(brightness(&gray(100), 1.5)
            .pixels()
            .all(|p| p.0 == [150; 3]));
        assert!(brightness(&gray(200), 1.5)
            .pixels()
            .all(|p| p.0 == [255; 3]));
        assert!(brightness(&gray(101), 0.75)
            .pixels()
            .all(|p| p.0 == [76; 3]));
        let img = RgbImage::from_pixel(1, 1, Rgb([10, 100, 180]));
        assert_eq!(brightness(&img, 1.5).get_pixel(0, 0).0, [15, 150, 255]);
    }

    #[test]
    fn contrast_moves_values_around_the_mean() {
        // Half 100, half 200: mean luma 150.
        let img = RgbImage::from_fn(
            4,
            2,
            |x, _| if x < 2 { Rgb([100; 3]) } else { Rgb([200; 3]) },
        );
        let out = contrast(&img, 1.5);
        assert_eq!(out.get_pixel(0, 0).0, [75; 3]);
        assert_eq!(out.get_pixel(3, 1).0, [225; 3]);
        let flat = contrast(&img, 0.0);
        assert!(flat.pixels().all(|p| p.0 == [150; 3]));
        assert_eq!(contrast(&img, 1.0), img);
        // Clamped at both ends.
        let out = contrast(&img, 4.0);
        assert_eq!(out.get_pixel(0, 0).0, [0; 3]);
        assert_eq!(out.get_pixel(3, 0).0, [255; 3]);
    }

    #[test]
    fn hue_turns_the_colour_circle() {
        let red = RgbImage::from_pixel(2, 2, Rgb([255, 0, 0]));
        assert_eq!(hue(&red, 1.0 / 3.0).get_pixel(0, 0).0, [0, 255, 0]);
        assert_eq!(hue(&red, -1.0 / 3.0).get_pixel(0, 0).0, [0, 0, 255]);
        assert_eq!(hue(&red, 0.5).get_pixel(0, 0).0, [0, 255, 255]);
        // Gray has no hue to turn.
        assert_eq!(hue(&gray(77), 0.25), gray(77));
    }

    #[test]
    fn saturation_scales_towards_gray() {
        let img = RgbImage::from_pixel(1, 1, Rgb([200, 100, 100]));
        // S = 0.5, V = 200/255: halving S gives (200, 150, 150).
        assert_eq!(saturation(&img, 0.5).get_pixel(0, 0).0, [200, 150, 150]);
        assert_eq!(saturation(&img, 0.0).get_pixel(0, 0).0, [200, 200, 200]);
        assert_eq!(saturation(&img, 2.0).get_pixel(0, 0).0, [200, 0, 0]);
        assert_eq!(saturation(&img, 1.0), img);
    }

    #[test]
    fn solarize_inverts_above_the_threshold() {
        let img = RgbImage::from_pixel(1, 1, Rgb([51, 102, 204]));
        // 0.2 and 0.4 stay, 0.8 becomes 0.2.
        assert_eq!(solarize(&img, 0.5, 0.0).get_pixel(0, 0).0, [51, 102, 51]);
        // With +0.05: 0.25 and 0.45 stay, 0.85 becomes 0.15.
        assert_eq!(solarize(&img, 0.5, 0.05).get_pixel(0, 0).0, [64, 115, 38]);
        // With −0.25: 0 (clamped) and 0.15 stay, 0.55 becomes 0.45.
        assert_eq!(solarize(&img, 0.45, -0.25).get_pixel(0, 0).0, [0, 38, 115]);
        // Threshold 1 never inverts, threshold 0 inverts everything.
        assert_eq!(solarize(&img, 1.0, 0.0), img);
        assert_eq!(solarize(&img, 0.0, 0.0).get_pixel(0, 0).0, [204, 153, 51]);
    }

    #[test]
    fn posterize_masks_low_bits() {
        let img = RgbImage::from_pixel(1, 1, Rgb([0b1011_0111, 0b0001_1111, 255]));
        assert_eq!(
            posterize(&img, 3).get_pixel(0, 0).0,
            [0b1010_0000, 0b0000_0000, 0b1110_0000]
        );
        assert_eq!(posterize(&img, 8), img);
        assert_eq!(posterize(&img, 1).get_pixel(0, 0).0, [128, 0, 128]);
        assert_eq!(posterize(&img, 0).get_pixel(0, 0).0, [0, 0, 0]);
    }

    #[test]
    fn grayscale_is_rec601_luma() {
        let img = RgbImage::from_fn(3, 1, |x, _| match x {
            0 => Rgb([255, 0, 0]),
            1 => Rgb([0, 255, 0]),
            _ => Rgb([10, 200, 30]),
        });
        let out = grayscale(&img);
        assert_eq!(out.get_pixel(0, 0).0, [76; 3]);
        assert_eq!(out.get_pixel(1, 0).0, [150; 3]);
        // 0.299·10 + 0.587·200 + 0.114·30 = 123.81
        assert_eq!(out.get_pixel(2, 0).0, [124; 3]);
    }

    #[test]
    fn normal_table_is_a_standard_normal() {
        let t = normal_quantiles();
        assert_eq!(t.len(), 65536);
        assert!(t.windows(2).all(|p| p[0] < p[1]));
        for i in 0..t.len() {
            assert!((t[i] + t[t.len() - 1 - i]).abs() < 1e-4, "symmetry at {i}");
        }
        // Φ⁻¹(0.975) = 1.959964, Φ⁻¹(0.841345) = 1.
        assert!((t[(0.975 * 65536.0) as usize] - 1.959964).abs() < 2e-3);
        assert!((t[(0.841345 * 65536.0) as usize] - 1.0).abs() < 2e-3);
        let var = t.iter().map(|v| f64::from(v * v)).sum::<f64>() / t.len() as f64;
        assert!((var - 1.0).abs() < 2e-3, "variance {var}");
    }

    #[test]
    fn noise_has_the_requested_spread() {
        let img = gray(128);
        let big = RgbImage::from_pixel(200, 200, Rgb([128; 3]));
        let out = gaussian_noise(&big, 0.0, 0.1, &mut SplitMix64::new(3));
        let vals: Vec<f64> = out.as_raw().iter().map(|v| f64::from(*v)).collect();
        let mean = vals.iter().sum::<f64>() / vals.len() as f64;
        let var = vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / vals.len() as f64;
        assert!((mean - 128.0).abs() < 0.5, "mean {mean}");
        assert!((var.sqrt() - 25.5).abs() < 0.5, "std {}", var.sqrt());
        // Same seed, same noise; another seed, other noise.
        let a = gaussian_noise(&img, 0.0, 0.1, &mut SplitMix64::new(1));
        assert_eq!(a, gaussian_noise(&img, 0.0, 0.1, &mut SplitMix64::new(1)));
        assert_ne!(a, gaussian_noise(&img, 0.0, 0.1, &mut SplitMix64::new(2)));
        // No spread, only a shift.
        let shifted = gaussian_noise(&img, 0.1, 0.0, &mut SplitMix64::new(1));
        assert!(shifted.pixels().all(|p| p.0 == [154; 3]));
    }
}
