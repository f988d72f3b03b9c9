//! An independent reference: whole-document parses with serde_json (and whole messages of an
//! Amazon event stream), then the same field rules written out per provider. Only for
//! tests; the scanner never buffers a document.

use super::super::eventstream::HEADERS_MAX;
use super::super::{BodyFormat, ScannedUsage, Usage, MODEL_MAX_BYTES};
use serde_json::Value;
use std::collections::BTreeMap;

/// Provider fields seen, keyed "<object>.<field>", last one wins.
#[derive(Default)]
struct Seen {
    counts: BTreeMap<&'static str, u64>,
    model: Option<String>,
}

/// `usage` fields, and the name each is kept under: Bedrock's camelCase counts mean what
/// Anthropic's do.
const USAGE_FIELDS: [(&str, &str); 10] = [
    ("prompt_tokens", "prompt_tokens"),
    ("completion_tokens", "completion_tokens"),
    ("input_tokens", "input_tokens"),
    ("output_tokens", "output_tokens"),
    ("cache_read_input_tokens", "cache_read_input_tokens"),
    ("cache_creation_input_tokens", "cache_creation_input_tokens"),
    ("inputTokens", "input_tokens"),
    ("outputTokens", "output_tokens"),
    ("cacheReadInputTokens", "cache_read_input_tokens"),
    ("cacheWriteInputTokens", "cache_creation_input_tokens"),
];
const GEMINI_FIELDS: [&str; 5] = [
    "promptTokenCount",
    "candidatesTokenCount",
    "thoughtsTokenCount",
    "cachedContentTokenCount",
    "toolUsePromptTokenCount",
];

impl Seen {
    fn model(&mut self, v: Option<&Value>) {
        if let Some(s) = v.and_then(Value::as_str) {
            if !s.is_empty() && s.len() <= MODEL_MAX_BYTES {
                self.model = Some(s.to_owned());
            }
        }
    }

    fn usage(&mut self, v: Option<&Value>) {
        let Some(u) = v.and_then(Value::as_object) else {
            return;
        };
        for (k, kept) in USAGE_FIELDS {
            if let Some(n) = u.get(k).and_then(Value::as_u64) {
                self.counts.insert(kept, n);
            }
        }
        let one_hour = u
            .get("cache_creation")
            .and_then(|by_ttl| by_ttl.get("ephemeral_1h_input_tokens"))
            .and_then(Value::as_u64);
        if let Some(n) = one_hour {
            self.counts.insert("ephemeral_1h_input_tokens", n);
        }
        for details in ["prompt_tokens_details", "input_tokens_details"] {
            let cached = u
                .get(details)
                .and_then(Value::as_object)
                .and_then(|d| d.get("cached_tokens"))
                .and_then(Value::as_u64);
            if let Some(n) = cached {
                self.counts.insert("cached_tokens", n);
            }
        }
    }

    fn gemini(&mut self, v: Option<&Value>) {
        let Some(u) = v.and_then(Value::as_object) else {
            return;
        };
        for k in GEMINI_FIELDS {
            if let Some(n) = u.get(k).and_then(Value::as_u64) {
                self.counts.insert(k, n);
            }
        }
    }

    /// One JSON document; `events` adds the SSE wrappers `response` and `message`.
    fn document(&mut self, doc: &Value, events: bool) {
        if let Some(elements) = doc.as_array() {
            // The scanner reads a top-level array of objects element by element, and
            // stops at the first element that is not an object.
            for element in elements.iter().take_while(|e| e.is_object()) {
                self.document(element, events);
            }
            return;
        }
        let Some(top) = doc.as_object() else {
            return;
        };
        // serde_json keeps the last of duplicate keys, and member order is lost, so take
        // the members in the order the scanner would meet them in the fixtures.
        self.model(top.get("model"));
        self.model(top.get("modelVersion"));
        self.usage(top.get("usage"));
        self.gemini(top.get("usageMetadata"));
        if events {
            for wrapper in ["response", "message"] {
                if let Some(w) = top.get(wrapper).and_then(Value::as_object) {
                    self.model(w.get("model"));
                    self.usage(w.get("usage"));
                }
            }
        }
    }

    fn result(&self) -> ScannedUsage {
        let c = |k: &str| self.counts.get(k).copied();
        let usage = if self.counts.is_empty() {
            None
        } else if GEMINI_FIELDS.iter().any(|k| c(k).is_some()) {
            let cached = c("cachedContentTokenCount").unwrap_or(0);
            Some(Usage {
                // Tool-use prompt tokens are input, apart from the prompt count.
                input_uncached: c("promptTokenCount").unwrap_or(0).saturating_sub(cached)
                    + c("toolUsePromptTokenCount").unwrap_or(0),
                cache_read: cached,
                output: c("candidatesTokenCount").unwrap_or(0)
                    + c("thoughtsTokenCount").unwrap_or(0),
                ..Usage::default()
            })
        } else if c("prompt_tokens").is_some() || c("completion_tokens").is_some() {
            let cached = c("cached_tokens").unwrap_or(0);
            Some(Usage {
                input_uncached: c("prompt_tokens").unwrap_or(0).saturating_sub(cached),
                cache_read: cached,
                output: c("completion_tokens").unwrap_or(0),
                ..Usage::default()
            })
        } else if let Some(cached) = c("cached_tokens") {
            // OpenAI Responses: input_tokens includes the cached part.
            Some(Usage {
                input_uncached: c("input_tokens").unwrap_or(0).saturating_sub(cached),
                cache_read: cached,
                output: c("output_tokens").unwrap_or(0),
                ..Usage::default()
            })
        } else {
            // Anthropic and Bedrock: the input count excludes cache reads and writes, and
            // Anthropic tells how many of its cache writes live one hour.
            let written = c("cache_creation_input_tokens").unwrap_or(0);
            let cache_write_1h = c("ephemeral_1h_input_tokens").unwrap_or(0);
            let cache_write = written.saturating_sub(cache_write_1h);
            Some(Usage {
                input_uncached: c("input_tokens").unwrap_or(0),
                cache_read: c("cache_read_input_tokens").unwrap_or(0),
                cache_write,
                cache_write_1h,
                output: c("output_tokens").unwrap_or(0),
            })
        };
        ScannedUsage {
            usage,
            model: self.model.clone(),
        }
    }
}

/// The data of each event of an event stream (lines joined with "\n").
fn event_data(body: &str) -> Vec<String> {
    let body = body.replace("\r\n", "\n").replace('\r', "\n");
    let mut events = Vec::new();
    let mut data: Option<String> = None;
    for line in body.split('\n') {
        if line.is_empty() {
            events.extend(data.take());
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        if field == "data" {
            let value = value.strip_prefix(' ').unwrap_or(value);
            match &mut data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => data = Some(value.to_owned()),
            }
        }
    }
    events.extend(data);
    events
}

/// The `metadata` payloads of an Amazon event stream, each taken only from a whole message
/// whose CRCs match. A message with more headers than the scanner reads is passed over; a
/// bad prelude ends the stream (where the next message starts is unknown).
fn metadata_payloads(mut body: &[u8]) -> Vec<&[u8]> {
    let word = |b: &[u8], at: usize| u32::from_be_bytes(b[at..at + 4].try_into().unwrap());
    let mut payloads = Vec::new();
    while body.len() >= 12 {
        let (total, headers) = (word(body, 0) as usize, word(body, 4) as usize);
        if crc32fast::hash(&body[..8]) != word(body, 8) || headers + 16 > total {
            break;
        }
        let Some(message) = body.get(..total) else {
            break; // cut short
        };
        body = &body[total..];
        let crc_ok = crc32fast::hash(&message[..total - 4]) == word(message, total - 4);
        if headers > HEADERS_MAX || !crc_ok {
            continue;
        }
        if reference_event_type(&message[12..12 + headers]) == Some(&b"metadata"[..]) {
            payloads.push(&message[12 + headers..total - 4]);
        }
    }
    payloads
}

/// The `:event-type` string header; `None` when absent or the headers are malformed first.
fn reference_event_type(mut rest: &[u8]) -> Option<&[u8]> {
    while !rest.is_empty() {
        let name_len = usize::from(*rest.first()?);
        let name = rest.get(1..1 + name_len)?;
        let kind = *rest.get(1 + name_len)?;
        let tail = rest.get(2 + name_len..)?;
        let size = match kind {
            0 | 1 => 0,
            2 => 1,
            3 => 2,
            4 => 4,
            5 | 8 => 8,
            9 => 16,
            6 | 7 => 2 + usize::from(u16::from_be_bytes([*tail.first()?, *tail.get(1)?])),
            _ => return None,
        };
        let value = tail.get(..size)?;
        if name == b":event-type" && kind == 7 {
            return value.get(2..);
        }
        rest = tail.get(size..)?;
    }
    None
}

/// What the scanner should find in `body`, computed from whole-document parses.
/// `None` if the JSON body (or a checked-out `metadata` payload) does not parse.
pub(super) fn try_scan_with_serde(format: BodyFormat, body: &[u8]) -> Option<ScannedUsage> {
    let mut seen = Seen::default();
    match format {
        BodyFormat::Json => seen.document(&serde_json::from_slice(body).ok()?, false),
        BodyFormat::EventStream => {
            for data in event_data(std::str::from_utf8(body).ok()?) {
                if let Ok(doc) = serde_json::from_str::<Value>(&data) {
                    seen.document(&doc, true);
                }
            }
        }
        BodyFormat::AmazonEventStream => {
            for payload in metadata_payloads(body) {
                seen.document(&serde_json::from_slice(payload).ok()?, false);
            }
        }
    }
    Some(seen.result())
}

pub(super) fn scan_with_serde(format: BodyFormat, body: &[u8]) -> ScannedUsage {
    try_scan_with_serde(format, body).unwrap()
}
