//! A refused request leaves no trace: every counter it touched is exactly as before it,
//! window start included, on every level and kind, with and without reservations, on
//! several worker VMs.

use std::collections::BTreeMap;
use std::time::Duration;

use host_tests::{Request, SharedData};

use crate::common::decode_record;
use crate::support::*;

const MINUTE: i64 = 60 * SECOND;

fn reservation(on: bool) -> String {
    format!(r#""reservation": {{"enabled": {on}}},"#)
}

/// Every counter's stored bytes (the guard key and CAS versions left out).
fn snapshot(sd: &SharedData) -> BTreeMap<String, Vec<u8>> {
    sd.keys("governance")
        .into_iter()
        .filter(|key| !key.ends_with(b":cas-guard"))
        .filter_map(|key| {
            let (bytes, _) = sd.get("governance", &key)?;
            Some((String::from_utf8_lossy(&key).into_owned(), bytes))
        })
        .collect()
}

fn assert_unchanged(before: &BTreeMap<String, Vec<u8>>, sd: &SharedData, what: &str) {
    let after = snapshot(sd);
    assert_eq!(before.len(), after.len(), "{what}: counters added");
    for (name, bytes) in before {
        let now = after.get(name).map(Vec::as_slice).unwrap_or_default();
        assert!(
            now == bytes.as_slice(),
            "{what}: {name} changed from {:?} to {:?}",
            decode_record(bytes),
            decode_record(now)
        );
    }
}

/// The one counter whose key starts with `prefix`.
fn stored(sd: &SharedData, prefix: &str) -> crate::common::StoredRecord {
    let matching: Vec<Vec<u8>> = snapshot(sd)
        .into_iter()
        .filter(|(name, _)| name.starts_with(prefix))
        .map(|(_, bytes)| bytes)
        .collect();
    match matching.as_slice() {
        [bytes] => decode_record(bytes),
        _ => panic!("{} counters match {prefix}", matching.len()),
    }
}

/// The reproduction: a request refused at its body (blocked model) after it took the key's
/// request slot must not anchor the key's rolling window.
#[test]
fn a_refused_request_does_not_anchor_a_rolling_window() {
    for reservations in [false, true] {
        let config = config(&format!(
            r#"{} "virtual_keys": [{{"id": "k", "value": "sk", "allowed_models": ["gpt-4o-mini"],
                "rate_limit": {{"request_max_limit": 1, "request_reset_duration": "1h"}}}}]"#,
            reservation(reservations)
        ));
        let mut host = host_with(&config, 2);
        let clock = host.clock();
        clock.advance(Duration::from_secs(10 * 60));
        let blocked = host
            .vm(1)
            .exchange(&chat("sk", "gpt-4.1"), &openai_json(1, 1));
        assert_eq!(
            (blocked.client.status, error_type(&blocked).as_str()),
            (403, "model_blocked"),
            "reservations {reservations}"
        );
        clock.advance(Duration::from_secs(30 * 60));
        let admitted = host
            .vm(0)
            .exchange(&chat("sk", "gpt-4o-mini"), &openai_json(1, 1));
        assert_eq!(admitted.client.status, 200, "reservations {reservations}");
        clock.advance(Duration::from_secs(35 * 60));
        let limited = host
            .vm(1)
            .exchange(&chat("sk", "gpt-4o-mini"), &openai_json(1, 1));
        assert_eq!(
            (limited.client.status, error_type(&limited).as_str()),
            (429, "request_limited"),
            "the window began at 00:40, the admitted request; reservations {reservations}"
        );
        assert_eq!(
            header(&limited, "retry-after"),
            Some("1500"),
            "window ends at 01:40; reservations {reservations}"
        );
    }
}

/// Keys k1 and k2 in team ml of customer acme; every level has a rolling request limit, a
/// token limit and a budget; k1 has a provider config for openai with its own limits.
fn hierarchy(reservations: bool, team_requests: u64, customer_budget: f64) -> String {
    config(&format!(
        r#"{}
        "customers": [{{"id": "acme", "budgets": [{{"max_limit": {customer_budget}, "reset_duration": "1h"}}],
            "rate_limit": {{"request_max_limit": 100, "request_reset_duration": "1h",
                            "token_max_limit": 1000000, "token_reset_duration": "1h"}}}}],
        "teams": [{{"id": "ml", "customer_id": "acme", "budgets": [{{"max_limit": 10, "reset_duration": "1d"}}],
            "rate_limit": {{"request_max_limit": {team_requests}, "request_reset_duration": "1h",
                            "token_max_limit": 1000000, "token_reset_duration": "1d"}}}}],
        "virtual_keys": [
          {{"id": "k1", "value": "sk-1", "team_id": "ml", "allowed_models": ["gpt-4o-mini", "gpt-4.1*", "mystery*"],
            "budgets": [{{"max_limit": 5, "reset_duration": "1h"}}],
            "rate_limit": {{"request_max_limit": 100, "request_reset_duration": "1h",
                            "token_max_limit": 1000000, "token_reset_duration": "1h"}},
            "provider_configs": [{{"provider": "openai", "budgets": [{{"max_limit": 4, "reset_duration": "1h"}}],
                "rate_limit": {{"request_max_limit": 2, "request_reset_duration": "1h",
                                "token_max_limit": 1000000, "token_reset_duration": "1h"}}}}]}},
          {{"id": "k2", "value": "sk-2", "team_id": "ml",
            "budgets": [{{"max_limit": 5, "reset_duration": "1h"}}],
            "rate_limit": {{"request_max_limit": 100, "request_reset_duration": "1h",
                            "token_max_limit": 1000000, "token_reset_duration": "1h"}}}}]"#,
        reservation(reservations)
    ))
}

fn openai_chat(key: &str, model: &str) -> Request {
    chat(key, model).header("x-bf-provider", "openai")
}

/// Refusals decided at request headers (team and customer levels) and at the request body
/// (model rules, pricing, provider-config limits, reservations), each on fresh counters and
/// on counters in use: every counter's bytes are as they were.
#[test]
fn every_refusal_leaves_every_counter_as_it_was() {
    for reservations in [false, true] {
        let what = |case: &str| format!("{case}, reservations {reservations}");

        // Fresh counters everywhere, refused at the body.
        let mut host = host_with(&hierarchy(reservations, 100, 100.0), 2);
        let sd = host.shared_data();
        let cases = [
            (openai_chat("sk-1", "gpt-4o"), 403, "model_blocked"),
            (
                openai_chat("sk-1", "mystery-model"),
                403,
                "model_not_priced",
            ),
            (
                chat("sk-1", "anthropic/claude-sonnet-4"),
                403,
                "provider_blocked",
            ),
        ];
        for (request, status, kind) in &cases {
            let before = snapshot(&sd);
            let ex = host.vm(1).exchange(request, &openai_json(10, 10));
            assert_eq!(
                (ex.client.status, error_type(&ex).as_str()),
                (*status, *kind),
                "{}",
                what(kind)
            );
            assert_unchanged(&before, &sd, &what(&format!("fresh, {kind}")));
        }

        // Counters in use (two admitted requests), then the same refusals.
        host.clock().advance(Duration::from_secs(60));
        for vm in 0..2 {
            let ex = host
                .vm(vm)
                .exchange(&openai_chat("sk-1", "gpt-4o-mini"), &openai_json(10, 10));
            assert_eq!(ex.client.status, 200, "{}", what("warm-up"));
        }
        host.clock().advance(Duration::from_secs(60));
        for (request, status, kind) in &cases {
            let before = snapshot(&sd);
            let ex = host.vm(0).exchange(request, &openai_json(10, 10));
            assert_eq!(ex.client.status, *status, "{}", what(kind));
            assert_unchanged(&before, &sd, &what(&format!("in use, {kind}")));
        }
        // The provider config's 2 requests per hour are used: refused at the body, after
        // the key, team and customer slots were taken at the headers.
        let before = snapshot(&sd);
        let ex = host
            .vm(1)
            .exchange(&chat("sk-1", "openai/gpt-4o-mini"), &openai_json(10, 10));
        assert_eq!(
            (ex.client.status, error_type(&ex).as_str()),
            (429, "request_limited"),
            "{}",
            what("provider config limit")
        );
        assert_unchanged(&before, &sd, &what("provider config limit"));

        // Refused at the team, at request headers, on k2's fresh counters.
        let mut host = host_with(&hierarchy(reservations, 1, 100.0), 2);
        let sd = host.shared_data();
        let first = host
            .vm(0)
            .exchange(&openai_chat("sk-1", "gpt-4o-mini"), &openai_json(10, 10));
        assert_eq!(first.client.status, 200);
        host.clock().advance(Duration::from_secs(60));
        let before = snapshot(&sd);
        let ex = host
            .vm(1)
            .exchange(&chat("sk-2", "gpt-4o-mini"), &openai_json(10, 10));
        assert_eq!(
            (ex.client.status, error_type(&ex).as_str()),
            (429, "request_limited"),
            "{}",
            what("team")
        );
        assert_unchanged(&before, &sd, &what("team limit, fresh key counters"));

        // Refused at the customer's budget, on k2's fresh counters: spent out by k1.
        let mut host = host_with(&hierarchy(reservations, 100, 0.003), 2);
        let sd = host.shared_data();
        let first = host.vm(0).exchange(
            &openai_chat("sk-1", "gpt-4o-mini"),
            &openai_json(10_000, 10_000),
        );
        assert_eq!(first.client.status, 200);
        host.clock().advance(Duration::from_secs(60));
        let before = snapshot(&sd);
        let ex = host
            .vm(1)
            .exchange(&chat("sk-2", "gpt-4o-mini"), &openai_json(10, 10));
        assert_eq!(
            (ex.client.status, error_type(&ex).as_str()),
            (402, "budget_exceeded"),
            "{}",
            what("customer")
        );
        assert_unchanged(&before, &sd, &what("customer budget, fresh key counters"));
    }
}

/// With reservations, a request whose estimate does not fit the customer's budget is
/// refused after its estimate was held on the key and team: the holds and the windows they
/// opened are undone.
#[test]
fn a_reservation_refused_at_the_customer_leaves_key_and_team_as_they_were() {
    // Estimate of the chat body below: 17 prompt tokens + 4096 output tokens of gpt-4o-mini
    // = about $0.00246; the customer's $0.002 cannot hold it, the others can.
    let mut host = host_with(&hierarchy(true, 100, 0.002), 2);
    let sd = host.shared_data();
    let before = snapshot(&sd);
    let ex = host
        .vm(1)
        .exchange(&chat("sk-2", "gpt-4o-mini"), &openai_json(10, 10));
    assert_eq!(
        (ex.client.status, error_type(&ex).as_str()),
        (402, "budget_exceeded")
    );
    assert_unchanged(&before, &sd, "reservation refused at the customer");
}

/// Two requests race for a fresh counter: the first takes its slot and is refused later at
/// its body, the second is admitted in between. The window starts at the second, the first
/// use that stood.
#[test]
fn when_the_first_user_is_refused_the_window_starts_at_the_first_that_stood() {
    for reservations in [false, true] {
        let config = config(&format!(
            r#"{} "virtual_keys": [{{"id": "k", "value": "sk", "allowed_models": ["gpt-4o-mini"],
                "rate_limit": {{"request_max_limit": 2, "request_reset_duration": "1h"}}}}]"#,
            reservation(reservations)
        ));
        let mut host = host_with(&config, 2);
        let clock = host.clock();
        let sd = host.shared_data();
        let t0 = clock.now_nanos();
        // VM 0: headers of a request for a blocked model; its body comes later.
        let refused = chat("sk", "gpt-4.1");
        let s = host.vm(0).open_stream();
        host.vm(0).send_request_headers(s, &refused.headers, false);
        clock.advance(Duration::from_secs(5 * 60));
        let t1 = clock.now_nanos();
        let admitted = host
            .vm(1)
            .exchange(&chat("sk", "gpt-4o-mini"), &openai_json(1, 1));
        assert_eq!(admitted.client.status, 200);
        clock.advance(Duration::from_secs(5 * 60));
        host.vm(0).send_request_body(s, &refused.body, true);
        assert_eq!(
            host.vm(0).stream(s).client.status,
            403,
            "reservations {reservations}"
        );
        let record = stored(&sd, "governance:virtual_key:k:requests:1h:");
        assert!(t1 > t0);
        assert_eq!(
            (
                record.anchor,
                record.window_start,
                record.window_end,
                record.used
            ),
            (t1, t1, t1 + 60 * MINUTE, 1),
            "reservations {reservations}"
        );
        // One slot left until t1 + 1h.
        clock.set_nanos(t1 + 59 * MINUTE);
        let ok = host
            .vm(0)
            .exchange(&chat("sk", "gpt-4o-mini"), &openai_json(1, 1));
        assert_eq!(ok.client.status, 200);
        let limited = host
            .vm(1)
            .exchange(&chat("sk", "gpt-4o-mini"), &openai_json(1, 1));
        assert_eq!(limited.client.status, 429);
        assert_eq!(header(&limited, "retry-after"), Some("60"));
        // The refusal tells the client the quota of the limit that refused.
        assert_eq!(header(&limited, "x-ratelimit-limit-requests"), Some("2"));
        assert_eq!(
            header(&limited, "x-ratelimit-remaining-requests"),
            Some("0")
        );
        assert_eq!(header(&limited, "x-ratelimit-reset-requests"), Some("1m0s"));
    }
}
