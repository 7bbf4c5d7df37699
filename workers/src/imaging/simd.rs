//! The instruction set the pixel loops run with, chosen at run time.
//!
//! The crate forbids `unsafe`, so it cannot call `#[target_feature]`
//! functions itself; [`dispatch`] hands an op to `pulp`, which runs it inside
//! a function compiled for AVX2 and FMA where the CPU has them (x86-64-v3)
//! and for the baseline otherwise. The loops must be inlined into that
//! function to get the wide instructions: an op is either a `pulp::WithSimd`
//! whose `with_simd` is `#[inline(always)]` (instantiated once per
//! instruction set, so even large loop bodies are compiled wide), or a
//! closure marked `#[inline(always)]`. A plain closure with a large body is
//! not inlined and stays baseline.
//!
//! **Determinism:** both versions are compiled from the same source, and Rust
//! neither fuses multiply-adds nor reorders float operations on its own, so
//! every lane computes exactly what the scalar code would: the same input
//! gives the same bytes on every worker, whatever its CPU. Tests prove it
//! per method with [`with_baseline`].

/// Runs `op` compiled for the widest instruction set this CPU offers.
#[inline(always)]
pub fn dispatch<Op: pulp::WithSimd>(op: Op) -> Op::Output {
    if baseline_only() {
        op.with_simd(pulp::Scalar)
    } else {
        pulp::Arch::new().dispatch(op)
    }
}

#[cfg(not(test))]
#[inline(always)]
fn baseline_only() -> bool {
    false
}

#[cfg(test)]
thread_local! {
    static BASELINE_ONLY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

#[cfg(test)]
fn baseline_only() -> bool {
    BASELINE_ONLY.with(std::cell::Cell::get)
}

/// Runs `f` with [`dispatch`] held to the baseline on this thread.
#[cfg(test)]
pub(crate) fn with_baseline<R>(f: impl FnOnce() -> R) -> R {
    BASELINE_ONLY.with(|b| b.set(true));
    let out = f();
    BASELINE_ONLY.with(|b| b.set(false));
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use super::*;

    fn work(v: &[f32]) -> Vec<u32> {
        dispatch(
            #[inline(always)]
            || v.iter().map(|x| (x * 1.7 + 0.3).to_bits()).collect(),
        )
    }

    #[test]
    fn both_versions_give_the_same_bits() {
        let v: Vec<f32> = (0..10_000).map(|i| (i as f32).sin() * 255.0).collect();
        let wide = work(&v);
        assert_eq!(wide, with_baseline(|| work(&v)));
        assert_eq!(wide[1], (v[1] * 1.7 + 0.3).to_bits());
    }
}
