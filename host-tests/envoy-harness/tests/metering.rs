//! Metering every path in a real Envoy 1.40: streaming completions rewritten to ask for
//! their usage (and what the upstream then receives), large bodies passing untouched, and
//! the models that Bedrock and Azure OpenAI paths name.

mod common;

use std::time::Duration;

use envoy_harness::{RecordedRequest, Request, Stack};
use serde_json::{json, Value};

const ADMIN_KEY: &str = "e2e-admin-secret";
/// sha256("e2e-admin-secret")
const ADMIN_SHA256: &str = "d91a7908c60164ada2ce2a0828f7e70aab608705f8d6a55abe04b1101cfd33f6";
const BEDROCK_MODEL: &str = "anthropic.claude-sonnet-4-5-20250929-v1:0";

fn start(extra: Value) -> Stack {
    let mut config = json!({
        "usage_endpoint": {"path": "/governance/usage", "admin_key_sha256": ADMIN_SHA256},
        "pricing": {
            "gpt-4o-mini": {"input_cost_per_token": 1.5e-7, "output_cost_per_token": 6e-7},
            "anthropic.claude-sonnet-4-5*": {"input_cost_per_token": 3e-6,
                "output_cost_per_token": 1.5e-5, "cache_read_input_token_cost": 3e-7,
                "cache_creation_input_token_cost": 3.75e-6}
        },
        "virtual_keys": [{"id": "k", "value": "sk-k",
            "rate_limit": {"token_max_limit": 100000000, "token_reset_duration": "1d"},
            "budgets": [{"max_limit": 1000, "reset_duration": "1d"}]}]
    });
    if let (Some(config), Value::Object(extra)) = (config.as_object_mut(), extra) {
        config.extend(extra);
    }
    match Stack::start(&config.to_string()) {
        Ok(stack) => stack,
        Err(err) => panic!("{err}"),
    }
}

/// The admin view of one counter's `used`.
fn used(stack: &Stack, id: &str, kind: &str) -> f64 {
    let response = stack
        .client()
        .send(&Request::get("/governance/usage").bearer(ADMIN_KEY))
        .expect("usage endpoint");
    let body = response.json().expect("usage JSON");
    body.get("counters")
        .and_then(Value::as_array)
        .and_then(|all| all.iter().find(|c| c["id"] == id && c["kind"] == kind))
        .and_then(|c| c["used"].as_f64())
        .unwrap_or_else(|| panic!("no {kind} counter for {id} in {body}"))
}

/// An Envoy counter of the filter (0 when never incremented).
fn counter(stack: &Stack, name: &str) -> u64 {
    stack
        .envoy
        .counter(&format!("governance.{name}"))
        .ok()
        .flatten()
        .unwrap_or(0)
}

/// The one request the mock received.
fn only_upstream_request(stack: &Stack) -> RecordedRequest {
    assert!(stack.mock.wait_for_requests(1, Duration::from_secs(5)));
    let all = stack.mock.requests();
    assert_eq!(all.len(), 1, "{all:#?}");
    all.into_iter().next().expect("one request")
}

/// The body's JSON plus `stream_options.include_usage: true`.
fn with_usage(body: &[u8]) -> Value {
    let mut want: Value = serde_json::from_slice(body).expect("JSON body");
    let options = want
        .as_object_mut()
        .expect("a JSON object")
        .entry("stream_options")
        .or_insert_with(|| json!({}));
    if let Some(options) = options.as_object_mut() {
        options.insert("include_usage".into(), json!(true));
    } else {
        *options = json!({"include_usage": true});
    }
    want
}

fn streaming_chat(extra: &str) -> Vec<u8> {
    format!(
        "{{\"model\": \"gpt-4o-mini\", \"stream\": true{extra},\n \"messages\": [{{\"role\": \"user\", \"content\": \"caf\\u00e9 \\\"stream\\\": false\"}}]}}"
    )
    .into_bytes()
}

#[test]
fn a_streaming_completion_reaches_the_upstream_asking_for_its_usage() {
    let stack = start(json!({}));
    let body = streaming_chat(r#", "temperature": 0.50"#);
    let response = stack
        .client()
        .send(
            &Request::post("/v1/chat/completions")
                .bearer("sk-k")
                .header("content-type", "application/json")
                .header("x-mock-usage", "prompt=1200,completion=80")
                .body(body.clone()),
        )
        .expect("response");
    assert_eq!(response.status, 200, "{}", response.text());
    let upstream = only_upstream_request(&stack);
    assert!(upstream.complete, "the upstream read the request whole");
    // Envoy forwards the client's content-length as it was (it does not follow a filter's
    // rewrite); the filter took it off, so HTTP/1.1 frames the body in chunks.
    assert_eq!(upstream.header("content-length"), None);
    assert_eq!(upstream.header("transfer-encoding"), Some("chunked"));
    assert_eq!(upstream.json(), Some(with_usage(&body)));
    let sent = upstream.body.clone();
    let cut = body.len() - 1;
    assert_eq!(
        sent[..cut],
        body[..cut],
        "every byte before the closing brace as the client sent it"
    );
    assert_eq!(counter(&stack, "stream_usage_injected"), 1);
    // The mock reports usage only because the request asked: the stream is charged it.
    assert_eq!(
        response.sse_data().last().map(String::as_str),
        Some("[DONE]")
    );
    stack
        .envoy
        .wait_for_counter(
            "governance.tokens_charged",
            |v| v == Some(1280),
            Duration::from_secs(5),
        )
        .expect("charged the reported usage");
    assert_eq!(used(&stack, "k", "tokens"), 1280.0);
    assert_eq!(counter(&stack, "usage_missing"), 0);
}

#[test]
fn a_five_mib_body_passes_untouched_with_or_without_its_length() {
    let stack = start(json!({}));
    let padding = "y".repeat(5 * 1024 * 1024);
    let body = streaming_chat(&format!(r#", "user": "{padding}""#));
    for chunked in [false, true] {
        stack.mock.clear();
        let mut request = Request::post("/v1/chat/completions")
            .bearer("sk-k")
            .header("content-type", "application/json")
            .body(body.clone());
        if chunked {
            request = request.chunked(256 * 1024);
        }
        let response = stack.client().send(&request).expect("response");
        assert_eq!(
            response.status,
            200,
            "chunked {chunked}: {}",
            response.text()
        );
        let upstream = only_upstream_request(&stack);
        assert!(upstream.complete);
        assert!(
            upstream.body == body,
            "chunked {chunked}: the body arrived unchanged"
        );
        if !chunked {
            assert_eq!(
                upstream.header("content-length"),
                Some(body.len().to_string().as_str())
            );
        }
    }
    assert_eq!(counter(&stack, "stream_usage_unchecked"), 2);
    assert_eq!(counter(&stack, "stream_usage_injected"), 0);
    // Their streams came back without usage: each was charged an estimate.
    stack
        .envoy
        .wait_for_counter(
            "governance.usage_missing",
            |v| v == Some(2),
            Duration::from_secs(5),
        )
        .expect("two estimates");
    assert!(used(&stack, "k", "tokens") > 2.0 * body.len() as f64 / 4.0);
}

#[test]
fn a_bedrock_converse_stream_is_judged_by_its_path_and_charged_from_its_metadata() {
    let stack = start(json!({}));
    let stack_key = |path: &str| {
        Request::post(path)
            .header("x-bf-vk", "sk-k")
            .header("content-type", "application/json")
            .header(
                "x-mock-usage",
                "prompt=30,completion=265,cached=3500,cache_write=1000",
            )
            .json(&json!({"messages": [{"role": "user", "content": [{"text": "hi"}]}]}))
    };
    let unpriced = stack
        .client()
        .send(&stack_key(
            "/model/meta.llama3-70b-instruct-v1%3A0/converse-stream",
        ))
        .expect("refusal");
    assert_eq!(unpriced.status, 403);
    assert_eq!(unpriced.error_type().as_deref(), Some("model_not_priced"));
    assert_eq!(stack.mock.request_count(), 0, "refused at request headers");

    let path = format!(
        "/model/{}/converse-stream",
        BEDROCK_MODEL.replace(':', "%3A")
    );
    let response = stack.client().send(&stack_key(&path)).expect("stream");
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(
        response.header("content-type"),
        Some("application/vnd.amazon.eventstream")
    );
    let upstream = only_upstream_request(&stack);
    assert_eq!(upstream.path, path, "the path goes upstream as sent");
    stack
        .envoy
        .wait_for_counter(
            "governance.tokens_charged",
            |v| v == Some(4795),
            Duration::from_secs(5),
        )
        .expect("charged from the metadata event");
    let usd = 30.0 * 3e-6 + 3_500.0 * 3e-7 + 1_000.0 * 3.75e-6 + 265.0 * 1.5e-5;
    assert!((used(&stack, "k", "budget") - usd).abs() < 1e-12);
}

#[test]
fn an_azure_deployment_is_priced_as_its_mapped_model_and_its_stream_asks_for_usage() {
    let stack = start(json!({"deployments": {"prod-mini": "gpt-4o-mini"}}));
    let body = br#"{"stream":true,"messages":[{"role":"user","content":"hi"}]}"#.to_vec();
    let response = stack
        .client()
        .send(
            &Request::post("/openai/deployments/prod-mini/chat/completions?api-version=2024-10-21")
                .header("api-key", "sk-k")
                .header("content-type", "application/json")
                .header("x-mock-usage", "prompt=1000,completion=100")
                .body(body.clone()),
        )
        .expect("response");
    assert_eq!(response.status, 200, "{}", response.text());
    let upstream = only_upstream_request(&stack);
    assert_eq!(upstream.json(), Some(with_usage(&body)));
    assert_eq!(
        upstream.header("api-key"),
        None,
        "the virtual key is stripped"
    );
    stack
        .envoy
        .wait_for_counter(
            "governance.tokens_charged",
            |v| v == Some(1100),
            Duration::from_secs(5),
        )
        .expect("charged");
    let usd = 1_000.0 * 1.5e-7 + 100.0 * 6e-7;
    assert!((used(&stack, "k", "budget") - usd).abs() < 1e-12);

    // A deployment that names no priced model is refused before upstream.
    let refused = stack
        .client()
        .send(
            &Request::post("/openai/deployments/experiment/chat/completions")
                .header("api-key", "sk-k")
                .body(body),
        )
        .expect("refusal");
    assert_eq!(refused.error_type().as_deref(), Some("model_not_priced"));
    assert_eq!(stack.mock.request_count(), 1);
}
