//! Byte searches for the scanner's hot loops.
//!
//! Most of a long response is model text inside JSON strings or event framing, so finding
//! the next interesting byte is where the instructions go. Built with wasm SIMD
//! (`target-feature=+simd128`, set for wasm32 in `.cargo/config.toml`) each search tests
//! sixteen bytes per step with a few vector instructions; otherwise (native tests, a build
//! without the feature) eight per step with plain 64-bit arithmetic ("SWAR"). Both give
//! the same answers; the SWAR versions are what the unit tests below check against naive
//! searches, and the module's own tests (host-tests) run the SIMD ones.

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod simd {
    use core::arch::wasm32::{
        i8x16_bitmask, i8x16_eq, u8x16_splat, v128, v128_and, v128_any_true, v128_load, v128_or,
    };

    /// The sixteen bytes of `hay` from `at`, if there are that many.
    #[inline(always)]
    pub(super) fn load(hay: &[u8], at: usize) -> Option<v128> {
        let lanes = hay.get(at..at.checked_add(16)?)?;
        // SAFETY: `lanes` is 16 readable bytes; v128.load has no alignment requirement.
        Some(unsafe { v128_load(lanes.as_ptr().cast()) })
    }

    #[inline(always)]
    pub(super) fn eq(v: v128, byte: u8) -> v128 {
        i8x16_eq(v, u8x16_splat(byte))
    }

    /// Index of the first set lane of a comparison mask, if any.
    #[inline(always)]
    pub(super) fn first(mask: v128) -> Option<usize> {
        if !v128_any_true(mask) {
            return None;
        }
        usize::try_from(i8x16_bitmask(mask).trailing_zeros()).ok()
    }

    #[inline(always)]
    pub(super) fn or(a: v128, b: v128) -> v128 {
        v128_or(a, b)
    }

    #[inline(always)]
    pub(super) fn and(a: v128, b: v128) -> v128 {
        v128_and(a, b)
    }
}

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
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    {
        let mut base: usize = 0;
        while let Some(v) = simd::load(hay, base) {
            if let Some(lane) = simd::first(simd::or(simd::eq(v, a), simd::eq(v, b))) {
                return base.checked_add(lane);
            }
            base = base.wrapping_add(16);
        }
        let tail = hay.get(base..)?;
        let pos = tail.iter().position(|&c| c == a || c == b)?;
        base.checked_add(pos)
    }
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    find_either_swar(hay, a, b)
}

#[cfg_attr(
    all(target_arch = "wasm32", target_feature = "simd128"),
    expect(dead_code, reason = "the SIMD build uses the vector search")
)]
#[inline(always)]
fn find_either_swar(hay: &[u8], a: u8, b: u8) -> Option<usize> {
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

/// Every position in `hay` where two bytes below 0x0E meet (a blank line is two line ends
/// in a row; the caller tells which pairs are) or a `"` or `\` is followed by `u` or `m`,
/// in order. Blocks are tested a few vector instructions at a time and their hits taken
/// from a bit mask, so a hit costs a few instructions rather than a new search.
pub(crate) struct EventHits<'a> {
    hay: &'a [u8],
    /// Start of the block whose hits are in `mask`.
    base: usize,
    /// Start of the next block to test.
    next: usize,
    /// Bit `i`: byte `base + i` is a candidate (exact in the SIMD build; checked in `next`).
    mask: u64,
}

impl<'a> EventHits<'a> {
    pub(crate) fn new(hay: &'a [u8]) -> Self {
        Self {
            hay,
            base: 0,
            next: 0,
            mask: 0,
        }
    }

    /// Tests the next block; `false` when the bytes have run out.
    #[inline(always)]
    fn refill(&mut self) -> bool {
        let base = self.next;
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        {
            use core::arch::wasm32::{
                i8x16_bitmask, u8x16_lt, u8x16_splat, v128, v128_any_true, v128_load,
            };
            let hits = |v: v128, w: v128| {
                let below = u8x16_splat(0x0E);
                let control = simd::and(u8x16_lt(v, below), u8x16_lt(w, below));
                let first = simd::or(simd::eq(v, b'"'), simd::eq(v, b'\\'));
                let second = simd::or(simd::eq(w, b'u'), simd::eq(w, b'm'));
                simd::or(control, simd::and(first, second))
            };
            // 64 bytes per block (the pairs need one more byte); blocks without a hit are
            // passed in this loop, which is the one that runs over every byte.
            let mut base = base;
            let ptr = self.hay.as_ptr();
            while base
                .checked_add(65)
                .is_some_and(|end| end <= self.hay.len())
            {
                // SAFETY: `base + 65 <= hay.len()`, so every load below reads within `hay`;
                // v128.load has no alignment requirement.
                let block = |k: usize| unsafe {
                    let at = ptr.add(base).add(k);
                    hits(v128_load(at.cast()), v128_load(at.add(1).cast()))
                };
                let (h0, h1, h2, h3) = (block(0), block(16), block(32), block(48));
                if v128_any_true(simd::or(simd::or(h0, h1), simd::or(h2, h3))) {
                    let bits = |h: v128, shift: u32| u64::from(i8x16_bitmask(h)) << shift;
                    self.base = base;
                    self.mask = bits(h0, 0) | bits(h1, 16) | bits(h2, 32) | bits(h3, 48);
                    self.next = base.wrapping_add(64);
                    return true;
                }
                base = base.wrapping_add(64);
            }
            // Near the end, sixteen bytes at a time while seventeen are left.
            if let (Some(v), Some(w)) = (
                simd::load(self.hay, base),
                simd::load(self.hay, base.wrapping_add(1)),
            ) {
                self.base = base;
                self.mask = u64::from(i8x16_bitmask(hits(v, w)));
                self.next = base.wrapping_add(16);
                return true;
            }
            let Some(rest) = self.hay.get(base..).filter(|rest| !rest.is_empty()) else {
                return false;
            };
            self.base = base;
            self.tail(rest)
        }
        #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
        {
            let Some(rest) = self.hay.get(base..).filter(|rest| !rest.is_empty()) else {
                return false;
            };
            self.base = base;
            let Some(window) = rest.get(..9) else {
                return self.tail(rest);
            };
            let (Some(v), Some(w)) = (load8(window.get(..8)), load8(window.get(1..))) else {
                return false;
            };
            let quote = LO.wrapping_mul(u64::from(b'"'));
            let slash = LO.wrapping_mul(u64::from(b'\\'));
            let u = LO.wrapping_mul(u64::from(b'u'));
            let m = LO.wrapping_mul(u64::from(b'm'));
            let below = LO.wrapping_mul(0x0E);
            let control = (v.wrapping_sub(below) & !v) & (w.wrapping_sub(below) & !w) & HI;
            let first = zero_lanes(v ^ quote) | zero_lanes(v ^ slash);
            let second = zero_lanes(w ^ u) | zero_lanes(w ^ m);
            let lanes = control | (first & second);
            // One bit per lane: the high bit of lane i to bit i.
            self.mask = ((lanes >> 7) & LO).wrapping_mul(0x0102_0408_1020_4080) >> 56;
            self.next = base.wrapping_add(8);
            true
        }
    }

    /// The last few bytes (`rest`, from `base`), one at a time.
    fn tail(&mut self, rest: &[u8]) -> bool {
        let mut mask = 0u64;
        for (i, &byte) in rest.iter().enumerate().take(64) {
            let pair = [byte, rest.get(i.wrapping_add(1)).copied().unwrap_or(0xFF)];
            mask |= u64::from(is_event_hit(&pair)) << i;
        }
        self.mask = mask;
        self.next = self.base.saturating_add(rest.len().min(64));
        true
    }
}

impl Iterator for EventHits<'_> {
    type Item = usize;

    #[inline(always)]
    fn next(&mut self) -> Option<usize> {
        loop {
            while self.mask == 0 {
                if !self.refill() {
                    return None;
                }
            }
            let bit = self.mask.trailing_zeros();
            self.mask &= self.mask.wrapping_sub(1);
            let pos = self.base.wrapping_add(usize::try_from(bit).unwrap_or(0));
            // SIMD masks are exact; SWAR may flag lanes above a true hit, so those are checked.
            let simd = cfg!(all(target_arch = "wasm32", target_feature = "simd128"));
            if simd
                || self
                    .hay
                    .get(pos..)
                    .and_then(|p| p.get(..2))
                    .is_some_and(is_event_hit)
            {
                return Some(pos);
            }
        }
    }
}

#[inline(always)]
fn is_event_hit(pair: &[u8]) -> bool {
    matches!(pair, [0..=0x0D, 0..=0x0D] | [b'"' | b'\\', b'u' | b'm'])
}

#[inline(always)]
fn load8(bytes: Option<&[u8]>) -> Option<u64> {
    let lanes = <[u8; 8]>::try_from(bytes?).ok()?;
    Some(u64::from_le_bytes(lanes))
}

/// Whether `a` and `b` are the same bytes, compared a word (or vector) at a time: a
/// short `memcmp` is a byte loop in wasm.
#[inline]
pub(crate) fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let len = a.len();
    if len != b.len() {
        return false;
    }
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    if len >= 16 {
        use core::arch::wasm32::{i8x16_all_true, i8x16_eq};
        let same = |at: usize| {
            let (Some(x), Some(y)) = (simd::load(a, at), simd::load(b, at)) else {
                return false;
            };
            i8x16_all_true(i8x16_eq(x, y))
        };
        let mut at: usize = 0;
        while at.checked_add(16).is_some_and(|end| end < len) {
            if !same(at) {
                return false;
            }
            at = at.wrapping_add(16);
        }
        // The last sixteen bytes, overlapping what was compared.
        return same(len.wrapping_sub(16));
    }
    if len >= 8 {
        let mut at: usize = 0;
        while at.checked_add(8).is_some_and(|end| end < len) {
            if load8(a.get(at..at.wrapping_add(8))) != load8(b.get(at..at.wrapping_add(8))) {
                return false;
            }
            at = at.wrapping_add(8);
        }
        let last = len.wrapping_sub(8);
        return load8(a.get(last..)) == load8(b.get(last..));
    }
    a.iter().zip(b).all(|(x, y)| x == y)
}

/// Index of the first string quote or bracket in `hay`: the only bytes that matter while
/// skipping a container whose contents are irrelevant (brackets inside strings must not
/// count, so string starts matter too).
#[inline]
pub(crate) fn find_structural(hay: &[u8]) -> Option<usize> {
    let is_structural = |c: &u8| matches!(c, b'"' | b'{' | b'}' | b'[' | b']');
    let mut base: usize = 0;
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    {
        use core::arch::wasm32::{u8x16_splat, v128_or};
        while let Some(v) = simd::load(hay, base) {
            // `[` and `]` are `{` and `}` without bit 5.
            let folded = v128_or(v, u8x16_splat(0x20));
            let hits = simd::or(
                simd::eq(v, b'"'),
                simd::or(simd::eq(folded, b'{'), simd::eq(folded, b'}')),
            );
            if let Some(lane) = simd::first(hits) {
                return base.checked_add(lane);
            }
            base = base.wrapping_add(16);
        }
    }
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    {
        let quote = LO.wrapping_mul(u64::from(b'"'));
        let open = LO.wrapping_mul(u64::from(b'{'));
        let close = LO.wrapping_mul(u64::from(b'}'));
        let bit5 = LO.wrapping_mul(0x20);
        while let Some(v) = load8(base.checked_add(8).and_then(|end| hay.get(base..end))) {
            let folded = v | bit5;
            if zero_lanes(v ^ quote) | zero_lanes(folded ^ open) | zero_lanes(folded ^ close) != 0 {
                break;
            }
            base = base.wrapping_add(8);
        }
    }
    let tail = hay.get(base..)?;
    let pos = tail.iter().position(is_structural)?;
    base.checked_add(pos)
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
        fn event_hits_are_every_position(hay in "[\"\\\\umx \n\r\t\u{0}]{0,200}") {
            let hay = hay.as_bytes();
            let naive: Vec<usize> = (0..hay.len())
                .filter(|&i| matches!(
                    &hay[i..],
                    [0..=0x0D, 0..=0x0D, ..] | [b'"' | b'\\', b'u' | b'm', ..]
                ))
                .collect();
            prop_assert_eq!(EventHits::new(hay).collect::<Vec<_>>(), naive);
        }

        #[test]
        fn find_structural_matches_naive(
            hay in proptest::collection::vec(prop::sample::select(b"\"{}[];: a[]{}\x02\x5b\x7b".to_vec()), 0..60),
        ) {
            let naive = hay.iter().position(|&c| matches!(c, b'"' | b'{' | b'}' | b'[' | b']'));
            prop_assert_eq!(find_structural(&hay), naive);
        }

        #[test]
        fn same_bytes_is_equality(a in proptest::collection::vec(0..3u8, 0..40),
                                  b in proptest::collection::vec(0..3u8, 0..40)) {
            prop_assert_eq!(same_bytes(&a, &b), a == b);
        }

        #[test]
        fn find_either_on_sparse_text(hay in "[a-z\\\\\"\u{1}\u{80}-\u{10ffff}]{0,40}") {
            let hay = hay.as_bytes();
            let naive = hay.iter().position(|&c| c == b'"' || c == b'\\');
            prop_assert_eq!(find_either(hay, b'"', b'\\'), naive);
        }
    }
}
