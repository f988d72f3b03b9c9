//! Concurrency through the real module: worker VMs on OS threads, and deterministic
//! interleavings (another VM's whole request run between a guest's shared-data get and set).
//! Every assertion is on exact totals, never on how the threads happened to be scheduled.

use crate::common::{
    chat_bearer, chat_vk, counter_key, error_type, gov_builder, gov_host, models_vk, on_threads,
    stored, usage_endpoint_json, usage_entry, usage_response, SEC, VM_ID,
};
use host_tests::{SharedDataOp, Vm};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

/// Femto-USD per token of the pricing in [`priced_config`]: input, output, cache read.
const IN_FEMTO: u128 = 1_000_000_000;
const OUT_FEMTO: u128 = 2_000_000_000;
const CACHED_FEMTO: u128 = 500_000_000;

/// Cost in femto-USD of one response under [`priced_config`]'s pricing.
fn cost(prompt: u64, completion: u64, cached: u64) -> u128 {
    u128::from(prompt - cached) * IN_FEMTO
        + u128::from(cached) * CACHED_FEMTO
        + u128::from(completion) * OUT_FEMTO
}

/// Key `k1` (secret `sk-k1`) in team `t1`: a request limit of `requests` per 1h, a token limit
/// per 1h, a 1d budget; the team has a 1M budget. gpt-4o-mini at 1e-6 / 2e-6 / 5e-7 USD.
fn priced_config(requests: u64) -> String {
    format!(
        r#"{{
        "usage_endpoint": {},
        "pricing": {{"gpt-4o-mini": {{"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6,
                                      "cache_read_input_token_cost": 5e-7}}}},
        "teams": [{{"id": "t1", "budgets": [{{"max_limit": 1000000, "reset_duration": "1M"}}]}}],
        "virtual_keys": [{{"id": "k1", "value": "sk-k1", "team_id": "t1",
            "budgets": [{{"max_limit": 1000000, "reset_duration": "1d"}}],
            "rate_limit": {{"request_max_limit": {requests}, "request_reset_duration": "1h",
                           "token_max_limit": 1000000000000, "token_reset_duration": "1h"}}}}]
    }}"#,
        usage_endpoint_json()
    )
}

/// Usage of request `j` of thread `i` (prompt, completion, cached): varied but known.
fn usage_of(i: usize, j: usize) -> (u64, u64, u64) {
    let n = (i * 1000 + j) as u64;
    (10 + n % 17, 3 + (n * 7) % 11, n % 5)
}

#[test]
fn request_limit_admits_exactly_max_across_threads() {
    // Key `rq` alone; key `rq2` under team `tt` under customer `cu`, where the customer's
    // limit is the tightest, so a refused request must give back its key and team slots.
    let config = r#"{
        "customers": [{"id": "cu", "rate_limit": {"request_max_limit": 60, "request_reset_duration": "1h"}}],
        "teams": [{"id": "tt", "customer_id": "cu",
                   "rate_limit": {"request_max_limit": 1000, "request_reset_duration": "1h"}}],
        "virtual_keys": [
            {"id": "rq", "value": "sk-rq",
             "rate_limit": {"request_max_limit": 100, "request_reset_duration": "1h"}},
            {"id": "rq2", "value": "sk-rq2", "team_id": "tt",
             "rate_limit": {"request_max_limit": 100, "request_reset_duration": "1h"}}]}"#;
    let mut host = gov_host(config, 4);
    let sd = host.shared_data();
    let (vms, results) = on_threads(host.take_vms(), |_, vm| {
        let mut statuses = Vec::new();
        for _ in 0..100 {
            let ex = vm.exchange(&models_vk("sk-rq"), &crate::common::plain_response());
            let retry_after = crate::common::client_header(&ex, "retry-after");
            statuses.push((ex.client.status, error_type(&ex), retry_after));
        }
        statuses
    });
    let all: Vec<_> = results.into_iter().flatten().collect();
    let admitted = all.iter().filter(|(s, _, _)| *s == 200).count();
    let limited: Vec<_> = all.iter().filter(|(s, _, _)| *s == 429).collect();
    assert_eq!(admitted, 100, "exactly request_max_limit admitted");
    assert_eq!(limited.len(), 300, "every other request is 429");
    assert!(
        limited
            .iter()
            .all(|(_, t, ra)| t == "request_limited" && ra.is_some()),
        "429s are request_limited with retry-after: {:?}",
        limited.first()
    );
    assert_eq!(stored(&sd, "virtual_key", "rq", "requests", "1h").used, 100);
    assert_eq!(host.metric("governance.admitted"), Some(100));
    assert_eq!(
        host.metric("governance.rejected.request_limited"),
        Some(300)
    );

    // Through the hierarchy: 4 × 50 requests, exactly the customer's 60 admitted, and the
    // slots the refused ones took at the key and team levels all given back.
    let (vms, results) = on_threads(vms, |_, vm| {
        (0..50)
            .map(|_| {
                let ex = vm.exchange(&models_vk("sk-rq2"), &crate::common::plain_response());
                (ex.client.status, error_type(&ex))
            })
            .collect::<Vec<_>>()
    });
    let all: Vec<_> = results.into_iter().flatten().collect();
    let admitted = all.iter().filter(|(s, _)| *s == 200).count();
    assert_eq!(admitted, 60, "exactly the customer's max");
    assert!(all
        .iter()
        .all(|(s, t)| *s == 200 || (*s == 429 && t == "request_limited")));
    assert_eq!(stored(&sd, "customer", "cu", "requests", "1h").used, 60);
    assert_eq!(stored(&sd, "team", "tt", "requests", "1h").used, 60);
    assert_eq!(stored(&sd, "virtual_key", "rq2", "requests", "1h").used, 60);
    assert_eq!(host.metric("governance.admitted"), Some(160));

    // The window ends while nobody sends; then every thread races to reset it: one reset,
    // and again exactly 100 slots in the new window (rolling: anchored at the first use).
    let first = stored(&sd, "virtual_key", "rq", "requests", "1h");
    host.clock()
        .advance(std::time::Duration::from_secs(3600 + 7));
    let (vms, results) = on_threads(vms, |_, vm| {
        (0..60)
            .filter(|_| {
                vm.exchange(&models_vk("sk-rq"), &crate::common::plain_response())
                    .client
                    .status
                    == 200
            })
            .count()
    });
    assert_eq!(results.iter().sum::<usize>(), 100);
    let second = stored(&sd, "virtual_key", "rq", "requests", "1h");
    assert_eq!(
        (
            second.used,
            second.anchor,
            second.window_start,
            second.window_end
        ),
        (
            100,
            first.anchor,
            first.window_start + 3600 * SEC,
            first.window_end + 3600 * SEC
        )
    );
    assert!(vms.iter().all(|vm| !vm.is_failed()));
}

#[test]
fn tokens_and_spend_add_up_exactly_across_threads() {
    let mut host = gov_host(&priced_config(1_000_000), 4);
    let sd = host.shared_data();
    let per_thread = 50;
    let (mut vms, results) = on_threads(host.take_vms(), move |i, vm| {
        let mut out = Vec::new();
        for j in 0..per_thread {
            let (p, c, cached) = usage_of(i, j);
            let req = if j % 2 == 0 {
                chat_vk("sk-k1")
            } else {
                chat_bearer("sk-k1")
            };
            let ex = vm.exchange(&req, &usage_response(p, c, cached));
            out.push((ex.client.status, p + c, cost(p, c, cached)));
        }
        out
    });
    // Each VM reports whole micro-dollars of its running spend and carries the remainder.
    let micro: u128 = results
        .iter()
        .map(|per_vm| per_vm.iter().map(|(_, _, c)| c).sum::<u128>() / 1_000_000_000)
        .sum();
    let all: Vec<_> = results.into_iter().flatten().collect();
    assert!(all.iter().all(|(s, _, _)| *s == 200), "all admitted");
    let tokens: u64 = all.iter().map(|(_, t, _)| t).sum();
    let spend: u128 = all.iter().map(|(_, _, c)| c).sum();

    assert_eq!(
        stored(&sd, "virtual_key", "k1", "tokens", "1h").used,
        u128::from(tokens)
    );
    assert_eq!(stored(&sd, "virtual_key", "k1", "budget", "1d").used, spend);
    assert_eq!(stored(&sd, "team", "t1", "budget", "1M").used, spend);
    assert_eq!(stored(&sd, "virtual_key", "k1", "requests", "1h").used, 200);
    let entry = usage_entry(&mut vms[0], "virtual_key", "k1", "tokens");
    assert_eq!(entry.used, tokens.to_string());
    assert_eq!(host.metric("governance.admitted"), Some(200));
    assert_eq!(
        host.metric("governance.tokens_charged"),
        Some(tokens as i64)
    );
    assert_eq!(
        host.metric("governance.spend_micro_usd"),
        Some(micro as i64)
    );
    assert_eq!(host.metric("governance.store_failures").unwrap_or(0), 0);
}

/// Shared-data events of one exchange: (op, key).
fn trace_exchange(vm: &mut Vm, run: impl FnOnce(&mut Vm)) -> Vec<(SharedDataOp, Vec<u8>)> {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&events);
    vm.on_shared_data(move |ev| {
        if let Ok(mut e) = sink.lock() {
            e.push((ev.op, ev.key.clone()));
        }
    });
    run(vm);
    vm.clear_shared_data_hook();
    let out = events.lock().expect("events").clone();
    out
}

/// (number of gets, number of gets directly followed by a set of the same key).
fn gets_before_sets(events: &[(SharedDataOp, Vec<u8>)]) -> (usize, usize) {
    let gets = events
        .iter()
        .filter(|(op, _)| *op == SharedDataOp::Get)
        .count();
    let rmw = events
        .windows(2)
        .filter(|w| match w {
            [(SharedDataOp::Get, got), (SharedDataOp::Set, set)] => got == set,
            _ => false,
        })
        .count();
    (gets, rmw)
}

#[test]
fn a_request_injected_after_every_shared_get_loses_nothing() {
    // Calibrate: which shared-data calls one exchange makes once its counters are in use
    // (the first request also starts the rolling windows). Both requests count.
    let mut host = gov_host(&priced_config(1_000), 2);
    let warm_up = host
        .vm(0)
        .exchange(&chat_vk("sk-k1"), &usage_response(10, 5, 0));
    assert_eq!(warm_up.client.status, 200);
    let events = trace_exchange(host.vm(0), |vm| {
        let ex = vm.exchange(&chat_vk("sk-k1"), &usage_response(10, 5, 0));
        assert_eq!(ex.client.status, 200);
    });
    let (gets, rmw) = gets_before_sets(&events);
    assert!(gets >= 7 && rmw >= 4, "events: {events:?}");

    // Exactly enough request slots for the calibration, plus A and B once per get.
    let limit = 2 + 2 * gets as u64;
    host.reconfigure(priced_config(limit)).expect("reconfigure");
    let conflicts_before = host.metric("governance.cas_conflicts").unwrap_or(0);
    let mut vms = host.take_vms();
    let b = Arc::new(Mutex::new(vms.pop().expect("vm b")));
    let mut a = vms.pop().expect("vm a");
    let b_statuses = Arc::new(Mutex::new(Vec::new()));
    for n in 1..=gets {
        let (b, out) = (Arc::clone(&b), Arc::clone(&b_statuses));
        a.after_nth_shared_get(n, move || {
            let mut b = b.lock().expect("vm b");
            let ex = b.exchange(&chat_bearer("sk-k1"), &usage_response(20, 7, 2));
            out.lock().expect("statuses").push(ex.client.status);
        });
        let ex = a.exchange(&chat_vk("sk-k1"), &usage_response(10, 5, 0));
        assert_eq!(ex.client.status, 200, "A with B injected after get {n}");
        a.clear_shared_data_hook();
    }
    let b_statuses = b_statuses.lock().expect("statuses").clone();
    assert_eq!(b_statuses, vec![200; gets], "B ran once per get, admitted");

    let sd = host.shared_data();
    let n = gets as u128;
    assert_eq!(
        stored(&sd, "virtual_key", "k1", "requests", "1h").used,
        u128::from(limit)
    );
    assert_eq!(
        stored(&sd, "virtual_key", "k1", "tokens", "1h").used,
        15 * (n + 2) + 27 * n
    );
    let spend = cost(10, 5, 0) * (n + 2) + cost(20, 7, 2) * n;
    assert_eq!(stored(&sd, "virtual_key", "k1", "budget", "1d").used, spend);
    assert_eq!(stored(&sd, "team", "t1", "budget", "1M").used, spend);
    // Each get that A follows with a set of the same key lost exactly one CAS race.
    assert_eq!(
        host.metric("governance.cas_conflicts").unwrap_or(0) - conflicts_before,
        rmw as i64
    );
    // The slots are exact: the next request finds the limit reached.
    let ex = a.exchange(&chat_vk("sk-k1"), &usage_response(1, 1, 0));
    assert_eq!(
        (ex.client.status, error_type(&ex).as_str()),
        (429, "request_limited")
    );
    assert!(!a.is_failed() && !b.lock().expect("vm b").is_failed());
}

#[test]
fn bifrost_256_by_50_increments_are_exact() {
    // TestBumpBudgetUsage_NoLostIncrements + TestBumpRateLimitUsage_NoLostIncrements: 12,800
    // admitted requests, each charging $1.00 and 7 tokens, from 8 VMs on 8 threads (each
    // thread plays 32 of the 256 "goroutines", 50 requests each).
    let config = r#"{
        "pricing": {"gpt-4o-mini": {"input_cost_per_token": 0.2, "output_cost_per_token": 0.1}},
        "virtual_keys": [{"id": "bump", "value": "sk-bump",
            "budgets": [{"max_limit": 1000000000, "reset_duration": "24h"}],
            "rate_limit": {"request_max_limit": 12800, "request_reset_duration": "24h",
                           "token_max_limit": 1000000000, "token_reset_duration": "24h"}}]
    }"#;
    let mut host = gov_host(config, 8);
    let sd = host.shared_data();
    let (mut vms, results) = on_threads(host.take_vms(), |_, vm| {
        let mut admitted = 0u32;
        for _goroutine in 0..32 {
            for _bump in 0..50 {
                let ex = vm.exchange(&chat_vk("sk-bump"), &usage_response(3, 4, 0));
                if ex.client.status == 200 {
                    admitted += 1;
                }
            }
        }
        admitted
    });
    assert_eq!(results.iter().sum::<u32>(), 12_800);
    assert_eq!(
        stored(&sd, "virtual_key", "bump", "budget", "24h").used,
        12_800 * crate::common::FEMTO,
        "spend is exactly $12800"
    );
    assert_eq!(
        stored(&sd, "virtual_key", "bump", "tokens", "24h").used,
        89_600
    );
    assert_eq!(
        stored(&sd, "virtual_key", "bump", "requests", "24h").used,
        12_800
    );
    let ex = vms[0].exchange(&chat_vk("sk-bump"), &usage_response(3, 4, 0));
    assert_eq!(ex.client.status, 429, "the 12,801st request is refused");
}

#[test]
fn bifrost_resetters_at_one_boundary_make_one_reset_and_lose_no_spend() {
    // TestResetBudgetAt_ConcurrentResettersCollapse through the module: a 1000 USD / 1h
    // rolling budget holds 999 USD; the clock passes the window end; then 128 requests on
    // 8 VMs / 8 threads charge in the new window, and later 16 nested requests all read the
    // ended window before any of them writes.
    let config = r#"{
        "pricing": {"gpt-4o-mini": {"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6,
                                    "cache_read_input_token_cost": 5e-7}},
        "virtual_keys": [{"id": "rs", "value": "sk-rs",
            "budgets": [{"max_limit": 1000, "reset_duration": "1h"}]}]
    }"#;
    let mut host = gov_host(config, 8);
    let sd = host.shared_data();
    let clock = host.clock();
    let t0 = clock.now_nanos();
    let ex = host
        .vm(0)
        .exchange(&chat_vk("sk-rs"), &usage_response(999_000_000, 0, 0));
    assert_eq!(ex.client.status, 200);
    let old = stored(&sd, "virtual_key", "rs", "budget", "1h");
    assert_eq!(
        (old.used, old.window_start),
        (999 * crate::common::FEMTO, t0)
    );

    // 2h30m later: the boundary is t0 + 2h.
    clock.advance(std::time::Duration::from_secs(2 * 3600 + 1800));
    let (mut vms, results) = on_threads(host.take_vms(), |i, vm| {
        let mut charged = Vec::new();
        for j in 0..16 {
            let (p, c, cached) = usage_of(i, j);
            let ex = vm.exchange(&chat_vk("sk-rs"), &usage_response(p, c, cached));
            assert_eq!(ex.client.status, 200);
            charged.push(cost(p, c, cached));
        }
        charged
    });
    let charges: Vec<u128> = results.into_iter().flatten().collect();
    assert_eq!(charges.len(), 128);
    let rec = stored(&sd, "virtual_key", "rs", "budget", "1h");
    assert_eq!(
        rec.used,
        charges.iter().sum::<u128>(),
        "no spend lost to a second reset"
    );
    assert_eq!(
        (rec.window_start, rec.window_end),
        (t0 + 2 * 3600 * SEC, t0 + 3 * 3600 * SEC)
    );

    // Find which get of an exchange is the charge's read (the get followed by a set).
    let events = trace_exchange(&mut vms[0], |vm| {
        let ex = vm.exchange(&chat_vk("sk-rs"), &usage_response(1, 1, 0));
        assert_eq!(ex.client.status, 200);
    });
    let key = counter_key(&sd, "virtual_key", "rs", "budget", "1h");
    let charge_get = events
        .iter()
        .filter(|(op, _)| *op == SharedDataOp::Get)
        .position(|(_, k)| *k == key)
        .map(|p| p + 2) // the admission read, then the charge's read
        .expect("budget read");
    assert_eq!(
        events
            .iter()
            .filter(|(op, k)| *op == SharedDataOp::Get && *k == key)
            .count(),
        2,
        "one admission read and one charge: {events:?}"
    );

    // Window t0+3h..t0+4h: a chain of 16 VMs, each running the next one between its
    // charge's get and set, so all 16 see the ended window before anyone writes.
    clock.advance(std::time::Duration::from_secs(3600));
    let chain_len = 16;
    let mut chain: Vec<Vm> = Vec::new();
    for _ in 0..chain_len {
        chain.push(host.new_worker().expect("worker"));
    }
    let conflicts_before = host.metric("governance.cas_conflicts").unwrap_or(0);
    let statuses = Arc::new(Mutex::new(Vec::new()));
    let mut inner: Option<Vm> = None;
    for (depth, mut vm) in chain.into_iter().enumerate().rev() {
        let (p, c) = (100 + depth as u64, 10 + depth as u64);
        let out = Arc::clone(&statuses);
        let next = inner.take();
        vm.after_nth_shared_get(charge_get, move || {
            if let Some(mut next) = next {
                // The next VM runs its whole request here (and, nested, the rest).
                let (np, nc) = (p + 1, c + 1);
                let ex = next.exchange(&chat_vk("sk-rs"), &usage_response(np, nc, 0));
                out.lock().expect("statuses").push(ex.client.status);
            }
        });
        inner = Some(vm);
    }
    let mut outer = inner.expect("chain");
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .stack_size(256 << 20)
        .spawn(move || {
            let ex = outer.exchange(&chat_vk("sk-rs"), &usage_response(100, 10, 0));
            let _ = tx.send(ex.client.status);
        })
        .expect("spawn")
        .join()
        .expect("chain thread");
    assert_eq!(rx.recv().ok(), Some(200));
    let statuses = statuses.lock().expect("statuses").clone();
    assert_eq!(statuses, vec![200; chain_len - 1]);
    let chain_spend: u128 = (0..chain_len as u64)
        .map(|d| cost(100 + d, 10 + d, 0))
        .sum();
    let rec = stored(&sd, "virtual_key", "rs", "budget", "1h");
    assert_eq!(
        rec.used, chain_spend,
        "one reset, every chained charge kept"
    );
    assert_eq!(
        (rec.window_start, rec.window_end),
        (t0 + 3 * 3600 * SEC, t0 + 4 * 3600 * SEC)
    );
    assert_eq!(
        host.metric("governance.cas_conflicts").unwrap_or(0) - conflicts_before,
        chain_len as i64 - 1,
        "every resetter but the first lost one CAS race"
    );
    assert!(vms.iter_mut().all(|vm| !vm.is_failed()));
}

/// Key `fw`: 10 requests per hour and a token limit; pricing not needed (no budget).
const FIRST_WRITE_CONFIG: &str = r#"{"virtual_keys": [{"id": "fw", "value": "sk-fw",
    "rate_limit": {"request_max_limit": 10, "request_reset_duration": "1h",
                   "token_max_limit": 1000000, "token_reset_duration": "1h"}}]}"#;

/// A host and two workers A and B for the first-write races. The workers are started at
/// different clock instants: a VM's creator tag is derived from the clock and WASI random
/// bytes, and this host's `random_get` gives every VM the same bytes (Envoy's is real
/// entropy), so workers configured at one frozen instant would share a tag.
fn first_write_host() -> (host_tests::Host, Vm, Vm) {
    let host = gov_builder(FIRST_WRITE_CONFIG, 0).build().expect("host");
    let a = host.new_worker().expect("worker a");
    host.clock().advance(std::time::Duration::from_micros(1));
    let b = host.new_worker().expect("worker b");
    (host, a, b)
}

/// Removes the counters of key `fw` (as if they had never been created).
fn forget_fw_counters(sd: &host_tests::SharedData) {
    for kind in ["requests", "tokens"] {
        let key = counter_key(sd, "virtual_key", "fw", kind, "1h");
        assert!(sd.remove_raw(VM_ID, &key));
    }
}

#[test]
fn first_write_race_creator_after_my_create_is_detected() {
    // A and B both find the request counter missing; B's blind create lands after A's create
    // and before A reads it back: A must see it lost and retry on top of B's record.
    let (host, mut a, mut b) = first_write_host();
    let sd = host.shared_data();
    forget_fw_counters(&sd);
    let (b_got_tx, b_got_rx) = mpsc::channel::<()>();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    b.after_nth_shared_get(1, move || {
        let _ = b_got_tx.send(());
        let _ = go_rx.recv();
    });
    let b_thread = std::thread::spawn(move || {
        let ex = b.exchange(&chat_vk("sk-fw"), &usage_response(5, 5, 0));
        (ex.client.status, b)
    });
    b_got_rx.recv().expect("B read the missing key");
    let b_slot = Arc::new(Mutex::new(Some((go_tx, b_thread))));
    let b_done = Arc::new(Mutex::new(None));
    let (slot, done) = (Arc::clone(&b_slot), Arc::clone(&b_done));
    a.on_shared_data(move |ev| {
        if ev.op == SharedDataOp::Set && ev.nth == 1 {
            if let Some((go, thread)) = slot.lock().expect("slot").take() {
                let _ = go.send(());
                *done.lock().expect("done") = Some(thread.join().expect("B"));
            }
        }
    });
    let ex = a.exchange(&chat_vk("sk-fw"), &usage_response(7, 3, 0));
    a.clear_shared_data_hook();
    if let Some((go, thread)) = b_slot.lock().expect("slot").take() {
        // A never wrote: release B anyway so the test fails instead of hanging.
        let _ = go.send(());
        *b_done.lock().expect("done") = Some(thread.join().expect("B"));
        panic!("A made no shared-data set");
    }
    let (b_status, _b) = b_done.lock().expect("done").take().expect("B ran");
    assert_eq!((ex.client.status, b_status), (200, 200));
    assert_eq!(stored(&sd, "virtual_key", "fw", "requests", "1h").used, 2);
    assert_eq!(stored(&sd, "virtual_key", "fw", "tokens", "1h").used, 20);
}

#[test]
fn first_write_race_whole_request_between_get_and_create_loses_nothing() {
    // For every get of A's exchange: forget the counters, then run B's whole request between
    // A's get and A's next shared-data call. Both requests must be counted.
    let (host, mut a, b) = first_write_host();
    let sd = host.shared_data();
    let b = Arc::new(Mutex::new(b));
    forget_fw_counters(&sd);
    let events = trace_exchange(&mut a, |vm| {
        let ex = vm.exchange(&chat_vk("sk-fw"), &usage_response(7, 3, 0));
        assert_eq!(ex.client.status, 200);
    });
    let gets = events
        .iter()
        .filter(|(op, _)| *op == SharedDataOp::Get)
        .count();
    let mut lost = Vec::new();
    for n in 1..=gets {
        forget_fw_counters(&sd);
        let b2 = Arc::clone(&b);
        a.after_nth_shared_get(n, move || {
            let ex = b2
                .lock()
                .expect("b")
                .exchange(&chat_vk("sk-fw"), &usage_response(5, 5, 0));
            assert_eq!(ex.client.status, 200);
        });
        let ex = a.exchange(&chat_vk("sk-fw"), &usage_response(7, 3, 0));
        a.clear_shared_data_hook();
        assert_eq!(ex.client.status, 200);
        let requests = stored(&sd, "virtual_key", "fw", "requests", "1h").used;
        let tokens = stored(&sd, "virtual_key", "fw", "tokens", "1h").used;
        if (requests, tokens) != (2, 20) {
            lost.push(format!(
                "B injected after A's get {n} ({}): requests {requests}, tokens {tokens}",
                String::from_utf8_lossy(&events_get_key(&events, n))
            ));
        }
    }
    assert!(lost.is_empty(), "increments lost:\n{}", lost.join("\n"));
}

fn events_get_key(events: &[(SharedDataOp, Vec<u8>)], n: usize) -> Vec<u8> {
    events
        .iter()
        .filter(|(op, _)| *op == SharedDataOp::Get)
        .nth(n - 1)
        .map(|(_, k)| k.clone())
        .unwrap_or_default()
}
