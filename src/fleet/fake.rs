//! A Limitador in memory for the core's native tests: the HTTP API's semantics as the
//! filter relies on them (fixed windows from a counter's first hit, 200/429, never-refused
//! reports, 200 for a call that matches no limit), on a clock the test moves.

#![allow(clippy::arithmetic_side_effects, reason = "test arithmetic")]

use std::collections::HashMap;

use serde::Deserialize;

use super::limits::LimitadorLimit;
use super::protocol::{Answer, Call};

#[derive(Debug, Default)]
pub struct FakeLimitador {
    pub limits: Vec<LimitadorLimit>,
    /// (namespace, condition, window) -> (used, expires at, ns)
    counters: HashMap<(String, String, String), (u64, i64)>,
    /// Every call answered, in order.
    pub log: Vec<Call>,
    /// Answer every call with this status instead (an outage), or `None` (no answer).
    pub down: Option<Option<u16>>,
}

#[derive(Deserialize)]
struct Body {
    namespace: String,
    values: HashMap<String, String>,
    delta: u64,
}

impl FakeLimitador {
    pub fn new(limits: Vec<LimitadorLimit>) -> Self {
        Self {
            limits,
            ..Self::default()
        }
    }

    /// Used units of the counter of `limit_id` in `window` of `namespace` at `now`.
    pub fn used(&self, namespace: &str, limit_id: &str, window: &str, now: i64) -> u64 {
        let key = (
            namespace.to_string(),
            super::limits::condition(limit_id),
            window.to_string(),
        );
        match self.counters.get(&key) {
            Some((used, expires)) if now < *expires => *used,
            _ => 0,
        }
    }

    pub fn answer(&mut self, call: &Call, now: i64) -> Answer {
        self.log.push(call.clone());
        if let Some(status) = self.down {
            return Answer {
                status,
                ..Answer::default()
            };
        }
        let ok = |body: Vec<u8>| Answer {
            status: Some(200),
            body,
            ..Answer::default()
        };
        if let Some(namespace) = call.path.strip_prefix("/limits/") {
            let held: Vec<&LimitadorLimit> = self
                .limits
                .iter()
                .filter(|l| l.namespace == namespace)
                .collect();
            return ok(serde_json::to_vec(&held).unwrap_or_default());
        }
        if let Some(namespace) = call.path.strip_prefix("/counters/") {
            let list: Vec<serde_json::Value> =
                self.counters
                    .iter()
                    .filter(|((ns, _, _), (_, expires))| ns == namespace && now < *expires)
                    .filter_map(|((_, condition, window), (used, expires))| {
                        let limit = self.limits.iter().find(|l| {
                            l.namespace == namespace && l.conditions.contains(condition)
                        })?;
                        let variables = match window.split_once('#') {
                            Some((window, value)) => serde_json::json!({
                                "descriptors[0].window": window, "descriptors[0].value": value}),
                            None => serde_json::json!({"descriptors[0].window": window}),
                        };
                        Some(serde_json::json!({
                            "limit": limit,
                            "set_variables": variables,
                            "remaining": limit.max_value.wrapping_sub(*used),
                            "expires_in_seconds": (expires - now) / 1_000_000_000,
                        }))
                    })
                    .collect();
            return ok(serde_json::to_vec(&list).unwrap_or_default());
        }
        let Ok(body) = serde_json::from_slice::<Body>(&call.body) else {
            return Answer {
                status: Some(400),
                ..Answer::default()
            };
        };
        let limit_value = body.values.get("limit").cloned().unwrap_or_default();
        let mut window = body.values.get("window").cloned().unwrap_or_default();
        // A per-value counter: one per value, kept as `<window>#<value>`.
        if let Some(value) = body.values.get("value") {
            window = format!("{window}#{value}");
        }
        let condition = super::limits::condition(&limit_value);
        let Some(limit) = self
            .limits
            .iter()
            .find(|l| l.namespace == body.namespace && l.conditions.contains(&condition))
            .cloned()
        else {
            return ok(Vec::new());
        };
        let key = (body.namespace.clone(), condition, window);
        let (used, expires) = match self.counters.get(&key) {
            Some((used, expires)) if now < *expires => (*used, *expires),
            _ => (
                0,
                now + i64::try_from(limit.seconds).unwrap_or(0) * 1_000_000_000,
            ),
        };
        let fits = used.saturating_add(body.delta) <= limit.max_value;
        let reset = u64::try_from((expires - now) / 1_000_000_000).unwrap_or(0);
        match call.path.as_str() {
            "/check" => Answer {
                status: Some(if fits { 200 } else { 429 }),
                ..Answer::default()
            },
            "/report" => {
                self.counters
                    .insert(key, (used.saturating_add(body.delta), expires));
                ok(Vec::new())
            }
            "/check_and_report" => {
                let used = if fits {
                    used.saturating_add(body.delta)
                } else {
                    used
                };
                if fits || self.counters.contains_key(&key) {
                    self.counters.insert(key, (used, expires));
                }
                Answer {
                    status: Some(if fits { 200 } else { 429 }),
                    remaining: Some(limit.max_value.saturating_sub(used)),
                    reset_secs: Some(reset),
                    body: Vec::new(),
                }
            }
            _ => Answer {
                status: Some(404),
                ..Answer::default()
            },
        }
    }
}
