//! Reads token usage out of provider response bodies while they stream through.
//!
//! The filter never holds a response back, so the body is seen one chunk at a time and
//! never as a whole. [`UsageScanner`] is fed every chunk and keeps only a fixed-size state
//! (under 1 KiB; see [`UsageScanner::STATE_BYTES_MAX`]) plus, for server-sent events, one
//! carry buffer of at most 16 KiB allocated once per stream (the part of an event that
//! began in an earlier chunk), whatever the body size. It follows the JSON path as it goes
//! and picks out only the few values that matter:
//!
//! - JSON bodies: the top-level `usage` object (OpenAI chat, embeddings and Responses,
//!   Anthropic, Bedrock Converse) or Gemini's top-level `usageMetadata`, and the top-level
//!   `model` / `modelVersion`. Text in model output that merely looks like usage is inside
//!   some other member and is ignored. A top-level array of such objects (Gemini's
//!   `streamGenerateContent` without `alt=sse`) is read element by element and merged like
//!   events.
//! - Server-sent events: every event's data is one JSON document scanned the same way, with
//!   `response.usage` / `response.model` (OpenAI Responses) and `message.usage` /
//!   `message.model` (Anthropic `message_start`) also recognised. Values merge per field,
//!   last one wins, so OpenAI's final chunk, Responses' `response.completed`, Anthropic's
//!   `message_start` plus last `message_delta`, and Gemini's last chunk all come out right;
//!   a `null` never erases an earlier value.
//! - Amazon's binary event stream (`application/vnd.amazon.eventstream`, Bedrock
//!   ConverseStream): each message's CRCs are checked and the payload of its `metadata`
//!   event is scanned like a JSON body (see `eventstream.rs`).
//!
//! Bedrock's InvokeModel puts its token counts in response headers instead of the body:
//! [`invoke_model_usage`] reads them.
//!
//! Numbers: only plain non-negative JSON integers that fit in a `u64` count. Negative
//! numbers, fractions and exponents (even `1.0` or `1e3`), leading zeros and values above
//! `u64::MAX` are treated as invalid and ignored (the field keeps any earlier value), which
//! is also what `serde_json::Value::as_u64` would give. A number cut off by the end of the
//! body is not counted, since more digits may have followed.
//!
//! Strings: the model name is kept only if it is 1..=[`MODEL_MAX_BYTES`] bytes of valid
//! UTF-8 after unescaping; otherwise it is ignored.
//!
//! Hostile input never panics and never grows memory: on the paths that matter the JSON is
//! checked strictly and a syntax error stops the document (values already seen stay);
//! inside members that do not matter only strings and bracket depth are followed, with a
//! saturating counter, so nesting depth costs no memory.
//!
//! Cost: most events of a stream carry neither usage nor a new model, so `events.rs` frames
//! events with a vector search and feeds to the JSON scanner only those whose bytes could
//! change the result (a `"usage` or `"model` key start that is not `null` or the model
//! already found, or a `\u` escape). A JSON body is scanned with byte searches sixteen
//! bytes at a time (wasm SIMD in the module, 64-bit words natively) through strings and
//! skipped containers and whitespace runs, and a small state machine elsewhere that takes
//! a key, its colon and the whitespace after it in one step. Measured in wasmtime fuel
//! (about one unit per wasm instruction) on the release build: about 4.6 per byte for an
//! OpenAI chat stream of small chunks (24.6 when every event was scanned), 11.1 per byte
//! for the 1.5 KB pretty-printed OpenAI JSON response and 5.4 for a 24 KB one.

mod bytes;
mod events;
mod eventstream;
mod extract;
mod invoke_headers;
mod json;
mod skip;
mod sse;
mod text;

#[cfg(test)]
mod tests;

use events::EventFilter;
use eventstream::EventStreamDecoder;
use extract::Collected;
use json::JsonScanner;

pub(crate) use bytes::{contains, positions, same_bytes};
pub use invoke_headers::{invoke_model_usage, INVOKE_MODEL_TOKEN_HEADERS};
pub use text::MODEL_MAX_BYTES;

/// How the response body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    /// A single JSON document (a non-streaming response).
    Json,
    /// Server-sent events (`text/event-stream`), each event's data being a JSON document.
    EventStream,
    /// Amazon's binary event stream (`application/vnd.amazon.eventstream`): length-prefixed
    /// messages with CRCs, as Bedrock's ConverseStream sends them.
    AmazonEventStream,
}

impl BodyFormat {
    /// Picks the format from a response `content-type` header value (any case, parameters
    /// allowed): `text/event-stream` is [`BodyFormat::EventStream`],
    /// `application/vnd.amazon.eventstream` is [`BodyFormat::AmazonEventStream`], anything
    /// else is JSON.
    pub fn from_content_type(content_type: &str) -> Self {
        let value = content_type.as_bytes();
        if is_media_type(value, b"text/event-stream") {
            Self::EventStream
        } else if is_media_type(value, b"application/vnd.amazon.eventstream") {
            Self::AmazonEventStream
        } else {
            Self::Json
        }
    }
}

/// Whether a `content-type` value names `media` (ASCII case-insensitive, spaces around it and
/// parameters after a `;` allowed). Bytes and a length check first: this runs on every
/// response, whose type is nearly always a shorter `application/json`.
fn is_media_type(value: &[u8], media: &[u8]) -> bool {
    let value = value.trim_ascii_start();
    match value.split_at_checked(media.len()) {
        Some((head, rest)) => {
            head.eq_ignore_ascii_case(media)
                && rest.trim_ascii_start().first().is_none_or(|&b| b == b';')
        }
        None => false,
    }
}

/// Token counts normalised across providers; the five parts are disjoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Prompt tokens neither read from nor written to a cache (Gemini's tool-use prompt
    /// tokens included: they are billed as input).
    pub input_uncached: u64,
    /// Prompt tokens served from a cache.
    pub cache_read: u64,
    /// Prompt tokens written to a cache of the default lifetime (Anthropic's five minutes,
    /// and every cache write of a provider that does not tell lifetimes apart).
    pub cache_write: u64,
    /// Prompt tokens written to Anthropic's one-hour cache, which is priced apart.
    pub cache_write_1h: u64,
    /// Generated tokens, thinking included.
    pub output: u64,
}

impl Usage {
    /// All prompt tokens: uncached + cache reads + cache writes of both lifetimes
    /// (saturating). Long-context prices are chosen by this number.
    pub fn prompt_tokens(&self) -> u64 {
        self.input_uncached
            .saturating_add(self.cache_read)
            .saturating_add(self.cache_write)
            .saturating_add(self.cache_write_1h)
    }

    /// Prompt plus output tokens (saturating); what token limits count.
    pub fn total_tokens(&self) -> u64 {
        self.prompt_tokens().saturating_add(self.output)
    }
}

/// What a scanner has found so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScannedUsage {
    /// `None` when no usage field was seen at a recognised path.
    pub usage: Option<Usage>,
    /// The model the response reports, if any.
    pub model: Option<String>,
}

/// How a body's bytes reach the JSON scanner.
#[derive(Debug, Clone)]
enum Framing {
    /// A single JSON document, fed as it comes.
    Json,
    /// Server-sent events: only the events that can change the result are fed.
    Sse(EventFilter),
    /// Amazon's binary event stream: only `metadata` payloads are fed. Boxed: it carries a
    /// headers buffer and a staged copy of the findings, which other bodies need not pay
    /// for (wasm fuel counts every byte a scanner moves).
    Amazon(Box<EventStreamDecoder>),
}

/// Incremental usage scanner for one response body.
#[derive(Debug, Clone)]
pub struct UsageScanner {
    json: JsonScanner,
    framing: Framing,
    found: Collected,
}

impl UsageScanner {
    /// Upper bound on `size_of::<UsageScanner>()`. The heap it owns is the carry of an
    /// event stream, at most 16 KiB, allocated once when an event first spans two chunks;
    /// the decoder of an Amazon event stream (under 1 KiB, see `eventstream.rs`); a model
    /// name buffer ([`MODEL_MAX_BYTES`]), allocated once when a model has an escape or
    /// spans two chunks (otherwise it is read in place); and the model found, at most
    /// [`MODEL_MAX_BYTES`].
    pub const STATE_BYTES_MAX: usize = 1024;

    /// A scanner for a body in the given format.
    pub fn new(format: BodyFormat) -> Self {
        let (events, framing) = match format {
            BodyFormat::Json => (false, Framing::Json),
            BodyFormat::EventStream => (true, Framing::Sse(EventFilter::new())),
            BodyFormat::AmazonEventStream => {
                (false, Framing::Amazon(Box::new(EventStreamDecoder::new())))
            }
        };
        Self {
            json: JsonScanner::new(events),
            framing,
            found: Collected::default(),
        }
    }

    /// Scans the next chunk of the body. Chunks may be split at any byte.
    pub fn feed(&mut self, chunk: &[u8]) {
        match &mut self.framing {
            Framing::Json => self.json.feed(chunk, &mut self.found),
            Framing::Sse(sse) => sse.feed(chunk, &mut self.json, &mut self.found),
            Framing::Amazon(messages) => messages.feed(chunk, &mut self.json, &mut self.found),
        }
    }

    /// The largest output cap a request body names (`max_tokens` and its variants), if any.
    pub fn requested_output_tokens(&self) -> Option<u64> {
        self.found.max_output()
    }

    /// Usage and model seen so far; call at end of body or when the stream ended early.
    pub fn result(&self) -> ScannedUsage {
        // A JSON body's findings are read in place: copying them costs hundreds of
        // instructions, on every request.
        let finished;
        let found = match &self.framing {
            Framing::Sse(sse) => {
                finished = sse.finish(&self.json, &self.found);
                &finished
            }
            // An Amazon message counts only once its CRC is checked: a message cut short
            // adds nothing.
            Framing::Json | Framing::Amazon(_) => &self.found,
        };
        ScannedUsage {
            usage: found.usage(),
            model: found.model(),
        }
    }

    /// Whether the last top-level `model` of a JSON body could not be read as a name (what
    /// a request is judged on: the upstream's parser takes the last member).
    pub fn model_unreadable(&self) -> bool {
        matches!(self.framing, Framing::Json) && self.found.model_unreadable()
    }

    /// The model seen so far: [`UsageScanner::result`]'s model, without the usage.
    pub fn model(&self) -> Option<String> {
        match &self.framing {
            Framing::Sse(sse) => sse.finish(&self.json, &self.found).model(),
            Framing::Json | Framing::Amazon(_) => self.found.model(),
        }
    }
}
