//! Pixel buffers kept for the next image. A 12-megapixel RGB image is 36 MB;
//! the allocator takes buffers that large straight from the kernel and hands
//! them back on free, so each new one costs a page fault per 4 KiB page the
//! first time it is written: on this kind of machine more than the pixel work
//! of a simple method (brightness of a 12 MP image: 27 ms in a new buffer,
//! 3.3 ms in one that was written before). Images a pipeline is done with
//! give their buffer back here, and the decoder and the value maps take one.
//!
//! Bounded: at most [`MAX_KEPT`] buffers and [`MAX_BYTES`] in all are kept,
//! the largest first; buffers under [`MIN_BYTES`] are left to the allocator,
//! which reuses those cheaply itself.
//!
//! A kept buffer keeps the length its last image had. Only a larger image
//! taking it later writes zeros, and only past that length; a buffer of a
//! large image reused for small ones is never filled again (it used to be
//! zeroed to its capacity on every return, which made every small method
//! after an upscale pay for the whole large buffer).

use std::sync::Mutex;

/// Most buffers kept.
pub const MAX_KEPT: usize = 4;
/// Most bytes kept in all.
pub const MAX_BYTES: usize = 192 << 20;
/// Smallest buffer worth keeping.
pub const MIN_BYTES: usize = 1 << 20;

static KEPT: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// A buffer of `len` bytes. A kept one holds an earlier image's bytes: the
/// caller must write every byte (decoders and the value maps do).
pub fn take(len: usize) -> Vec<u8> {
    if len >= MIN_BYTES {
        if let Ok(mut kept) = KEPT.lock() {
            // The smallest that fits, one needing no zeros before others,
            // and of equals the one given back last: it is likeliest still
            // in the cache (`give` keeps equal sizes in the order given).
            let fits = kept
                .iter()
                .enumerate()
                .rev()
                .filter(|(_, b)| b.capacity() >= len)
                .min_by_key(|(_, b)| (b.len() < len, b.capacity()))
                .map(|(i, _)| i);
            if let Some(i) = fits {
                let mut buf = kept.swap_remove(i);
                drop(kept);
                // Zeros only past what the buffer last held.
                buf.resize(len, 0);
                return buf;
            }
        }
    }
    vec![0; len]
}

/// Keeps `buf` for a later [`take`], within the bounds.
pub fn give(buf: Vec<u8>) {
    if buf.capacity() < MIN_BYTES {
        return;
    }
    if let Ok(mut kept) = KEPT.lock() {
        kept.push(buf);
        kept.sort_by_key(|b| std::cmp::Reverse(b.capacity()));
        let mut total = 0;
        let mut n = 0;
        kept.retain(|b| {
            let keep = n < MAX_KEPT && total + b.capacity() <= MAX_BYTES;
            if keep {
                n += 1;
                total += b.capacity();
            }
            keep
        });
    }
}

/// Copies `src` into `dst` (the shorter length of the two) in 64-byte
/// pieces, which compile to vector loads and stores. Not `memcpy`: glibc's
/// takes `rep movsb` for row-sized copies, several times slower on AMD EPYC
/// than plain vector moves (a vertical flip ran at half of OpenCV's rate).
#[inline(always)]
pub fn copy(dst: &mut [u8], src: &[u8]) {
    let mut to = dst.chunks_exact_mut(64);
    let mut from = src.chunks_exact(64);
    for (d, s) in to.by_ref().zip(from.by_ref()) {
        if let (Ok(d), Ok(s)) = (<&mut [u8; 64]>::try_from(d), <&[u8; 64]>::try_from(s)) {
            *d = *s;
        }
    }
    for (d, s) in to.into_remainder().iter_mut().zip(from.remainder()) {
        *d = *s;
    }
}

/// A copy of `src` in a kept buffer (see [`copy`]).
pub fn copy_of(src: &[u8]) -> Vec<u8> {
    let mut buf = take(src.len());
    copy(&mut buf, src);
    buf
}

#[cfg(test)]
mod tests {

    use super::*;

    #[test]
    fn buffers_come_back_bounded_and_the_right_size() {
        let small = take(100);
        assert_eq!(small.len(), 100);
        give(small);
        // Another test's image may take the buffer in between; one reuse
        // in a few tries is the behaviour.
        let reused = (0..8).any(|_| {
            let mut a = take(MIN_BYTES * 3);
            a.fill(7);
            let ptr = a.as_ptr();
            give(a);
            let b = take(MIN_BYTES * 2);
            assert_eq!(b.len(), MIN_BYTES * 2);
            let same = b.as_ptr() == ptr;
            give(b);
            same
        });
        assert!(reused, "a kept buffer is reused");
        // Too many and too large: the bounds hold.
        for _ in 0..MAX_KEPT + 3 {
            give(vec![1; MIN_BYTES]);
        }
        give(vec![1; MAX_BYTES + 1]);
        let kept = KEPT.lock().unwrap();
        assert!(kept.len() <= MAX_KEPT);
        assert!(kept.iter().map(Vec::capacity).sum::<usize>() <= MAX_BYTES);
    }

    #[test]
    fn a_large_buffer_taken_for_a_small_image_is_not_refilled() {
        let mut big = take(MIN_BYTES * 40);
        big.fill(9);
        let ptr = big.as_ptr();
        give(big);
        // Another test may take it in between; one reuse in a few tries.
        let kept_length = (0..8).any(|_| {
            let small = take(MIN_BYTES * 2);
            let same = small.as_ptr() == ptr;
            give(small);
            if !same {
                return false;
            }
            // Back, it keeps the small image's length: nothing was written
            // past it.
            let kept = KEPT.lock().unwrap();
            kept.iter()
                .any(|b| b.as_ptr() == ptr && b.len() == MIN_BYTES * 2)
        });
        assert!(kept_length, "the returned buffer keeps its last length");
    }
}
