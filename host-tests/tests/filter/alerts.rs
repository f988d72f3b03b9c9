//! Threshold alerts through the real module: the charge that first takes a limit past a
//! threshold in its window is logged, counted and (with a cluster) posted as one JSON
//! event by the root context, once per threshold and window however many workers charge
//! at once; a failed post is retried.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use host_tests::{Callout, CalloutAnswer, CalloutResponse, Host, HostBuilder, Vm, GOVERNANCE_WASM};
use serde_json::{json, Value};

use crate::common::on_threads;
use crate::support::*;

const ALERTS: &str = r#""alerts": {"thresholds": [0.5, 0.8, 0.95], "cluster": "alerts",
    "path": "/hooks/governance"}"#;

/// Key `k` with 1,000 tokens a day, in team `ml` with a $1 budget.
const OWNERS: &str = r#""teams":[{"id":"ml","budgets":[{"max_limit":1,"reset_duration":"1d"}]}],
    "virtual_keys":[{"id":"k","value":"sk","team_id":"ml",
        "rate_limit":{"token_max_limit":1000,"token_reset_duration":"1d"}}]"#;

fn alerts_host(
    rest: &str,
    workers: usize,
    answer: impl Fn(&Callout) -> CalloutAnswer + Send + 'static,
) -> Host {
    HostBuilder::new(GOVERNANCE_WASM)
        .plugin_config(config(rest))
        .vm_id("governance")
        .workers(workers)
        .clock_start_nanos(T0)
        .cluster_responding("alerts", answer)
        .build()
        .unwrap_or_else(|err| panic!("host did not start: {err:?}"))
}

fn ok(_: &Callout) -> CalloutAnswer {
    CalloutAnswer::respond(CalloutResponse::status(200))
}

fn events(host: &Host) -> Vec<Value> {
    host.callouts()
        .iter()
        .filter(|c| c.cluster == "alerts")
        .map(|c| serde_json::from_slice(&c.body).expect("a JSON event"))
        .collect()
}

/// A request of key `k` answered with 200 prompt and 100 output tokens of gpt-4o-mini
/// (300 tokens, $0.00009).
fn spend_300(vm: &mut Vm) {
    let ex = vm.exchange(&chat("sk", "gpt-4o-mini"), &openai_json(200, 100));
    assert_eq!(
        ex.client.status,
        200,
        "{}",
        String::from_utf8_lossy(&ex.client.body)
    );
}

#[test]
fn each_threshold_crossed_is_posted_once_with_its_limit_and_window() {
    let mut host = alerts_host(&format!("{ALERTS}, {OWNERS}"), 1, ok);
    spend_300(host.vm(0)); // 300 of 1,000 tokens
    assert!(events(&host).is_empty());
    spend_300(host.vm(0)); // 600: past 50%
    spend_300(host.vm(0)); // 900: past 80%
    spend_300(host.vm(0)); // 1,200: past 95%
    host.run_due();
    let posted = events(&host);
    let day_start = "2026-11-02T12:00:00Z";
    let day_end = "2026-11-03T12:00:00Z";
    let event = |threshold: f64, used: u64| {
        json!({"owner": "virtual_key", "id": "k", "limit": "tokens", "reset_duration": "1d",
               "threshold": threshold, "max": 1000, "used": used,
               "window_start": day_start, "window_end": day_end})
    };
    assert_eq!(
        posted,
        vec![event(0.5, 600), event(0.8, 900), event(0.95, 1200)]
    );
    let callout = &host.callouts()[0];
    assert_eq!(callout.header(":method"), Some("POST"));
    assert_eq!(callout.header(":path"), Some("/hooks/governance"));
    assert_eq!(callout.header("content-type"), Some("application/json"));
    assert_eq!(metric(&host, "threshold_crossed"), 3);
    let warned = host
        .vm(0)
        .logs()
        .iter()
        .filter(|l| l.message.contains("threshold crossed"))
        .count();
    assert_eq!(warned, 3);
    // More charges in the same window announce nothing again.
    host.vm(0)
        .exchange(&chat("sk", "gpt-4o-mini"), &openai_json(200, 100));
    host.run_due();
    assert_eq!(events(&host).len(), 3);
}

#[test]
fn a_new_window_announces_again() {
    let mut host = alerts_host(&format!("{ALERTS}, {OWNERS}"), 1, ok);
    spend_300(host.vm(0));
    spend_300(host.vm(0));
    host.run_due();
    assert_eq!(events(&host).len(), 1, "50% of the first day");
    host.clock().advance(Duration::from_secs(86_400));
    spend_300(host.vm(0));
    spend_300(host.vm(0));
    host.run_due();
    let posted = events(&host);
    assert_eq!(posted.len(), 2, "{posted:?}");
    assert_eq!(posted[1]["threshold"], json!(0.5));
    assert_eq!(posted[1]["window_start"], json!("2026-11-03T12:00:00Z"));
}

#[test]
fn budgets_are_announced_in_usd() {
    // $1 budget of team ml: 0.0001 USD a request would take 5,000 requests; a pricier
    // answer takes fewer: 1,000,000 output tokens at 6e-7 is $0.60.
    let mut host = alerts_host(
        r#""alerts": {"thresholds": [0.5], "cluster": "alerts"},
            "teams":[{"id":"ml","budgets":[{"max_limit":1,"reset_duration":"1d"}]}],
            "virtual_keys":[{"id":"k","value":"sk","team_id":"ml"}]"#,
        1,
        ok,
    );
    spend(&mut host, 0, 1_000_000);
    host.run_due();
    let posted = events(&host);
    assert_eq!(posted.len(), 1, "{posted:?}");
    assert_eq!(posted[0]["owner"], json!("team"));
    assert_eq!(posted[0]["id"], json!("ml"));
    assert_eq!(posted[0]["limit"], json!("budget"));
    assert_eq!(posted[0]["max"], json!(1.0));
    assert_eq!(posted[0]["used"], json!(0.6));
    assert_eq!(
        host.callouts()[0].header(":path"),
        Some("/"),
        "the default path"
    );
}

fn spend(host: &mut Host, prompt: u64, output: u64) {
    let ex = host
        .vm(0)
        .exchange(&chat("sk", "gpt-4o-mini"), &openai_json(prompt, output));
    assert_eq!(ex.client.status, 200);
}

#[test]
fn without_a_cluster_crossings_are_logged_and_counted_only() {
    let mut host = host(&config(&format!(
        r#""alerts": {{"thresholds": [0.5, 0.8]}}, {OWNERS}"#
    )));
    for _ in 0..3 {
        spend_300(host.vm(0));
    }
    host.run_due();
    assert!(host.callouts().is_empty());
    assert_eq!(metric(&host, "threshold_crossed"), 2);
}

#[test]
fn concurrent_charges_on_several_workers_announce_each_threshold_once() {
    const WORKERS: usize = 4;
    let mut host = alerts_host(&format!("{ALERTS}, {OWNERS}"), WORKERS, ok);
    let vms = host.take_vms();
    // 4 workers × 2 requests of 300 tokens: 2,400 tokens in all; the limit refuses
    // nothing here (each is admitted before the others are charged, or after).
    let (vms, statuses) = on_threads(vms, |_, vm| {
        (0..2)
            .map(|_| {
                vm.exchange(&chat("sk", "gpt-4o-mini"), &openai_json(200, 100))
                    .client
                    .status
            })
            .collect::<Vec<u32>>()
    });
    let admitted = statuses.iter().flatten().filter(|&&s| s == 200).count();
    assert!(admitted >= 4, "at least 1,200 tokens charged: {statuses:?}");
    let mut callouts = Vec::new();
    for mut vm in vms {
        vm.run_due();
        callouts.extend(vm.callouts().iter().cloned());
    }
    let mut thresholds: Vec<f64> = callouts
        .iter()
        .map(|c| {
            let event: Value = serde_json::from_slice(&c.body).expect("JSON");
            event["threshold"].as_f64().expect("a threshold")
        })
        .collect();
    thresholds.sort_by(f64::total_cmp);
    assert_eq!(thresholds, vec![0.5, 0.8, 0.95], "{callouts:?}");
}

#[test]
fn a_failed_post_is_retried_until_it_arrives() {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&calls);
    let mut host = alerts_host(&format!("{ALERTS}, {OWNERS}"), 1, move |_| {
        let status = if seen.fetch_add(1, Ordering::SeqCst) == 0 {
            503
        } else {
            200
        };
        CalloutAnswer::respond(CalloutResponse::status(status))
    });
    spend_300(host.vm(0));
    spend_300(host.vm(0)); // 50%
    host.run_due();
    assert_eq!(calls.load(Ordering::SeqCst), 1, "first post answered 503");
    for _ in 0..20 {
        host.advance(Duration::from_millis(500));
        host.vm(0).fire_due_ticks();
        host.run_due();
    }
    let posted = events(&host);
    assert_eq!(posted.len(), 2, "posted again after the 503: {posted:?}");
    assert_eq!(posted[0], posted[1]);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "and not again once delivered"
    );
    assert_eq!(metric(&host, "alerts_failed"), 0);
}
