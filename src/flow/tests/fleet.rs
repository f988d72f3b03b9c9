//! Fleet mode through the flow, with two "Envoys" (each its own shared data) over one
//! Limitador in memory.

use std::cell::RefCell;

use super::*;
use crate::fleet::expected_limits;
use crate::fleet::fake::FakeLimitador;

const HOUR: i64 = 3_600_000_000_000;

fn fleet_config(unavailable: &str, rest: &str) -> String {
    format!(
        r#"{{{PRICING}, "fleet": {{"cluster": "limitador", "unavailable": "{unavailable}"}}, {rest}}}"#
    )
}

/// Two Envoys of one fleet, with Limitador holding the limits of `config`.
fn fleet(config: &str) -> (Sim, Sim, Rc<RefCell<FakeLimitador>>) {
    let a = Sim::new(config);
    let b = Sim::new(config);
    let limits = expected_limits(&a.policy, "governance");
    let limitador = Rc::new(RefCell::new(FakeLimitador::new(limits)));
    let (mut a, mut b) = (a, b);
    a.limitador = Some(Rc::clone(&limitador));
    b.limitador = Some(Rc::clone(&limitador));
    (a, b, limitador)
}

fn calls(limitador: &Rc<RefCell<FakeLimitador>>) -> usize {
    limitador.borrow().log.len()
}

#[test]
fn requests_alternating_between_two_envoys_are_admitted_exactly_max_times() {
    let config = fleet_config(
        "closed",
        r#""virtual_keys":[{"id":"k","value":"sk",
            "rate_limit":{"request_max_limit":5,"request_reset_duration":"1h"}}]"#,
    );
    let (mut a, mut b, limitador) = fleet(&config);
    let mut admitted = 0;
    for i in 0..12 {
        let sim = if i % 2 == 0 { &mut a } else { &mut b };
        let outcome = sim.exchange(Some("sk"), &chat("gpt-4o-mini"), &usage_body(1, 1));
        if outcome.status() == 200 {
            admitted += 1;
        } else {
            assert_eq!(outcome.error_type(), "request_limited");
            let retry = outcome
                .reply
                .as_ref()
                .and_then(|r| r.headers.iter().find(|(k, _)| k == "retry-after"))
                .map(|(_, v)| v.clone());
            assert_eq!(retry.as_deref(), Some("3600"));
            // Limitador's refusals and the ones remembered from them alike carry the
            // refusing limit's quota headers.
            let quota: Vec<(String, String)> = outcome
                .reply
                .as_ref()
                .map(|r| {
                    r.headers
                        .iter()
                        .filter(|(k, _)| k.starts_with("x-ratelimit"))
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            assert_eq!(
                quota,
                [
                    ("x-ratelimit-limit-requests".to_string(), "5".to_string()),
                    (
                        "x-ratelimit-remaining-requests".to_string(),
                        "0".to_string()
                    ),
                    (
                        "x-ratelimit-reset-requests".to_string(),
                        "1h0m0s".to_string()
                    ),
                ],
                "request {i}"
            );
        }
    }
    assert_eq!(admitted, 5, "exactly the limit, fleet-wide");
    assert_eq!(
        a.metrics.get("fleet.refused") + b.metrics.get("fleet.refused"),
        7
    );
    // Each Envoy asked Limitador once more after its first refusal, then remembered.
    let asked = calls(&limitador);
    a.exchange(Some("sk"), &chat("gpt-4o-mini"), &usage_body(1, 1));
    b.exchange(Some("sk"), &chat("gpt-4o-mini"), &usage_body(1, 1));
    assert_eq!(
        calls(&limitador),
        asked,
        "an exhausted counter costs no call"
    );
    // Quota headers of an admitted request come from Limitador's answer.
    let (mut a, _, _) = fleet(&config);
    let ok = a.exchange(Some("sk"), &chat("gpt-4o-mini"), &usage_body(1, 1));
    assert_eq!(ok.header("x-ratelimit-limit-requests"), Some("5"));
    assert_eq!(ok.header("x-ratelimit-remaining-requests"), Some("4"));
    assert_eq!(ok.header("x-ratelimit-reset-requests"), Some("1h0m0s"));
}

#[test]
fn spend_stops_at_the_budget_within_one_request_and_charges_reach_limitador() {
    // gpt-4o-mini at $1e-6 in, $2e-6 out: 1000 + 1000 tokens cost $0.003.
    let config = fleet_config(
        "closed",
        r#""teams":[{"id":"t","budgets":[{"max_limit":0.01,"reset_duration":"1d"}]}],
           "virtual_keys":[{"id":"k1","value":"sk-1","team_id":"t"},{"id":"k2","value":"sk-2","team_id":"t"}]"#,
    );
    let (mut a, mut b, limitador) = fleet(&config);
    let mut admitted = 0;
    for i in 0..10 {
        let (sim, key) = if i % 2 == 0 {
            (&mut a, "sk-1")
        } else {
            (&mut b, "sk-2")
        };
        let outcome = sim.exchange(Some(key), &chat("gpt-4o-mini"), &usage_body(1000, 1000));
        if outcome.status() == 200 {
            admitted += 1;
        } else {
            assert_eq!(outcome.error_type(), "budget_exceeded");
        }
    }
    assert_eq!(admitted, 4, "$0.009 < $0.01 admits a fourth; $0.012 stops");
    let used = limitador
        .borrow()
        .used("governance:team:t", "budget:1d:rolling", "rolling", a.now);
    assert_eq!(used, 12_000_000, "nano-USD: four charges of $0.003");
    // The refusal's retry-after came from Limitador's counters (a rolling window).
    let refused = a.exchange(Some("sk-1"), &chat("gpt-4o-mini"), &usage_body(1, 1));
    let body = String::from_utf8_lossy(&refused.reply.as_ref().unwrap().body).to_string();
    assert!(
        body.contains("team 't' budget exceeded across the fleet"),
        "{body}"
    );
}

#[test]
fn calendar_windows_are_labelled_in_the_limit_zone() {
    let config = fleet_config(
        "closed",
        r#""virtual_keys":[{"id":"k","value":"sk","calendar_aligned":true,"timezone":"America/New_York",
            "budgets":[{"max_limit":5,"reset_duration":"1M"}]}]"#,
    );
    let (mut a, _, limitador) = fleet(&config);
    // 2026-11-01T03:30Z is still October in New York (UTC-4 until 06:00Z that day).
    a.now = 1_793_503_800_000_000_000;
    a.exchange(Some("sk"), &chat("gpt-4o-mini"), &usage_body(100, 100));
    a.now += HOUR;
    a.exchange(Some("sk"), &chat("gpt-4o-mini"), &usage_body(100, 100));
    let limit = "budget:1M:cal@America/New_York";
    let ns = "governance:vk:k";
    let fake = limitador.borrow();
    assert_eq!(fake.used(ns, limit, "2026-10-01T00:00:00", a.now), 300_000);
    assert_eq!(fake.used(ns, limit, "2026-11-01T00:00:00", a.now), 300_000);
}

#[test]
fn unavailable_closed_open_and_local_and_recovery() {
    let rest = r#""virtual_keys":[{"id":"k","value":"sk",
        "rate_limit":{"request_max_limit":2,"request_reset_duration":"1h"}}]"#;
    // closed: 503 while Limitador does not answer.
    let (mut a, _, limitador) = fleet(&fleet_config("closed", rest));
    limitador.borrow_mut().down = Some(None);
    let outcome = a.exchange(Some("sk"), &chat("gpt-4o-mini"), &usage_body(1, 1));
    assert_eq!(
        (outcome.status(), outcome.error_type().as_str()),
        (503, "governance_unavailable")
    );
    assert_eq!(a.metrics.get("fleet.unavailable"), 1);
    // Limitador back: after the second it counts as down, the fleet decides again.
    limitador.borrow_mut().down = None;
    assert_eq!(
        a.exchange(Some("sk"), &chat("gpt-4o-mini"), &usage_body(1, 1))
            .status(),
        503,
        "within a second of the failure no call is made"
    );
    a.now += memory_down();
    assert_eq!(
        a.exchange(Some("sk"), &chat("gpt-4o-mini"), &usage_body(1, 1))
            .status(),
        200
    );

    // open: admitted; the slot and the usage reach Limitador once it answers again.
    let (mut a, _, limitador) = fleet(&fleet_config("open", rest));
    limitador.borrow_mut().down = Some(Some(503));
    for _ in 0..3 {
        let outcome = a.exchange(Some("sk"), &chat("gpt-4o-mini"), &usage_body(1, 1));
        assert_eq!(outcome.status(), 200);
    }
    assert_eq!(
        a.outbox.calls.len(),
        3,
        "three slots waiting to be reported"
    );
    limitador.borrow_mut().down = None;
    a.now += memory_down();
    a.deliver_charges();
    assert_eq!(
        limitador
            .borrow()
            .used("governance:vk:k", "requests:1h:rolling", "rolling", a.now),
        3
    );

    // local: this Envoy's own counters decide while Limitador is away.
    let (mut a, _, limitador) = fleet(&fleet_config("local", rest));
    limitador.borrow_mut().down = Some(None);
    let statuses: Vec<u32> = (0..3)
        .map(|_| {
            a.exchange(Some("sk"), &chat("gpt-4o-mini"), &usage_body(1, 1))
                .status()
        })
        .collect();
    assert_eq!(statuses, [200, 200, 429]);
    assert_eq!(a.used("k", LimitKind::Requests), 2);
}

fn memory_down() -> i64 {
    crate::fleet::memory::DOWN_NANOS
}

#[test]
fn limits_that_do_not_match_are_handled_as_unavailable_until_fixed() {
    let config = fleet_config(
        "closed",
        r#""virtual_keys":[{"id":"k","value":"sk",
            "rate_limit":{"request_max_limit":2,"request_reset_duration":"1h"}}]"#,
    );
    let (mut a, _, limitador) = fleet(&config);
    let good = limitador.borrow().limits.clone();
    limitador.borrow_mut().limits[0].max_value = 100;
    let outcome = a.exchange(Some("sk"), &chat("gpt-4o-mini"), &usage_body(1, 1));
    assert_eq!(
        outcome.status(),
        503,
        "a limit that differs is no limit to trust"
    );
    assert_eq!(a.metrics.get("fleet.limits_mismatch"), 1);
    // Missing altogether: still not trusted.
    limitador.borrow_mut().limits.clear();
    a.now += 11_000_000_000;
    assert_eq!(
        a.exchange(Some("sk"), &chat("gpt-4o-mini"), &usage_body(1, 1))
            .status(),
        503
    );
    assert_eq!(a.metrics.get("fleet.limits_mismatch"), 2);
    limitador.borrow_mut().limits = good;
    assert_eq!(
        a.exchange(Some("sk"), &chat("gpt-4o-mini"), &usage_body(1, 1))
            .status(),
        503,
        "asked again only after ten seconds"
    );
    a.now += 11_000_000_000;
    assert_eq!(
        a.exchange(Some("sk"), &chat("gpt-4o-mini"), &usage_body(1, 1))
            .status(),
        200
    );
}

#[test]
fn with_reservations_the_estimate_is_reported_at_admission_and_the_rest_at_the_end() {
    let config = fleet_config(
        "closed",
        r#""reservation":{"enabled":true,"default_max_output_tokens":100},
           "virtual_keys":[{"id":"k","value":"sk",
            "rate_limit":{"token_max_limit":1000,"token_reset_duration":"1h"}}]"#,
    );
    let (mut a, _, limitador) = fleet(&config);
    let body = chat("gpt-4o-mini");
    let prompt = (body.len() as u64).div_ceil(4);
    let estimate = prompt + 100;
    // Usage above the estimate: the difference is reported after the response.
    a.exchange(Some("sk"), &body, &usage_body(200, 150));
    let used = |now| {
        limitador
            .borrow()
            .used("governance:vk:k", "tokens:1h:rolling", "rolling", now)
    };
    assert_eq!(used(a.now), 350);
    // Below the estimate: Limitador keeps the estimate (it cannot take back).
    a.exchange(Some("sk"), &body, &usage_body(1, 1));
    assert_eq!(used(a.now), 350 + estimate);
}

#[test]
fn shadow_mode_never_refuses_in_the_fleet_either() {
    let config = format!(
        r#"{{{PRICING}, "mode": "shadow", "fleet": {{"cluster": "limitador", "unavailable": "closed"}},
        "virtual_keys":[{{"id":"k","value":"sk","rate_limit":{{"request_max_limit":1,"request_reset_duration":"1h"}}}}]}}"#
    );
    let (mut a, _, limitador) = fleet(&config);
    for _ in 0..3 {
        assert_eq!(
            a.exchange(Some("sk"), &chat("gpt-4o-mini"), &usage_body(1, 1))
                .status(),
            200
        );
    }
    assert_eq!(a.metrics.get("shadow_rejected"), 2);
    // Shadow admits, so the slots Limitador refused are reported like any admitted one.
    assert_eq!(
        limitador
            .borrow()
            .used("governance:vk:k", "requests:1h:rolling", "rolling", a.now),
        3
    );
    limitador.borrow_mut().down = Some(None);
    a.now += HOUR * 2;
    assert_eq!(
        a.exchange(Some("sk"), &chat("gpt-4o-mini"), &usage_body(1, 1))
            .status(),
        200
    );
}
