//! Amazon's binary event stream (`application/vnd.amazon.eventstream`), as Bedrock's
//! ConverseStream sends it: usage is in the JSON payload of the `metadata` event.
//!
//! A message is a 12-byte prelude (total length and headers length, big-endian `u32`s, then
//! the CRC-32 of those 8 bytes), the headers, the payload, and the CRC-32 of everything
//! before it. Each header is a name (a length byte, then the bytes), a type byte and a value
//! whose size the type gives; `:event-type` names the event.
//!
//! Nothing is held back and no message is buffered whole:
//! - The prelude's CRC is checked before its lengths are trusted. If it is wrong, or the
//!   lengths contradict each other, the stream cannot be framed any more and the rest is
//!   ignored (what was found before stays).
//! - Headers are collected in a fixed buffer of [`HEADERS_MAX`] bytes; a message with more
//!   headers than that is skipped (no Bedrock event comes near it).
//! - A `metadata` payload is fed to the JSON scanner as it streams, into a staged copy of
//!   the findings that replaces the real ones only once the message CRC matches; a message
//!   with a wrong CRC, or one the stream ends inside, changes nothing.
//! - Every other message (text deltas, most of the stream) is skipped by its length, so its
//!   payload is neither scanned nor checksummed: nothing is taken from it.

use super::extract::Collected;
use super::json::JsonScanner;

/// Largest headers section read, in bytes; a message with more is skipped.
pub(crate) const HEADERS_MAX: usize = 256;
/// Prelude: total length, headers length, prelude CRC.
const PRELUDE_BYTES: usize = 12;
/// A message's bytes besides headers and payload: the prelude and the message CRC.
const OVERHEAD_BYTES: u32 = 16;
/// Header value type of a UTF-8 string (a big-endian `u16` length, then the bytes).
const STRING_TYPE: u8 = 7;
/// The event whose payload carries the usage.
const USAGE_EVENT: &[u8] = b"metadata";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Collecting a prelude (`filled` bytes so far).
    Prelude,
    /// Collecting headers: this many bytes still to come (none: decided at the next byte).
    Headers(u32),
    /// Feeding a `metadata` payload to the JSON scanner: this many bytes still to come.
    Payload(u32),
    /// Collecting the message CRC of a `metadata` message (`filled` bytes so far).
    MessageCrc,
    /// Passing over the rest of a message that is not read: this many bytes.
    Skip(u32),
    /// The framing is lost (a bad prelude): nothing more is read.
    Lost,
}

/// Decoder state for one Amazon event stream.
#[derive(Debug, Clone)]
pub(crate) struct EventStreamDecoder {
    stage: Stage,
    /// The prelude, then the message CRC (4 bytes), as they are collected.
    small: [u8; PRELUDE_BYTES],
    filled: usize,
    headers: [u8; HEADERS_MAX],
    headers_len: usize,
    /// Payload bytes of the current message.
    payload_len: u32,
    /// CRC-32 of the current message so far.
    crc: crc32fast::Hasher,
    /// The findings as they will be if the current `metadata` message checks out.
    staged: Collected,
}

impl EventStreamDecoder {
    pub(crate) fn new() -> Self {
        Self {
            stage: Stage::Prelude,
            small: [0; PRELUDE_BYTES],
            filled: 0,
            headers: [0; HEADERS_MAX],
            headers_len: 0,
            payload_len: 0,
            crc: crc32fast::Hasher::new(),
            staged: Collected::default(),
        }
    }

    /// Reads the next chunk of the stream. `json` is the scanner for payloads; `found`
    /// receives a `metadata` message's values once its CRC matches.
    pub(crate) fn feed(&mut self, mut rest: &[u8], json: &mut JsonScanner, found: &mut Collected) {
        while !rest.is_empty() {
            match self.stage {
                Stage::Prelude => {
                    rest = self.fill(rest, PRELUDE_BYTES);
                    if self.filled == PRELUDE_BYTES {
                        self.prelude_done();
                    }
                }
                Stage::Headers(left) => {
                    let (part, after) = take(rest, left);
                    rest = after;
                    self.push_headers(part);
                    let left = remaining(left, part);
                    self.stage = Stage::Headers(left);
                    if left == 0 {
                        self.headers_done(json, found);
                    }
                }
                Stage::Payload(left) => {
                    let (part, after) = take(rest, left);
                    rest = after;
                    self.crc.update(part);
                    json.feed(part, &mut self.staged);
                    let left = remaining(left, part);
                    self.stage = Stage::Payload(left);
                    if left == 0 {
                        self.filled = 0;
                        self.stage = Stage::MessageCrc;
                    }
                }
                Stage::MessageCrc => {
                    rest = self.fill(rest, 4);
                    if self.filled == 4 {
                        self.message_done(found);
                    }
                }
                Stage::Skip(left) => {
                    let (part, after) = take(rest, left);
                    rest = after;
                    let left = remaining(left, part);
                    self.stage = Stage::Skip(left);
                    if left == 0 {
                        self.next_message();
                    }
                }
                Stage::Lost => return,
            }
        }
    }

    /// Copies bytes of `rest` into `small` until it holds `want`; returns what is left.
    fn fill<'a>(&mut self, rest: &'a [u8], want: usize) -> &'a [u8] {
        let need = want.saturating_sub(self.filled);
        let (part, after) = rest.split_at_checked(need).unwrap_or((rest, &[]));
        if let Some(slot) = self
            .small
            .get_mut(self.filled..self.filled.saturating_add(part.len()))
        {
            slot.copy_from_slice(part);
        }
        self.filled = self.filled.saturating_add(part.len());
        after
    }

    fn next_message(&mut self) {
        self.filled = 0;
        self.stage = Stage::Prelude;
    }

    /// A whole prelude: checks it and decides how the message is read.
    fn prelude_done(&mut self) {
        let word = |at: usize| {
            self.small
                .get(at..at.saturating_add(4))
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .map_or(0, u32::from_be_bytes)
        };
        let (total, headers, prelude_crc) = (word(0), word(4), word(8));
        let lengths = self.small.get(..8).unwrap_or_default();
        let payload = total
            .checked_sub(OVERHEAD_BYTES)
            .and_then(|rest| rest.checked_sub(headers));
        let payload = match payload {
            Some(payload) if crc32fast::hash(lengths) == prelude_crc => payload,
            // Lengths that cannot be trusted: where the next message starts is unknown.
            _ => {
                self.stage = Stage::Lost;
                return;
            }
        };
        self.payload_len = payload;
        if usize::try_from(headers).map_or(true, |h| h > HEADERS_MAX) {
            // Too many headers to read: the rest of the message is passed over.
            self.stage = Stage::Skip(headers.saturating_add(payload).saturating_add(4));
            return;
        }
        self.crc = crc32fast::Hasher::new();
        self.crc.update(&self.small);
        self.headers_len = 0;
        self.stage = Stage::Headers(headers);
    }

    fn push_headers(&mut self, part: &[u8]) {
        let end = self.headers_len.saturating_add(part.len());
        if let Some(slot) = self.headers.get_mut(self.headers_len..end) {
            slot.copy_from_slice(part);
            self.headers_len = end;
        }
    }

    /// The headers are in: a `metadata` event's payload is read, any other is skipped.
    fn headers_done(&mut self, json: &mut JsonScanner, found: &Collected) {
        let headers = self.headers.get(..self.headers_len).unwrap_or_default();
        if event_type(headers) != Some(USAGE_EVENT) {
            self.stage = Stage::Skip(self.payload_len.saturating_add(4));
            return;
        }
        self.crc.update(headers);
        self.staged.clone_from(found);
        json.reset();
        self.filled = 0;
        self.stage = if self.payload_len == 0 {
            Stage::MessageCrc
        } else {
            Stage::Payload(self.payload_len)
        };
    }

    /// The message CRC is in: the staged findings count if it matches.
    fn message_done(&mut self, found: &mut Collected) {
        let expected = <[u8; 4]>::try_from(self.small.get(..4).unwrap_or_default())
            .map(u32::from_be_bytes)
            .ok();
        let crc = std::mem::replace(&mut self.crc, crc32fast::Hasher::new());
        if expected == Some(crc.finalize()) {
            found.clone_from(&self.staged);
        }
        self.next_message();
    }
}

/// The first `left` bytes of `rest` (or all of it) and what follows them.
fn take(rest: &[u8], left: u32) -> (&[u8], &[u8]) {
    let n = usize::try_from(left).unwrap_or(usize::MAX);
    rest.split_at_checked(n).unwrap_or((rest, &[]))
}

/// `left` less the length of `part` (never more than `left`, see [`take`]).
fn remaining(left: u32, part: &[u8]) -> u32 {
    left.saturating_sub(u32::try_from(part.len()).unwrap_or(u32::MAX))
}

/// The value of the `:event-type` string header, if the headers are well formed up to it.
fn event_type(mut headers: &[u8]) -> Option<&[u8]> {
    while let Some((&name_len, rest)) = headers.split_first() {
        let (name, rest) = rest.split_at_checked(usize::from(name_len))?;
        let (&kind, rest) = rest.split_first()?;
        let (value, rest) = header_value(kind, rest)?;
        if name == b":event-type" && kind == STRING_TYPE {
            return Some(value);
        }
        headers = rest;
    }
    None
}

/// A header value of type `kind` at the start of `rest`, and what follows it. The sizes are
/// those of the event-stream encoding: booleans carry no bytes, then byte, short, integer,
/// long, byte array and string (a `u16` length first), timestamp and UUID.
fn header_value(kind: u8, rest: &[u8]) -> Option<(&[u8], &[u8])> {
    let fixed = match kind {
        0 | 1 => 0,
        2 => 1,
        3 => 2,
        4 => 4,
        5 | 8 => 8,
        9 => 16,
        6 | 7 => {
            let (len, rest) = rest.split_at_checked(2)?;
            let len = u16::from_be_bytes(<[u8; 2]>::try_from(len).ok()?);
            return rest.split_at_checked(usize::from(len));
        }
        _ => return None,
    };
    rest.split_at_checked(fixed)
}
