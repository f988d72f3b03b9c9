//! docs/reservations.md through the real module: estimates held before requests go
//! upstream, settled after their responses, on several worker VMs sharing one shared-data store.

use std::time::Duration;

use host_tests::{Headers, Host, Request, StreamId};

use crate::support::*;

/// gpt-4o-mini prices of [`PRICING`] (USD per token).
const INPUT: f64 = 1.5e-7;
const OUTPUT: f64 = 6e-7;

fn key_config(reservation: bool, limits: &str) -> String {
    config(&format!(
        r#""reservation": {{"enabled": {reservation}}},
        "virtual_keys": [{{"id": "k", "value": "sk", {limits}}}]"#
    ))
}

fn capped_body(max_tokens: u64) -> String {
    format!(
        r#"{{"model":"gpt-4o-mini","max_tokens":{max_tokens},"messages":[{{"role":"user","content":"Say hello"}}]}}"#
    )
}

/// The filter's estimate of `body` (default reservation settings): (tokens, USD).
fn estimate(body: &str, max_tokens: u64) -> (u64, f64) {
    let prompt = (body.len() as u64).div_ceil(4);
    (
        prompt + max_tokens,
        prompt as f64 * INPUT + max_tokens as f64 * OUTPUT,
    )
}

/// Request headers and the whole body on `vm`; the request waits for its response.
fn send(host: &mut Host, vm: usize, body: &str) -> StreamId {
    let vm = host.vm(vm);
    let s = vm.open_stream();
    let request = Request::post("/v1/chat/completions", body).header("authorization", "Bearer sk");
    vm.send_request_headers(s, &request.headers, false);
    let (first, last) = body.as_bytes().split_at(body.len() / 2);
    vm.send_request_body(s, first, false);
    vm.send_request_body(s, last, true);
    s
}

/// Status the client got so far (0: none yet, the request is upstream).
fn status(host: &mut Host, vm: usize, s: StreamId) -> u32 {
    host.vm(vm).stream(s).client.status
}

fn respond(host: &mut Host, vm: usize, s: StreamId, status: &str, content_type: &str, body: &[u8]) {
    let vm = host.vm(vm);
    let headers = Headers::from_pairs([(":status", status), ("content-type", content_type)]);
    vm.send_response_headers(s, &headers, false);
    vm.send_response_body(s, body, true);
    assert!(vm.stream(s).finished);
}

fn usage_json(prompt: u64, completion: u64) -> Vec<u8> {
    format!(
        r#"{{"id":"c","object":"chat.completion","model":"gpt-4o-mini","choices":[],"usage":{{"prompt_tokens":{prompt},"completion_tokens":{completion}}}}}"#
    )
    .into_bytes()
}

fn reserved(host: &mut Host, id: &str, kind: &str) -> f64 {
    counter(host, id, kind)["reserved"]
        .as_f64()
        .unwrap_or(f64::NAN)
}

/// 40 requests on 4 VMs, all in flight before any response, against a $0.001 budget; then
/// every response (20 prompt + 150 output tokens, below the estimate). Returns (admitted,
/// spent).
fn burst(reservation: bool) -> (usize, f64) {
    let mut host = host_with(
        &key_config(
            reservation,
            r#""budgets": [{"max_limit": 0.001, "reset_duration": "1d"}]"#,
        ),
        4,
    );
    let body = capped_body(200);
    let mut admitted = Vec::new();
    for i in 0..40 {
        let vm = i % 4;
        let s = send(&mut host, vm, &body);
        match status(&mut host, vm, s) {
            0 => {
                assert!(host.vm(vm).stream(s).upstream.complete);
                admitted.push((vm, s));
            }
            402 => assert!(
                !host.vm(vm).stream(s).upstream.complete,
                "a refused request never reaches upstream whole"
            ),
            other => panic!("status {other}"),
        }
    }
    if reservation {
        let held = reserved(&mut host, "k", "budget");
        let (_, each) = estimate(&body, 200);
        assert!(
            (held - admitted.len() as f64 * each).abs() < 1e-12,
            "{held}"
        );
    }
    for &(vm, s) in &admitted {
        respond(
            &mut host,
            vm,
            s,
            "200",
            "application/json",
            &usage_json(20, 150),
        );
    }
    assert_eq!(
        reserved(&mut host, "k", "budget"),
        0.0,
        "every hold settled"
    );
    (admitted.len(), used(&mut host, "k", "budget"))
}

#[test]
fn forty_in_flight_on_four_vms_stay_within_the_budget() {
    let (admitted, spent) = burst(true);
    let (_, each) = estimate(&capped_body(200), 200);
    let actual = 20.0 * INPUT + 150.0 * OUTPUT;
    assert_eq!(admitted, (0.001 / each).floor() as usize);
    assert!(
        admitted as f64 >= 0.5 * (0.001 / actual),
        "the estimate is not absurdly pessimistic: {admitted} admitted"
    );
    assert!(spent <= 0.001, "spent {spent}");

    let (all, unbounded) = burst(false);
    assert_eq!(all, 40, "check-then-charge lets the whole burst through");
    assert!(unbounded > 3.0 * 0.001);
    eprintln!(
        "burst of 40 against $0.001: with reservations {admitted} admitted, spent ${spent:.6} \
         ({:.0}% of the budget); without, 40 admitted, spent ${unbounded:.6} ({:.0}%)",
        spent / 0.001 * 100.0,
        unbounded / 0.001 * 100.0
    );
}

#[test]
fn a_refusal_at_the_team_gives_back_what_the_key_held() {
    let mut host = host_with(
        &config(
            r#""reservation": {"enabled": true},
            "teams": [{"id": "t", "rate_limit": {"token_max_limit": 300, "token_reset_duration": "1h"}}],
            "virtual_keys": [{"id": "k", "value": "sk", "team_id": "t",
                "rate_limit": {"token_max_limit": 100000, "token_reset_duration": "1h"},
                "budgets": [{"max_limit": 5, "reset_duration": "1d"}]}]"#,
        ),
        2,
    );
    let body = capped_body(200);
    let (tokens, usd) = estimate(&body, 200);
    let first = send(&mut host, 0, &body);
    assert_eq!(status(&mut host, 0, first), 0);
    let second = send(&mut host, 1, &body);
    assert_eq!(status(&mut host, 1, second), 429);
    assert_eq!(reserved(&mut host, "k", "tokens"), tokens as f64);
    assert_eq!(reserved(&mut host, "t", "tokens"), tokens as f64);
    assert!((reserved(&mut host, "k", "budget") - usd).abs() < 1e-15);
    respond(
        &mut host,
        0,
        first,
        "200",
        "application/json",
        &usage_json(20, 30),
    );
    assert_eq!(reserved(&mut host, "k", "tokens"), 0.0);
    assert_eq!(reserved(&mut host, "t", "tokens"), 0.0);
    assert_eq!(used(&mut host, "t", "tokens"), 50.0);
}

#[test]
fn a_stream_without_usage_is_charged_its_estimate_and_an_upstream_error_nothing() {
    let mut host = host(&key_config(
        true,
        r#""budgets": [{"max_limit": 5, "reset_duration": "1d"}],
        "rate_limit": {"token_max_limit": 100000, "token_reset_duration": "1h"}"#,
    ));
    let body = capped_body(64);
    let s = send(&mut host, 0, &body);
    // An OpenAI stream without usage (the client did not ask for it).
    let stream = b"data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\ndata: [DONE]\n\n";
    respond(&mut host, 0, s, "200", "text/event-stream", stream);
    // Charged more than its hold: the response's bytes count as output too.
    let (prompt, output) = exchange_estimate(body.len(), Some(64), stream.len());
    let tokens = prompt + output;
    let usd = prompt as f64 * INPUT + output as f64 * OUTPUT;
    assert!(tokens > estimate(&body, 64).0);
    assert_eq!(used(&mut host, "k", "tokens"), tokens as f64);
    assert!((used(&mut host, "k", "budget") - usd).abs() < 1e-15);
    assert_eq!(reserved(&mut host, "k", "tokens"), 0.0);

    let failed = send(&mut host, 0, &body);
    respond(
        &mut host,
        0,
        failed,
        "503",
        "application/json",
        br#"{"error":{"message":"overloaded"}}"#,
    );
    assert_eq!(used(&mut host, "k", "tokens"), tokens as f64, "not charged");
    assert_eq!(reserved(&mut host, "k", "tokens"), 0.0, "released");
    assert_eq!(metric(&host, "usage_missing"), 2);
}

#[test]
fn a_rollover_clears_holds_and_the_charge_lands_where_the_response_ended() {
    let mut host = host_with(
        &key_config(
            true,
            r#""rate_limit": {"token_max_limit": 1000, "token_reset_duration": "1m"}"#,
        ),
        2,
    );
    let long = send(&mut host, 0, &capped_body(600));
    assert_eq!(status(&mut host, 0, long), 0);
    let refused = send(&mut host, 1, &capped_body(600));
    assert_eq!(status(&mut host, 1, refused), 429, "the hold counts");
    host.clock().advance(Duration::from_secs(61));
    assert_eq!(
        reserved(&mut host, "k", "tokens"),
        0.0,
        "new window, nothing held"
    );
    let next = send(&mut host, 1, &capped_body(600));
    assert_eq!(status(&mut host, 1, next), 0, "the old hold is gone");
    let next_held = reserved(&mut host, "k", "tokens");
    respond(
        &mut host,
        0,
        long,
        "200",
        "application/json",
        &usage_json(20, 30),
    );
    assert_eq!(used(&mut host, "k", "tokens"), 50.0);
    assert_eq!(
        reserved(&mut host, "k", "tokens"),
        next_held,
        "not subtracted twice"
    );
    respond(
        &mut host,
        1,
        next,
        "200",
        "application/json",
        &usage_json(1, 1),
    );
    assert_eq!(reserved(&mut host, "k", "tokens"), 0.0);
}

#[test]
fn a_trapped_vm_cannot_keep_its_hold_past_the_window() {
    let mut host = host_with(
        &key_config(
            true,
            r#""rate_limit": {"token_max_limit": 1000, "token_reset_duration": "1m"}"#,
        ),
        2,
    );
    let s = send(&mut host, 1, &capped_body(600));
    assert_eq!(status(&mut host, 1, s), 0);
    host.vm(1).trap_next_callback();
    let headers = Headers::from_pairs([(":status", "200"), ("content-type", "application/json")]);
    host.vm(1).send_response_headers(s, &headers, false);
    assert!(host.vm(1).is_failed());
    let held = reserved(&mut host, "k", "tokens");
    assert!(held > 600.0, "held until the window ends: {held}");
    let blocked = send(&mut host, 0, &capped_body(600));
    assert_eq!(status(&mut host, 0, blocked), 429);
    host.clock().advance(Duration::from_secs(60));
    assert_eq!(reserved(&mut host, "k", "tokens"), 0.0);
    let after = send(&mut host, 0, &capped_body(600));
    assert_eq!(
        status(&mut host, 0, after),
        0,
        "the next window is whole again"
    );
}

#[test]
fn quota_headers_report_what_is_held() {
    let mut host = host(&key_config(
        true,
        r#""budgets": [{"max_limit": 1, "reset_duration": "1d"}],
        "rate_limit": {"token_max_limit": 10000, "token_reset_duration": "1h"}"#,
    ));
    let body = capped_body(1000);
    let (tokens, _) = estimate(&body, 1000);
    let first = send(&mut host, 0, &body);
    let second = send(&mut host, 0, &body);
    respond(
        &mut host,
        0,
        second,
        "200",
        "application/json",
        &usage_json(1, 1),
    );
    let client = host.vm(0).stream(second).client;
    let headers = client.headers.expect("response headers");
    assert_eq!(
        headers.get("x-ratelimit-reserved-tokens"),
        Some((2 * tokens).to_string().as_str())
    );
    assert_eq!(
        headers.get("x-ratelimit-remaining-tokens"),
        Some((10_000 - 2 * tokens).to_string().as_str())
    );
    assert!(headers.get("x-budget-reserved-usd").is_some());
    respond(
        &mut host,
        0,
        first,
        "200",
        "application/json",
        &usage_json(1, 1),
    );
    assert_eq!(used(&mut host, "k", "tokens"), 4.0);
}

/// Envoy may pass a request's last bytes with `end_of_stream` false and end it with an
/// empty frame; an upstream reading `content-length` bytes already has the whole request
/// then, so the decision comes with the last byte.
#[test]
fn the_decision_comes_with_the_last_byte_not_the_empty_end_frame() {
    let mut host = host(&key_config(
        true,
        r#""rate_limit": {"token_max_limit": 1000, "token_reset_duration": "1m"}"#,
    ));
    let body = capped_body(600);
    let first = send(&mut host, 0, &body);
    assert_eq!(status(&mut host, 0, first), 0);
    let vm = host.vm(0);
    let s = vm.open_stream();
    let request =
        Request::post("/v1/chat/completions", body.clone()).header("authorization", "Bearer sk");
    vm.send_request_headers(s, &request.headers, false);
    vm.send_request_body(s, body.as_bytes(), false);
    let view = vm.stream(s);
    assert_eq!(view.client.status, 429, "refused at the last byte");
    assert!(
        view.upstream.body.len() < body.len(),
        "upstream never got the whole body: {} of {}",
        view.upstream.body.len(),
        body.len()
    );
    vm.send_request_body(s, b"", true);
    assert_eq!(
        reserved(&mut host, "k", "tokens"),
        estimate(&body, 600).0 as f64
    );
}

/// docs/reservations.md's guarantee through the real module, over random interleavings of requests
/// admitted on two VMs, responses (with usage above or below the estimate, without usage,
/// upstream errors) and clock moves across a one-minute budget window: after every step the
/// window's spend exceeds the budget by no more than what actual costs exceeded their
/// estimates (a response admitted in an earlier window counts whole), and what is held is
/// exactly the estimates of the requests in flight admitted in this window.
mod interleavings {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    #[derive(Debug, Clone)]
    enum Op {
        Start {
            vm: usize,
            cap: u64,
        },
        Finish {
            n: usize,
            output: Option<u64>,
            failed: bool,
        },
        Advance(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0usize..2, prop::sample::select(vec![50u64, 200, 800]))
                .prop_map(|(vm, cap)| Op::Start { vm, cap }),
            4 => (any::<usize>(), prop::option::weighted(0.8, 0u64..1200), prop::bool::weighted(0.2))
                .prop_map(|(n, output, failed)| Op::Finish { n, output, failed }),
            1 => (1u64..45).prop_map(Op::Advance),
        ]
    }

    struct Flight {
        vm: usize,
        stream: StreamId,
        estimate: f64,
        window: String,
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        #[test]
        fn the_bound_holds_through_the_module(ops in prop::collection::vec(op(), 1..40)) {
            let mut host = host_with(
                &key_config(true, r#""budgets": [{"max_limit": 0.001, "reset_duration": "1m"}]"#),
                2,
            );
            let mut in_flight: Vec<Flight> = Vec::new();
            let mut excess: HashMap<String, f64> = HashMap::new();
            let window_of = |host: &mut Host| counter(host, "k", "budget")["window_start"].to_string();
            for op in ops {
                match op {
                    Op::Start { vm, cap } => {
                        let body = capped_body(cap);
                        let s = send(&mut host, vm, &body);
                        match status(&mut host, vm, s) {
                            0 => {
                                let window = window_of(&mut host);
                                in_flight.push(Flight { vm, stream: s, estimate: estimate(&body, cap).1, window });
                            }
                            402 => {}
                            other => prop_assert!(false, "status {other}"),
                        }
                    }
                    Op::Finish { n, output, failed } => {
                        if in_flight.is_empty() {
                            continue;
                        }
                        let flight = in_flight.remove(n % in_flight.len());
                        let status_text = if failed { "500" } else { "200" };
                        let actual = match output {
                            Some(output) => {
                                respond(&mut host, flight.vm, flight.stream, status_text, "application/json", &usage_json(20, output));
                                20.0 * INPUT + output as f64 * OUTPUT
                            }
                            None => {
                                respond(&mut host, flight.vm, flight.stream, status_text, "application/json", b"{\"choices\":[]}");
                                if failed { 0.0 } else { flight.estimate }
                            }
                        };
                        let window = window_of(&mut host);
                        let over = if window == flight.window { (actual - flight.estimate).max(0.0) } else { actual };
                        *excess.entry(window).or_default() += over;
                    }
                    Op::Advance(secs) => host.clock().advance(Duration::from_secs(secs)),
                }
                let budget = counter(&mut host, "k", "budget");
                let window = budget["window_start"].to_string();
                let spent = budget["used"].as_f64().unwrap_or(f64::NAN);
                let allowed = 0.001 + excess.get(&window).copied().unwrap_or(0.0);
                prop_assert!(spent <= allowed + 1e-12, "spent {spent} > {allowed}");
                let held: f64 = in_flight.iter().filter(|f| f.window == window).map(|f| f.estimate).sum();
                let reserved = budget["reserved"].as_f64().unwrap_or(f64::NAN);
                prop_assert!((reserved - held).abs() < 1e-12, "reserved {reserved}, in flight {held}");
            }
        }
    }
}
