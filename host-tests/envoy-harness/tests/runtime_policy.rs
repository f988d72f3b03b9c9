//! Caps on requests in flight and the admin's reset in a real Envoy (docs/clients.md,
//! requests in flight; docs/operating.md, runtime adjustments): a client that goes away
//! gives its slot back through Envoy's stream end, and a reset reached through Envoy's
//! listener lets a refused key in again without the body ever reaching the upstream.

#![allow(
    clippy::indexing_slicing,
    reason = "test code: JSON members read by name, a missing one is null and fails the test"
)]

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use envoy_harness::{Request, Stack};
use serde_json::{json, Value};

const ADMIN_KEY: &str = "e2e-admin-secret";
/// sha256("e2e-admin-secret")
const ADMIN_SHA256: &str = "d91a7908c60164ada2ce2a0828f7e70aab608705f8d6a55abe04b1101cfd33f6";
/// How long a condition may take to become true before the test fails.
const PATIENCE: Duration = Duration::from_secs(20);

fn start(virtual_keys: Value) -> Stack {
    let config = json!({
        "usage_endpoint": {"path": "/governance/usage", "admin_key_sha256": ADMIN_SHA256},
        "pricing": {"gpt-4o-mini": {"input_cost_per_token": 1.5e-7, "output_cost_per_token": 6e-7}},
        "virtual_keys": virtual_keys
    });
    match Stack::start(&config.to_string()) {
        Ok(stack) => stack,
        Err(err) => panic!("{err}"),
    }
}

fn chat(key: &str) -> Request {
    Request::post("/v1/chat/completions")
        .bearer(key)
        .header("x-mock-usage", "prompt=100,completion=150")
        .json(&json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}))
}

fn usage_body(stack: &Stack) -> Value {
    let response = stack
        .client()
        .send(&Request::get("/governance/usage").bearer(ADMIN_KEY))
        .expect("usage endpoint");
    assert_eq!(response.status, 200, "{}", response.text());
    response.json().expect("usage JSON")
}

fn in_flight(stack: &Stack, id: &str) -> u64 {
    let body = usage_body(stack);
    body["in_flight"]
        .as_array()
        .and_then(|all| all.iter().find(|e| e["id"] == id))
        .and_then(|e| e["used"].as_u64())
        .unwrap_or_else(|| panic!("no in_flight entry for {id} in {body}"))
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "still not the case after {PATIENCE:?}: {what}"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_client_that_goes_away_gives_its_in_flight_slot_back() {
    let stack = start(json!([{"id": "k", "value": "sk-k", "rate_limit": {"max_in_flight": 1}}]));
    // A raw connection: the request is sent, held at the mock's gate, and the client then
    // closes its socket without reading an answer.
    let body = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
        .to_string();
    let mut socket = TcpStream::connect(stack.envoy.listen_addr()).expect("connect");
    write!(
        socket,
        "POST /v1/chat/completions HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer sk-k\r\n\
         content-type: application/json\r\nx-mock-gate: held\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    assert!(
        stack.mock.wait_for_requests(1, PATIENCE),
        "the request reached the upstream"
    );
    assert_eq!(in_flight(&stack, "k"), 1);
    let refused = stack.client().send(&chat("sk-k")).expect("second request");
    assert_eq!(refused.status, 429, "{}", refused.text());
    assert_eq!(refused.error_type().as_deref(), Some("concurrency_limited"));
    assert_eq!(refused.header("retry-after"), None);

    drop(socket);
    wait_until("the slot of the client that left is back", || {
        in_flight(&stack, "k") == 0
    });
    stack.mock.open_gate("held");
    let admitted = stack.client().send(&chat("sk-k")).expect("third request");
    assert_eq!(admitted.status, 200, "{}", admitted.text());
    assert_eq!(
        in_flight(&stack, "k"),
        0,
        "given back at the response's end"
    );
}

#[test]
fn an_admin_reset_through_envoy_lets_the_key_in_again() {
    // $0.0001 a day: one exchange of 100 + 150 tokens ($0.000105) spends it.
    let stack = start(json!([{"id": "k", "value": "sk-k",
        "budgets": [{"max_limit": 0.0001, "reset_duration": "1d"}]}]));
    let client = stack.client();
    assert_eq!(client.send(&chat("sk-k")).expect("first").status, 200);
    wait_until("the first exchange is charged", || {
        usage_body(&stack)["counters"][0]["used"].as_f64() > Some(0.0001)
    });
    assert_eq!(client.send(&chat("sk-k")).expect("refused").status, 402);
    let upstream_before = stack.mock.requests().len();

    let reset = Request::post("/governance/usage/reset").json(
        &json!({"owner": "virtual_key", "id": "k", "kind": "budget", "reset_duration": "1d"}),
    );
    let not_admin = client
        .send(&reset.clone().bearer("sk-k"))
        .expect("not admin");
    assert_eq!(not_admin.status, 401, "{}", not_admin.text());
    let bad = client
        .send(
            &Request::post("/governance/usage/credit")
                .bearer(ADMIN_KEY)
                .json(&json!({"owner": "virtual_key", "id": "k", "kind": "budget",
                    "reset_duration": "1d"})),
        )
        .expect("bad body");
    assert_eq!(bad.status, 400, "{}", bad.text());
    assert!(bad
        .error_message()
        .is_some_and(|m| m.contains("\"amount\" is required")));

    let done = client.send(&reset.bearer(ADMIN_KEY)).expect("reset");
    assert_eq!(done.status, 200, "{}", done.text());
    let answer = done.json().expect("JSON answer");
    assert_eq!(answer["counter"]["used"], 0.0);
    assert!(answer["counter"]["used_before"].as_f64() > Some(0.0001));
    let upstream: Vec<_> = stack
        .mock
        .requests()
        .into_iter()
        .skip(upstream_before)
        .collect();
    assert!(
        upstream.iter().all(|r| r.body.is_empty()),
        "no admin body reached the upstream: {upstream:?}"
    );
    assert!(upstream.iter().all(|r| r.header("authorization").is_none()));

    assert_eq!(client.send(&chat("sk-k")).expect("again").status, 200);
}
