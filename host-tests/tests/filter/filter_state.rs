//! `filter_state`: what an exchange was charged, written as Envoy filter state
//! (`governance.*` through `proxy_set_property`, which Envoy keeps as `wasm.governance.*`)
//! so an access log can print it; nothing is written when it is off or nothing was charged.

use std::collections::BTreeMap;

use host_tests::{Headers, Host, StreamId};

use crate::support::*;

const KEYS: &str = r#""customers":[{"id":"acme"}],
    "teams":[{"id":"ml","customer_id":"acme"}],
    "virtual_keys":[{"id":"k","value":"sk","team_id":"ml",
        "budgets":[{"max_limit":10,"reset_duration":"1d"}]},
      {"id":"solo","value":"sk-solo"}]"#;

fn on() -> String {
    config(&format!(r#""filter_state": true, {KEYS}"#))
}

fn state(host: &mut Host, s: StreamId) -> BTreeMap<String, String> {
    host.vm(0)
        .stream(s)
        .filter_state
        .into_iter()
        .map(|(name, value)| (name, String::from_utf8(value).expect("text")))
        .collect()
}

fn expected(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(name, value)| (format!("governance.{name}"), value.to_string()))
        .collect()
}

#[test]
fn a_charged_exchange_leaves_who_what_and_how_much() {
    let mut host = host(&on());
    let ex = host
        .vm(0)
        .exchange(&chat("sk", "gpt-4o-mini"), &openai_json(1000, 200));
    assert_eq!(ex.client.status, 200);
    // 1000 × 1.5e-7 + 200 × 6e-7 = 0.00027 USD.
    assert_eq!(
        state(&mut host, ex.stream),
        expected(&[
            ("virtual_key", "k"),
            ("team", "ml"),
            ("customer", "acme"),
            ("model", "gpt-4o-mini"),
            ("prompt_tokens", "1000"),
            ("output_tokens", "200"),
            ("cost_usd", "0.00027"),
        ])
    );
    assert!((used(&mut host, "k", "budget") - 0.00027).abs() < 1e-12);
}

#[test]
fn a_key_without_team_or_customer_leaves_those_out() {
    let mut host = host(&on());
    let ex = host
        .vm(0)
        .exchange(&chat("sk-solo", "gpt-4o-mini"), &openai_json(10, 5));
    assert_eq!(
        state(&mut host, ex.stream),
        expected(&[
            ("virtual_key", "solo"),
            ("model", "gpt-4o-mini"),
            ("prompt_tokens", "10"),
            ("output_tokens", "5"),
            ("cost_usd", "0.0000045"),
        ])
    );
}

#[test]
fn a_stream_cut_short_is_written_when_it_is_charged_at_its_end() {
    let mut host = host(&on());
    let vm = host.vm(0);
    let s = vm.open_stream();
    let request = chat("sk", "gpt-4o-mini");
    vm.send_request_headers(s, &request.headers, false);
    vm.send_request_body(s, &request.body, true);
    let headers = Headers::from_pairs([(":status", "200"), ("content-type", "application/json")]);
    vm.send_response_headers(s, &headers, false);
    assert!(state(&mut host, s).is_empty(), "nothing before the charge");
    host.vm(0).reset_stream(s);
    let written = state(&mut host, s);
    // No usage came: the exchange's estimate (the body's bytes / 4, the default cap).
    let (prompt, output) = exchange_estimate(request.body.len(), None, 0);
    assert_eq!(written["governance.virtual_key"], "k");
    assert_eq!(written["governance.prompt_tokens"], prompt.to_string());
    assert_eq!(written["governance.output_tokens"], output.to_string());
    let cost: f64 = written["governance.cost_usd"].parse().expect("a decimal");
    assert!(
        (cost - used(&mut host, "k", "budget")).abs() < 1e-12,
        "{cost}"
    );
}

#[test]
fn nothing_is_written_when_off_or_when_nothing_was_charged() {
    let mut host = host(&config(KEYS));
    let ex = host
        .vm(0)
        .exchange(&chat("sk", "gpt-4o-mini"), &openai_json(1000, 200));
    assert_eq!(ex.client.status, 200);
    assert!(state(&mut host, ex.stream).is_empty());

    let mut host = host_with(&on(), 1);
    let refused = host
        .vm(0)
        .exchange(&chat("sk-unknown", "gpt-4o-mini"), &openai_json(1, 1));
    assert_eq!(refused.client.status, 401);
    assert!(state(&mut host, refused.stream).is_empty());
}

#[test]
fn fleet_mode_writes_what_this_envoy_charged() {
    let config = crate::fleet::fleet_config("closed", &format!(r#""filter_state": true, {KEYS}"#));
    let (mut host, _) = crate::fleet::fleet_host(&config, 1);
    let ex = host
        .vm(0)
        .exchange(&chat("sk", "gpt-4o-mini"), &openai_json(1000, 200));
    assert_eq!(ex.client.status, 200, "{:?}", ex.logs);
    let written = state(&mut host, ex.stream);
    assert_eq!(written["governance.virtual_key"], "k");
    assert_eq!(written["governance.team"], "ml");
    assert_eq!(written["governance.cost_usd"], "0.00027");
}
