//! Tests for the usage scanner: fixtures under every chunking, a serde_json reference,
//! targeted cases, and hostile input.

#![allow(clippy::arithmetic_side_effects, reason = "test arithmetic")]

mod amazon;
mod cases;
mod fixtures;
mod hostile;
mod reference;

use super::{BodyFormat, ScannedUsage, Usage, UsageScanner};

/// One provider response body from `host-tests/fixtures/responses`.
pub(super) struct Fixture {
    pub(super) name: &'static str,
    pub(super) body: &'static [u8],
}

macro_rules! fixture {
    ($name:literal) => {
        Fixture {
            name: $name,
            body: include_bytes!(concat!("../../../host-tests/fixtures/responses/", $name)),
        }
    };
}

pub(super) const FIXTURES: [Fixture; 16] = [
    fixture!("openai-chat.json"),
    fixture!("openai-chat-stream.sse"),
    fixture!("openai-embeddings.json"),
    fixture!("openai-responses.json"),
    fixture!("openai-responses-stream.sse"),
    fixture!("openai-responses-background.json"),
    fixture!("anthropic-messages.json"),
    fixture!("anthropic-messages-stream.sse"),
    fixture!("anthropic-messages-cache-ttl.json"),
    fixture!("anthropic-messages-cache-ttl-stream.sse"),
    fixture!("gemini-generate.json"),
    fixture!("gemini-stream.sse"),
    fixture!("gemini-stream-array.json"),
    fixture!("gemini-tool-use.json"),
    fixture!("bedrock-converse.json"),
    fixture!("bedrock-converse-stream.eventstream"),
];

const EXPECTED: &str = include_str!("../../../host-tests/fixtures/responses/expected.json");

impl Fixture {
    pub(super) fn format(&self) -> BodyFormat {
        if self.name.ends_with(".sse") {
            BodyFormat::EventStream
        } else if self.name.ends_with(".eventstream") {
            BodyFormat::AmazonEventStream
        } else {
            BodyFormat::Json
        }
    }

    /// The answer `expected.json` gives for this file.
    pub(super) fn expected(&self) -> ScannedUsage {
        let all: serde_json::Value = serde_json::from_str(EXPECTED).unwrap();
        let e = &all[self.name];
        let count = |k: &str| {
            e[k].as_u64()
                .unwrap_or_else(|| panic!("{}: {k}", self.name))
        };
        ScannedUsage {
            usage: Some(Usage {
                input_uncached: count("input_uncached"),
                cache_read: count("cache_read"),
                cache_write: count("cache_write"),
                cache_write_1h: count("cache_write_1h"),
                output: count("output"),
            }),
            // Bedrock bodies name no model (the request path does).
            model: e["model"].as_str().map(str::to_owned),
        }
    }
}

pub(super) fn fixture(name: &str) -> &'static Fixture {
    FIXTURES.iter().find(|f| f.name == name).unwrap()
}

/// Scans `chunks` in order and returns the result.
pub(super) fn scan<'a>(
    format: BodyFormat,
    chunks: impl IntoIterator<Item = &'a [u8]>,
) -> ScannedUsage {
    let mut scanner = UsageScanner::new(format);
    for chunk in chunks {
        scanner.feed(chunk);
    }
    scanner.result()
}

pub(super) fn scan_json(body: &str) -> ScannedUsage {
    scan(BodyFormat::Json, [body.as_bytes()])
}

pub(super) fn scan_sse(body: &str) -> ScannedUsage {
    scan(BodyFormat::EventStream, [body.as_bytes()])
}

pub(super) fn usage(input_uncached: u64, cache_read: u64, cache_write: u64, output: u64) -> Usage {
    Usage {
        input_uncached,
        cache_read,
        cache_write,
        cache_write_1h: 0,
        output,
    }
}

/// Splits `body` at the given (sorted, in-range) cut points.
pub(super) fn split_at<'a>(body: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut pieces = Vec::with_capacity(cuts.len() + 1);
    let mut from = 0;
    for &cut in cuts {
        pieces.push(&body[from..cut]);
        from = cut;
    }
    pieces.push(&body[from..]);
    pieces
}
