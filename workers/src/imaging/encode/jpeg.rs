//! A baseline JPEG encoder (sequential DCT, Huffman coding), built for speed
//! in safe Rust and for byte-identical output on every CPU.
//!
//! Output: JFIF, YCbCr with no chroma subsampling (4:4:4, what `image`'s
//! encoder writes), the IJG quantisation tables scaled by the IJG quality
//! rule, the standard Huffman tables of the JPEG spec (Annex K.3), no
//! metadata. Edge blocks are padded by replicating the last column and row.
//!
//! The pipeline, over groups of 8 side-by-side blocks:
//!
//! 1. RGB → YCbCr in 16-bit fixed point over whole image rows
//!    ([`convert_row`]), level-shifted to −128..127, then laid out so that
//!    the same pixel of 8 neighbouring blocks is contiguous ([`Group`]).
//! 2. The accurate integer forward DCT of Loeffler, Ligtenberg and
//!    Moschytz (13-bit constants, 2 extra bits between the passes), one
//!    lane per block ([`fdct_group`]): each step is one vector instruction
//!    over 8 blocks, in both passes, with no transpose.
//! 3. Quantisation as rounded division by 8·q (the DCT output is scaled by
//!    8), done as a multiplication by a reciprocal and a shift that are exact
//!    for every coefficient the DCT can produce ([`Quant`]), again 8 blocks
//!    per instruction with the same constants in every lane; on AVX2 two
//!    coefficients of the 8 blocks share a register of 16-bit lanes, with
//!    two high-half products for the reciprocal and the shift
//!    ([`QuantPair`], [`Lanes`]). The Huffman stage reads the coefficients
//!    in zig-zag order where they lie.
//! 4. Huffman coding from a 64-bit mask of the nonzero coefficients (zero
//!    runs are `trailing_zeros`), codes and lengths from precomputed
//!    tables, a 64-bit bit buffer written out 8 bytes at a time when none of
//!    them is 0xFF (byte stuffing otherwise).
//!
//! **Determinism:** everything is integer arithmetic, so the vectorised
//! build ([`simd::dispatch`]) and the baseline one give the same bytes.

use image::RgbImage;

use crate::imaging::simd;

/// Eight lanes: one row (or column) of a block.
type Row = [i32; 8];
/// An 8×8 block as 8 rows.
type Block = [Row; 8];

// ---------------------------------------------------------------- tables

/// IJG luminance quantisation table (JPEG spec, Annex K.1), row-major.
#[rustfmt::skip]
const LUMA_QUANT: [u16; 64] = [
    16, 11, 10, 16,  24,  40,  51,  61,
    12, 12, 14, 19,  26,  58,  60,  55,
    14, 13, 16, 24,  40,  57,  69,  56,
    14, 17, 22, 29,  51,  87,  80,  62,
    18, 22, 37, 56,  68, 109, 103,  77,
    24, 35, 55, 64,  81, 104, 113,  92,
    49, 64, 78, 87, 103, 121, 120, 101,
    72, 92, 95, 98, 112, 100, 103,  99,
];

/// IJG chrominance quantisation table (Annex K.1), row-major.
#[rustfmt::skip]
const CHROMA_QUANT: [u16; 64] = [
    17, 18, 24, 47, 99, 99, 99, 99,
    18, 21, 26, 66, 99, 99, 99, 99,
    24, 26, 56, 99, 99, 99, 99, 99,
    47, 66, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99,
];

/// Row-major index of the k-th coefficient in zig-zag order.
#[rustfmt::skip]
const ZIGZAG: [u8; 64] = [
     0,  1,  8, 16,  9,  2,  3, 10,
    17, 24, 32, 25, 18, 11,  4,  5,
    12, 19, 26, 33, 40, 48, 41, 34,
    27, 20, 13,  6,  7, 14, 21, 28,
    35, 42, 49, 56, 57, 50, 43, 36,
    29, 22, 15, 23, 30, 37, 44, 51,
    58, 59, 52, 45, 38, 31, 39, 46,
    53, 60, 61, 54, 47, 55, 62, 63,
];

/// Where the DCT leaves row-major coefficient `n`: its output is transposed
/// (column-major).
#[cfg(test)]
const fn transposed(n: usize) -> usize {
    (n % 8) * 8 + n / 8
}

/// A Huffman table as the DHT segment writes it: the number of codes of
/// each length 1..=16, then the symbols in code order.
struct HuffSpec {
    counts: [u8; 16],
    symbols: &'static [u8],
}

/// Annex K.3, table K.3: luminance DC.
const LUMA_DC: HuffSpec = HuffSpec {
    counts: [0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0],
    symbols: &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
};

/// Table K.4: chrominance DC.
const CHROMA_DC: HuffSpec = HuffSpec {
    counts: [0, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0],
    symbols: &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
};

/// Table K.5: luminance AC.
const LUMA_AC: HuffSpec = HuffSpec {
    counts: [0, 2, 1, 3, 3, 2, 4, 3, 5, 5, 4, 4, 0, 0, 1, 0x7D],
    symbols: &[
        0x01, 0x02, 0x03, 0x00, 0x04, 0x11, 0x05, 0x12, 0x21, 0x31, 0x41, 0x06, 0x13, 0x51, 0x61,
        0x07, 0x22, 0x71, 0x14, 0x32, 0x81, 0x91, 0xA1, 0x08, 0x23, 0x42, 0xB1, 0xC1, 0x15, 0x52,
        0xD1, 0xF0, 0x24, 0x33, 0x62, 0x72, 0x82, 0x09, 0x0A, 0x16, 0x17, 0x18, 0x19, 0x1A, 0x25,
        0x26, 0x27, 0x28, 0x29, 0x2A, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3A, 0x43, 0x44, 0x45,
        0x46, 0x47, 0x48, 0x49, 0x4A, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5A, 0x63, 0x64,
        0x65, 0x66, 0x67, 0x68, 0x69, 0x6A, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7A, 0x83,
        0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99,
        0x9A, 0xA2, 0xA3, 0xA4, 0xA5, 0xA6, 0xA7, 0xA8, 0xA9, 0xAA, 0xB2, 0xB3, 0xB4, 0xB5, 0xB6,
        0xB7, 0xB8, 0xB9, 0xBA, 0xC2, 0xC3, 0xC4, 0xC5, 0xC6, 0xC7, 0xC8, 0xC9, 0xCA, 0xD2, 0xD3,
        0xD4, 0xD5, 0xD6, 0xD7, 0xD8, 0xD9, 0xDA, 0xE1, 0xE2, 0xE3, 0xE4, 0xE5, 0xE6, 0xE7, 0xE8,
        0xE9, 0xEA, 0xF1, 0xF2, 0xF3, 0xF4, 0xF5, 0xF6, 0xF7, 0xF8, 0xF9, 0xFA,
    ],
};

/// Table K.6: chrominance AC.
const CHROMA_AC: HuffSpec = HuffSpec {
    counts: [0, 2, 1, 2, 4, 4, 3, 4, 7, 5, 4, 4, 0, 1, 2, 0x77],
    symbols: &[
        0x00, 0x01, 0x02, 0x03, 0x11, 0x04, 0x05, 0x21, 0x31, 0x06, 0x12, 0x41, 0x51, 0x07, 0x61,
        0x71, 0x13, 0x22, 0x32, 0x81, 0x08, 0x14, 0x42, 0x91, 0xA1, 0xB1, 0xC1, 0x09, 0x23, 0x33,
        0x52, 0xF0, 0x15, 0x62, 0x72, 0xD1, 0x0A, 0x16, 0x24, 0x34, 0xE1, 0x25, 0xF1, 0x17, 0x18,
        0x19, 0x1A, 0x26, 0x27, 0x28, 0x29, 0x2A, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3A, 0x43, 0x44,
        0x45, 0x46, 0x47, 0x48, 0x49, 0x4A, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5A, 0x63,
        0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6A, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7A,
        0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97,
        0x98, 0x99, 0x9A, 0xA2, 0xA3, 0xA4, 0xA5, 0xA6, 0xA7, 0xA8, 0xA9, 0xAA, 0xB2, 0xB3, 0xB4,
        0xB5, 0xB6, 0xB7, 0xB8, 0xB9, 0xBA, 0xC2, 0xC3, 0xC4, 0xC5, 0xC6, 0xC7, 0xC8, 0xC9, 0xCA,
        0xD2, 0xD3, 0xD4, 0xD5, 0xD6, 0xD7, 0xD8, 0xD9, 0xDA, 0xE2, 0xE3, 0xE4, 0xE5, 0xE6, 0xE7,
        0xE8, 0xE9, 0xEA, 0xF2, 0xF3, 0xF4, 0xF5, 0xF6, 0xF7, 0xF8, 0xF9, 0xFA,
    ],
};

/// Code and length of every symbol: `code << 8 | length`, 0 for symbols the
/// table does not have.
struct HuffCodes([u32; 256]);

impl HuffCodes {
    /// The canonical codes of Annex C: lengths in increasing order, codes
    /// counting up within a length and doubling from one length to the next.
    fn new(spec: &HuffSpec) -> HuffCodes {
        let mut table = [0u32; 256];
        let mut symbols = spec.symbols.iter();
        let mut code = 0u32;
        for (len, &count) in (1u32..).zip(&spec.counts) {
            for _ in 0..count {
                if let Some(entry) = symbols.next().and_then(|&s| table.get_mut(usize::from(s))) {
                    *entry = (code << 8) | len;
                }
                code += 1;
            }
            code <<= 1;
        }
        HuffCodes(table)
    }

    #[inline(always)]
    fn get(&self, symbol: u32) -> (u32, u32) {
        let e = self.0.get((symbol & 0xFF) as usize).copied().unwrap_or(0);
        (e >> 8, e & 0xFF)
    }
}

/// The IJG quality rule: 50 keeps the tables, above it they shrink
/// linearly to all ones at 100, below it they grow as 50/quality. Clamped
/// to 1..=255, the 8-bit entries a baseline DQT holds.
fn scaled_table(base: &[u16; 64], quality: u8) -> [u8; 64] {
    let quality = u32::from(quality.clamp(1, 100));
    let scale = if quality < 50 {
        5000 / quality
    } else {
        200 - quality * 2
    };
    base.map(|q| ((u32::from(q) * scale + 50) / 100).clamp(1, 255) as u8)
}

/// Quantisation of one component: round(c / (8·q)) for each coefficient,
/// in zig-zag order.
///
/// With b = (|c| + 4q) >> 3 (so that b / q, rounded down, is the rounded
/// quotient), b < 2^13 for every coefficient of 8-bit samples (|c| ≤ 2^14),
/// and the reciprocal m = ⌈2^s / q⌉ with s = 13 + ⌈log2 q⌉ makes
/// (b·m) >> s exactly ⌊b / q⌋ (Granlund and Montgomery: the error
/// m·q − 2^s is below q ≤ 2^(s−13)). b·m < 2^27 fits 32 bits.
struct Quant {
    bias: [i32; 64],
    mult: [u32; 64],
    shift: [u32; 64],
    /// The same division on 16-bit lanes, for two coefficients at a time
    /// (8 lanes each, as a pair of rows lies in a register): see
    /// [`Quant::new`].
    pairs: [QuantPair; 32],
}

/// 16-bit constants of coefficients 2i and 2i + 1, eight lanes each.
#[derive(Clone, Copy)]
struct QuantPair {
    bias: [u16; 16],
    mult: [u16; 16],
    scale: [u16; 16],
}

impl Quant {
    /// `table` in zig-zag order, as DQT writes it.
    fn new(table: &[u8; 64]) -> Quant {
        let q = table.map(|q| u32::from(q.max(1)));
        let shift = q.map(|q| 13 + (32 - (q - 1).leading_zeros()));
        let mut mult = [0u32; 64];
        for ((m, &q), &s) in mult.iter_mut().zip(&q).zip(&shift) {
            *m = (1u32 << s).div_ceil(q);
        }
        // On 16-bit lanes: with p = ⌈log2 q⌉ and m16 = ⌈2^(15+p) / q⌉
        // (at most 2^16 − 1 since q > 2^(p−1)), ⌊x / q⌋ = ⌊8x · m16 / 2^(18+p)⌋
        // for x < 2^13 (the error x · (m16 − 2^(15+p)/q) / 2^(15+p) is
        // below 2^(−2−p) ≤ 1/(4q)). 8x fits 16 bits; two high-half
        // products take off 16 and then 2 + p bits (a product with
        // 2^(14−p), the per-lane shift AVX2 lacks for 16-bit lanes).
        let p = q.map(|q| 32 - (q - 1).leading_zeros());
        let mult16: [u32; 64] = std::array::from_fn(|n| {
            let (q, p) = (
                q.get(n).copied().unwrap_or(1),
                p.get(n).copied().unwrap_or(0),
            );
            (1u32 << (15 + p)).div_ceil(q)
        });
        let pairs = std::array::from_fn(|i| {
            let lane = |table: &[u32; 64], j: usize| {
                let n = 2 * i + j / 8;
                lane16(table.get(n).copied().unwrap_or(0))
            };
            let bias = q.map(|q| 4 * q);
            let scale = p.map(|p| 1 << (14 - p));
            QuantPair {
                bias: std::array::from_fn(|j| lane(&bias, j)),
                mult: std::array::from_fn(|j| lane(&mult16, j)),
                scale: std::array::from_fn(|j| lane(&scale, j)),
            }
        });
        Quant {
            bias: q.map(|q| (4 * q) as i32),
            mult,
            shift,
            pairs,
        }
    }

    /// One coefficient: round(c / (8·q)).
    #[inline(always)]
    fn one(c: i32, b: i32, m: u32, s: u32) -> i32 {
        let sign = c >> 31;
        let magnitude = (c ^ sign) - sign;
        let x = ((magnitude + b) >> 3).min(8191) as u32;
        let q = ((x * m) >> s) as i32;
        (q ^ sign) - sign
    }

    #[cfg(test)]
    fn apply(&self, coefs: &mut [i32; 64]) {
        for (((c, &b), &m), &s) in coefs
            .iter_mut()
            .zip(&self.bias)
            .zip(&self.mult)
            .zip(&self.shift)
        {
            *c = Quant::one(*c, b, m, s);
        }
    }

    /// Coefficient n of 8 blocks at once (`coefs[n]`, one lane per block);
    /// the tables are in the order of `coefs`.
    #[inline(always)]
    fn apply_lanes(&self, coefs: &mut [Row; 64]) {
        for (((row, &b), &m), &s) in coefs
            .iter_mut()
            .zip(&self.bias)
            .zip(&self.mult)
            .zip(&self.shift)
        {
            for c in row.iter_mut() {
                *c = Quant::one(*c, b, m, s);
            }
        }
    }
}

/// A constant of [`QuantPair`], computed in 32 bits.
#[expect(
    clippy::cast_possible_truncation,
    reason = "each is below 2^16 for q in 1..=255: 4q ≤ 1020, m16 < 2^16 (q > 2^(p−1)), 2^(14−p) ≤ 2^14"
)]
fn lane16(v: u32) -> u16 {
    v as u16
}

/// Everything that depends only on the quality.
struct Tables {
    luma: [u8; 64],
    chroma: [u8; 64],
    luma_quant: Quant,
    chroma_quant: Quant,
    luma_dc: HuffCodes,
    luma_ac: HuffCodes,
    chroma_dc: HuffCodes,
    chroma_ac: HuffCodes,
}

impl Tables {
    fn new(quality: u8) -> Tables {
        let luma = scaled_table(&LUMA_QUANT, quality);
        let chroma = scaled_table(&CHROMA_QUANT, quality);
        Tables {
            luma,
            chroma,
            luma_quant: Quant::new(&luma),
            chroma_quant: Quant::new(&chroma),
            luma_dc: HuffCodes::new(&LUMA_DC),
            luma_ac: HuffCodes::new(&LUMA_AC),
            chroma_dc: HuffCodes::new(&CHROMA_DC),
            chroma_ac: HuffCodes::new(&CHROMA_AC),
        }
    }
}

// ---------------------------------------------------------------- lanes

#[cfg(test)]
fn transpose(m: &mut Block) {
    let src = *m;
    for (j, row) in src.iter().enumerate() {
        for (i, &v) in row.iter().enumerate() {
            if let Some(cell) = m.get_mut(i).and_then(|r| r.get_mut(j)) {
                *cell = v;
            }
        }
    }
}

// ---------------------------------------------------------------- colour

/// Y, Cb, Cr of one image row, level-shifted to −128..127: the JFIF
/// equations in 16-bit fixed point (the coefficients of Y sum to exactly
/// 2^16, those of Cb and Cr to 0, so greys are exact). The planes are
/// padded to whole blocks by repeating the last pixel.
#[inline(always)]
#[expect(
    clippy::cast_possible_truncation,
    reason = "the weights of Y sum to 2^16, so Y is 0..=255 before the level shift, −128..=127 after"
)]
fn convert_row(rgb: &[u8], y: &mut [i16], cb: &mut [i16], cr: &mut [i16]) {
    let (pixels, _) = rgb.as_chunks::<3>();
    for (((&[r, g, b], y), cb), cr) in pixels
        .iter()
        .zip(y.iter_mut())
        .zip(cb.iter_mut())
        .zip(cr.iter_mut())
    {
        let (r, g, b) = (i32::from(r), i32::from(g), i32::from(b));
        *y = (((19595 * r + 38470 * g + 7471 * b + 32768) >> 16) - 128) as i16;
        *cb = ((-11059 * r - 21709 * g + 32768 * b + 32767) >> 16) as i16;
        *cr = ((32768 * r - 27439 * g - 5329 * b + 32767) >> 16) as i16;
    }
    let n = pixels.len();
    for plane in [y, cb, cr] {
        let last = n.checked_sub(1).and_then(|i| plane.get(i)).copied();
        if let (Some(last), Some(tail)) = (last, plane.get_mut(n..)) {
            tail.fill(last);
        }
    }
}

/// Row `y` of every group of a plane from a converted row: pixel
/// 64·g + 8·b + x goes to `plane[g][y][x][b]` (an 8 × 8 transpose per
/// group).
#[inline(always)]
fn interleave(row: &[i16], plane: &mut [Group], y: usize) {
    for (src, group) in row.as_chunks::<64>().0.iter().zip(plane.iter_mut()) {
        if let Some(dst) = group.get_mut(y) {
            *dst = std::array::from_fn(|x| {
                std::array::from_fn(|b| src.get(8 * b + x).copied().unwrap_or(0))
            });
        }
    }
}

// ---------------------------------------------------------------- DCT

const CONST_BITS: u32 = 13;
const PASS1_BITS: u32 = 2;

// The rotation constants of the LLM flow graph, times 2^13 and rounded.
const FIX_0_298631336: i32 = 2446;
const FIX_0_390180644: i32 = 3196;
const FIX_0_541196100: i32 = 4433;
const FIX_0_765366865: i32 = 6270;
const FIX_0_899976223: i32 = 7373;
const FIX_1_175875602: i32 = 9633;
const FIX_1_501321110: i32 = 12299;
const FIX_1_847759065: i32 = 15137;
const FIX_1_961570560: i32 = 16069;
const FIX_2_053119869: i32 = 16819;
const FIX_2_562915447: i32 = 20995;
const FIX_3_072711026: i32 = 25172;

/// One 1-D pass of the LLM DCT over 8 lanes at once: row `k` of `d` holds
/// sample k of 8 independent transforms, and is replaced by frequency k.
/// The loop runs over the lanes with scalar code, the form the compiler
/// turns into one vector instruction per step. The first pass leaves its
/// output scaled up by 2^PASS1_BITS, the second removes that, so that the
/// 2-D output is 8 times the orthonormal DCT.
#[inline(always)]
fn llm_pass<const FIRST: bool>(d: &mut Block) {
    let odd_bits = if FIRST {
        CONST_BITS - PASS1_BITS
    } else {
        CONST_BITS + PASS1_BITS
    };
    let descale = |x: i32, n: u32| (x + (1 << (n - 1))) >> n;
    let [r0, r1, r2, r3, r4, r5, r6, r7] = d.each_mut();
    let lanes = r0
        .iter_mut()
        .zip(r1.iter_mut())
        .zip(r2.iter_mut())
        .zip(r3.iter_mut())
        .zip(r4.iter_mut())
        .zip(r5.iter_mut())
        .zip(r6.iter_mut())
        .zip(r7.iter_mut());
    for (((((((x0, x1), x2), x3), x4), x5), x6), x7) in lanes {
        // Butterflies of the inputs.
        let t0 = *x0 + *x7;
        let t7 = *x0 - *x7;
        let t1 = *x1 + *x6;
        let t6 = *x1 - *x6;
        let t2 = *x2 + *x5;
        let t5 = *x2 - *x5;
        let t3 = *x3 + *x4;
        let t4 = *x3 - *x4;

        // Even part: a 4-point DCT of t0..t3, one rotation for 2 and 6.
        let t10 = t0 + t3;
        let t13 = t0 - t3;
        let t11 = t1 + t2;
        let t12 = t1 - t2;
        if FIRST {
            *x0 = (t10 + t11) << PASS1_BITS;
            *x4 = (t10 - t11) << PASS1_BITS;
        } else {
            *x0 = descale(t10 + t11, PASS1_BITS);
            *x4 = descale(t10 - t11, PASS1_BITS);
        }
        let z1 = (t12 + t13) * FIX_0_541196100;
        *x2 = descale(z1 + t13 * FIX_0_765366865, odd_bits);
        *x6 = descale(z1 - t12 * FIX_1_847759065, odd_bits);

        // Odd part: the rotations of t4..t7, sharing the multiplication
        // by cos(3π/16)·√2 (z5).
        let z1 = t4 + t7;
        let z2 = t5 + t6;
        let z3 = t4 + t6;
        let z4 = t5 + t7;
        let z5 = (z3 + z4) * FIX_1_175875602;
        let z1 = z1 * -FIX_0_899976223;
        let z2 = z2 * -FIX_2_562915447;
        let z3 = z3 * -FIX_1_961570560 + z5;
        let z4 = z4 * -FIX_0_390180644 + z5;
        *x7 = descale(t4 * FIX_0_298631336 + z1 + z3, odd_bits);
        *x5 = descale(t5 * FIX_2_053119869 + z2 + z4, odd_bits);
        *x3 = descale(t6 * FIX_3_072711026 + z2 + z3, odd_bits);
        *x1 = descale(t7 * FIX_1_501321110 + z1 + z4, odd_bits);
    }
}

/// The 2-D forward DCT of level-shifted samples (rows of the block),
/// 8 times the orthonormal DCT, transposed: `out[u][v]` is horizontal
/// frequency u, vertical frequency v.
#[cfg(test)]
fn fdct(block: &mut Block) {
    llm_pass::<true>(block);
    transpose(block);
    llm_pass::<false>(block);
}

// ---------------------------------------------------------------- Huffman

/// A 64-bit bit buffer in front of the output. Bits enter at the bottom;
/// when a code does not fit, the full word goes out, 8 bytes at once unless
/// one of them is 0xFF and needs a stuffed zero after it.
struct BitWriter {
    acc: u64,
    /// Free bits in `acc` (1..=64).
    free: u32,
    out: Vec<u8>,
}

impl BitWriter {
    /// Appends the low `n` bits of `bits` (n ≤ 32, higher bits zero).
    #[inline(always)]
    fn put(&mut self, bits: u32, n: u32) {
        let mut pending = self.pending();
        pending.put(&mut self.out, bits, n);
        self.acc = pending.acc;
        self.free = pending.free;
    }

    /// A copy of the bit buffer apart from the output, for a loop to keep
    /// in registers (next to the vector it would stay in memory, since the
    /// vector's growth can see it); the loop stores it back when done.
    #[inline(always)]
    fn pending(&self) -> Pending {
        Pending {
            acc: self.acc,
            free: self.free,
        }
    }
}

/// The bit buffer of a [`BitWriter`] taken out of it.
#[derive(Clone, Copy)]
struct Pending {
    acc: u64,
    free: u32,
}

impl Pending {
    /// Appends the low `n` bits of `bits` (n ≤ 32, higher bits zero).
    #[inline(always)]
    fn put(&mut self, out: &mut Vec<u8>, bits: u32, n: u32) {
        let bits = u64::from(bits);
        if n < self.free {
            self.acc = (self.acc << n) | bits;
            self.free -= n;
        } else {
            let over = n - self.free;
            let word = (self.acc << self.free) | (bits >> over);
            write_word(out, word);
            // The bits already written stay above; later shifts drop them.
            self.acc = bits;
            self.free = 64 - over;
        }
    }
}

impl BitWriter {
    /// Pads the last byte with ones and writes what is left.
    fn finish(mut self) -> Vec<u8> {
        let pending = 64 - self.free;
        let pad = (8 - pending % 8) % 8;
        if pad > 0 {
            self.put((1 << pad) - 1, pad);
        }
        // The whole bytes left, at the bottom of `acc`, highest first.
        let pending = (64 - self.free) / 8;
        for b in self
            .acc
            .to_be_bytes()
            .into_iter()
            .skip(8 - pending as usize)
        {
            self.out.push(b);
            if b == 0xFF {
                self.out.push(0);
            }
        }
        self.out
    }
}

#[inline(always)]
fn write_word(out: &mut Vec<u8>, word: u64) {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    // A byte of `word` is 0xFF iff that byte of !word is zero.
    let inverted = !word;
    let has_ff = inverted.wrapping_sub(ONES) & word & HIGHS != 0;
    if has_ff {
        for b in word.to_be_bytes() {
            out.push(b);
            if b == 0xFF {
                out.push(0);
            }
        }
    } else {
        out.extend_from_slice(&word.to_be_bytes());
    }
}

/// Category (bit length of |v|) and the bits that follow the code: v
/// itself if positive, v − 1 (its one's complement) if negative.
#[inline(always)]
fn magnitude(v: i32) -> (u32, u32) {
    let sign = v >> 31;
    let abs = ((v ^ sign) - sign) as u32;
    let size = 32 - abs.leading_zeros();
    let bits = ((v + sign) as u32) & ((1u32 << size) - 1);
    (size, bits)
}

/// Where zig-zag position k of block b lies in the 8 × 64 coefficients of
/// a group ([`fdct_group`]): 8 · (row-major index) + b.
#[rustfmt::skip]
const ZIGZAG_LANES: [u16; 64] = [
      0,   8,  64, 128,  72,  16,  24,  80,
    136, 192, 256, 200, 144,  88,  32,  40,
     96, 152, 208, 264, 320, 384, 328, 272,
    216, 160, 104,  48,  56, 112, 168, 224,
    280, 336, 392, 448, 456, 400, 344, 288,
    232, 176, 120, 184, 240, 296, 352, 408,
    464, 472, 416, 360, 304, 248, 312, 368,
    424, 480, 488, 432, 376, 440, 496, 504,
];

/// Eight blocks side by side, as the planes hold them: `[y][x][b]` is row
/// y, column x of block b, so that every DCT step works on 8 blocks at once
/// and no transpose is needed.
type Group = [[[i16; 8]; 8]; 8];

/// The 2-D DCT of the 8 blocks of `group` (the vertical pass on the rows,
/// then the horizontal one): `out[n][b]` is row-major coefficient n
/// (vertical frequency n / 8, horizontal n % 8) of block b, 8 times the
/// orthonormal DCT. Lane for lane the same arithmetic as [`fdct`].
#[inline(always)]
fn fdct_group(group: &Group, out: &mut [Block; 8]) {
    for x in 0..8 {
        let mut d: Block = std::array::from_fn(|y| {
            group
                .get(y)
                .and_then(|row| row.get(x))
                .copied()
                .unwrap_or([0; 8])
                .map(i32::from)
        });
        llm_pass::<true>(&mut d);
        for (o, r) in out.iter_mut().zip(&d) {
            if let Some(cell) = o.get_mut(x) {
                *cell = *r;
            }
        }
    }
    for o in out.iter_mut() {
        llm_pass::<false>(o);
    }
}

/// For each block b of a quantised group, bit k set iff its zig-zag
/// coefficient k is nonzero.
#[inline(always)]
fn nonzero_masks(coefs: &[Row; 64]) -> [u64; 8] {
    let mut masks = [0u64; 8];
    for (k, &n) in ZIGZAG.iter().enumerate() {
        let row = coefs.get(usize::from(n)).copied().unwrap_or([0; 8]);
        for (m, c) in masks.iter_mut().zip(row) {
            *m |= u64::from(c != 0) << k;
        }
    }
    masks
}

/// Eight blocks' DCT, quantised, with their nonzero masks.
#[inline(always)]
fn transform_group(
    group: &Group,
    quant: &Quant,
    dct: &mut [Block; 8],
    out: &mut Coefs,
    lanes: impl Lanes,
) -> [u64; 8] {
    fdct_group(group, dct);
    let flat: &mut [Row; 64] = match dct.as_flattened_mut().try_into() {
        Ok(flat) => flat,
        Err(_) => return [0; 8],
    };
    lanes.quantize(flat, quant, out)
}

/// The quantised coefficients of 8 blocks: `[n][b]` is row-major
/// coefficient n of block b.
type Coefs = [[i16; 8]; 64];

/// The steps of the pipeline the compiler does not vectorise well on its
/// own: the transpose of [`interleave`], quantisation in 16-bit lanes and
/// the bit matrix of [`nonzero_masks`]. Plain loops everywhere, or explicit
/// AVX2 instructions; both give the same values.
trait Lanes: Copy {
    fn interleave(self, row: &[i16], plane: &mut [Group], y: usize);
    /// Quantises a group's DCT output (`dct` may be overwritten) into
    /// `out`; returns each block's nonzero mask.
    fn quantize(self, dct: &mut [Row; 64], quant: &Quant, out: &mut Coefs) -> [u64; 8];
}

/// The plain loops.
#[derive(Clone, Copy)]
struct Loops;

impl Lanes for Loops {
    #[inline(always)]
    fn interleave(self, row: &[i16], plane: &mut [Group], y: usize) {
        interleave(row, plane, y);
    }

    #[inline(always)]
    #[expect(
        clippy::cast_possible_truncation,
        reason = "quotients of |c| ≤ 2^14 by at least 8 are within ±2^11"
    )]
    fn quantize(self, dct: &mut [Row; 64], quant: &Quant, out: &mut Coefs) -> [u64; 8] {
        quant.apply_lanes(dct);
        for (o, row) in out.iter_mut().zip(dct.iter()) {
            // Quotients of |c| ≤ 2^14 by at least 1 after the division by 8.
            *o = row.map(|c| c as i16);
        }
        nonzero_masks(dct)
    }
}

/// Zig-zag position of row-major coefficient n (the inverse of [`ZIGZAG`]).
#[rustfmt::skip]
const UNZIGZAG: [u8; 64] = [
     0,  1,  5,  6, 14, 15, 27, 28,
     2,  4,  7, 13, 16, 26, 29, 42,
     3,  8, 12, 17, 25, 30, 41, 43,
     9, 11, 18, 24, 31, 40, 44, 53,
    10, 19, 23, 32, 39, 45, 52, 54,
    20, 22, 33, 38, 46, 51, 55, 60,
    21, 34, 37, 47, 50, 56, 59, 61,
    35, 36, 48, 49, 57, 58, 62, 63,
];

/// AVX2: the transpose as three rounds of 16-, 32- and 64-bit unpacks;
/// quantisation on 16 lanes (two coefficients of 8 blocks) with the
/// constants of [`QuantPair`]; the masks from one `pmovmskb` per pair of
/// coefficients (a byte per zig-zag position, a bit per block) and one per
/// block and half (bit b of every byte, shifted up to the top).
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
struct Shuffles(simd::x86::V3);

#[cfg(target_arch = "x86_64")]
impl Lanes for Shuffles {
    #[inline(always)]
    fn interleave(self, row: &[i16], plane: &mut [Group], y: usize) {
        use core::arch::x86_64::__m128i;
        let s = self.0.sse2;
        for (src, group) in row.as_chunks::<64>().0.iter().zip(plane.iter_mut()) {
            let Some(dst) = group.get_mut(y) else {
                continue;
            };
            // r[b]: pixels 8b..8b+8 of the run, x = 0..8 of block b.
            let r: [__m128i; 8] = pulp::bytemuck::cast(*src);
            let [r0, r1, r2, r3, r4, r5, r6, r7] = r;
            let (t0, t1) = (s._mm_unpacklo_epi16(r0, r1), s._mm_unpackhi_epi16(r0, r1));
            let (t2, t3) = (s._mm_unpacklo_epi16(r2, r3), s._mm_unpackhi_epi16(r2, r3));
            let (t4, t5) = (s._mm_unpacklo_epi16(r4, r5), s._mm_unpackhi_epi16(r4, r5));
            let (t6, t7) = (s._mm_unpacklo_epi16(r6, r7), s._mm_unpackhi_epi16(r6, r7));
            let (u0, u1) = (s._mm_unpacklo_epi32(t0, t2), s._mm_unpackhi_epi32(t0, t2));
            let (u2, u3) = (s._mm_unpacklo_epi32(t1, t3), s._mm_unpackhi_epi32(t1, t3));
            let (u4, u5) = (s._mm_unpacklo_epi32(t4, t6), s._mm_unpackhi_epi32(t4, t6));
            let (u6, u7) = (s._mm_unpacklo_epi32(t5, t7), s._mm_unpackhi_epi32(t5, t7));
            let out: [__m128i; 8] = [
                s._mm_unpacklo_epi64(u0, u4),
                s._mm_unpackhi_epi64(u0, u4),
                s._mm_unpacklo_epi64(u1, u5),
                s._mm_unpackhi_epi64(u1, u5),
                s._mm_unpacklo_epi64(u2, u6),
                s._mm_unpackhi_epi64(u2, u6),
                s._mm_unpacklo_epi64(u3, u7),
                s._mm_unpackhi_epi64(u3, u7),
            ];
            *dst = pulp::bytemuck::cast(out);
        }
    }

    #[inline(always)]
    #[expect(
        clippy::cast_possible_truncation,
        reason = "the flags of a pair are the low byte and byte 2 of its 32-bit movemask, taken on purpose"
    )]
    fn quantize(self, dct: &mut [Row; 64], quant: &Quant, out: &mut Coefs) -> [u64; 8] {
        use core::arch::x86_64::__m256i;
        let v = self.0;
        let zero = v.avx._mm256_setzero_si256();
        // Byte k: bit b set iff zig-zag coefficient k of block b is nonzero.
        let mut bytes = [0u8; 64];
        let (pairs, _) = dct.as_chunks::<2>();
        let (outs, _) = out.as_chunks_mut::<2>();
        let unzig = UNZIGZAG.as_chunks::<2>().0;
        for (((pair, o), k), qp) in pairs.iter().zip(outs).zip(unzig).zip(&quant.pairs) {
            let [a, b]: [__m256i; 2] = pulp::bytemuck::cast(*pair);
            // Rows 2i and 2i + 1 as 16 lanes (the pack works per half).
            let c = v
                .avx2
                ._mm256_permute4x64_epi64::<0b11_01_10_00>(v.avx2._mm256_packs_epi32(a, b));
            let bias: __m256i = pulp::bytemuck::cast(qp.bias);
            let mult: __m256i = pulp::bytemuck::cast(qp.mult);
            let scale: __m256i = pulp::bytemuck::cast(qp.scale);
            // x = (|c| + 4q) >> 3, then ⌊x / q⌋ by the two high halves.
            let x = v
                .avx2
                ._mm256_srli_epi16::<3>(v.avx2._mm256_adds_epu16(v.avx2._mm256_abs_epi16(c), bias));
            let q = v.avx2._mm256_mulhi_epu16(
                v.avx2
                    ._mm256_mulhi_epu16(v.avx2._mm256_slli_epi16::<3>(x), mult),
                scale,
            );
            let q = v.avx2._mm256_sign_epi16(q, c);
            *o = pulp::bytemuck::cast(q);
            let zeros = v.avx2._mm256_cmpeq_epi16(q, zero);
            // Per half: the 8 lanes' zero flags as bytes, twice.
            let flags = v
                .avx2
                ._mm256_movemask_epi8(v.avx2._mm256_packs_epi16(zeros, zeros))
                as u32;
            let [k0, k1] = *k;
            if let Some(b) = bytes.get_mut(usize::from(k0)) {
                *b = !(flags as u8);
            }
            if let Some(b) = bytes.get_mut(usize::from(k1)) {
                *b = !((flags >> 16) as u8);
            }
        }
        let [low, high]: [__m256i; 2] = pulp::bytemuck::cast(bytes);
        let mut masks = [0u64; 8];
        // Block b's shift is 7 − b.
        for (m, shift) in masks.iter_mut().zip((0..8).rev()) {
            // Bit b of each byte to its top bit (16-bit shifts move the
            // high byte's bit b to bit 15 alike).
            let up = v.sse2._mm_cvtsi32_si128(shift);
            let l = v
                .avx2
                ._mm256_movemask_epi8(v.avx2._mm256_sll_epi16(low, up)) as u32;
            let h = v
                .avx2
                ._mm256_movemask_epi8(v.avx2._mm256_sll_epi16(high, up)) as u32;
            *m = u64::from(l) | (u64::from(h) << 32);
        }
        masks
    }
}

#[inline(always)]
fn encode_block(
    w: &mut BitWriter,
    coefs: &[i16],
    lane: usize,
    mask: u64,
    prev_dc: &mut i32,
    dc: &HuffCodes,
    ac: &HuffCodes,
) {
    let at = |pos: usize| {
        ZIGZAG_LANES
            .get(pos)
            .and_then(|&i| coefs.get(usize::from(i) + lane))
            .map_or(0, |&c| i32::from(c))
    };
    let mut p = w.pending();
    let out = &mut w.out;
    let first = at(0);
    let diff = first - *prev_dc;
    *prev_dc = first;
    let (size, bits) = magnitude(diff);
    let (code, len) = dc.get(size);
    p.put(out, (code << size) | bits, len + size);

    // Bit i of `rest` is zig-zag position `pos + i`.
    let mut rest = mask >> 1;
    let mut pos = 1usize;
    while rest != 0 {
        let mut run = rest.trailing_zeros();
        pos += run as usize;
        rest >>= run;
        rest >>= 1;
        while run >= 16 {
            let (code, len) = ac.get(0xF0);
            p.put(out, code, len);
            run -= 16;
        }
        let (size, bits) = magnitude(at(pos));
        let (code, len) = ac.get((run << 4) | size);
        p.put(out, (code << size) | bits, len + size);
        pos += 1;
    }
    if pos < 64 {
        let (code, len) = ac.get(0x00);
        p.put(out, code, len);
    }
    w.acc = p.acc;
    w.free = p.free;
}

// ---------------------------------------------------------------- image

/// The entropy-coded data of the whole image, one row of blocks at a
/// time: its 8 pixel rows (the last image row repeated past the bottom) are
/// converted to Y, Cb and Cr rows, laid out as groups of 8 blocks, then each
/// group is transformed and its blocks coded.
#[inline(always)]
fn scan(img: &RgbImage, t: &Tables, out: Vec<u8>, lanes: impl Lanes) -> Vec<u8> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let stride = w * 3;
    let blocks = w.div_ceil(8);
    let groups = blocks.div_ceil(8);
    let padded = groups * 64;
    let raw = img.as_raw();
    let mut bits = BitWriter {
        acc: 0,
        free: 64,
        out,
    };
    let mut rows = [vec![0i16; padded], vec![0i16; padded], vec![0i16; padded]];
    let empty: Group = [[[0; 8]; 8]; 8];
    let mut planes = [
        vec![empty; groups],
        vec![empty; groups],
        vec![empty; groups],
    ];
    let (mut y_dc, mut cb_dc, mut cr_dc) = (0, 0, 0);
    let mut dct: [Block; 8] = [[[0; 8]; 8]; 8];
    let mut coefs: [Coefs; 3] = [[[0; 8]; 64]; 3];
    for y0 in (0..h).step_by(8) {
        for i in 0..8 {
            let sy = (y0 + i).min(h - 1);
            let src = raw.get(sy * stride..(sy + 1) * stride).unwrap_or(&[]);
            let [yr, cbr, crr] = &mut rows;
            convert_row(src, yr, cbr, crr);
            for (row, plane) in rows.iter().zip(planes.iter_mut()) {
                lanes.interleave(row, plane, i);
            }
        }
        let [yp, cbp, crp] = &planes;
        for (g, ((yg, cbg), crg)) in yp.iter().zip(cbp).zip(crp).enumerate() {
            let [yc, cbc, crc] = &mut coefs;
            let ym = transform_group(yg, &t.luma_quant, &mut dct, yc, lanes);
            let cbm = transform_group(cbg, &t.chroma_quant, &mut dct, cbc, lanes);
            let crm = transform_group(crg, &t.chroma_quant, &mut dct, crc, lanes);
            let (yf, cbf, crf) = (yc.as_flattened(), cbc.as_flattened(), crc.as_flattened());
            let n = blocks.saturating_sub(g * 8).min(8);
            for (lane, ((&ym, &cbm), &crm)) in ym.iter().zip(&cbm).zip(&crm).enumerate().take(n) {
                encode_block(&mut bits, yf, lane, ym, &mut y_dc, &t.luma_dc, &t.luma_ac);
                encode_block(
                    &mut bits,
                    cbf,
                    lane,
                    cbm,
                    &mut cb_dc,
                    &t.chroma_dc,
                    &t.chroma_ac,
                );
                encode_block(
                    &mut bits,
                    crf,
                    lane,
                    crm,
                    &mut cr_dc,
                    &t.chroma_dc,
                    &t.chroma_ac,
                );
            }
        }
    }
    bits.finish()
}

#[expect(
    clippy::cast_possible_truncation,
    reason = "the bodies are this encoder's fixed headers, at most a few hundred bytes"
)]
fn segment(out: &mut Vec<u8>, marker: u8, body: &[u8]) {
    out.extend_from_slice(&[0xFF, marker]);
    out.extend_from_slice(&((body.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(body);
}

fn headers(out: &mut Vec<u8>, width: u16, height: u16, t: &Tables) {
    out.extend_from_slice(&[0xFF, 0xD8]);
    // JFIF 1.02, no units, 1:1 pixel aspect, no thumbnail.
    segment(out, 0xE0, b"JFIF\0\x01\x02\x00\x00\x01\x00\x01\x00\x00");

    let mut dqt = Vec::with_capacity(130);
    for (id, table) in [(0u8, &t.luma), (1, &t.chroma)] {
        dqt.push(id);
        dqt.extend(
            ZIGZAG
                .iter()
                .map(|&n| table.get(usize::from(n)).copied().unwrap_or(1)),
        );
    }
    segment(out, 0xDB, &dqt);

    let mut sof = vec![8];
    sof.extend_from_slice(&height.to_be_bytes());
    sof.extend_from_slice(&width.to_be_bytes());
    // Y, Cb, Cr: ids 1..3, no subsampling, quantisation tables 0, 1, 1.
    sof.extend_from_slice(&[3, 1, 0x11, 0, 2, 0x11, 1, 3, 0x11, 1]);
    segment(out, 0xC0, &sof);

    let mut dht = Vec::with_capacity(420);
    for (class_id, spec) in [
        (0x00, &LUMA_DC),
        (0x10, &LUMA_AC),
        (0x01, &CHROMA_DC),
        (0x11, &CHROMA_AC),
    ] {
        dht.push(class_id);
        dht.extend_from_slice(&spec.counts);
        dht.extend_from_slice(spec.symbols);
    }
    segment(out, 0xC4, &dht);

    // One interleaved scan: Y with tables 0/0, Cb and Cr with 1/1, all 64
    // coefficients, no successive approximation.
    segment(out, 0xDA, &[3, 1, 0x00, 2, 0x11, 3, 0x11, 0, 63, 0]);
}

/// Encodes `img` as a baseline JPEG of the given quality (1..=100).
/// `None` if a side is 0 or beyond the 65 535 JPEG allows.
pub fn encode(img: &RgbImage, quality: u8) -> Option<Vec<u8>> {
    let (w, h) = img.dimensions();
    let width = u16::try_from(w).ok().filter(|&w| w > 0)?;
    let height = u16::try_from(h).ok().filter(|&h| h > 0)?;
    let tables = Tables::new(quality);
    // Room for the headers and about 4 bits per pixel, which photos at
    // quality 90 stay under; the vector grows if not.
    let mut out = Vec::with_capacity(1024 + img.as_raw().len() / 6);
    headers(&mut out, width, height, &tables);
    #[cfg(target_arch = "x86_64")]
    if let Some(v3) = simd::x86::v3() {
        let mut out = pulp::Simd::vectorize(
            v3,
            #[inline(always)]
            || scan(img, &tables, out, Shuffles(v3)),
        );
        out.extend_from_slice(&[0xFF, 0xD9]);
        return Some(out);
    }
    let mut out = simd::dispatch(
        #[inline(always)]
        || scan(img, &tables, out, Loops),
    );
    out.extend_from_slice(&[0xFF, 0xD9]);
    Some(out)
}

#[cfg(test)]
mod tests {

    use image::codecs::jpeg::JpegEncoder;
    use image::{ExtendedColorType, ImageEncoder, ImageFormat, Rgb};
    use tessera_domain::generation::SplitMix64;

    use super::*;
    use crate::imaging::methods::saturating_u8;

    fn noisy(w: u32, h: u32, seed: u64) -> RgbImage {
        let mut rng = SplitMix64::new(seed);
        RgbImage::from_fn(w, h, |_, _| {
            let [r, g, b, ..] = rng.next_u64().to_le_bytes();
            Rgb([r, g, b])
        })
    }

    /// Smooth shading, hard edges, colour and some per-pixel noise.
    fn photo(w: u32, h: u32) -> RgbImage {
        let mut rng = SplitMix64::new(9);
        RgbImage::from_fn(w, h, |x, y| {
            let (fx, fy) = (x as f32, y as f32);
            let shade = 110.0 + 60.0 * (fx / 23.0).sin() * (fy / 31.0).cos();
            let edge = if (x / 40 + y / 30) % 2 == 0 {
                40.0
            } else {
                -30.0
            };
            let n = rng.next_u64();
            let noise = |k: u32| ((n >> (8 * k)) & 0xFF) as f32 / 255.0 * 12.0 - 6.0;
            let l = shade + edge;
            Rgb([
                saturating_u8(l + 30.0 * (fx / 50.0).cos() + noise(0)),
                saturating_u8(l - 20.0 * (fy / 40.0).sin() + noise(1)),
                saturating_u8(l + 45.0 * ((fx + fy) / 70.0).sin() + noise(2)),
            ])
        })
    }

    fn ours(img: &RgbImage) -> Vec<u8> {
        encode(img, 90).unwrap()
    }

    fn theirs(img: &RgbImage) -> Vec<u8> {
        let mut out = Vec::new();
        JpegEncoder::new_with_quality(&mut out, 90)
            .write_image(
                img.as_raw(),
                img.width(),
                img.height(),
                ExtendedColorType::Rgb8,
            )
            .unwrap();
        out
    }

    fn decode(bytes: &[u8]) -> RgbImage {
        image::load_from_memory_with_format(bytes, ImageFormat::Jpeg)
            .unwrap()
            .to_rgb8()
    }

    fn psnr(a: &RgbImage, b: &RgbImage) -> f64 {
        let se: f64 = a
            .as_raw()
            .iter()
            .zip(b.as_raw())
            .map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2))
            .sum();
        let mse = se / a.as_raw().len() as f64;
        10.0 * (255.0 * 255.0 / mse).log10()
    }

    #[test]
    fn decodes_at_any_size() {
        for (w, h) in [(1, 1), (7, 5), (16, 16), (17, 33), (333, 129)] {
            let img = photo(w, h);
            let bytes = ours(&img);
            assert_eq!(&bytes[..2], &[0xFF, 0xD8]);
            assert_eq!(&bytes[bytes.len() - 2..], &[0xFF, 0xD9]);
            let back = decode(&bytes);
            assert_eq!(back.dimensions(), (w, h));
            // A sanity bound; the PSNR test below is the real one.
            assert!(psnr(&img, &back) > 30.0, "{w}×{h}: {}", psnr(&img, &back));
        }
        assert!(encode(&RgbImage::new(0, 4), 90).is_none());
        assert!(encode(&RgbImage::new(65_536, 1), 90).is_none());
    }

    #[test]
    fn as_faithful_as_the_image_encoder() {
        for (w, h) in [(256, 192), (203, 117)] {
            let img = photo(w, h);
            let mine = ours(&img);
            let reference = theirs(&img);
            let (p_mine, p_ref) = (psnr(&img, &decode(&mine)), psnr(&img, &decode(&reference)));
            assert!(
                p_mine >= p_ref - 0.5,
                "{w}×{h}: {p_mine:.2} dB against image's {p_ref:.2} dB"
            );
            // Same tables, same subsampling: about the same size too.
            let ratio = mine.len() as f64 / reference.len() as f64;
            assert!(
                (0.9..1.1).contains(&ratio),
                "{w}×{h}: size ratio {ratio:.3}"
            );
        }
    }

    #[test]
    fn flat_colours_stay_flat() {
        for colour in [
            [0, 0, 0],
            [255, 255, 255],
            [200, 30, 90],
            [12, 250, 128],
            [77, 77, 77],
        ] {
            let img = RgbImage::from_pixel(37, 21, Rgb(colour));
            let back = decode(&ours(&img));
            for p in back.pixels() {
                for (got, want) in p.0.iter().zip(colour) {
                    assert!(got.abs_diff(want) <= 2, "{colour:?} came back as {:?}", p.0);
                }
            }
        }
    }

    #[test]
    fn same_pixels_same_bytes() {
        let img = noisy(301, 211, 3);
        assert_eq!(ours(&img), ours(&img));
        assert_ne!(ours(&img), ours(&noisy(301, 211, 4)));
    }

    #[test]
    fn output_bytes_are_pinned() {
        use sha2::{Digest, Sha256};
        let digest = |img: &RgbImage| hex::encode(Sha256::digest(ours(img)));
        assert_eq!(
            digest(&noisy(301, 211, 3)),
            "7dff29f5946e8c6ba59233800c10d20a69c463cb8ec951cdedae49eff0167e9a"
        );
        assert_eq!(
            digest(&photo(97, 65)),
            "f3d976b4b3b0a1ccd657dd87f71f45ae73f45226cdf7448975fb5487d83c639a"
        );
        assert_eq!(
            digest(&photo(333, 129)),
            "b918cfd8b1d38b7320b56082bf43cfddfe6a2a6709b495e55938780c5cfe722d"
        );
    }

    #[test]
    fn vectorised_and_baseline_give_the_same_bytes() {
        for img in [noisy(301, 211, 5), photo(301, 211)] {
            let wide = ours(&img);
            let base = simd::with_baseline(|| ours(&img));
            assert_eq!(wide, base);
        }
    }

    #[test]
    fn headers_say_what_the_scan_is() {
        let bytes = ours(&photo(17, 33));
        let find = |marker: u8| {
            bytes
                .windows(2)
                .position(|w| w == [0xFF, marker])
                .unwrap_or_else(|| panic!("no marker {marker:02X}"))
        };
        // No metadata segments: only JFIF's APP0.
        assert!(!bytes.windows(2).any(|w| w == [0xFF, 0xE1]));
        let sof = find(0xC0);
        assert_eq!(&bytes[sof + 4..sof + 10], &[8, 0, 33, 0, 17, 3]);
        assert_eq!(
            &bytes[sof + 10..sof + 19],
            &[1, 0x11, 0, 2, 0x11, 1, 3, 0x11, 1]
        );
        // Quality 90 scales the IJG tables by 0.2: 16 → 3, 17 → 3, 99 → 20.
        let dqt = find(0xDB);
        assert_eq!(bytes[dqt + 4], 0);
        assert_eq!(bytes[dqt + 5], 3);
        assert_eq!(bytes[dqt + 4 + 65], 1);
        assert_eq!(bytes[dqt + 5 + 65], 3);
        assert_eq!(bytes[dqt + 4 + 65 + 64], 20);
    }

    #[test]
    fn quantisation_is_rounded_division() {
        for q in 1..=255u8 {
            let quant = Quant::new(&[q; 64]);
            let d = 8 * i32::from(q);
            for c in -(1 << 14)..=(1 << 14) {
                let mut coefs = [c; 64];
                quant.apply(&mut coefs);
                let got = coefs[37];
                let want = if c < 0 {
                    -((-c + d / 2) / d)
                } else {
                    (c + d / 2) / d
                };
                assert_eq!(got, want, "c {c}, q {q}");
            }
        }
    }

    #[test]
    fn dct_is_the_dct() {
        let mut rng = SplitMix64::new(1);
        let mut worst = 0.0f64;
        for _ in 0..200 {
            let block: Block = std::array::from_fn(|_| {
                std::array::from_fn(|_| (rng.next_u64() % 256) as i32 - 128)
            });
            let mut out = block;
            fdct(&mut out);
            for (u, row) in out.iter().enumerate() {
                for (v, &got) in row.iter().enumerate() {
                    let c = |k: usize| if k == 0 { 0.5f64.sqrt() } else { 1.0 };
                    let mut sum = 0.0;
                    for (y, row) in block.iter().enumerate() {
                        for (x, &s) in row.iter().enumerate() {
                            sum += f64::from(s)
                                * ((2 * x + 1) as f64 * u as f64 * std::f64::consts::PI / 16.0)
                                    .cos()
                                * ((2 * y + 1) as f64 * v as f64 * std::f64::consts::PI / 16.0)
                                    .cos();
                        }
                    }
                    let exact = c(u) * c(v) / 4.0 * sum * 8.0;
                    worst = worst.max((f64::from(got) - exact).abs());
                }
            }
        }
        // In units of the output (8 × the DCT): under a quarter of a unit
        // of the true coefficient.
        assert!(worst <= 2.0, "worst DCT error {worst}");
        // Extremes stay within the 2^14 the quantiser is exact for.
        for v in [-128, 127] {
            let mut out = [[v; 8]; 8];
            fdct(&mut out);
            assert_eq!(out[0][0], 64 * v);
        }
    }

    #[test]
    fn group_dct_is_the_block_dct() {
        let mut rng = SplitMix64::new(2);
        for _ in 0..50 {
            let blocks: [Block; 8] = std::array::from_fn(|_| {
                std::array::from_fn(|_| {
                    std::array::from_fn(|_| (rng.next_u64() % 256) as i32 - 128)
                })
            });
            let group: Group = std::array::from_fn(|y| {
                std::array::from_fn(|x| {
                    std::array::from_fn(|b| i16::try_from(blocks[b][y][x]).unwrap())
                })
            });
            let mut out = [[[0; 8]; 8]; 8];
            fdct_group(&group, &mut out);
            for (b, block) in blocks.iter().enumerate() {
                let mut want = *block;
                fdct(&mut want);
                for n in 0..64 {
                    let t = transposed(n);
                    assert_eq!(out[n / 8][n % 8][b], want[t / 8][t % 8], "block {b}, n {n}");
                }
            }
        }
    }

    /// Every divisor a table can hold and every coefficient the DCT can
    /// give: the AVX2 quantisation (16-bit lanes) and its masks equal the
    /// plain loops.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn sixteen_bit_quantisation_is_the_division() {
        let Some(v3) = simd::x86::v3() else {
            return;
        };
        let values: Vec<i32> = (-(1 << 14)..=(1 << 14)).collect();
        for q in 1..=255u8 {
            let quant = Quant::new(&[q; 64]);
            for chunk in values.chunks(512) {
                let mut dct = [[0i32; 8]; 64];
                for (c, &v) in dct.as_flattened_mut().iter_mut().zip(chunk) {
                    *c = v;
                }
                // Some zeros, so that the masks have both kinds of bit.
                dct[usize::from(ZIGZAG[usize::from(q) % 64])] = [0; 8];
                let (mut plain, mut wide) = ([[0; 8]; 64], [[0; 8]; 64]);
                let plain_masks = Loops.quantize(&mut dct.clone(), &quant, &mut plain);
                let wide_masks = pulp::Simd::vectorize(
                    v3,
                    #[inline(always)]
                    || Shuffles(v3).quantize(&mut dct.clone(), &quant, &mut wide),
                );
                assert_eq!(plain, wide, "q = {q}");
                assert_eq!(plain_masks, wide_masks, "q = {q}");
                let n = usize::from(ZIGZAG[1]);
                assert_eq!(
                    i32::from(plain[n][0]),
                    Quant::one(dct[n][0], 4 * i32::from(q), quant.mult[n], quant.shift[n])
                );
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn shuffled_transpose_is_the_interleave() {
        let Some(v3) = simd::x86::v3() else {
            return;
        };
        let row: Vec<i16> = (0..3 * 64)
            .map(|i| i16::try_from(i * 37 % 251 - 125).unwrap())
            .collect();
        let empty: Group = [[[0; 8]; 8]; 8];
        let (mut plain, mut wide) = (vec![empty; 3], vec![empty; 3]);
        interleave(&row, &mut plain, 5);
        pulp::Simd::vectorize(
            v3,
            #[inline(always)]
            || Shuffles(v3).interleave(&row, &mut wide, 5),
        );
        assert_eq!(plain, wide);
        // Pixel 64·g + 8·b + x at [g][y][x][b].
        assert_eq!(wide[2][5][3][6], row[128 + 48 + 3]);
    }

    #[test]
    fn masks_follow_the_zigzag() {
        let mut coefs = [[0; 8]; 64];
        coefs[0][0] = 5;
        coefs[usize::from(ZIGZAG[17])][0] = -1;
        coefs[63][0] = 2;
        coefs[usize::from(ZIGZAG[5])][3] = 1;
        let masks = nonzero_masks(&coefs);
        assert_eq!(masks[0], 1 | 1 << 17 | 1 << 63);
        assert_eq!(masks[3], 1 << 5);
        assert_eq!(masks[1], 0);
        for (k, &n) in ZIGZAG.iter().enumerate() {
            assert_eq!(usize::from(ZIGZAG_LANES[k]), 8 * usize::from(n));
            assert_eq!(usize::from(UNZIGZAG[usize::from(n)]), k);
        }
    }

    #[test]
    fn bits_are_stuffed_and_padded() {
        let mut w = BitWriter {
            acc: 0,
            free: 64,
            out: Vec::new(),
        };
        w.put(0xFF, 8);
        w.put(0b101, 3);
        for _ in 0..20 {
            w.put(0xFFFF, 16);
        }
        w.put(0x12, 8);
        let out = w.finish();
        let mut want = vec![0xFF, 0x00];
        // 101 then forty 0xFF bytes shifted by 3, then 0x12, then 5 one bits.
        let mut bits: Vec<bool> = vec![true, false, true];
        bits.extend(std::iter::repeat_n(true, 320));
        bits.extend((0..8).rev().map(|i| (0x12 >> i) & 1 == 1));
        bits.extend(std::iter::repeat_n(true, 5));
        for byte in bits.chunks(8) {
            let b = byte
                .iter()
                .fold(0u8, |acc, &bit| (acc << 1) | u8::from(bit));
            want.push(b);
            if b == 0xFF {
                want.push(0);
            }
        }
        assert_eq!(out, want);
    }
}
