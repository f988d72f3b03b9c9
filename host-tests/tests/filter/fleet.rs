//! Fleet mode through the real module: the calls it makes to Limitador's HTTP API, as a
//! recording Limitador (the filter's own in-memory one) answers them in the Envoy-faithful
//! host: exact bodies, one parallel round per request, held requests, timeouts, 5xx and
//! resets, charges from the root context, windows across a time-zone boundary.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use governance::fleet::fake::FakeLimitador;
use governance::fleet::protocol::{Answer, Call};
use host_tests::{
    Callout, CalloutAnswer, CalloutResponse, Host, HostBuilder, Request, GOVERNANCE_WASM,
};
use serde_json::{json, Value};

use crate::support::*;

type Shared = Arc<Mutex<FakeLimitador>>;

/// A configuration with fleet mode on (cluster `limitador`, `unavailable` as given).
pub(crate) fn fleet_config(unavailable: &str, rest: &str) -> String {
    config(&format!(
        r#""fleet": {{"cluster": "limitador", "authority": "limitador.local", "timeout_ms": 300,
                     "namespace_prefix": "gov", "unavailable": "{unavailable}"}}, {rest}"#
    ))
}

/// The limits the configuration expects, as the project's limits-file command writes them.
fn limits_of(config: &str) -> Vec<governance::fleet::limits::LimitadorLimit> {
    let policy = governance::config::parse(config).expect("valid configuration");
    let prefix = policy
        .fleet
        .as_ref()
        .map(|f| f.prefix.clone())
        .unwrap_or_default();
    governance::fleet::expected_limits(&policy, &prefix)
}

/// How the fake answers one callout (its clock: the callout's dispatch time).
fn answer(limitador: &Shared, callout: &Callout) -> CalloutAnswer {
    let method = if callout.header(":method") == Some("GET") {
        "GET"
    } else {
        "POST"
    };
    let call = Call {
        method,
        path: callout.header(":path").unwrap_or_default().to_string(),
        body: callout.body.clone(),
    };
    let Answer {
        status,
        remaining,
        reset_secs,
        body,
    } = limitador
        .lock()
        .expect("fake")
        .answer(&call, callout.dispatched_at_nanos);
    let Some(status) = status else {
        return CalloutAnswer::Reset;
    };
    let mut response = CalloutResponse::json(u32::from(status), body);
    if let Some(remaining) = remaining {
        response = response.header("x-ratelimit-remaining", &remaining.to_string());
    }
    if let Some(reset) = reset_secs {
        response = response.header("x-ratelimit-reset", &reset.to_string());
    }
    CalloutAnswer::respond(response)
}

/// A host of `workers` VMs whose cluster `limitador` is the fake holding `config`'s limits.
pub(crate) fn fleet_host(config: &str, workers: usize) -> (Host, Shared) {
    let limitador: Shared = Arc::new(Mutex::new(FakeLimitador::new(limits_of(config))));
    let fake = Arc::clone(&limitador);
    let host = HostBuilder::new(GOVERNANCE_WASM)
        .plugin_config(config)
        .vm_id("governance")
        .workers(workers)
        .clock_start_nanos(T0)
        .cluster_responding("limitador", move |callout| answer(&fake, callout))
        .build()
        .unwrap_or_else(|err| panic!("host did not start: {err:?}"));
    (host, limitador)
}

fn body_of(callout: &Callout) -> Value {
    serde_json::from_slice(&callout.body).unwrap_or(Value::Null)
}

fn hierarchy(unavailable: &str) -> String {
    fleet_config(
        unavailable,
        r#""customers":[{"id":"acme","budgets":[{"max_limit":100,"reset_duration":"1M","calendar_aligned":true}]}],
        "teams":[{"id":"ml","customer_id":"acme","rate_limit":{"token_max_limit":100000,"token_reset_duration":"1h"}}],
        "virtual_keys":[{"id":"k1","value":"sk-1","team_id":"ml",
            "rate_limit":{"request_max_limit":3,"request_reset_duration":"1m"},
            "provider_configs":[{"provider":"openai","rate_limit":{"request_max_limit":10,"request_reset_duration":"1h"}}]}]"#,
    )
}

#[test]
fn one_round_of_parallel_calls_with_limitadors_request_shapes() {
    let (mut host, _) = fleet_host(&hierarchy("closed"), 2);
    let request = chat("sk-1", "openai/gpt-4o-mini");
    let ex = host.vm(0).exchange(&request, &openai_json(10, 20));
    assert_eq!(ex.client.status, 200, "{:?}", ex.logs);
    host.run_due();
    let callouts = host.vm(0).callouts().to_vec();
    // The round: 2 request slots, 1 token limit, 1 budget, and the 4 owners' limits
    // (first use on this worker); all sent from the request's callback, before any answer.
    let round: Vec<&Callout> = callouts
        .iter()
        .filter(|c| c.context != host.vm(0).root_context_id())
        .collect();
    assert_eq!(round.len(), 8, "{round:#?}");
    assert!(round
        .iter()
        .all(|c| c.context == round[0].context
            && c.dispatched_at_nanos == round[0].dispatched_at_nanos));
    for c in &round {
        assert_eq!(c.cluster, "limitador");
        assert_eq!(c.header(":authority"), Some("limitador.local"));
        assert_eq!(c.timeout_ms, 300);
    }
    let posts: Vec<(String, Value)> = round
        .iter()
        .filter(|c| c.header(":method") == Some("POST"))
        .map(|c| {
            (
                c.header(":path").unwrap_or_default().to_string(),
                body_of(c),
            )
        })
        .collect();
    assert_eq!(
        posts,
        vec![
            (
                "/check_and_report".to_string(),
                json!({"namespace":"gov:provider:k1:openai",
                "values":{"limit":"requests:1h:rolling","window":"rolling"},"delta":1,
                "response_headers":"DraftVersion03"})
            ),
            (
                "/check_and_report".to_string(),
                json!({"namespace":"gov:vk:k1",
                "values":{"limit":"requests:1m:rolling","window":"rolling"},"delta":1,
                "response_headers":"DraftVersion03"})
            ),
            (
                "/check".to_string(),
                json!({"namespace":"gov:team:ml",
                "values":{"limit":"tokens:1h:rolling","window":"rolling"},"delta":1})
            ),
            (
                "/check".to_string(),
                json!({"namespace":"gov:customer:acme",
                "values":{"limit":"budget:1M:cal@UTC","window":"2026-11-01T00:00:00"},"delta":1})
            ),
        ]
    );
    let gets: Vec<&str> = round
        .iter()
        .filter(|c| c.header(":method") == Some("GET"))
        .filter_map(|c| c.header(":path"))
        .collect();
    assert_eq!(
        gets,
        [
            "/limits/gov:provider:k1:openai",
            "/limits/gov:vk:k1",
            "/limits/gov:team:ml",
            "/limits/gov:customer:acme"
        ]
    );
    // The charge: usage reported from a root context after the response (whichever VM's
    // root holds the charge queue).
    let reports: Vec<Callout> = host
        .callouts()
        .into_iter()
        .filter(|c| c.header(":path") == Some("/report"))
        .collect();
    assert_eq!(
        reports.iter().map(body_of).collect::<Vec<_>>(),
        vec![
            json!({"namespace":"gov:team:ml","values":{"limit":"tokens:1h:rolling","window":"rolling"},"delta":30}),
            // 10 × $1.5e-7 + 20 × $6e-7 = $0.0000135 = 13,500 nano-USD.
            json!({"namespace":"gov:customer:acme","values":{"limit":"budget:1M:cal@UTC","window":"2026-11-01T00:00:00"},"delta":13500}),
        ]
    );
    let root = host.vm(0).root_context_id();
    assert!(reports.iter().all(|c| c.context == root && c.root == root));
    // Quota headers from what Limitador said: the key's 3 a minute, one used.
    assert_eq!(header(&ex, "x-ratelimit-remaining-requests"), Some("2"));
    // The next request on this worker does not ask for the limits again.
    let before = host.vm(0).callouts().len();
    host.vm(0).exchange(&request, &openai_json(1, 1));
    let again = &host.vm(0).callouts()[before..];
    assert!(again.iter().all(|c| c.header(":method") == Some("POST")));
    host.run_due();
    assert_eq!(
        metric(&host, "fleet.calls"),
        8 + 2 + 4 + 2,
        "rounds and reports"
    );
}

#[test]
fn requests_are_held_until_every_answer_and_large_bodies_still_pass() {
    let config = fleet_config(
        "closed",
        r#""virtual_keys":[{"id":"k","value":"sk","rate_limit":{"request_max_limit":5,"request_reset_duration":"1h"}}]"#,
    );
    let limitador: Shared = Arc::new(Mutex::new(FakeLimitador::new(limits_of(&config))));
    let fake = Arc::clone(&limitador);
    let mut host = HostBuilder::new(GOVERNANCE_WASM)
        .plugin_config(&config)
        .vm_id("governance")
        .workers(1)
        .clock_start_nanos(T0)
        .cluster_responding("limitador", move |c| {
            answer(&fake, c).after(Duration::from_millis(40))
        })
        .build()
        .expect("host");
    // A 5 MiB body naming its model last: it streams upstream, only its last bytes wait.
    let filler = "a".repeat(5 * 1024 * 1024);
    let body =
        format!(r#"{{"messages":[{{"role":"user","content":"{filler}"}}],"model":"gpt-4o-mini"}}"#);
    let request = Request::post("/v1/chat/completions", body.clone()).header("x-bf-vk", "sk");
    let vm = host.vm(0);
    let s = vm.open_stream();
    vm.send_request_headers(s, &request.headers, false);
    let (most, last) = body.as_bytes().split_at(body.len() - 1000);
    for chunk in most.chunks(64 * 1024) {
        vm.send_request_body(s, chunk, false);
    }
    vm.send_request_body(s, last, false);
    let held = vm.stream(s).upstream.body.len();
    assert!(
        held >= most.len() && held < body.len(),
        "only the last frame is held ({held})"
    );
    assert_eq!(
        vm.pending_callouts().len(),
        2,
        "slot + limits, answered 40 ms later"
    );
    host.advance(Duration::from_millis(40));
    let vm = host.vm(0);
    vm.send_request_body(s, b"", true);
    assert_eq!(
        vm.stream(s).upstream.body.len(),
        body.len(),
        "released whole"
    );
    assert!(vm.stream(s).upstream.complete);

    // A body-less request waits at its headers.
    let list = Request::get("/v1/models").header("x-bf-vk", "sk");
    let vm = host.vm(0);
    let s = vm.open_stream();
    vm.send_request_headers(s, &list.headers, true);
    assert!(vm.stream(s).upstream.headers.is_none(), "held at headers");
    host.advance(Duration::from_millis(40));
    assert!(host.vm(0).stream(s).upstream.headers.is_some());
}

#[test]
fn limitadors_refusals_become_429_and_402_and_are_remembered() {
    let config = fleet_config(
        "closed",
        r#""virtual_keys":[{"id":"k","value":"sk",
            "rate_limit":{"request_max_limit":2,"request_reset_duration":"1m"},
            "budgets":[{"max_limit":0.00002,"reset_duration":"1h"}]}]"#,
    );
    let (mut host, limitador) = fleet_host(&config, 2);
    let statuses: Vec<u32> = (0..3)
        .map(|i| {
            host.vm(i % 2)
                .exchange(&chat("sk", "gpt-4o-mini"), &openai_json(1, 1))
                .client
                .status
        })
        .collect();
    assert_eq!(statuses, [200, 200, 429]);
    let ex = host
        .vm(0)
        .exchange(&chat("sk", "gpt-4o-mini"), &openai_json(1, 1));
    assert_eq!(error_type(&ex), "request_limited");
    assert_eq!(
        header(&ex, "retry-after"),
        Some("60"),
        "Limitador's reset of the counter"
    );
    // Remembered by the whole Envoy: no call for the exhausted owner until the minute ends.
    let asked = limitador.lock().expect("fake").log.len();
    let ex = host
        .vm(1)
        .exchange(&chat("sk", "gpt-4o-mini"), &openai_json(1, 1));
    assert_eq!(ex.client.status, 429);
    assert_eq!(limitador.lock().expect("fake").log.len(), asked);
    assert!(ex.upstream.headers.is_none(), "refused at its headers");

    // The budget: spent out, a rolling window whose end Limitador's counters tell.
    host.advance(Duration::from_secs(61));
    let ex = host
        .vm(0)
        .exchange(&chat("sk", "gpt-4o-mini"), &openai_json(100, 100));
    assert_eq!(ex.client.status, 200);
    host.advance(Duration::from_secs(10));
    let ex = host
        .vm(1)
        .exchange(&chat("sk", "gpt-4o-mini"), &openai_json(1, 1));
    assert_eq!(
        (ex.client.status, error_type(&ex).as_str()),
        (402, "budget_exceeded")
    );
    // The window began with the first charge Limitador got (at the start), not at first use.
    assert_eq!(header(&ex, "retry-after"), Some("3529"));
    let message = body_json(&ex)["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        message.contains("virtual key 'k' budget exceeded across the fleet"),
        "{message}"
    );
    assert_eq!(metric(&host, "fleet.refused"), 4);
}

#[test]
fn timeouts_errors_and_resets_follow_unavailable_and_recovery_is_automatic() {
    let rest = r#""virtual_keys":[{"id":"k","value":"sk","rate_limit":{"request_max_limit":2,"request_reset_duration":"1h"}}]"#;
    for (mode, outage, expected) in [
        ("closed", CalloutAnswer::Never, [503u32, 503, 503]),
        (
            "open",
            CalloutAnswer::respond(CalloutResponse::status(500)),
            [200, 200, 200],
        ),
        ("local", CalloutAnswer::Reset, [200, 200, 429]),
        ("local", CalloutAnswer::ConnectionRefused, [200, 200, 429]),
    ] {
        let config = fleet_config(mode, rest);
        let (mut host, limitador) = fleet_host(&config, 1);
        let clusters = host.clusters();
        let down = outage.clone();
        clusters.set_responder("limitador", move |_| down.clone());
        let mut got = Vec::new();
        for _ in 0..3 {
            let ex = host
                .vm(0)
                .exchange(&chat("sk", "gpt-4o-mini"), &openai_json(1, 1));
            got.push(ex.client.status);
            host.advance(Duration::from_secs(2));
        }
        assert_eq!(got, expected, "{mode} / {outage:?}");
        assert!(metric(&host, "fleet.unavailable") >= 3, "{mode}");
        // Limitador answers again: the fleet decides again, with no restart.
        let fake = Arc::clone(&limitador);
        clusters.set_responder("limitador", move |c| answer(&fake, c));
        host.advance(Duration::from_secs(2));
        let ex = host
            .vm(0)
            .exchange(&chat("sk", "gpt-4o-mini"), &openai_json(1, 1));
        let fleet_used = || {
            limitador.lock().expect("fake").used(
                "gov:vk:k",
                "requests:1h:rolling",
                "rolling",
                T0 + 20 * SECOND,
            )
        };
        if mode == "closed" {
            assert_eq!(ex.client.status, 200, "{mode}: back to the fleet");
            assert_eq!(fleet_used(), 1);
        } else {
            // What was admitted without Limitador reached it once it answered: its slots
            // were reported (retried from the root context).
            for vm in host.vms() {
                vm.fire_due_ticks();
            }
            host.advance(Duration::from_secs(1));
            for vm in host.vms() {
                vm.fire_due_ticks();
            }
            host.run_due();
            assert!(fleet_used() >= 2, "{mode}: {}", fleet_used());
        }
    }
}

#[test]
fn charges_of_an_abandoned_stream_reach_limitador_and_failures_are_retried_then_counted() {
    let config = fleet_config(
        "closed",
        r#""virtual_keys":[{"id":"k","value":"sk","rate_limit":{"token_max_limit":1000000,"token_reset_duration":"1h"}}]"#,
    );
    let (mut host, limitador) = fleet_host(&config, 1);
    let vm = host.vm(0);
    let s = vm.open_stream();
    let req = chat("sk", "gpt-4o-mini");
    vm.send_request_headers(s, &req.headers, false);
    vm.send_request_body(s, &req.body, true);
    let stream = fixture("openai-chat-stream.sse");
    let headers = host_tests::Headers::from_pairs([
        (":status", "200"),
        ("content-type", "text/event-stream"),
    ]);
    vm.send_response_headers(s, &headers, false);
    vm.send_response_body(s, &stream, false);
    vm.reset_stream(s);
    host.run_due();
    let used = limitador
        .lock()
        .expect("fake")
        .used("gov:vk:k", "tokens:1h:rolling", "rolling", T0);
    assert_eq!(used, 49, "the usage seen before the client left (40 + 9)");

    // Limitador fails every report: retried with backoff on ticks, then logged and counted.
    host.clusters().set_responder("limitador", {
        let fake = Arc::clone(&limitador);
        move |c| {
            if c.header(":path") == Some("/report") {
                CalloutAnswer::respond(CalloutResponse::status(503))
            } else {
                answer(&fake, c)
            }
        }
    });
    let ex = host
        .vm(0)
        .exchange(&chat("sk", "gpt-4o-mini"), &openai_json(5, 5));
    assert_eq!(ex.client.status, 200);
    for _ in 0..200 {
        host.advance(Duration::from_secs(1));
        for vm in host.vms() {
            vm.fire_due_ticks();
        }
        host.run_due();
    }
    let attempts = host
        .vm(0)
        .callouts()
        .iter()
        .filter(|c| c.header(":path") == Some("/report") && body_of(c)["delta"] == 10)
        .count();
    assert_eq!(attempts, 12, "every attempt of the failing report");
    assert_eq!(metric(&host, "fleet.charges_failed"), 1);
    assert!(host.vm(0).has_log("charge undelivered after 12 attempts"));
    assert!(
        host.vm(0).has_log(r#""delta":10"#),
        "the amount is in the log line"
    );
}

#[test]
fn calendar_window_labels_follow_the_limits_time_zone_across_midnight() {
    let config = fleet_config(
        "closed",
        r#""virtual_keys":[{"id":"k","value":"sk","calendar_aligned":true,"timezone":"America/New_York",
            "budgets":[{"max_limit":5,"reset_duration":"1d"}]}]"#,
    );
    let (mut host, _) = fleet_host(&config, 1);
    // 2026-11-03T04:59:59Z is 23:59:59 on Nov 2 in New York (EST, UTC-5); a second later
    // it is Nov 3.
    let before_midnight = 1_793_681_999_000_000_000i64;
    host.clock().set_nanos(before_midnight);
    host.vm(0)
        .exchange(&chat("sk", "gpt-4o-mini"), &openai_json(1, 1));
    host.clock().set_nanos(before_midnight + SECOND);
    host.vm(0)
        .exchange(&chat("sk", "gpt-4o-mini"), &openai_json(1, 1));
    let windows: Vec<Value> = host
        .vm(0)
        .callouts()
        .iter()
        .filter(|c| c.header(":path") == Some("/check"))
        .map(|c| body_of(c)["values"]["window"].clone())
        .collect();
    assert_eq!(
        windows,
        [json!("2026-11-02T00:00:00"), json!("2026-11-03T00:00:00")]
    );
}

#[test]
fn limits_that_do_not_match_are_logged_counted_and_never_simply_admitted() {
    let config = fleet_config(
        "closed",
        r#""virtual_keys":[{"id":"k","value":"sk","rate_limit":{"request_max_limit":2,"request_reset_duration":"1h"}}]"#,
    );
    let (mut host, limitador) = fleet_host(&config, 1);
    limitador.lock().expect("fake").limits.clear();
    let ex = host
        .vm(0)
        .exchange(&chat("sk", "gpt-4o-mini"), &openai_json(1, 1));
    assert_eq!(
        (ex.client.status, error_type(&ex).as_str()),
        (503, "governance_unavailable")
    );
    assert_eq!(metric(&host, "fleet.limits_mismatch"), 1);
    assert!(
        ex.has_log("of namespace gov:vk:k is missing"),
        "{:?}",
        ex.logs
    );
}

#[test]
fn fleet_configuration_errors_name_their_path() {
    for (fleet, path) in [
        (r#"{"cluster": ""}"#, "fleet.cluster"),
        (r#"{"cluster": "l", "timeout_ms": 0}"#, "fleet.timeout_ms"),
        (
            r#"{"cluster": "l", "unavailable": "maybe"}"#,
            "fleet.unavailable",
        ),
        (
            r#"{"cluster": "l", "namespace_prefix": ""}"#,
            "fleet.namespace_prefix",
        ),
        (r#"{"cluster": "l", "retries": 3}"#, "fleet"),
    ] {
        let config = config(&format!(r#""fleet": {fleet}"#));
        let err = HostBuilder::new(GOVERNANCE_WASM)
            .plugin_config(&config)
            .build()
            .err()
            .unwrap_or_else(|| panic!("{fleet} was accepted"));
        let text = format!("{err:?}");
        assert!(text.contains(path), "{fleet}: {text}");
    }
}

#[test]
fn the_usage_endpoint_reports_fleet_wide_usage() {
    let config = hierarchy("closed");
    let (mut host, limitador) = fleet_host(&config, 2);
    // Spend through both workers (two Envoys' worth of counters: one Limitador).
    for vm in 0..2 {
        let ex = host
            .vm(vm)
            .exchange(&chat("sk-1", "openai/gpt-4o-mini"), &openai_json(100, 100));
        assert_eq!(ex.client.status, 200);
    }
    host.run_due();
    // The key's own view: its owners, as Limitador counts them.
    let ex = host.vm(1).exchange(
        &Request::get("/governance/usage").header("x-bf-vk", "sk-1"),
        &openai_json(1, 1),
    );
    assert_eq!(ex.client.status, 200, "{:?}", ex.logs);
    let body = body_json(&ex);
    assert_eq!(body["source"], "fleet");
    let counters = body["counters"].as_array().cloned().unwrap_or_default();
    let find = |owner: &str, kind: &str| {
        counters
            .iter()
            .find(|c| c["owner"] == owner && c["kind"] == kind)
            .cloned()
            .unwrap_or(Value::Null)
    };
    assert_eq!(find("virtual_key", "requests")["used"], 2);
    assert_eq!(find("provider_config", "requests")["used"], 2);
    assert_eq!(find("team", "tokens")["used"], 400);
    // 2 × (100 × $1.5e-7 + 100 × $6e-7) = $0.00015.
    assert_eq!(find("customer", "budget")["used"], 0.00015);
    assert_eq!(
        find("customer", "budget")["window_start"],
        "2026-11-01T00:00:00Z"
    );
    assert_eq!(counters.len(), 4);
    // The admin names the owners; without them the answer says how.
    let admin = |query: &str| {
        Request::get(&format!("/governance/usage{query}"))
            .header("authorization", &format!("Bearer {ADMIN_KEY}"))
    };
    let ex = host.vm(0).exchange(&admin(""), &openai_json(1, 1));
    assert_eq!(ex.client.status, 400);
    assert!(body_json(&ex)["error"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("?owner=team:ml")));
    let ex = host.vm(0).exchange(
        &admin("?owner=team:ml&owner=provider_config:k1%2Fopenai"),
        &openai_json(1, 1),
    );
    assert_eq!(ex.client.status, 200);
    let owners: Vec<String> = body_json(&ex)["counters"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|c| {
            format!(
                "{}:{}",
                c["owner"].as_str().unwrap_or(""),
                c["id"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(owners, ["team:ml", "provider_config:k1/openai"]);
    // Limitador away: 503, never a made-up zero.
    limitador.lock().expect("fake").down = Some(Some(503));
    let ex = host
        .vm(0)
        .exchange(&admin("?owner=team:ml"), &openai_json(1, 1));
    assert_eq!(ex.client.status, 503);
    assert!(!host.vm(0).is_failed());
}
