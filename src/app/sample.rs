//! The sample dataset of `create_sample`: 24 small photographs-like JPEGs
//! (gradient skies, a sun, hills, a house), drawn deterministically so every
//! sample project starts with the same bytes.

use std::io::Cursor;
use std::sync::OnceLock;

use image::{ImageBuffer, Rgb};

pub const COUNT: usize = 24;
const WIDTH: u32 = 320;
const HEIGHT: u32 = 240;

fn draw(n: usize) -> ImageBuffer<Rgb<u8>, Vec<u8>> {
    let t = n as f32 / COUNT as f32;
    let sun_x = 40.0 + 240.0 * t;
    let sun_y = 50.0 + 30.0 * (t * std::f32::consts::TAU).sin();
    let hill = 150.0 + 20.0 * ((n % 5) as f32);
    let house_x = 60.0 + ((n * 37) % 180) as f32;
    // n < COUNT (24): the grass's tint stays under 256.
    let tint = u8::try_from(n).unwrap_or(0);
    ImageBuffer::from_fn(WIDTH, HEIGHT, |x, y| {
        let (fx, fy) = (x as f32, y as f32);
        let ground = hill + 18.0 * ((fx / 40.0) + t * 3.0).sin();
        let in_house = fx >= house_x && fx < house_x + 50.0 && fy >= ground - 40.0 && fy < ground;
        let in_roof = fy >= ground - 65.0
            && fy < ground - 40.0
            && (fx - (house_x + 25.0)).abs() < (fy - (ground - 65.0)) * 1.1;
        let sun = ((fx - sun_x).powi(2) + (fy - sun_y).powi(2)).sqrt() < 22.0;
        let px = if in_roof {
            [150, 40, 30]
        } else if in_house {
            [220, 200, 160]
        } else if fy >= ground {
            let shade = channel((fx * 0.3 + fy * 0.7) % 16.0);
            [40 + shade, 120 + tint * 3, 50]
        } else if sun {
            [255, 220, 90]
        } else {
            let k = fy / HEIGHT as f32;
            [
                channel(90.0 + 120.0 * k + 40.0 * t),
                channel(150.0 + 60.0 * k),
                channel(235.0 - 40.0 * k),
            ]
        };
        Rgb(px)
    })
}

/// A colour channel from a level in 0..=255 (the fraction dropped).
#[expect(
    clippy::cast_possible_truncation,
    reason = "float-to-u8 `as` saturates to 0..=255; dropping the fraction is the intent"
)]
fn channel(level: f32) -> u8 {
    level as u8
}

/// `(file name, JPEG bytes)` of every sample image.
pub fn images() -> &'static [(String, Vec<u8>)] {
    static IMAGES: OnceLock<Vec<(String, Vec<u8>)>> = OnceLock::new();
    IMAGES.get_or_init(|| {
        (0..COUNT)
            .map(|n| {
                let mut bytes = Vec::new();
                let encoder =
                    image::codecs::jpeg::JpegEncoder::new_with_quality(Cursor::new(&mut bytes), 85);
                // Encoding an in-memory RGB buffer cannot fail.
                let _ = draw(n).write_with_encoder(encoder);
                (format!("sample_{n:02}.jpg"), bytes)
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {

    #[test]
    fn samples_are_distinct_decodable_jpegs() {
        let images = super::images();
        assert!(images.len() >= 20);
        let mut seen = std::collections::HashSet::new();
        for (name, bytes) in images {
            let img = image::load_from_memory(bytes).unwrap();
            assert_eq!((img.width(), img.height()), (320, 240), "{name}");
            assert!(seen.insert(bytes.clone()), "{name} repeats another sample");
        }
    }
}
