//! Metering through the real module: Bedrock's binary event stream, and the price list's
//! long-context tiers, one-hour cache writes and per-request fees, charged exactly.

use host_tests::{Headers, Request, Response};

use crate::support::*;

fn metered_config() -> String {
    config(KEY)
}

const KEY: &str = r#""virtual_keys":[{"id":"k","value":"sk",
    "rate_limit":{"token_max_limit":100000000,"token_reset_duration":"1d"},
    "budgets":[{"max_limit":1000,"reset_duration":"1d"}]}]"#;

/// A configuration whose only prices are `pricing` (a JSON object), with the key `sk`.
fn priced(pricing: &str) -> String {
    format!(
        r#"{{"usage_endpoint": {{"path": "/governance/usage", "admin_key_sha256": "{ADMIN_SHA256}"}},
            "pricing": {pricing}, {KEY}}}"#
    )
}

/// An Anthropic Messages response with the given counts, cache writes split by lifetime.
fn anthropic_json(input: u64, read: u64, write_5m: u64, write_1h: u64, output: u64) -> Response {
    Response::ok(format!(
        r#"{{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929",
            "content":[{{"type":"text","text":"ok"}}],"stop_reason":"end_turn",
            "usage":{{"input_tokens":{input},"cache_read_input_tokens":{read},
              "cache_creation_input_tokens":{},"cache_creation":{{"ephemeral_5m_input_tokens":{write_5m},
              "ephemeral_1h_input_tokens":{write_1h}}},"output_tokens":{output}}}}}"#,
        write_5m + write_1h
    ))
}

fn spent_after(config: &str, model: &str, response: &Response) -> f64 {
    let mut host = host(config);
    let ex = host.vm(0).exchange(&chat("sk", model), response);
    assert_eq!(ex.client.status, 200);
    used(&mut host, "k", "budget")
}

fn assert_usd(spent: f64, want_femto: u128) {
    let want = want_femto as f64 / 1e15;
    assert!((spent - want).abs() < 1e-12, "spent {spent}, want {want}");
}

/// 30 input, 3,500 cache reads, 1,000 cache writes, 265 output at the Bedrock model's prices.
const CONVERSE_STREAM_FEMTO: u128 =
    30 * 3_000_000_000 + 3_500 * 300_000_000 + 1_000 * 3_750_000_000 + 265 * 15_000_000_000;

#[test]
fn a_bedrock_converse_stream_is_charged_from_its_metadata_event() {
    let body = fixture("bedrock-converse-stream.eventstream");
    for chunk in [usize::MAX, 1, 5, 100] {
        let mut host = host(&metered_config());
        let response = amazon_event_stream(body.clone());
        let ex = host
            .vm(0)
            .exchange_chunked(&bedrock_request(true), &response, chunk);
        assert_eq!(ex.client.status, 200);
        assert_eq!(
            ex.client.body, body,
            "the stream reaches the client unchanged"
        );
        assert_eq!(used(&mut host, "k", "tokens"), 4_795.0, "chunk {chunk}");
        assert_usd(used(&mut host, "k", "budget"), CONVERSE_STREAM_FEMTO);
        assert_eq!(metric(&host, "usage_missing"), 0);
    }
}

/// Tokens and femto-USD (at the Bedrock model's prices) of the estimate charged for a
/// ConverseStream request whose response of `response_bytes` gave no usage.
fn converse_estimate(response_bytes: usize) -> (f64, u128) {
    let request_bytes = bedrock_request(true).body.len();
    let (prompt, output) = exchange_estimate(request_bytes, None, response_bytes);
    let femto = u128::from(prompt) * 3_000_000_000 + u128::from(output) * 15_000_000_000;
    ((prompt + output) as f64, femto)
}

#[test]
fn a_converse_stream_message_with_a_wrong_crc_is_charged_an_estimate_not_its_usage() {
    let mut body = fixture("bedrock-converse-stream.eventstream");
    // The last four bytes are the metadata message's CRC.
    let last = body.len() - 1;
    body[last] ^= 0x01;
    let response_bytes = body.len();
    let mut host = host(&metered_config());
    let ex = host
        .vm(0)
        .exchange(&bedrock_request(true), &amazon_event_stream(body));
    assert_eq!(ex.client.status, 200);
    let (tokens, femto) = converse_estimate(response_bytes);
    assert_eq!(used(&mut host, "k", "tokens"), tokens);
    assert_usd(used(&mut host, "k", "budget"), femto);
    assert_eq!(metric(&host, "usage_missing"), 1);
}

#[test]
fn a_converse_stream_cut_inside_its_metadata_message_is_charged_an_estimate() {
    let body = fixture("bedrock-converse-stream.eventstream");
    let mut host = host(&metered_config());
    let vm = host.vm(0);
    let s = vm.open_stream();
    let request = bedrock_request(true);
    vm.send_request_headers(s, &request.headers, false);
    vm.send_request_body(s, &request.body, true);
    let headers = Headers::from_pairs([
        (":status", "200"),
        ("content-type", "application/vnd.amazon.eventstream"),
    ]);
    vm.send_response_headers(s, &headers, false);
    let sent = body.len() - 10;
    vm.send_response_body(s, &body[..sent], false);
    vm.upstream_reset(s);
    let (tokens, femto) = converse_estimate(sent);
    assert_eq!(used(&mut host, "k", "tokens"), tokens);
    assert_usd(used(&mut host, "k", "budget"), femto);
    assert_eq!(metric(&host, "usage_missing"), 1);
}

/// LiteLLM's claude-sonnet-4-5 entry (less its web-search price), under another name.
const TIERED: &str = r#"{"claude-tiered": {
    "input_cost_per_token": 3e-06, "output_cost_per_token": 1.5e-05,
    "cache_read_input_token_cost": 3e-07, "cache_creation_input_token_cost": 3.75e-06,
    "cache_creation_input_token_cost_above_1hr": 6e-06,
    "input_cost_per_token_above_200k_tokens": 6e-06,
    "output_cost_per_token_above_200k_tokens": 2.25e-05,
    "cache_read_input_token_cost_above_200k_tokens": 6e-07,
    "cache_creation_input_token_cost_above_200k_tokens": 7.5e-06,
    "cache_creation_input_token_cost_above_1hr_above_200k_tokens": 1.2e-05,
    "litellm_provider": "anthropic", "max_input_tokens": 1000000, "mode": "chat",
    "supports_prompt_caching": true}}"#;

#[test]
fn a_prompt_above_200k_tokens_is_charged_at_the_long_context_prices() {
    let config = priced(TIERED);
    // 150,000 uncached + 50,000 read = 200,000 prompt tokens: not above the threshold.
    let at = spent_after(
        &config,
        "claude-tiered",
        &anthropic_json(150_000, 50_000, 0, 0, 1_000),
    );
    assert_usd(
        at,
        150_000 * 3_000_000_000 + 50_000 * 300_000_000 + 1_000 * 15_000_000_000,
    );
    // One one-hour cache write more: 200,001, and every token at the tier's prices.
    let above = spent_after(
        &config,
        "claude-tiered",
        &anthropic_json(150_000, 50_000, 0, 1, 1_000),
    );
    assert_usd(
        above,
        150_000 * 6_000_000_000 + 50_000 * 600_000_000 + 12_000_000_000 + 1_000 * 22_500_000_000,
    );
}

#[test]
fn one_hour_cache_writes_are_charged_at_their_own_price() {
    let config = priced(TIERED);
    let five_minutes = spent_after(
        &config,
        "claude-tiered",
        &anthropic_json(10, 0, 3_000, 0, 0),
    );
    let one_hour = spent_after(
        &config,
        "claude-tiered",
        &anthropic_json(10, 0, 0, 3_000, 0),
    );
    let mixed = spent_after(
        &config,
        "claude-tiered",
        &anthropic_json(10, 0, 1_000, 2_000, 0),
    );
    assert_usd(five_minutes, 10 * 3_000_000_000 + 3_000 * 3_750_000_000);
    assert_usd(one_hour, 10 * 3_000_000_000 + 3_000 * 6_000_000_000);
    assert_usd(
        mixed,
        10 * 3_000_000_000 + 1_000 * 3_750_000_000 + 2_000 * 6_000_000_000,
    );
}

#[test]
fn a_per_request_fee_is_charged_once_per_request() {
    let config = priced(
        r#"{"fee-model": {"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6,
            "input_cost_per_request": 0.01}}"#,
    );
    let mut host = host(&config);
    for _ in 0..3 {
        let ex = host
            .vm(0)
            .exchange(&chat("sk", "fee-model"), &openai_json(100, 50));
        assert_eq!(ex.client.status, 200);
    }
    // Each: 0.01 + 100 × 1e-6 + 50 × 2e-6 = 0.0102.
    assert_usd(used(&mut host, "k", "budget"), 3 * 10_200_000_000_000);
    assert_eq!(used(&mut host, "k", "tokens"), 450.0);
}

/// A background Responses request as OpenAI answers its creation: queued, no usage yet.
const QUEUED: &str = r#"{"id":"resp_bg_1","object":"response","created_at":1764300100,"status":"queued","background":true,"model":"gpt-4.1-2025-04-14","output":[],"usage":null}"#;

#[test]
fn a_background_request_is_charged_its_estimate_once_and_polling_is_free() {
    let mut host = host(&metered_config());
    let body = r#"{"model":"gpt-4.1","background":true,"max_output_tokens":3000,"input":"Write the report."}"#;
    let create = Request::post("/v1/responses", body).header("x-bf-vk", "sk");
    let ex = host.vm(0).exchange(&create, &Response::ok(QUEUED));
    assert_eq!(ex.client.status, 200);
    let (prompt, output) = exchange_estimate(body.len(), Some(3000), QUEUED.len());
    let tokens = (prompt + output) as f64;
    assert_eq!(used(&mut host, "k", "tokens"), tokens);
    let usd = prompt as f64 * 2e-6 + output as f64 * 8e-6;
    assert!((used(&mut host, "k", "budget") - usd).abs() < 1e-12);
    assert_eq!(metric(&host, "usage_missing"), 1);

    // Polling returns the finished response with its usage: not charged again.
    for _ in 0..3 {
        let poll = Request::get("/v1/responses/resp_bg_1").header("x-bf-vk", "sk");
        let ex = host.vm(0).exchange(
            &poll,
            &Response::ok(fixture("openai-responses-background.json")),
        );
        assert_eq!(ex.client.status, 200);
    }
    assert_eq!(used(&mut host, "k", "tokens"), tokens);
    assert_eq!(metric(&host, "usage_missing"), 1);
}

#[test]
fn only_responses_to_post_are_charged() {
    let mut host = host(&metered_config());
    for method in ["GET", "DELETE", "PUT"] {
        let mut request = chat("sk", "gpt-4o-mini");
        request.headers.replace(":method", method);
        let ex = host.vm(0).exchange(&request, &openai_json(100, 50));
        assert_eq!(ex.client.status, 200, "{method} is admitted");
    }
    assert_eq!(used(&mut host, "k", "tokens"), 0.0);
    assert_eq!(metric(&host, "usage_missing"), 0);
    let ex = host
        .vm(0)
        .exchange(&chat("sk", "gpt-4o-mini"), &openai_json(100, 50));
    assert_eq!(ex.client.status, 200);
    assert_eq!(used(&mut host, "k", "tokens"), 150.0);
}

#[test]
fn free_paths_are_not_charged_an_estimate_but_reported_usage_still_is() {
    let config = config(&format!(
        r#""free_paths": ["/v1/models", "/v1/responses/*/cancel", "/v1/embeddings"], {KEY}"#
    ));
    let mut host = host(&config);
    let cancel = Request::post("/v1/responses/resp_1/cancel", "").header("x-bf-vk", "sk");
    let ex = host.vm(0).exchange(&cancel, &Response::ok(QUEUED));
    assert_eq!(ex.client.status, 200);
    let listed = Request::post("/v1/models?limit=3", "{}").header("x-bf-vk", "sk");
    host.vm(0)
        .exchange(&listed, &Response::ok(r#"{"object":"list","data":[]}"#));
    assert_eq!(used(&mut host, "k", "tokens"), 0.0);
    assert_eq!(metric(&host, "usage_missing"), 0);
    // A free path that does report usage is charged it.
    let embeddings = Request::post(
        "/v1/embeddings",
        r#"{"model":"text-embedding-3-small","input":["a","b"]}"#,
    )
    .header("x-bf-vk", "sk");
    host.vm(0).exchange(
        &embeddings,
        &Response::ok(fixture("openai-embeddings.json")),
    );
    assert_eq!(used(&mut host, "k", "tokens"), 17.0);
    // A path not listed is charged its estimate.
    let other = Request::post("/v1/responses/resp_1/input_items", "{}").header("x-bf-vk", "sk");
    let answer = r#"{"object":"list","data":[]}"#;
    host.vm(0).exchange(&other, &Response::ok(answer));
    let (prompt, output) = exchange_estimate(2, None, answer.len());
    assert_eq!(
        used(&mut host, "k", "tokens"),
        (17 + prompt + output) as f64
    );
    assert_eq!(metric(&host, "usage_missing"), 1);
}

#[test]
fn an_estimate_reads_the_output_cap_of_a_request_whose_path_names_the_model() {
    let mut host = host(&metered_config());
    let body =
        r#"{"contents":[{"parts":[{"text":"hi"}]}],"generationConfig":{"maxOutputTokens":100}}"#;
    let request = Request::post("/v1beta/models/gemini-2.5-flash:generateContent", body)
        .header("x-bf-vk", "sk");
    let answer = r#"{"candidates":[]}"#;
    let ex = host
        .vm(0)
        .exchange_chunked(&request, &Response::ok(answer), 9);
    assert_eq!(ex.client.status, 200);
    let (prompt, output) = exchange_estimate(body.len(), Some(100), answer.len());
    assert_eq!(used(&mut host, "k", "tokens"), (prompt + output) as f64);
    let usd = prompt as f64 * 3e-7 + output as f64 * 2.5e-6;
    assert!((used(&mut host, "k", "budget") - usd).abs() < 1e-12);
}

/// Bedrock InvokeModel of a model whose own body format has no `usage`.
fn invoke(model: &str) -> Request {
    Request::post(
        &format!("/model/{}/invoke", model.replace(':', "%3A")),
        r#"{"prompt":"hi","max_gen_len":50}"#,
    )
    .header("x-bf-vk", "sk")
}

fn invoke_answer(input: &str, output: &str) -> Response {
    Response::ok(r#"{"generation":"Hello","prompt_token_count":12,"generation_token_count":5,"stop_reason":"stop"}"#)
        .header("X-Amzn-Bedrock-Input-Token-Count", input)
        .header("X-Amzn-Bedrock-Output-Token-Count", output)
        .header("X-Amzn-Bedrock-Invocation-Latency", "312")
}

#[test]
fn bedrock_invoke_model_is_charged_from_its_token_count_headers() {
    let config = priced(
        r#"{"meta.llama3-70b-instruct-v1:0": {"input_cost_per_token": 2.65e-6, "output_cost_per_token": 3.5e-6},
            "anthropic.claude-sonnet-4-5-20250929-v1:0": {"input_cost_per_token": 3e-6, "output_cost_per_token": 1.5e-5}}"#,
    );
    let mut host = host(&config);
    let ex = host.vm(0).exchange(
        &invoke("meta.llama3-70b-instruct-v1:0"),
        &invoke_answer("12", "5"),
    );
    assert_eq!(ex.client.status, 200);
    assert_eq!(used(&mut host, "k", "tokens"), 17.0);
    assert_usd(
        used(&mut host, "k", "budget"),
        12 * 2_650_000_000 + 5 * 3_500_000_000,
    );
    assert_eq!(metric(&host, "usage_missing"), 0);

    // A body that reports usage (Anthropic's format) is charged from the body.
    let anthropic = host.vm(0).exchange(
        &invoke(BEDROCK_MODEL),
        &Response::ok(fixture("anthropic-messages.json"))
            .header("x-amzn-bedrock-input-token-count", "1")
            .header("x-amzn-bedrock-output-token-count", "1"),
    );
    assert_eq!(anthropic.client.status, 200);
    assert_eq!(used(&mut host, "k", "tokens"), 17.0 + 10_325.0);
}

#[test]
fn token_count_headers_count_only_on_bedrock_paths() {
    let mut host = host(&metered_config());
    let request = chat("sk", "gpt-4o-mini");
    let answer = r#"{"choices":[]}"#;
    let response = Response::ok(answer)
        .header("x-amzn-bedrock-input-token-count", "1")
        .header("x-amzn-bedrock-output-token-count", "1");
    host.vm(0).exchange(&request, &response);
    let (prompt, output) = exchange_estimate(request.body.len(), None, answer.len());
    assert_eq!(used(&mut host, "k", "tokens"), (prompt + output) as f64);
}

#[test]
fn in_fleet_mode_an_estimate_is_reported_to_limitador_and_a_poll_nothing() {
    use crate::fleet::{fleet_config, fleet_host};
    let config = fleet_config(
        "closed",
        r#""virtual_keys":[{"id":"k","value":"sk",
            "rate_limit":{"token_max_limit":1000000,"token_reset_duration":"1h"},
            "budgets":[{"max_limit":100,"reset_duration":"1d"}]}]"#,
    );
    let (mut host, _) = fleet_host(&config, 1);
    let reports = |host: &host_tests::Host| -> Vec<serde_json::Value> {
        host.callouts()
            .into_iter()
            .filter(|c| c.header(":path") == Some("/report"))
            .map(|c| serde_json::from_slice(&c.body).expect("JSON report"))
            .collect()
    };
    let poll = Request::get("/v1/responses/resp_bg_1").header("x-bf-vk", "sk");
    let ex = host.vm(0).exchange(
        &poll,
        &Response::ok(fixture("openai-responses-background.json")),
    );
    assert_eq!(ex.client.status, 200);
    host.run_due();
    assert!(reports(&host).is_empty(), "a GET is not charged");

    let request = chat("sk", "gpt-4o-mini");
    let answer = r#"{"choices":[]}"#;
    let ex = host.vm(0).exchange(&request, &Response::ok(answer));
    assert_eq!(ex.client.status, 200);
    host.run_due();
    let (prompt, output) = exchange_estimate(request.body.len(), None, answer.len());
    let deltas: Vec<u64> = reports(&host)
        .iter()
        .map(|r| r["delta"].as_u64().expect("delta"))
        .collect();
    // Tokens, then nano-USD: $1.5e-7 and $6e-7 per token are 150 and 600 nano-USD.
    assert_eq!(deltas, [prompt + output, prompt * 150 + output * 600]);
}
