//! Methods that change values, not positions: brightness, contrast, hue,
//! saturation, solarize, posterize, grayscale and gaussian noise.

use std::sync::OnceLock;

use image::RgbImage;
use tessera_domain::generation::SplitMix64;

use super::{
    dispatch, floor_u8, look_up, lut, round_in_range, same_size, saturating_u8, to_f32, to_u8,
};
use crate::imaging::buffers;
#[cfg(target_arch = "x86_64")]
use crate::imaging::simd::x86;

/// AUG-011: multiplies every channel by `factor` (1 = unchanged), clamping at
/// white.
pub fn brightness(img: &RgbImage, factor: f32) -> RgbImage {
    map_table(img, &lut(|v| v * factor), 256)
}

/// AUG-014: moves every value away from (`factor` > 1) or towards
/// (`factor` < 1) the image's mean luma, like PIL's ImageEnhance.Contrast;
/// 0 gives a flat gray.
pub fn contrast(img: &RgbImage, factor: f32) -> RgbImage {
    let mean = to_f32(mean_luma(img));
    map_table(img, &lut(|v| mean + (v - mean) * factor), 256)
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

/// Sums of the R, G and B values of an interleaved RGB buffer. Sixteen
/// pixels (48 bytes) at a time into 48 u16 lanes, so the additions vectorise
/// at their narrowest; 256 blocks of 255s still fit a u16.
pub(crate) fn channel_sums(raw: &[u8]) -> [u64; 3] {
    const LANES: usize = 48;
    let mut wide = [0u64; LANES];
    let mut total = [0u64; 3];
    for group in raw.chunks(LANES * 256) {
        let blocks = group.chunks_exact(LANES);
        // A group's length is a multiple of 3 but for the last one, so the
        // remainder's positions keep their channels.
        for (i, v) in blocks.remainder().iter().enumerate() {
            if let Some(t) = total.get_mut(i % 3) {
                *t += u64::from(*v);
            }
        }
        let mut lanes = [0u16; LANES];
        for block in blocks {
            for (l, v) in lanes.iter_mut().zip(block) {
                *l += u16::from(*v);
            }
        }
        for (w, l) in wide.iter_mut().zip(lanes) {
            *w += u64::from(l);
        }
    }
    for (i, w) in wide.iter().enumerate() {
        if let Some(t) = total.get_mut(i % 3) {
            *t += *w;
        }
    }
    total
}

/// `min(255, (p(v) + add).saturating_sub(sub) >> shift)`: an increasing
/// affine map of a value, clamped, in u16 arithmetic. The product `p(v)` is
/// `min(v, cap)·mul` (`cap` is where it reaches 255, so that steep slopes
/// still fit 16 bits), or, for slopes that need finer steps than that
/// leaves (`high`), the high half of `(v·256)·mul`: `floor(v·mul / 256)`,
/// one multiply-high instruction per 16 lanes.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Affine {
    cap: u8,
    mul: u16,
    add: u16,
    sub: u16,
    shift: u16,
    high: bool,
}

impl Affine {
    /// [`Affine::apply`] for one kind of product, so that a loop over many
    /// values has no branch in it.
    #[inline(always)]
    fn apply_as<const HIGH: bool>(self, v: u8) -> u16 {
        let product = if HIGH {
            ((u32::from(u16::from(v) << 8) * u32::from(self.mul)) >> 16) as u16
        } else {
            u16::from(v.min(self.cap)).wrapping_mul(self.mul)
        };
        // Wrapping: a fit keeps its own values below 2^16; values outside
        // its range (the other piece's) are computed, then dropped.
        (product.wrapping_add(self.add))
            .saturating_sub(self.sub)
            .wrapping_shr(u32::from(self.shift))
            .min(255)
    }

    /// [`Affine::apply_as`] as the byte it is.
    #[inline(always)]
    #[expect(clippy::cast_possible_truncation, reason = "apply_as ends in min(255)")]
    fn byte_as<const HIGH: bool>(self, v: u8) -> u8 {
        self.apply_as::<HIGH>(v) as u8
    }

    #[inline(always)]
    fn apply(self, v: u8) -> u16 {
        if self.high {
            self.apply_as::<true>(v)
        } else {
            self.apply_as::<false>(v)
        }
    }

    /// `clamp(v + c)` as `v.saturating_add(c.0).saturating_sub(c.1)` on
    /// bytes, if the map is one (slope 1): its offset is then
    /// `floor((add - sub) / 2^shift)`, and the clamps agree.
    fn offset(self) -> Option<(u8, u8)> {
        if self.high || u32::from(self.mul) != 1 << self.shift {
            return None;
        }
        let c = (i32::from(self.add) - i32::from(self.sub)) >> self.shift;
        Some((
            u8::try_from(c.max(0)).ok()?,
            u8::try_from((-c).max(0)).ok()?,
        ))
    }

    /// The map that gives exactly `target(v)` for every `v` in `lo..=hi`, if
    /// there is one (the targets must not decrease). Tries the coarsest
    /// fixed-point scale first (slope 1 is then a plain offset); every
    /// candidate is checked against all the values, so a map found is exact.
    fn fit(lo: u8, hi: u8, target: impl Fn(u8) -> u8) -> Option<Affine> {
        let vals: Vec<(i64, i64)> = (lo..=hi)
            .map(|v| (i64::from(v), i64::from(target(v))))
            .collect();
        if vals.windows(2).any(|w| matches!(w, [a, b] if b.1 < a.1)) {
            return None;
        }
        // Two unclamped points bound the slope; without them, try a few.
        let inner: Vec<&(i64, i64)> = vals.iter().filter(|(_, t)| *t > 0 && *t < 255).collect();
        let span = match (inner.first(), inner.last()) {
            (Some(a), Some(b)) if b.0 > a.0 => Some((b.0 - a.0, b.1 - a.1)),
            _ => None,
        };
        // Past the first 255 every value is 255.
        let cap = vals
            .iter()
            .find(|(_, t)| *t == 255)
            .or(vals.last())
            .map_or(0, |(v, _)| *v);
        // Plain products first (coarsest scale first), then high halves,
        // whose scale is 2^(8 + shift).
        for (high, shifts) in [(false, 0..=15u32), (true, 0..=7)] {
            let mut tried = 0;
            for shift in shifts {
                let one = 1i64 << (shift + if high { 8 } else { 0 });
                let (m_lo, m_hi) = match span {
                    Some((dv, dt)) => (((dt - 1) * one) / dv, ((dt + 1) * one) / dv + 1),
                    None => (0, 2),
                };
                let m_max = if high { 65_535 } else { 65_535 / cap.max(1) };
                for mul in m_lo.max(0)..=m_hi.min(m_max) {
                    tried += 1;
                    if tried > 200 {
                        break;
                    }
                    if let Some(a) = Self::fit_offset(&vals, cap, mul, shift, high) {
                        return Some(a);
                    }
                }
            }
        }
        None
    }

    /// The offset that makes `mul` and `shift` exact on `vals`, if any.
    fn fit_offset(
        vals: &[(i64, i64)],
        cap: i64,
        mul: i64,
        shift: u32,
        high: bool,
    ) -> Option<Affine> {
        let one = 1i64 << shift;
        let product = |v: i64| {
            if high {
                (v * 256 * mul) >> 16
            } else {
                v.min(cap) * mul
            }
        };
        let (mut r_lo, mut r_hi) = (i64::MIN, i64::MAX);
        for (v, t) in vals {
            let base = product(*v);
            if *t > 0 {
                r_lo = r_lo.max(t * one - base);
            }
            if *t < 255 {
                r_hi = r_hi.min((t + 1) * one - 1 - base);
            }
        }
        if r_lo > r_hi {
            return None;
        }
        let r = 0i64.clamp(r_lo, r_hi);
        let top = product(if high { 255 } else { cap }) + r.max(0);
        if top > i64::from(u16::MAX) {
            return None;
        }
        let a = Affine {
            cap: u8::try_from(cap).ok()?,
            mul: u16::try_from(mul).ok()?,
            add: u16::try_from(r.max(0)).ok()?,
            sub: u16::try_from((-r).max(0)).ok()?,
            shift: u16::try_from(shift).ok()?,
            high,
        };
        let exact = vals
            .iter()
            .all(|(v, t)| u8::try_from(*v).is_ok_and(|v| i64::from(a.apply(v)) == *t));
        exact.then_some(a)
    }
}

/// A value table as arithmetic: `a(v)` below `split`, `255 - b(v)` from it
/// on (`split` 256: `a` everywhere).
#[derive(Clone, Copy, Debug, PartialEq)]
struct TwoPieces {
    split: u16,
    a: Affine,
    b: Affine,
}

impl TwoPieces {
    /// The arithmetic that gives `table` exactly, if the table rises (or
    /// stays) below `split` and falls from there, each part affine on the
    /// integer grid: what brightness, contrast and solarize produce.
    fn of(table: &[u8; 256], split: u16) -> Option<TwoPieces> {
        let t = |v: u8| look_up(table, v);
        let b = match u8::try_from(split) {
            Ok(first_b) => Some(Affine::fit(first_b, 255, |v| 255 - t(v))?),
            Err(_) => None,
        };
        let a = match split.checked_sub(1) {
            Some(last_a) => Affine::fit(0, u8::try_from(last_a).ok()?, t)?,
            // Nothing below the split: `a` is never used.
            None => b?,
        };
        Some(TwoPieces {
            split,
            a,
            b: b.unwrap_or(a),
        })
    }

    #[inline(always)]
    #[expect(
        clippy::cast_possible_truncation,
        reason = "both pieces end in min(255) (Affine::apply_as), so either is 0..=255"
    )]
    fn apply(self, v: u8) -> u8 {
        let lo = self.a.apply(v);
        let hi = 255 - self.b.apply(v);
        (if u16::from(v) < self.split { lo } else { hi }) as u8
    }
}

/// Byte loops as ops for [`dispatch`]: `dst[i] = f(src[i])`.
struct MapBytes<'a, F> {
    src: &'a [u8],
    dst: &'a mut [u8],
    f: F,
}

impl<F: Fn(u8) -> u8> pulp::WithSimd for MapBytes<'_, F> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        let f = self.f;
        for (d, s) in self.dst.iter_mut().zip(self.src) {
            *d = f(*s);
        }
    }
}

/// Applies a value table to every channel: as arithmetic on 16-bit lanes
/// where [`TwoPieces`] reproduces it exactly (rising below `split`, falling
/// from it), else by lookup. Either way, every value is the table's.
fn map_table(img: &RgbImage, table: &[u8; 256], split: u16) -> RgbImage {
    let src = img.as_raw();
    let mut raw = buffers::take(src.len());
    let dst = raw.as_mut_slice();
    match TwoPieces::of(table, split) {
        Some(p) => match (p.a.offset(), u8::try_from(p.split), p.b.offset()) {
            // Offsets on bytes: 32 values an instruction.
            (Some((pa, qa)), Err(_), _) => dispatch(MapBytes {
                src,
                dst,
                f: move |v: u8| v.saturating_add(pa).saturating_sub(qa),
            }),
            (Some((pa, qa)), Ok(split), Some((pb, qb))) => dispatch(MapBytes {
                src,
                dst,
                f: move |v: u8| {
                    let lo = v.saturating_add(pa).saturating_sub(qa);
                    let hi = 255 - v.saturating_add(pb).saturating_sub(qb);
                    if v < split {
                        lo
                    } else {
                        hi
                    }
                },
            }),
            // General slopes on 16-bit lanes.
            (_, Err(_), _) if p.a.high => {
                let a = p.a;
                dispatch(MapBytes {
                    src,
                    dst,
                    f: move |v| a.byte_as::<true>(v),
                })
            }
            (_, Err(_), _) => {
                let a = p.a;
                dispatch(MapBytes {
                    src,
                    dst,
                    f: move |v| a.byte_as::<false>(v),
                })
            }
            _ => dispatch(MapBytes {
                src,
                dst,
                f: move |v| p.apply(v),
            }),
        },
        None => {
            for (d, s) in dst.iter_mut().zip(src) {
                *d = look_up(table, *s);
            }
        }
    }
    same_size(img, raw)
}

/// A per-pixel colour operation, run on planar blocks of [`BLOCK`] pixels
/// (the channels as floats, the result as bytes).
trait PixelOp: Copy {
    fn pixel(self, rgb: [f32; 3]) -> [u8; 3];

    #[inline(always)]
    fn block(self, [r, g, b]: &[[u8; BLOCK]; 3], [or, og, ob]: &mut [[u8; BLOCK]; 3]) {
        let pixels = r.iter().zip(g).zip(b);
        let outs = or.iter_mut().zip(og.iter_mut()).zip(ob.iter_mut());
        for (((r, g), b), ((or, og), ob)) in pixels.zip(outs) {
            [*or, *og, *ob] = self.pixel([f32::from(*r), f32::from(*g), f32::from(*b)]);
        }
    }
}

/// Pixels per block: planes of 64 values keep everything in registers and
/// L1 while the loops run at full width.
const BLOCK: usize = 64;

/// How a block of interleaved RGB becomes three planes and back.
trait Planar: Copy {
    fn split(self, s: &[u8; 3 * BLOCK], planes: &mut [[u8; BLOCK]; 3]);
    fn join(self, planes: &[[u8; BLOCK]; 3], d: &mut [u8; 3 * BLOCK]);
}

/// Plain loops, for any CPU (the compiler keeps them scalar: stride 3).
#[derive(Clone, Copy)]
struct Loops;

impl Planar for Loops {
    #[inline(always)]
    fn split(self, s: &[u8; 3 * BLOCK], [r, g, b]: &mut [[u8; BLOCK]; 3]) {
        for (px, ((r, g), b)) in s
            .chunks_exact(3)
            .zip(r.iter_mut().zip(g.iter_mut()).zip(b.iter_mut()))
        {
            if let &[pr, pg, pb] = px {
                (*r, *g, *b) = (pr, pg, pb);
            }
        }
    }

    #[inline(always)]
    fn join(self, [r, g, b]: &[[u8; BLOCK]; 3], d: &mut [u8; 3 * BLOCK]) {
        for (px, ((r, g), b)) in d
            .chunks_exact_mut(3)
            .zip(r.iter().zip(g.iter()).zip(b.iter()))
        {
            if let [pr, pg, pb] = px {
                (*pr, *pg, *pb) = (*r, *g, *b);
            }
        }
    }
}

/// Byte shuffles of 16 pixels at a time (AVX2 machines).
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
struct Shuffles {
    simd: x86::V3,
    split: x86::Deinterleave,
    join: x86::Shuffle48,
}

#[cfg(target_arch = "x86_64")]
impl Shuffles {
    #[inline(always)]
    fn new(simd: x86::V3) -> Self {
        Self {
            simd,
            split: x86::Deinterleave::new(simd),
            // Byte 3k + c <- plane c, value k.
            join: x86::Shuffle48::new(|j| 16 * (j % 3) + j / 3),
        }
    }
}

#[cfg(target_arch = "x86_64")]
impl Planar for Shuffles {
    #[inline(always)]
    fn split(self, s: &[u8; 3 * BLOCK], [r, g, b]: &mut [[u8; BLOCK]; 3]) {
        self.split.run(s, r, g, b);
    }

    #[inline(always)]
    fn join(self, [r, g, b]: &[[u8; BLOCK]; 3], d: &mut [u8; 3 * BLOCK]) {
        let pieces = r
            .chunks_exact(16)
            .zip(g.chunks_exact(16))
            .zip(b.chunks_exact(16));
        for (out, ((r, g), b)) in d.chunks_exact_mut(48).zip(pieces) {
            let mut planes = [0u8; 48];
            let (pr, rest) = planes.split_at_mut(16);
            let (pg, pb) = rest.split_at_mut(16);
            pr.copy_from_slice(r);
            pg.copy_from_slice(g);
            pb.copy_from_slice(b);
            if let Ok(out) = <&mut [u8; 48]>::try_from(out) {
                x86::store48(out, self.join.apply(self.simd, x86::load48(&planes)));
            }
        }
    }
}

struct MapPixels<'a, Op, P> {
    src: &'a [u8],
    dst: &'a mut [u8],
    op: Op,
    planar: P,
}

impl<Op: PixelOp, P: Planar> pulp::WithSimd for MapPixels<'_, Op, P> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        let (op, planar) = (self.op, self.planar);
        let mut s_blocks = self.src.chunks_exact(3 * BLOCK);
        let mut d_blocks = self.dst.chunks_exact_mut(3 * BLOCK);
        for (s, d) in s_blocks.by_ref().zip(d_blocks.by_ref()) {
            if let (Ok(s), Ok(d)) = (
                <&[u8; 3 * BLOCK]>::try_from(s),
                <&mut [u8; 3 * BLOCK]>::try_from(d),
            ) {
                run_block(s, d, op, planar);
            }
        }
        // The last pixels, padded to a block.
        let (rest_s, rest_d) = (s_blocks.remainder(), d_blocks.into_remainder());
        if !rest_s.is_empty() {
            let mut s = [0u8; 3 * BLOCK];
            let mut d = [0u8; 3 * BLOCK];
            for (p, v) in s.iter_mut().zip(rest_s) {
                *p = *v;
            }
            run_block(&s, &mut d, op, planar);
            for (o, v) in rest_d.iter_mut().zip(d) {
                *o = v;
            }
        }
    }
}

/// Splits a block into planes, runs the op, interleaves the result.
#[inline(always)]
fn run_block(s: &[u8; 3 * BLOCK], d: &mut [u8; 3 * BLOCK], op: impl PixelOp, planar: impl Planar) {
    let mut planes = [[0u8; BLOCK]; 3];
    let mut out = [[0u8; BLOCK]; 3];
    planar.split(s, &mut planes);
    op.block(&planes, &mut out);
    planar.join(&out, d);
}

/// Runs a pixel op over the whole image: with byte shuffles where the CPU
/// has AVX2, with plain loops otherwise (the same bytes either way).
fn map_pixels(img: &RgbImage, op: impl PixelOp) -> RgbImage {
    let src = img.as_raw();
    let mut raw = buffers::take(src.len());
    let dst = raw.as_mut_slice();
    #[cfg(target_arch = "x86_64")]
    if let Some(simd) = x86::v3() {
        pulp::Simd::vectorize(
            simd,
            MapPixels {
                src,
                dst,
                op,
                planar: Shuffles::new(simd),
            },
        );
        return same_size(img, raw);
    }
    dispatch(MapPixels {
        src,
        dst,
        op,
        planar: Loops,
    });
    same_size(img, raw)
}

/// `a.max(b)` and `a.min(b)` as selects (the inputs are never NaN), so they
/// compile to single instructions.
#[inline(always)]
fn max(a: f32, b: f32) -> f32 {
    if a > b {
        a
    } else {
        b
    }
}

#[inline(always)]
fn min(a: f32, b: f32) -> f32 {
    if a < b {
        a
    } else {
        b
    }
}

/// `1 / d`, 0 for 0.
#[inline(always)]
fn reciprocal(d: f32) -> f32 {
    if d > 0.0 {
        1.0 / d
    } else {
        0.0
    }
}

#[derive(Clone, Copy)]
struct Hue {
    /// The turn in sextants of the circle, 0..6.
    turn: f32,
}

impl PixelOp for Hue {
    #[inline(always)]
    fn pixel(self, [r, g, b]: [f32; 3]) -> [u8; 3] {
        let (hi, lo) = (max(max(r, g), b), min(min(r, g), b));
        let d = hi - lo;
        let (is_r, is_g) = (hi == r, hi == g);
        let base = if is_r {
            0.0
        } else if is_g {
            2.0
        } else {
            4.0
        };
        let num = if is_r {
            g - b
        } else if is_g {
            b - r
        } else {
            r - g
        };
        // In -1..12: one wrap either way brings it into 0..6.
        let h = base + num * reciprocal(d) + self.turn;
        let h = if h < 0.0 { h + 6.0 } else { h };
        let h = if h >= 6.0 { h - 6.0 } else { h };
        let s = min(f32::from(floor_u8(h)), 5.0);
        let f = h - s;
        let odd = (s == 1.0) | (s == 3.0) | (s == 5.0);
        let t = if odd { 1.0 - f } else { f };
        let mid = f32::from(to_u8(lo + d * t));
        // Which channel holds the maximum, the middle and the minimum;
        // all three are whole numbers, so `floor_u8` is their byte (and,
        // unlike a cast, vectorises).
        let pick = |top: bool, middle: bool| {
            floor_u8(if top {
                hi
            } else if middle {
                mid
            } else {
                lo
            })
        };
        [
            pick((s == 0.0) | (s == 5.0), (s == 1.0) | (s == 4.0)),
            pick((s == 1.0) | (s == 2.0), (s == 0.0) | (s == 3.0)),
            pick((s == 3.0) | (s == 4.0), (s == 2.0) | (s == 5.0)),
        ]
    }
}

/// AUG-012: turns the hue by `shift` of a full circle (±0.5 = opposite
/// colour), in HSV. Value (the maximum) and saturation (the spread) stay, so
/// each pixel keeps its largest and smallest channel values; only which
/// channel holds them and the middle value change. That is the HSV round
/// trip without its divisions, branch-free on planes of 64 pixels. A shift
/// that is not finite leaves the image as it is.
pub fn hue(img: &RgbImage, shift: f32) -> RgbImage {
    if shift == 0.0 || !shift.is_finite() {
        return img.clone();
    }
    map_pixels(
        img,
        Hue {
            turn: shift.rem_euclid(1.0) * 6.0,
        },
    )
}

#[derive(Clone, Copy)]
struct Saturation {
    factor: f32,
}

impl PixelOp for Saturation {
    #[inline(always)]
    fn pixel(self, [r, g, b]: [f32; 3]) -> [u8; 3] {
        let (hi, lo) = (max(max(r, g), b), min(min(r, g), b));
        // Full saturation (min = 0) is as far as the factor can go; a gray
        // pixel (reciprocal 0) stays as it is.
        let f = min(self.factor, hi * reciprocal(hi - lo));
        // With 0 <= f <= hi / (hi - lo) and lo <= c <= hi, every result is
        // in 0..=hi (to within a rounding of the products).
        [
            round_in_range(hi - f * (hi - r)),
            round_in_range(hi - f * (hi - g)),
            round_in_range(hi - f * (hi - b)),
        ]
    }
}

/// AUG-013: multiplies the HSV saturation by `factor` (0 = gray, 1 =
/// unchanged), clamping at full saturation. With hue and value fixed, every
/// channel sits at `max - s·t·max` for a `t` set by the hue, so scaling the
/// saturation scales each channel's distance from the maximum: no round trip
/// through HSV is needed. Results round to the nearest value, ties to even.
pub fn saturation(img: &RgbImage, factor: f32) -> RgbImage {
    let factor = factor.max(0.0);
    map_pixels(img, Saturation { factor })
}

/// AUG-015: as Kornia's solarize: on the 0–1 range, adds `addition`
/// (clamped), then replaces every value `x >= threshold` by `1 - x`.
pub fn solarize(img: &RgbImage, threshold: f32, addition: f32) -> RgbImage {
    let x = |v: f32| (v / 255.0 + addition).clamp(0.0, 1.0);
    let table = lut(|v| {
        let x = x(v);
        let y = if x < threshold { x } else { 1.0 - x };
        y * 255.0
    });
    // `x` rises with the value, so the kept values come first.
    let split = (0u8..=255).filter(|v| x(f32::from(*v)) < threshold).count();
    map_table(img, &table, u16::try_from(split).unwrap_or(256))
}

/// AUG-016: keeps the `bits` high bits of every channel (8 = unchanged,
/// 0 = black).
pub fn posterize(img: &RgbImage, bits: u8) -> RgbImage {
    let mask = if bits >= 8 {
        0xFF
    } else {
        !(0xFFu8 >> bits.min(8))
    };
    let src = img.as_raw();
    let mut raw = buffers::take(src.len());
    dispatch(MapBytes {
        src,
        dst: raw.as_mut_slice(),
        f: move |v| v & mask,
    });
    same_size(img, raw)
}

#[derive(Clone, Copy)]
struct Gray;

impl PixelOp for Gray {
    #[inline(always)]
    fn pixel(self, [r, g, b]: [f32; 3]) -> [u8; 3] {
        // 299 r + 587 g + 114 b is an integer below 2^24, exact in f32; so
        // is that plus 500.5, and the product with 0.001 is within 4e-5 of
        // the true quotient, which is at least 5e-4 from an integer: its
        // floor is the rounded luma, exactly.
        let n = 299.0 * r + 587.0 * g + 114.0 * b;
        let l = floor_u8((n + 500.5) * 0.001);
        [l, l, l]
    }
}

/// PRE-001: Rec. 601 luma (0.299 R + 0.587 G + 0.114 B, rounded), written
/// to all three channels. The pipeline stays RGB so every later step and the
/// encoder see one pixel layout; a three-channel gray JPEG costs little more
/// than a one-channel one.
pub fn grayscale(img: &RgbImage) -> RgbImage {
    #[cfg(target_arch = "x86_64")]
    if let Some(simd) = x86::v3() {
        let src = img.as_raw();
        let mut raw = buffers::take(src.len());
        pulp::Simd::vectorize(
            simd,
            GrayShuffled {
                simd,
                src,
                dst: &mut raw,
            },
        );
        return same_size(img, raw);
    }
    map_pixels(img, Gray)
}

/// Grayscale with byte shuffles (AVX2 machines), 16 pixels at a time
/// straight from the interleaved bytes: the channels are gathered into
/// three registers, the weighted sum taken with `madd` on 16-bit pairs
/// (299 r + 587 g, 114 b + 500 · 1, exact in 32 bits), and the luma spread
/// back to all three channels. The rounding is [`Gray`]'s: (n + 0.5) ·
/// 0.001 in f32, truncated, so both give the same bytes.
#[cfg(target_arch = "x86_64")]
struct GrayShuffled<'a> {
    simd: x86::V3,
    src: &'a [u8],
    dst: &'a mut [u8],
}

#[cfg(target_arch = "x86_64")]
impl pulp::WithSimd for GrayShuffled<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        let Self { simd, src, dst } = self;
        let (sse2, avx) = (simd.sse2, simd.avx);
        let planes = x86::Shuffle48::new(|j| 3 * (j % 16) + j / 16);
        // From the first register only: byte 3k + c <- luma k.
        let spread = x86::Shuffle48::new(|j| j / 3);
        let rg_weights = avx._mm256_set1_epi32(299 | (587 << 16));
        let b_weights = avx._mm256_set1_epi32(114 | (500 << 16));
        let ones = sse2._mm_set1_epi8(1);
        let zero = sse2._mm_setzero_si128();
        let (half, milli) = (avx._mm256_set1_ps(0.5), avx._mm256_set1_ps(0.001));
        let mut ins = src.chunks_exact(48);
        let mut outs = dst.chunks_exact_mut(48);
        for (i, o) in ins.by_ref().zip(outs.by_ref()) {
            let (Ok(i), Ok(o)) = (<&[u8; 48]>::try_from(i), <&mut [u8; 48]>::try_from(o)) else {
                continue;
            };
            let [r, g, b] = planes.apply(simd, x86::load48(i));
            let w = (rg_weights, b_weights, half, milli);
            let lo = luma8(
                simd,
                sse2._mm_unpacklo_epi8(r, g),
                sse2._mm_unpacklo_epi8(b, ones),
                w,
            );
            let hi = luma8(
                simd,
                sse2._mm_unpackhi_epi8(r, g),
                sse2._mm_unpackhi_epi8(b, ones),
                w,
            );
            let l = sse2._mm_packus_epi16(words(simd, lo), words(simd, hi));
            x86::store48(o, spread.apply(simd, [l, zero, zero]));
        }
        for (o, i) in outs
            .into_remainder()
            .chunks_exact_mut(3)
            .zip(ins.remainder().chunks_exact(3))
        {
            if let (&[r, g, b], [or, og, ob]) = (i, o) {
                [*or, *og, *ob] = Gray.pixel([f32::from(r), f32::from(g), f32::from(b)]);
            }
        }
    }
}

/// Luma of 8 pixels from their (r, g) and (b, 1) byte pairs. A function,
/// not a closure: a closure is compiled without AVX2 (see `Shuffle48`).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn luma8(
    simd: x86::V3,
    rg: core::arch::x86_64::__m128i,
    b1: core::arch::x86_64::__m128i,
    (rg_weights, b_weights, half, milli): (
        core::arch::x86_64::__m256i,
        core::arch::x86_64::__m256i,
        core::arch::x86_64::__m256,
        core::arch::x86_64::__m256,
    ),
) -> core::arch::x86_64::__m256i {
    let (avx, avx2) = (simd.avx, simd.avx2);
    let n = avx2._mm256_add_epi32(
        avx2._mm256_madd_epi16(avx2._mm256_cvtepu8_epi16(rg), rg_weights),
        avx2._mm256_madd_epi16(avx2._mm256_cvtepu8_epi16(b1), b_weights),
    );
    let f = avx._mm256_mul_ps(avx._mm256_add_ps(avx._mm256_cvtepi32_ps(n), half), milli);
    avx._mm256_cvttps_epi32(f)
}

/// Eight 32-bit lanes (0..=255) as 16-bit ones.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn words(simd: x86::V3, v: core::arch::x86_64::__m256i) -> core::arch::x86_64::__m128i {
    simd.sse4_1._mm_packus_epi32(
        simd.avx._mm256_castsi256_si128(v),
        simd.avx2._mm256_extracti128_si256::<1>(v),
    )
}

/// AUG-008: adds independent gaussian noise to every channel of every pixel;
/// `mean` and `std` are on the 0–1 range. The noise comes from `rng`, so a
/// recorded seed gives the same noise again. Each 64-bit draw yields four
/// normal values through a table of 65,536 normal quantiles (tails cut at
/// ±4.3 sigma, invisible at 8 bits per channel).
pub fn gaussian_noise(img: &RgbImage, mean: f32, std: f32, rng: &mut SplitMix64) -> RgbImage {
    let table = normal_quantiles();
    let mut out = same_size(img, buffers::copy_of(img.as_raw()));
    let (mean, std) = (mean * 255.0, std * 255.0);
    let buf: &mut [u8] = &mut out;
    for chunk in buf.chunks_mut(4) {
        let bits = rng.next_u64();
        for (j, v) in chunk.iter_mut().enumerate() {
            let index = ((bits >> (16 * j)) & 0xFFFF) as usize;
            let n = table.get(index).copied().unwrap_or(0.0);
            // The saturating cast itself: this loop stays scalar (the table
            // look-ups), where the cast is the cheaper of the two forms.
            *v = saturating_u8(f32::from(*v) + mean + std * n + 0.5);
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
                    table.push(to_f32(x + t * STEP));
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

    use image::Rgb;

    use super::super::luma601;
    use super::*;
    use crate::imaging::low_byte;

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

    /// A photo-like test image: gradients, gray patches and saturated
    /// colours, odd-sized so that the last block is a partial one.
    fn busy(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            let v = low_byte(x * 37 + y * 11);
            match (x + y) % 7 {
                0 => Rgb([v; 3]),
                1 => Rgb([255, v / 2, 0]),
                _ => Rgb([
                    low_byte(x * 7 + y * 3),
                    low_byte(x * y + 5),
                    v.wrapping_mul(3),
                ]),
            }
        })
    }

    fn all_methods(img: &RgbImage) -> Vec<RgbImage> {
        vec![
            brightness(img, 1.5),
            brightness(img, 0.37),
            contrast(img, 1.5),
            contrast(img, 0.6),
            hue(img, 0.1),
            hue(img, -0.43),
            saturation(img, 1.5),
            saturation(img, 0.4),
            solarize(img, 0.5, 0.0),
            solarize(img, 0.3, 0.1),
            posterize(img, 4),
            grayscale(img),
        ]
    }

    #[test]
    fn wide_and_baseline_versions_agree() {
        let img = busy(67, 31);
        let wide = all_methods(&img);
        let base = super::super::with_baseline(|| all_methods(&img));
        assert_eq!(wide, base);
    }

    #[test]
    fn value_tables_become_exact_arithmetic() {
        let solar = |t: f32, a: f32| {
            let x = |v: f32| (v / 255.0 + a).clamp(0.0, 1.0);
            let table = lut(|v| {
                let x = x(v);
                (if x < t { x } else { 1.0 - x }) * 255.0
            });
            let split = (0u8..=255).filter(|v| x(f32::from(*v)) < t).count();
            (table, u16::try_from(split).unwrap())
        };
        let mut cases = vec![
            solar(0.5, 0.0),
            solar(0.3, 0.1),
            solar(0.0, 0.0),
            solar(1.0, 0.0),
        ];
        for f in [0.0f32, 0.25, 0.75, 0.9, 1.0, 1.1, 1.2, 1.5, 2.0, 3.3] {
            cases.push((lut(|v| v * f), 256));
            cases.push((lut(|v| 117.3 + (v - 117.3) * f), 256));
        }
        for (table, split) in &cases {
            let p = TwoPieces::of(table, *split).expect("an exact fit");
            for v in 0..=255u8 {
                assert_eq!(p.apply(v), table[usize::from(v)], "{v} of {table:?}");
            }
        }
        // Slopes whose rounding needs finer steps than 16 bits hold may keep
        // the table; the values are the table's either way.
        let img = busy(67, 31);
        for f in [0.37f32, 3.3, 0.123] {
            for table in [lut(|v| v * f), lut(|v| 117.3 + (v - 117.3) * f)] {
                let raw: Vec<u8> = img
                    .as_raw()
                    .iter()
                    .map(|v| table[usize::from(*v)])
                    .collect();
                assert_eq!(map_table(&img, &table, 256).into_raw(), raw);
            }
        }
        // Solarize is two offsets, for the byte path.
        let (table, split) = solar(0.5, 0.0);
        let p = TwoPieces::of(&table, split).unwrap();
        assert_eq!((p.a.offset(), p.b.offset()), (Some((0, 0)), Some((0, 0))));
        let raw: Vec<u8> = img
            .as_raw()
            .iter()
            .map(|v| table[usize::from(*v)])
            .collect();
        assert_eq!(map_table(&img, &table, split).into_raw(), raw);
        let (table, split) = solar(0.3, 0.1);
        let raw: Vec<u8> = img
            .as_raw()
            .iter()
            .map(|v| table[usize::from(*v)])
            .collect();
        assert_eq!(map_table(&img, &table, split).into_raw(), raw);
        // A table that is no such map keeps the lookup.
        let mut odd = lut(|v| v);
        odd[100] = 3;
        assert!(TwoPieces::of(&odd, 256).is_none());
        let img = busy(9, 5);
        let raw: Vec<u8> = img.as_raw().iter().map(|v| odd[usize::from(*v)]).collect();
        assert_eq!(map_table(&img, &odd, 256).into_raw(), raw);
    }

    #[test]
    fn grayscale_matches_the_integer_luma() {
        // Every red and green value against every fifth blue value.
        let img = RgbImage::from_fn(256 * 52, 256, |x, y| {
            Rgb([low_byte(x), low_byte(y), (5 * (x / 256)).min(255) as u8])
        });
        let out = grayscale(&img);
        for (p, o) in img.pixels().zip(out.pixels()) {
            let l = luma601(p[0], p[1], p[2]);
            assert_eq!(o.0, [l; 3], "{:?}", p.0);
        }
    }

    #[test]
    fn channel_sums_count_every_value() {
        // Long enough for several u16 groups and an odd tail.
        let raw: Vec<u8> = (0..48 * 256 * 3 + 21)
            .map(|i| u8::try_from(i * 7 % 256).unwrap())
            .collect();
        let mut want = [0u64; 3];
        for (i, v) in raw.iter().enumerate() {
            want[i % 3] += u64::from(*v);
        }
        assert_eq!(channel_sums(&raw), want);
        let full = vec![255u8; 48 * 256 * 2];
        assert_eq!(channel_sums(&full), [255 * 16 * 256 * 2; 3]);
    }

    #[test]
    fn hue_and_saturation_match_the_hsv_round_trip() {
        use super::super::{hsv_to_rgb, rgb_to_hsv};
        let img = busy(67, 31);
        let turned = hue(&img, 0.25);
        let scaled = saturation(&img, 0.5);
        for ((p, t), s) in img.pixels().zip(turned.pixels()).zip(scaled.pixels()) {
            let [h, sat, v] = rgb_to_hsv(p.0);
            let want_t = hsv_to_rgb([h + 0.25, sat, v]);
            let want_s = hsv_to_rgb([h, sat * 0.5, v]);
            for c in 0..3 {
                assert!(
                    t[c].abs_diff(want_t[c]) <= 1,
                    "{:?}: {:?} {want_t:?}",
                    p.0,
                    t.0
                );
                assert!(
                    s[c].abs_diff(want_s[c]) <= 1,
                    "{:?}: {:?} {want_s:?}",
                    p.0,
                    s.0
                );
            }
        }
    }

    #[test]
    fn normal_table_is_a_standard_normal() {
        let t = normal_quantiles();
        assert_eq!(t.len(), 65536);
        assert!(t.windows(2).all(|p| p[0] < p[1]));
        for i in 0..t.len() {
            assert!((t[i] + t[t.len() - 1 - i]).abs() < 1e-4, "symmetry at {i}");
        }
        // Φ⁻¹(0.975) = 1.959964, Φ⁻¹(0.841345) = 1; the quantile at p is
        // entry ⌊p · 65536⌋.
        assert!((t[63_897] - 1.959964).abs() < 2e-3);
        assert!((t[55_138] - 1.0).abs() < 2e-3);
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
