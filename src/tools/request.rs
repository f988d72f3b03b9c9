//! A request as the operators' tools take it (one `explain` request, one line of a
//! `simulate` trace), and times in RFC 3339.

use std::collections::BTreeMap;

use chrono::DateTime;
use serde::Deserialize;
use serde_json::Value;

use super::replay::{Exchange, Response};

/// One request, and for `simulate` the usage its response reports.
///
/// `key`, `model` and `provider` are shorthands for what a client sends: the key as
/// `authorization: Bearer <key>`, the model as the JSON body `{"model": ...}`, the provider
/// in the configured provider header. `headers` and `body` give the request exactly instead.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestSpec {
    /// RFC 3339; when the request arrives (and, in a simulation, when its response ends).
    pub time: String,
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub provider: Option<String>,
    #[serde(default = "default_method")]
    pub method: String,
    #[serde(default = "default_path")]
    pub path: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The request body: a JSON value, sent as its text (a string is sent as it is).
    #[serde(default)]
    pub body: Option<Value>,
    /// The response's top-level `usage` member, in any provider's shape (OpenAI's
    /// `prompt_tokens`/`completion_tokens`, Anthropic's `input_tokens`/`output_tokens`...).
    #[serde(default)]
    pub usage: Option<Value>,
    /// The response status (200 unless given).
    #[serde(default = "default_status")]
    pub status: u16,
}

fn default_method() -> String {
    "POST".to_string()
}

fn default_path() -> String {
    "/v1/chat/completions".to_string()
}

fn default_status() -> u16 {
    200
}

impl RequestSpec {
    /// Reads one request from its JSON text.
    pub fn parse(text: &str) -> Result<Self, String> {
        serde_json::from_str(text).map_err(|err| err.to_string())
    }

    /// When the request arrives, in nanoseconds since the epoch.
    pub fn at(&self) -> Result<i64, String> {
        parse_time(&self.time).map_err(|err| format!("time: {err}"))
    }

    /// The exchange a client would have with the filter; with `respond`, the response too.
    pub fn exchange(&self, provider_header: &str, respond: bool) -> Exchange {
        let mut headers: Vec<(String, Vec<u8>)> = self
            .headers
            .iter()
            .map(|(name, value)| (name.to_ascii_lowercase(), value.as_bytes().to_vec()))
            .collect();
        let mut add = |name: &str, value: String| {
            if !headers.iter().any(|(present, _)| present == name) {
                headers.push((name.to_string(), value.into_bytes()));
            }
        };
        if let Some(key) = &self.key {
            add("authorization", format!("Bearer {key}"));
        }
        if let Some(provider) = &self.provider {
            add(provider_header, provider.clone());
        }
        let body = match (&self.body, &self.model) {
            (Some(Value::String(text)), _) => text.clone().into_bytes(),
            (Some(body), _) => body.to_string().into_bytes(),
            (None, Some(model)) => serde_json::json!({ "model": model })
                .to_string()
                .into_bytes(),
            (None, None) => Vec::new(),
        };
        if !body.is_empty() {
            add("content-type", "application/json".to_string());
            add("content-length", body.len().to_string());
        }
        let response = respond.then(|| {
            let mut reply = serde_json::Map::new();
            if let Some(model) = &self.model {
                reply.insert("model".to_string(), Value::String(model.clone()));
            }
            if let Some(usage) = &self.usage {
                reply.insert("usage".to_string(), usage.clone());
            }
            Response {
                status: self.status,
                body: Value::Object(reply).to_string().into_bytes(),
            }
        });
        Exchange {
            method: self.method.clone(),
            path: self.path.clone(),
            headers,
            body,
            response,
        }
    }
}

/// Nanoseconds since the epoch of an RFC 3339 time.
pub fn parse_time(text: &str) -> Result<i64, String> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .and_then(|time| time.timestamp_nanos_opt())
        .ok_or_else(|| format!("{text:?} is not an RFC 3339 time (like 2026-03-02T09:30:00Z)"))
}

/// RFC 3339 in UTC, to the second (as the usage endpoint writes times).
pub fn format_time(nanos: i64) -> String {
    crate::admission::rfc3339(nanos)
}

/// A wall-clock time in a zone, to the second, without offset (`2026-03-01T00:00:00`).
pub fn format_local(zone: &crate::zone::Zone, nanos: i64) -> String {
    zone.local_datetime(nanos)
        .format("%Y-%m-%dT%H:%M:%S")
        .to_string()
}
