//! Operating the filter through the real module: response headers, the usage endpoint,
//! shadow mode, Envoy counters, logs, and hostile input that must never trap the VM.

use host_tests::{Request, Response};

use crate::support::*;

fn hierarchy_config(extra: &str) -> String {
    config(&format!(
        r#"{extra}
        "customers":[{{"id":"acme","budgets":[{{"max_limit":100,"reset_duration":"1M","calendar_aligned":true}}]}}],
        "teams":[{{"id":"ml","customer_id":"acme","rate_limit":{{"request_max_limit":50,"request_reset_duration":"1h","token_max_limit":1000,"token_reset_duration":"1h"}}}}],
        "virtual_keys":[
          {{"id":"k1","value":"sk-1","team_id":"ml","rate_limit":{{"request_max_limit":3,"request_reset_duration":"1m"}},
            "budgets":[{{"max_limit":2,"reset_duration":"1d"}}],
            "provider_configs":[{{"provider":"openai","rate_limit":{{"request_max_limit":10,"request_reset_duration":"1h"}}}}]}},
          {{"id":"k2","value":"sk-2","team_id":"ml"}},
          {{"id":"other","value":"sk-other"}}]"#
    ))
}

#[test]
fn quota_headers_show_the_tightest_limit_of_each_kind() {
    let mut host = host(&hierarchy_config(""));
    let vm = host.vm(0);
    let ex = vm.exchange(&chat("sk-1", "openai/gpt-4o-mini"), &openai_json(100, 100));
    assert_eq!(ex.client.status, 200);
    assert_eq!(
        header(&ex, "x-ratelimit-limit-requests"),
        Some("3"),
        "key: 3/min is tighter than team 50/h"
    );
    assert_eq!(header(&ex, "x-ratelimit-remaining-requests"), Some("2"));
    assert_eq!(header(&ex, "x-ratelimit-reset-requests"), Some("1m0s"));
    assert_eq!(header(&ex, "x-ratelimit-limit-tokens"), Some("1000"));
    assert_eq!(
        header(&ex, "x-ratelimit-remaining-tokens"),
        Some("1000"),
        "tokens are charged after the response"
    );
    assert_eq!(header(&ex, "x-ratelimit-reset-tokens"), Some("1h0m0s"));
    assert_eq!(header(&ex, "x-budget-limit-usd"), Some("2"));
    assert_eq!(header(&ex, "x-budget-remaining-usd"), Some("2"));
    assert_eq!(header(&ex, "x-budget-reset"), Some("24h0m0s"));
    host.clock().advance(std::time::Duration::from_secs(15));
    let ex = host
        .vm(0)
        .exchange(&chat("sk-1", "openai/gpt-4o-mini"), &openai_json(1, 1));
    assert_eq!(header(&ex, "x-ratelimit-remaining-requests"), Some("1"));
    assert_eq!(header(&ex, "x-ratelimit-reset-requests"), Some("45s"));
    assert_eq!(header(&ex, "x-ratelimit-remaining-tokens"), Some("800"));
    // 100 × 1.5e-7 + 100 × 6e-7 = 0.000075
    assert_eq!(header(&ex, "x-budget-remaining-usd"), Some("1.999925"));
}

#[test]
fn response_headers_can_be_turned_off() {
    let mut host = host(&hierarchy_config(r#""response_headers":false,"#));
    let ex = host
        .vm(0)
        .exchange(&chat("sk-1", "openai/gpt-4o-mini"), &openai_json(1, 1));
    assert_eq!(ex.client.status, 200);
    assert_eq!(header(&ex, "x-ratelimit-limit-requests"), None);
    assert_eq!(header(&ex, "x-budget-limit-usd"), None);
}

#[test]
fn the_usage_endpoint_answers_itself_by_key_by_admin_or_401() {
    let mut host = host(&hierarchy_config(""));
    host.vm(0)
        .exchange(&chat("sk-1", "openai/gpt-4o-mini"), &openai_json(100, 20));
    let vm = host.vm(0);
    let own = vm.exchange(
        &Request::get("/governance/usage").header("x-bf-vk", "sk-1"),
        &Response::status(500),
    );
    assert_eq!(own.client.status, 200);
    assert!(own.upstream.headers.is_none(), "never forwarded");
    let counters = body_json(&own)["counters"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut owners: Vec<String> = counters
        .iter()
        .map(|c| {
            format!(
                "{}:{}:{}",
                c["owner"].as_str().unwrap(),
                c["id"].as_str().unwrap(),
                c["kind"].as_str().unwrap()
            )
        })
        .collect();
    owners.sort();
    assert_eq!(
        owners,
        [
            "customer:acme:budget",
            "provider_config:k1/openai:requests",
            "team:ml:requests",
            "team:ml:tokens",
            "virtual_key:k1:budget",
            "virtual_key:k1:requests",
        ]
    );
    let team_tokens = counters
        .iter()
        .find(|c| c["id"] == "ml" && c["kind"] == "tokens")
        .unwrap();
    assert_eq!(team_tokens["used"], 120);
    assert_eq!(team_tokens["remaining"], 880);
    assert_eq!(team_tokens["limit"], 1000);
    assert_eq!(team_tokens["reset_duration"], "1h");
    assert_eq!(team_tokens["calendar_aligned"], false);
    let acme = counters.iter().find(|c| c["id"] == "acme").unwrap();
    assert_eq!(acme["window_start"], "2026-11-01T00:00:00Z");
    assert_eq!(acme["window_end"], "2026-12-01T00:00:00Z");
    assert_eq!(acme["limit"], 100.0);

    let all = vm.exchange(
        &Request::get("/governance/usage?x=1")
            .header("authorization", &format!("Bearer {ADMIN_KEY}")),
        &Response::status(500),
    );
    assert_eq!(
        body_json(&all)["counters"].as_array().map(Vec::len),
        Some(6)
    );

    let other = vm.exchange(
        &Request::get("/governance/usage").header("x-bf-vk", "sk-other"),
        &Response::status(500),
    );
    assert_eq!(
        body_json(&other)["counters"].as_array().map(Vec::len),
        Some(0)
    );
    let nobody = vm.exchange(&Request::get("/governance/usage"), &Response::status(500));
    assert_eq!(nobody.client.status, 401);
    let wrong_admin = vm.exchange(
        &Request::get("/governance/usage").header("authorization", "Bearer not-the-admin"),
        &Response::status(500),
    );
    assert_eq!(wrong_admin.client.status, 401);
}

#[test]
fn shadow_mode_counts_would_be_rejections_but_never_rejects() {
    let mut host = host(&hierarchy_config(r#""mode":"shadow","#));
    let vm = host.vm(0);
    for _ in 0..5 {
        let ex = vm.exchange(&chat("sk-1", "openai/gpt-4o-mini"), &openai_json(10, 10));
        assert_eq!(ex.client.status, 200);
        assert!(ex.upstream.headers.is_some());
    }
    let unknown = vm.exchange(&chat("sk-nope", "gpt-4o-mini"), &openai_json(1, 1));
    assert_eq!(unknown.client.status, 200);
    assert_eq!(
        metric(&host, "shadow_rejected"),
        3,
        "two over the key's 3/min, one unknown key"
    );
    assert_eq!(metric(&host, "rejected"), 0);
    assert_eq!(
        used(&mut host, "ml", "tokens"),
        100.0,
        "shadow mode still charges"
    );
    assert!(host
        .vm(0)
        .has_log("shadow: would reject with 429 request_limited"));
}

#[test]
fn shadow_mode_never_refuses_even_when_counters_fail_and_failure_mode_is_closed() {
    let config = config(
        r#""mode":"shadow","failure_mode":"closed",
        "virtual_keys":[{"id":"k","value":"sk",
          "rate_limit":{"request_max_limit":100,"request_reset_duration":"1h",
                        "token_max_limit":1000,"token_reset_duration":"1h"}}]"#,
    );
    let mut host = host_with(&config, 2);
    let sd = host.shared_data();
    let counter_keys: Vec<Vec<u8>> = sd
        .keys("governance")
        .into_iter()
        .filter(|k| k.starts_with(b"governance:virtual_key:k:"))
        .collect();
    assert_eq!(counter_keys.len(), 2);
    for key in &counter_keys {
        sd.overwrite_raw("governance", key, b"unreadable");
    }
    for vm in 0..2 {
        let ex = host
            .vm(vm)
            .exchange(&chat("sk", "gpt-4o-mini"), &openai_json(10, 10));
        assert_eq!(ex.client.status, 200, "shadow never refuses");
        assert!(ex.upstream.complete, "forwarded whole");
        assert!(!host.vm(vm).is_failed());
    }
    assert!(metric(&host, "store_failures") >= 2);
    assert_eq!(metric(&host, "shadow_rejected"), 2, "one would-be 503 each");
    assert_eq!(metric(&host, "rejected"), 0);
    assert!(host
        .vm(0)
        .has_log("shadow: would reject with 503 governance_unavailable"));
}

#[test]
fn envoy_counters_and_log_lines() {
    let mut host = host_with(&hierarchy_config(""), 2);
    for i in 0..5 {
        host.vm(i % 2)
            .exchange(&chat("sk-1", "openai/gpt-4o-mini"), &openai_json(10, 10));
    }
    host.vm(0)
        .exchange(&chat("sk-bad", "gpt-4o-mini"), &openai_json(1, 1));
    assert_eq!(
        metric(&host, "admitted"),
        3,
        "counters aggregate over workers"
    );
    assert_eq!(metric(&host, "rejected"), 3);
    assert_eq!(metric(&host, "rejected.request_limited"), 2);
    assert_eq!(metric(&host, "rejected.virtual_key_not_found"), 1);
    assert_eq!(metric(&host, "tokens_charged"), 60);
    assert_eq!(
        metric(&host, "spend_micro_usd"),
        22,
        "3 × 7.5 µUSD = 22.5: whole micro-dollars, the remainder carried"
    );
    let line = host
        .vm(0)
        .logs()
        .iter()
        .find(|l| l.message.contains("rejected 401"))
        .map(|l| l.message.clone());
    let line = line.expect("a rejection log line");
    assert!(
        line.starts_with('#'),
        "request log lines start with the context id: {line}"
    );
}

#[test]
fn hostile_input_never_traps_the_vm() {
    let mut host = host(&hierarchy_config(""));
    let long = "x".repeat(70_000);
    let requests = vec![
        Request::post("/v1/chat/completions", vec![0xff, 0xfe, 0x00, 0x7b])
            .header("x-bf-vk", "sk-2"),
        Request::post("/v1/chat/completions", r#"{"model":"#).header("x-bf-vk", "sk-2"),
        Request::post("/v1/chat/completions", format!(r#"{{"model":"{long}"}}"#))
            .header("x-bf-vk", "sk-2"),
        Request::post("/v1/chat/completions", r#"{"model":123}"#).header("x-bf-vk", "sk-2"),
        Request::post(
            "/v1/chat/completions",
            "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
        )
        .header("x-bf-vk", "sk-2"),
        Request::get("/v1beta/models/:generateContent").header("x-bf-vk", "sk-2"),
        Request::get("/governance/usage?\u{7f}").header("authorization", "Bearer \u{e9}\u{e9}"),
        chat("sk-2", "gpt-4o-mini").header("x-bf-provider", "\u{1f600}"),
        chat(&long, "gpt-4o-mini"),
        Request::post("/v1/chat/completions", chat_body("gpt-4o-mini"))
            .header_bytes("x-bf-vk", b"sk-\xff\xfe"),
        Request::post("/v1/chat/completions", chat_body("gpt-4o-mini"))
            .header_bytes("authorization", b"Bearer \xc3\x28"),
        chat("sk-2", "gpt-4o-mini").header_bytes("x-bf-provider", b"open\xffai"),
        Request::get("/governance/usage").header_bytes("authorization", b"Bearer \x80\x80"),
    ];
    let responses = vec![
        Response::ok(r#"{"usage":{"prompt_tokens":1e30,"completion_tokens":-5}}"#),
        Response::ok(
            r#"{"usage":{"prompt_tokens":18446744073709551616,"completion_tokens":18446744073709551615}}"#,
        ),
        Response::ok(r#"{"usage":{"prompt_tokens":"#),
        Response::ok(vec![0xffu8; 5000]),
        sse(b"data: {\"usage\":{\"prompt_tokens\":5}\r\n\r\ndata: [DONE]\n\n\x00\x01".to_vec()),
        Response::status(200).body("text/event-stream", b"event: x\ndata: {{{{{{{\n\n".to_vec()),
    ];
    for (i, request) in requests.iter().enumerate() {
        for response in &responses {
            let ex = host.vm(0).exchange_chunked(request, response, 3 + i);
            assert!(ex.client.status != 0, "every request gets an answer");
        }
    }
    assert!(!host.vm(0).is_failed(), "the VM survived");
    let invalid_key = Request::post("/v1/chat/completions", chat_body("gpt-4o-mini"))
        .header_bytes("x-bf-vk", b"\xff");
    let ex = host.vm(0).exchange(&invalid_key, &openai_json(1, 1));
    assert_eq!(
        (ex.client.status, error_type(&ex).as_str()),
        (401, "virtual_key_not_found")
    );
    let ex = host
        .vm(0)
        .exchange(&chat("sk-other", "gpt-4o-mini"), &openai_json(1, 1));
    assert_eq!(ex.client.status, 200, "and keeps serving");
}
