//! The module loads in a real Envoy and requests pass through to the mock upstream and back.

mod common;

use common::{chat, stack, KEY};
use envoy_harness::Request;
use serde_json::json;
use std::time::Duration;

#[test]
fn json_request_passes_through() {
    let s = stack();
    let resp = s
        .client()
        .send(
            &Request::post("/v1/chat/completions")
                .header("x-bf-vk", KEY)
                .header("x-mock-usage", "prompt=100,completion=20")
                .json(&chat(false)),
        )
        .expect("request through Envoy");
    assert_eq!(resp.status, 200, "body: {}", resp.text());
    let body = resp.json().expect("JSON body");
    assert_eq!(body["usage"]["prompt_tokens"], 100);
    assert_eq!(body["usage"]["completion_tokens"], 20);
    assert!(s.mock.wait_for_requests(1, Duration::from_secs(5)));
    let seen = s.mock.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/v1/chat/completions");
    assert_eq!(seen[0].json().unwrap()["model"], "gpt-4o-mini");
}

#[test]
fn sse_streams_pass_through() {
    let s = stack();
    let c = s.client();
    let resp = c
        .send(
            &Request::post("/v1/chat/completions")
                .header("x-bf-vk", KEY)
                .header("x-mock-usage", "prompt=7,completion=3")
                .json(&chat(true)),
        )
        .expect("stream through Envoy");
    assert_eq!(resp.status, 200, "body: {}", resp.text());
    assert_eq!(resp.header("content-type"), Some("text/event-stream"));
    let data = resp.sse_data();
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let usage_chunk: serde_json::Value = serde_json::from_str(&data[data.len() - 2]).unwrap();
    assert_eq!(usage_chunk["usage"]["prompt_tokens"], 7);

    let resp = c
        .send(
            &Request::post("/v1/messages")
                .header("x-bf-vk", KEY)
                .header("x-mock-usage", "prompt=11,completion=4,cached=2")
                .json(
                    &json!({"model": "claude-sonnet-4-5", "stream": true, "max_tokens": 64,
                    "messages": [{"role": "user", "content": "hi"}]}),
                ),
        )
        .expect("anthropic stream through Envoy");
    assert_eq!(resp.status, 200, "body: {}", resp.text());
    let text = resp.text();
    assert!(text.contains("event: message_start"), "{text}");
    assert!(text.contains("\"output_tokens\":4"), "{text}");
    assert!(text.contains("event: message_stop"), "{text}");
}

#[test]
fn large_request_body_reaches_upstream() {
    let s = stack();
    let filler = "x".repeat(5 * 1024 * 1024);
    let body = json!({"model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": filler}]});
    let req = Request::post("/v1/chat/completions")
        .header("x-bf-vk", KEY)
        .json(&body);
    let sent_len = req.body.len();
    let resp = s.client().send(&req).expect("5 MB request through Envoy");
    assert_eq!(resp.status, 200, "body: {}", resp.text());
    let seen = s.mock.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].body_len, sent_len);
}

#[test]
fn stats_show_the_wasm_vms() {
    let s = stack();
    let resp = s
        .client()
        .send(&Request::get("/v1/models").header("x-bf-vk", KEY))
        .expect("request through Envoy");
    assert_eq!(resp.status, 200, "body: {}", resp.text());
    let stats = s.envoy.stats().expect("admin /stats");
    // 4 workers + main thread + the canary VM.
    assert_eq!(
        s.envoy
            .counter("wasm.envoy.wasm.runtime.v8.active")
            .unwrap(),
        Some(6),
        "stats: {stats:?}"
    );
    assert!(stats.contains_key("wasm.governance.vm_reload"), "{stats:?}");
}

#[test]
fn dropping_the_stack_stops_envoy() {
    let s = stack();
    let pid = s.envoy.pid().expect("a running Envoy");
    let proc_dir = std::path::PathBuf::from(format!("/proc/{pid}"));
    assert!(proc_dir.exists());
    let config = s.envoy.config_path().to_path_buf();
    drop(s);
    // The child was reaped by the guard, so the pid is gone (bounded wait for safety).
    for _ in 0..50 {
        if !proc_dir.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!proc_dir.exists(), "Envoy (pid {pid}) still running");
    assert!(
        !config.exists(),
        "temporary files left at {}",
        config.display()
    );
}

#[test]
fn gemini_and_responses_pass_through_on_one_connection() {
    let s = stack();
    let mut conn = s.client().connect().expect("connect to Envoy");
    let gemini = conn
        .send(
            &Request::post("/v1beta/models/gemini-2.5-flash:generateContent")
                .header("x-bf-vk", KEY)
                .header("x-mock-usage", "prompt=12,completion=3,thoughts=2")
                .json(&json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]})),
        )
        .expect("gemini through Envoy");
    assert_eq!(gemini.status, 200, "body: {}", gemini.text());
    assert_eq!(
        gemini.json().unwrap()["usageMetadata"]["thoughtsTokenCount"],
        2
    );
    let stream = conn
        .send(
            &Request::post("/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse")
                .header("x-bf-vk", KEY)
                .json(&json!({"contents": []})),
        )
        .expect("gemini stream through Envoy");
    assert_eq!(stream.status, 200, "body: {}", stream.text());
    assert_eq!(stream.sse_data().len(), 3);
    let responses = conn
        .send(
            &Request::post("/v1/responses")
                .header("x-bf-vk", KEY)
                .json(&json!({"model": "gpt-4o-mini", "input": "hi", "stream": true})),
        )
        .expect("responses stream through Envoy");
    assert_eq!(responses.status, 200, "body: {}", responses.text());
    assert!(responses.text().contains("response.completed"));
    assert!(!conn.is_closed());
    assert_eq!(s.mock.request_count(), 3);
}

#[test]
fn concurrent_burst_over_four_workers() {
    let s = stack();
    let c = s.client();
    let statuses = envoy_harness::concurrently(32, |i| {
        c.send(
            &Request::post("/v1/chat/completions")
                .header("x-bf-vk", KEY)
                .json(&chat(i % 2 == 0)),
        )
        .map(|r| r.status)
        .unwrap_or(0)
    });
    assert!(statuses.iter().all(|&st| st == 200), "{statuses:?}");
    assert_eq!(s.mock.request_count(), 32);
    // Downstream requests as Envoy counted them (all workers together).
    let total = s
        .envoy
        .wait_for_counter(
            "http.llm_ingress.downstream_rq_2xx",
            |v| v == Some(32),
            Duration::from_secs(5),
        )
        .unwrap();
    assert_eq!(total, Some(32));
}
