//! The instruction set the pixel loops run with, chosen at run time.
//!
//! The crate forbids `unsafe`, so it cannot call `#[target_feature]`
//! functions itself; [`vectorized`] hands a closure to `pulp`, which runs it
//! inside a function compiled for AVX2 and FMA where the CPU has them
//! (x86-64-v3) and for the baseline otherwise. Loops the closure reaches
//! must be inlined into it (`#[inline(always)]` on their functions) for the
//! compiler to vectorise them with the wider instructions.
//!
//! **Determinism:** both versions are compiled from the same source, and Rust
//! neither fuses multiply-adds nor reorders float operations on its own, so
//! every lane computes exactly what the scalar code would: the same input
//! gives the same bytes on every worker, whatever its CPU.
//! [`set_baseline_only`] lets a test prove it.

use std::sync::atomic::{AtomicBool, Ordering};

static BASELINE_ONLY: AtomicBool = AtomicBool::new(false);

/// Runs `f` compiled for the widest instruction set this CPU offers.
#[inline(always)]
pub fn vectorized<R>(f: impl FnOnce() -> R) -> R {
    if BASELINE_ONLY.load(Ordering::Relaxed) {
        f()
    } else {
        pulp::Arch::new().dispatch(f)
    }
}

/// Makes [`vectorized`] run the baseline version (for tests that compare
/// the two; process-wide).
pub fn set_baseline_only(on: bool) {
    BASELINE_ONLY.store(on, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use super::*;

    fn work(v: &[f32]) -> Vec<u32> {
        vectorized(|| v.iter().map(|x| (x * 1.7 + 0.3).to_bits()).collect())
    }

    #[test]
    fn both_versions_give_the_same_bits() {
        let v: Vec<f32> = (0..10_000).map(|i| (i as f32).sin() * 255.0).collect();
        let wide = work(&v);
        set_baseline_only(true);
        let base = work(&v);
        set_baseline_only(false);
        assert_eq!(wide, base);
        assert_eq!(wide[1], (v[1] * 1.7 + 0.3).to_bits());
    }
}
