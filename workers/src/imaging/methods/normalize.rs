//! Preprocessing that brings every image of a project to a common look: each
//! `normalize_*` measures one metric on the image and on the reference image
//! and adjusts the image until its metric matches. The metrics are public so
//! the core can pick the reference image (the one with the median metric).

use image::RgbImage;

use super::color::{hue, mean_luma, saturation};
use super::filter::{blend_away, gaussian_blur, kernel_for};
use super::{
    hsv_saturation, luma_f32, lut, map_lut, map_luts, rgb_to_hsv, to_f32, to_u8, LUMA_WEIGHTS,
};

/// The metric a method's reference image is chosen by: brightness, hue and
/// saturation for their normalisations, signal-to-noise for every other
/// method.
pub fn reference_metric(method_id: &str, img: &RgbImage) -> f64 {
    match method_id {
        "PRE-002" => brightness_metric(img),
        "PRE-003" => hue_metric(img).unwrap_or(0.0),
        "PRE-004" => saturation_metric(img),
        _ => signal_to_noise(img),
    }
}

/// Mean Rec. 601 luma, 0–255.
pub fn brightness_metric(img: &RgbImage) -> f64 {
    mean_luma(img)
}

/// Mean hue on the colour circle (0–1), weighted by saturation; `None` for
/// an image without colour. Hues are gathered in half-degree bins first, so
/// the trigonometry runs per bin, not per pixel.
pub fn hue_metric(img: &RgbImage) -> Option<f64> {
    const BINS: usize = 720;
    let mut weights = vec![0f64; BINS];
    for px in img.as_raw().chunks_exact(3) {
        if let [r, g, b] = *px {
            let [h, s, _] = rgb_to_hsv([r, g, b]);
            if s > 0.0 {
                let bin = bin_at(h * BINS as f32, BINS - 1);
                if let Some(w) = weights.get_mut(bin) {
                    *w += f64::from(s);
                }
            }
        }
    }
    let (mut x, mut y, mut total) = (0.0f64, 0.0f64, 0.0f64);
    for (bin, w) in weights.iter().enumerate() {
        let angle = (bin as f64 + 0.5) / BINS as f64 * std::f64::consts::TAU;
        x += w * angle.cos();
        y += w * angle.sin();
        total += w;
    }
    if total <= 0.0 || x.hypot(y) < 1e-6 * total {
        return None;
    }
    Some((y.atan2(x) / std::f64::consts::TAU).rem_euclid(1.0))
}

/// The histogram bin at `v`, truncated, of bins `0..=last`; callers pass a
/// value in 0–1 scaled by the bin count.
#[inline(always)]
#[expect(
    clippy::cast_possible_truncation,
    reason = "v is a fraction in 0..=1 times a bin count of at most 1024, and min keeps the last bin"
)]
fn bin_at(v: f32, last: usize) -> usize {
    (v as usize).min(last)
}

/// Mean HSV saturation, 0–1.
pub fn saturation_metric(img: &RgbImage) -> f64 {
    let n = img.as_raw().len() / 3;
    if n == 0 {
        return 0.0;
    }
    let sum: f64 = img
        .as_raw()
        .chunks_exact(3)
        .map(|px| f64::from(hsv_saturation(px)))
        .sum();
    sum / n as f64
}

/// Standard deviation of the luma, 0–255.
pub fn contrast_metric(img: &RgbImage) -> f64 {
    luma_stats(img).1
}

/// Mean absolute 4-neighbour Laplacian of the luma: how strong edges are.
/// Large images are measured on evenly spaced rows (about a million
/// pixels), which estimates the same mean.
pub fn sharpness_metric(img: &RgbImage) -> f64 {
    let mut sum = 0.0f64;
    let mut count = 0usize;
    let mut lap = Vec::new();
    for y in sampled_rows(img) {
        lap.clear();
        laplacian_row(img, y, &mut lap);
        sum += lap.iter().map(|v| f64::from(v.abs())).sum::<f64>();
        count += lap.len();
    }
    if count == 0 {
        return 0.0;
    }
    sum / count as f64
}

/// The interior rows the Laplacian statistics look at.
fn sampled_rows(img: &RgbImage) -> impl Iterator<Item = usize> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let interior = w.saturating_sub(2) * h.saturating_sub(2);
    let step = (interior / 1_000_000).max(1);
    (1..h.saturating_sub(1)).step_by(step)
}

fn luma_row(img: &RgbImage, y: usize) -> Vec<f32> {
    let stride = img.width() as usize * 3;
    img.as_raw()
        .get(y * stride..(y + 1) * stride)
        .map(|row| row.chunks_exact(3).map(luma_f32).collect())
        .unwrap_or_default()
}

/// Appends the 4-neighbour Laplacian of the luma of interior row `y` (which
/// needs rows `y - 1` and `y + 1`).
fn laplacian_row(img: &RgbImage, y: usize, out: &mut Vec<f32>) {
    if y == 0 || y + 1 >= img.height() as usize {
        return;
    }
    let (above, row, below) = (luma_row(img, y - 1), luma_row(img, y), luma_row(img, y + 1));
    let inner = above
        .iter()
        .skip(1)
        .zip(below.iter().skip(1))
        .zip(row.windows(3));
    for ((a, b), mid) in inner {
        if let [l, c, r] = mid {
            out.push(a + b + l + r - 4.0 * c);
        }
    }
}

/// Mean luma over its standard deviation (capped for flat images).
pub fn signal_to_noise(img: &RgbImage) -> f64 {
    let (mean, std) = luma_stats(img);
    if std < 1e-9 {
        return 1e9;
    }
    (mean / std).min(1e9)
}

fn luma_stats(img: &RgbImage) -> (f64, f64) {
    let hist = luma_histogram(img);
    hist_stats(&hist, |v| v)
}

fn luma_histogram(img: &RgbImage) -> [u64; 256] {
    let mut hist = [0u64; 256];
    for px in img.as_raw().chunks_exact(3) {
        if let [r, g, b] = *px {
            if let Some(slot) = hist.get_mut(usize::from(super::luma601(r, g, b))) {
                *slot += 1;
            }
        }
    }
    hist
}

fn channel_histograms(img: &RgbImage) -> [[u64; 256]; 3] {
    let mut hist = [[0u64; 256]; 3];
    for px in img.as_raw().chunks_exact(3) {
        for (h, v) in hist.iter_mut().zip(px) {
            if let Some(slot) = h.get_mut(usize::from(*v)) {
                *slot += 1;
            }
        }
    }
    hist
}

/// Mean and standard deviation of `map(value)` over a histogram.
fn hist_stats(hist: &[u64; 256], map: impl Fn(f64) -> f64) -> (f64, f64) {
    let n: u64 = hist.iter().sum();
    if n == 0 {
        return (0.0, 0.0);
    }
    let (mut sum, mut sq) = (0.0, 0.0);
    for (v, count) in hist.iter().enumerate() {
        let m = map(v as f64);
        sum += *count as f64 * m;
        sq += *count as f64 * m * m;
    }
    let mean = sum / n as f64;
    (mean, (sq / n as f64 - mean * mean).max(0.0).sqrt())
}

/// Finds `x` in `[lo, hi]` where the non-decreasing `f` reaches `target`.
fn solve_increasing(f: impl Fn(f64) -> f64, target: f64, mut lo: f64, mut hi: f64) -> f64 {
    if f(lo) >= target {
        return lo;
    }
    if f(hi) <= target {
        return hi;
    }
    for _ in 0..48 {
        let mid = 0.5 * (lo + hi);
        if f(mid) < target {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

/// PRE-002: multiplies every channel by the factor that brings the mean luma
/// to the reference's (clipping at white taken into account); a black image
/// is lifted by an offset instead.
pub fn normalize_brightness(img: &RgbImage, reference: &RgbImage) -> RgbImage {
    let target = brightness_metric(reference);
    let hist = channel_histograms(img);
    let n: u64 = hist.first().map(|h| h.iter().sum()).unwrap_or(0);
    if n == 0 {
        return img.clone();
    }
    // The exact mean luma of the result for a factor: luma is linear in the
    // channels, so per-channel histograms predict it.
    let predicted = |f: f64| -> f64 {
        hist.iter()
            .zip(LUMA_WEIGHTS)
            .map(|(h, w)| {
                let sum: f64 = h
                    .iter()
                    .enumerate()
                    .map(|(v, c)| *c as f64 * f64::from(to_u8(to_f32(v as f64 * f))))
                    .sum();
                f64::from(w) * sum / n as f64
            })
            .sum()
    };
    let current = predicted(1.0);
    if current < 0.5 {
        let offset = to_f32(target - current);
        return map_lut(img, &lut(|v| v + offset));
    }
    let f = to_f32(solve_increasing(predicted, target, 0.0, 255.0));
    map_lut(img, &lut(|v| v * f))
}

/// PRE-003: turns the hue so the saturation-weighted mean hue matches the
/// reference's. Images (or references) without colour are left as they are.
pub fn normalize_hue(img: &RgbImage, reference: &RgbImage) -> RgbImage {
    match (hue_metric(img), hue_metric(reference)) {
        (Some(current), Some(target)) => {
            // The shorter way round the circle.
            let shift = (target - current + 0.5).rem_euclid(1.0) - 0.5;
            hue(img, to_f32(shift))
        }
        _ => img.clone(),
    }
}

/// PRE-004: scales saturation by the factor that brings the mean saturation
/// to the reference's (clipping at full saturation taken into account).
pub fn normalize_saturation(img: &RgbImage, reference: &RgbImage) -> RgbImage {
    const BINS: usize = 1024;
    let target = saturation_metric(reference);
    let mut hist = vec![0u64; BINS];
    for px in img.as_raw().chunks_exact(3) {
        let s = hsv_saturation(px);
        let bin = bin_at((s * (BINS - 1) as f32).round(), BINS - 1);
        if let Some(slot) = hist.get_mut(bin) {
            *slot += 1;
        }
    }
    let n: u64 = hist.iter().sum();
    if n == 0 {
        return img.clone();
    }
    let predicted = |f: f64| -> f64 {
        hist.iter()
            .enumerate()
            .map(|(bin, c)| *c as f64 * (bin as f64 / (BINS - 1) as f64 * f).min(1.0))
            .sum::<f64>()
            / n as f64
    };
    if predicted(1.0) <= 1e-9 {
        return img.clone();
    }
    let f = to_f32(solve_increasing(predicted, target, 0.0, 64.0));
    saturation(img, f)
}

/// The normalised sigmoid curve on 0–1 with gain `g` and centre `c`: maps 0
/// to 0 and 1 to 1, steeper than the identity around `c`.
fn sigmoid_curve(x: f64, g: f64, c: f64) -> f64 {
    let s = |t: f64| 1.0 / (1.0 + (-t).exp());
    let (lo, hi) = (s(-g * c), s(g * (1.0 - c)));
    if hi - lo < 1e-12 {
        return x;
    }
    (s(g * (x - c)) - lo) / (hi - lo)
}

/// PRE-006: brings the luma spread (standard deviation) to the reference's:
/// a sigmoid curve centred on the mean luma raises contrast, a linear
/// squeeze towards the mean lowers it. Flat images are left as they are.
pub fn normalize_contrast(img: &RgbImage, reference: &RgbImage) -> RgbImage {
    let target = contrast_metric(reference);
    let hist = luma_histogram(img);
    let (mean, current) = hist_stats(&hist, |v| v);
    if current < 1e-6 || (target - current).abs() < 1e-6 {
        return img.clone();
    }
    if target < current {
        let k = to_f32(target / current);
        let m = to_f32(mean);
        return map_lut(img, &lut(|v| m + (v - m) * k));
    }
    let c = (mean / 255.0).clamp(0.01, 0.99);
    let spread = |g: f64| hist_stats(&hist, |v| 255.0 * sigmoid_curve(v / 255.0, g, c)).1;
    let g = solve_increasing(spread, target, 1e-3, 80.0);
    map_lut(
        img,
        &lut(|v| 255.0 * to_f32(sigmoid_curve(f64::from(v) / 255.0, g, c))),
    )
}

/// PRE-005: an unsharp mask (gaussian, sigma 1) whose amount brings the edge
/// strength ([`sharpness_metric`]) to the reference's: positive amounts
/// sharpen a soft image, negative ones (down to −1, the blurred image)
/// soften a harsh one. Amounts are bounded to −1…4.
pub fn normalize_sharpness(img: &RgbImage, reference: &RgbImage) -> RgbImage {
    const SIGMA: f32 = 1.0;
    if img.width() < 3 || img.height() < 3 {
        return img.clone();
    }
    let target = sharpness_metric(reference);
    let blurred = gaussian_blur(img, kernel_for(SIGMA), SIGMA);
    // The Laplacian is linear, so the result's is a blend of these two.
    let (mut lap, mut lap_blurred) = (Vec::new(), Vec::new());
    for y in sampled_rows(img) {
        laplacian_row(img, y, &mut lap);
        laplacian_row(&blurred, y, &mut lap_blurred);
    }
    let metric = |a: f64| -> f64 {
        let a = to_f32(a);
        let sum: f64 = lap
            .iter()
            .zip(&lap_blurred)
            .map(|(i, b)| f64::from(((1.0 + a) * i - a * b).abs()))
            .sum();
        sum / lap.len().max(1) as f64
    };
    let amount = to_f32(solve_increasing(metric, target, -1.0, 4.0));
    blend_away(img, &blurred, amount)
}

/// PRE-008: histogram equalisation of each channel, applied only when the
/// image is low-contrast: its 1st–99th percentile luma span is below
/// `low_contrast_fraction` of the full range. Other images pass unchanged.
pub fn equalize_histogram(img: &RgbImage, low_contrast_fraction: f32) -> RgbImage {
    let luma = luma_histogram(img);
    let span = percentile(&luma, 0.99).saturating_sub(percentile(&luma, 0.01));
    if f32::from(span) >= low_contrast_fraction * 255.0 {
        return img.clone();
    }
    let hist = channel_histograms(img);
    let tables = hist.map(|h| equalization_table(&h));
    map_luts(img, &tables)
}

/// The smallest value at or below which `q` of the histogram lies.
fn percentile(hist: &[u64; 256], q: f64) -> u8 {
    let n: u64 = hist.iter().sum();
    // A whole number, compared with whole counts (exact in f64 below 2^53).
    let want = (q * n as f64).ceil().max(1.0);
    let mut seen = 0u64;
    for (v, c) in (0u8..=255).zip(hist) {
        seen += c;
        if seen as f64 >= want {
            return v;
        }
    }
    255
}

/// The classic cumulative-histogram mapping: the darkest present value goes
/// to 0, the brightest to 255, the rest by rank.
fn equalization_table(hist: &[u64; 256]) -> [u8; 256] {
    let n: u64 = hist.iter().sum();
    let first = hist.iter().copied().find(|c| *c > 0).unwrap_or(0);
    let mut table = [0u8; 256];
    if n <= first {
        // One value only: nothing to spread.
        for (v, slot) in (0u8..=255).zip(table.iter_mut()) {
            *slot = v;
        }
        return table;
    }
    let mut cdf = 0u64;
    for (slot, c) in table.iter_mut().zip(hist) {
        cdf += c;
        let rank = cdf.saturating_sub(first) as f64 / (n - first) as f64;
        *slot = to_u8(to_f32(rank * 255.0));
    }
    table
}

#[cfg(test)]
mod tests {

    use image::Rgb;

    use super::super::{filter::gaussian_blur, hsv_to_rgb};
    use super::*;

    fn gradient(w: u32, h: u32, lo: f32, hi: f32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, _| {
            let v = to_u8(lo + (hi - lo) * x as f32 / (w - 1) as f32);
            Rgb([v, v, v])
        })
    }

    /// A deterministic textured image.
    fn texture(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            let v = crate::imaging::low_byte((x * 37 + y * 91 + (x * y) % 23) % 200 + 30);
            Rgb([v, v.wrapping_add(10), v / 2])
        })
    }

    #[test]
    fn brightness_matches_the_reference() {
        let img = texture(64, 48);
        let dark = RgbImage::from_pixel(10, 10, Rgb([60, 60, 60]));
        let bright = RgbImage::from_pixel(10, 10, Rgb([180, 170, 200]));
        for reference in [&dark, &bright] {
            let out = normalize_brightness(&img, reference);
            let got = brightness_metric(&out);
            let want = brightness_metric(reference);
            assert!((got - want).abs() < 1.0, "got {got}, want {want}");
        }
        // A black image is lifted by an offset.
        let black = RgbImage::new(4, 4);
        let out = normalize_brightness(&black, &dark);
        assert!(out.pixels().all(|p| p.0 == [60; 3]));
    }

    #[test]
    fn hue_matches_the_reference() {
        let img = RgbImage::from_pixel(8, 8, Rgb(hsv_to_rgb([0.1, 0.8, 0.9])));
        let reference = RgbImage::from_pixel(3, 3, Rgb(hsv_to_rgb([0.4, 0.5, 0.5])));
        let out = normalize_hue(&img, &reference);
        let got = hue_metric(&out).unwrap();
        assert!((got - 0.4).abs() < 0.01, "hue {got}");
        // Across red: 0.95 to 0.05 is a short step forward.
        let img = RgbImage::from_pixel(2, 2, Rgb(hsv_to_rgb([0.95, 1.0, 1.0])));
        let reference = RgbImage::from_pixel(2, 2, Rgb(hsv_to_rgb([0.05, 1.0, 1.0])));
        let got = hue_metric(&normalize_hue(&img, &reference)).unwrap();
        assert!((got - 0.05).abs() < 0.01, "hue {got}");
        // Gray stays gray.
        let gray = RgbImage::from_pixel(2, 2, Rgb([9, 9, 9]));
        assert_eq!(normalize_hue(&gray, &reference), gray);
    }

    #[test]
    fn saturation_matches_the_reference() {
        let img = RgbImage::from_pixel(8, 8, Rgb(hsv_to_rgb([0.6, 0.2, 0.8])));
        let reference = RgbImage::from_pixel(3, 3, Rgb(hsv_to_rgb([0.1, 0.6, 0.5])));
        let got = saturation_metric(&normalize_saturation(&img, &reference));
        assert!((got - 0.6).abs() < 0.02, "saturation {got}");
        let less = RgbImage::from_pixel(3, 3, Rgb(hsv_to_rgb([0.1, 0.1, 0.5])));
        let got = saturation_metric(&normalize_saturation(&img, &less));
        assert!((got - 0.1).abs() < 0.02, "saturation {got}");
    }

    #[test]
    fn contrast_matches_the_reference() {
        let soft = gradient(256, 4, 100.0, 150.0);
        let hard = gradient(256, 4, 0.0, 255.0);
        let raised = normalize_contrast(&soft, &hard);
        let (got, want) = (contrast_metric(&raised), contrast_metric(&hard));
        assert!(
            (got / want - 1.0).abs() < 0.1,
            "raised to {got}, want {want}"
        );
        // The curve keeps the order of values.
        let row: Vec<u8> = (0..256).map(|x| raised.get_pixel(x, 0).0[0]).collect();
        assert!(row.windows(2).all(|p| p[0] <= p[1]));
        let lowered = normalize_contrast(&hard, &soft);
        let (got, want) = (contrast_metric(&lowered), contrast_metric(&soft));
        assert!(
            (got / want - 1.0).abs() < 0.05,
            "lowered to {got}, want {want}"
        );
        let flat = RgbImage::from_pixel(5, 5, Rgb([40; 3]));
        assert_eq!(normalize_contrast(&flat, &hard), flat);
    }

    #[test]
    fn sharpness_moves_towards_the_reference() {
        // Blocks of 8 pixels: crisp edges, softened by a slight blur.
        let sharp = RgbImage::from_fn(64, 64, |x, y| {
            if (x / 8 + y / 8) % 2 == 0 {
                Rgb([60, 80, 70])
            } else {
                Rgb([190, 170, 200])
            }
        });
        let soft = gaussian_blur(&sharp, 5, 1.0);
        let (s_sharp, s_soft) = (sharpness_metric(&sharp), sharpness_metric(&soft));
        assert!(s_soft < s_sharp);
        let out = sharpness_metric(&normalize_sharpness(&soft, &sharp));
        assert!(
            out > s_soft && (out - s_sharp).abs() < (s_soft - s_sharp).abs() / 2.0,
            "soft {s_soft} → {out}, reference {s_sharp}"
        );
        let out = sharpness_metric(&normalize_sharpness(&sharp, &soft));
        assert!(out < s_sharp, "sharp {s_sharp} → {out}, reference {s_soft}");
    }

    #[test]
    fn equalize_only_touches_low_contrast_images() {
        let flat = gradient(64, 2, 100.0, 119.0);
        let out = equalize_histogram(&flat, 0.35);
        let min = out.pixels().map(|p| p.0[0]).min().unwrap();
        let max = out.pixels().map(|p| p.0[0]).max().unwrap();
        assert_eq!((min, max), (0, 255));
        let wide = gradient(64, 2, 0.0, 255.0);
        assert_eq!(equalize_histogram(&wide, 0.35), wide);
        let single = RgbImage::from_pixel(4, 4, Rgb([33, 44, 55]));
        assert_eq!(equalize_histogram(&single, 0.35), single);
    }

    #[test]
    fn reference_metrics_by_method() {
        let img = texture(16, 16);
        assert_eq!(reference_metric("PRE-002", &img), brightness_metric(&img));
        assert_eq!(reference_metric("PRE-004", &img), saturation_metric(&img));
        assert_eq!(reference_metric("PRE-009", &img), signal_to_noise(&img));
        assert!(signal_to_noise(&RgbImage::from_pixel(2, 2, Rgb([5; 3]))) > 1e6);
    }
}
