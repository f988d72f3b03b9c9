//! `reservation.clamp_output` through the real module: a request whose estimate does not
//! fit the room left, but whose prompt does, goes upstream with its output cap lowered to
//! what the room affords (the body rewritten while Envoy holds it), and the client's reply
//! says so; the held estimate is the clamped one, so the bound of reservations holds.

use host_tests::{Exchange, Request, Response};
use serde_json::{json, Value};

use crate::support::*;

/// gpt-4o-mini prices of [`PRICING`] (USD per token).
const INPUT: f64 = 1.5e-7;
const OUTPUT: f64 = 6e-7;

fn clamp_config(clamp: bool, mode: &str, limits: &str) -> String {
    config(&format!(
        r#""mode": "{mode}", "reservation": {{"enabled": true, "clamp_output": {clamp}}},
        "virtual_keys": [{{"id": "k", "value": "sk", {limits}}}]"#
    ))
}

const TOKENS_1000: &str =
    r#""rate_limit": {"token_max_limit": 1000, "token_reset_duration": "1d"}"#;

fn body(max_tokens: u64) -> String {
    format!(
        r#"{{"model":"gpt-4o-mini","max_tokens":{max_tokens},"messages":[{{"role":"user","content":"Say hello"}}]}}"#
    )
}

/// Prompt tokens the filter estimates for `body` (4 bytes a token, rounded up).
fn prompt(body: &str) -> u64 {
    (body.len() as u64).div_ceil(4)
}

fn upstream_json(ex: &Exchange) -> Value {
    serde_json::from_slice(&ex.upstream.body).unwrap_or_else(|err| {
        panic!(
            "upstream body is not JSON ({err}): {}",
            String::from_utf8_lossy(&ex.upstream.body)
        )
    })
}

fn chat_post(body: &str) -> Request {
    Request::post("/v1/chat/completions", body.to_string()).header("authorization", "Bearer sk")
}

#[test]
fn a_request_that_does_not_fit_goes_with_the_output_the_room_affords() {
    let mut host = host(&clamp_config(true, "enforce", TOKENS_1000));
    let big = body(4096);
    let ex = host.vm(0).exchange(&chat_post(&big), &openai_json(20, 30));
    assert_eq!(
        ex.client.status,
        200,
        "{}",
        String::from_utf8_lossy(&ex.client.body)
    );
    let cap = 1000 - prompt(&big);
    let mut want: Value = serde_json::from_str(&big).unwrap();
    want["max_tokens"] = json!(cap);
    assert_eq!(upstream_json(&ex), want);
    assert!(ex.upstream.complete);
    assert_eq!(
        header(&ex, "x-governance-output-clamped"),
        Some(cap.to_string().as_str())
    );
    assert_eq!(
        ex.upstream
            .headers
            .as_ref()
            .and_then(|h| h.get("content-length")),
        None,
        "the client's length no longer holds"
    );
    assert_eq!(metric(&host, "output_clamped"), 1);
    assert_eq!(used(&mut host, "k", "tokens"), 50.0, "charged what it used");

    // 950 left: the next one gets 950 - its prompt.
    let ex = host.vm(0).exchange(&chat_post(&big), &openai_json(20, 30));
    assert_eq!(ex.client.status, 200);
    let cap = 950 - prompt(&big);
    assert_eq!(upstream_json(&ex)["max_tokens"], json!(cap));
    assert_eq!(
        header(&ex, "x-governance-output-clamped"),
        Some(cap.to_string().as_str())
    );
}

#[test]
fn a_request_that_fits_goes_unchanged() {
    let mut host = host(&clamp_config(true, "enforce", TOKENS_1000));
    let small = body(100);
    let ex = host
        .vm(0)
        .exchange(&chat_post(&small), &openai_json(20, 30));
    assert_eq!(ex.client.status, 200);
    assert_eq!(ex.upstream.body, small.as_bytes());
    assert_eq!(header(&ex, "x-governance-output-clamped"), None);
    assert_eq!(metric(&host, "output_clamped"), 0);
}

#[test]
fn a_budget_affords_what_its_money_left_buys() {
    // $0.0003 a day: prompt p costs p × 1.5e-7; each output token 6e-7.
    let mut host = host(&clamp_config(
        true,
        "enforce",
        r#""budgets": [{"max_limit": 0.0003, "reset_duration": "1d"}]"#,
    ));
    let big = body(4096);
    let ex = host.vm(0).exchange(&chat_post(&big), &openai_json(20, 30));
    assert_eq!(
        ex.client.status,
        200,
        "{}",
        String::from_utf8_lossy(&ex.client.body)
    );
    let cap = ((0.0003 - prompt(&big) as f64 * INPUT) / OUTPUT).floor() as u64;
    assert_eq!(upstream_json(&ex)["max_tokens"], json!(cap));
    assert_eq!(
        header(&ex, "x-governance-output-clamped"),
        Some(cap.to_string().as_str())
    );
}

#[test]
fn a_body_naming_no_cap_gets_one_and_a_stream_still_asks_for_usage() {
    let mut host = host(&clamp_config(true, "enforce", TOKENS_1000));
    let streaming = r#"{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"Say hello"}]}"#;
    let ex = host.vm(0).exchange(
        &chat_post(streaming),
        &sse(fixture("openai-chat-stream.sse")),
    );
    assert_eq!(ex.client.status, 200);
    let cap = 1000 - prompt(streaming);
    let mut want: Value = serde_json::from_str(streaming).unwrap();
    want["max_completion_tokens"] = json!(cap);
    want["stream_options"] = json!({"include_usage": true});
    assert_eq!(upstream_json(&ex), want);
    assert_eq!(
        header(&ex, "x-governance-output-clamped"),
        Some(cap.to_string().as_str())
    );
}

#[test]
fn anthropic_messages_are_lowered_in_max_tokens() {
    let mut host = host(&clamp_config(true, "enforce", TOKENS_1000));
    let msg = r#"{"model":"claude-sonnet-4-5","max_tokens":8192,"messages":[{"role":"user","content":"Hi"}]}"#;
    let ex = host.vm(0).exchange(
        &Request::post("/v1/messages", msg).header("x-api-key", "sk"),
        &openai_json(10, 10),
    );
    assert_eq!(
        ex.client.status,
        200,
        "{}",
        String::from_utf8_lossy(&ex.client.body)
    );
    assert_eq!(upstream_json(&ex)["max_tokens"], json!(1000 - prompt(msg)));
}

#[test]
fn refused_as_before_when_the_prompt_does_not_fit_when_off_and_in_shadow_mode() {
    let long = format!(
        r#"{{"model":"gpt-4o-mini","max_tokens":10,"messages":[{{"role":"user","content":"{}"}}]}}"#,
        "x".repeat(4100)
    );
    let mut on = host(&clamp_config(true, "enforce", TOKENS_1000));
    let ex = on.vm(0).exchange(&chat_post(&long), &openai_json(1, 1));
    assert_eq!(
        ex.client.status, 429,
        "the prompt alone is over 1,000 tokens"
    );
    assert_eq!(metric(&on, "output_clamped"), 0);

    let mut off = host(&clamp_config(false, "enforce", TOKENS_1000));
    let ex = off
        .vm(0)
        .exchange(&chat_post(&body(4096)), &openai_json(1, 1));
    assert_eq!(ex.client.status, 429);
    assert!(!ex.upstream.complete);

    let mut shadow = host(&clamp_config(true, "shadow", TOKENS_1000));
    let big = body(4096);
    let ex = shadow.vm(0).exchange(&chat_post(&big), &openai_json(1, 1));
    assert_eq!(ex.client.status, 200);
    assert_eq!(
        ex.upstream.body,
        big.as_bytes(),
        "shadow mode changes nothing"
    );
    assert_eq!(header(&ex, "x-governance-output-clamped"), None);
}

#[test]
fn the_clamped_estimate_is_held_so_the_next_request_finds_no_room() {
    let mut host = host(&clamp_config(true, "enforce", TOKENS_1000));
    let big = body(4096);
    let vm = host.vm(0);
    let first = vm.open_stream();
    let request = chat_post(&big);
    vm.send_request_headers(first, &request.headers, false);
    vm.send_request_body(first, &request.body, true);
    assert!(vm.stream(first).upstream.complete, "clamped and sent");
    let clamped: Value = serde_json::from_slice(&vm.stream(first).upstream.body).unwrap();
    assert_eq!(clamped["max_tokens"], json!(1000 - prompt(&big)));
    // The whole room is held by the first request: a second one is refused, not clamped.
    let ex = host.vm(0).exchange(&chat_post(&big), &openai_json(1, 1));
    assert_eq!(ex.client.status, 429);
    assert_eq!(counter(&mut host, "k", "tokens")["reserved"], json!(1000));
}

#[test]
fn a_gemini_request_gets_generation_config_max_output_tokens() {
    let mut host = host(&clamp_config(true, "enforce", TOKENS_1000));
    let body = r#"{"contents":[{"role":"user","parts":[{"text":"Hi"}]}],"generationConfig":{"temperature":0.2}}"#;
    let ex = host.vm(0).exchange(
        &Request::post("/v1beta/models/gemini-2.5-flash:generateContent", body)
            .header("x-goog-api-key", "sk"),
        &Response::ok(
            r#"{"candidates":[],"usageMetadata":{"promptTokenCount":5,"candidatesTokenCount":5,"totalTokenCount":10}}"#,
        ),
    );
    assert_eq!(
        ex.client.status,
        200,
        "{}",
        String::from_utf8_lossy(&ex.client.body)
    );
    // No cap named: the default 4,096 was estimated, and the room affords 1,000 - prompt.
    let cap = 1000 - prompt(body);
    let mut want: Value = serde_json::from_str(body).unwrap();
    want["generationConfig"]["maxOutputTokens"] = json!(cap);
    assert_eq!(upstream_json(&ex), want);
    assert_eq!(
        header(&ex, "x-governance-output-clamped"),
        Some(cap.to_string().as_str())
    );
}
