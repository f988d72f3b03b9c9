//! Server-sent events, cheaply: finds where each event ends and feeds the full framer and
//! JSON scanner ([`SseFramer`]) only the events whose bytes could change what is found.
//!
//! A stream of small chunks (OpenAI chat, Anthropic, Responses deltas) is mostly events that
//! carry neither usage nor a new model. One block search ([`EventHits`]) finds the blank
//! lines that end events and the only byte pairs through which an event can reach a tracked
//! path: `"u` / `"m` (the start of a `usage`, `usageMetadata`, `model` or `modelVersion`
//! key) and `\u` (a key spelled with escapes, the only way to write a letter escaped); see
//! [`may_change`] for why that suffices. An event without any, or where every `"usage` is
//! `"usage":null` and every `"model` / `"modelVersion` is `null` or names the model
//! already found, is passed over; any other event is fed to the framer exactly as before,
//! so what is found is unchanged.
//!
//! An event is decided once it has ended (a blank line), so an event split across chunks
//! is kept in a carry buffer of at most [`CARRY_MAX`] bytes, allocated once per stream when
//! first needed. An event that outgrows it is fed to the framer as it streams (what was
//! carried first), which is exactly the old path: correctness never depends on the cap.

use super::bytes::{same_bytes, EventHits};
use super::extract::Collected;
use super::json::JsonScanner;
use super::sse::SseFramer;

/// Largest part of an unfinished event kept while waiting for its end, in bytes.
pub(crate) const CARRY_MAX: usize = 16 * 1024;

/// Event framing and the decision to feed each event to the framer, for one stream.
#[derive(Debug, Clone)]
pub(crate) struct EventFilter {
    framer: SseFramer,
    /// The current event's bytes from earlier chunks (at most [`CARRY_MAX`]).
    carry: Vec<u8>,
    /// The current event outgrew the carry and is being fed to the framer as it comes.
    streaming: bool,
    /// The stream so far is empty or ends with a line end (a line end first in the next
    /// chunk is then a blank line, unless it is the LF of a CRLF).
    line_start: bool,
    /// The stream so far ends with a CR: an LF next belongs to it.
    after_cr: bool,
    /// Whether the model found so far can be compared raw (see [`plain_model`]); `None`
    /// when not worked out since the framer was last fed.
    plain: Option<bool>,
}

impl EventFilter {
    pub(crate) fn new() -> Self {
        Self {
            framer: SseFramer::new(),
            carry: Vec::new(),
            streaming: false,
            line_start: true,
            after_cr: false,
            plain: None,
        }
    }

    /// Scans the next chunk of the stream.
    ///
    /// One search finds both blank lines and possible key starts. An event that begins and
    /// ends in this chunk is decided from the key starts seen on the way; one that began
    /// in an earlier chunk is decided from the carry when it ends ([`may_change`]).
    // Lets the vector searches (bytes.rs) inline here.
    #[cfg_attr(target_arch = "wasm32", target_feature(enable = "simd128"))]
    pub(crate) fn feed(&mut self, chunk: &[u8], json: &mut JsonScanner, out: &mut Collected) {
        let Some(&last) = chunk.last() else {
            return;
        };
        // `event` is where the current event starts in `chunk`.
        let mut event: usize = 0;
        let mut in_place = self.carry.is_empty() && !self.streaming;
        // A key start in the current (in-place) event might change what is found.
        let mut dirty = false;
        // A blank line right at the start, after a line end in the previous chunk.
        if let Some(&first) = chunk.first() {
            let crlf = self.after_cr && first == b'\n';
            if self.line_start && !crlf && (first == b'\n' || first == b'\r') {
                self.event_ended(
                    chunk.get(..1).unwrap_or_default(),
                    first == b'\r',
                    in_place,
                    dirty,
                    json,
                    out,
                );
                event = 1;
                in_place = true;
            }
        }
        for pos in EventHits::new(chunk) {
            let pair = chunk
                .get(pos..)
                .and_then(|p| p.get(..2))
                .unwrap_or_default();
            match *pair {
                // A line end, then the line end of a blank line (not an LF completing a CRLF).
                [b'\n' | b'\r', end @ (b'\n' | b'\r')] if pair != b"\r\n" => {
                    let to = pos.saturating_add(2);
                    if to <= event {
                        continue;
                    }
                    let part = chunk.get(event..to).unwrap_or_default();
                    self.event_ended(part, end == b'\r', in_place, dirty, json, out);
                    event = to;
                    in_place = true;
                    dirty = false;
                }
                [b'"' | b'\\', _] if in_place && !dirty && pos >= event => {
                    let escaped = pos.checked_sub(1).and_then(|i| chunk.get(i)) == Some(&b'\\');
                    let tail = chunk.get(pos..).unwrap_or_default();
                    dirty = self.key_may_change(tail, escaped, out);
                }
                _ => {}
            }
        }
        // Line state for the next chunk: only its last byte matters.
        self.line_start = last == b'\n' || last == b'\r';
        self.after_cr = last == b'\r';
        let part = chunk.get(event..).unwrap_or_default();
        self.keep(part, json, out);
    }

    /// The current event ended with `part` (a blank line ending in CR if `cr`). `in_place`:
    /// it began in this chunk, and `dirty` says whether it may change what is found.
    fn event_ended(
        &mut self,
        part: &[u8],
        cr: bool,
        in_place: bool,
        dirty: bool,
        json: &mut JsonScanner,
        out: &mut Collected,
    ) {
        if !in_place {
            self.event_end(part, cr, json, out);
        } else if dirty {
            self.plain = None;
            self.framer.feed(part, json, out);
        } else {
            self.framer.skipped_event(cr);
        }
    }

    /// Whether the key start at the beginning of `tail` could change what is found
    /// (see [`may_change`]); `escaped`: the byte before it is a backslash.
    #[inline(always)]
    fn key_may_change(&mut self, tail: &[u8], escaped: bool, found: &Collected) -> bool {
        match key_kind(tail, escaped) {
            Key::Harmless => false,
            Key::Changes => true,
            Key::Model(value) => {
                let plain = *self
                    .plain
                    .get_or_insert_with(|| plain_model(found).is_some());
                !(plain && names_model(value, found.model_bytes()))
            }
        }
    }

    /// The current event ended with `part` (its last bytes, after any carried ones).
    fn event_end(&mut self, part: &[u8], cr: bool, json: &mut JsonScanner, out: &mut Collected) {
        self.plain = None;
        if self.streaming {
            self.streaming = false;
            self.framer.feed(part, json, out);
            return;
        }
        let whole = if self.carry.is_empty() {
            Some(part)
        } else if self.carry.len().saturating_add(part.len()) <= CARRY_MAX {
            self.carry.extend_from_slice(part);
            Some(self.carry.as_slice())
        } else {
            None
        };
        match whole {
            Some(event) if !may_change(event, out) => self.framer.skipped_event(cr),
            Some(event) => self.framer.feed(event, json, out),
            None => {
                // Too long to carry whole: fed in two parts, the same bytes in order.
                self.framer.feed(&self.carry, json, out);
                self.framer.feed(part, json, out);
            }
        }
        self.carry.clear();
    }

    /// `part` starts or continues an event that has not ended in this chunk.
    fn keep(&mut self, part: &[u8], json: &mut JsonScanner, out: &mut Collected) {
        if part.is_empty() {
            return;
        }
        if self.streaming {
            self.plain = None;
            self.framer.feed(part, json, out);
            return;
        }
        if self.carry.len().saturating_add(part.len()) <= CARRY_MAX {
            if self.carry.capacity() == 0 {
                // Once per stream: the carry never grows past this.
                self.carry.reserve_exact(CARRY_MAX);
            }
            self.carry.extend_from_slice(part);
            return;
        }
        // The event outgrows the carry: from here on it takes the full path as it streams.
        self.streaming = true;
        self.plain = None;
        self.framer.feed(&self.carry, json, out);
        self.framer.feed(part, json, out);
        self.carry.clear();
    }

    /// What is found if the stream ends now: an unfinished event counts as far as it went,
    /// as it would have had it been fed as it came.
    pub(crate) fn finish(&self, json: &JsonScanner, out: &Collected) -> Collected {
        let mut found = out.clone();
        if !self.carry.is_empty() {
            let mut framer = self.framer.clone();
            let mut json = json.clone();
            framer.feed(&self.carry, &mut json, &mut found);
        }
        found
    }
}

/// Whether feeding `event` (raw bytes of whole lines) to the framer could change `found`.
///
/// A key reaches a tracked path only if its name is `usage`, `usageMetadata`, `model` or
/// `modelVersion`. Letters can be escaped only as `\uXXXX`, so without a `\u` in the event
/// such a key appears in the raw bytes as a `"` followed by the name, and that `"` is not
/// preceded by `\` (a `\"` is inside a string or ends one, it never opens a key). Data
/// lines are joined with "\n", which no key name contains, so looking at the raw lines,
/// field names and comments included, only adds occurrences. An occurrence is harmless
/// when its value cannot change anything: `null` (ignored for counts and model) or,
/// for the model, the very name already found. Everything else is fed in full.
#[cfg_attr(target_arch = "wasm32", target_feature(enable = "simd128"))]
pub(crate) fn may_change(event: &[u8], found: &Collected) -> bool {
    let model = plain_model(found);
    EventHits::new(event).any(|hit| {
        let tail = event.get(hit..).unwrap_or_default();
        // Line-end pairs are what the hits also report; only key starts matter here.
        let key = tail.first().is_some_and(|&b| b == b'"' || b == b'\\');
        let escaped = hit.checked_sub(1).and_then(|i| event.get(i)) == Some(&b'\\');
        key && key_may_change(tail, escaped, model)
    })
}

/// What a key start (a `"` or `\\` followed by `u` or `m`) can do.
enum Key<'a> {
    /// Nothing: not a tracked key, or one whose value is `null`.
    Harmless,
    /// It may change what is found.
    Changes,
    /// A `model` / `modelVersion` key whose value follows `":` (the raw bytes given):
    /// harmless if it is the model already found.
    Model(&'a [u8]),
}

/// Sorts the key start at the beginning of `tail`; `escaped`: the byte before it is `\\`.
#[inline(always)]
fn key_kind(tail: &[u8], escaped: bool) -> Key<'_> {
    // The commonest case first (OpenAI's every chunk): harmless, escaped or not.
    if tail.starts_with(b"\"usage\":null") {
        return Key::Harmless;
    }
    if tail.starts_with(b"\\u") {
        return Key::Changes;
    }
    if escaped {
        return Key::Harmless;
    }
    if tail.starts_with(b"\"usage") {
        return Key::Changes;
    }
    let after = if tail.starts_with(b"\"model\":") {
        tail.get(8..)
    } else if tail.starts_with(b"\"modelVersion\":") {
        tail.get(15..)
    } else if tail.starts_with(b"\"model") {
        // Another key starting with `model`: not tracked, unless not a plain key at all.
        return if tail.get(6) == Some(&b'"') || tail.starts_with(b"\"modelVersion\"") {
            Key::Changes
        } else {
            Key::Harmless
        };
    } else {
        return Key::Harmless;
    };
    match after {
        Some(value) if value.starts_with(b"null") => Key::Harmless,
        Some(value) => Key::Model(value),
        None => Key::Changes,
    }
}

/// Whether feeding this key start (at the beginning of `tail`) could change what is found,
/// given the model found so far if it can be compared raw.
fn key_may_change(tail: &[u8], escaped: bool, model: Option<&[u8]>) -> bool {
    match key_kind(tail, escaped) {
        Key::Harmless => false,
        Key::Changes => true,
        Key::Model(value) => !names_model(value, model),
    }
}

/// The model found so far if it can be compared raw: a name without a quote or backslash
/// (which a raw value would have escaped) or line end (which data lines would split).
fn plain_model(found: &Collected) -> Option<&[u8]> {
    found
        .model_bytes()
        .filter(|m| !m.iter().any(|&b| matches!(b, b'"' | b'\\' | b'\n' | b'\r')))
}

/// `value` (what follows `"model":` or `"modelVersion":`) is exactly `model` in quotes.
#[inline(always)]
fn names_model(value: &[u8], model: Option<&[u8]>) -> bool {
    let Some(model) = model else {
        return false;
    };
    let Some(raw) = value.get(1..).and_then(|v| v.get(..model.len())) else {
        return false;
    };
    value.first() == Some(&b'"')
        && value.get(model.len().wrapping_add(1)) == Some(&b'"')
        && same_bytes(raw, model)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::arithmetic_side_effects, reason = "test arithmetic")]

    use super::super::{BodyFormat, ScannedUsage, Usage, UsageScanner};
    use super::*;
    use proptest::prelude::*;

    /// What the stream gives when every event is fed to the framer (the path before
    /// events were skipped), chunked the same way.
    fn reference<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> ScannedUsage {
        let mut framer = SseFramer::new();
        let mut json = JsonScanner::new(true);
        let mut found = Collected::default();
        for chunk in chunks {
            framer.feed(chunk, &mut json, &mut found);
        }
        ScannedUsage {
            usage: found.usage(),
            model: found.model(),
        }
    }

    fn scan<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> ScannedUsage {
        let mut scanner = UsageScanner::new(BodyFormat::EventStream);
        for chunk in chunks {
            scanner.feed(chunk);
        }
        scanner.result()
    }

    /// Fed whole, split in two at every byte, and one byte at a time: always the reference.
    fn agrees_everywhere(body: &[u8]) -> ScannedUsage {
        let expected = reference([body]);
        assert_eq!(scan([body]), expected, "whole");
        for cut in 0..=body.len() {
            let (a, b) = body.split_at(cut);
            assert_eq!(scan([a, b]), expected, "cut at {cut}");
        }
        assert_eq!(scan(body.chunks(1)), expected, "bytes");
        expected
    }

    fn usage(input_uncached: u64, output: u64) -> Option<Usage> {
        Some(Usage {
            input_uncached,
            output,
            ..Usage::default()
        })
    }

    fn chat_chunk(content: &str) -> String {
        format!(
            "data: {{\"id\":\"c\",\"model\":\"gpt-4o\",\"choices\":[{{\"delta\":{{\"content\":\"{content}\"}}}}],\"usage\":null}}\n\n"
        )
    }

    #[test]
    fn an_event_longer_than_the_carry_is_read_in_full() {
        let filler = "x".repeat(CARRY_MAX);
        let body = format!(
            "{}data: {{\"model\":\"gpt-4o\",\"c\":\"{filler}\",\"usage\":{{\"prompt_tokens\":7,\"completion_tokens\":9}}}}\n\n{}",
            chat_chunk("a"),
            chat_chunk("b"),
        );
        assert!(body.len() > CARRY_MAX + 100);
        let found = agrees_everywhere(body.as_bytes());
        assert_eq!(found.usage, usage(7, 9));
        assert_eq!(found.model.as_deref(), Some("gpt-4o"));
        // Unfinished when the stream ends: what was seen counts.
        let cut = body.find("\"completion_tokens\"").unwrap();
        let part = &body.as_bytes()[..cut];
        assert_eq!(scan(part.chunks(4096)).usage, usage(7, 0));
        assert_eq!(scan(part.chunks(4096)), reference([part]));
    }

    #[test]
    fn usage_text_in_model_output_is_not_counted() {
        let body = [
            chat_chunk("say \\\"usage\\\":{\\\"prompt_tokens\\\":5} and \\\"model\\\":\\\"x\\\""),
            chat_chunk("\\\"usage\\\": {\\\"completion_tokens\\\": 6}"),
            chat_chunk("usage model \\\\u0075sage \\\\\\\"usage"),
            "data: {\"choices\":[{\"delta\":{\"usage\":{\"prompt_tokens\":4}}}],\"x\":{\"model\":\"y\"}}\n\n".to_owned(),
            "data: {\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2}}\n\n".to_owned(),
        ]
        .concat();
        let found = agrees_everywhere(body.as_bytes());
        assert_eq!(found.usage, usage(1, 2));
        assert_eq!(found.model.as_deref(), Some("gpt-4o"));
    }

    #[test]
    fn crlf_and_cr_framing_with_skipped_events() {
        let lf = [
            ": keep-alive\n\n",
            "event: message_start\ndata: {\"message\":{\"model\":\"claude\",\"usage\":{\"input_tokens\":3}}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"delta\":{\"text\":\"hi\"}}\n\n",
            "event: ping\ndata: {\"type\":\"ping\"}\n\n\n\n",
            "event: message_delta\ndata: {\"usage\":\ndata: {\"output_tokens\":8}}\n\n",
            "data: {\"type\":\"content_block_delta\",\"delta\":{\"text\":\"after\"}}\n\n",
        ]
        .concat();
        for body in [lf.clone(), lf.replace('\n', "\r\n"), lf.replace('\n', "\r")] {
            let found = agrees_everywhere(body.as_bytes());
            assert_eq!(found.usage, usage(3, 8), "{body:?}");
            assert_eq!(found.model.as_deref(), Some("claude"));
            let with_bom = format!("\u{feff}{body}");
            assert_eq!(
                scan(with_bom.as_bytes().chunks(3)),
                reference([with_bom.as_bytes()])
            );
        }
    }

    #[test]
    fn skipped_events_across_chunk_boundaries() {
        let mut body = String::new();
        for i in 0..200 {
            body.push_str(&chat_chunk(&"word ".repeat(i % 7)));
        }
        body.push_str("data: {\"model\":\"gpt-4o-2\",\"usage\":{\"prompt_tokens\":11,\"completion_tokens\":12}}\n\n");
        body.push_str(&chat_chunk("tail"));
        let bytes = body.as_bytes();
        let expected = reference([bytes]);
        assert_eq!(expected.usage, usage(11, 12));
        // The last event names gpt-4o again, after gpt-4o-2: the model is the last one seen.
        assert_eq!(expected.model.as_deref(), Some("gpt-4o"));
        for size in [1, 2, 3, 7, 64, 65, 100, 255, 4096] {
            assert_eq!(scan(bytes.chunks(size)), expected, "chunks of {size}");
        }
    }

    #[test]
    fn a_new_model_or_an_escaped_key_is_never_skipped() {
        let body = concat!(
            "data: {\"model\":\"a\",\"usage\":null}\n\n",
            "data: {\"model\":\"a\",\"usage\":null}\n\n",
            "data: {\"model\":\"b\",\"usage\":null}\n\n",
            "data: {\"model\" : \"c\"}\n\n",
            "data: {\"modelVersion\":\"c\"}\n\n",
            "data: {\"mod\\u0065l\":\"d\",\"\\u0075sage\":{\"input_tokens\":2}}\n\n",
            "data: {\"model\":\"d\",\"model_x\":\"e\",\"usage\":null}\n\n",
        );
        let found = agrees_everywhere(body.as_bytes());
        assert_eq!(found.model.as_deref(), Some("d"));
        assert_eq!(found.usage, usage(2, 0));
    }

    #[test]
    fn the_carry_is_allocated_once_and_bounded() {
        let mut filter = EventFilter::new();
        let mut json = JsonScanner::new(true);
        let mut found = Collected::default();
        let body = chat_chunk("x").repeat(2000);
        for chunk in body.as_bytes().chunks(1000) {
            filter.feed(chunk, &mut json, &mut found);
            assert!(filter.carry.capacity() <= CARRY_MAX);
        }
        assert_eq!(filter.carry.capacity(), CARRY_MAX);
    }

    fn piece() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            "data: ",
            "data:",
            "data",
            "event: x",
            ": c",
            "\n",
            "\r",
            "\r\n",
            "\n\n",
            "{",
            "}",
            "[",
            "]",
            ",",
            ":",
            "\"",
            "\\",
            "\\\"",
            "\\u0075",
            "\"usage\":",
            "\"usage\":null",
            "\"usage\":{\"prompt_tokens\":1,\"output_tokens\":2}",
            "{\"usage\":{\"input_tokens\":3}}",
            "\"model\":",
            "\"model\":\"m\"",
            "\"model\":\"n\"",
            "\"modelVersion\":\"m\"",
            "{\"model\":\"m\",\"usage\":null}",
            "\"message\":{",
            "\"response\":{",
            "\"x\":\"",
            "null",
            "12",
            " ",
            "xyz",
        ])
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        #[test]
        fn same_as_feeding_every_event(
            pieces in proptest::collection::vec(piece(), 0..60),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
            big in any::<bool>(),
        ) {
            let mut body = pieces.concat();
            if big {
                // An event that outgrows the carry, somewhere in the middle.
                let at = body.len() / 2;
                body.insert_str(at, &"y".repeat(CARRY_MAX + 10));
            }
            let body = body.as_bytes();
            let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(body.len() + 1)).collect();
            cuts.sort_unstable();
            let mut chunks = Vec::new();
            let mut from = 0;
            for cut in cuts {
                chunks.push(&body[from..cut]);
                from = cut;
            }
            chunks.push(&body[from..]);
            let expected = reference([body]);
            prop_assert_eq!(scan(chunks.iter().copied()), expected.clone());
            prop_assert_eq!(scan([body]), expected);
        }
    }
}
