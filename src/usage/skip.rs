//! Crossing a skipped value (a string, or a container with everything in it). Blocks of 32
//! bytes are tested a few vector instructions at a time for the only bytes that matter
//! there (quotes, backslashes, brackets: [`skip_hits`]), and only those bytes are looked
//! at, one by one from the block's bit mask. Model text, message arrays and the other
//! members nobody reads cost about one instruction per byte plus a few per quote, escape or
//! bracket, instead of a new search for every string and escape.
//!
//! The state carried from one chunk to the next is three small fields, so a value may be
//! split anywhere. A backslash escapes the byte after it wherever it is; outside a string
//! that is not JSON, and only decides what such a body costs, the same in any chunking.

use super::bytes::skip_hits;

/// Where the crossing of a skipped value stands after the bytes seen so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Crossing {
    /// Brackets opened and not yet closed; 0 while crossing a string that is the value.
    depth: u32,
    /// The bytes seen so far end inside a string.
    in_string: bool,
    /// The bytes seen so far end in a backslash that escapes the next byte.
    escaped: bool,
}

/// Bytes tested per block ([`skip_hits`]).
const BLOCK: usize = 32;

impl Crossing {
    /// A skipped string, after its opening quote.
    pub(crate) fn string() -> Self {
        Self {
            depth: 0,
            in_string: true,
            escaped: false,
        }
    }

    /// A skipped array or object, after its opening bracket.
    pub(crate) fn container() -> Self {
        Self {
            depth: 1,
            in_string: false,
            escaped: false,
        }
    }

    /// Crosses as much of the value as `hay` holds: `Some(n)` when the value ends with the
    /// `n`th byte, `None` when `hay` ran out first (the crossing then goes on with the next
    /// chunk).
    // Lets the vector test (bytes.rs) inline here.
    #[cfg_attr(target_arch = "wasm32", target_feature(enable = "simd128"))]
    pub(crate) fn cross(&mut self, hay: &[u8]) -> Option<usize> {
        // Locals while crossing, the fields again at the end of the chunk.
        let Self {
            mut depth,
            mut in_string,
            mut escaped,
        } = *self;
        let mut base: usize = 0;
        while let Some(block) = hay.get(base..).filter(|rest| !rest.is_empty()) {
            let len = block.len().min(BLOCK);
            let mut hits = skip_hits(block);
            if escaped {
                // The block's first byte is escaped by the block before: it counts as text.
                hits &= !1;
                escaped = false;
            }
            while hits != 0 {
                let at = hits.trailing_zeros();
                hits &= hits.wrapping_sub(1);
                let index = usize::try_from(at).unwrap_or(0);
                match block.get(index).copied().unwrap_or(0) {
                    b'\\' => {
                        // The next byte is text, whatever it is (next block if this one ends).
                        let next = at.wrapping_add(1);
                        if usize::try_from(next).unwrap_or(usize::MAX) >= len {
                            escaped = true;
                        } else {
                            hits &= !1u32.wrapping_shl(next);
                        }
                    }
                    b'"' if in_string => {
                        in_string = false;
                        if depth == 0 {
                            return Some(end_after(base, index));
                        }
                    }
                    b'"' => in_string = true,
                    _ if in_string => {}
                    b'{' | b'[' => depth = depth.saturating_add(1),
                    _ => {
                        depth = depth.saturating_sub(1);
                        if depth == 0 {
                            return Some(end_after(base, index));
                        }
                    }
                }
            }
            base = base.saturating_add(len);
        }
        *self = Self {
            depth,
            in_string,
            escaped,
        };
        None
    }
}

/// How many bytes were crossed when the value ended at `index` of the block at `base`.
#[inline(always)]
fn end_after(base: usize, index: usize) -> usize {
    base.saturating_add(index).saturating_add(1)
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects, reason = "test arithmetic")]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The same walk one byte at a time.
    fn naive(start: Crossing, hay: &[u8]) -> (Crossing, Option<usize>) {
        let mut c = start;
        for (i, &b) in hay.iter().enumerate() {
            if c.escaped {
                c.escaped = false;
                continue;
            }
            match b {
                b'\\' => c.escaped = true,
                b'"' if c.in_string => {
                    c.in_string = false;
                    if c.depth == 0 {
                        return (c, Some(i + 1));
                    }
                }
                b'"' => c.in_string = true,
                b'{' | b'[' if !c.in_string => c.depth = c.depth.saturating_add(1),
                b'}' | b']' if !c.in_string => {
                    c.depth = c.depth.saturating_sub(1);
                    if c.depth == 0 {
                        return (c, Some(i + 1));
                    }
                }
                _ => {}
            }
        }
        (c, None)
    }

    fn noise() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(prop::sample::select(b"\"\\{}[]ab :,".to_vec()), 0..300)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        #[test]
        fn blocks_agree_with_a_byte_walk(hay in noise(), string in any::<bool>()) {
            let start = if string { Crossing::string() } else { Crossing::container() };
            let (naive_state, naive_end) = naive(start, &hay);
            let mut fast = start;
            let end = fast.cross(&hay);
            prop_assert_eq!(end, naive_end);
            if end.is_none() {
                prop_assert_eq!(fast, naive_state);
            }
        }

        #[test]
        fn any_split_gives_the_same_end(hay in noise(), cut in any::<prop::sample::Index>()) {
            let cut = cut.index(hay.len() + 1);
            let (head, tail) = hay.split_at(cut);
            let whole = Crossing::container().cross(&hay);
            let mut split = Crossing::container();
            let end = match split.cross(head) {
                Some(n) => Some(n),
                None => split.cross(tail).map(|n| n + cut),
            };
            prop_assert_eq!(end, whole);
        }
    }

    #[test]
    fn strings_and_escapes_hide_brackets() {
        let body = br#"{"a":"}]\"{[\\","b":[1,"x\"y"]}, "after"#;
        assert_eq!(Crossing::container().cross(&body[1..]), Some(30));
        let string = br#"a \\\" b \\" rest"#;
        assert_eq!(Crossing::string().cross(string), Some(12));
    }
}
