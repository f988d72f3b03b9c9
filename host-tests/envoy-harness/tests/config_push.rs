//! A configuration push in a real Envoy while traffic flows: the listener (and the plugin
//! configuration in it) is served from a watched file; the file is replaced with a changed
//! configuration (a raised `request_max_limit`, a new key) while a client thread keeps
//! sending. Live usage survives (the count carries over) and the change takes effect.

use envoy_harness::runner::Reload;
use envoy_harness::{Client, Request, Response, Stack};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const OLD_KEY: &str = "sk-push-old-0001";
const NEW_KEY: &str = "sk-push-new-0002";

fn config(request_max: u64, with_new_key: bool) -> String {
    let mut keys = vec![json!({
        "id": "vk-old", "value": OLD_KEY,
        "rate_limit": {"request_max_limit": request_max, "request_reset_duration": "1h"}
    })];
    if with_new_key {
        keys.push(json!({"id": "vk-new", "value": NEW_KEY}));
    }
    json!({
        "namespace": "push",
        "pricing": {"gpt-4o-mini": {"input_cost_per_token": 1.5e-7, "output_cost_per_token": 6e-7}},
        "virtual_keys": keys
    })
    .to_string()
}

fn chat() -> Value {
    json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
}

fn send(s: &Stack, key: &str) -> Response {
    send_to(s.envoy.listen_addr(), key)
}

fn send_to(addr: SocketAddr, key: &str) -> Response {
    Client::new(addr)
        .send(
            &Request::post("/v1/chat/completions")
                .header("x-bf-vk", key)
                .json(&chat()),
        )
        .expect("request through Envoy")
}

fn remaining(r: &Response) -> u64 {
    r.header("x-ratelimit-remaining-requests")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no x-ratelimit-remaining-requests: {:?}", r.headers))
}

#[test]
fn a_pushed_configuration_keeps_live_usage_and_takes_effect_under_traffic() {
    let mut s = match Stack::start_with(&config(20, false), |c| c.reloadable().concurrency(2)) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    };
    for i in 0..4 {
        let r = send(&s, OLD_KEY);
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(remaining(&r), 20 - i - 1);
    }
    assert_eq!(
        send(&s, NEW_KEY).status,
        401,
        "vk-new is unknown before the push"
    );

    // Traffic during the push: one request every 40 ms with the old key, on fresh
    // connections, until told to stop. Every one must be answered 200 (there is room for
    // 16 more under either configuration), none dropped or failed.
    let stop = AtomicBool::new(false);
    let addr = s.envoy.listen_addr();
    let during: Vec<(u16, u64)> = std::thread::scope(|scope| {
        let stop = &stop;
        let sender = scope.spawn(move || {
            let mut seen = Vec::new();
            while !stop.load(Ordering::SeqCst) && seen.len() < 12 {
                let r = send_to(addr, OLD_KEY);
                seen.push((r.status, remaining(&r)));
                std::thread::sleep(Duration::from_millis(40));
            }
            seen
        });
        std::thread::sleep(Duration::from_millis(100));
        let verdict = s.envoy.reload_plugin_config(&config(40, true));
        std::thread::sleep(Duration::from_millis(150));
        stop.store(true, Ordering::SeqCst);
        assert_eq!(verdict.unwrap(), Reload::Accepted);
        sender.join().expect("sender thread")
    });
    assert!(
        during.len() >= 3,
        "too little traffic during the push: {during:?}"
    );
    assert!(
        during.iter().all(|(status, _)| *status == 200),
        "a request failed during the push: {during:?}"
    );
    // The traffic straddled the push: answers counted against the old maximum (20 - n) and
    // against the new one (40 - n), with n always increasing, none reset.
    assert!(
        during.iter().any(|(_, r)| *r < 20) && during.iter().any(|(_, r)| *r >= 20),
        "the sender did not see both configurations: {during:?}"
    );
    for (i, (_, r)) in during.iter().enumerate() {
        let used = 4 + i as u64 + 1;
        assert!(
            *r == 20 - used || *r == 40 - used,
            "request {i} during the push: remaining {r}, used {used}: {during:?}"
        );
    }
    let admitted_so_far = 4 + during.len() as u64;

    // The new configuration is live: the new key is admitted...
    let r = send(&s, NEW_KEY);
    assert_eq!(r.status, 200, "{}", r.text());
    // ...and the old key's count carried over under the raised maximum: 40 - used.
    let r = send(&s, OLD_KEY);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-ratelimit-limit-requests"), Some("40"));
    assert_eq!(
        remaining(&r),
        40 - admitted_so_far - 1,
        "usage did not survive the push (during: {during:?})"
    );
    // The raised maximum admits more than the old 20, and exactly 40 in all.
    let mut admitted = admitted_so_far + 1;
    loop {
        let r = send(&s, OLD_KEY);
        if r.status != 200 {
            assert_eq!(r.status, 429, "{}", r.text());
            assert_eq!(r.error_type().as_deref(), Some("request_limited"));
            break;
        }
        admitted += 1;
        assert!(admitted <= 40, "more than 40 admitted");
    }
    assert_eq!(admitted, 40);
    // The usage endpoint is off in this configuration; the counter value is the proof.
    assert_eq!(
        s.envoy
            .counter("listener_manager.lds.update_success")
            .unwrap()
            .map(|n| n >= 2),
        Some(true)
    );
    s.envoy.stop();
}
