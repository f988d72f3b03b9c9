//! docs/reservations.md natively: estimates held at admission, settled after the response.

use super::*;
use crate::estimate::Estimate;

/// $1e-6 per input token, $2e-6 per output token.
fn config(owners: &str) -> String {
    format!(r#"{{{PRICING},"reservation":{{"enabled":true}},{owners}}}"#)
}

fn capped_chat(max_tokens: u64) -> String {
    format!(
        r#"{{"model":"gpt-4o-mini","max_tokens":{max_tokens},"messages":[{{"role":"user","content":"hello there"}}]}}"#
    )
}

/// What the filter estimates for `body` (docs/reservations.md), in femto-USD and tokens.
fn estimate_of(sim: &Sim, body: &str) -> Estimate {
    let policy = &sim.policy;
    let sniffer_cap =
        serde_json::from_str::<serde_json::Value>(body).unwrap()["max_tokens"].as_u64();
    Estimate::of_request(
        &policy.reservation,
        body.len() as u64,
        sniffer_cap,
        policy.pricing.lookup("gpt-4o-mini"),
    )
}

struct InFlight {
    flow: Flow,
}

impl Sim {
    fn reserved(&self, owner_id: &str, kind: LimitKind) -> u128 {
        self.record(owner_id, kind).reserved
    }

    /// Request headers and the whole body; `Err` with the reply when refused.
    fn start(&mut self, key: &str, body: &str) -> Result<InFlight, LocalReply> {
        let headers = vec![(
            "authorization".to_string(),
            format!("Bearer {key}").into_bytes(),
        )];
        let context = self.next_context;
        self.next_context += 1;
        let mut flow = Flow::new(Rc::clone(&self.policy), context);
        let head = RequestHead {
            method: "POST",
            path: "/v1/chat/completions",
            headers: &headers,
            end_of_stream: false,
        };
        if let RequestAction::Reply(reply) = flow.on_request_headers(&head, &mut self.env()) {
            flow.on_stream_end(&mut self.env());
            return Err(reply);
        }
        // Two frames: the decision comes with the last one.
        let (first, last) = body.as_bytes().split_at(body.len() / 2);
        let first_action = flow.on_request_body(first, false, &mut self.env());
        assert!(matches!(first_action, RequestAction::Continue { .. }));
        if let RequestAction::Reply(reply) = flow.on_request_body(last, true, &mut self.env()) {
            flow.on_stream_end(&mut self.env());
            return Err(reply);
        }
        Ok(InFlight { flow })
    }

    /// The response (status, body) and the end of the stream; the quota headers it got.
    fn finish(
        &mut self,
        mut request: InFlight,
        status: u16,
        content_type: &str,
        body: &str,
    ) -> Vec<(String, String)> {
        let flow = &mut request.flow;
        let headers = flow.on_response_headers(Some(status), Some(content_type), &mut self.env());
        flow.on_response_body(body.as_bytes(), true, &mut self.env());
        flow.on_stream_end(&mut self.env());
        headers
    }
}

fn femto_usd(usd: f64) -> u128 {
    Money::from_usd(usd).unwrap().femto()
}

/// Key `k` (secret `sk`) with a $0.002 daily budget.
fn small_budget() -> Sim {
    Sim::new(&config(
        r#""virtual_keys":[{"id":"k","value":"sk","budgets":[{"max_limit":0.002,"reset_duration":"1d"}]}]"#,
    ))
}

#[test]
fn a_burst_in_flight_cannot_overshoot_the_budget() {
    let mut sim = small_budget();
    let body = capped_chat(100);
    let estimate = estimate_of(&sim, &body).cost.femto();
    let max = femto_usd(0.002);
    let fits = (max / estimate) as usize;
    assert!(
        fits >= 5,
        "the estimate is not absurdly pessimistic: {fits}"
    );

    let mut admitted = Vec::new();
    let mut refused = 0;
    for _ in 0..40 {
        match sim.start("sk", &body) {
            Ok(request) => admitted.push(request),
            Err(reply) => {
                assert_eq!(reply.status, 402);
                let message = String::from_utf8_lossy(&reply.body).to_string();
                assert!(
                    message.contains("reserved by requests in flight"),
                    "{message}"
                );
                refused += 1;
            }
        }
    }
    assert_eq!(admitted.len(), fits, "exactly as many as the budget holds");
    assert_eq!(refused, 40 - fits);
    assert_eq!(
        sim.reserved("k", LimitKind::Budget),
        estimate * fits as u128
    );
    assert_eq!(sim.used("k", LimitKind::Budget), 0);

    // Every response costs what it was estimated at or less: 40 output tokens each.
    for request in admitted {
        sim.finish(request, 200, "application/json", &usage_body(10, 40));
    }
    let spent = sim.used("k", LimitKind::Budget);
    assert_eq!(spent, fits as u128 * femto_usd(10e-6 + 80e-6));
    assert!(spent <= max);
    assert_eq!(
        sim.reserved("k", LimitKind::Budget),
        0,
        "every hold settled"
    );
}

#[test]
fn overshoot_is_bounded_by_what_actual_costs_exceeded_estimates() {
    let mut sim = small_budget();
    let body = capped_chat(100);
    let estimate = estimate_of(&sim, &body).cost.femto();
    let admitted: Vec<_> = (0..40)
        .filter_map(|_| sim.start("sk", &body).ok())
        .collect();
    let mut excess = 0u128;
    for request in admitted {
        // The model ignored its cap: 150 output tokens instead of at most 100.
        let actual = femto_usd(10e-6 + 300e-6);
        excess += actual.saturating_sub(estimate);
        sim.finish(request, 200, "application/json", &usage_body(10, 150));
    }
    let spent = sim.used("k", LimitKind::Budget);
    assert!(spent > femto_usd(0.002), "this burst does overshoot");
    assert!(
        spent <= femto_usd(0.002) + excess,
        "{spent} > max + {excess}"
    );
}

#[test]
fn a_refusal_at_a_later_level_gives_back_what_lower_levels_held() {
    let mut sim = Sim::new(&config(
        r#""teams":[{"id":"t","rate_limit":{"token_max_limit":150,"token_reset_duration":"1h"}}],
        "virtual_keys":[{"id":"k","value":"sk","team_id":"t","rate_limit":{"token_max_limit":100000,"token_reset_duration":"1h"},
        "budgets":[{"max_limit":100,"reset_duration":"1d"}]}]"#,
    ));
    let first = sim.start("sk", &capped_chat(100)).expect("fits the team");
    let held = sim.reserved("k", LimitKind::Tokens);
    assert!(held > 100);
    assert_eq!(sim.reserved("t", LimitKind::Tokens), held);
    let reply = sim.start("sk", &capped_chat(100)).err().expect("team full");
    assert_eq!(reply.status, 429);
    assert!(String::from_utf8_lossy(&reply.body).contains("team 't' token limit exceeded"));
    assert_eq!(
        sim.reserved("k", LimitKind::Tokens),
        held,
        "only the first holds"
    );
    assert_eq!(
        sim.reserved("k", LimitKind::Budget),
        estimate_of(&sim, &capped_chat(100)).cost.femto()
    );
    sim.finish(first, 200, "application/json", &usage_body(3, 4));
    assert_eq!(sim.reserved("k", LimitKind::Tokens), 0);
    assert_eq!(sim.reserved("t", LimitKind::Tokens), 0);
    assert_eq!(sim.used("t", LimitKind::Tokens), 7);
}

#[test]
fn a_response_without_usage_is_charged_its_estimate_unless_upstream_failed() {
    let mut sim = Sim::new(&config(
        r#""virtual_keys":[{"id":"k","value":"sk","budgets":[{"max_limit":10,"reset_duration":"1d"}],
        "rate_limit":{"token_max_limit":100000,"token_reset_duration":"1h"}}]"#,
    ));
    let body = capped_chat(64);
    let cut = sim.start("sk", &body).unwrap();
    let stream = "data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n";
    sim.finish(cut, 200, "text/event-stream", stream);
    // Prompt: the request's bytes / 4, rounded up; output: the cap (64) plus the response's
    // bytes / 4, rounded up; at $1e-6 and $2e-6 per token.
    let prompt = body.len().div_ceil(4) as u128;
    let output = 64 + stream.len().div_ceil(4) as u128;
    assert_eq!(sim.used("k", LimitKind::Tokens), prompt + output);
    assert_eq!(
        sim.used("k", LimitKind::Budget),
        prompt * femto_usd(1e-6) + output * femto_usd(2e-6)
    );
    let charged = sim.used("k", LimitKind::Budget);
    assert_eq!(sim.metrics.get("usage_missing"), 1);

    let failed = sim.start("sk", &body).unwrap();
    sim.finish(
        failed,
        503,
        "application/json",
        r#"{"error":{"message":"overloaded"}}"#,
    );
    assert_eq!(sim.used("k", LimitKind::Budget), charged, "not charged");
    assert_eq!(sim.reserved("k", LimitKind::Budget), 0, "released");
    assert_eq!(sim.reserved("k", LimitKind::Tokens), 0, "released");
}

#[test]
fn a_hold_does_not_outlive_its_window_and_usage_lands_where_the_response_ended() {
    let mut sim = Sim::new(&config(
        r#""virtual_keys":[{"id":"k","value":"sk","rate_limit":{"token_max_limit":1000,"token_reset_duration":"1m"}}]"#,
    ));
    let long = sim.start("sk", &capped_chat(500)).unwrap();
    let held = sim.reserved("k", LimitKind::Tokens);
    assert!(held > 500);
    assert!(
        sim.start("sk", &capped_chat(500)).is_err(),
        "the hold counts"
    );
    sim.now += 61_000_000_000;
    assert_eq!(
        sim.reserved("k", LimitKind::Tokens),
        0,
        "the new window holds nothing"
    );
    let next = sim.start("sk", &capped_chat(100)).unwrap();
    let next_held = sim.reserved("k", LimitKind::Tokens);
    sim.finish(long, 200, "application/json", &usage_body(20, 30));
    assert_eq!(
        sim.used("k", LimitKind::Tokens),
        50,
        "charged to the window it ended in"
    );
    assert_eq!(
        sim.reserved("k", LimitKind::Tokens),
        next_held,
        "the old hold is not subtracted from the new window"
    );
    sim.finish(next, 200, "application/json", &usage_body(1, 1));
    assert_eq!(sim.reserved("k", LimitKind::Tokens), 0);
    assert_eq!(sim.used("k", LimitKind::Tokens), 52);
}

#[test]
fn headers_and_usage_endpoint_report_what_is_held() {
    let mut sim = Sim::new(&config(
        r#""usage_endpoint":{"path":"/usage"},"virtual_keys":[{"id":"k","value":"sk",
        "budgets":[{"max_limit":1,"reset_duration":"1d"}],
        "rate_limit":{"token_max_limit":10000,"token_reset_duration":"1h"}}]"#,
    ));
    let body = capped_chat(1000);
    let estimate = estimate_of(&sim, &body);
    let first = sim.start("sk", &body).unwrap();
    let second = sim.start("sk", &body).unwrap();
    let tokens = u128::from(estimate.usage.total_tokens());
    let headers = sim.finish(second, 200, "application/json", &usage_body(1, 1));
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("{name} in {headers:?}"))
    };
    assert_eq!(
        header("x-ratelimit-reserved-tokens"),
        (2 * tokens).to_string()
    );
    assert_eq!(
        header("x-ratelimit-remaining-tokens"),
        (10_000 - 2 * tokens).to_string()
    );
    assert_eq!(
        header("x-budget-reserved-usd"),
        Money::from_femto(2 * estimate.cost.femto()).to_string()
    );

    let usage = sim.exchange_with(
        vec![("authorization".to_string(), b"Bearer sk".to_vec())],
        "GET",
        "/usage",
        "",
        "",
    );
    let body: serde_json::Value =
        serde_json::from_slice(&usage.reply.expect("answered").body).unwrap();
    let tokens_entry = body["counters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["kind"] == "tokens")
        .unwrap()
        .clone();
    assert_eq!(
        tokens_entry["reserved"],
        serde_json::json!(u64::try_from(tokens).unwrap())
    );
    assert_eq!(tokens_entry["used"], serde_json::json!(2));
    assert_eq!(
        tokens_entry["remaining"],
        serde_json::json!(10_000 - 2 - u64::try_from(tokens).unwrap())
    );
    sim.finish(first, 200, "application/json", &usage_body(1, 1));
}

#[test]
fn without_reservations_nothing_is_held() {
    let mut sim = Sim::new(&format!(
        r#"{{{PRICING},"virtual_keys":[{{"id":"k","value":"sk","budgets":[{{"max_limit":0.002,"reset_duration":"1d"}}]}}]}}"#
    ));
    let body = capped_chat(100);
    let admitted: Vec<_> = (0..40)
        .filter_map(|_| sim.start("sk", &body).ok())
        .collect();
    assert_eq!(
        admitted.len(),
        40,
        "check-then-charge lets the whole burst through"
    );
    assert_eq!(sim.reserved("k", LimitKind::Budget), 0);
    for request in admitted {
        sim.finish(request, 200, "application/json", &usage_body(10, 40));
    }
    assert!(sim.used("k", LimitKind::Budget) > femto_usd(0.002));
}

#[test]
fn shadow_holds_and_reports_without_refusing() {
    let mut sim = Sim::new(&format!(
        r#"{{{PRICING},"mode":"shadow","reservation":{{"enabled":true}},
        "virtual_keys":[{{"id":"k","value":"sk","budgets":[{{"max_limit":0.0005,"reset_duration":"1d"}}]}}]}}"#
    ));
    let body = capped_chat(100);
    let admitted: Vec<_> = (0..5).filter_map(|_| sim.start("sk", &body).ok()).collect();
    assert_eq!(admitted.len(), 5);
    assert!(sim.metrics.get("shadow_rejected") >= 3);
    assert_eq!(
        sim.reserved("k", LimitKind::Budget),
        5 * estimate_of(&sim, &body).cost.femto()
    );
    for request in admitted {
        sim.finish(request, 200, "application/json", &usage_body(1, 1));
    }
    assert_eq!(sim.reserved("k", LimitKind::Budget), 0);
}

mod interleavings {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    #[derive(Debug, Clone)]
    enum Op {
        /// A request capping its output at this many tokens.
        Start(u64),
        /// The `n`-th request in flight (modulo) ends: this many output tokens, or no usage
        /// at all, with this status.
        Finish {
            n: usize,
            output: Option<u64>,
            status: u16,
        },
        /// The clock moves on (seconds); the window is one minute.
        Advance(i64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => prop::sample::select(vec![10u64, 100, 400]).prop_map(Op::Start),
            4 => (any::<usize>(), prop::option::weighted(0.8, 0u64..700), prop::sample::select(vec![200u16, 200, 500]))
                .prop_map(|(n, output, status)| Op::Finish { n, output, status }),
            1 => (1i64..45).prop_map(Op::Advance),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// docs/reservations.md's guarantee, checked after every step of any interleaving of
        /// admissions, settlements and rollovers: a window's spend exceeds `max_limit` by
        /// no more than what actual costs exceeded their estimates (a request admitted in an
        /// earlier window exceeds by its whole cost), and what is held is exactly the
        /// estimates of the requests in flight that were admitted in this window.
        #[test]
        fn the_bound_holds(ops in prop::collection::vec(op(), 1..80)) {
            let mut sim = Sim::new(&config(
                r#""virtual_keys":[{"id":"k","value":"sk","budgets":[{"max_limit":0.003,"reset_duration":"1m"}]}]"#,
            ));
            let max = femto_usd(0.003);
            let price = *sim.policy.pricing.lookup("gpt-4o-mini").unwrap();
            let policy = Rc::clone(&sim.policy);
            let limit = policy.limits.iter().find(|l| l.kind == LimitKind::Budget).unwrap();
            let window_now = |sim: &Sim| {
                Counters::new(&sim.store, &sim.policy.guard_key).read(limit, sim.now).unwrap().window_start
            };
            // In flight: (request, its estimate, the window it was admitted in).
            let mut in_flight: Vec<(InFlight, u128, i64)> = Vec::new();
            let mut excess: HashMap<i64, u128> = HashMap::new();
            for op in ops {
                match op {
                    Op::Start(cap) => {
                        let body = capped_chat(cap);
                        let estimate = estimate_of(&sim, &body).cost.femto();
                        if let Ok(request) = sim.start("sk", &body) {
                            in_flight.push((request, estimate, window_now(&sim)));
                        }
                    }
                    Op::Finish { n, output, status } => {
                        if in_flight.is_empty() {
                            continue;
                        }
                        let (request, estimate, admitted_in) = in_flight.remove(n % in_flight.len());
                        let actual = match output {
                            Some(output) => {
                                sim.finish(request, status, "application/json", &usage_body(10, output));
                                price.cost(&crate::usage::Usage { input_uncached: 10, output, ..Default::default() }).femto()
                            }
                            None => {
                                sim.finish(request, status, "application/json", r#"{"choices":[]}"#);
                                if status >= 400 { 0 } else { estimate }
                            }
                        };
                        let now_window = window_now(&sim);
                        let over = if admitted_in == now_window { actual.saturating_sub(estimate) } else { actual };
                        *excess.entry(now_window).or_default() += over;
                    }
                    Op::Advance(secs) => sim.now += secs * 1_000_000_000,
                }
                let window = window_now(&sim);
                let spent = sim.used("k", LimitKind::Budget);
                let allowed = max + excess.get(&window).copied().unwrap_or(0);
                prop_assert!(spent <= allowed, "spent {spent} > {allowed}");
                let held: u128 = in_flight.iter().filter(|(_, _, w)| *w == window).map(|(_, e, _)| *e).sum();
                prop_assert_eq!(sim.reserved("k", LimitKind::Budget), held);
            }
        }
    }
}
