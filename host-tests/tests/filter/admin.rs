//! The admin endpoints through the real module (docs/operating.md, runtime adjustments):
//! `POST <usage path>/reset` and `/credit` with the admin key; anyone else 401, bad bodies
//! 400, kept across configuration pushes, logged with what changed.

use host_tests::{Exchange, Host, Request, Response};
use serde_json::Value;

use crate::fleet::{fleet_config, fleet_host};
use crate::support::*;

const RESET: &str = "/governance/usage/reset";
const CREDIT: &str = "/governance/usage/credit";

fn key_config(budget_usd: f64, tokens: u64) -> String {
    config(&format!(
        r#""teams": [{{"id": "ml", "budgets": [{{"max_limit": 100, "reset_duration": "1M"}}]}}],
        "virtual_keys": [{{"id": "k", "value": "sk", "team_id": "ml",
            "budgets": [{{"max_limit": {budget_usd}, "reset_duration": "1d"}}],
            "rate_limit": {{"token_max_limit": {tokens}, "token_reset_duration": "1h",
                            "request_max_limit": 100, "request_reset_duration": "1h"}}}}]"#
    ))
}

fn admin(path: &str, body: &str) -> Request {
    Request::post(path, body.as_bytes().to_vec())
        .header("authorization", &format!("Bearer {ADMIN_KEY}"))
        .header("content-type", "application/json")
}

/// Sends `request` to the admin endpoint; the upstream would answer 500 if it got it.
fn post(host: &mut Host, request: &Request) -> Exchange {
    let ex = host.vm(0).exchange(request, &Response::status(500));
    assert!(ex.upstream.body.is_empty(), "no body byte goes upstream");
    let leaked = ex
        .upstream
        .headers
        .as_ref()
        .and_then(|h| h.get("authorization").map(str::to_string));
    assert_eq!(leaked, None, "the admin key never goes upstream");
    ex
}

fn charge(host: &mut Host, prompt: u64, completion: u64) {
    let ex = host
        .vm(0)
        .exchange(&chat("sk", "gpt-4o-mini"), &openai_json(prompt, completion));
    assert_eq!(ex.client.status, 200);
}

fn message(ex: &Exchange) -> String {
    body_json(ex)["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn reset_sets_one_counters_window_to_zero_and_logs_before_and_after() {
    // $0.0001 a day: one exchange of 100 + 150 tokens ($0.000105) spends it.
    let mut host = host(&key_config(0.0001, 1_000_000));
    charge(&mut host, 100, 150);
    let refused = host
        .vm(0)
        .exchange(&chat("sk", "gpt-4o-mini"), &openai_json(1, 1));
    assert_eq!(refused.client.status, 402);
    let team_before = used(&mut host, "ml", "budget");
    assert!(team_before > 0.0);

    let ex = post(
        &mut host,
        &admin(
            RESET,
            r#"{"owner": "virtual_key", "id": "k", "kind": "budget", "reset_duration": "1d"}"#,
        ),
    );
    assert_eq!(
        ex.client.status,
        200,
        "{}",
        String::from_utf8_lossy(&ex.client.body)
    );
    let body = body_json(&ex);
    assert_eq!(body["action"], "reset");
    assert_eq!(body["counter"]["used"], 0.0);
    assert!((body["counter"]["used_before"].as_f64().unwrap_or(0.0) - 0.000105).abs() < 1e-12);
    assert!(
        ex.logs.iter().any(|l| l.level == host_tests::LogLevel::Warn
            && l.message
                .starts_with("admin reset by the admin key (request id ")
            && l.message.contains(
                "virtual key 'k' budget 1d: used 0.0001 USD -> 0.0000 USD in the window \
                 2026-11-02T12:00:00Z to 2026-11-03T12:00:00Z"
            )),
        "{:?}",
        ex.logs
    );
    assert_eq!(used(&mut host, "k", "budget"), 0.0);
    assert_eq!(
        used(&mut host, "ml", "budget"),
        team_before,
        "only that counter"
    );
    assert_eq!(used(&mut host, "k", "tokens"), 250.0, "only that counter");
    charge(&mut host, 1, 1);
}

#[test]
fn credit_gives_back_usd_or_tokens_of_the_current_window() {
    let mut host = host(&key_config(10.0, 1_000));
    charge(&mut host, 600, 400);
    assert_eq!(
        host.vm(0)
            .exchange(&chat("sk", "gpt-4o-mini"), &openai_json(1, 1))
            .client
            .status,
        429,
        "the token limit is spent"
    );
    let ex = post(
        &mut host,
        &admin(
            CREDIT,
            r#"{"owner": "virtual_key", "id": "k", "kind": "tokens", "reset_duration": "1h", "amount": 400}"#,
        ),
    );
    assert_eq!(
        ex.client.status,
        200,
        "{}",
        String::from_utf8_lossy(&ex.client.body)
    );
    assert_eq!(body_json(&ex)["counter"]["used_before"], 1000);
    assert_eq!(body_json(&ex)["counter"]["used"], 600);
    assert!(ex.has_log("used 1000 tokens -> 600 tokens"));
    charge(&mut host, 1, 1);
    assert_eq!(used(&mut host, "k", "tokens"), 602.0);

    // USD, on the team's budget: give $0.0001 of what it spent back.
    let before = used(&mut host, "ml", "budget");
    let ex = post(
        &mut host,
        &admin(
            CREDIT,
            r#"{"owner": "team", "id": "ml", "kind": "budget", "reset_duration": "1M", "amount": 0.0001}"#,
        ),
    );
    assert_eq!(ex.client.status, 200);
    assert!((used(&mut host, "ml", "budget") - (before - 0.0001)).abs() < 1e-12);
    // More than was used: nothing is used any more (a credit does not raise the limit).
    let ex = post(
        &mut host,
        &admin(
            CREDIT,
            r#"{"owner": "team", "id": "ml", "kind": "budget", "reset_duration": "1M", "amount": 5}"#,
        ),
    );
    assert_eq!(ex.client.status, 200);
    assert_eq!(used(&mut host, "ml", "budget"), 0.0);
    assert_eq!(counter(&mut host, "ml", "budget")["remaining"], 100.0);
}

#[test]
fn anyone_but_the_admin_gets_401_and_nothing_changes() {
    let mut host = host(&key_config(10.0, 1_000_000));
    charge(&mut host, 10, 10);
    let body = r#"{"owner": "virtual_key", "id": "k", "kind": "tokens", "reset_duration": "1h"}"#;
    for request in [
        Request::post(RESET, body.as_bytes().to_vec()),
        Request::post(RESET, body.as_bytes().to_vec()).header("authorization", "Bearer sk"),
        Request::post(RESET, body.as_bytes().to_vec()).header("x-bf-vk", "sk"),
        Request::post(CREDIT, body.as_bytes().to_vec()).header("authorization", "Bearer nope"),
    ] {
        let ex = host.vm(0).exchange(&request, &Response::status(500));
        assert_eq!(ex.client.status, 401);
        assert_eq!(error_type(&ex), "admin_key_required");
        assert!(ex.upstream.headers.is_none(), "answered at request headers");
    }
    assert_eq!(used(&mut host, "k", "tokens"), 20.0);
}

#[test]
fn bad_bodies_get_400_with_a_clear_error() {
    let mut host = host(&key_config(10.0, 1_000_000));
    charge(&mut host, 10, 10);
    let cases: [(&str, &str, &str); 9] = [
        (RESET, "not json", "the body is not a valid reset request"),
        (
            RESET,
            r#"{"owner": "virtual_key", "id": "k", "kind": "tokens"}"#,
            "missing field `reset_duration`",
        ),
        (
            RESET,
            r#"{"owner": "user", "id": "k", "kind": "tokens", "reset_duration": "1h"}"#,
            "unknown variant `user`",
        ),
        (
            RESET,
            r#"{"owner": "virtual_key", "id": "k", "kind": "tokens", "reset_duration": "1h", "amount": 3}"#,
            "\"amount\" is for credit",
        ),
        (
            RESET,
            r#"{"owner": "virtual_key", "id": "k", "kind": "tokens", "reset_duration": "1h", "extra": 1}"#,
            "unknown field `extra`",
        ),
        (
            CREDIT,
            r#"{"owner": "virtual_key", "id": "k", "kind": "tokens", "reset_duration": "1h"}"#,
            "\"amount\" is required",
        ),
        (
            CREDIT,
            r#"{"owner": "virtual_key", "id": "k", "kind": "tokens", "reset_duration": "1h", "amount": 2.5}"#,
            "is not a whole number of tokens",
        ),
        (
            CREDIT,
            r#"{"owner": "virtual_key", "id": "k", "kind": "budget", "reset_duration": "1d", "amount": -1}"#,
            "is not a USD amount > 0",
        ),
        (
            CREDIT,
            r#"{"owner": "virtual_key", "id": "k", "kind": "tokens", "reset_duration": "1h", "amount": 0}"#,
            "is not a whole number of tokens > 0",
        ),
    ];
    for (path, body, expected) in cases {
        let ex = post(&mut host, &admin(path, body));
        assert_eq!(ex.client.status, 400, "{body}");
        assert_eq!(error_type(&ex), "invalid_request");
        assert!(message(&ex).contains(expected), "{body}: {}", message(&ex));
    }
    let no_body = host.vm(0).exchange(
        &Request::post(RESET, Vec::new()).header("authorization", &format!("Bearer {ADMIN_KEY}")),
        &Response::status(500),
    );
    assert_eq!(no_body.client.status, 400);
    let unknown = post(
        &mut host,
        &admin(
            RESET,
            r#"{"owner": "team", "id": "ml", "kind": "budget", "reset_duration": "1d"}"#,
        ),
    );
    assert_eq!(unknown.client.status, 404);
    assert_eq!(error_type(&unknown), "counter_not_found");
    assert!(
        message(&unknown).contains("team 'ml'"),
        "{}",
        message(&unknown)
    );
    assert_eq!(used(&mut host, "k", "tokens"), 20.0, "nothing changed");
}

#[test]
fn a_body_in_several_frames_is_read_whole() {
    let mut host = host(&key_config(10.0, 1_000_000));
    charge(&mut host, 10, 10);
    let request = admin(
        CREDIT,
        r#"{"owner": "virtual_key", "id": "k", "kind": "tokens", "reset_duration": "1h", "amount": 5}"#,
    );
    let ex = host
        .vm(0)
        .exchange_chunked(&request, &Response::status(500), 7);
    assert_eq!(ex.client.status, 200);
    assert!(ex.upstream.body.is_empty());
    assert_eq!(used(&mut host, "k", "tokens"), 15.0);
}

#[test]
fn adjustments_are_kept_across_a_configuration_push() {
    let mut host = host_with(&key_config(10.0, 1_000_000), 2);
    charge(&mut host, 100, 100);
    charge(&mut host, 100, 100);
    let ex = post(
        &mut host,
        &admin(
            CREDIT,
            r#"{"owner": "virtual_key", "id": "k", "kind": "tokens", "reset_duration": "1h", "amount": 150}"#,
        ),
    );
    assert_eq!(ex.client.status, 200);
    // A new max_limit keeps the counter (its identity is owner, kind and window).
    host.reconfigure(key_config(20.0, 2_000_000))
        .expect("reconfigure");
    assert_eq!(used(&mut host, "k", "tokens"), 250.0);
    assert_eq!(counter(&mut host, "k", "tokens")["limit"], 2_000_000);
    // Both workers see it, and the next charge adds on top.
    let ex = host
        .vm(1)
        .exchange(&chat("sk", "gpt-4o-mini"), &openai_json(5, 5));
    assert_eq!(ex.client.status, 200);
    assert_eq!(used(&mut host, "k", "tokens"), 260.0);
}

#[test]
fn fleet_mode_refuses_adjustments_with_501() {
    let config = fleet_config(
        "closed",
        r#""virtual_keys": [{"id": "k", "value": "sk",
            "rate_limit": {"token_max_limit": 100, "token_reset_duration": "1h"}}]"#,
    );
    let (mut host, _limitador) = fleet_host(&config, 1);
    let ex = host.vm(0).exchange(
        &admin(
            RESET,
            r#"{"owner": "virtual_key", "id": "k", "kind": "tokens", "reset_duration": "1h"}"#,
        ),
        &Response::status(500),
    );
    assert_eq!(ex.client.status, 501);
    assert_eq!(error_type(&ex), "not_supported_in_fleet_mode");
    assert!(message(&ex).contains("Limitador cannot lower a counter"));
    let value: Value = body_json(&ex);
    assert!(value["error"]["message"].is_string());
}
