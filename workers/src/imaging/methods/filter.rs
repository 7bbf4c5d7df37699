//! Neighbourhood filters: gaussian blur, PIL-style sharpness, unsharp mask.

use image::RgbImage;

use super::{clamp_to_u32, dispatch, reflect, same_size, to_u8};

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

/// Values per block of the fixed-point loops: two AVX2 registers of u16.
const LANES: usize = 32;

/// `(a · b) >> 16`, which the wide loops turn into one `pmulhuw`.
#[inline(always)]
fn mul_high(a: u16, b: u16) -> u16 {
    ((u32::from(a) * u32::from(b)) >> 16) as u16
}

/// `v · 257` (the byte in both halves, `0..=255` onto `0..=65535`), written
/// so that the compiler keeps the product in 16-bit lanes.
#[inline(always)]
fn spread(v: u8) -> u16 {
    u16::from_le_bytes([v, v])
}

/// `kernel` as integer weights summing to `total` (at most 65536): each
/// rounded, the centre taking the rounding error, capped at 65535.
fn quantize(kernel: &[f32], total: u32) -> Vec<u16> {
    let mid = kernel.len() / 2;
    // The weights of a normalised kernel lie in 0..=1.
    let mut w: Vec<u32> = kernel
        .iter()
        .map(|v| clamp_to_u32((f64::from(*v) * f64::from(total)).round(), 0, total))
        .collect();
    let others: u32 = w
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != mid)
        .map(|(_, v)| *v)
        .sum();
    if let Some(c) = w.get_mut(mid) {
        *c = total.saturating_sub(others).min(65535);
    }
    w.into_iter().map(|v| v.min(65535) as u16).collect()
}

/// A gaussian kernel in 16-bit fixed point, each weight repeated across a
/// block (loaded from memory, the wide loops multiply whole registers).
///
/// The vertical pass takes bytes to 8.8 fixed point:
/// `mul_high(257·v, w)` with weights summing to 65536·256/257 is
/// `256 · v · k` to within one truncation. The horizontal pass multiplies
/// those by weights summing to 65536 (`mul_high` keeps 8.8). Sums stay below
/// 65281 in both, so u16 lanes never overflow; each tap truncates by less
/// than 1/256 of a level, and `bias` adds back the mean truncation with the
/// rounding half.
struct FixedKernel {
    vertical: Vec<[u16; LANES]>,
    horizontal: Vec<[u16; LANES]>,
    bias: u16,
}

impl FixedKernel {
    fn new(kernel_size: usize, sigma: f32) -> Self {
        let k = gaussian_kernel(kernel_size, sigma);
        let splat = |w: Vec<u16>| w.into_iter().map(|v| [v; LANES]).collect();
        Self {
            vertical: splat(quantize(&k, 65_281)),
            horizontal: splat(quantize(&k, 65_536)),
            bias: 128 + u16::try_from(k.len()).map_or(127, |n| n.min(127)),
        }
    }
}

/// Vertical pass over one block: `LANES` values from `at` in every row.
#[inline(always)]
fn vertical_block(rows: &[&[u8]], weights: &[[u16; LANES]], at: usize, out: &mut [u16]) {
    let mut acc = [0u16; LANES];
    for (row, w) in rows.iter().zip(weights) {
        let Some(s) = row
            .get(at..at + LANES)
            .and_then(|s| <&[u8; LANES]>::try_from(s).ok())
        else {
            continue;
        };
        for ((a, v), w) in acc.iter_mut().zip(s).zip(w) {
            *a = a.wrapping_add(mul_high(spread(*v), *w));
        }
    }
    out.copy_from_slice(&acc);
}

/// Horizontal pass over one block: `LANES` outputs from `at` of the padded
/// row, taps 3 values (one pixel) apart.
#[inline(always)]
fn horizontal_block(padded: &[u16], k: &FixedKernel, at: usize, out: &mut [u8]) {
    let mut acc = [k.bias; LANES];
    for (i, w) in k.horizontal.iter().enumerate() {
        let from = at + 3 * i;
        let Some(s) = padded
            .get(from..from + LANES)
            .and_then(|s| <&[u16; LANES]>::try_from(s).ok())
        else {
            continue;
        };
        for ((a, v), w) in acc.iter_mut().zip(s).zip(w) {
            *a = a.wrapping_add(mul_high(*v, *w));
        }
    }
    for (o, a) in out.iter_mut().zip(acc) {
        *o = (a >> 8) as u8;
    }
}

/// The blur proper, all of it inlined into [`dispatch`]'s AVX2 function.
#[inline(always)]
fn blur_rows(img: &RgbImage, k: &FixedKernel) -> Vec<u8> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let stride = w * 3;
    let src = img.as_raw();
    // Results go straight into place (a block returned and appended would
    // be stored in halves and reloaded whole, which stalls); every byte of
    // every row is written.
    let mut raw = crate::imaging::buffers::take(src.len());
    let taps = k.vertical.len();
    let r = taps / 2;
    if stride == 0 || h == 0 {
        return raw;
    }
    // The row after the vertical pass, with `r` mirrored pixels each side.
    let mut padded = vec![0u16; stride + 6 * r];
    let mut rows: Vec<&[u8]> = Vec::with_capacity(taps);
    let full = stride / LANES * LANES;
    for (y, dst) in raw.chunks_exact_mut(stride).enumerate() {
        rows.clear();
        rows.extend((0..taps).filter_map(|i| {
            let sy = reflect((y + i) as isize - r as isize, h);
            src.get(sy * stride..(sy + 1) * stride)
        }));
        if let Some(mid) = padded.get_mut(3 * r..3 * r + stride) {
            let mut blocks = mid.chunks_exact_mut(LANES);
            for (c, out) in blocks.by_ref().enumerate() {
                vertical_block(&rows, &k.vertical, c * LANES, out);
            }
            for (x, out) in (full..).zip(blocks.into_remainder()) {
                *out = rows.iter().zip(&k.vertical).fold(0u16, |a, (row, w)| {
                    let v = row.get(x).copied().unwrap_or(0);
                    a.wrapping_add(mul_high(spread(v), w[0]))
                });
            }
        }
        for j in 0..r {
            for (to, from) in [
                (j, reflect(j as isize - r as isize, w)),
                (r + w + j, reflect((w + j) as isize, w)),
            ] {
                let from = 3 * (r + from);
                padded.copy_within(from..from + 3, 3 * to);
            }
        }
        let mut blocks = dst.chunks_exact_mut(LANES);
        for (c, out) in blocks.by_ref().enumerate() {
            horizontal_block(&padded, k, c * LANES, out);
        }
        for (x, out) in (full..).zip(blocks.into_remainder()) {
            let sum = k.horizontal.iter().enumerate().fold(k.bias, |a, (i, w)| {
                let v = padded.get(x + 3 * i).copied().unwrap_or(0);
                a.wrapping_add(mul_high(v, w[0]))
            });
            *out = (sum >> 8) as u8;
        }
    }
    raw
}

struct Blur<'a>(&'a RgbImage, &'a FixedKernel);

impl pulp::WithSimd for Blur<'_> {
    type Output = Vec<u8>;
    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) -> Vec<u8> {
        blur_rows(self.0, self.1)
    }
}

/// AUG-009: gaussian blur with an odd `kernel_size` and standard deviation
/// `sigma` (pixels), borders mirrored as Kornia's default `reflect` does.
///
/// Separable and in 16-bit fixed point, as OpenCV blurs 8-bit images, but
/// with 16-bit weights in both passes: a value differs from the exact
/// (float) blur rounded by at most 1, and only where the exact value lies
/// within a few hundredths of a rounding boundary. A constant image stays
/// constant. Memory is a few rows besides the output.
pub fn gaussian_blur(img: &RgbImage, kernel_size: u32, sigma: f32) -> RgbImage {
    let k = FixedKernel::new(kernel_size as usize, sigma);
    same_size(img, dispatch(Blur(img, &k)))
}

/// Values per block of the sharpness loop.
const SHARP_LANES: usize = 32;

/// The `SHARP_LANES` values of `block` from `at` (at most 6).
#[inline(always)]
fn lanes(block: &[u8; SHARP_LANES + 6], at: usize) -> &[u8; SHARP_LANES] {
    const ZERO: [u8; SHARP_LANES] = [0; SHARP_LANES];
    block
        .get(at..at + SHARP_LANES)
        .and_then(|s| s.try_into().ok())
        .unwrap_or(&ZERO)
}

/// One block of PIL's sharpness: `above`, `row`, `below` hold the block's
/// values with one pixel (3 values) more each side.
#[inline(always)]
fn sharpen_block(
    above: &[u8; SHARP_LANES + 6],
    row: &[u8; SHARP_LANES + 6],
    below: &[u8; SHARP_LANES + 6],
    factor: f32,
    out: &mut [u8],
) {
    // The 3×3 neighbourhood: offsets 0, 3 and 6 in each of the three rows,
    // the centre (row, 3) counted 5 times; three values at a time, so that
    // each step is a few whole-register adds.
    let mut sum = [0u16; SHARP_LANES];
    for (r, skip_centre) in [(above, false), (row, true), (below, false)] {
        let (left, mid, right) = (lanes(r, 0), lanes(r, 3), lanes(r, 6));
        let mid_weight = if skip_centre { 5 } else { 1 };
        for (((s, a), b), c) in sum.iter_mut().zip(left).zip(mid).zip(right) {
            *s += u16::from(*a) + mid_weight * u16::from(*b) + u16::from(*c);
        }
    }
    for ((o, s), v) in out.iter_mut().zip(&sum).zip(lanes(row, 3)) {
        let smooth = f32::from((s + 6) / 13);
        *o = to_u8(smooth + factor * (f32::from(*v) - smooth));
    }
}

/// One value of PIL's sharpness, outside the blocks; the same arithmetic.
#[inline(always)]
fn sharpen_one(n: [u8; 9], factor: f32) -> u8 {
    let [a0, a3, a6, b0, b3, b6, c0, c3, c6] = n.map(u16::from);
    let sum = a0 + a3 + a6 + b0 + b6 + c0 + c3 + c6 + 5 * b3 + 6;
    let smooth = f32::from(sum / 13);
    to_u8(smooth + factor * (f32::from(b3) - smooth))
}

/// The `SHARP_LANES + 6` values of `row` from `at`.
#[inline(always)]
fn block(row: &[u8], at: usize) -> Option<&[u8; SHARP_LANES + 6]> {
    row.get(at..at + SHARP_LANES + 6)
        .and_then(|s| s.try_into().ok())
}

#[inline(always)]
fn sharpen_rows(img: &RgbImage, factor: f32) -> Vec<u8> {
    let stride = img.width() as usize * 3;
    let src = img.as_raw();
    // The border pixels are kept: start from a copy. (Results go straight
    // into place; a block returned and appended would be stored in halves
    // and reloaded whole, which stalls.)
    let mut raw = crate::imaging::buffers::copy_of(src);
    let inner = stride - 6;
    let full = inner / SHARP_LANES * SHARP_LANES;
    let rows = src.chunks_exact(stride);
    let triples = rows.clone().zip(rows.clone().skip(1)).zip(rows.skip(2));
    for (out, ((prev, row), next)) in raw.chunks_exact_mut(stride).skip(1).zip(triples) {
        let Some(out) = out.get_mut(3..stride - 3) else {
            continue;
        };
        let mut blocks = out.chunks_exact_mut(SHARP_LANES);
        for (c, dst) in blocks.by_ref().enumerate() {
            let at = c * SHARP_LANES;
            if let (Some(a), Some(b), Some(c)) = (block(prev, at), block(row, at), block(next, at))
            {
                sharpen_block(a, b, c, factor, dst);
            }
        }
        for (x, dst) in (full..).zip(blocks.into_remainder()) {
            let at = |r: &[u8], i: usize| r.get(x + i).copied().unwrap_or(0);
            *dst = sharpen_one(
                [
                    at(prev, 0),
                    at(prev, 3),
                    at(prev, 6),
                    at(row, 0),
                    at(row, 3),
                    at(row, 6),
                    at(next, 0),
                    at(next, 3),
                    at(next, 6),
                ],
                factor,
            );
        }
    }
    raw
}

struct Sharpen<'a>(&'a RgbImage, f32);

impl pulp::WithSimd for Sharpen<'_> {
    type Output = Vec<u8>;
    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) -> Vec<u8> {
        sharpen_rows(self.0, self.1)
    }
}

/// AUG-010: PIL's ImageEnhance.Sharpness. Blends the image with its smoothed
/// copy (3×3 kernel `[1 1 1; 1 5 1; 1 1 1] / 13`, border pixels kept):
/// `factor` 0 gives the smoothed image, 1 the original, above 1 sharper.
pub fn sharpness(img: &RgbImage, factor: f32) -> RgbImage {
    if img.width() < 3 || img.height() < 3 {
        return img.clone();
    }
    same_size(img, dispatch(Sharpen(img, factor)))
}

/// Kernel size that holds ±3 sigma (at least 3).
pub(crate) fn kernel_for(sigma: f32) -> u32 {
    clamp_to_u32(f64::from(2.0 * (3.0 * sigma).ceil() + 1.0), 3, u32::MAX)
}

/// Unsharp mask: `image + amount · (image − gaussian_blur(image, sigma))`.
/// A negative `amount` (down to −1, the blurred image) softens instead.
pub fn unsharp_mask(img: &RgbImage, sigma: f32, amount: f32) -> RgbImage {
    let blurred = gaussian_blur(img, kernel_for(sigma), sigma);
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

    use image::Rgb;

    use super::super::{saturating_u8, with_baseline};
    use super::*;
    use crate::imaging::low_byte;

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

    /// The exact blur: separable, in f32, mirrored borders, rounded once.
    fn float_blur(img: &RgbImage, kernel_size: usize, sigma: f32) -> Vec<u8> {
        let (w, h) = (img.width() as usize, img.height() as usize);
        let k = gaussian_kernel(kernel_size, sigma);
        let r = k.len() as isize / 2;
        let v = |x: usize, y: usize, c: usize| {
            let (x, y) = (u32::try_from(x).unwrap(), u32::try_from(y).unwrap());
            f32::from(img.get_pixel(x, y).0[c])
        };
        let mut column = vec![0f32; w * h * 3];
        for y in 0..h {
            for x in 0..w {
                for c in 0..3 {
                    column[(y * w + x) * 3 + c] = k
                        .iter()
                        .enumerate()
                        .map(|(i, kv)| kv * v(x, reflect(y as isize + i as isize - r, h), c))
                        .sum();
                }
            }
        }
        let mut out = Vec::new();
        for y in 0..h {
            for x in 0..w {
                for c in 0..3 {
                    let sum: f32 = k
                        .iter()
                        .enumerate()
                        .map(|(i, kv)| {
                            let sx = reflect(x as isize + i as isize - r, w);
                            kv * column[(y * w + sx) * 3 + c]
                        })
                        .sum();
                    out.push(to_u8(sum));
                }
            }
        }
        out
    }

    /// An odd-sized image with edges, gradients and noise.
    fn busy(w: u32, h: u32) -> RgbImage {
        let mut s = 12_345u64;
        RgbImage::from_fn(w, h, |x, y| {
            let mut px = [0u8; 3];
            for (c, v) in px.iter_mut().enumerate() {
                s = s.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                let noise = ((s >> 33) % 41) as f32 - 20.0;
                let wave = 80.0 * ((x as f32 / 7.0 + c as f32).sin() * (y as f32 / 5.0).cos());
                let edge = if (x / 10 + y / 8) % 2 == 0 {
                    60.0
                } else {
                    -60.0
                };
                *v = saturating_u8(128.0 + wave + edge + noise);
            }
            Rgb(px)
        })
    }

    #[test]
    fn blur_is_the_exact_blur_to_within_one() {
        let img = busy(67, 31);
        for (k, s) in [
            (7, 2.0),
            (3, 1.0),
            (5, 0.1),
            (27, 10.0),
            (61, 10.0),
            (1, 1.0),
        ] {
            let exact = float_blur(&img, k, s);
            let out = gaussian_blur(&img, u32::try_from(k).unwrap(), s);
            let mut off = 0;
            for (a, b) in out.as_raw().iter().zip(&exact) {
                assert!(a.abs_diff(*b) <= 1, "kernel {k}, sigma {s}: {a} vs {b}");
                off += usize::from(a != b);
            }
            assert!(
                off * 100 <= exact.len(),
                "kernel {k}, sigma {s}: {off} values off"
            );
        }
        // A kernel of one tap is the identity.
        assert_eq!(gaussian_blur(&img, 1, 1.0), img);
        // Smaller than the kernel: the mirroring folds several times.
        let tiny = busy(5, 3);
        let exact = float_blur(&tiny, 27, 10.0);
        let out = gaussian_blur(&tiny, 27, 10.0);
        for (a, b) in out.as_raw().iter().zip(&exact) {
            assert!(a.abs_diff(*b) <= 1, "{a} vs {b}");
        }
    }

    #[test]
    fn blur_of_impulse_is_symmetric_and_keeps_the_sum() {
        let mut img = RgbImage::new(21, 21);
        img.put_pixel(10, 10, Rgb([255, 255, 255]));
        let out = gaussian_blur(&img, 7, 1.0);
        let at = |x: u32, y: u32| out.get_pixel(x, y).0[0];
        for dy in 0..=3 {
            for dx in 0..=3 {
                let v = at(10 + dx, 10 + dy);
                for w in [
                    at(10 - dx, 10 + dy),
                    at(10 + dx, 10 - dy),
                    at(10 - dx, 10 - dy),
                    at(10 + dy, 10 + dx),
                ] {
                    assert_eq!(v, w);
                }
            }
        }
        assert!(at(10, 10) > at(11, 10) && at(11, 10) > at(12, 10));
        assert_eq!(at(14, 10), 0);
        // 255 · 0.399², 0.399 being the centre weight of σ 1.
        assert_eq!(at(10, 10), 41);
        let total: u32 = out.pixels().map(|p| u32::from(p.0[0])).sum();
        assert!(total.abs_diff(255) <= 8, "rounded sum {total}");
        assert!(out.pixels().all(|p| p.0[0] == p.0[1] && p.0[1] == p.0[2]));
    }

    #[test]
    fn wide_and_baseline_loops_agree() {
        let img = busy(67, 31);
        for (k, s) in [(7, 2.0), (27, 10.0)] {
            let wide = gaussian_blur(&img, k, s);
            assert_eq!(wide, with_baseline(|| gaussian_blur(&img, k, s)));
        }
        for f in [0.0, 2.0, 0.3] {
            let wide = sharpness(&img, f);
            assert_eq!(wide, with_baseline(|| sharpness(&img, f)));
        }
    }

    #[test]
    fn sharpness_matches_the_direct_formula() {
        let img = busy(67, 31);
        for f in [0.0, 0.5, 2.0, 3.7] {
            let out = sharpness(&img, f);
            for y in 0..31u32 {
                for x in 0..67u32 {
                    let got = out.get_pixel(x, y).0;
                    if x == 0 || y == 0 || x == 66 || y == 30 {
                        assert_eq!(got, img.get_pixel(x, y).0);
                        continue;
                    }
                    for (c, got) in got.iter().enumerate() {
                        let v = |dx: u32, dy: u32| {
                            u32::from(img.get_pixel(x + dx - 1, y + dy - 1).0[c])
                        };
                        let sum: u32 = (0..3)
                            .flat_map(|dy| (0..3).map(move |dx| (dx, dy)))
                            .map(|(dx, dy)| v(dx, dy))
                            .sum::<u32>()
                            + 4 * v(1, 1);
                        let smooth = ((sum + 6) / 13) as f32;
                        let want = to_u8(smooth + f * (v(1, 1) as f32 - smooth));
                        assert_eq!(*got, want, "{x},{y},{c} factor {f}");
                    }
                }
            }
        }
    }

    #[test]
    fn blur_handles_images_smaller_than_the_kernel() {
        let img = RgbImage::from_fn(2, 1, |x, _| Rgb([low_byte(x * 100), 0, 0]));
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
