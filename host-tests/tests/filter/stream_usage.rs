//! `stream_options.include_usage` added to streaming completions through the real module:
//! the body Envoy holds is rewritten before it goes upstream, its `content-length` is taken
//! off at request headers (Envoy would forward the client's), and bodies over the bound,
//! or anything but a streaming completion, pass as they came.

use host_tests::{Exchange, Request};
use serde_json::{json, Value};

use crate::fleet::{fleet_config, fleet_host};
use crate::support::*;

const KEY: &str = r#""virtual_keys":[{"id":"k","value":"sk",
    "rate_limit":{"token_max_limit":100000000,"token_reset_duration":"1d"},
    "budgets":[{"max_limit":1000,"reset_duration":"1d"}]}]"#;

fn streaming_body(extra: &str) -> String {
    format!(
        r#"{{"model":"gpt-4o-mini", "stream": true{extra},
  "messages":[{{"role":"user","content":"Say \"stream\": true, please"}}]}}"#
    )
}

fn completion(body: &str) -> Request {
    Request::post("/v1/chat/completions", body).header("x-bf-vk", "sk")
}

fn upstream_json(ex: &Exchange) -> Value {
    serde_json::from_slice(&ex.upstream.body).unwrap_or_else(|err| {
        panic!(
            "upstream body is not JSON ({err}): {}",
            String::from_utf8_lossy(&ex.upstream.body)
        )
    })
}

fn upstream_header<'a>(ex: &'a Exchange, name: &str) -> Option<&'a str> {
    ex.upstream.headers.as_ref().and_then(|h| h.get(name))
}

/// `body` parsed, with `stream_options.include_usage` set as the rewrite sets it.
fn with_usage(body: &str) -> Value {
    let mut want: Value = serde_json::from_str(body).expect("test body is JSON");
    want["stream_options"]["include_usage"] = json!(true);
    want
}

#[test]
fn a_streaming_completion_asks_for_usage_and_is_charged_it() {
    let body = streaming_body("");
    for chunk in [usize::MAX, 1, 7, 64] {
        let mut host = host(&config(KEY));
        let ex = host.vm(0).exchange_chunked(
            &completion(&body),
            &sse(fixture("openai-chat-stream.sse")),
            chunk,
        );
        assert_eq!(ex.client.status, 200, "chunk {chunk}");
        assert!(ex.upstream.complete);
        assert_eq!(upstream_json(&ex), with_usage(&body), "chunk {chunk}");
        let sent = String::from_utf8_lossy(&ex.upstream.body).into_owned();
        assert!(
            sent.starts_with(body.trim_end_matches('}')),
            "every byte before the edit as sent: {sent}"
        );
        assert_eq!(
            upstream_header(&ex, "content-length"),
            None,
            "the client's length no longer holds"
        );
        assert_eq!(metric(&host, "stream_usage_injected"), 1);
        // The stream's final chunk carries the usage: 40 prompt, 9 completion tokens.
        assert_eq!(used(&mut host, "k", "tokens"), 49.0);
        assert_eq!(metric(&host, "usage_missing"), 0);
    }
}

#[test]
fn existing_stream_options_are_completed_or_corrected() {
    for extra in [
        r#", "stream_options": {"include_obfuscation": false}"#,
        r#", "stream_options": {"include_usage": false}"#,
        r#", "stream_options": null"#,
    ] {
        let body = streaming_body(extra);
        let mut host = host(&config(KEY));
        let ex = host
            .vm(0)
            .exchange(&completion(&body), &sse(fixture("openai-chat-stream.sse")));
        assert_eq!(upstream_json(&ex), with_usage(&body), "{extra}");
    }
}

#[test]
fn other_requests_pass_byte_for_byte() {
    let cases = [
        // Not streaming.
        ("/v1/chat/completions", chat_body("gpt-4o-mini")),
        // Already asking for usage.
        (
            "/v1/chat/completions",
            streaming_body(r#", "stream_options": {"include_usage": true}"#),
        ),
        // APIs whose streams always report usage (and refuse the option).
        ("/v1/responses", streaming_body("")),
        ("/v1/messages", streaming_body("")),
    ];
    for (path, body) in cases {
        let mut host = host(&config(KEY));
        let request = Request::post(path, body.clone()).header("x-bf-vk", "sk");
        let ex = host.vm(0).exchange_chunked(&request, &openai_json(1, 1), 5);
        assert_eq!(ex.client.status, 200, "{path}");
        assert_eq!(ex.upstream.body, body.as_bytes(), "{path}: {body}");
        assert_eq!(metric(&host, "stream_usage_injected"), 0);
    }
}

#[test]
fn a_body_over_the_bound_passes_untouched_with_its_length_and_is_counted() {
    let config = config(&format!(r#""max_rewrite_body_bytes": 1024, {KEY}"#));
    let mut host = host(&config);
    let padding = "x".repeat(2000);
    let body = streaming_body(&format!(r#", "user": "{padding}""#));
    let stream = b"data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\ndata: [DONE]\n\n";
    let ex = host
        .vm(0)
        .exchange_chunked(&completion(&body), &sse(stream.to_vec()), 300);
    assert_eq!(ex.client.status, 200);
    assert_eq!(ex.upstream.body, body.as_bytes());
    assert_eq!(
        upstream_header(&ex, "content-length"),
        Some(body.len().to_string().as_str())
    );
    assert_eq!(metric(&host, "stream_usage_unchecked"), 1);
    assert_eq!(metric(&host, "stream_usage_injected"), 0);
    // Its stream came back without usage: charged the estimate.
    let (prompt, output) = exchange_estimate(body.len(), None, stream.len());
    assert_eq!(used(&mut host, "k", "tokens"), (prompt + output) as f64);
    assert_eq!(metric(&host, "usage_missing"), 1);
}

#[test]
fn a_body_exactly_at_the_bound_is_rewritten() {
    let body = streaming_body("");
    let config = config(&format!(
        r#""max_rewrite_body_bytes": {}, {KEY}"#,
        body.len()
    ));
    let mut host = host(&config);
    let ex = host
        .vm(0)
        .exchange(&completion(&body), &sse(fixture("openai-chat-stream.sse")));
    assert_eq!(upstream_json(&ex), with_usage(&body));
}

#[test]
fn turned_off_nothing_is_rewritten_and_lengths_stay() {
    let config = config(&format!(r#""inject_stream_usage": false, {KEY}"#));
    let mut host = host(&config);
    let body = streaming_body("");
    let ex = host
        .vm(0)
        .exchange(&completion(&body), &sse(fixture("openai-chat-stream.sse")));
    assert_eq!(ex.upstream.body, body.as_bytes());
    assert_eq!(
        upstream_header(&ex, "content-length"),
        Some(body.len().to_string().as_str())
    );
    assert_eq!(metric(&host, "stream_usage_injected"), 0);
    assert_eq!(metric(&host, "stream_usage_unchecked"), 0);
}

#[test]
fn an_azure_deployment_stream_is_rewritten_too() {
    let config = config(&format!(
        r#""deployments": {{"prod-mini": "gpt-4o-mini"}}, {KEY}"#
    ));
    let mut host = host(&config);
    let body = r#"{"stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let request = Request::post(
        "/openai/deployments/prod-mini/chat/completions?api-version=2024-10-21",
        body,
    )
    .header("api-key", "sk");
    let ex = host
        .vm(0)
        .exchange_chunked(&request, &sse(fixture("openai-chat-stream.sse")), 11);
    assert_eq!(ex.client.status, 200);
    assert_eq!(upstream_json(&ex), with_usage(body));
    assert_eq!(used(&mut host, "k", "tokens"), 49.0);
}

#[test]
fn a_request_refused_at_its_body_end_is_never_rewritten_nor_sent() {
    let config =
        config(r#""virtual_keys":[{"id":"k","value":"sk","allowed_models":["gpt-4o-mini"]}]"#);
    let mut host = host(&config);
    let body = streaming_body("").replace("gpt-4o-mini", "gpt-4.1");
    let ex = host
        .vm(0)
        .exchange_chunked(&completion(&body), &openai_json(1, 1), 16);
    assert_eq!(error_type(&ex), "model_blocked");
    assert!(ex.upstream.body.is_empty(), "the held body never left");
    assert_eq!(metric(&host, "stream_usage_injected"), 0);
}

#[test]
fn with_reservations_the_estimate_is_of_the_body_the_client_sent() {
    let config = config(&format!(r#""reservation": {{"enabled": true}}, {KEY}"#));
    let mut host = host(&config);
    let body = streaming_body(r#", "max_tokens": 50"#);
    let request = completion(&body);
    let vm = host.vm(0);
    let s = vm.open_stream();
    vm.send_request_headers(s, &request.headers, false);
    vm.send_request_body(s, &body.as_bytes()[..20], false);
    vm.send_request_body(s, &body.as_bytes()[20..], true);
    let prompt = body.len().div_ceil(4);
    assert_eq!(
        counter(&mut host, "k", "tokens")["reserved"],
        json!(prompt + 50),
        "held on the client's bytes"
    );
    let sent = host.vm(0).stream(s).upstream;
    assert!(sent.complete);
    assert_eq!(
        serde_json::from_slice::<Value>(&sent.body).unwrap(),
        with_usage(&body)
    );
}

#[test]
fn in_fleet_mode_the_rewritten_body_goes_up_once_limitador_admits_it() {
    let key = r#""virtual_keys":[{"id":"k","value":"sk",
        "rate_limit":{"request_max_limit":5,"request_reset_duration":"1h",
                      "token_max_limit":100000,"token_reset_duration":"1h"}}]"#;
    // The model in the body: the round goes out at the body's end, with the last frame held.
    let (mut host, _) = fleet_host(&fleet_config("closed", key), 1);
    let body = streaming_body("");
    let ex = host.vm(0).exchange_chunked(
        &completion(&body),
        &sse(fixture("openai-chat-stream.sse")),
        10,
    );
    assert_eq!(ex.client.status, 200, "{:?}", ex.logs);
    assert_eq!(upstream_json(&ex), with_usage(&body));
    assert_eq!(upstream_header(&ex, "content-length"), None);

    // An Azure deployment names the model at headers: the round goes out there, the
    // request waits at its headers, and its body is held and rewritten once released.
    let config = fleet_config(
        "closed",
        &format!(r#""deployments": {{"prod-mini": "gpt-4o-mini"}}, {key}"#),
    );
    let (mut host, _) = fleet_host(&config, 1);
    let body = r#"{"stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let request = Request::post("/openai/deployments/prod-mini/chat/completions", body)
        .header("x-bf-vk", "sk");
    let ex = host
        .vm(0)
        .exchange_chunked(&request, &sse(fixture("openai-chat-stream.sse")), 13);
    assert_eq!(ex.client.status, 200, "{:?}", ex.logs);
    assert_eq!(upstream_json(&ex), with_usage(body));
    assert_eq!(upstream_header(&ex, "content-length"), None);
    assert_eq!(metric(&host, "stream_usage_injected"), 1);
}
