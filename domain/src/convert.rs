//! The numeric conversions that cannot be lossless, each named once: the
//! rest of the code converts with `From` and `try_from`.

/// A count as `u32`, saturating: counts of items in one request or task
/// stay far below `u32::MAX`, and a saturated count is still a refusal-sized
/// number rather than a wrapped small one.
pub fn count_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The integer part of `f`, toward zero. Float-to-integer `as` saturates at
/// the bounds and maps NaN to 0, which is what a parameter bound or value
/// (always within ±10⁶ here) needs.
#[expect(
    clippy::cast_possible_truncation,
    reason = "float-to-int `as` is saturating and defined; truncation toward zero is the intent"
)]
pub fn whole_i64(f: f64) -> i64 {
    f as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_saturate() {
        assert_eq!(count_u32(7), 7);
        #[cfg(target_pointer_width = "64")]
        assert_eq!(count_u32(usize::MAX), u32::MAX);
    }

    #[test]
    fn whole_truncates_toward_zero_and_saturates() {
        assert_eq!(whole_i64(3.9), 3);
        assert_eq!(whole_i64(-3.9), -3);
        assert_eq!(whole_i64(f64::NAN), 0);
        assert_eq!(whole_i64(1e300), i64::MAX);
    }
}
