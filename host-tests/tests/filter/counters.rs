//! Counters through the real module: reloads under traffic, corrupted stored values, and
//! window rollover on the host's movable clock (rolling and calendar-aligned across DST).

use crate::common::{
    chat_vk, client_header, counter_key, error_type, gov_builder, gov_host, models_vk,
    plain_response, stored, usage_endpoint_json, usage_entry, usage_response, utc, SEC, VM_ID,
};
use host_tests::{Exchange, Request};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Key `rl` with a request limit of `max` per 1h, a token limit per `token_duration`, and a
/// 1d budget; gpt-4o-mini at 1e-6 / 2e-6 USD per token.
fn reload_config(max: u64, token_duration: &str) -> String {
    format!(
        r#"{{
        "usage_endpoint": {},
        "pricing": {{"gpt-4o-mini": {{"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6}}}},
        "virtual_keys": [{{"id": "rl", "value": "sk-rl",
            "budgets": [{{"max_limit": 1000000, "reset_duration": "1d"}}],
            "rate_limit": {{"request_max_limit": {max}, "request_reset_duration": "1h",
                           "token_max_limit": 1000000000, "token_reset_duration": "{token_duration}"}}}}]
    }}"#,
        usage_endpoint_json()
    )
}

/// One request of the reload test: status, served by the new configuration, tokens, cost.
#[derive(Debug, Clone, Copy)]
struct Sent {
    status: u32,
    new_config: bool,
    tokens: u128,
    femto: u128,
}

#[test]
fn reload_mid_traffic_keeps_usage_raises_max_and_restarts_a_changed_window() {
    let mut host = gov_host(&reload_config(50, "1h"), 4);
    let sd = host.shared_data();
    let done = Arc::new(AtomicUsize::new(0));
    let reloaded = Arc::new(AtomicBool::new(false));
    let handles: Vec<_> = host
        .take_vms()
        .into_iter()
        .enumerate()
        .map(|(i, mut vm)| {
            let (done, reloaded) = (Arc::clone(&done), Arc::clone(&reloaded));
            std::thread::spawn(move || {
                let first_root = vm.root_context_id();
                let mut sent = Vec::new();
                for j in 0..40u64 {
                    if j == 30 {
                        // Keep some traffic for after the reload, whatever the scheduling.
                        while !reloaded.load(Ordering::SeqCst) {
                            std::thread::sleep(Duration::from_millis(1));
                        }
                    }
                    vm.sync_config().expect("sync");
                    let (p, c) = (5 + (i as u64 * 40 + j) % 13, 1 + j % 4);
                    let ex = vm.exchange(&chat_vk("sk-rl"), &usage_response(p, c, 0));
                    sent.push(Sent {
                        status: ex.client.status,
                        new_config: vm.root_context_id() != first_root,
                        tokens: u128::from(p + c),
                        femto: u128::from(p) * 1_000_000_000 + u128::from(c) * 2_000_000_000,
                    });
                    done.fetch_add(1, Ordering::SeqCst);
                }
                (vm, sent)
            })
        })
        .collect();
    while done.load(Ordering::SeqCst) < 20 {
        std::thread::sleep(Duration::from_millis(1));
    }
    host.reconfigure(reload_config(80, "2h"))
        .expect("reconfigure");
    reloaded.store(true, Ordering::SeqCst);
    let mut vms = Vec::new();
    let mut sent: Vec<Sent> = Vec::new();
    for h in handles {
        let (vm, s) = h.join().expect("thread");
        vms.push(vm);
        sent.extend(s);
    }
    // Top up under the new configuration until the raised max refuses.
    let vm = &mut vms[0];
    vm.sync_config().expect("sync");
    let last = loop {
        let ex = vm.exchange(&chat_vk("sk-rl"), &usage_response(2, 2, 0));
        if ex.client.status != 200 {
            break ex;
        }
        sent.push(Sent {
            status: 200,
            new_config: true,
            tokens: 4,
            femto: 2_000_000_000 + 4_000_000_000,
        });
        assert!(sent.len() < 400, "the raised max never refused");
    };
    assert_eq!(
        (last.client.status, error_type(&last).as_str()),
        (429, "request_limited")
    );

    let admitted: Vec<&Sent> = sent.iter().filter(|s| s.status == 200).collect();
    let old_admitted = admitted.iter().filter(|s| !s.new_config).count();
    assert!(
        (20..=50).contains(&old_admitted),
        "the old max held: {old_admitted}"
    );
    assert!(
        sent.iter().all(|s| s.status == 200 || s.status == 429),
        "{sent:?}"
    );
    // Usage carried over: the old and new requests together fill the raised max exactly
    // (a counter zeroed by the reload would have admitted old + 80).
    assert_eq!(admitted.len(), 80);
    assert_eq!(stored(&sd, "virtual_key", "rl", "requests", "1h").used, 80);
    // Same budget identity: one counter, every charge.
    let spend: u128 = admitted.iter().map(|s| s.femto).sum();
    assert_eq!(stored(&sd, "virtual_key", "rl", "budget", "1d").used, spend);
    // The token window changed: a fresh counter for the new duration, the old one untouched.
    let old_tokens: u128 = admitted
        .iter()
        .filter(|s| !s.new_config)
        .map(|s| s.tokens)
        .sum();
    let new_tokens: u128 = admitted
        .iter()
        .filter(|s| s.new_config)
        .map(|s| s.tokens)
        .sum();
    assert_eq!(
        stored(&sd, "virtual_key", "rl", "tokens", "1h").used,
        old_tokens
    );
    assert_eq!(
        stored(&sd, "virtual_key", "rl", "tokens", "2h").used,
        new_tokens
    );
    let tokens = usage_entry(vm, "virtual_key", "rl", "tokens");
    assert_eq!(
        (tokens.reset_duration.as_str(), tokens.used),
        ("2h", new_tokens.to_string())
    );
    let requests = usage_entry(vm, "virtual_key", "rl", "requests");
    assert_eq!(
        (requests.limit.as_str(), requests.used.as_str()),
        ("80", "80")
    );
    assert!(vms.iter().all(|vm| !vm.is_failed()));
}

/// Two keys with a request and a token limit each; `failure_mode` as given.
fn corrupt_config(failure_mode: &str) -> String {
    format!(
        r#"{{"failure_mode": "{failure_mode}", "virtual_keys": [
        {{"id": "c1", "value": "sk-c1", "rate_limit": {{"request_max_limit": 1000,
            "request_reset_duration": "1h", "token_max_limit": 1000000, "token_reset_duration": "1h"}}}},
        {{"id": "c2", "value": "sk-c2", "rate_limit": {{"request_max_limit": 1000,
            "request_reset_duration": "1h"}}}}]}}"#
    )
}

fn metric(host: &host_tests::Host, name: &str) -> i64 {
    host.metric(name).unwrap_or(0)
}

#[test]
fn corrupted_counter_fails_closed_or_open_and_never_traps() {
    let mut host = gov_host(&corrupt_config("closed"), 1);
    let sd = host.shared_data();
    let ok = host
        .vm(0)
        .exchange(&chat_vk("sk-c1"), &usage_response(3, 2, 0));
    assert_eq!(ok.client.status, 200);
    let req_key = counter_key(&sd, "virtual_key", "c1", "requests", "1h");
    let tok_key = counter_key(&sd, "virtual_key", "c1", "tokens", "1h");
    let mut good_req = sd.get(VM_ID, &req_key).expect("stored").0;
    let mut good_tok = sd.get(VM_ID, &tok_key).expect("stored").0;
    let mut wrong_version = good_req.clone();
    wrong_version[0] = 3;
    let mut bad_flags = good_req.clone();
    bad_flags[1] = 0x80;
    let corruptions: Vec<(&str, &[u8], Vec<u8>)> = vec![
        ("garbage", &req_key, b"definitely not a counter".to_vec()),
        ("wrong version", &req_key, wrong_version.clone()),
        ("bad flags", &req_key, bad_flags),
        ("truncated", &req_key, good_req[..71].to_vec()),
        ("empty", &req_key, Vec::new()),
        ("garbage tokens", &tok_key, b"\xff\xfe".to_vec()),
    ];
    for (what, key, bytes) in &corruptions {
        let failures = metric(&host, "governance.store_failures");
        sd.overwrite_raw(VM_ID, key, bytes);
        let ex = host
            .vm(0)
            .exchange(&chat_vk("sk-c1"), &usage_response(3, 2, 0));
        assert_eq!(
            (ex.client.status, error_type(&ex).as_str()),
            (503, "governance_unavailable"),
            "closed, {what}"
        );
        assert!(
            ex.upstream.headers.is_none(),
            "closed, {what}: not forwarded"
        );
        assert_eq!(
            metric(&host, "governance.store_failures"),
            failures + 1,
            "{what}"
        );
        assert!(!host.vm(0).is_failed(), "{what}: the VM must not trap");
        // Another key's counters still work on the same VM.
        let other = host
            .vm(0)
            .exchange(&chat_vk("sk-c2"), &usage_response(1, 1, 0));
        assert_eq!(other.client.status, 200, "{what}: other key");
        sd.overwrite_raw(VM_ID, &req_key, &good_req);
        sd.overwrite_raw(VM_ID, &tok_key, &good_tok);
    }
    // Restored: the key works again, and its counter continues (the refused requests took
    // no slot).
    let ex = host
        .vm(0)
        .exchange(&chat_vk("sk-c1"), &usage_response(3, 2, 0));
    assert_eq!(ex.client.status, 200);
    assert_eq!(stored(&sd, "virtual_key", "c1", "requests", "1h").used, 2);
    assert_eq!(stored(&sd, "virtual_key", "c1", "tokens", "1h").used, 10);

    // Corrupted after admission, before the charge: the response still reaches the client,
    // the failed charge is counted, and the unreadable value is left alone.
    let failures = metric(&host, "governance.store_failures");
    let vm = host.vm(0);
    let (req, resp) = (chat_vk("sk-c1"), usage_response(3, 2, 0));
    let s = vm.open_stream();
    vm.send_request_headers(s, &req.headers, false);
    vm.send_request_body(s, &req.body, true);
    assert!(vm.stream(s).upstream.complete);
    sd.overwrite_raw(VM_ID, &tok_key, b"bad");
    vm.send_response_headers(s, &resp.headers, false);
    vm.send_response_body(s, &resp.body, true);
    let view = vm.stream(s);
    assert_eq!(
        (view.client.status, view.client.body.clone()),
        (200, resp.body)
    );
    assert!(!vm.is_failed());
    assert_eq!(metric(&host, "governance.store_failures"), failures + 1);
    assert_eq!(sd.get(VM_ID, &tok_key).map(|v| v.0), Some(b"bad".to_vec()));
    sd.overwrite_raw(VM_ID, &tok_key, &good_tok);

    good_req = sd.get(VM_ID, &req_key).expect("stored").0;
    good_tok = sd.get(VM_ID, &tok_key).expect("stored").0;
    host.reconfigure(corrupt_config("open"))
        .expect("reconfigure");
    for (what, key, bytes) in &corruptions {
        let failures = metric(&host, "governance.store_failures");
        sd.overwrite_raw(VM_ID, key, bytes);
        let ex = host
            .vm(0)
            .exchange(&chat_vk("sk-c1"), &usage_response(3, 2, 0));
        assert_eq!(ex.client.status, 200, "open, {what}: admitted");
        assert!(ex.upstream.complete, "open, {what}: forwarded");
        assert!(
            metric(&host, "governance.store_failures") > failures,
            "open, {what}: failure counted"
        );
        assert!(!host.vm(0).is_failed(), "open, {what}: no trap");
        sd.overwrite_raw(VM_ID, &req_key, &good_req);
        sd.overwrite_raw(VM_ID, &tok_key, &good_tok);
    }
    let ex = host
        .vm(0)
        .exchange(&chat_vk("sk-c1"), &usage_response(3, 2, 0));
    assert_eq!(ex.client.status, 200);
    // Restored again: the counter goes on from the good value (3 slots before the open phase).
    assert_eq!(stored(&sd, "virtual_key", "c1", "requests", "1h").used, 4);
    assert!(!host.vm(0).is_failed());
}

#[test]
fn fail_open_admission_counts_as_admitted() {
    let mut host = gov_host(&corrupt_config("open"), 1);
    let sd = host.shared_data();
    let key = counter_key(&sd, "virtual_key", "c1", "requests", "1h");
    sd.overwrite_raw(VM_ID, &key, b"garbage");
    let ex = host
        .vm(0)
        .exchange(&chat_vk("sk-c1"), &usage_response(3, 2, 0));
    assert_eq!(ex.client.status, 200);
    assert_eq!(metric(&host, "governance.store_failures"), 1);
    assert_eq!(
        metric(&host, "governance.admitted"),
        1,
        "admitted upstream, so counted"
    );
}

#[test]
fn fail_open_still_applies_the_model_rules() {
    // failure_mode is about counters; an allow-list needs none, so it must still hold.
    let config = r#"{"failure_mode": "open", "virtual_keys": [{"id": "fo", "value": "sk-fo",
        "allowed_models": ["gpt-4o-mini"],
        "rate_limit": {"request_max_limit": 1000, "request_reset_duration": "1h"}}]}"#;
    let mut host = gov_host(config, 1);
    let sd = host.shared_data();
    let blocked = || {
        Request::post("/v1/chat/completions", r#"{"model":"gpt-4","messages":[]}"#)
            .header("x-bf-vk", "sk-fo")
    };
    let ex = host.vm(0).exchange(&blocked(), &plain_response());
    assert_eq!(
        (ex.client.status, error_type(&ex).as_str()),
        (403, "model_blocked"),
        "intact counters"
    );
    let key = counter_key(&sd, "virtual_key", "fo", "requests", "1h");
    sd.overwrite_raw(VM_ID, &key, b"garbage");
    let ex = host.vm(0).exchange(&blocked(), &plain_response());
    assert_eq!(metric(&host, "governance.store_failures"), 1);
    assert_eq!(
        (ex.client.status, error_type(&ex).as_str()),
        (403, "model_blocked"),
        "unreadable request counter, failure_mode open"
    );
}

fn header(ex: &Exchange, name: &str) -> String {
    client_header(ex, name).unwrap_or_else(|| panic!("no {name} in {ex:?}"))
}

#[test]
fn rolling_minute_window_refuses_until_its_end_then_rolls() {
    let config = r#"{"virtual_keys": [{"id": "m1", "value": "sk-m1",
        "rate_limit": {"request_max_limit": 3, "request_reset_duration": "1m"}},
        {"id": "m2", "value": "sk-m2",
         "rate_limit": {"token_max_limit": 100, "token_reset_duration": "1m"}}]}"#;
    let mut host = gov_host(config, 1);
    let sd = host.shared_data();
    let clock = host.clock();
    let t0 = clock.now_nanos();
    let vm = host.vm(0);
    let send = |vm: &mut host_tests::Vm| vm.exchange(&models_vk("sk-m1"), &plain_response());

    let ex = send(vm);
    assert_eq!(ex.client.status, 200);
    assert_eq!(header(&ex, "x-ratelimit-remaining-requests"), "2");
    assert_eq!(header(&ex, "x-ratelimit-reset-requests"), "1m0s");
    let ex = vm.exchange(&chat_vk("sk-m2"), &usage_response(6, 4, 0));
    assert_eq!(ex.client.status, 200);
    clock.advance(Duration::from_secs(20));
    assert_eq!(send(vm).client.status, 200);
    let ex = send(vm);
    assert_eq!(ex.client.status, 200);
    assert_eq!(header(&ex, "x-ratelimit-remaining-requests"), "0");
    assert_eq!(header(&ex, "x-ratelimit-reset-requests"), "40s");

    clock.advance(Duration::from_millis(10_300)); // t0 + 30.3s
    let ex = send(vm);
    assert_eq!(
        (ex.client.status, error_type(&ex).as_str()),
        (429, "request_limited")
    );
    assert_eq!(
        header(&ex, "retry-after"),
        "30",
        "ceil(29.7s) to the window end"
    );
    clock.set_nanos(t0 + 60 * SEC - 1);
    let ex = send(vm);
    assert_eq!(
        (ex.client.status, header(&ex, "retry-after")),
        (429, "1".to_string())
    );

    clock.set_nanos(t0 + 60 * SEC);
    let ex = send(vm);
    assert_eq!(ex.client.status, 200, "a new window at t0 + 1m");
    assert_eq!(header(&ex, "x-ratelimit-remaining-requests"), "2");
    let rec = stored(&sd, "virtual_key", "m1", "requests", "1m");
    assert_eq!(
        (rec.anchor, rec.window_start, rec.window_end, rec.used),
        (t0, t0 + 60 * SEC, t0 + 120 * SEC, 1)
    );
    assert!(rec.started && rec.reserved == 0);

    // Idle for a while: windows follow each other from the anchor without gaps.
    clock.set_nanos(t0 + 265 * SEC);
    let ex = send(vm);
    assert_eq!(ex.client.status, 200);
    assert_eq!(header(&ex, "x-ratelimit-reset-requests"), "35s");
    let rec = stored(&sd, "virtual_key", "m1", "requests", "1m");
    assert_eq!(
        (rec.window_start, rec.window_end, rec.used),
        (t0 + 240 * SEC, t0 + 300 * SEC, 1)
    );

    // A response that ends after its window did is charged to the window it ended in.
    let m2 = stored(&sd, "virtual_key", "m2", "tokens", "1m");
    assert_eq!((m2.anchor, m2.used), (t0, 10));
    let req = chat_vk("sk-m2");
    let resp = usage_response(30, 10, 0);
    let s = vm.open_stream();
    vm.send_request_headers(s, &req.headers, false);
    vm.send_request_body(s, &req.body, true);
    assert!(vm.stream(s).upstream.complete, "admitted at t0 + 265s");
    clock.set_nanos(t0 + 310 * SEC);
    vm.send_response_headers(s, &resp.headers, false);
    vm.send_response_body(s, &resp.body, true);
    assert_eq!(vm.stream(s).client.status, 200);
    let m2 = stored(&sd, "virtual_key", "m2", "tokens", "1m");
    assert_eq!(
        (m2.window_start, m2.window_end, m2.used),
        (t0 + 300 * SEC, t0 + 360 * SEC, 40)
    );
}

#[test]
fn rolling_token_window_starts_at_the_admission_that_first_uses_it() {
    // docs/windows.md: rolling windows start at the counter's first use (admission or charge). The
    // admission's quota headers already promise a window ending one minute after it.
    let config = r#"{"virtual_keys": [{"id": "m3", "value": "sk-m3",
        "rate_limit": {"token_max_limit": 100, "token_reset_duration": "1m"}}]}"#;
    let mut host = gov_host(config, 1);
    let sd = host.shared_data();
    let clock = host.clock();
    let t0 = clock.now_nanos();
    let vm = host.vm(0);
    let req = chat_vk("sk-m3");
    let resp = usage_response(30, 10, 0);
    let s = vm.open_stream();
    vm.send_request_headers(s, &req.headers, false);
    vm.send_request_body(s, &req.body, true);
    vm.send_response_headers(s, &resp.headers, false);
    let view = vm.stream(s);
    let reset = view
        .client
        .headers
        .as_ref()
        .and_then(|h| h.get("x-ratelimit-reset-tokens"))
        .map(str::to_string);
    assert_eq!(reset.as_deref(), Some("1m0s"));
    clock.advance(Duration::from_secs(50));
    vm.send_response_body(s, &resp.body, true);
    let m3 = stored(&sd, "virtual_key", "m3", "tokens", "1m");
    assert_eq!(
        (m3.anchor, m3.window_start, m3.window_end, m3.used),
        (t0, t0, t0 + 60 * SEC, 40),
        "the window the response headers announced"
    );
}

#[test]
fn calendar_day_in_new_york_resets_at_local_midnight_across_dst() {
    let config = format!(
        r#"{{"usage_endpoint": {}, "virtual_keys": [{{"id": "ny", "value": "sk-ny",
        "calendar_aligned": true, "timezone": "America/New_York",
        "rate_limit": {{"request_max_limit": 2, "request_reset_duration": "1d"}}}}]}}"#,
        usage_endpoint_json()
    );
    // Saturday 2026-03-07 07:00 EST; clocks spring forward on Sunday 2026-03-08.
    let mut host = gov_builder(&config, 1)
        .clock_start_nanos(utc(2026, 3, 7, 12, 0, 0))
        .build()
        .expect("host");
    let sd = host.shared_data();
    let clock = host.clock();
    let vm = host.vm(0);
    let send = |vm: &mut host_tests::Vm| vm.exchange(&models_vk("sk-ny"), &plain_response());
    let window = |vm: &mut host_tests::Vm| {
        let e = usage_entry(vm, "virtual_key", "ny", "requests");
        (e.window_start, e.window_end)
    };

    let ex = send(vm);
    assert_eq!(ex.client.status, 200);
    assert_eq!(header(&ex, "x-ratelimit-reset-requests"), "17h0m0s");
    assert_eq!(
        window(vm),
        (
            "2026-03-07T05:00:00Z".to_string(),
            "2026-03-08T05:00:00Z".to_string()
        )
    );
    assert_eq!(send(vm).client.status, 200);
    let ex = send(vm);
    assert_eq!(
        (ex.client.status, header(&ex, "retry-after")),
        (429, "61200".to_string())
    );
    clock.set_nanos(utc(2026, 3, 8, 4, 59, 59));
    let ex = send(vm);
    assert_eq!(
        (ex.client.status, header(&ex, "retry-after")),
        (429, "1".to_string())
    );

    // Local midnight of the 23-hour day.
    clock.set_nanos(utc(2026, 3, 8, 5, 0, 0));
    let ex = send(vm);
    assert_eq!(ex.client.status, 200, "reset at 00:00 EST");
    assert_eq!(header(&ex, "x-ratelimit-reset-requests"), "23h0m0s");
    assert_eq!(
        window(vm),
        (
            "2026-03-08T05:00:00Z".to_string(),
            "2026-03-09T04:00:00Z".to_string()
        )
    );
    assert_eq!(send(vm).client.status, 200);
    clock.set_nanos(utc(2026, 3, 9, 3, 59, 59));
    let ex = send(vm);
    assert_eq!(
        (ex.client.status, header(&ex, "retry-after")),
        (429, "1".to_string())
    );
    clock.set_nanos(utc(2026, 3, 9, 4, 0, 0));
    let ex = send(vm);
    assert_eq!(ex.client.status, 200, "reset at 00:00 EDT");
    assert_eq!(header(&ex, "x-ratelimit-reset-requests"), "24h0m0s");
    let rec = stored(&sd, "virtual_key", "ny", "requests", "1d");
    assert_eq!(
        (rec.window_start, rec.window_end, rec.used),
        (utc(2026, 3, 9, 4, 0, 0), utc(2026, 3, 10, 4, 0, 0), 1)
    );

    // Fall back on Sunday 2026-11-01: that local day lasts 25 hours.
    clock.set_nanos(utc(2026, 11, 1, 3, 30, 0));
    let ex = send(vm);
    assert_eq!(ex.client.status, 200);
    assert_eq!(header(&ex, "x-ratelimit-reset-requests"), "30m0s");
    clock.set_nanos(utc(2026, 11, 1, 4, 0, 0));
    let ex = send(vm);
    assert_eq!(ex.client.status, 200);
    assert_eq!(header(&ex, "x-ratelimit-reset-requests"), "25h0m0s");
    assert_eq!(
        window(vm),
        (
            "2026-11-01T04:00:00Z".to_string(),
            "2026-11-02T05:00:00Z".to_string()
        )
    );
}
