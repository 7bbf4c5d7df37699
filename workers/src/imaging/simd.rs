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
//! not inlined and stays baseline. So may a marked one that only borrows
//! what it captures: it is called through a `call_once` shim, and a shim
//! around a large body can stay a function of its own (rotation's did, and
//! every intrinsic in it became a call); large ops are structs.
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

/// Explicit x86 byte shuffles, for the loops the compiler does not vectorise
/// on its own: those that move bytes of interleaved RGB by a stride of 3.
///
/// Safe code: `pulp`'s [`V3`] token proves AVX2 is there, its intrinsic
/// wrappers are safe to call with it, and blocks move between byte arrays
/// and registers by value (`bytemuck`), never through pointers. An op that
/// uses them holds the token, is a `pulp::WithSimd` with an
/// `#[inline(always)]` body, and runs through `V3::vectorize`, so the
/// intrinsics are inlined into a function compiled for AVX2.
#[cfg(target_arch = "x86_64")]
pub mod x86 {
    use core::arch::x86_64::__m128i;

    pub use pulp::x86::V3;

    /// The AVX2 token where the CPU has AVX2, unless a test holds this
    /// thread to the baseline.
    #[inline(always)]
    pub fn v3() -> Option<V3> {
        if super::baseline_only() {
            None
        } else {
            V3::try_new()
        }
    }

    /// A fixed rearrangement of a 48-byte block (16 RGB pixels, three
    /// registers): output byte `j` is input byte `from(j)`. Each output
    /// register is the OR of one `pshufb` per input register, whose mask
    /// picks the bytes that register holds and zeroes the rest.
    #[derive(Clone, Copy)]
    pub struct Shuffle48 {
        masks: [[__m128i; 3]; 3],
    }

    impl Shuffle48 {
        /// `from` maps each output byte (0..48) to the input byte it copies;
        /// an index of 48 or more leaves that output byte 0.
        #[inline(always)]
        pub fn new(from: impl Fn(usize) -> usize) -> Self {
            let mut bytes = [[[0x80u8; 16]; 3]; 3];
            for (q, out) in bytes.iter_mut().enumerate() {
                for (r, mask) in out.iter_mut().enumerate() {
                    for (j, m) in mask.iter_mut().enumerate() {
                        let i = from(16 * q + j);
                        if i / 16 == r {
                            *m = u8::try_from(i % 16).unwrap_or(0x80);
                        }
                    }
                }
            }
            Self {
                masks: bytes.map(|out| out.map(pulp::bytemuck::cast)),
            }
        }

        /// The rearranged block. No closures here: a closure's body is a
        /// function of its own, compiled without AVX2, where the intrinsics
        /// would be calls.
        #[inline(always)]
        pub fn apply(&self, simd: V3, block: [__m128i; 3]) -> [__m128i; 3] {
            let [a, b, c] = block;
            let [m0, m1, m2] = self.masks;
            [
                pick(simd, [a, b, c], m0),
                pick(simd, [a, b, c], m1),
                pick(simd, [a, b, c], m2),
            ]
        }
    }

    /// One output register: the OR of each input register shuffled by its
    /// mask.
    #[inline(always)]
    fn pick(simd: V3, [a, b, c]: [__m128i; 3], [ma, mb, mc]: [__m128i; 3]) -> __m128i {
        let s = simd.ssse3;
        let or = simd.sse2;
        or._mm_or_si128(
            or._mm_or_si128(s._mm_shuffle_epi8(a, ma), s._mm_shuffle_epi8(b, mb)),
            s._mm_shuffle_epi8(c, mc),
        )
    }

    /// Splits interleaved RGB into planes, 16 pixels per step.
    #[derive(Clone, Copy)]
    pub struct Deinterleave {
        simd: V3,
        planes: Shuffle48,
    }

    impl Deinterleave {
        #[inline(always)]
        pub fn new(simd: V3) -> Self {
            Self {
                simd,
                // Plane q, value k <- byte 3k + q.
                planes: Shuffle48::new(|j| 3 * (j % 16) + j / 16),
            }
        }

        /// As far as whole steps go in all four slices; returns the pixels
        /// done.
        #[inline(always)]
        pub fn run(&self, rgb: &[u8], r: &mut [u8], g: &mut [u8], b: &mut [u8]) -> usize {
            let mut done = 0;
            let pieces = r.chunks_exact_mut(16).zip(g.chunks_exact_mut(16));
            for ((block, (r, g)), b) in rgb.chunks_exact(48).zip(pieces).zip(b.chunks_exact_mut(16))
            {
                if let Ok(block) = <&[u8; 48]>::try_from(block) {
                    let out: [u8; 48] =
                        pulp::bytemuck::cast(self.planes.apply(self.simd, load48(block)));
                    let (pr, rest) = out.split_at(16);
                    let (pg, pb) = rest.split_at(16);
                    r.copy_from_slice(pr);
                    g.copy_from_slice(pg);
                    b.copy_from_slice(pb);
                    done += 16;
                }
            }
            done
        }
    }

    /// A 48-byte block as three registers.
    #[inline(always)]
    pub fn load48(block: &[u8; 48]) -> [__m128i; 3] {
        pulp::bytemuck::cast(*block)
    }

    /// Three registers as a 48-byte block.
    #[inline(always)]
    pub fn store48(out: &mut [u8; 48], regs: [__m128i; 3]) {
        *out = pulp::bytemuck::cast(regs);
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
