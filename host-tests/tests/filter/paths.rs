//! The model and provider a request path names (Gemini, Vertex AI, Azure OpenAI
//! deployments, Bedrock), through the real module: judged at request headers, before
//! anything goes upstream, and used to price the response.

use host_tests::{Exchange, Request, Response};

use crate::support::*;

/// Key `sk` with a budget, a token limit and the given provider configs.
fn key_with(provider_configs: &str, extra: &str) -> String {
    config(&format!(
        r#"{extra} "virtual_keys":[{{"id":"k","value":"sk",
            "rate_limit":{{"token_max_limit":100000000,"token_reset_duration":"1d"}},
            "budgets":[{{"max_limit":1000,"reset_duration":"1d"}}]
            {provider_configs}}}]"#
    ))
}

fn post(path: &str, body: &str) -> Request {
    Request::post(path, body).header("x-bf-vk", "sk")
}

fn refused_before_upstream(ex: &Exchange, kind: &str) {
    assert_eq!(error_type(ex), kind, "{:?}", ex.client);
    assert!(
        ex.upstream.headers.is_none(),
        "judged at request headers: nothing went upstream"
    );
}

fn assert_spent(spent: f64, want: f64) {
    assert!((spent - want).abs() < 1e-12, "spent {spent}, want {want}");
}

const CONVERSE_BODY: &str = r#"{"messages":[{"role":"user","content":[{"text":"hi"}]}]}"#;

#[test]
fn a_bedrock_path_names_its_model_and_provider_at_request_headers() {
    let config = key_with(
        r#","provider_configs":[{"provider":"bedrock",
            "allowed_models":["anthropic.claude-sonnet-4-5*"],
            "rate_limit":{"request_max_limit":100,"request_reset_duration":"1h"}}]"#,
        "",
    );
    let mut host = host(&config);
    // The SDKs' encoding: `:` as %3A. The body names no model.
    let blocked = post(
        "/model/anthropic.claude-opus-4-1-20250805-v1%3A0/converse",
        CONVERSE_BODY,
    );
    let ex = host.vm(0).exchange(&blocked, &Response::ok("{}"));
    refused_before_upstream(&ex, "model_blocked");
    assert!(
        String::from_utf8_lossy(&ex.client.body)
            .contains("anthropic.claude-opus-4-1-20250805-v1:0"),
        "the decoded model is named: {}",
        String::from_utf8_lossy(&ex.client.body)
    );

    let allowed = post(
        &format!("/model/{}/converse", BEDROCK_MODEL.replace(':', "%3A")),
        CONVERSE_BODY,
    );
    let ex = host
        .vm(0)
        .exchange(&allowed, &Response::ok(fixture("bedrock-converse.json")));
    assert_eq!(ex.client.status, 200);
    // Priced as the path's model (the response names none): 30 input, 3,500 cache reads,
    // 1,000 cache writes, 265 output.
    let usd = 30.0 * 3e-6 + 3_500.0 * 3e-7 + 1_000.0 * 3.75e-6 + 265.0 * 1.5e-5;
    assert_spent(used(&mut host, "k", "budget"), usd);
    let provider_requests = counters(&mut host)
        .into_iter()
        .find(|c| c["owner"] == "provider_config" && c["kind"] == "requests")
        .expect("the bedrock provider config's request counter");
    assert_eq!(provider_requests["id"], "k/bedrock");
    assert_eq!(
        provider_requests["used"], 1,
        "the provider config's limit applied"
    );
}

#[test]
fn the_provider_header_wins_over_the_provider_a_path_implies() {
    let config = key_with(r#","provider_configs":[{"provider":"openai"}]"#, "");
    let mut host = host(&config);
    let path = format!("/model/{BEDROCK_MODEL}/converse");
    let ex = host
        .vm(0)
        .exchange(&post(&path, CONVERSE_BODY), &Response::ok("{}"));
    refused_before_upstream(&ex, "provider_blocked");
    assert!(String::from_utf8_lossy(&ex.client.body).contains("'bedrock'"));
    let named = post(&path, CONVERSE_BODY).header("x-bf-provider", "openai");
    let ex = host
        .vm(0)
        .exchange(&named, &Response::ok(fixture("bedrock-converse.json")));
    assert_eq!(ex.client.status, 200);
}

#[test]
fn an_azure_deployment_is_priced_as_the_model_the_table_maps_it_to() {
    let config = key_with("", r#""deployments": {"prod-mini": "gpt-4o-mini"},"#);
    let mut host = host(&config);
    let body = r#"{"messages":[{"role":"user","content":"hi"}]}"#;
    let mapped = post(
        "/openai/deployments/prod-mini/chat/completions?api-version=2024-10-21",
        body,
    );
    let ex = host.vm(0).exchange(&mapped, &openai_json(1_000, 100));
    assert_eq!(ex.client.status, 200);
    assert_spent(
        used(&mut host, "k", "budget"),
        1_000.0 * 1.5e-7 + 100.0 * 6e-7,
    );

    // A deployment the table does not name is taken as a model name.
    let named = post("/openai/deployments/gpt-4.1/chat/completions", body);
    let ex = host.vm(0).exchange(&named, &openai_json(1_000, 100));
    assert_eq!(ex.client.status, 200);
    assert_spent(
        used(&mut host, "k", "budget"),
        1_000.0 * 1.5e-7 + 100.0 * 6e-7 + 1_000.0 * 2e-6 + 100.0 * 8e-6,
    );

    // One that is no priced model is refused where a budget applies, before upstream.
    let unpriced = post("/openai/deployments/team-experiment/chat/completions", body);
    let ex = host.vm(0).exchange(&unpriced, &openai_json(1, 1));
    refused_before_upstream(&ex, "model_not_priced");
}

#[test]
fn an_azure_provider_config_limits_deployment_requests_at_headers() {
    let config = key_with(
        r#","provider_configs":[{"provider":"azure","allowed_models":["gpt-4o-mini"],
            "rate_limit":{"request_max_limit":1,"request_reset_duration":"1h"}}]"#,
        r#""deployments": {"prod-mini": "gpt-4o-mini", "prod-41": "gpt-4.1"},"#,
    );
    let mut host = host(&config);
    let body = r#"{"messages":[]}"#;
    let path = "/openai/deployments/prod-mini/chat/completions?api-version=2024-10-21";
    let ex = host.vm(0).exchange(&post(path, body), &openai_json(10, 10));
    assert_eq!(ex.client.status, 200);
    let ex = host.vm(0).exchange(&post(path, body), &openai_json(10, 10));
    refused_before_upstream(&ex, "request_limited");
    let other = post("/openai/deployments/prod-41/chat/completions", body);
    let ex = host.vm(0).exchange(&other, &openai_json(10, 10));
    refused_before_upstream(&ex, "model_blocked");
}

#[test]
fn vertex_ai_paths_name_google_and_anthropic_models() {
    let config = key_with(
        r#","provider_configs":[{"provider":"vertex_ai",
            "allowed_models":["gemini-2.5-flash","claude-sonnet-4*"]}]"#,
        "",
    );
    let mut host = host(&config);
    let base = "/v1/projects/p-1/locations/us-central1/publishers";
    let gemini = post(
        &format!("{base}/google/models/gemini-2.5-flash:generateContent"),
        r#"{"contents":[]}"#,
    );
    let ex = host
        .vm(0)
        .exchange(&gemini, &Response::ok(fixture("gemini-generate.json")));
    assert_eq!(ex.client.status, 200);
    // 500 uncached, 1,000 cached, 400 output (thinking included).
    let gemini_usd = 500.0 * 3e-7 + 1_000.0 * 7.5e-8 + 400.0 * 2.5e-6;
    assert_spent(used(&mut host, "k", "budget"), gemini_usd);

    let claude = post(
        &format!("{base}/anthropic/models/claude-sonnet-4-5%4020250929:rawPredict"),
        r#"{"anthropic_version":"vertex-2023-10-16","messages":[],"max_tokens":10}"#,
    );
    let ex = host
        .vm(0)
        .exchange(&claude, &Response::ok(fixture("anthropic-messages.json")));
    assert_eq!(ex.client.status, 200);
    let claude_usd = 25.0 * 3e-6 + 8_000.0 * 3e-7 + 2_000.0 * 3.75e-6 + 300.0 * 1.5e-5;
    assert_spent(used(&mut host, "k", "budget"), gemini_usd + claude_usd);

    let opus = post(
        &format!("{base}/anthropic/models/claude-opus-4-1@20250805:streamRawPredict"),
        r#"{"messages":[]}"#,
    );
    let ex = host.vm(0).exchange(&opus, &Response::ok("{}"));
    refused_before_upstream(&ex, "model_blocked");
}

#[test]
fn a_gemini_path_implies_the_gemini_provider() {
    let config = key_with(
        r#","provider_configs":[{"provider":"gemini","allowed_models":["gemini-2.5-flash"]}]"#,
        "",
    );
    let mut host = host(&config);
    let allowed = post(
        "/v1beta/models/gemini-2.5-flash:generateContent",
        r#"{"contents":[]}"#,
    );
    let ex = host
        .vm(0)
        .exchange(&allowed, &Response::ok(fixture("gemini-generate.json")));
    assert_eq!(ex.client.status, 200, "no provider header needed");
}

#[test]
fn a_model_place_in_the_path_that_cannot_be_read_is_refused_where_rules_need_it() {
    let config = key_with("", "");
    let mut host = host(&config);
    // %FF does not decode to UTF-8; the key's budget needs a price.
    let bad = post("/model/claude%FF/converse", CONVERSE_BODY);
    let ex = host.vm(0).exchange(&bad, &Response::ok("{}"));
    refused_before_upstream(&ex, "model_blocked");
    assert!(String::from_utf8_lossy(&ex.client.body).contains("request path"));
}
