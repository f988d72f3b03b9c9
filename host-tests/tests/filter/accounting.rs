//! Accounting through the real module (docs/accounting.md): usage read from provider bodies as they
//! stream, priced exactly, charged once to the limits that admitted the request.

use host_tests::{Headers, Request, Response};
use serde_json::Value;

use crate::support::*;

fn metered_config() -> String {
    config(
        r#""virtual_keys":[{"id":"k","value":"sk",
          "rate_limit":{"token_max_limit":100000000,"token_reset_duration":"1d"},
          "budgets":[{"max_limit":1000,"reset_duration":"1d"}]}]"#,
    )
}

fn expected(name: &str) -> Value {
    let all: Value = serde_json::from_slice(&fixture("expected.json")).expect("expected.json");
    all[name].clone()
}

/// Prices per token (input, cache read, cache write, one-hour cache write, output) as
/// configured in `PRICING`.
fn prices(model: &str) -> [f64; 5] {
    match model {
        "gpt-4o-mini" => [1.5e-7, 7.5e-8, 1.5e-7, 1.5e-7, 6e-7],
        "gpt-4.1" => [2e-6, 5e-7, 2e-6, 2e-6, 8e-6],
        "claude-sonnet-4-5" => [3e-6, 3e-7, 3.75e-6, 6e-6, 1.5e-5],
        "gemini-2.5-flash" => [3e-7, 7.5e-8, 3e-7, 3e-7, 2.5e-6],
        "text-embedding-3-small" => [2e-8, 2e-8, 2e-8, 2e-8, 0.0],
        BEDROCK_MODEL => [3e-6, 3e-7, 3.75e-6, 3.75e-6, 1.5e-5],
        other => panic!("no price for {other}"),
    }
}

fn request_for(fixture_name: &str, model: &str) -> Request {
    if fixture_name.starts_with("gemini") {
        let action = if fixture_name.ends_with(".sse") {
            "streamGenerateContent?alt=sse"
        } else if fixture_name.contains("stream") {
            // Without alt=sse the stream is one JSON array (Vertex AI's default).
            "streamGenerateContent"
        } else {
            "generateContent"
        };
        Request::post(
            &format!("/v1beta/models/{model}:{action}"),
            r#"{"contents":[]}"#,
        )
        .header("x-goog-api-key", "sk")
    } else if fixture_name.starts_with("bedrock") {
        bedrock_request(fixture_name.ends_with(".eventstream"))
    } else if fixture_name.contains("embeddings") {
        Request::post(
            "/v1/embeddings",
            format!(r#"{{"model":"{model}","input":["a","b"]}}"#),
        )
        .header("authorization", "Bearer sk")
    } else {
        chat("sk", model)
    }
}

/// The response a fixture comes in, with the content type its provider sends.
fn response_for(name: &str) -> Response {
    let body = fixture(name);
    if name.ends_with(".sse") {
        sse(body)
    } else if name.ends_with(".eventstream") {
        amazon_event_stream(body)
    } else {
        Response::ok(body)
    }
}

#[test]
fn every_provider_fixture_is_charged_exactly_in_any_chunking() {
    let cases = [
        ("openai-chat.json", "gpt-4o-mini"),
        ("openai-chat-stream.sse", "gpt-4o-mini"),
        ("openai-embeddings.json", "text-embedding-3-small"),
        ("openai-responses.json", "gpt-4.1"),
        ("openai-responses-stream.sse", "gpt-4.1"),
        ("anthropic-messages.json", "claude-sonnet-4-5"),
        ("anthropic-messages-stream.sse", "claude-sonnet-4-5"),
        ("anthropic-messages-cache-ttl.json", "claude-sonnet-4-5"),
        (
            "anthropic-messages-cache-ttl-stream.sse",
            "claude-sonnet-4-5",
        ),
        ("gemini-generate.json", "gemini-2.5-flash"),
        ("gemini-stream.sse", "gemini-2.5-flash"),
        ("gemini-stream-array.json", "gemini-2.5-flash"),
        ("gemini-tool-use.json", "gemini-2.5-flash"),
        ("bedrock-converse.json", BEDROCK_MODEL),
        ("bedrock-converse-stream.eventstream", BEDROCK_MODEL),
    ];
    for (name, model) in cases {
        for chunk in [usize::MAX, 1, 7, 64] {
            let mut host = host(&metered_config());
            let response = response_for(name);
            let ex = host
                .vm(0)
                .exchange_chunked(&request_for(name, model), &response, chunk);
            assert_eq!(ex.client.status, 200, "{name}");
            assert_eq!(
                ex.client.body, response.body,
                "{name}: the body reaches the client unchanged"
            );
            let want = expected(name);
            let count = |field: &str| want[field].as_u64().unwrap_or_default();
            let parts = [
                count("input_uncached"),
                count("cache_read"),
                count("cache_write"),
                count("cache_write_1h"),
                count("output"),
            ];
            let tokens: u64 = parts.iter().sum();
            let cost: f64 = parts
                .iter()
                .zip(prices(model))
                .map(|(n, p)| *n as f64 * p)
                .sum();
            assert_eq!(
                used(&mut host, "k", "tokens"),
                tokens as f64,
                "{name} chunk {chunk}"
            );
            let spent = used(&mut host, "k", "budget");
            assert!(
                (spent - cost).abs() < 1e-12,
                "{name} chunk {chunk}: spent {spent}, want {cost}"
            );
            assert_eq!(metric(&host, "tokens_charged"), tokens as i64);
            assert_eq!(metric(&host, "usage_missing"), 0);
        }
    }
}

#[test]
fn a_million_small_charges_are_exact() {
    // Money is integer femto-USD inside: 2,000 charges of 10 prompt tokens at 1.5e-7 add up
    // to exactly 0.003, which a float running sum would miss.
    let mut host = host(&metered_config());
    for _ in 0..2000 {
        let ex = host
            .vm(0)
            .exchange(&chat("sk", "gpt-4o-mini"), &openai_json(10, 0));
        assert_eq!(ex.client.status, 200);
    }
    assert_eq!(used(&mut host, "k", "budget"), 0.003);
    assert_eq!(metric(&host, "spend_micro_usd"), 3000);
}

#[test]
fn the_response_model_prices_a_request_that_named_none() {
    let mut host = host(&metered_config());
    // No model in the request body; the response says gpt-4.1-2025-04-14 (prefix gpt-4.1*).
    let request = Request::post("/v1/responses", r#"{"input":"hi"}"#).header("x-bf-vk", "sk");
    let ex = host
        .vm(0)
        .exchange(&request, &Response::ok(fixture("openai-responses.json")));
    assert_eq!(ex.client.status, 200);
    let cost = 400.0 * 2e-6 + 100.0 * 5e-7 + 120.0 * 8e-6;
    assert!((used(&mut host, "k", "budget") - cost).abs() < 1e-12);
}

#[test]
fn a_response_without_usage_is_charged_an_estimate_and_an_error_nothing() {
    let mut host = host(&metered_config());
    let request = chat("sk", "gpt-4o-mini");
    let answer = r#"{"choices":[]}"#;
    let ex = host.vm(0).exchange(&request, &Response::ok(answer));
    assert_eq!(ex.client.status, 200);
    assert_eq!(metric(&host, "usage_missing"), 1);
    let (prompt, output) = exchange_estimate(request.body.len(), None, answer.len());
    assert_eq!(used(&mut host, "k", "tokens"), (prompt + output) as f64);
    let cost = prompt as f64 * 1.5e-7 + output as f64 * 6e-7;
    assert!((used(&mut host, "k", "budget") - cost).abs() < 1e-12);
    let ex = host.vm(0).exchange(
        &request,
        &Response::status(502).body("text/plain", "upstream error"),
    );
    assert_eq!(ex.client.status, 502);
    assert_eq!(metric(&host, "usage_missing"), 2);
    assert_eq!(
        used(&mut host, "k", "tokens"),
        (prompt + output) as f64,
        "an upstream error is not charged"
    );
}

fn open(host: &mut host_tests::Host, response_content_type: &str) -> host_tests::StreamId {
    let vm = host.vm(0);
    let s = vm.open_stream();
    let request = chat("sk", "claude-sonnet-4-5");
    vm.send_request_headers(s, &request.headers, false);
    vm.send_request_body(s, &request.body, true);
    let headers =
        Headers::from_pairs([(":status", "200"), ("content-type", response_content_type)]);
    vm.send_response_headers(s, &headers, false);
    s
}

#[test]
fn a_stream_cut_short_is_charged_with_the_usage_seen_so_far() {
    let mut host = host(&metered_config());
    let body = fixture("anthropic-messages-stream.sse");
    let text = String::from_utf8_lossy(&body).to_string();
    let cut = text
        .find("event: content_block_start")
        .expect("fixture shape");
    let s = open(&mut host, "text/event-stream");
    host.vm(0).send_response_body(s, &body[..cut], false);
    host.vm(0).reset_stream(s);
    let view = host.vm(0).stream(s);
    assert!(view.finished, "on_log ran");
    // message_start carried input 25, cache write 2000, cache read 8000, output 1.
    assert_eq!(used(&mut host, "k", "tokens"), 10_026.0);
    let cost = 25.0 * 3e-6 + 8000.0 * 3e-7 + 2000.0 * 3.75e-6 + 1.0 * 1.5e-5;
    assert!((used(&mut host, "k", "budget") - cost).abs() < 1e-12);
}

#[test]
fn a_stream_cut_before_any_usage_is_charged_an_estimate() {
    let mut host = host(&metered_config());
    let s = open(&mut host, "text/event-stream");
    let ping = b"event: ping\ndata: {\"type\":\"ping\"}\n\n";
    host.vm(0).send_response_body(s, ping, false);
    host.vm(0).upstream_reset(s);
    assert_eq!(metric(&host, "usage_missing"), 1);
    let request_bytes = chat("sk", "claude-sonnet-4-5").body.len();
    let (prompt, output) = exchange_estimate(request_bytes, None, ping.len());
    assert_eq!(used(&mut host, "k", "tokens"), (prompt + output) as f64);
    let cost = prompt as f64 * 3e-6 + output as f64 * 1.5e-5;
    assert!((used(&mut host, "k", "budget") - cost).abs() < 1e-12);
}

#[test]
fn usage_is_charged_once_even_with_trailers_and_on_log() {
    let mut host = host(&metered_config());
    let response = openai_json(100, 50).trailer("x-trailer", "1");
    let ex = host.vm(0).exchange(&chat("sk", "gpt-4o-mini"), &response);
    assert_eq!(ex.client.status, 200);
    assert_eq!(
        used(&mut host, "k", "tokens"),
        150.0,
        "charged at trailers, not again at on_log"
    );
}

#[test]
fn the_first_bytes_of_a_stream_pass_before_it_ends() {
    let mut host = host(&metered_config());
    let body = fixture("openai-chat-stream.sse");
    let s = open(&mut host, "text/event-stream");
    host.vm(0).send_response_body(s, &body[..200], false);
    let view = host.vm(0).stream(s);
    assert_eq!(
        view.client.body,
        body[..200].to_vec(),
        "nothing is held back"
    );
    assert!(!view.response_stopped);
    host.vm(0).send_response_body(s, &body[200..], true);
    assert_eq!(used(&mut host, "k", "tokens"), 49.0);
}
