//! Methods that move pixels: flips, rotation, scale, translation, crops,
//! tiles, erasing, and the EXIF orientation.

use image::metadata::Orientation;
use image::{imageops, Rgb, RgbImage};

use super::{clamp_to_u32, dispatch, resize, same_size};
#[cfg(target_arch = "x86_64")]
use crate::imaging::simd::x86;
use crate::imaging::{buffers, ImagingError};

/// Pixels per block of the horizontal flip.
const FLIP_BLOCK: usize = 32;

/// The flip proper, inlined into [`dispatch`]'s AVX2 function: each block of
/// 32 pixels, taken from the right end of the row, has its bytes reversed
/// and then the first and last byte of each pixel swapped back, all with
/// constant indexes (the compiler makes a few byte shuffles of it).
#[inline(always)]
fn flip_rows(img: &RgbImage) -> Vec<u8> {
    let stride = img.width() as usize * 3;
    let src = img.as_raw();
    if stride == 0 {
        return Vec::new();
    }
    // Every byte is written: whole blocks, then the pixels left.
    let mut raw = buffers::take(src.len());
    for (dst, row) in raw.chunks_exact_mut(stride).zip(src.chunks_exact(stride)) {
        let mut blocks = row.rchunks_exact(3 * FLIP_BLOCK);
        let mut outs = dst.chunks_exact_mut(3 * FLIP_BLOCK);
        for (out, block) in outs.by_ref().zip(blocks.by_ref()) {
            let Ok(block) = <&[u8; 3 * FLIP_BLOCK]>::try_from(block) else {
                continue;
            };
            let mut flipped = *block;
            flipped.reverse();
            for px in flipped.chunks_exact_mut(3) {
                px.swap(0, 2);
            }
            out.copy_from_slice(&flipped);
        }
        let rest = outs.into_remainder().chunks_exact_mut(3);
        for (out, px) in rest.zip(blocks.remainder().chunks_exact(3).rev()) {
            out.copy_from_slice(px);
        }
    }
    raw
}

struct Flip<'a>(&'a RgbImage);

impl pulp::WithSimd for Flip<'_> {
    type Output = Vec<u8>;
    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) -> Vec<u8> {
        flip_rows(self.0)
    }
}

/// The flip with byte shuffles (AVX2 machines): blocks of 16 pixels, each
/// three `pshufb` per output register.
#[cfg(target_arch = "x86_64")]
struct FlipShuffled<'a> {
    img: &'a RgbImage,
    simd: x86::V3,
}

#[cfg(target_arch = "x86_64")]
impl pulp::WithSimd for FlipShuffled<'_> {
    type Output = Vec<u8>;
    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) -> Vec<u8> {
        let Self { img, simd } = self;
        let stride = img.width() as usize * 3;
        let src = img.as_raw();
        if stride == 0 {
            return Vec::new();
        }
        // Output pixel p of a block is input pixel 15 - p.
        let mirror = x86::Shuffle48::new(|j| 3 * (15 - j / 3) + j % 3);
        let mut raw = buffers::take(src.len());
        // Reads go left to right and writes right to left: a load waits for
        // memory, a store does not, and ascending loads are what the
        // prefetcher serves best (descending ones left the loop waiting on
        // them three quarters of the time).
        for (dst, row) in raw.chunks_exact_mut(stride).zip(src.chunks_exact(stride)) {
            let mut blocks = row.chunks_exact(48);
            let mut outs = dst.rchunks_exact_mut(48);
            for (out, block) in outs.by_ref().zip(blocks.by_ref()) {
                if let (Ok(out), Ok(block)) =
                    (<&mut [u8; 48]>::try_from(out), <&[u8; 48]>::try_from(block))
                {
                    x86::store48(out, mirror.apply(simd, x86::load48(block)));
                }
            }
            let rest = outs.into_remainder().chunks_exact_mut(3).rev();
            for (out, px) in rest.zip(blocks.remainder().chunks_exact(3)) {
                out.copy_from_slice(px);
            }
        }
        raw
    }
}

/// AUG-003: mirrors left to right.
pub fn flip_horizontal(img: &RgbImage) -> RgbImage {
    #[cfg(target_arch = "x86_64")]
    if let Some(simd) = x86::v3() {
        return same_size(img, pulp::Simd::vectorize(simd, FlipShuffled { img, simd }));
    }
    same_size(img, dispatch(Flip(img)))
}

/// AUG-004: mirrors top to bottom.
pub fn flip_vertical(img: &RgbImage) -> RgbImage {
    let stride = img.width() as usize * 3;
    let src = img.as_raw();
    if stride == 0 {
        return img.clone();
    }
    let mut raw = buffers::take(src.len());
    dispatch(
        #[inline(always)]
        || {
            // Source rows in order, output rows from the bottom: loads
            // that ascend keep the prefetcher ahead of them (see the
            // horizontal flip).
            for (dst, row) in raw
                .chunks_exact_mut(stride)
                .rev()
                .zip(src.chunks_exact(stride))
            {
                buffers::copy(dst, row);
            }
        },
    );
    same_size(img, raw)
}

/// The `cw`×`ch` window at `x0`, `y0` (inside the image), copied row by row.
fn window(img: &RgbImage, x0: u32, y0: u32, cw: u32, ch: u32) -> RgbImage {
    let stride = img.width() as usize * 3;
    let (from, len) = (x0 as usize * 3, cw as usize * 3);
    let mut raw = Vec::with_capacity(len * ch as usize);
    if stride > 0 {
        for row in img
            .as_raw()
            .chunks_exact(stride)
            .skip(y0 as usize)
            .take(ch as usize)
        {
            if let Some(span) = row.get(from..from + len) {
                raw.extend_from_slice(span);
            }
        }
    }
    RgbImage::from_raw(cw, ch, raw)
        .unwrap_or_else(|| imageops::crop_imm(img, x0, y0, cw, ch).to_image())
}

/// PRE-000: turns the pixels upright as the EXIF orientation (1–8) says. The
/// output carries no orientation of its own, so the tag is gone.
pub fn orient(img: &RgbImage, orientation: Orientation) -> RgbImage {
    match orientation {
        Orientation::NoTransforms => img.clone(),
        Orientation::Rotate90 => imageops::rotate90(img),
        Orientation::Rotate180 => imageops::rotate180(img),
        Orientation::Rotate270 => imageops::rotate270(img),
        Orientation::FlipHorizontal => imageops::flip_horizontal(img),
        Orientation::FlipVertical => imageops::flip_vertical(img),
        Orientation::Rotate90FlipH => imageops::flip_horizontal(&imageops::rotate90(img)),
        Orientation::Rotate270FlipH => imageops::flip_horizontal(&imageops::rotate270(img)),
    }
}

/// AUG-000: rotates about the centre by `degrees` (positive turns
/// counter-clockwise), keeping the size, with bilinear sampling; what the
/// rotated image no longer covers is `fill`.
///
/// Source positions are fixed-point (32 fractional bits, exact for the
/// half-pixel centres of quarter turns) and the bilinear weights are 8-bit,
/// as in OpenCV's warpAffine, so the inner loop is integer arithmetic.
pub fn rotate(img: &RgbImage, degrees: f32, fill: Rgb<u8>) -> RgbImage {
    #[cfg(target_arch = "x86_64")]
    if let Some(simd) = x86::v3() {
        let op = Rotate {
            img,
            degrees,
            fill,
            mixer: MixPairs(simd),
        };
        return pulp::Simd::vectorize(simd, op);
    }
    rotate_with(img, degrees, fill, MixLoop)
}

/// [`rotate`] as an op for `pulp`: a struct rather than a closure, since a
/// closure that only borrows is called through a `call_once` shim, which
/// can stay a function of its own without AVX2 (it did here: every
/// intrinsic became a call).
#[cfg(target_arch = "x86_64")]
struct Rotate<'a, M> {
    img: &'a RgbImage,
    degrees: f32,
    fill: Rgb<u8>,
    mixer: M,
}

#[cfg(target_arch = "x86_64")]
impl<M: MixRun> pulp::WithSimd for Rotate<'_, M> {
    type Output = RgbImage;

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) -> RgbImage {
        rotate_with(self.img, self.degrees, self.fill, self.mixer)
    }
}

/// [`rotate`], with the inside runs mixed by `mixer`.
#[inline(always)]
fn rotate_with(img: &RgbImage, degrees: f32, fill: Rgb<u8>, mixer: impl MixRun) -> RgbImage {
    let (w, h) = (img.width() as usize, img.height() as usize);
    if w == 0 || h == 0 {
        return RgbImage::new(img.width(), img.height());
    }
    let (sin, cos) = f64::from(degrees).to_radians().sin_cos();
    // Snap the near-zero terms of right angles so that quarter turns are exact.
    let snap = |v: f64| if v.abs() < 1e-12 { 0.0 } else { v };
    let (sin, cos) = (snap(sin), snap(cos));
    let cx = (w as f64 - 1.0) / 2.0;
    let cy = (h as f64 - 1.0) / 2.0;
    let (step_x, step_y) = (fixed(cos), fixed(sin));
    let src = img.as_raw();
    let stride = w * 3;
    let fill = fill.0;
    let (wi, hi) = (w as i64, h as i64);
    // The pixel at (x, y), or the fill outside the image.
    let sample = |x: i64, y: i64| -> [u8; 3] {
        if x < 0 || y < 0 || x >= wi || y >= hi {
            return fill;
        }
        let (Ok(x), Ok(y)) = (usize::try_from(x), usize::try_from(y)) else {
            return fill;
        };
        let i = (y * w + x) * 3;
        match src.get(i..i + 3) {
            Some(&[r, g, b]) => [r, g, b],
            _ => fill,
        }
    };
    let one = 1i64 << 32;
    // Every pixel is written: sampled, mixed at the border, or the fill.
    let mut raw = buffers::take(src.len());
    for (y, row) in raw.chunks_exact_mut(stride).enumerate() {
        let dy = y as f64 - cy;
        // Inverse map: output (x, y) comes from
        // (cos·dx − sin·dy + cx, sin·dx + cos·dy + cy), dx = x − cx.
        let sx0 = fixed(-cos * cx - sin * dy + cx);
        let sy0 = fixed(-sin * cx + cos * dy + cy);
        let at = |x: usize| (sx0 + x as i64 * step_x, sy0 + x as i64 * step_y);
        // Where all four neighbours are inside the image, and where at
        // least one is; both are runs of the row, the first in the second.
        let (inside_lo, inside_hi) = intersect(
            span(sx0, step_x, 0, (wi - 1) * one, w),
            span(sy0, step_y, 0, (hi - 1) * one, w),
        );
        let (touch_lo, touch_hi) = intersect(
            span(sx0, step_x, -one, wi * one, w),
            span(sy0, step_y, -one, hi * one, w),
        );
        let (inside_lo, inside_hi) = if inside_lo < inside_hi {
            (inside_lo, inside_hi)
        } else {
            (touch_lo, touch_lo)
        };
        let (left, rest) = row.split_at_mut(inside_lo * 3);
        let (middle, right) = rest.split_at_mut((inside_hi - inside_lo) * 3);
        let source = Source { src, stride, fill };
        mixer.mix_run(middle, &source, at(inside_lo), (step_x, step_y));
        // Outside the inside run: the fill, or at the border a mix in which
        // the neighbours outside are the fill.
        let edges = (0..)
            .zip(left.chunks_exact_mut(3))
            .chain((inside_hi..).zip(right.chunks_exact_mut(3)));
        for (x, px) in edges {
            if x < touch_lo || x >= touch_hi {
                px.copy_from_slice(&fill);
                continue;
            }
            let (sx, sy) = at(x);
            let (x0, y0) = (sx >> 32, sy >> 32);
            let (fx, fy) = (((sx >> 24) & 0xFF) as i32, ((sy >> 24) & 0xFF) as i32);
            let ([a0, a1, a2], [b0, b1, b2]) = (sample(x0, y0), sample(x0 + 1, y0));
            let ([c0, c1, c2], [d0, d1, d2]) = (sample(x0, y0 + 1), sample(x0 + 1, y0 + 1));
            px.copy_from_slice(&lerp2(
                &[a0, a1, a2, b0, b1, b2],
                &[c0, c1, c2, d0, d1, d2],
                fx,
                fy,
            ));
        }
    }
    same_size(img, raw)
}

/// The source of a rotation: RGB rows of `stride` bytes, and the fill.
struct Source<'a> {
    src: &'a [u8],
    stride: usize,
    fill: [u8; 3],
}

impl Source<'_> {
    /// The mix at source position (sx, sy) (32.32 fixed point) whose four
    /// neighbours are all inside: two 6-byte runs of the source.
    #[inline(always)]
    fn mix(&self, position: (i64, i64)) -> [u8; 3] {
        let (i, fx, fy) = self.locate(position);
        let run = |at: usize| {
            self.src
                .get(at..at + 6)
                .and_then(|s| <&[u8; 6]>::try_from(s).ok())
        };
        match (run(i), run(i + self.stride)) {
            (Some(t), Some(b)) => lerp2(t, b, fx, fy),
            _ => self.fill,
        }
    }

    /// The neighbours at (sx, sy) as two 8-byte words (the top and bottom
    /// runs and 2 bytes past each), with the fractions; `None` where the
    /// words would run past the end of the source.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    fn words(&self, position: (i64, i64)) -> Option<(i64, i64, i32, i32)> {
        let (i, fx, fy) = self.locate(position);
        let word = |at: usize| {
            let bytes = self.src.get(at..at + 8)?;
            <[u8; 8]>::try_from(bytes).ok().map(i64::from_le_bytes)
        };
        let (top, bottom) = (word(i)?, word(i + self.stride)?);
        Some((top, bottom, fx, fy))
    }

    /// The byte offset of the top-left neighbour of (sx, sy) and the 8-bit
    /// fractions.
    #[inline(always)]
    fn locate(&self, (sx, sy): (i64, i64)) -> (usize, i32, i32) {
        let (x0, y0) = ((sx >> 32) as usize, (sy >> 32) as usize);
        let (fx, fy) = (((sx >> 24) & 0xFF) as i32, ((sy >> 24) & 0xFF) as i32);
        (y0 * self.stride + x0 * 3, fx, fy)
    }
}

/// How the inside run of a rotated row is mixed: output pixel k of `out`
/// from source position `start + k · step`, all four neighbours inside.
trait MixRun: Copy {
    fn mix_run(self, out: &mut [u8], source: &Source, start: (i64, i64), step: (i64, i64));
}

/// One pixel at a time, with [`lerp2`].
#[derive(Clone, Copy)]
struct MixLoop;

impl MixRun for MixLoop {
    #[inline(always)]
    fn mix_run(self, out: &mut [u8], source: &Source, start: (i64, i64), step: (i64, i64)) {
        let (mut sx, mut sy) = start;
        for px in out.chunks_exact_mut(3) {
            px.copy_from_slice(&source.mix((sx, sy)));
            (sx, sy) = (sx + step.0, sy + step.1);
        }
    }
}

/// Two pixels per AVX2 register, one in each half: the neighbours' bytes
/// spread into 16-bit pairs (a, b) and (c, d) per channel by `pshufb`, the
/// horizontal mixes by `pmaddwd` with the weights (256 − fx, fx), the
/// vertical one in 32-bit lanes. The same integers as [`lerp2`].
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
struct MixPairs(x86::V3);

#[cfg(target_arch = "x86_64")]
impl MixRun for MixPairs {
    #[inline(always)]
    fn mix_run(self, out: &mut [u8], source: &Source, start: (i64, i64), step: (i64, i64)) {
        use core::arch::x86_64::__m256i;
        let v = self.0;
        const Z: u8 = 0x80;
        // Per half: bytes 0..8 the top word, 8..16 the bottom one.
        let top_half = [0, Z, 3, Z, 1, Z, 4, Z, 2, Z, 5, Z, Z, Z, Z, Z];
        let bottom_half = [8, Z, 11, Z, 9, Z, 12, Z, 10, Z, 13, Z, Z, Z, Z, Z];
        let top: __m256i = pulp::bytemuck::cast([top_half, top_half]);
        let bottom: __m256i = pulp::bytemuck::cast([bottom_half, bottom_half]);
        let round = v.avx._mm256_set1_epi32(32_768);
        let (mut sx, mut sy) = start;
        let mut pairs = out.chunks_exact_mut(6);
        for pair in pairs.by_ref() {
            let p = (sx, sy);
            let q = (sx + step.0, sy + step.1);
            (sx, sy) = (q.0 + step.0, q.1 + step.1);
            let (Some((tp, bp, fxp, fyp)), Some((tq, bq, fxq, fyq))) =
                (source.words(p), source.words(q))
            else {
                let (a, b) = pair.split_at_mut(3);
                a.copy_from_slice(&source.mix(p));
                b.copy_from_slice(&source.mix(q));
                continue;
            };
            let words = v.avx._mm256_set_epi64x(bq, tq, bp, tp);
            let (t, u) = (
                v.avx2._mm256_shuffle_epi8(words, top),
                v.avx2._mm256_shuffle_epi8(words, bottom),
            );
            // (256 − fx) for the left neighbour, fx for the right.
            let (wp, wq) = ((fxp << 16) | (256 - fxp), (fxq << 16) | (256 - fxq));
            let wx = v.avx._mm256_set_epi32(wq, wq, wq, wq, wp, wp, wp, wp);
            let fy = v
                .avx
                ._mm256_set_epi32(fyq, fyq, fyq, fyq, fyp, fyp, fyp, fyp);
            let (t, u) = (
                v.avx2._mm256_madd_epi16(t, wx),
                v.avx2._mm256_madd_epi16(u, wx),
            );
            let mixed = v.avx2._mm256_add_epi32(
                v.avx2._mm256_slli_epi32::<8>(t),
                v.avx2._mm256_mullo_epi32(fy, v.avx2._mm256_sub_epi32(u, t)),
            );
            let mixed = v
                .avx2
                ._mm256_srai_epi32::<16>(v.avx2._mm256_add_epi32(mixed, round));
            let words = v.avx2._mm256_packus_epi32(mixed, mixed);
            let bytes = v.avx2._mm256_packus_epi16(words, words);
            let low = v
                .sse2
                ._mm_cvtsi128_si32(v.avx._mm256_castsi256_si128(bytes));
            let high = v
                .sse2
                ._mm_cvtsi128_si32(v.avx2._mm256_extracti128_si256::<1>(bytes));
            let ([r0, g0, b0, _], [r1, g1, b1, _]) = (low.to_le_bytes(), high.to_le_bytes());
            pair.copy_from_slice(&[r0, g0, b0, r1, g1, b1]);
        }
        if let Ok(px) = <&mut [u8; 3]>::try_from(pairs.into_remainder()) {
            *px = source.mix((sx, sy));
        }
    }
}

/// A source position or step of a rotation in 32.32 fixed point, rounded.
#[inline(always)]
#[expect(
    clippy::cast_possible_truncation,
    reason = "positions and steps are within a few image sides (at most 16384) of 0, so v · 2^32 is within ±2^47"
)]
fn fixed(v: f64) -> i64 {
    (v * (1u64 << 32) as f64).round() as i64
}

/// The bilinear mix of a pixel's four neighbours, `top` = a, b and `bottom`
/// = c, d (RGB each), with 8-bit fractions: a (256 − fx)(256 − fy) plus
/// b fx (256 − fy) plus c (256 − fx) fy plus d fx fy, rounded, taken as two
/// horizontal mixes and one vertical (the same integer, with fewer
/// products).
#[inline(always)]
#[expect(
    clippy::cast_possible_truncation,
    reason = "a mix of bytes whose weights sum to 2^16, rounded and shifted down by 16, is 0..=255"
)]
fn lerp2(top: &[u8; 6], bottom: &[u8; 6], fx: i32, fy: i32) -> [u8; 3] {
    let &[a0, a1, a2, b0, b1, b2] = top;
    let &[c0, c1, c2, d0, d1, d2] = bottom;
    let mix = |a: u8, b: u8, c: u8, d: u8| {
        let (a, b, c, d) = (i32::from(a), i32::from(b), i32::from(c), i32::from(d));
        let t = (a << 8) + fx * (b - a);
        let u = (c << 8) + fx * (d - c);
        (((t << 8) + fy * (u - t) + 32_768) >> 16) as u8
    };
    [
        mix(a0, b0, c0, d0),
        mix(a1, b1, c1, d1),
        mix(a2, b2, c2, d2),
    ]
}

/// The run `lo..hi` of `x` in `0..n` where `low <= start + x · step < high`
/// (a linear function is in a range on one run).
fn span(start: i64, step: i64, low: i64, high: i64, n: usize) -> (usize, usize) {
    let n = n as i64;
    // The least x with start + x·step >= bound (step > 0).
    let first_at_least = |bound: i64| -(-(bound - start)).div_euclid(step);
    let (lo, hi) = match step.signum() {
        0 if (low..high).contains(&start) => (0, n),
        0 => (0, 0),
        1 => (first_at_least(low), first_at_least(high)),
        // Decreasing: x from the first below `high` to the last at least `low`.
        _ => (
            (start - high).div_euclid(-step) + 1,
            (start - low).div_euclid(-step) + 1,
        ),
    };
    // Both in 0..=n, and n came from a usize: the conversions hold.
    let lo = usize::try_from(lo.clamp(0, n)).unwrap_or(0);
    let hi = usize::try_from(hi.clamp(0, n)).unwrap_or(0);
    (lo, hi.max(lo))
}

/// The overlap of two runs (empty runs anywhere).
fn intersect((a, b): (usize, usize), (c, d): (usize, usize)) -> (usize, usize) {
    let lo = a.max(c);
    (lo, b.min(d).max(lo))
}

/// AUG-001: zooms about the centre by `scale`, keeping the size: above 1 the
/// middle is enlarged and the rim cut off, below 1 the whole image shrinks
/// inside a `fill` border. Resampling is Lanczos (fast_image_resize).
pub fn scale(img: &RgbImage, scale: f32, fill: Rgb<u8>) -> Result<RgbImage, ImagingError> {
    let (w, h) = (img.width(), img.height());
    if w == 0 || h == 0 || scale.is_nan() || scale <= 0.0 {
        return Ok(img.clone());
    }
    let s = f64::from(scale);
    if s >= 1.0 {
        // The visible part of the source is a centred window 1/s its size.
        let (cw, ch) = (f64::from(w) / s, f64::from(h) / s);
        let left = (f64::from(w) - cw) / 2.0;
        let top = (f64::from(h) - ch) / 2.0;
        return resize::resize_region(img, (left, top, cw, ch), w, h);
    }
    let nw = clamp_to_u32((f64::from(w) * s).round(), 1, w);
    let nh = clamp_to_u32((f64::from(h) * s).round(), 1, h);
    let small = resize::resize(img, nw, nh)?;
    let mut out = RgbImage::from_pixel(w, h, fill);
    imageops::replace(
        &mut out,
        &small,
        i64::from((w - nw) / 2),
        i64::from((h - nh) / 2),
    );
    Ok(out)
}

/// AUG-002: shifts by a fraction of the width (`tx`, positive to the right)
/// and height (`ty`, positive down), rounded to whole pixels; the uncovered
/// band is `fill`.
pub fn translate(img: &RgbImage, tx: f32, ty: f32, fill: Rgb<u8>) -> RgbImage {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let dx = tx * w as f32;
    let dy = ty * h as f32;
    let mut out = RgbImage::from_pixel(img.width(), img.height(), fill);
    // The source columns that stay visible, and where they land.
    let (src_x, dst_x, span) = overlap(dx, img.width());
    let (src_y, dst_y, rows) = overlap(dy, img.height());
    if span == 0 || rows == 0 {
        return out;
    }
    let stride = w * 3;
    let src = img.as_raw();
    let buf: &mut [u8] = &mut out;
    for r in 0..rows {
        let from = (src_y + r) * stride + src_x * 3;
        let to = (dst_y + r) * stride + dst_x * 3;
        if let (Some(s), Some(d)) = (
            src.get(from..from + span * 3),
            buf.get_mut(to..to + span * 3),
        ) {
            d.copy_from_slice(s);
        }
    }
    out
}

/// For a shift of `d` (rounded to whole pixels) along an axis of length
/// `n`: first source index, first destination index, and how many indexes
/// stay visible.
fn overlap(d: f32, n: u32) -> (usize, usize, usize) {
    let shift = clamp_to_u32(f64::from(d.abs().round()), 0, n);
    if shift >= n {
        return (0, 0, 0);
    }
    let (shift, rest) = (shift as usize, (n - shift) as usize);
    if d >= 0.0 {
        (0, shift, rest)
    } else {
        (shift, 0, rest)
    }
}

/// AUG-005: cuts a `width`×`height` window (clamped to the image) whose top
/// left corner sits at fraction `x`, `y` of the free room.
pub fn crop(img: &RgbImage, width: u32, height: u32, x: f32, y: f32) -> RgbImage {
    let cw = width.clamp(1, img.width().max(1));
    let ch = height.clamp(1, img.height().max(1));
    let (free_x, free_y) = (
        img.width().saturating_sub(cw),
        img.height().saturating_sub(ch),
    );
    let x0 = clamp_to_u32(
        f64::from((x.clamp(0.0, 1.0) * free_x as f32).round()),
        0,
        free_x,
    );
    let y0 = clamp_to_u32(
        f64::from((y.clamp(0.0, 1.0) * free_y as f32).round()),
        0,
        free_y,
    );
    window(img, x0, y0, cw, ch)
}

/// AUG-006: divides the image into a grid of `tile_size` squares (whole tiles
/// only; an image smaller than one tile is one tile) and keeps the tile at
/// fraction `position` of the reading order.
pub fn tile(img: &RgbImage, tile_size: u32, position: f32) -> RgbImage {
    let t = tile_size.max(1);
    let tw = t.min(img.width().max(1));
    let th = t.min(img.height().max(1));
    let cols = (img.width() / tw).max(1);
    let rows = (img.height() / th).max(1);
    let count = cols * rows;
    let index = clamp_to_u32(
        f64::from(position.clamp(0.0, 1.0) * count as f32),
        0,
        count - 1,
    );
    let (c, r) = (index % cols, index / cols);
    window(img, c * tw, r * th, tw, th)
}

/// AUG-007: sets a rectangle to `value` in every channel. Its area is the
/// fraction `area` of the image and its height/width ratio is `aspect` (both
/// clamped to the image); its top left corner sits at fraction `x`, `y` of the
/// free room.
pub fn erase(img: &RgbImage, area: f32, aspect: f32, x: f32, y: f32, value: u8) -> RgbImage {
    let mut out = same_size(img, buffers::copy_of(img.as_raw()));
    let (w, h) = (img.width() as usize, img.height() as usize);
    if w == 0 || h == 0 || aspect.is_nan() || aspect <= 0.0 {
        return out;
    }
    let target = f64::from(area.clamp(0.0, 1.0)) * (w * h) as f64;
    let aspect = f64::from(aspect);
    let (wu, hu) = img.dimensions();
    let eh = clamp_to_u32((target * aspect).sqrt().round(), 1, hu);
    let ew = clamp_to_u32((target / aspect).sqrt().round(), 1, wu);
    let x0 = clamp_to_u32(
        (f64::from(x.clamp(0.0, 1.0)) * f64::from(wu - ew)).round(),
        0,
        wu - ew,
    );
    let y0 = clamp_to_u32(
        (f64::from(y.clamp(0.0, 1.0)) * f64::from(hu - eh)).round(),
        0,
        hu - eh,
    );
    let (eh, ew, x0, y0) = (eh as usize, ew as usize, x0 as usize, y0 as usize);
    let stride = w * 3;
    let buf: &mut [u8] = &mut out;
    for row in buf.chunks_exact_mut(stride).skip(y0).take(eh) {
        if let Some(span) = row.get_mut(x0 * 3..(x0 + ew) * 3) {
            span.fill(value);
        }
    }
    out
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::imaging::low_byte;

    const BLACK: Rgb<u8> = Rgb([0, 0, 0]);

    /// A 3×2 image whose pixels are all different.
    fn known() -> RgbImage {
        RgbImage::from_fn(3, 2, |x, y| {
            Rgb([low_byte(10 * x + 100 * y), low_byte(x), low_byte(y)])
        })
    }

    fn numbered(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| Rgb([low_byte(x), low_byte(y), 200]))
    }

    #[test]
    fn horizontal_flip_mirrors_columns() {
        let img = known();
        let out = flip_horizontal(&img);
        for y in 0..2 {
            for x in 0..3 {
                assert_eq!(out.get_pixel(x, y), img.get_pixel(2 - x, y));
            }
        }
        assert_eq!(out.get_pixel(0, 0).0, [20, 2, 0]);
    }

    #[test]
    fn horizontal_flip_of_a_wide_odd_image() {
        // 67 pixels: two 32-pixel blocks (four of 16 with shuffles) and
        // three left over.
        let img = RgbImage::from_fn(67, 31, |x, y| {
            Rgb([low_byte(x), low_byte(y), low_byte(x * y)])
        });
        let out = flip_horizontal(&img);
        for y in 0..31 {
            for x in 0..67 {
                assert_eq!(out.get_pixel(x, y), img.get_pixel(66 - x, y));
            }
        }
        assert_eq!(out, super::super::with_baseline(|| flip_horizontal(&img)));
        assert_eq!(flip_horizontal(&out), img);
    }

    /// Rotation one pixel at a time, every neighbour checked.
    fn rotate_reference(img: &RgbImage, degrees: f32, fill: Rgb<u8>) -> RgbImage {
        let (w, h) = (i64::from(img.width()), i64::from(img.height()));
        let (sin, cos) = f64::from(degrees).to_radians().sin_cos();
        let snap = |v: f64| if v.abs() < 1e-12 { 0.0 } else { v };
        let (sin, cos) = (snap(sin), snap(cos));
        let (cx, cy) = ((w as f64 - 1.0) / 2.0, (h as f64 - 1.0) / 2.0);
        let at = |x: i64, y: i64| {
            if x < 0 || y < 0 || x >= w || y >= h {
                fill.0
            } else {
                let (x, y) = (u32::try_from(x).unwrap(), u32::try_from(y).unwrap());
                img.get_pixel(x, y).0
            }
        };
        RgbImage::from_fn(img.width(), img.height(), |x, y| {
            let dy = f64::from(y) - cy;
            let sx = fixed(-cos * cx - sin * dy + cx) + i64::from(x) * fixed(cos);
            let sy = fixed(-sin * cx + cos * dy + cy) + i64::from(x) * fixed(sin);
            let (x0, y0) = (sx >> 32, sy >> 32);
            let fx = ((sx >> 24) & 0xFF) as u32;
            let fy = ((sy >> 24) & 0xFF) as u32;
            let (a, b, c, d) = (
                at(x0, y0),
                at(x0 + 1, y0),
                at(x0, y0 + 1),
                at(x0 + 1, y0 + 1),
            );
            Rgb(std::array::from_fn(|i| {
                let top = u32::from(a[i]) * (256 - fx) + u32::from(b[i]) * fx;
                let bottom = u32::from(c[i]) * (256 - fx) + u32::from(d[i]) * fx;
                u8::try_from((top * (256 - fy) + bottom * fy + 32_768) >> 16).unwrap()
            }))
        })
    }

    #[test]
    fn rotate_matches_the_pixel_by_pixel_mix() {
        let fill = Rgb([7, 8, 9]);
        for (w, h) in [(67, 31), (31, 67), (1, 5), (5, 1), (2, 2), (40, 40)] {
            let img = RgbImage::from_fn(w, h, |x, y| {
                Rgb([
                    low_byte(x * 37 + y * 11),
                    low_byte(x * y),
                    low_byte(200 + x),
                ])
            });
            for deg in [
                30.0, -45.0, 90.0, 180.0, 7.3, 200.0, -135.0, 359.9, 0.0, 270.0, 45.0,
            ] {
                let out = rotate(&img, deg, fill);
                assert_eq!(out, rotate_reference(&img, deg, fill), "{w}×{h} by {deg}°");
                // The pairs of the AVX2 mix and the plain loop alike.
                let base = super::super::with_baseline(|| rotate(&img, deg, fill));
                assert_eq!(out, base, "{w}×{h} by {deg}°, baseline");
            }
        }
    }

    #[test]
    fn spans_of_a_linear_function() {
        // start + 3x in [5, 20) for x in 0..10: x = 2..7.
        assert_eq!(span(-1, 3, 5, 20, 10), (2, 7));
        // Decreasing: 30 − 4x in [5, 20): x = 3..7.
        assert_eq!(span(30, -4, 5, 20, 10), (3, 7));
        assert_eq!(span(6, 0, 5, 20, 10), (0, 10));
        assert_eq!(span(4, 0, 5, 20, 10), (0, 0));
        assert_eq!(span(100, 1, 5, 20, 10), (0, 0));
        let (lo, hi) = span(-100, -1, 5, 20, 10);
        assert_eq!(lo, hi);
        assert_eq!(intersect((2, 7), (5, 9)), (5, 7));
        assert_eq!(intersect((2, 3), (5, 9)), (5, 5));
    }

    #[test]
    fn vertical_flip_mirrors_rows() {
        let img = known();
        let out = flip_vertical(&img);
        for y in 0..2 {
            for x in 0..3 {
                assert_eq!(out.get_pixel(x, y), img.get_pixel(x, 1 - y));
            }
        }
        assert_eq!(out.get_pixel(1, 0).0, [110, 1, 1]);
    }

    #[test]
    fn rotate_zero_is_identity() {
        let img = numbered(7, 5);
        assert_eq!(rotate(&img, 0.0, BLACK), img);
    }

    #[test]
    fn rotate_90_keeps_size_and_fills_corners() {
        // 5 wide, 3 high: a quarter turn leaves the left and right columns
        // uncovered.
        let img = RgbImage::from_pixel(5, 3, Rgb([200, 100, 50]));
        let fill = Rgb([1, 2, 3]);
        let out = rotate(&img, 90.0, fill);
        assert_eq!(out.dimensions(), (5, 3));
        for (x, y) in [(0, 0), (4, 0), (0, 2), (4, 2)] {
            assert_eq!(*out.get_pixel(x, y), fill, "corner {x},{y}");
        }
        for y in 0..3 {
            for x in 1..4 {
                assert_eq!(out.get_pixel(x, y).0, [200, 100, 50], "inside {x},{y}");
            }
        }
    }

    #[test]
    fn rotate_90_turns_counter_clockwise() {
        // A square image: the right-hand middle pixel moves to the top middle.
        let mut img = RgbImage::from_pixel(3, 3, Rgb([0, 0, 0]));
        img.put_pixel(2, 1, Rgb([255, 0, 0]));
        let out = rotate(&img, 90.0, BLACK);
        assert_eq!(out.get_pixel(1, 0).0, [255, 0, 0]);
        assert_eq!(out.get_pixel(2, 1).0, [0, 0, 0]);
        // And the general rotation agrees with the exact quarter turn.
        let img = numbered(4, 4);
        assert_eq!(rotate(&img, 90.0, BLACK), imageops::rotate270(&img));
    }

    #[test]
    fn scale_keeps_size() {
        let img = RgbImage::from_pixel(40, 20, Rgb([90, 90, 90]));
        let zoom_out = scale(&img, 0.5, Rgb([7, 7, 7])).unwrap();
        assert_eq!(zoom_out.dimensions(), (40, 20));
        assert_eq!(zoom_out.get_pixel(0, 0).0, [7, 7, 7]);
        assert_eq!(zoom_out.get_pixel(20, 10).0, [90, 90, 90]);
        // The shrunk image is 20×10, centred.
        assert_eq!(zoom_out.get_pixel(9, 10).0, [7, 7, 7]);
        assert_eq!(zoom_out.get_pixel(10, 10).0, [90, 90, 90]);
        assert_eq!(zoom_out.get_pixel(29, 14).0, [90, 90, 90]);
        assert_eq!(zoom_out.get_pixel(30, 15).0, [7, 7, 7]);
        let zoom_in = scale(&img, 2.0, BLACK).unwrap();
        assert_eq!(zoom_in.dimensions(), (40, 20));
        assert!(zoom_in.pixels().all(|p| p.0 == [90, 90, 90]));
    }

    #[test]
    fn scale_up_shows_the_middle() {
        // Left half black, right half white: zooming ×2 keeps the edge in the
        // middle and makes the outer quarter columns pure.
        let img = RgbImage::from_fn(40, 10, |x, _| if x < 20 { BLACK } else { Rgb([255; 3]) });
        let out = scale(&img, 2.0, BLACK).unwrap();
        assert_eq!(out.get_pixel(2, 5).0, [0; 3]);
        assert_eq!(out.get_pixel(37, 5).0, [255; 3]);
    }

    #[test]
    fn translate_shifts_and_fills() {
        let img = numbered(10, 10);
        let fill = Rgb([9, 9, 9]);
        let out = translate(&img, 0.2, -0.1, fill);
        assert_eq!(out.dimensions(), (10, 10));
        // Two columns in from the left are new, one row at the bottom is new.
        assert_eq!(*out.get_pixel(1, 0), fill);
        assert_eq!(*out.get_pixel(5, 9), fill);
        assert_eq!(out.get_pixel(2, 0).0, [0, 1, 200]);
        assert_eq!(out.get_pixel(9, 8).0, [7, 9, 200]);
        assert!(
            translate(&img, 0.5, 0.0, fill)
                .pixels()
                .filter(|p| **p == fill)
                .count()
                == 50
        );
        assert!(translate(&img, 1.0, 0.0, fill).pixels().all(|p| *p == fill));
    }

    #[test]
    fn crop_sizes_and_position() {
        let img = numbered(600, 400);
        let out = crop(&img, 512, 512, 1.0, 0.0);
        assert_eq!(out.dimensions(), (512, 400));
        assert_eq!(out.get_pixel(0, 0).0, [88, 0, 200]);
        let out = crop(&img, 100, 50, 0.0, 1.0);
        assert_eq!(out.dimensions(), (100, 50));
        assert_eq!(out.get_pixel(0, 0).0, [0, low_byte(350), 200]);
        assert_eq!(
            crop(&numbered(300, 200), 512, 512, 0.5, 0.5).dimensions(),
            (300, 200)
        );
    }

    #[test]
    fn tile_sizes_and_grid() {
        let img = numbered(1100, 600);
        assert_eq!(tile(&img, 512, 0.7).dimensions(), (512, 512));
        // 3 columns × 2 rows of whole 300 tiles, in reading order.
        let first = tile(&img, 300, 0.0);
        assert_eq!(first.dimensions(), (300, 300));
        assert_eq!(first.get_pixel(0, 0).0, [0, 0, 200]);
        let fourth = tile(&img, 300, 0.5);
        assert_eq!(fourth.get_pixel(0, 0).0, [0, 44, 200]);
        let last = tile(&img, 300, 1.0);
        assert_eq!(last.get_pixel(0, 0).0, [88, 44, 200]);
        assert_eq!(tile(&numbered(100, 700), 512, 0.9).dimensions(), (100, 512));
        assert_eq!(tile(&numbered(30, 20), 512, 0.3).dimensions(), (30, 20));
    }

    #[test]
    fn erase_zeroes_the_requested_area() {
        let img = RgbImage::from_pixel(100, 100, Rgb([50, 60, 70]));
        let out = erase(&img, 0.25, 1.0, 0.0, 1.0, 0);
        let zero = out.pixels().filter(|p| p.0 == [0, 0, 0]).count();
        assert_eq!(zero, 2500);
        // A 50×50 square at the bottom left.
        assert_eq!(out.get_pixel(0, 99).0, [0, 0, 0]);
        assert_eq!(out.get_pixel(49, 50).0, [0, 0, 0]);
        assert_eq!(out.get_pixel(50, 50).0, [50, 60, 70]);
        assert_eq!(out.get_pixel(0, 49).0, [50, 60, 70]);
        // A tall rectangle: aspect 4 is 100 high, 25 wide.
        let out = erase(&img, 0.25, 4.0, 0.5, 0.5, 0);
        let zero = out.pixels().filter(|p| p.0 == [0, 0, 0]).count();
        assert_eq!(zero, 2500);
        assert_eq!(out.get_pixel(40, 0).0, [0, 0, 0]);
        assert_eq!(out.get_pixel(40, 99).0, [0, 0, 0]);
    }

    #[test]
    fn orientation_rotates_and_flips() {
        let img = known();
        assert_eq!(orient(&img, Orientation::NoTransforms), img);
        let r = orient(&img, Orientation::Rotate90);
        assert_eq!(r.dimensions(), (2, 3));
        // Clockwise: the bottom-left pixel becomes the top-left one.
        assert_eq!(r.get_pixel(0, 0), img.get_pixel(0, 1));
        let t = orient(&img, Orientation::Rotate90FlipH);
        assert_eq!(t.get_pixel(0, 0), img.get_pixel(0, 0));
        assert_eq!(
            orient(&img, Orientation::Rotate180).get_pixel(0, 0),
            img.get_pixel(2, 1)
        );
    }
}
