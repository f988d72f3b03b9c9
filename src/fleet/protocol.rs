//! Limitador's HTTP API as the filter uses it: the calls it makes and how it reads the
//! answers. Nothing else is assumed of the server, so the official image is what operators
//! run (the routes and shapes are those of limitador-server).
//!
//! - `POST /check`, `/report`, `/check_and_report` with `{"namespace", "values", "delta"}`:
//!   200 (fits, or reported) or 429 (limited); `check_and_report` with
//!   `"response_headers": "DraftVersion03"` also answers `X-RateLimit-Remaining` and
//!   `X-RateLimit-Reset` (seconds) of the counter.
//! - `GET /limits/{namespace}`: the limits Limitador holds; `GET /counters/{namespace}`: its
//!   counters, `[{"limit", "set_variables", "remaining", "expires_in_seconds"}]`.

use serde::{Deserialize, Serialize};

use super::limits::LimitadorLimit;

/// An HTTP call to Limitador, for the host to dispatch to the fleet cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub method: &'static str,
    pub path: String,
    /// JSON, empty for `GET`.
    pub body: Vec<u8>,
}

/// The three counter operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Does `delta` still fit? Counts nothing.
    Check,
    /// Add `delta`; never refused.
    Report,
    /// Add `delta` if it fits, else count nothing and answer 429.
    CheckAndReport,
}

impl Operation {
    fn path(self) -> &'static str {
        match self {
            Operation::Check => "/check",
            Operation::Report => "/report",
            Operation::CheckAndReport => "/check_and_report",
        }
    }
}

#[derive(Serialize)]
struct Body<'a> {
    namespace: &'a str,
    values: Values<'a>,
    delta: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_headers: Option<&'static str>,
}

#[derive(Serialize)]
struct Values<'a> {
    limit: &'a str,
    window: &'a str,
    /// A `per_value` template's counters are one per value: the hex SHA-256 of the value.
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<&'a str>,
}

/// A counter operation on the limit `limit_id` of `namespace`, in window `window` (and, for
/// a `per_value` template, the counter of `value`).
pub fn counter_call(
    operation: Operation,
    namespace: &str,
    limit_id: &str,
    window: &str,
    value: Option<&str>,
    delta: u64,
) -> Call {
    let body = Body {
        namespace,
        values: Values {
            limit: limit_id,
            window,
            value,
        },
        delta,
        // Only check_and_report answers with the counter's remaining and reset.
        response_headers: (operation == Operation::CheckAndReport).then_some("DraftVersion03"),
    };
    Call {
        method: "POST",
        path: operation.path().to_string(),
        body: serde_json::to_vec(&body).unwrap_or_default(),
    }
}

/// `GET /limits/{namespace}`.
pub fn limits_call(namespace: &str) -> Call {
    Call {
        method: "GET",
        path: format!("/limits/{}", escape_segment(namespace)),
        body: Vec::new(),
    }
}

/// `GET /counters/{namespace}`.
pub fn counters_call(namespace: &str) -> Call {
    Call {
        method: "GET",
        path: format!("/counters/{}", escape_segment(namespace)),
        body: Vec::new(),
    }
}

/// Percent-encodes what a path segment may not hold as is (owner ids are free text).
fn escape_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~:@!$&'()*+,;=".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// What came back from a call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answer {
    /// `None`: no response at all (connection reset, dispatch refused by the host).
    pub status: Option<u16>,
    /// `X-RateLimit-Remaining`, when answered.
    pub remaining: Option<u64>,
    /// `X-RateLimit-Reset` in seconds, when answered.
    pub reset_secs: Option<u64>,
    pub body: Vec<u8>,
}

impl Answer {
    /// No answer (the call could not be made, or the connection broke).
    pub fn failed() -> Self {
        Self::default()
    }

    /// What the answer says of a counter operation.
    pub fn verdict(&self) -> Verdict {
        match self.status {
            Some(200) => Verdict::Fits,
            Some(429) => Verdict::Limited,
            _ => Verdict::Unavailable,
        }
    }
}

/// A counter operation's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Fits,
    Limited,
    /// Unreachable, timed out (Envoy answers 504), 5xx, or anything unexpected.
    Unavailable,
}

/// The limits in a `GET /limits/{namespace}` answer, if it is one.
pub fn parse_limits(answer: &Answer) -> Option<Vec<LimitadorLimit>> {
    if answer.status != Some(200) {
        return None;
    }
    serde_json::from_slice(&answer.body).ok()
}

/// One counter of a `GET /counters/{namespace}` answer.
#[derive(Debug, Clone, Deserialize)]
pub struct CounterState {
    pub limit: LimitadorLimit,
    #[serde(default)]
    pub set_variables: std::collections::BTreeMap<String, String>,
    /// What is left: `max_value - used`, which Limitador writes as a wrapped `u64` once a
    /// report has pushed the counter past its maximum.
    pub remaining: Option<u64>,
    pub expires_in_seconds: Option<u64>,
}

impl CounterState {
    /// What the counter has used (past the maximum too, undoing Limitador's wrap-around).
    pub fn used(&self) -> u64 {
        let max = self.limit.max_value;
        match self.remaining {
            Some(remaining) if remaining <= max => max.saturating_sub(remaining),
            // A wrapped negative remainder: used = max + (2^64 - remaining).
            Some(remaining) => max.saturating_add(remaining.wrapping_neg()),
            None => 0,
        }
    }

    /// The counter of limit `limit_id` in window `window`.
    pub fn is(&self, limit_id: &str, window: &str, value: Option<&str>) -> bool {
        self.set_variables
            .get("descriptors[0].window")
            .map(String::as_str)
            == Some(window)
            && self
                .set_variables
                .get(super::limits::VALUE_VARIABLE)
                .map(String::as_str)
                == value
            && self
                .limit
                .conditions
                .iter()
                .any(|c| *c == super::limits::condition(limit_id))
    }
}

/// The counters in a `GET /counters/{namespace}` answer, if it is one.
pub fn parse_counters(answer: &Answer) -> Option<Vec<CounterState>> {
    if answer.status != Some(200) {
        return None;
    }
    serde_json::from_slice(&answer.body).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_check_and_report_asks_for_the_counter_headers() {
        let call = counter_call(
            Operation::CheckAndReport,
            "gov:vk:k1",
            "requests:1m:rolling",
            "rolling",
            None,
            1,
        );
        assert_eq!(
            (call.method, call.path.as_str()),
            ("POST", "/check_and_report")
        );
        let body: serde_json::Value = serde_json::from_slice(&call.body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"namespace": "gov:vk:k1",
                "values": {"limit": "requests:1m:rolling", "window": "rolling"},
                "delta": 1, "response_headers": "DraftVersion03"})
        );
        let check = counter_call(Operation::Check, "n", "l", "w", Some("ab12"), 7);
        let body: serde_json::Value = serde_json::from_slice(&check.body).unwrap();
        assert_eq!(body.get("response_headers"), None);
        assert_eq!(
            body["values"],
            serde_json::json!({"limit": "l", "window": "w", "value": "ab12"})
        );
        assert_eq!(check.path, "/check");
    }

    #[test]
    fn namespaces_in_paths_are_escaped() {
        assert_eq!(
            limits_call("gov:provider:k1:openai").path,
            "/limits/gov:provider:k1:openai"
        );
        assert_eq!(limits_call("a b/c").path, "/limits/a%20b%2Fc");
        assert_eq!(counters_call("gov:team:ml").path, "/counters/gov:team:ml");
    }

    #[test]
    fn used_undoes_the_wrapped_remainder() {
        let state = |remaining: u64| CounterState {
            limit: LimitadorLimit {
                namespace: "n".into(),
                max_value: 100,
                seconds: 60,
                name: None,
                conditions: vec![],
                variables: vec![],
            },
            set_variables: Default::default(),
            remaining: Some(remaining),
            expires_in_seconds: None,
        };
        assert_eq!(state(40).used(), 60);
        assert_eq!(state(0).used(), 100);
        assert_eq!(state(u64::MAX - 3).used(), 104, "-4 wrapped");
    }
}
