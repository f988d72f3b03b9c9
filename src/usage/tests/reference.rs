//! An independent reference: whole-document parses with serde_json, then the same field
//! rules written out per provider. Only for tests; the scanner never buffers a document.

use super::super::{BodyFormat, ScannedUsage, Usage, MODEL_MAX_BYTES};
use serde_json::Value;
use std::collections::BTreeMap;

/// Provider fields seen, keyed "<object>.<field>", last one wins.
#[derive(Default)]
struct Seen {
    counts: BTreeMap<&'static str, u64>,
    model: Option<String>,
}

const USAGE_FIELDS: [&str; 6] = [
    "prompt_tokens",
    "completion_tokens",
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
];
const GEMINI_FIELDS: [&str; 4] = [
    "promptTokenCount",
    "candidatesTokenCount",
    "thoughtsTokenCount",
    "cachedContentTokenCount",
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
        for k in USAGE_FIELDS {
            if let Some(n) = u.get(k).and_then(Value::as_u64) {
                self.counts.insert(k, n);
            }
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
                input_uncached: c("promptTokenCount").unwrap_or(0).saturating_sub(cached),
                cache_read: cached,
                cache_write: 0,
                output: c("candidatesTokenCount").unwrap_or(0)
                    + c("thoughtsTokenCount").unwrap_or(0),
            })
        } else if c("prompt_tokens").is_some() || c("completion_tokens").is_some() {
            let cached = c("cached_tokens").unwrap_or(0);
            Some(Usage {
                input_uncached: c("prompt_tokens").unwrap_or(0).saturating_sub(cached),
                cache_read: cached,
                cache_write: 0,
                output: c("completion_tokens").unwrap_or(0),
            })
        } else if let Some(cached) = c("cached_tokens") {
            // OpenAI Responses: input_tokens includes the cached part.
            Some(Usage {
                input_uncached: c("input_tokens").unwrap_or(0).saturating_sub(cached),
                cache_read: cached,
                cache_write: 0,
                output: c("output_tokens").unwrap_or(0),
            })
        } else {
            // Anthropic: input_tokens excludes cache reads and writes.
            Some(Usage {
                input_uncached: c("input_tokens").unwrap_or(0),
                cache_read: c("cache_read_input_tokens").unwrap_or(0),
                cache_write: c("cache_creation_input_tokens").unwrap_or(0),
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

/// What the scanner should find in `body`, computed from whole-document parses.
/// `None` if the JSON body does not parse.
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
    }
    Some(seen.result())
}

pub(super) fn scan_with_serde(format: BodyFormat, body: &[u8]) -> ScannedUsage {
    try_scan_with_serde(format, body).unwrap()
}
