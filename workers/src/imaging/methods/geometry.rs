//! Methods that move pixels: flips, rotation, scale, translation, crops,
//! tiles, erasing, and the EXIF orientation.

use image::metadata::Orientation;
use image::{imageops, Rgb, RgbImage};

use super::{resize, same_size};
use crate::imaging::ImagingError;

/// AUG-003: mirrors left to right.
pub fn flip_horizontal(img: &RgbImage) -> RgbImage {
    let stride = img.width() as usize * 3;
    let src = img.as_raw();
    let mut raw = vec![0u8; src.len()];
    if stride == 0 {
        return same_size(img, raw);
    }
    for (d_row, s_row) in raw.chunks_exact_mut(stride).zip(src.chunks_exact(stride)) {
        // Four pixels (12 bytes) at a time, then the odd ones.
        let mut d_blocks = d_row.chunks_exact_mut(12);
        let mut s_blocks = s_row.rchunks_exact(12);
        for (d, s) in d_blocks.by_ref().zip(s_blocks.by_ref()) {
            if let (
                [d0, d1, d2, d3, d4, d5, d6, d7, d8, d9, d10, d11],
                &[s0, s1, s2, s3, s4, s5, s6, s7, s8, s9, s10, s11],
            ) = (d, s)
            {
                [*d0, *d1, *d2, *d3, *d4, *d5, *d6, *d7, *d8, *d9, *d10, *d11] =
                    [s9, s10, s11, s6, s7, s8, s3, s4, s5, s0, s1, s2];
            }
        }
        let rest = s_blocks.remainder();
        for (d, s) in d_blocks
            .into_remainder()
            .chunks_exact_mut(3)
            .zip(rest.chunks_exact(3).rev())
        {
            d.copy_from_slice(s);
        }
    }
    same_size(img, raw)
}

/// AUG-004: mirrors top to bottom.
pub fn flip_vertical(img: &RgbImage) -> RgbImage {
    let stride = img.width() as usize * 3;
    let src = img.as_raw();
    if stride == 0 {
        return img.clone();
    }
    let mut raw = Vec::with_capacity(src.len());
    for row in src.chunks_exact(stride).rev() {
        raw.extend_from_slice(row);
    }
    same_size(img, raw)
}

/// The `cw`×`ch` window at `x0`, `y0` (inside the image), copied row by row.
fn window(img: &RgbImage, x0: u32, y0: u32, cw: u32, ch: u32) -> RgbImage {
    let stride = img.width() as usize * 3;
    let (x0, cw) = (x0 as usize * 3, cw as usize * 3);
    let mut raw = Vec::with_capacity(cw * ch as usize);
    if stride > 0 {
        for row in img
            .as_raw()
            .chunks_exact(stride)
            .skip(y0 as usize)
            .take(ch as usize)
        {
            if let Some(span) = row.get(x0..x0 + cw) {
                raw.extend_from_slice(span);
            }
        }
    }
    RgbImage::from_raw(cw as u32 / 3, ch, raw)
        .unwrap_or_else(|| imageops::crop_imm(img, x0 as u32 / 3, y0, cw as u32 / 3, ch).to_image())
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
    let (w, h) = (img.width() as usize, img.height() as usize);
    if w == 0 || h == 0 {
        return RgbImage::new(img.width(), img.height());
    }
    let (sin, cos) = f64::from(degrees).to_radians().sin_cos();
    // Snap the near-zero terms of right angles so that quarter turns are exact.
    let snap = |v: f64| if v.abs() < 1e-12 { 0.0 } else { v };
    let (sin, cos) = (snap(sin), snap(cos));
    const ONE: f64 = (1u64 << 32) as f64;
    let fixed = |v: f64| (v * ONE).round() as i64;
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
        let i = (y as usize * w + x as usize) * 3;
        match src.get(i..i + 3) {
            Some(&[r, g, b]) => [r, g, b],
            _ => fill,
        }
    };
    let mut raw = vec![0u8; src.len()];
    for (y, row) in raw.chunks_exact_mut(stride).enumerate() {
        let dy = y as f64 - cy;
        // Inverse map: output (x, y) comes from
        // (cos·dx − sin·dy + cx, sin·dx + cos·dy + cy), dx = x − cx.
        let mut sx = fixed(-cos * cx - sin * dy + cx);
        let mut sy = fixed(-sin * cx + cos * dy + cy);
        for px in row.chunks_exact_mut(3) {
            let (x0, y0) = (sx >> 32, sy >> 32);
            let fx = ((sx >> 24) & 0xFF) as u32;
            let fy = ((sy >> 24) & 0xFF) as u32;
            sx += step_x;
            sy += step_y;
            let mix = |a: u8, b: u8, c: u8, d: u8| -> u8 {
                let top = u32::from(a) * (256 - fx) + u32::from(b) * fx;
                let bottom = u32::from(c) * (256 - fx) + u32::from(d) * fx;
                ((top * (256 - fy) + bottom * fy + 32_768) >> 16) as u8
            };
            // Inside: the four neighbours are two 6-byte runs of the source.
            if x0 >= 0 && y0 >= 0 && x0 + 1 < wi && y0 + 1 < hi {
                let i = (y0 as usize * w + x0 as usize) * 3;
                if let (Some(&[a0, a1, a2, b0, b1, b2]), Some(&[c0, c1, c2, d0, d1, d2])) =
                    (src.get(i..i + 6), src.get(i + stride..i + stride + 6))
                {
                    px.copy_from_slice(&[
                        mix(a0, b0, c0, d0),
                        mix(a1, b1, c1, d1),
                        mix(a2, b2, c2, d2),
                    ]);
                }
                continue;
            }
            if x0 < -1 || y0 < -1 || x0 >= wi || y0 >= hi {
                px.copy_from_slice(&fill);
                continue;
            }
            // At the border: neighbours outside are the fill.
            let (a, b) = (sample(x0, y0), sample(x0 + 1, y0));
            let (c, d) = (sample(x0, y0 + 1), sample(x0 + 1, y0 + 1));
            px.copy_from_slice(&[
                mix(a[0], b[0], c[0], d[0]),
                mix(a[1], b[1], c[1], d[1]),
                mix(a[2], b[2], c[2], d[2]),
            ]);
        }
    }
    same_size(img, raw)
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
    let nw = ((f64::from(w) * s).round() as u32).clamp(1, w);
    let nh = ((f64::from(h) * s).round() as u32).clamp(1, h);
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
    let dx = (tx * w as f32).round() as isize;
    let dy = (ty * h as f32).round() as isize;
    let mut out = RgbImage::from_pixel(img.width(), img.height(), fill);
    // The source columns that stay visible, and where they land.
    let (src_x, dst_x, span) = overlap(dx, w);
    let (src_y, dst_y, rows) = overlap(dy, h);
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

/// For a shift of `d` along an axis of length `n`: first source index, first
/// destination index, and how many indexes stay visible.
fn overlap(d: isize, n: usize) -> (usize, usize, usize) {
    let shift = d.unsigned_abs();
    if shift >= n {
        return (0, 0, 0);
    }
    if d >= 0 {
        (0, shift, n - shift)
    } else {
        (shift, 0, n - shift)
    }
}

/// AUG-005: cuts a `width`×`height` window (clamped to the image) whose top
/// left corner sits at fraction `x`, `y` of the free room.
pub fn crop(img: &RgbImage, width: u32, height: u32, x: f32, y: f32) -> RgbImage {
    let cw = width.clamp(1, img.width().max(1));
    let ch = height.clamp(1, img.height().max(1));
    let x0 = (x.clamp(0.0, 1.0) * img.width().saturating_sub(cw) as f32).round() as u32;
    let y0 = (y.clamp(0.0, 1.0) * img.height().saturating_sub(ch) as f32).round() as u32;
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
    let index = ((position.clamp(0.0, 1.0) * count as f32) as u32).min(count - 1);
    let (c, r) = (index % cols, index / cols);
    window(img, c * tw, r * th, tw, th)
}

/// AUG-007: sets a rectangle to `value` in every channel. Its area is the
/// fraction `area` of the image and its height/width ratio is `aspect` (both
/// clamped to the image); its top left corner sits at fraction `x`, `y` of the
/// free room.
pub fn erase(img: &RgbImage, area: f32, aspect: f32, x: f32, y: f32, value: u8) -> RgbImage {
    let mut out = img.clone();
    let (w, h) = (img.width() as usize, img.height() as usize);
    if w == 0 || h == 0 || aspect.is_nan() || aspect <= 0.0 {
        return out;
    }
    let target = f64::from(area.clamp(0.0, 1.0)) * (w * h) as f64;
    let aspect = f64::from(aspect);
    let eh = ((target * aspect).sqrt().round() as usize).clamp(1, h);
    let ew = ((target / aspect).sqrt().round() as usize).clamp(1, w);
    let x0 = (f64::from(x.clamp(0.0, 1.0)) * (w - ew) as f64).round() as usize;
    let y0 = (f64::from(y.clamp(0.0, 1.0)) * (h - eh) as f64).round() as usize;
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
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use super::*;

    const BLACK: Rgb<u8> = Rgb([0, 0, 0]);

    /// A 3×2 image whose pixels are all different.
    fn known() -> RgbImage {
        RgbImage::from_fn(3, 2, |x, y| {
            Rgb([(10 * x + 100 * y) as u8, x as u8, y as u8])
        })
    }

    fn numbered(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| Rgb([x as u8, y as u8, 200]))
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
        assert_eq!(out.get_pixel(0, 0).0, [0, 350u32 as u8, 200]);
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
