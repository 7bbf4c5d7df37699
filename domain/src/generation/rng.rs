//! The random numbers of generation: SplitMix64, small and fully specified,
//! so a seed recorded in an event gives the same parameters and pixels on any
//! machine and with any future version of a random-number crate.

/// SplitMix64 (Steele, Lea and Flood, 2014). Not for secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitMix64 {
    state: u64,
}

const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// The SplitMix64 output function: a strong 64-bit mixer.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// FNV-1a of a string, to fold method ids into seeds.
pub fn hash_str(s: &str) -> u64 {
    s.bytes().fold(0xCBF2_9CE4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01B3)
    })
}

impl SplitMix64 {
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64 { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN_GAMMA);
        mix64(self.state)
    }

    /// Uniform in [0, 1), 53 bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in [lo, hi]; `lo` when the range is empty.
    pub fn range_f64(&mut self, lo: f64, hi: f64) -> f64 {
        if hi <= lo {
            return lo;
        }
        (lo + (hi - lo) * self.next_f64()).clamp(lo, hi)
    }

    /// Uniform integer in [lo, hi] (inclusive); `lo` when the range is empty.
    pub fn range_i64(&mut self, lo: i64, hi: i64) -> i64 {
        if hi <= lo {
            return lo;
        }
        let span = hi.abs_diff(lo).saturating_add(1);
        // Multiply-shift: maps 64 random bits onto the span without a modulo.
        let offset = ((u128::from(self.next_u64()) * u128::from(span)) >> 64) as u64;
        lo.wrapping_add_unsigned(offset)
    }

    /// Two independent standard normal values (Box–Muller).
    pub fn gaussian_pair(&mut self) -> (f64, f64) {
        // 1 - u is in (0, 1], so the logarithm is finite.
        let u1 = 1.0 - self.next_f64();
        let u2 = self.next_f64();
        let r = (-2.0 * u1.ln()).sqrt();
        let theta = std::f64::consts::TAU * u2;
        (r * theta.cos(), r * theta.sin())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_sequence() {
        // Reference values of SplitMix64 seeded with 1234567.
        let mut r = SplitMix64::new(1234567);
        assert_eq!(r.next_u64(), 6457827717110365317);
        assert_eq!(r.next_u64(), 3203168211198807973);
    }

    #[test]
    fn ranges_stay_inside() {
        let mut r = SplitMix64::new(7);
        for _ in 0..10_000 {
            let f = r.range_f64(-2.0, 3.0);
            assert!((-2.0..=3.0).contains(&f));
            let i = r.range_i64(3, 7);
            assert!((3..=7).contains(&i));
        }
        assert_eq!(r.range_i64(5, 5), 5);
        assert_eq!(r.range_f64(0.25, 0.25), 0.25);
    }

    #[test]
    fn every_integer_is_reached() {
        let mut r = SplitMix64::new(99);
        let mut seen = [false; 5];
        for _ in 0..1000 {
            let i = usize::try_from(r.range_i64(0, 4)).unwrap();
            if let Some(s) = seen.get_mut(i) {
                *s = true;
            }
        }
        assert!(seen.iter().all(|s| *s));
    }

    #[test]
    fn gaussian_moments() {
        let mut r = SplitMix64::new(42);
        let n = 20_000;
        let (mut sum, mut sq) = (0.0, 0.0);
        for _ in 0..n / 2 {
            let (a, b) = r.gaussian_pair();
            sum += a + b;
            sq += a * a + b * b;
        }
        let mean = sum / f64::from(n);
        let var = sq / f64::from(n) - mean * mean;
        assert!(mean.abs() < 0.05, "mean {mean}");
        assert!((var - 1.0).abs() < 0.05, "variance {var}");
    }
}
