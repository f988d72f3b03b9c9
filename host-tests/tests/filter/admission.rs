//! Admission through the real module (docs/clients.md): identification, the order of checks,
//! status codes and bodies, and what reaches upstream.

use host_tests::{Request, Response};

use crate::support::*;

fn keys_config() -> String {
    config(
        r#""customers":[{"id":"acme"}],
        "teams":[{"id":"ml","customer_id":"acme"}],
        "virtual_keys":[
          {"id":"vk-on","value":"sk-on","team_id":"ml"},
          {"id":"vk-off","value":"sk-off","is_active":false},
          {"id":"vk-old","value":"sk-old","expires_at":"2026-01-01T00:00:00Z"},
          {"id":"vk-hashed","value_sha256":"b2b6b6b0d8bcc4b14cc3ed7f3c6aa4a7d2d6dd0f6b5f0eb3c34a3ad1e1b2e1a0"}
        ]"#,
    )
}

#[test]
fn identification_statuses_and_openai_shaped_bodies() {
    let mut host = host(&keys_config());
    let vm = host.vm(0);
    let cases = [
        (
            Request::post("/v1/chat/completions", chat_body("gpt-4o-mini")),
            401,
            "virtual_key_required",
        ),
        (
            chat("sk-unknown", "gpt-4o-mini"),
            401,
            "virtual_key_not_found",
        ),
        (chat("sk-off", "gpt-4o-mini"), 403, "virtual_key_blocked"),
        (chat("sk-old", "gpt-4o-mini"), 403, "virtual_key_expired"),
    ];
    for (request, status, kind) in cases {
        let ex = vm.exchange(&request, &openai_json(1, 1));
        assert_eq!(ex.client.status, status, "{kind}");
        assert_eq!(error_type(&ex), kind);
        let body = body_json(&ex);
        assert_eq!(body["error"]["code"], kind);
        assert!(body["error"]["param"].is_null());
        assert!(body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
        assert_eq!(header(&ex, "content-type"), Some("application/json"));
        assert!(
            ex.upstream.headers.is_none(),
            "{kind}: nothing reaches upstream"
        );
    }
    assert!(!vm.is_failed());
}

#[test]
fn the_key_header_is_stripped_and_other_headers_kept() {
    let mut host = host(&keys_config());
    let request = chat("sk-on", "gpt-4o-mini").header("x-trace", "t1");
    let ex = host.vm(0).exchange(&request, &openai_json(10, 5));
    assert_eq!(ex.client.status, 200);
    let upstream = ex.upstream.headers.expect("forwarded");
    assert_eq!(upstream.get("authorization"), None);
    assert_eq!(upstream.get("x-trace"), Some("t1"));
    assert_eq!(
        ex.upstream.body,
        chat_body("gpt-4o-mini").into_bytes(),
        "the body passes untouched"
    );
}

#[test]
fn key_headers_are_tried_in_order_and_only_bearer_authorization_counts() {
    let mut host = host(&keys_config());
    let vm = host.vm(0);
    let basic = Request::post("/v1/chat/completions", chat_body("gpt-4o-mini"))
        .header("authorization", "Basic c2stb246eA==")
        .header("x-api-key", "sk-on");
    let ex = vm.exchange(&basic, &openai_json(1, 1));
    assert_eq!(
        ex.client.status, 200,
        "x-api-key used when authorization is not Bearer"
    );
    let upstream = ex.upstream.headers.expect("forwarded");
    assert_eq!(upstream.get("x-api-key"), None, "the carrier is stripped");
    assert_eq!(
        upstream.get("authorization"),
        Some("Basic c2stb246eA=="),
        "the other header stays"
    );

    let both = Request::post("/v1/chat/completions", chat_body("gpt-4o-mini"))
        .header("x-api-key", "sk-off")
        .header("X-BF-VK", "sk-on");
    assert_eq!(
        vm.exchange(&both, &openai_json(1, 1)).client.status,
        200,
        "x-bf-vk comes first"
    );
}

#[test]
fn secrets_never_reach_replies_or_logs() {
    let mut host = host(&keys_config());
    let vm = host.vm(0);
    for key in ["sk-off", "sk-old", "sk-unknown-secret", "sk-on"] {
        let ex = vm.exchange(&chat(key, "gpt-4o-mini"), &openai_json(1, 1));
        assert!(!String::from_utf8_lossy(&ex.client.body).contains(key));
    }
    for entry in vm.logs() {
        assert!(
            !entry.message.contains("sk-"),
            "secret in log: {}",
            entry.message
        );
    }
}

fn model_config() -> String {
    config(
        r#""virtual_keys":[{"id":"k","value":"sk","allowed_models":["gpt-4o-mini","claude-sonnet-4*","gemini-2.5-flash","unpriced-model"],
          "budgets":[{"max_limit":10,"reset_duration":"1d"}],
          "rate_limit":{"request_max_limit":100,"request_reset_duration":"1h"},
          "provider_configs":[
            {"provider":"openai","allowed_models":["gpt-4o-mini","unpriced-model"],
             "rate_limit":{"request_max_limit":2,"request_reset_duration":"1h"}},
            {"provider":"anthropic"},
            {"provider":"gemini"}]}]"#,
    )
}

#[test]
fn provider_and_model_rules_with_prefix_header_and_gemini_path() {
    let mut host = host(&model_config());
    let vm = host.vm(0);
    let blocked = vm.exchange(&chat("sk", "openai/gpt-4o"), &openai_json(1, 1));
    assert_eq!(
        (blocked.client.status, error_type(&blocked).as_str()),
        (403, "model_blocked")
    );
    assert!(
        !blocked.upstream.complete,
        "a refused request never reaches upstream whole"
    );

    let by_provider = vm.exchange(&chat("sk", "openai/claude-sonnet-4-5"), &openai_json(1, 1));
    assert_eq!(
        error_type(&by_provider),
        "model_blocked",
        "the openai config allows only gpt-4o-mini"
    );

    let unknown_provider = chat("sk", "gpt-4o-mini").header("x-bf-provider", "mistral");
    let ex = vm.exchange(&unknown_provider, &openai_json(1, 1));
    assert_eq!(
        (ex.client.status, error_type(&ex).as_str()),
        (403, "provider_blocked")
    );
    assert!(
        ex.upstream.headers.is_none(),
        "a provider header is judged before anything goes upstream"
    );

    let unpriced = vm.exchange(&chat("sk", "openai/unpriced-model"), &openai_json(1, 1));
    assert_eq!(error_type(&unpriced), "model_not_priced");

    let gemini = Request::post(
        "/v1beta/models/gemini-2.5-flash:generateContent",
        r#"{"contents":[]}"#,
    )
    .header("x-goog-api-key", "sk")
    .header("x-bf-provider", "gemini");
    let ex = vm.exchange(&gemini, &Response::ok(fixture("gemini-generate.json")));
    assert_eq!(ex.client.status, 200);
    let gemini_blocked = Request::post("/v1beta/models/gemini-2.0-pro:generateContent", "{}")
        .header("x-goog-api-key", "sk")
        .header("x-bf-provider", "gemini");
    let ex = vm.exchange(&gemini_blocked, &Response::ok("{}"));
    assert_eq!(error_type(&ex), "model_blocked");
    assert!(
        ex.upstream.headers.is_none(),
        "the Gemini path names the model at headers"
    );
}

#[test]
fn provider_config_request_limit_applies_once_the_model_is_known() {
    let mut host = host(&model_config());
    let vm = host.vm(0);
    for _ in 0..2 {
        assert_eq!(
            vm.exchange(&chat("sk", "openai/gpt-4o-mini"), &openai_json(1, 1))
                .client
                .status,
            200
        );
    }
    let ex = vm.exchange(&chat("sk", "openai/gpt-4o-mini"), &openai_json(1, 1));
    assert_eq!(
        (ex.client.status, error_type(&ex).as_str()),
        (429, "request_limited")
    );
    assert!(body_json(&ex)["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .contains("provider config 'k/openai'"));
    assert!(!ex.upstream.complete, "the final body frame was held back");
    // The key-level slot this request took at its headers was given back.
    assert_eq!(used(&mut host, "k", "requests"), 2.0);
    assert_eq!(used(&mut host, "k/openai", "requests"), 2.0);
    // Other providers are unaffected.
    let ex = host.vm(0).exchange(
        &chat("sk", "anthropic/claude-sonnet-4-5"),
        &openai_json(1, 1),
    );
    assert_eq!(ex.client.status, 200);
}

#[test]
fn a_large_request_body_streams_through_and_the_model_after_it_is_found() {
    let mut host = host(&model_config());
    let filler = "a".repeat(5 * 1024 * 1024);
    let body = format!(
        r#"{{"messages":[{{"role":"user","content":"{filler}"}}],"model":"openai/gpt-4o"}}"#
    );
    let request = Request::post("/v1/chat/completions", body.clone()).header("x-bf-vk", "sk");
    let ex = host
        .vm(0)
        .exchange_chunked(&request, &openai_json(1, 1), 64 * 1024);
    assert_eq!(
        error_type(&ex),
        "model_blocked",
        "model read after 5 MB of messages"
    );
    assert!(!ex.upstream.complete);
    assert!(
        ex.upstream.body.len() < body.len(),
        "upstream never got it whole"
    );

    let allowed = format!(
        r#"{{"messages":[{{"role":"user","content":"{filler}"}}],"model":"openai/gpt-4o-mini"}}"#
    );
    let request = Request::post("/v1/chat/completions", allowed.clone()).header("x-bf-vk", "sk");
    let ex = host
        .vm(0)
        .exchange_chunked(&request, &openai_json(1, 1), 64 * 1024);
    assert_eq!(
        ex.client.status, 200,
        "5 MB passes: nothing buffers it in Envoy (limit 1 MiB)"
    );
    assert_eq!(ex.upstream.body.len(), allowed.len());
    assert!(ex.upstream.complete);
}

/// A budget of $10 a day; `allowed` models only; reservations as given.
fn last_model_config(allowed: &str, reservations: bool) -> String {
    config(&format!(
        r#""reservation": {{"enabled": {reservations}}},
        "virtual_keys":[{{"id":"k","value":"sk","allowed_models":[{allowed}],
          "budgets":[{{"max_limit":10,"reset_duration":"1d"}}]}}]"#
    ))
}

fn post(body: &str) -> Request {
    Request::post("/v1/chat/completions", body.to_string()).header("x-bf-vk", "sk")
}

#[test]
fn the_last_top_level_model_of_the_body_is_the_one_judged_and_priced() {
    let messages = r#""messages":[{"role":"user","content":"Say \"model\":\"gpt-4.1\" twice","model":"gpt-4.1"}]"#;
    for reservations in [false, true] {
        for chunk in [1usize, 7, 64, 1 << 20] {
            let what = format!("reservations {reservations}, chunks of {chunk}");
            // Only gpt-4o-mini allowed: a later gpt-4.1 is what upstream would run.
            let mut host = host_with(&last_model_config(r#""gpt-4o-mini""#, reservations), 2);
            let smuggled = format!(r#"{{"model":"gpt-4o-mini",{messages},"model":"gpt-4.1"}}"#);
            let ex = host
                .vm(1)
                .exchange_chunked(&post(&smuggled), &openai_json(1000, 1000), chunk);
            assert_eq!(
                (ex.client.status, error_type(&ex).as_str()),
                (403, "model_blocked"),
                "{what}"
            );
            assert!(
                body_json(&ex)["error"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("'gpt-4.1'")),
                "{what}"
            );
            assert!(
                !ex.upstream.complete,
                "{what}: never reached upstream whole"
            );
            // The other way round the last model is allowed; nested `model`s never count.
            let last_allowed = format!(
                r#"{{"model":"gpt-4.1",{messages},"tools":[{{"model":"gpt-4.1"}}],"model":"gpt-4o-mini"}}"#
            );
            let ex =
                host.vm(0)
                    .exchange_chunked(&post(&last_allowed), &openai_json(1000, 1000), chunk);
            assert_eq!(ex.client.status, 200, "{what}");
            // Priced as gpt-4o-mini: 1000 × 1.5e-7 + 1000 × 6e-7 = $0.00075.
            let spent = used(&mut host, "k", "budget");
            assert!((spent - 0.00075).abs() < 1e-12, "{what}: spent {spent}");

            // Both allowed: priced as the last one, whatever came first.
            let mut host = host_with(
                &last_model_config(r#""gpt-4o-mini","gpt-4.1*""#, reservations),
                2,
            );
            let ex = host
                .vm(1)
                .exchange_chunked(&post(&smuggled), &openai_json(1000, 1000), chunk);
            assert_eq!(ex.client.status, 200, "{what}");
            // gpt-4.1: 1000 × 2e-6 + 1000 × 8e-6 = $0.01.
            let spent = used(&mut host, "k", "budget");
            assert!((spent - 0.01).abs() < 1e-12, "{what}: spent {spent}");
        }
    }
}

#[test]
fn a_last_model_that_cannot_be_read_is_refused_where_model_rules_apply() {
    let long = "m".repeat(300);
    let bodies = [
        r#"{"model":"gpt-4o-mini","messages":[],"model":null}"#.to_string(),
        r#"{"model":"gpt-4o-mini","messages":[],"model":["gpt-4.1"]}"#.to_string(),
        r#"{"model":"gpt-4o-mini","messages":[],"model":42}"#.to_string(),
        format!(r#"{{"model":"gpt-4o-mini","messages":[],"model":"gpt-4.1-{long}"}}"#),
    ];
    let mut host = host_with(&last_model_config(r#""gpt-4o-mini""#, false), 2);
    for (i, body) in bodies.iter().enumerate() {
        let ex = host.vm(i % 2).exchange(&post(body), &openai_json(1, 1));
        assert_eq!(
            (ex.client.status, error_type(&ex).as_str()),
            (403, "model_blocked"),
            "{body:.80}"
        );
        assert!(
            body_json(&ex)["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("cannot be read")),
            "{body:.80}"
        );
    }
    // Without any rule that depends on the model, such a body just goes upstream.
    let mut open = host_with(&config(r#""virtual_keys":[{"id":"k","value":"sk"}]"#), 1);
    let first = bodies.first().map(String::as_str).unwrap_or_default();
    let ex = open.vm(0).exchange(&post(first), &openai_json(1, 1));
    assert_eq!(ex.client.status, 200);
}

#[test]
fn a_key_with_provider_configs_refuses_a_request_whose_provider_cannot_be_told() {
    for reservations in [false, true] {
        let config = config(&format!(
            r#""reservation": {{"enabled": {reservations}}},
            "virtual_keys":[{{"id":"k","value":"sk",
              "provider_configs":[{{"provider":"openai",
                 "rate_limit":{{"request_max_limit":1,"request_reset_duration":"1h"}}}}]}}]"#
        ));
        let mut host = host_with(&config, 2);
        let what = format!("reservations {reservations}");
        // No provider header, no known provider prefix: the openai limit would be sidestepped.
        for vm in 0..2 {
            let ex = host
                .vm(vm)
                .exchange(&chat("sk", "gpt-4o-mini"), &openai_json(1, 1));
            assert_eq!(
                (ex.client.status, error_type(&ex).as_str()),
                (403, "provider_blocked"),
                "{what}"
            );
            let message = body_json(&ex)["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            assert!(
                message.contains("could not be determined") && message.contains("x-bf-provider"),
                "{what}: {message}"
            );
            assert!(!ex.upstream.complete, "{what}");
        }
        // Told by the header or the prefix, the provider config's limit applies.
        let ex = host.vm(0).exchange(
            &chat("sk", "gpt-4o-mini").header("x-bf-provider", "openai"),
            &openai_json(1, 1),
        );
        assert_eq!(ex.client.status, 200, "{what}");
        let ex = host
            .vm(1)
            .exchange(&chat("sk", "openai/gpt-4o-mini"), &openai_json(1, 1));
        assert_eq!(
            (ex.client.status, error_type(&ex).as_str()),
            (429, "request_limited"),
            "{what}"
        );
        // A request naming neither a model nor a provider (listing models) is not judged.
        let list = Request::get("/v1/models").header("x-bf-vk", "sk");
        let ex = host
            .vm(0)
            .exchange(&list, &Response::ok(r#"{"object":"list","data":[]}"#));
        assert_eq!(ex.client.status, 200, "{what}");
    }
}

#[test]
fn request_limit_then_token_limit_then_budget_in_that_order() {
    let config = config(
        r#""virtual_keys":[{"id":"k","value":"sk",
          "rate_limit":{"request_max_limit":3,"request_reset_duration":"1h","token_max_limit":100,"token_reset_duration":"1h"},
          "budgets":[{"max_limit":0.001,"reset_duration":"1h"}]}]"#,
    );
    let mut host = host(&config);
    let vm = host.vm(0);
    // 100 tokens: the token limit is reached, and 100 × ~1.5e-7.. stays under the budget.
    let ex = vm.exchange(&chat("sk", "gpt-4o-mini"), &openai_json(60, 40));
    assert_eq!(ex.client.status, 200);
    let ex = vm.exchange(&chat("sk", "gpt-4o-mini"), &openai_json(1, 1));
    assert_eq!(
        (ex.client.status, error_type(&ex).as_str()),
        (429, "token_limited")
    );
    assert_eq!(header(&ex, "retry-after"), Some("3600"));
    assert_eq!(
        used(&mut host, "k", "requests"),
        1.0,
        "the token refusal gave its request slot back"
    );
}

#[test]
fn budget_refusal_is_402_with_level_numbers_and_reset() {
    let config = config(
        r#""customers":[{"id":"acme","budgets":[{"max_limit":0.0001,"reset_duration":"1d","calendar_aligned":true}]}],
        "teams":[{"id":"ml","customer_id":"acme"}],
        "virtual_keys":[{"id":"k","value":"sk","team_id":"ml"}]"#,
    );
    let mut host = host(&config);
    let vm = host.vm(0);
    // 400 × 1.5e-7 + 100 × 6e-7 = 0.00012
    assert_eq!(
        vm.exchange(&chat("sk", "gpt-4o-mini"), &openai_json(400, 100))
            .client
            .status,
        200
    );
    let ex = vm.exchange(&chat("sk", "gpt-4o-mini"), &openai_json(1, 1));
    assert_eq!(
        (ex.client.status, error_type(&ex).as_str()),
        (402, "budget_exceeded")
    );
    let message = body_json(&ex)["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(
        message,
        "customer 'acme' budget exceeded: 0.0001 of 0.0001 USD used, resets 2026-11-03T00:00:00Z"
    );
    assert_eq!(
        header(&ex, "retry-after"),
        Some("43200"),
        "12 h to the next UTC midnight"
    );
    assert!(
        ex.upstream.headers.is_none(),
        "budget refusals happen at request headers"
    );
}

#[test]
fn keyless_requests_pass_when_keys_are_optional() {
    let config = config(
        r#""require_virtual_key":false,"virtual_keys":[{"id":"k","value":"sk","is_active":false}]"#,
    );
    let mut host = host(&config);
    let ex = host.vm(0).exchange(
        &Request::post("/v1/chat/completions", chat_body("anything")),
        &openai_json(1, 1),
    );
    assert_eq!(ex.client.status, 200);
    let ex = host
        .vm(0)
        .exchange(&chat("sk", "gpt-4o-mini"), &openai_json(1, 1));
    assert_eq!(
        error_type(&ex),
        "virtual_key_blocked",
        "a key that is given is still checked"
    );
}
