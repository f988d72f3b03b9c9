//! The governance promises (docs/clients.md, docs/accounting.md, docs/windows.md,
//! docs/operating.md) in a real Envoy with 4 workers and 16 parallel clients: the counters
//! are shared by every worker's VM through shared data.

mod common;

use std::time::Duration;

use envoy_harness::{concurrently, Request, Stack};
use serde_json::{json, Value};

const ADMIN_KEY: &str = "e2e-admin-secret";
/// sha256("e2e-admin-secret")
const ADMIN_SHA256: &str = "d91a7908c60164ada2ce2a0828f7e70aab608705f8d6a55abe04b1101cfd33f6";

fn start(config: Value) -> Stack {
    match Stack::start(&config.to_string()) {
        Ok(stack) => stack,
        Err(err) => panic!("{err}"),
    }
}

fn pricing() -> Value {
    json!({
        "gpt-4o-mini": {"input_cost_per_token": 1.5e-7, "output_cost_per_token": 6e-7},
        "claude-sonnet-4*": {"input_cost_per_token": 3e-6, "output_cost_per_token": 1.5e-5}
    })
}

fn chat(key: &str, stream: bool, usage: &str) -> Request {
    Request::post("/v1/chat/completions")
        .bearer(key)
        .header("x-mock-usage", usage)
        .json(&json!({"model": "gpt-4o-mini", "stream": stream,
            "messages": [{"role": "user", "content": "hi"}]}))
}

/// The admin view of one counter from the filter's usage endpoint.
fn usage(stack: &Stack, id: &str, kind: &str) -> Value {
    let response = stack
        .client()
        .send(&Request::get("/governance/usage").bearer(ADMIN_KEY))
        .expect("usage endpoint");
    assert_eq!(response.status, 200, "{}", response.text());
    let body = response.json().expect("usage JSON");
    body.get("counters")
        .and_then(Value::as_array)
        .and_then(|all| {
            all.iter()
                .find(|c| c["id"] == id && c["kind"] == kind)
                .cloned()
        })
        .unwrap_or_else(|| panic!("no {kind} counter for {id} in {body}"))
}

#[test]
fn exactly_max_requests_are_admitted_across_four_workers() {
    let stack = start(json!({
        "usage_endpoint": {"path": "/governance/usage", "admin_key_sha256": ADMIN_SHA256},
        "pricing": pricing(),
        "virtual_keys": [{"id": "hot", "value": "sk-hot",
            "rate_limit": {"request_max_limit": 50, "request_reset_duration": "1h"}}]
    }));
    let statuses: Vec<Vec<u16>> = concurrently(16, |_| {
        let client = stack.client();
        (0..13)
            .map(|_| {
                client
                    .send(&chat("sk-hot", false, "prompt=1,completion=1"))
                    .map_or(0, |r| r.status)
            })
            .collect()
    });
    let all: Vec<u16> = statuses.into_iter().flatten().collect();
    assert_eq!(all.len(), 208);
    assert_eq!(
        all.iter().filter(|s| **s == 200).count(),
        50,
        "exactly the limit, over 4 workers"
    );
    assert_eq!(all.iter().filter(|s| **s == 429).count(), 158);
    assert_eq!(
        stack.mock.request_count(),
        50,
        "refused requests never reached upstream"
    );
    assert_eq!(usage(&stack, "hot", "requests")["used"], 50);
    assert_eq!(
        stack.envoy.counter("governance.admitted").ok().flatten(),
        Some(50)
    );
    assert_eq!(
        stack
            .envoy
            .counter("governance.rejected.request_limited")
            .ok()
            .flatten(),
        Some(158)
    );
}

#[test]
fn tokens_and_spend_sum_exactly_and_a_spent_budget_answers_402() {
    let stack = start(json!({
        "usage_endpoint": {"path": "/governance/usage", "admin_key_sha256": ADMIN_SHA256},
        "pricing": pricing(),
        "teams": [{"id": "t", "budgets": [{"max_limit": 0.05, "reset_duration": "1d"}]}],
        "virtual_keys": [{"id": "k", "value": "sk-k", "team_id": "t",
            "rate_limit": {"token_max_limit": 100000000, "token_reset_duration": "1h"}}]
    }));
    // 16 clients × 8 requests, half streamed, each with its own usage.
    let charges: Vec<Vec<(u64, u64)>> = concurrently(16, |i| {
        let client = stack.client();
        (0..8u64)
            .map(|j| {
                let (prompt, completion) = (100 + i as u64, 10 + j);
                let usage = format!("prompt={prompt},completion={completion}");
                let response = client
                    .send(&chat("sk-k", j % 2 == 0, &usage))
                    .expect("response");
                assert_eq!(response.status, 200, "{}", response.text());
                (prompt, completion)
            })
            .collect()
    });
    let all: Vec<(u64, u64)> = charges.into_iter().flatten().collect();
    let tokens: u64 = all.iter().map(|(p, c)| p + c).sum();
    let spend: f64 = all
        .iter()
        .map(|(p, c)| *p as f64 * 1.5e-7 + *c as f64 * 6e-7)
        .sum();
    stack
        .envoy
        .wait_for_counter(
            "governance.tokens_charged",
            |v| v == Some(tokens),
            Duration::from_secs(5),
        )
        .expect("every response charged");
    assert_eq!(usage(&stack, "k", "tokens")["used"], tokens);
    let spent = usage(&stack, "t", "budget")["used"]
        .as_f64()
        .unwrap_or(f64::NAN);
    assert!(
        (spent - spend).abs() < 1e-9,
        "spent {spent}, charged {spend}"
    );

    // Spend the rest of the team budget in one expensive call, then the next is 402.
    let big = client_send(
        &stack,
        chat("sk-k", false, "prompt=100000,completion=100000"),
    );
    assert_eq!(big, 200);
    let refused = stack
        .client()
        .send(&chat("sk-k", false, "prompt=1,completion=1"))
        .expect("response");
    assert_eq!(refused.status, 402);
    assert_eq!(refused.error_type().as_deref(), Some("budget_exceeded"));
    assert!(refused.header("retry-after").is_some());
}

fn client_send(stack: &Stack, request: Request) -> u16 {
    stack.client().send(&request).map_or(0, |r| r.status)
}

#[test]
fn a_stream_flows_before_upstream_finishes_and_is_charged() {
    let stack = start(json!({
        "usage_endpoint": {"path": "/governance/usage", "admin_key_sha256": ADMIN_SHA256},
        "pricing": pricing(),
        "virtual_keys": [{"id": "s", "value": "sk-s",
            "rate_limit": {"token_max_limit": 1000000, "token_reset_duration": "1h"}}]
    }));
    let request = chat("sk-s", true, "prompt=321,completion=123")
        .header("x-mock-chunks", "5")
        .header("x-mock-chunk-delay-ms", "300");
    let response = stack.client().send(&request).expect("stream");
    assert_eq!(response.status, 200);
    let first = response.first_body_byte_at.expect("a body");
    let held = response.done_at.duration_since(first);
    assert!(
        held >= Duration::from_millis(900),
        "first bytes came {held:?} before the end: nothing held back"
    );
    stack
        .envoy
        .wait_for_counter(
            "governance.tokens_charged",
            |v| v == Some(444),
            Duration::from_secs(5),
        )
        .expect("the streamed usage is charged");
    assert_eq!(usage(&stack, "s", "tokens")["used"], 444);
}

#[test]
fn a_short_window_reopens() {
    let stack = start(json!({
        "pricing": pricing(),
        "virtual_keys": [{"id": "w", "value": "sk-w",
            "rate_limit": {"request_max_limit": 2, "request_reset_duration": "2s"}}]
    }));
    assert_eq!(
        client_send(&stack, chat("sk-w", false, "prompt=1,completion=1")),
        200
    );
    assert_eq!(
        client_send(&stack, chat("sk-w", false, "prompt=1,completion=1")),
        200
    );
    let refused = stack
        .client()
        .send(&chat("sk-w", false, "prompt=1,completion=1"))
        .expect("response");
    assert_eq!(refused.status, 429);
    let wait: u64 = refused
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("retry-after");
    assert!((1..=2).contains(&wait), "retry-after {wait}");
    std::thread::sleep(Duration::from_secs(wait) + Duration::from_millis(100));
    assert_eq!(
        client_send(&stack, chat("sk-w", false, "prompt=1,completion=1")),
        200,
        "the window reopened"
    );
    let stats = stack.envoy.stats().expect("stats");
    for name in [
        "admitted",
        "rejected",
        "rejected.request_limited",
        "cas_conflicts",
        "store_failures",
        "tokens_charged",
    ] {
        assert!(
            stats.contains_key(&format!("wasmcustom.governance.{name}")),
            "missing governance.{name}"
        );
    }
}

/// docs/reservations.md in a real Envoy: 32 clients on 4 workers send at once, the upstream answers
/// each after 3 s, so every request is in flight before any is settled. Each request's
/// estimate is held on the budget before it goes upstream: no more are admitted than the
/// estimates fit, and the spend stays within the budget.
#[test]
fn reservations_bound_a_burst_in_flight_across_four_workers() {
    let stack = start(json!({
        "usage_endpoint": {"path": "/governance/usage", "admin_key_sha256": ADMIN_SHA256},
        "pricing": pricing(),
        "reservation": {"enabled": true},
        "virtual_keys": [{"id": "k", "value": "sk-k",
            "budgets": [{"max_limit": 0.001, "reset_duration": "1d"}]}]
    }));
    let body = json!({"model": "gpt-4o-mini", "max_tokens": 200,
        "messages": [{"role": "user", "content": "hi"}]});
    let body_len = serde_json::to_vec(&body).map_or(0, |b| b.len()) as u64;
    let estimate = body_len.div_ceil(4) as f64 * 1.5e-7 + 200.0 * 6e-7;
    let fits = (0.001 / estimate).floor() as usize;
    let statuses: Vec<u16> = concurrently(32, |_| {
        let request = Request::post("/v1/chat/completions")
            .bearer("sk-k")
            .header("x-mock-usage", "prompt=20,completion=150")
            .header("x-mock-delay-ms", "3000")
            .json(&body);
        stack.client().send(&request).map_or(0, |r| r.status)
    });
    let admitted = statuses.iter().filter(|s| **s == 200).count();
    assert_eq!(
        admitted + statuses.iter().filter(|s| **s == 402).count(),
        32,
        "{statuses:?}"
    );
    assert!(
        admitted >= fits && admitted < 32,
        "{admitted} admitted, {fits} estimates fit"
    );
    // A refusal at the end of the body comes after the head went upstream (docs/clients.md);
    // the request never arrives whole.
    assert_eq!(stack.mock.complete_count(), admitted);
    let budget = usage(&stack, "k", "budget");
    let spent = budget["used"].as_f64().unwrap_or(f64::NAN);
    let expected = admitted as f64 * (20.0 * 1.5e-7 + 150.0 * 6e-7);
    assert!((spent - expected).abs() < 1e-12, "spent {spent}");
    assert!(spent <= 0.001, "spent {spent} of 0.001");
    assert_eq!(budget["reserved"], 0.0, "every hold settled: {budget}");
}

/// What a refused request lets reach the upstream (docs/clients.md, "What reaches the
/// upstream"): a refusal decided at the request headers, nothing; one decided at the request
/// body (here the model the body names), at most the head and the body's first bytes, never
/// the whole request.
#[test]
fn a_refusal_at_headers_sends_nothing_upstream_and_one_at_the_body_never_the_whole_request() {
    use std::io::{Read, Write};
    let stack = start(json!({
        "pricing": pricing(),
        "virtual_keys": [{"id": "k", "value": "sk-k", "allowed_models": ["gpt-4o-mini"]}]
    }));
    let refused = stack
        .client()
        .send(&chat("sk-unknown", false, "prompt=1,completion=1"))
        .unwrap();
    assert_eq!(refused.status, 401);
    assert_eq!(
        stack.mock.request_count(),
        0,
        "decided at headers: nothing upstream"
    );

    // The head alone first: Envoy passes it on, since the model is still to come.
    let body =
        json!({"model": "gpt-4.1", "messages": [{"role": "user", "content": "hi"}]}).to_string();
    let mut conn = std::net::TcpStream::connect(stack.envoy.listen_addr()).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    write!(
        conn,
        "POST /v1/chat/completions HTTP/1.1\r\nhost: llm\r\nauthorization: Bearer sk-k\r\n\
         content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    assert!(
        stack.mock.wait_for_requests(1, Duration::from_secs(10)),
        "the head went upstream before the body was read"
    );
    conn.write_all(body.as_bytes()).unwrap();
    let mut reply = String::new();
    let _ = conn.read_to_string(&mut reply);
    assert!(reply.starts_with("HTTP/1.1 403"), "{reply}");
    assert!(reply.contains("model_blocked"), "{reply}");
    let upstream = &stack.mock.requests()[0];
    assert!(
        !upstream.complete,
        "the upstream never got the whole request: {} of {} bytes",
        upstream.body_len,
        body.len()
    );
}
