//! The Envoy transcripts of `fixtures/callouts/transcripts.txt` and what the host needs to
//! replay them: the normalisation both sides apply, and the mock upstream's answers.

use host_tests::{Callout, CalloutAnswer, CalloutResponse, Headers, Response};
use std::time::Duration;

const TRANSCRIPTS: &str = include_str!("../../fixtures/callouts/transcripts.txt");

/// Keys whose numbers depend on the run (VM numbering, ids, timings), not on behaviour.
const VARIABLE: [&str; 5] = [
    "vm",
    "ctx",
    "token",
    "x-envoy-upstream-service-time",
    "x-mock-request-id",
];

/// Replaces the digits after each `key=` of [`VARIABLE`] with `#` (as the Envoy side does).
pub fn normalize(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    'outer: while !rest.is_empty() {
        if out.is_empty() || out.ends_with([' ', ';']) {
            for key in VARIABLE {
                let Some(after) = rest.strip_prefix(key).and_then(|r| r.strip_prefix('=')) else {
                    continue;
                };
                let digits =
                    after.len() - after.trim_start_matches(|c: char| c.is_ascii_digit()).len();
                if digits > 0 {
                    out.push_str(key);
                    out.push_str("=#");
                    rest = after.get(digits..).unwrap_or("");
                    continue 'outer;
                }
            }
        }
        let mut chars = rest.chars();
        if let Some(c) = chars.next() {
            out.push(c);
        }
        rest = chars.as_str();
    }
    out.trim_end().to_string()
}

/// The lines Envoy logged for scenario `name`.
pub fn expected(name: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut inside = false;
    for line in TRANSCRIPTS.lines() {
        if let Some(section) = line.strip_prefix("== ") {
            inside = section.trim() == name;
            continue;
        }
        if inside && !line.starts_with('#') && !line.trim().is_empty() {
            lines.push(line.trim_end().to_string());
        }
    }
    assert!(!lines.is_empty(), "no transcript named {name}");
    lines
}

/// The mock upstream's body for `x-mock-status: <status>`.
pub fn mock_body(status: u32) -> String {
    format!(
        r#"{{"error":{{"code":"mock_error","message":"mock status {status}","param":null,"type":"mock_error"}}}}"#
    )
}

/// The mock upstream as the `limitador` cluster: `x-mock-status` and `x-mock-delay-ms`.
pub fn mock_answer(call: &Callout) -> CalloutAnswer {
    let status = call
        .header("x-mock-status")
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let answer = CalloutAnswer::respond(
        CalloutResponse::json(status, mock_body(status)).header("x-mock-request-id", "0"),
    );
    match call.header("x-mock-delay-ms").and_then(|d| d.parse().ok()) {
        Some(ms) => answer.after(Duration::from_millis(ms)),
        None => answer,
    }
}

/// The mock's answer to the probe's main request as it reaches the filter through Envoy's
/// router (which adds `x-envoy-upstream-service-time` when the request was complete).
pub fn mock_response(service_time: bool) -> Response {
    let mut r = Response::status(200)
        .body("application/json", mock_body(200))
        .header("x-mock-request-id", "1");
    if service_time {
        r = r.header("x-envoy-upstream-service-time", "0");
    }
    r
}

/// The request headers Envoy gives the filter for the harness client's POST of "hello"
/// (`with_status`: the request also carries `x-mock-status: 200`).
pub fn envoy_request_headers(cmds: &str, with_status: bool) -> Headers {
    let mut h = Headers::from_pairs([
        (":authority", "localhost"),
        (":path", "/v1/chat/completions"),
        (":method", "POST"),
        (":scheme", "http"),
        ("x-probe", cmds),
    ]);
    if with_status {
        h.add("x-mock-status", "200");
    }
    h.add("content-length", "5");
    h.add("x-forwarded-proto", "http");
    h.add("x-request-id", "5f0c1d2e-0000-4000-8000-000000000001");
    h
}
