//! Byte searches for the scanner's hot loops.
//!
//! Most of a long response is model text inside JSON strings or event framing, so finding
//! the next interesting byte is where the instructions go. In the wasm build each search
//! tests sixteen bytes per step with a few wasm SIMD (simd128) instructions, enabled on
//! these functions only (`#[target_feature]`, module `simd`); natively, eight per step with
//! plain 64-bit arithmetic ("SWAR"). Both give the same answers: the unit tests below check
//! the SWAR versions against naive searches, and the module's own tests (host-tests, the
//! Envoy harness) run the SIMD ones over every fixture.

#[cfg(target_arch = "wasm32")]
mod simd {
    //! The vector searches. Only these functions use SIMD (`#[target_feature]`), not the
    //! whole crate: with `-C target-feature=+simd128` crate-wide, rustc 1.95 (LLVM 22)
    //! miscompiles the vectorized `identity::constant_time_eq` and the admin key is refused
    //! (see README, Performance).
    use core::arch::wasm32::{
        i8x16_all_true, i8x16_bitmask, i8x16_eq, u8x16_lt, u8x16_splat, v128, v128_and,
        v128_any_true, v128_load, v128_not, v128_or,
    };

    /// The sixteen bytes of `hay` from `at`, if there are that many.
    #[inline]
    #[target_feature(enable = "simd128")]
    pub(super) fn load(hay: &[u8], at: usize) -> Option<v128> {
        let lanes = hay.get(at..at.checked_add(16)?)?;
        // SAFETY: `lanes` is 16 readable bytes; v128.load has no alignment requirement.
        Some(unsafe { v128_load(lanes.as_ptr().cast()) })
    }

    #[inline]
    #[target_feature(enable = "simd128")]
    fn eq(v: v128, byte: u8) -> v128 {
        i8x16_eq(v, u8x16_splat(byte))
    }

    /// Index of the first set lane of a comparison mask, if any.
    #[inline]
    #[target_feature(enable = "simd128")]
    fn first(mask: v128) -> Option<usize> {
        if !v128_any_true(mask) {
            return None;
        }
        usize::try_from(i8x16_bitmask(mask).trailing_zeros()).ok()
    }

    /// See [`super::find_either`].
    #[target_feature(enable = "simd128")]
    pub(super) fn find_either(hay: &[u8], a: u8, b: u8) -> Option<usize> {
        let mut base: usize = 0;
        while let Some(v) = load(hay, base) {
            if let Some(lane) = first(v128_or(eq(v, a), eq(v, b))) {
                return base.checked_add(lane);
            }
            base = base.wrapping_add(16);
        }
        let tail = hay.get(base..)?;
        let pos = tail.iter().position(|&c| c == a || c == b)?;
        base.checked_add(pos)
    }

    /// See [`super::space_run`]: `Ok` with the run's length if a byte that ends it is in
    /// the whole sixteen-byte blocks, else `Err` with where those blocks ran out.
    #[target_feature(enable = "simd128")]
    pub(super) fn space_run(hay: &[u8]) -> Result<usize, usize> {
        let mut base: usize = 0;
        while let Some(v) = load(hay, base) {
            let space = v128_or(
                v128_or(eq(v, b' '), eq(v, b'\n')),
                v128_or(eq(v, b'\r'), eq(v, b'\t')),
            );
            if let Some(lane) = first(v128_not(space)) {
                return Ok(base.wrapping_add(lane));
            }
            base = base.wrapping_add(16);
        }
        Err(base)
    }

    /// Lanes where `v` has a byte below 0x0E and `w` (the next bytes) too, or `v` a `"` or
    /// `\\` and `w` a `u` or `m`.
    #[inline]
    #[target_feature(enable = "simd128")]
    fn event_hits(v: v128, w: v128) -> v128 {
        let below = u8x16_splat(0x0E);
        let control = v128_and(u8x16_lt(v, below), u8x16_lt(w, below));
        let first = v128_or(eq(v, b'"'), eq(v, b'\\'));
        let second = v128_or(eq(w, b'u'), eq(w, b'm'));
        v128_or(control, v128_and(first, second))
    }

    /// The first block from `base` with an event hit, 64 bytes at a time (the pairs need one
    /// more byte) then 16: its start, length and hit mask; or where whole blocks ran out.
    #[target_feature(enable = "simd128")]
    pub(super) fn event_block(hay: &[u8], mut base: usize) -> Result<(usize, usize, u64), usize> {
        let ptr = hay.as_ptr();
        // The loop that runs over every byte of a stream.
        while base.checked_add(65).is_some_and(|end| end <= hay.len()) {
            // SAFETY: `base + 65 <= hay.len()`, so every load reads within `hay`;
            // v128.load has no alignment requirement.
            let (h0, h1, h2, h3) = unsafe {
                let at = ptr.add(base);
                (
                    event_hits(v128_load(at.cast()), v128_load(at.add(1).cast())),
                    event_hits(v128_load(at.add(16).cast()), v128_load(at.add(17).cast())),
                    event_hits(v128_load(at.add(32).cast()), v128_load(at.add(33).cast())),
                    event_hits(v128_load(at.add(48).cast()), v128_load(at.add(49).cast())),
                )
            };
            if v128_any_true(v128_or(v128_or(h0, h1), v128_or(h2, h3))) {
                let bits = |h: v128| u64::from(i8x16_bitmask(h));
                let mask = bits(h0) | bits(h1) << 16 | bits(h2) << 32 | bits(h3) << 48;
                return Ok((base, 64, mask));
            }
            base = base.wrapping_add(64);
        }
        // Near the end, sixteen bytes while seventeen are left.
        if let (Some(v), Some(w)) = (load(hay, base), load(hay, base.wrapping_add(1))) {
            return Ok((base, 16, u64::from(i8x16_bitmask(event_hits(v, w)))));
        }
        Err(base)
    }

    /// Lanes of `low` (bits 0-15) and `high` (bits 16-31) equal to `byte`.
    #[inline]
    #[target_feature(enable = "simd128")]
    pub(super) fn lanes_of(low: v128, high: v128, byte: u8) -> u32 {
        u32::from(i8x16_bitmask(eq(low, byte))) | u32::from(i8x16_bitmask(eq(high, byte))) << 16
    }

    /// See [`super::contains`]; `None` when `hay` is too short for one step.
    #[target_feature(enable = "simd128")]
    pub(super) fn contains(hay: &[u8], needle: &[u8], rare_at: usize) -> Option<bool> {
        let (&first, &rare) = (needle.first()?, needle.get(rare_at)?);
        // The sixteen positions from `base`: whether the needle is at one of them.
        let step = |base: usize| match (load(hay, base), load(hay, base.wrapping_add(rare_at))) {
            (Some(v), Some(w)) => {
                let mut lanes = i8x16_bitmask(v128_and(eq(v, first), eq(w, rare)));
                while lanes != 0 {
                    let at = base.wrapping_add(lanes.trailing_zeros() as usize);
                    if super::is_at(hay, at, needle) {
                        return Some(true);
                    }
                    lanes &= lanes.wrapping_sub(1);
                }
                Some(false)
            }
            _ => None,
        };
        // The last step ends where the needle's last possible start is covered.
        let last = hay.len().checked_sub(rare_at.checked_add(16)?)?;
        let mut base: usize = 0;
        while base < last {
            if step(base)? {
                return Some(true);
            }
            base = base.wrapping_add(16);
        }
        // The last sixteen positions, overlapping what was searched.
        step(last)
    }

    /// Lanes of the (up to) sixteen bytes `block` starts with equal to `a` or `b`; bytes
    /// past its end read as zero.
    #[inline]
    #[target_feature(enable = "simd128")]
    pub(super) fn either_lanes(block: &[u8], a: u8, b: u8) -> u32 {
        let v = match load(block, 0) {
            Some(v) => v,
            None => {
                // A short last block, copied into zeros (one `memory.copy`).
                let mut padded = [0u8; 16];
                let len = block.len().min(16);
                if let (Some(dst), Some(src)) = (padded.get_mut(..len), block.get(..len)) {
                    dst.copy_from_slice(src);
                }
                // SAFETY: 16 readable bytes; v128.load has no alignment requirement.
                unsafe { v128_load(padded.as_ptr().cast()) }
            }
        };
        u32::from(i8x16_bitmask(v128_or(eq(v, a), eq(v, b))))
    }

    /// The two halves of 32 bytes.
    #[inline]
    #[target_feature(enable = "simd128")]
    pub(super) fn load_block(block: &[u8; 32]) -> (v128, v128) {
        let ptr = block.as_ptr();
        // SAFETY: `block` is 32 readable bytes; v128.load has no alignment requirement.
        unsafe { (v128_load(ptr.cast()), v128_load(ptr.add(16).cast())) }
    }

    /// `{` and `[` lanes, then `}` and `]` lanes, of a block's halves.
    #[inline]
    #[target_feature(enable = "simd128")]
    pub(super) fn brackets(low: v128, high: v128) -> (u32, u32) {
        // `[` and `]` are `{` and `}` without bit 5.
        let fold = u8x16_splat(0x20);
        let (low, high) = (v128_or(low, fold), v128_or(high, fold));
        (lanes_of(low, high, b'{'), lanes_of(low, high, b'}'))
    }

    /// Whether `a` and `b` (the same length, at least 16) are the same bytes.
    #[target_feature(enable = "simd128")]
    pub(super) fn same_bytes(a: &[u8], b: &[u8]) -> bool {
        let len = a.len();
        let same = |at: usize| match (load(a, at), load(b, at)) {
            (Some(x), Some(y)) => i8x16_all_true(i8x16_eq(x, y)),
            _ => false,
        };
        let mut at: usize = 0;
        while at.checked_add(16).is_some_and(|end| end < len) {
            if !same(at) {
                return false;
            }
            at = at.wrapping_add(16);
        }
        // The last sixteen bytes, overlapping what was compared.
        same(len.wrapping_sub(16))
    }
}

/// 0x01 in every byte lane.
#[cfg(not(target_arch = "wasm32"))]
const LO: u64 = 0x0101_0101_0101_0101;
/// 0x80 in every byte lane.
#[cfg(not(target_arch = "wasm32"))]
const HI: u64 = 0x8080_8080_8080_8080;

/// Sets the high bit of each zero byte lane of `v`. Lanes above the first zero lane may
/// also be flagged (borrows propagate upwards), but the lowest flagged lane is exact,
/// which is all a forward search needs.
#[cfg(not(target_arch = "wasm32"))]
#[inline(always)]
fn zero_lanes(v: u64) -> u64 {
    v.wrapping_sub(LO) & !v & HI
}

/// Index of the first byte of `hay` equal to `a` or `b`.
// Inlined so the searched-for bytes fold into constants at each call site.
#[inline(always)]
pub(crate) fn find_either(hay: &[u8], a: u8, b: u8) -> Option<usize> {
    #[cfg(target_arch = "wasm32")]
    return simd::find_either(hay, a, b);
    #[cfg(not(target_arch = "wasm32"))]
    find_either_swar(hay, a, b)
}

#[cfg(not(target_arch = "wasm32"))]
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
        #[cfg(target_arch = "wasm32")]
        {
            match simd::event_block(self.hay, base) {
                Ok((base, len, mask)) => {
                    self.base = base;
                    self.mask = mask;
                    self.next = base.wrapping_add(len);
                    true
                }
                Err(base) => {
                    let Some(rest) = self.hay.get(base..).filter(|rest| !rest.is_empty()) else {
                        return false;
                    };
                    self.base = base;
                    self.tail(rest)
                }
            }
        }
        #[cfg(not(target_arch = "wasm32"))]
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
            let simd = cfg!(target_arch = "wasm32");
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
    #[cfg(target_arch = "wasm32")]
    if len >= 16 {
        return simd::same_bytes(a, b);
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

/// Whether `needle` occurs in `hay`. The search tests sixteen positions per step for the
/// needle's first byte and its byte at `rare_at` (pick one that is rare in the haystack),
/// and compares the whole needle only where both are.
pub(crate) fn contains(hay: &[u8], needle: &[u8], rare_at: usize) -> bool {
    #[cfg(target_arch = "wasm32")]
    if let Some(found) = simd::contains(hay, needle, rare_at) {
        return found;
    }
    #[cfg(not(target_arch = "wasm32"))]
    let _ = rare_at;
    let first = needle.first().copied();
    (0..hay.len()).any(|at| hay.get(at).copied() == first && is_at(hay, at, needle))
}

/// Whether `needle` is in `hay` at `at`.
#[inline]
fn is_at(hay: &[u8], at: usize, needle: &[u8]) -> bool {
    at.checked_add(needle.len())
        .and_then(|end| hay.get(at..end))
        .is_some_and(|found| found == needle)
}

/// Where `a` or `b` (neither of them 0) are in `hay`, in order: sixteen bytes are tested per
/// step, and only the bytes found are visited. For short texts searched for several bytes
/// (a path's `/`s), where a byte loop costs about twenty instructions a byte in wasm.
pub(crate) fn positions(hay: &[u8], a: u8, b: u8) -> Positions<'_> {
    Positions {
        hay,
        a,
        b,
        base: 0,
        next_block: 0,
        lanes: 0,
    }
}

/// See [`positions`].
pub(crate) struct Positions<'a> {
    hay: &'a [u8],
    a: u8,
    b: u8,
    /// Where the block of `lanes` starts.
    base: usize,
    next_block: usize,
    /// The bytes of the current block not yet visited.
    lanes: u32,
}

impl Iterator for Positions<'_> {
    type Item = usize;

    #[inline]
    fn next(&mut self) -> Option<usize> {
        while self.lanes == 0 {
            let block = self
                .hay
                .get(self.next_block..)
                .filter(|rest| !rest.is_empty())?;
            self.base = self.next_block;
            self.next_block = self.next_block.saturating_add(16);
            #[cfg(target_arch = "wasm32")]
            {
                self.lanes = simd::either_lanes(block, self.a, self.b);
            }
            #[cfg(not(target_arch = "wasm32"))]
            {
                self.lanes = block
                    .iter()
                    .take(16)
                    .enumerate()
                    .filter(|(_, &c)| c == self.a || c == self.b)
                    .fold(0, |lanes, (i, _)| lanes | 1u32 << i);
            }
        }
        let lane = usize::try_from(self.lanes.trailing_zeros()).ok()?;
        self.lanes &= self.lanes.wrapping_sub(1);
        self.base.checked_add(lane)
    }
}

/// Up to 32 bytes loaded once, for the masks of the bytes that matter when crossing a
/// skipped value: bit `i` of each mask stands for byte `i`, and bytes past the end of a
/// short block match nothing. Each mask is computed only when asked for.
pub(crate) struct Block {
    #[cfg(target_arch = "wasm32")]
    halves: (core::arch::wasm32::v128, core::arch::wasm32::v128),
    #[cfg(not(target_arch = "wasm32"))]
    bytes: [u8; 32],
}

impl Block {
    /// The first 32 bytes of `hay` (all of it when shorter).
    #[inline]
    pub(crate) fn load(hay: &[u8]) -> Self {
        #[cfg(target_arch = "wasm32")]
        {
            if let Some(block) = hay.first_chunk::<32>() {
                return Self {
                    halves: simd::load_block(block),
                };
            }
        }
        let mut bytes = [0u8; 32];
        let len = hay.len().min(32);
        if let (Some(dst), Some(src)) = (bytes.get_mut(..len), hay.get(..len)) {
            dst.copy_from_slice(src);
        }
        #[cfg(target_arch = "wasm32")]
        return Self {
            halves: simd::load_block(&bytes),
        };
        #[cfg(not(target_arch = "wasm32"))]
        Self { bytes }
    }

    #[cfg(not(target_arch = "wasm32"))]
    fn lanes(&self, matches: impl Fn(u8) -> bool) -> u32 {
        let mut mask = 0u32;
        for (i, &byte) in self.bytes.iter().enumerate() {
            if matches(byte) {
                mask |= 1u32.wrapping_shl(u32::try_from(i).unwrap_or(u32::MAX));
            }
        }
        mask
    }

    /// `"` bytes.
    #[inline]
    pub(crate) fn quotes(&self) -> u32 {
        #[cfg(target_arch = "wasm32")]
        return simd::lanes_of(self.halves.0, self.halves.1, b'"');
        #[cfg(not(target_arch = "wasm32"))]
        self.lanes(|b| b == b'"')
    }

    /// `\\` bytes.
    #[inline]
    pub(crate) fn backslashes(&self) -> u32 {
        #[cfg(target_arch = "wasm32")]
        return simd::lanes_of(self.halves.0, self.halves.1, b'\\');
        #[cfg(not(target_arch = "wasm32"))]
        self.lanes(|b| b == b'\\')
    }

    /// `{` and `[` bytes, then `}` and `]` bytes.
    #[inline]
    pub(crate) fn brackets(&self) -> (u32, u32) {
        #[cfg(target_arch = "wasm32")]
        return simd::brackets(self.halves.0, self.halves.1);
        #[cfg(not(target_arch = "wasm32"))]
        (
            self.lanes(|b| b == b'{' || b == b'['),
            self.lanes(|b| b == b'}' || b == b']'),
        )
    }
}

/// Whether `b` is JSON whitespace (space, tab, LF, CR).
#[inline(always)]
pub(crate) fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// How many bytes `hay` starts with that are JSON whitespace (space, tab, CR, LF).
/// Pretty-printed bodies put a run of them before almost every token.
#[inline]
pub(crate) fn space_run(hay: &[u8]) -> usize {
    #[cfg(not(target_arch = "wasm32"))]
    let base: usize = 0;
    #[cfg(target_arch = "wasm32")]
    let base = match simd::space_run(hay) {
        Ok(run) => return run,
        Err(base) => base,
    };
    let tail = hay.get(base..).unwrap_or_default();
    let run = tail
        .iter()
        .position(|&c| !is_space(c))
        .unwrap_or(tail.len());
    base.saturating_add(run)
}

#[cfg(test)]
mod tests {
    #[test]
    fn positions_are_every_match_in_order() {
        for len in 0..70usize {
            let hay: Vec<u8> = (0..len).map(|i| b"a/b?c//"[i % 7]).collect();
            let want: Vec<usize> = (0..len)
                .filter(|&i| matches!(hay[i], b'/' | b'?'))
                .collect();
            assert_eq!(
                super::positions(&hay, b'/', b'?').collect::<Vec<_>>(),
                want,
                "{len}"
            );
        }
    }

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
        fn space_run_matches_naive(hay in "[ \t\n\rx\u{0b}\u{0c}]{0,60}") {
            let hay = hay.as_bytes();
            let naive = hay.iter().take_while(|&&c| matches!(c, b' ' | b'\t' | b'\n' | b'\r')).count();
            prop_assert_eq!(space_run(hay), naive);
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
