//! Helpers for the filter's tests: a host running governance.wasm, requests shaped like
//! OpenAI/Anthropic/Gemini calls, and readers for replies and the usage endpoint.

#![allow(dead_code, reason = "each test module uses a different subset")]

use host_tests::{Exchange, Host, HostBuilder, Request, Response, GOVERNANCE_WASM};
use serde_json::Value;

/// 2026-11-02T12:00:00Z, a Monday (clear of DST changes unless a test moves there).
pub const T0: i64 = 1_793_620_800_000_000_000;
pub const SECOND: i64 = 1_000_000_000;
/// `admin_key_sha256` of this secret is [`ADMIN_SHA256`].
pub const ADMIN_KEY: &str = "admin-secret";
pub const ADMIN_SHA256: &str = "16175223c8ddce5ace0493c948569c211b03c4c6bb3d3e484434999448cffe01";

pub const PRICING: &str = r#""pricing": {
    "gpt-4o-mini": {"input_cost_per_token": 1.5e-7, "output_cost_per_token": 6e-7, "cache_read_input_token_cost": 7.5e-8},
    "gpt-4.1*": {"input_cost_per_token": 2e-6, "output_cost_per_token": 8e-6, "cache_read_input_token_cost": 5e-7},
    "claude-sonnet-4*": {"input_cost_per_token": 3e-6, "output_cost_per_token": 1.5e-5,
                         "cache_read_input_token_cost": 3e-7, "cache_creation_input_token_cost": 3.75e-6,
                         "cache_creation_input_token_cost_above_1hr": 6e-6},
    "gemini-2.5-flash": {"input_cost_per_token": 3e-7, "output_cost_per_token": 2.5e-6, "cache_read_input_token_cost": 7.5e-8},
    "text-embedding-3-small": {"input_cost_per_token": 2e-8, "output_cost_per_token": 0, "mode": "embedding"},
    "anthropic.claude-sonnet-4-5*": {"input_cost_per_token": 3e-6, "output_cost_per_token": 1.5e-5,
                         "cache_read_input_token_cost": 3e-7, "cache_creation_input_token_cost": 3.75e-6,
                         "litellm_provider": "bedrock_converse"}
}"#;

/// A host with `workers` VMs, the usage endpoint on, and the clock at [`T0`].
pub fn host_with(config: &str, workers: usize) -> Host {
    match HostBuilder::new(GOVERNANCE_WASM)
        .plugin_config(config)
        .vm_id("governance")
        .workers(workers)
        .clock_start_nanos(T0)
        .build()
    {
        Ok(host) => host,
        Err(err) => panic!("host did not start: {err:?}"),
    }
}

pub fn host(config: &str) -> Host {
    host_with(config, 1)
}

/// `{ "usage_endpoint": …, "pricing": …, <rest> }`.
pub fn config(rest: &str) -> String {
    let usage = format!(
        r#""usage_endpoint": {{"path": "/governance/usage", "admin_key_sha256": "{ADMIN_SHA256}"}}"#
    );
    if rest.trim().is_empty() {
        format!("{{{usage}, {PRICING}}}")
    } else {
        format!("{{{usage}, {PRICING}, {rest}}}")
    }
}

pub fn chat_body(model: &str) -> String {
    format!(r#"{{"model":"{model}","messages":[{{"role":"user","content":"Say hello"}}]}}"#)
}

/// An OpenAI chat request carrying `key` as a Bearer token.
pub fn chat(key: &str, model: &str) -> Request {
    Request::post("/v1/chat/completions", chat_body(model))
        .header("authorization", &format!("Bearer {key}"))
}

/// An OpenAI chat completion with usage.
pub fn openai_json(prompt: u64, completion: u64) -> Response {
    Response::ok(format!(
        r#"{{"id":"chatcmpl-1","object":"chat.completion","model":"gpt-4o-mini-2024-07-18","choices":[{{"index":0,"message":{{"role":"assistant","content":"Hello"}},"finish_reason":"stop"}}],"usage":{{"prompt_tokens":{prompt},"completion_tokens":{completion},"total_tokens":{}}}}}"#,
        prompt + completion
    ))
}

/// A Bedrock model id; its requests name it in the path (and, here, in the body too).
pub const BEDROCK_MODEL: &str = "anthropic.claude-sonnet-4-5-20250929-v1:0";

/// A Converse (or ConverseStream) request for [`BEDROCK_MODEL`] with the key `sk`.
pub fn bedrock_request(stream: bool) -> Request {
    let action = if stream {
        "converse-stream"
    } else {
        "converse"
    };
    Request::post(
        &format!("/model/{BEDROCK_MODEL}/{action}"),
        format!(
            r#"{{"model":"{BEDROCK_MODEL}","messages":[{{"role":"user","content":[{{"text":"hi"}}]}}]}}"#
        ),
    )
    .header("x-bf-vk", "sk")
}

/// A body in Amazon's binary event stream framing, as Bedrock's ConverseStream sends it.
pub fn amazon_event_stream(body: Vec<u8>) -> Response {
    Response::status(200).body("application/vnd.amazon.eventstream", body)
}

pub fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/fixtures/responses/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|err| panic!("{path}: {err}"))
}

pub fn sse(body: Vec<u8>) -> Response {
    Response::status(200).body("text/event-stream", body)
}

/// What an exchange whose response carried no usage is charged (the reservation settings'
/// defaults: 4 bytes per token, 4,096 output tokens when the request names no cap), as
/// (prompt tokens, output tokens): the request body's bytes / 4 as prompt, and the cap plus
/// the response body's bytes / 4 as output, each rounded up.
pub fn exchange_estimate(
    request_bytes: usize,
    cap: Option<u64>,
    response_bytes: usize,
) -> (u64, u64) {
    let prompt = request_bytes.div_ceil(4) as u64;
    let output = cap.unwrap_or(4096) + response_bytes.div_ceil(4) as u64;
    (prompt, output)
}

/// The JSON body of what the client got.
pub fn body_json(ex: &Exchange) -> Value {
    serde_json::from_slice(&ex.client.body).unwrap_or_else(|err| {
        panic!(
            "body is not JSON ({err}): {}",
            String::from_utf8_lossy(&ex.client.body)
        )
    })
}

/// The `error.type` of a local reply.
pub fn error_type(ex: &Exchange) -> String {
    body_json(ex)["error"]["type"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

pub fn header<'a>(ex: &'a Exchange, name: &str) -> Option<&'a str> {
    ex.client.headers.as_ref().and_then(|h| h.get(name))
}

/// Every counter, read through the filter's own usage endpoint with the admin key.
pub fn counters(host: &mut Host) -> Vec<Value> {
    let ex = host.vm(0).exchange(
        &Request::get("/governance/usage").header("authorization", &format!("Bearer {ADMIN_KEY}")),
        &Response::status(500),
    );
    assert_eq!(
        ex.client.status,
        200,
        "usage endpoint: {}",
        String::from_utf8_lossy(&ex.client.body)
    );
    body_json(&ex)["counters"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The counter of `owner` id `id` and `kind`.
pub fn counter(host: &mut Host, id: &str, kind: &str) -> Value {
    counters(host)
        .into_iter()
        .find(|c| c["id"] == id && c["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} counter for {id}"))
}

pub fn used(host: &mut Host, id: &str, kind: &str) -> f64 {
    counter(host, id, kind)["used"].as_f64().unwrap_or(f64::NAN)
}

pub fn metric(host: &Host, name: &str) -> i64 {
    host.metric(&format!("governance.{name}")).unwrap_or(0)
}
