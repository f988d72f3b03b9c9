//! Byte searches for the scanner's hot loops.
//!
//! Most of a long response is model text inside JSON strings, so finding the end of a
//! string (and of an SSE line) is where the instructions go. Testing eight bytes per step
//! with plain 64-bit arithmetic ("SWAR") keeps that well under one wasm instruction per
//! byte per searched character, without SIMD, which Envoy's wasm runtimes may not enable.

/// 0x01 in every byte lane.
const LO: u64 = 0x0101_0101_0101_0101;
/// 0x80 in every byte lane.
const HI: u64 = 0x8080_8080_8080_8080;

/// Sets the high bit of each zero byte lane of `v`. Lanes above the first zero lane may
/// also be flagged (borrows propagate upwards), but the lowest flagged lane is exact,
/// which is all a forward search needs.
#[inline(always)]
fn zero_lanes(v: u64) -> u64 {
    v.wrapping_sub(LO) & !v & HI
}

/// Index of the first byte of `hay` equal to `a` or `b`.
// Inlined so the searched-for bytes fold into constants at each call site.
#[inline(always)]
pub(crate) fn find_either(hay: &[u8], a: u8, b: u8) -> Option<usize> {
    let pa = LO.wrapping_mul(u64::from(a));
    let pb = LO.wrapping_mul(u64::from(b));
    let mut chunks = hay.chunks_exact(8);
    let mut base: usize = 0;
    for chunk in &mut chunks {
        let Ok(lanes) = <[u8; 8]>::try_from(chunk) else {
            break;
        };
        let v = u64::from_le_bytes(lanes);
        let hits = zero_lanes(v ^ pa) | zero_lanes(v ^ pb);
        if hits != 0 {
            // Little-endian: the lowest lane is the earliest byte.
            let lane = usize::try_from(hits.trailing_zeros() / 8).unwrap_or(0);
            return base.checked_add(lane);
        }
        base = base.wrapping_add(8);
    }
    let tail = chunks.remainder();
    let pos = tail.iter().position(|&c| c == a || c == b)?;
    base.checked_add(pos)
}

/// Index of the first string quote or bracket in `hay`: the only bytes that matter while
/// skipping a container whose contents are irrelevant (brackets inside strings must not
/// count, so string starts matter too).
#[inline]
pub(crate) fn find_structural(hay: &[u8]) -> Option<usize> {
    hay.iter()
        .position(|&c| matches!(c, b'"' | b'{' | b'}' | b'[' | b']'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn find_either_matches_naive(hay in proptest::collection::vec(any::<u8>(), 0..64),
                                     a in any::<u8>(), b in any::<u8>()) {
            let naive = hay.iter().position(|&c| c == a || c == b);
            prop_assert_eq!(find_either(&hay, a, b), naive);
        }

        #[test]
        fn find_either_on_sparse_text(hay in "[a-z\\\\\"\u{1}\u{80}-\u{10ffff}]{0,40}") {
            let hay = hay.as_bytes();
            let naive = hay.iter().position(|&c| c == b'"' || c == b'\\');
            prop_assert_eq!(find_either(hay, b'"', b'\\'), naive);
        }
    }
}
