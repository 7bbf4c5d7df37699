//! The image methods, one function each, over 8-bit RGB images.
//!
//! Every function takes the image and its typed parameters and returns a new
//! image; none of them draws random numbers except gaussian noise, which takes
//! the generator explicitly. The hot loops work on the raw interleaved
//! `[r, g, b, r, g, b, …]` slice, through lookup tables where a method maps
//! each value on its own.

pub mod color;
pub mod filter;
pub mod geometry;
pub mod normalize;
pub mod resize;

use image::RgbImage;

/// Rec. 601 luma weights (the ones PIL and Kornia use for grayscale).
pub const LUMA_WEIGHTS: [f32; 3] = [0.299, 0.587, 0.114];

/// Rec. 601 luma of one pixel, rounded to the nearest integer.
#[expect(
    clippy::cast_possible_truncation,
    reason = "the weights sum to 1000, so the quotient is at most (255_000 + 500) / 1000 = 255"
)]
pub fn luma601(r: u8, g: u8, b: u8) -> u8 {
    let sum = 299 * u32::from(r) + 587 * u32::from(g) + 114 * u32::from(b);
    ((sum + 500) / 1000) as u8
}

/// Rec. 601 luma of one pixel, unrounded, on the 0–255 range.
pub(crate) fn luma_f32(px: &[u8]) -> f32 {
    match *px {
        [r, g, b] => {
            LUMA_WEIGHTS[0] * f32::from(r)
                + LUMA_WEIGHTS[1] * f32::from(g)
                + LUMA_WEIGHTS[2] * f32::from(b)
        }
        _ => 0.0,
    }
}

/// Rounds (half up) and clamps to a channel value; NaN becomes 0. The same
/// value as the saturating cast `(v + 0.5) as u8`, computed without it: LLVM
/// turns that cast into one scalar conversion per lane, so loops around it
/// never vectorise.
#[inline(always)]
pub(crate) fn to_u8(v: f32) -> u8 {
    floor_u8(v + 0.5)
}

/// `floor(y)` clamped to 0–255 (NaN to 0), branch-free and vectorisable:
/// after clamping, adding 2^23 leaves `y` rounded to the nearest integer in
/// the low mantissa bits, and one comparison turns that rounding into a floor.
#[inline(always)]
#[expect(
    clippy::cast_possible_truncation,
    reason = "the low byte of the bits of 2^23 + n is n: y is clamped to 0..=255 first"
)]
pub(crate) fn floor_u8(y: f32) -> u8 {
    const MAGIC: f32 = 8_388_608.0;
    // Comparisons as selects, so that NaN falls to 0 and the compiler emits
    // plain max/min instructions.
    let y = if y > 0.0 { y } else { 0.0 };
    let y = if y < 255.0 { y } else { 255.0 };
    let r = y + MAGIC;
    let down = u32::from(r - MAGIC > y);
    // The bits of 2^23 + n hold n in their low byte.
    r.to_bits().wrapping_sub(down) as u8
}

/// `v` rounded to the nearest integer (ties to even), for `v` known to lie
/// in −0.5..255.5: adding 2^23 leaves exactly that rounding in the low
/// mantissa bits. One addition per lane, where [`to_u8`] needs the clamps
/// and the correction to round half up.
#[inline(always)]
#[expect(
    clippy::cast_possible_truncation,
    reason = "the low byte of the bits of 2^23 + n is n, for the n in 0..=255 callers promise"
)]
pub(crate) fn round_in_range(v: f32) -> u8 {
    (v + 8_388_608.0).to_bits() as u8
}

/// `v` truncated toward zero and saturated to 0–255, NaN to 0: what the
/// float-to-integer `as` does, named. [`to_u8`] is this of `v + 0.5`,
/// computed in a form that vectorises; this one is the cheaper of the two
/// in scalar loops.
#[inline(always)]
#[expect(
    clippy::cast_possible_truncation,
    reason = "saturating at 0 and 255 (NaN at 0) is the result this function promises"
)]
pub(crate) fn saturating_u8(v: f32) -> u8 {
    v as u8
}

/// `v` clamped to `lo..=hi` (NaN to `lo`), its fraction dropped: sizes,
/// offsets and counts computed in floating point, bounded by the image.
/// Callers round first where they mean rounding.
#[inline(always)]
#[expect(
    clippy::cast_possible_truncation,
    reason = "clamped to lo..=hi, both u32, just before the cast"
)]
pub(crate) fn clamp_to_u32(v: f64, lo: u32, hi: u32) -> u32 {
    // `max` first: it takes `lo` for NaN.
    v.max(f64::from(lo)).min(f64::from(hi)) as u32
}

/// `v` rounded to the nearest `f32`: method parameters (within the
/// catalog's bounds), statistics on the 0–255 scale and the factors solved
/// from them, for the pixel arithmetic, which is in `f32`.
#[inline(always)]
#[expect(
    clippy::cast_possible_truncation,
    reason = "such values lie far inside f32's range; rounding to the nearest f32 is the intent"
)]
pub(crate) fn to_f32(v: f64) -> f32 {
    v as f32
}

pub(crate) use super::simd::dispatch;
#[cfg(test)]
pub(crate) use super::simd::with_baseline;

/// A lookup table from a mapping of values on the 0–255 range.
pub(crate) fn lut(f: impl Fn(f32) -> f32) -> [u8; 256] {
    let mut table = [0u8; 256];
    for (v, slot) in (0u8..=255).zip(table.iter_mut()) {
        *slot = to_u8(f(f32::from(v)));
    }
    table
}

/// `table[v]`; a u8 always indexes 256 entries, so no check is left.
#[inline(always)]
pub(crate) fn look_up(table: &[u8; 256], v: u8) -> u8 {
    table.get(usize::from(v)).copied().unwrap_or(v)
}

/// Applies one lookup table to every channel.
pub(crate) fn map_lut(img: &RgbImage, table: &[u8; 256]) -> RgbImage {
    let raw: Vec<u8> = img.as_raw().iter().map(|v| look_up(table, *v)).collect();
    same_size(img, raw)
}

/// Applies one lookup table per channel.
pub(crate) fn map_luts(img: &RgbImage, tables: &[[u8; 256]; 3]) -> RgbImage {
    let [tr, tg, tb] = tables;
    map_pixels(img, |[r, g, b]| {
        [look_up(tr, r), look_up(tg, g), look_up(tb, b)]
    })
}

/// Applies a function to every pixel. Four pixels per step, so their
/// independent work overlaps in the CPU.
pub(crate) fn map_pixels(img: &RgbImage, f: impl Fn([u8; 3]) -> [u8; 3]) -> RgbImage {
    let src = img.as_raw();
    // Every byte is written: blocks of four pixels, then the rest.
    let mut raw = crate::imaging::buffers::take(src.len());
    let mut d_blocks = raw.chunks_exact_mut(12);
    let mut s_blocks = src.chunks_exact(12);
    for (d, s) in d_blocks.by_ref().zip(s_blocks.by_ref()) {
        if let (
            [d0, d1, d2, d3, d4, d5, d6, d7, d8, d9, d10, d11],
            &[s0, s1, s2, s3, s4, s5, s6, s7, s8, s9, s10, s11],
        ) = (d, s)
        {
            let ([a0, a1, a2], [b0, b1, b2]) = (f([s0, s1, s2]), f([s3, s4, s5]));
            let ([c0, c1, c2], [e0, e1, e2]) = (f([s6, s7, s8]), f([s9, s10, s11]));
            [*d0, *d1, *d2, *d3, *d4, *d5, *d6, *d7, *d8, *d9, *d10, *d11] =
                [a0, a1, a2, b0, b1, b2, c0, c1, c2, e0, e1, e2];
        }
    }
    let rest = s_blocks.remainder();
    for (d, s) in d_blocks
        .into_remainder()
        .chunks_exact_mut(3)
        .zip(rest.chunks_exact(3))
    {
        if let ([d0, d1, d2], &[r, g, b]) = (d, s) {
            [*d0, *d1, *d2] = f([r, g, b]);
        }
    }
    same_size(img, raw)
}

/// An image of `img`'s size over `raw`, which holds exactly its pixels.
pub(crate) fn same_size(img: &RgbImage, raw: Vec<u8>) -> RgbImage {
    let (w, h) = img.dimensions();
    RgbImage::from_raw(w, h, raw).unwrap_or_else(|| RgbImage::new(w, h))
}

/// RGB (0–255) to HSV, each on 0–1; hue 0 is red, and turns through green
/// (1/3) and blue (2/3).
pub(crate) fn rgb_to_hsv([r, g, b]: [u8; 3]) -> [f32; 3] {
    let (r, g, b) = (
        f32::from(r) / 255.0,
        f32::from(g) / 255.0,
        f32::from(b) / 255.0,
    );
    let max = r.max(g).max(b);
    let min = r.min(g).min(b);
    let delta = max - min;
    let s = if max > 0.0 { delta / max } else { 0.0 };
    let h = if delta <= 0.0 {
        0.0
    } else if max == r {
        ((g - b) / delta).rem_euclid(6.0) / 6.0
    } else if max == g {
        ((b - r) / delta + 2.0) / 6.0
    } else {
        ((r - g) / delta + 4.0) / 6.0
    };
    [h, s, max]
}

/// HSV saturation of one pixel, `(max - min) / max`, without the hue.
pub(crate) fn hsv_saturation(px: &[u8]) -> f32 {
    match *px {
        [r, g, b] => {
            let max = r.max(g).max(b);
            let min = r.min(g).min(b);
            if max == 0 {
                0.0
            } else {
                f32::from(max - min) / f32::from(max)
            }
        }
        _ => 0.0,
    }
}

/// HSV (each on 0–1, hue wrapping) back to RGB (0–255).
#[cfg(test)]
pub(crate) fn hsv_to_rgb([h, s, v]: [f32; 3]) -> [u8; 3] {
    let h6 = h.rem_euclid(1.0) * 6.0;
    let c = v * s;
    let x = c * (1.0 - ((h6 % 2.0) - 1.0).abs());
    let m = v - c;
    let (r, g, b) = match saturating_u8(h6) {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        4 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    [
        to_u8((r + m) * 255.0),
        to_u8((g + m) * 255.0),
        to_u8((b + m) * 255.0),
    ]
}

/// Mirrors an index into `0..n` the way numpy's `reflect` padding does
/// (`-1 → 1`, `n → n - 2`), folding as often as needed.
pub(crate) fn reflect(i: isize, n: usize) -> usize {
    let n = n as isize;
    if n <= 1 {
        return 0;
    }
    let period = 2 * (n - 1);
    let m = i.rem_euclid(period);
    (if m < n { m } else { period - m }) as usize
}

#[cfg(test)]
mod tests {

    use super::*;

    #[test]
    fn hsv_round_trips() {
        for rgb in [
            [255, 0, 0],
            [0, 255, 0],
            [0, 0, 255],
            [12, 200, 99],
            [128, 128, 128],
            [0, 0, 0],
        ] {
            assert_eq!(hsv_to_rgb(rgb_to_hsv(rgb)), rgb);
        }
        assert_eq!(rgb_to_hsv([0, 255, 0])[0], 1.0 / 3.0);
    }

    #[test]
    fn reflect_indexes() {
        let got: Vec<usize> = (-3..8).map(|i| reflect(i, 5)).collect();
        assert_eq!(got, [3, 2, 1, 0, 1, 2, 3, 4, 3, 2, 1]);
        assert_eq!(reflect(-7, 1), 0);
    }

    #[test]
    fn to_u8_is_the_saturating_cast() {
        let mut values = vec![
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            -0.0,
            -0.5,
            -0.6,
            254.49,
            254.5,
            255.0,
            255.5,
            1e9,
            -1e9,
        ];
        for k in -4..2100 {
            let h = k as f32 * 0.125;
            values.extend([h, h.next_up(), h.next_down()]);
        }
        for v in values {
            assert_eq!(to_u8(v), saturating_u8(v + 0.5), "{v}");
        }
    }

    #[test]
    fn luma_is_rec601() {
        assert_eq!(luma601(255, 255, 255), 255);
        assert_eq!(luma601(255, 0, 0), 76);
        assert_eq!(luma601(0, 255, 0), 150);
        assert_eq!(luma601(0, 0, 255), 29);
    }
}
