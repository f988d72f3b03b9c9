//! What the filter charged, in Envoy's access log: envoy/envoy.yaml turns `filter_state` on
//! and prints `%FILTER_STATE(wasm.governance.*:PLAIN)%` as one JSON line per request on
//! stdout (the harness writes Envoy's stdout to its log). Run for real, a JSON response, a
//! stream charged at the end of its body, and a request the client gave up on (charged when
//! the stream ends) each show their key, team, model, tokens and cost.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::shipped::{repo_path, run_shipped};
use envoy_harness::{Request, Stack};
use serde_json::{json, Value};

const KEY: &str = "sk-vk-platform-app-example";

/// The access-log lines (JSON objects) whose path is `path`, waiting up to 10 s for one.
fn access_log_line(s: &Stack, path: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found = s
            .envoy
            .log()
            .lines()
            .filter(|line| line.starts_with('{'))
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .find(|line| line["path"] == path);
        if let Some(line) = found {
            return line;
        }
        assert!(
            Instant::now() < deadline,
            "no access-log line for {path}; Envoy's log:\n{}",
            s.envoy.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn governance_fields(line: &Value) -> Value {
    json!({
        "virtual_key": line["virtual_key"],
        "team": line["team"],
        "customer": line["customer"],
        "model": line["model"],
        "prompt_tokens": line["prompt_tokens"],
        "output_tokens": line["output_tokens"],
        "cost_usd": line["cost_usd"],
    })
}

/// 100 prompt and 20 output tokens of gpt-4o-mini at the shipped prices:
/// 100 × 1.5e-7 + 20 × 6e-7 USD.
fn charged_100_20() -> Value {
    json!({
        "virtual_key": "vk-platform-app",
        "team": "platform",
        "customer": null,
        "model": "gpt-4o-mini",
        "prompt_tokens": "100",
        "output_tokens": "20",
        "cost_usd": "0.000027",
    })
}

fn chat(stream: bool) -> Value {
    json!({"model": "gpt-4o-mini", "stream": stream,
        "messages": [{"role": "user", "content": "hi"}]})
}

#[test]
fn the_reference_access_log_prints_what_each_exchange_was_charged() {
    let s = run_shipped(&repo_path("envoy/envoy.yaml"), 2);

    // A JSON response: charged at the end of its body.
    let path = "/v1/chat/completions?case=json";
    let resp = s
        .client()
        .send(
            &Request::post(path)
                .bearer(KEY)
                .header("x-mock-usage", "prompt=100,completion=20")
                .json(&chat(false)),
        )
        .unwrap();
    assert_eq!(resp.status, 200, "{}", resp.text());
    let line = access_log_line(&s, path);
    assert_eq!(line["status"], json!(200));
    assert_eq!(governance_fields(&line), charged_100_20(), "{line}");

    // A stream: its usage comes in the last event, charged when the body ends.
    let path = "/v1/chat/completions?case=stream";
    let resp = s
        .client()
        .send(
            &Request::post(path)
                .bearer(KEY)
                .header("x-mock-usage", "prompt=100,completion=20")
                .header("x-mock-chunks", "4")
                .json(&chat(true)),
        )
        .unwrap();
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.sse_data().last().map(String::as_str), Some("[DONE]"));
    let line = access_log_line(&s, path);
    assert_eq!(governance_fields(&line), charged_100_20(), "{line}");

    // Refused: never charged, so nothing is printed for the filter's fields.
    let path = "/v1/chat/completions?case=refused";
    let resp = s
        .client()
        .send(
            &Request::post(path)
                .bearer(KEY)
                .json(&json!({"model": "o1", "messages": []})),
        )
        .unwrap();
    assert_eq!(resp.status, 403, "{}", resp.text());
    let line = access_log_line(&s, path);
    assert_eq!(line["virtual_key"], Value::Null, "{line}");
    assert_eq!(line["cost_usd"], Value::Null, "{line}");
    s.envoy.stop();
}

/// The client goes away while the upstream holds its answer: the filter charges the
/// exchange's estimate when the stream ends (Envoy's on_log), and the access log, written
/// after it, still shows that charge.
#[test]
fn an_exchange_charged_when_the_client_went_away_is_in_the_access_log() {
    let s = run_shipped(&repo_path("envoy/envoy.yaml"), 1);
    let path = "/v1/chat/completions?case=gone";
    let body = serde_json::to_vec(&chat(false)).unwrap();
    let mut conn = TcpStream::connect(s.envoy.listen_addr()).unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: example.com\r\nauthorization: Bearer {KEY}\r\n\
         content-type: application/json\r\nx-mock-gate: never\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).unwrap();
    conn.write_all(&body).unwrap();
    assert!(
        s.mock.wait_for_requests(1, Duration::from_secs(10)),
        "the request reached the upstream"
    );
    conn.shutdown(std::net::Shutdown::Both).unwrap();
    let mut rest = Vec::new();
    let _ = conn.read_to_end(&mut rest);
    drop(conn);
    let line = access_log_line(&s, path);
    assert_eq!(line["virtual_key"], json!("vk-platform-app"), "{line}");
    assert_eq!(line["model"], json!("gpt-4o-mini"), "{line}");
    // No usage came: the exchange's estimate, the request's bytes as prompt tokens and
    // the default output cap (4096, reservation's default_max_output_tokens) as output.
    assert_eq!(line["output_tokens"], json!("4096"), "{line}");
    let prompt: u64 = line["prompt_tokens"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("prompt tokens in {line}"));
    assert!(prompt > 0, "{line}");
    let cost: f64 = line["cost_usd"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("cost in {line}"));
    assert!(cost > 0.0, "{line}");
    s.envoy.stop();
}
