//! Crossing a skipped value (a string, or a container with everything in it). Blocks of 32
//! bytes are tested a few vector instructions at a time for the only bytes that matter
//! there (quotes, backslashes, brackets: [`Block`]), and the block is then read on its
//! bit masks as a whole, as simdjson does: which bytes are escaped (runs of backslashes),
//! which are inside strings (a prefix XOR of the unescaped quotes), and so which brackets
//! count. Only those brackets are looked at one by one, and only in a block where the
//! container may end. Model text with its escapes, message arrays and the other members
//! nobody reads cost a few dozen instructions per block instead of a dozen per quote,
//! escape or bracket.
//!
//! The state carried from one chunk to the next is three small fields, so a value may be
//! split anywhere. A backslash escapes the byte after it wherever it is; outside a string
//! that is not JSON, and only decides what such a body costs, the same in any chunking.

use super::bytes::{find_either, Block};

/// Where the crossing of a skipped value stands after the bytes seen so far.
///
/// Made by [`Crossing::string`] or [`Crossing::container`] (the default is a container
/// too): `depth` is 0 exactly while crossing a string that is the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Crossing {
    /// Brackets opened and not yet closed; 0 while crossing a string that is the value.
    depth: u32,
    /// The bytes seen so far end inside a string.
    in_string: bool,
    /// The bytes seen so far end in a backslash that escapes the next byte.
    escaped: bool,
}

impl Default for Crossing {
    fn default() -> Self {
        Self::container()
    }
}

/// Bytes tested per block ([`Block`]).
const BLOCK: usize = 32;

/// Chunks at least this long are crossed searching ahead through long string text.
const SEARCHED_CHUNK: usize = 4096;

/// Below this depth a block (at most 32 brackets) cannot saturate the depth counter, so its
/// brackets may be counted instead of stepped through.
const COUNTED_DEPTH_MAX: u32 = u32::MAX - 64;

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
    #[inline]
    pub(crate) fn cross(&mut self, hay: &[u8]) -> Option<usize> {
        if hay.len() >= SEARCHED_CHUNK {
            self.cross_blocks::<true>(hay)
        } else {
            self.cross_blocks::<false>(hay)
        }
    }

    /// [`Crossing::cross`], searching ahead through long string text when `SEARCH_TEXT`
    /// (see [`past_text`]). Small chunks (the typical request and response) are crossed
    /// block by block alone: watching for long text costs a few instructions per block,
    /// which only pays where text runs for kilobytes.
    // Lets the vector test (bytes.rs) inline here.
    #[cfg_attr(target_arch = "wasm32", target_feature(enable = "simd128"))]
    fn cross_blocks<const SEARCH_TEXT: bool>(&mut self, hay: &[u8]) -> Option<usize> {
        // Locals while crossing, the fields again at the end of the chunk.
        let Self {
            mut depth,
            mut in_string,
            mut escaped,
        } = *self;
        let mut base: usize = 0;
        // The block before was string text without a quote or a backslash.
        let mut plain_before = false;
        while let Some(rest) = hay.get(base..).filter(|rest| !rest.is_empty()) {
            let len = rest.len().min(BLOCK);
            let block = Block::load(rest);
            let backslashes = block.backslashes();
            // Bit i: byte i is escaped; bit `len`: so is the next block's first byte.
            let escapes = if backslashes == 0 {
                u64::from(escaped)
            } else {
                escaped_bytes(backslashes, escaped)
            };
            let len_bits = u32::try_from(len).unwrap_or(u32::MAX);
            escaped = escapes.checked_shr(len_bits).unwrap_or(0) & 1 == 1;
            let quotes = u64::from(block.quotes()) & !escapes;
            base = base.saturating_add(len);
            if depth == 0 {
                // A string that is the value ends at its first unescaped quote.
                if quotes != 0 {
                    return Some(end_after(base, len, quotes.trailing_zeros()));
                }
                if SEARCH_TEXT {
                    base = past_text(hay, base, &mut plain_before, backslashes);
                }
                continue;
            }
            if in_string && quotes == 0 {
                // Text of a string inside the container: no bracket counts.
                if SEARCH_TEXT {
                    base = past_text(hay, base, &mut plain_before, backslashes);
                }
                continue;
            }
            plain_before = false;
            let (opens, closes) = block.brackets();
            let mut opens = u64::from(opens) & !escapes;
            let mut closes = u64::from(closes) & !escapes;
            let starts_in_string = in_string;
            in_string ^= quotes.count_ones() & 1 == 1;
            if opens | closes == 0 {
                continue;
            }
            // Bit i: byte i is inside a string (quotes included that open one).
            let strings = prefix_xor(quotes) ^ if starts_in_string { u64::MAX } else { 0 };
            opens &= !strings;
            closes &= !strings;
            if closes.count_ones() < depth && depth < COUNTED_DEPTH_MAX {
                // The container goes on past this block: only the count matters.
                depth = depth
                    .saturating_add(opens.count_ones())
                    .saturating_sub(closes.count_ones());
                continue;
            }
            let mut hits = opens | closes;
            while hits != 0 {
                let at = hits.trailing_zeros();
                hits &= hits.wrapping_sub(1);
                if opens.checked_shr(at).unwrap_or(0) & 1 == 1 {
                    depth = depth.saturating_add(1);
                } else {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        return Some(end_after(base, len, at));
                    }
                }
            }
        }
        *self = Self {
            depth,
            in_string,
            escaped,
        };
        None
    }
}

/// Where blocks resume after a block of string text with no quote in it (`base` is the
/// next block's start). After two blocks of plain text in a row (no quote, no backslash)
/// the string is taken for a long one, a prompt or a document, and the crossing jumps to
/// the next quote or backslash with one vector search: up to there the bytes are text of
/// the same string and change nothing, and the search costs a few instructions per
/// sixteen bytes where a block's masks cost a few dozen per thirty-two. Shorter runs of
/// text, as between the escapes of a model's answer, go on block by block, where a search
/// that stops soon would cost more than it saves.
#[inline(always)]
fn past_text(hay: &[u8], base: usize, plain_before: &mut bool, backslashes: u32) -> usize {
    let plain = backslashes == 0;
    if !(plain && *plain_before) {
        *plain_before = plain;
        return base;
    }
    *plain_before = false;
    let rest = hay.get(base..).unwrap_or_default();
    match find_either(rest, b'"', b'\\') {
        Some(at) => base.saturating_add(at),
        None => hay.len(),
    }
}

/// The bytes escaped by a backslash in a block whose backslashes are `backslashes`, when
/// `escaped` says its first byte is escaped by the block before: bit i for byte i, up to
/// bit 32 (the first byte after a whole block). A backslash escapes the next byte unless it
/// is escaped itself, so in a run of backslashes every second one escapes; simdjson's
/// branch-free form finds the runs that start on odd bits with one addition.
#[inline(always)]
fn escaped_bytes(backslashes: u32, escaped: bool) -> u64 {
    const EVEN: u64 = 0x5555_5555_5555_5555;
    let carried = u64::from(escaped);
    // An escaped backslash escapes nothing.
    let backslashes = u64::from(backslashes) & !carried;
    let follows = backslashes << 1 | carried;
    let odd_starts = backslashes & !EVEN & !follows;
    // Below 2^33: no overflow in 64 bits.
    let even_runs = odd_starts.wrapping_add(backslashes);
    (EVEN ^ even_runs << 1) & follows
}

/// Bit i: the parity of the bits 0..=i of `x` (its low 32 bits).
#[inline(always)]
fn prefix_xor(mut x: u64) -> u64 {
    x ^= x << 1;
    x ^= x << 2;
    x ^= x << 4;
    x ^= x << 8;
    x ^= x << 16;
    x
}

/// How many bytes were crossed when the value ended at bit `at` of the block of `len` bytes
/// that ends at `end`.
#[inline(always)]
fn end_after(end: usize, len: usize, at: u32) -> usize {
    end.saturating_sub(len)
        .saturating_add(usize::try_from(at).unwrap_or(usize::MAX))
        .saturating_add(1)
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

    /// Noise with long runs of plain text between its special bytes, as in a long prompt:
    /// whole blocks without a quote, where the crossing searches ahead.
    fn long_text() -> impl Strategy<Value = Vec<u8>> {
        let piece = (prop::sample::select(b"\"\\{}[]: ".to_vec()), 0usize..90);
        proptest::collection::vec(piece, 0..12).prop_map(|pieces| {
            let mut hay = Vec::new();
            for (special, run) in pieces {
                hay.push(special);
                hay.extend(std::iter::repeat_n(b'a', run));
            }
            hay
        })
    }

    /// Crossing `hay` from `start` block by block alone and searching through long text
    /// (whatever `hay`'s length) both end where a byte-by-byte walk ends, and in its state
    /// when `hay` runs out first.
    fn agrees_with_a_byte_walk(start: Crossing, hay: &[u8]) -> Result<(), TestCaseError> {
        let (naive_state, naive_end) = naive(start, hay);
        let (mut blocks, mut searching) = (start, start);
        let by_blocks = blocks.cross_blocks::<false>(hay);
        let by_search = searching.cross_blocks::<true>(hay);
        for (fast, end) in [(blocks, by_blocks), (searching, by_search)] {
            prop_assert_eq!(end, naive_end);
            if end.is_none() {
                prop_assert_eq!(fast, naive_state);
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        #[test]
        fn long_text_agrees_with_a_byte_walk(
            hay in long_text(),
            depth in 0u32..4,
            in_string in any::<bool>(),
            escaped in any::<bool>(),
        ) {
            let start = Crossing { depth, in_string: in_string || depth == 0, escaped };
            agrees_with_a_byte_walk(start, &hay)?;
        }

        #[test]
        fn blocks_agree_with_a_byte_walk(hay in noise(), string in any::<bool>()) {
            let start = if string { Crossing::string() } else { Crossing::container() };
            agrees_with_a_byte_walk(start, &hay)?;
        }

        #[test]
        fn any_start_agrees_with_a_byte_walk(
            hay in noise(),
            depth in prop_oneof![0u32..4, (u32::MAX - 70)..=u32::MAX],
            in_string in any::<bool>(),
            escaped in any::<bool>(),
        ) {
            // Depth 0 is the crossing of a string value, which is inside its string.
            let start = Crossing { depth, in_string: in_string || depth == 0, escaped };
            agrees_with_a_byte_walk(start, &hay)?;
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
    fn a_backslash_ending_a_block_escapes_across_the_search_for_long_text() {
        // A string value: a plain block, then one whose last byte is a backslash. It
        // escapes the `a` after it, so the string ends at the first quote, not the second.
        let mut hay = vec![b'a'; 63];
        hay.extend_from_slice(br#"\aaaaa"aaa""#);
        assert_eq!(Crossing::string().cross_blocks::<true>(&hay), Some(70));
        assert_eq!(Crossing::string().cross_blocks::<false>(&hay), Some(70));
    }

    #[test]
    fn strings_and_escapes_hide_brackets() {
        let body = br#"{"a":"}]\"{[\\","b":[1,"x\"y"]}, "after"#;
        assert_eq!(Crossing::container().cross(&body[1..]), Some(30));
        let string = br#"a \\\" b \\" rest"#;
        assert_eq!(Crossing::string().cross(string), Some(12));
    }
}
