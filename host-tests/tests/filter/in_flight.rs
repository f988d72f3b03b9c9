//! `rate_limit.max_in_flight` through the real module (docs/clients.md, concurrency): the
//! cap is exact across worker VMs and CAS races, a slot is given back exactly once however
//! the exchange ends, and a slot a crashed VM held is reclaimed after `in_flight_timeout`.

use std::sync::{Arc, Barrier, Mutex};
use std::time::Duration;

use host_tests::{Headers, Host, Request, Response, StreamId, Vm};
use serde_json::Value;

use crate::common::on_threads;
use crate::support::*;

fn key_config(rate_limit: &str) -> String {
    config(&format!(
        r#""virtual_keys": [{{"id": "k", "value": "sk", "rate_limit": {{{rate_limit}}}}}]"#
    ))
}

/// Request headers and the whole body of a chat request with key `secret` on `vm`; the
/// request then waits for its response (or was answered locally).
fn send_with(host: &mut Host, vm: usize, secret: &str, model: &str) -> StreamId {
    let vm = host.vm(vm);
    let s = vm.open_stream();
    let request = chat(secret, model);
    vm.send_request_headers(s, &request.headers, false);
    vm.send_request_body(s, &request.body, true);
    s
}

fn send(host: &mut Host, vm: usize) -> StreamId {
    send_with(host, vm, "sk", "gpt-4o-mini")
}

/// Status the client got so far (0: none, the request is upstream).
fn status(host: &mut Host, vm: usize, s: StreamId) -> u32 {
    host.vm(vm).stream(s).client.status
}

fn response_headers() -> Headers {
    Headers::from_pairs([(":status", "200"), ("content-type", "application/json")])
}

fn usage_body() -> Vec<u8> {
    br#"{"id":"c","object":"chat.completion","model":"gpt-4o-mini","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2}}"#.to_vec()
}

fn respond(host: &mut Host, vm: usize, s: StreamId) {
    let vm = host.vm(vm);
    vm.send_response_headers(s, &response_headers(), false);
    vm.send_response_body(s, &usage_body(), true);
    assert!(vm.stream(s).finished);
}

/// The usage endpoint's `in_flight` entry of owner `id` (read with the admin key).
fn in_flight_entry(host: &mut Host, id: &str) -> Value {
    in_flight_entry_on(host.vm(0), id)
}

fn in_flight_entry_on(vm: &mut Vm, id: &str) -> Value {
    let ex = vm.exchange(
        &Request::get("/governance/usage").header("authorization", &format!("Bearer {ADMIN_KEY}")),
        &Response::status(500),
    );
    assert_eq!(ex.client.status, 200);
    body_json(&ex)["in_flight"]
        .as_array()
        .and_then(|entries| entries.iter().find(|e| e["id"] == id).cloned())
        .unwrap_or_else(|| panic!("no in_flight entry for {id}"))
}

fn in_flight(host: &mut Host, id: &str) -> u64 {
    in_flight_on(host.vm(0), id)
}

fn in_flight_on(vm: &mut Vm, id: &str) -> u64 {
    in_flight_entry_on(vm, id)["used"]
        .as_u64()
        .unwrap_or(u64::MAX)
}

#[test]
fn the_cap_refuses_with_429_concurrency_limited_and_no_retry_after() {
    let mut host = host(&key_config(r#""max_in_flight": 2"#));
    let a = send(&mut host, 0);
    let b = send(&mut host, 0);
    assert_eq!((status(&mut host, 0, a), status(&mut host, 0, b)), (0, 0));
    let ex = host
        .vm(0)
        .exchange(&chat("sk", "gpt-4o-mini"), &openai_json(1, 1));
    assert_eq!(ex.client.status, 429);
    assert_eq!(error_type(&ex), "concurrency_limited");
    assert_eq!(
        header(&ex, "retry-after"),
        None,
        "nobody knows when a slot frees"
    );
    let message = body_json(&ex)["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        message.contains("virtual key 'k'") && message.contains("2 of 2 requests in flight"),
        "{message}"
    );
    assert_eq!(metric(&host, "rejected.concurrency_limited"), 1);
    let entry = in_flight_entry(&mut host, "k");
    assert_eq!(
        (
            entry["limit"].as_u64(),
            entry["used"].as_u64(),
            entry["remaining"].as_u64()
        ),
        (Some(2), Some(2), Some(0))
    );
    assert_eq!(entry["in_flight_timeout"], "10m");
    respond(&mut host, 0, a);
    let c = send(&mut host, 0);
    assert_eq!(
        status(&mut host, 0, c),
        0,
        "the slot of the finished one is free"
    );
    respond(&mut host, 0, b);
    respond(&mut host, 0, c);
    assert_eq!(in_flight(&mut host, "k"), 0);
}

/// Ends an admitted exchange one way; the endings every exchange can meet.
#[derive(Debug, Clone, Copy)]
enum Ending {
    ResponseEnd,
    ResponseTrailers,
    ClientResetBeforeResponse,
    ClientResetMidResponse,
    UpstreamResetBeforeResponse,
    UpstreamResetMidResponse,
    HeadersOnlyResponse,
}

fn end(host: &mut Host, s: StreamId, ending: Ending) {
    let vm = host.vm(0);
    match ending {
        Ending::ResponseEnd => {
            vm.send_response_headers(s, &response_headers(), false);
            vm.send_response_body(s, &usage_body(), true);
        }
        Ending::ResponseTrailers => {
            vm.send_response_headers(s, &response_headers(), false);
            vm.send_response_body(s, &usage_body(), false);
            vm.send_response_trailers(s, &Headers::from_pairs([("grpc-status", "0")]));
        }
        Ending::ClientResetBeforeResponse => vm.reset_stream(s),
        Ending::ClientResetMidResponse => {
            vm.send_response_headers(s, &response_headers(), false);
            vm.send_response_body(s, b"{\"id\":", false);
            vm.reset_stream(s);
        }
        Ending::UpstreamResetBeforeResponse => vm.upstream_reset(s),
        Ending::UpstreamResetMidResponse => {
            vm.send_response_headers(s, &response_headers(), false);
            vm.send_response_body(s, b"{\"id\":", false);
            vm.upstream_reset(s);
        }
        Ending::HeadersOnlyResponse => {
            let headers = Headers::from_pairs([(":status", "204")]);
            vm.send_response_headers(s, &headers, true);
        }
    }
    assert!(vm.stream(s).finished, "{ending:?} ends the stream");
}

#[test]
fn the_slot_is_given_back_exactly_once_however_the_exchange_ends() {
    for ending in [
        Ending::ResponseEnd,
        Ending::ResponseTrailers,
        Ending::ClientResetBeforeResponse,
        Ending::ClientResetMidResponse,
        Ending::UpstreamResetBeforeResponse,
        Ending::UpstreamResetMidResponse,
        Ending::HeadersOnlyResponse,
    ] {
        let mut host = host(&key_config(r#""max_in_flight": 2"#));
        // `held` stays in flight across the other's whole life: a second give-back of the
        // other's slot would take `held`'s, and the count would read 0.
        let held = send(&mut host, 0);
        let s = send(&mut host, 0);
        assert_eq!(status(&mut host, 0, s), 0);
        assert_eq!(in_flight(&mut host, "k"), 2, "{ending:?}");
        end(&mut host, s, ending);
        assert_eq!(in_flight(&mut host, "k"), 1, "{ending:?}: given back once");
        let next = send(&mut host, 0);
        assert_eq!(
            status(&mut host, 0, next),
            0,
            "{ending:?}: the slot is free"
        );
        let refused = send(&mut host, 0);
        assert_eq!(
            status(&mut host, 0, refused),
            429,
            "{ending:?}: the cap still holds"
        );
        respond(&mut host, 0, held);
        respond(&mut host, 0, next);
        assert_eq!(in_flight(&mut host, "k"), 0, "{ending:?}");
    }
}

#[test]
fn a_refusal_after_the_slot_was_taken_gives_it_back() {
    // The key's cap is taken at request headers; the body names a model the key may not
    // use, which is refused (403) after the slot was taken.
    let mut host = host(&config(
        r#""virtual_keys": [{"id": "k", "value": "sk", "allowed_models": ["gpt-4o-mini"],
            "rate_limit": {"max_in_flight": 1}}]"#,
    ));
    let refused = send_with(&mut host, 0, "sk", "gpt-4.1");
    assert_eq!(status(&mut host, 0, refused), 403);
    assert!(host.vm(0).stream(refused).finished);
    assert_eq!(in_flight(&mut host, "k"), 0);
    let admitted = send(&mut host, 0);
    assert_eq!(status(&mut host, 0, admitted), 0);
    respond(&mut host, 0, admitted);
    assert_eq!(in_flight(&mut host, "k"), 0);
}

#[test]
fn a_refusal_by_a_later_level_gives_back_the_earlier_levels_slots() {
    // Key k2's own cap has room, its team's cap (shared with k1) is full.
    let mut host = host(&config(
        r#""teams": [{"id": "t", "rate_limit": {"max_in_flight": 1}}],
        "virtual_keys": [
            {"id": "k1", "value": "sk1", "team_id": "t"},
            {"id": "k2", "value": "sk2", "team_id": "t", "rate_limit": {"max_in_flight": 5}}]"#,
    ));
    let first = send_with(&mut host, 0, "sk1", "gpt-4o-mini");
    assert_eq!(status(&mut host, 0, first), 0);
    let ex = host
        .vm(0)
        .exchange(&chat("sk2", "gpt-4o-mini"), &openai_json(1, 1));
    assert_eq!(ex.client.status, 429);
    let message = body_json(&ex)["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(message.starts_with("team 't'"), "{message}");
    assert_eq!(in_flight(&mut host, "k2"), 0, "the key's slot went back");
    assert_eq!(in_flight(&mut host, "t"), 1);
    respond(&mut host, 0, first);
    assert_eq!(in_flight(&mut host, "t"), 0);
}

#[test]
fn customer_and_provider_config_caps_count_too() {
    let mut host = host(&config(
        r#""customers": [{"id": "c", "rate_limit": {"max_in_flight": 2}}],
        "virtual_keys": [{"id": "k", "value": "sk", "customer_id": "c",
            "provider_configs": [{"provider": "openai", "rate_limit": {"max_in_flight": 1}}]}]"#,
    ));
    let first = send_with(&mut host, 0, "sk", "openai/gpt-4o-mini");
    assert_eq!(status(&mut host, 0, first), 0);
    assert_eq!(in_flight(&mut host, "k/openai"), 1);
    // The provider config's cap is checked once the body named the model: refused there,
    // the customer's slot taken at headers goes back.
    let second = send_with(&mut host, 0, "sk", "openai/gpt-4o-mini");
    assert_eq!(status(&mut host, 0, second), 429);
    assert_eq!(in_flight(&mut host, "c"), 1);
    respond(&mut host, 0, first);
    assert_eq!(
        (in_flight(&mut host, "c"), in_flight(&mut host, "k/openai")),
        (0, 0)
    );
}

#[test]
fn the_cap_is_exact_across_worker_threads() {
    // 4 VMs on their own threads each open 25 requests and hold them: exactly the cap is
    // admitted; once every admitted one has ended, nothing is left in flight.
    let mut host = host_with(&key_config(r#""max_in_flight": 30"#), 4);
    // Nobody ends a request before every VM has tried all of its own.
    let all_sent = Arc::new(Barrier::new(4));
    let (vms, results) = on_threads(host.take_vms(), move |_, vm| {
        let mut admitted = Vec::new();
        let mut refused = 0;
        for _ in 0..25 {
            let s = vm.open_stream();
            let request = chat("sk", "gpt-4o-mini");
            vm.send_request_headers(s, &request.headers, false);
            vm.send_request_body(s, &request.body, true);
            match vm.stream(s).client.status {
                0 => admitted.push(s),
                429 => refused += 1,
                other => panic!("unexpected status {other}"),
            }
        }
        all_sent.wait();
        for s in &admitted {
            vm.send_response_headers(*s, &response_headers(), false);
            vm.send_response_body(*s, &usage_body(), true);
        }
        (admitted.len(), refused)
    });
    let admitted: usize = results.iter().map(|(a, _)| a).sum();
    let refused: usize = results.iter().map(|(_, r)| r).sum();
    assert_eq!((admitted, refused), (30, 70));
    let mut vms = vms;
    assert_eq!(in_flight_on(&mut vms[0], "k"), 0);
}

#[test]
fn a_slot_taken_by_another_vm_between_get_and_set_is_not_lost() {
    // VM A's acquire reads the buckets; before it writes, VM B takes a slot. A's write
    // loses the CAS race, re-reads and finds the cap (2) reached by B and the request
    // held before: A is refused, and the count is exact.
    let mut host = host_with(&key_config(r#""max_in_flight": 2"#), 2);
    let first = send(&mut host, 0);
    assert_eq!(status(&mut host, 0, first), 0);
    let conflicts_before = metric(&host, "cas_conflicts");
    let mut vms = host.take_vms();
    let b = Arc::new(Mutex::new(vms.pop().expect("vm b")));
    let mut a = vms.pop().expect("vm a");
    let b_stream = Arc::new(Mutex::new(None));
    {
        let (b, out) = (Arc::clone(&b), Arc::clone(&b_stream));
        // The key's only counter is the in-flight one: its first get is the acquire's.
        a.after_nth_shared_get(1, move || {
            let mut b = b.lock().expect("vm b");
            let s = b.open_stream();
            let request = chat("sk", "gpt-4o-mini");
            b.send_request_headers(s, &request.headers, false);
            b.send_request_body(s, &request.body, true);
            *out.lock().expect("stream") = Some((s, b.stream(s).client.status));
        });
    }
    let s = a.open_stream();
    let request = chat("sk", "gpt-4o-mini");
    a.send_request_headers(s, &request.headers, false);
    a.send_request_body(s, &request.body, true);
    a.clear_shared_data_hook();
    let (b_s, b_status) = b_stream.lock().expect("stream").expect("B ran");
    assert_eq!(b_status, 0, "B took the last slot");
    assert_eq!(a.stream(s).client.status, 429, "A found the cap reached");
    let mut b = Arc::try_unwrap(b)
        .ok()
        .expect("one owner")
        .into_inner()
        .expect("vm b");
    assert!(metric(&host, "cas_conflicts") > conflicts_before);
    assert_eq!(in_flight_on(&mut a, "k"), 2);
    b.send_response_headers(b_s, &response_headers(), false);
    b.send_response_body(b_s, &usage_body(), true);
    a.send_response_headers(first, &response_headers(), false);
    a.send_response_body(first, &usage_body(), true);
    assert_eq!(in_flight_on(&mut a, "k"), 0);
}

#[test]
fn a_slot_held_by_a_vm_that_crashed_is_reclaimed_after_the_timeout() {
    // Width = 80 s / 8 = 10 s; T0 is on a bucket boundary, so the slot taken at T0 + 3 s
    // counts in the bucket [T0, T0 + 10 s) and is reclaimed from T0 + 90 s on.
    let mut host = host_with(
        &key_config(r#""max_in_flight": 1, "in_flight_timeout": "80s""#),
        2,
    );
    host.clock().advance(Duration::from_secs(3));
    let s = send(&mut host, 1);
    assert_eq!(status(&mut host, 1, s), 0);
    host.vm(1).trap_next_callback();
    host.vm(1)
        .send_response_headers(s, &response_headers(), false);
    assert!(host.vm(1).is_failed(), "the VM died holding the slot");
    let blocked = send(&mut host, 0);
    assert_eq!(status(&mut host, 0, blocked), 429);
    // Just before the timeout, and at the last instant of its bucket's grace: still held.
    host.clock()
        .advance(Duration::from_secs(80) - Duration::from_nanos(1));
    let held = send(&mut host, 0);
    assert_eq!(status(&mut host, 0, held), 429, "never before the timeout");
    host.clock().advance(Duration::from_secs(7));
    let still = send(&mut host, 0);
    assert_eq!(
        status(&mut host, 0, still),
        429,
        "within the bucket's width"
    );
    host.clock().advance(Duration::from_nanos(1));
    let after = send(&mut host, 0);
    assert_eq!(status(&mut host, 0, after), 0, "reclaimed by another VM");
    respond(&mut host, 0, after);
    assert_eq!(in_flight(&mut host, "k"), 0);
}

#[test]
fn shadow_mode_counts_but_never_refuses() {
    let mut host = host(&config(
        r#""mode": "shadow",
        "virtual_keys": [{"id": "k", "value": "sk", "rate_limit": {"max_in_flight": 1}}]"#,
    ));
    let a = send(&mut host, 0);
    let b = send(&mut host, 0);
    assert_eq!((status(&mut host, 0, a), status(&mut host, 0, b)), (0, 0));
    assert_eq!(metric(&host, "shadow_rejected"), 1);
    respond(&mut host, 0, a);
    respond(&mut host, 0, b);
    assert_eq!(
        in_flight(&mut host, "k"),
        0,
        "only the slot taken went back"
    );
}

#[test]
fn fleet_mode_keeps_the_cap_per_envoy_and_a_limitador_refusal_gives_the_slot_back() {
    let config = crate::fleet::fleet_config(
        "closed",
        r#""virtual_keys":[{"id":"k","value":"sk",
            "rate_limit":{"request_max_limit":2,"request_reset_duration":"1m","max_in_flight":1}}]"#,
    );
    let (mut host, limitador) = crate::fleet::fleet_host(&config, 2);
    let held = send(&mut host, 0);
    assert_eq!(status(&mut host, 0, held), 0, "admitted by Limitador");
    // The cap is this Envoy's own: refused on another worker without asking Limitador.
    let asked = limitador.lock().expect("fake").log.len();
    let ex = host
        .vm(1)
        .exchange(&chat("sk", "gpt-4o-mini"), &openai_json(1, 1));
    assert_eq!(
        (ex.client.status, error_type(&ex).as_str()),
        (429, "concurrency_limited")
    );
    assert_eq!(limitador.lock().expect("fake").log.len(), asked);
    respond(&mut host, 0, held);
    let second = host
        .vm(1)
        .exchange(&chat("sk", "gpt-4o-mini"), &openai_json(1, 1));
    assert_eq!(second.client.status, 200);
    // The third takes the slot, then Limitador's request limit refuses it: the slot goes
    // back with the refusal, so once the minute is over the next one is admitted.
    let third = host
        .vm(0)
        .exchange(&chat("sk", "gpt-4o-mini"), &openai_json(1, 1));
    assert_eq!(
        (third.client.status, error_type(&third).as_str()),
        (429, "request_limited")
    );
    host.advance(Duration::from_secs(61));
    let fourth = host
        .vm(1)
        .exchange(&chat("sk", "gpt-4o-mini"), &openai_json(1, 1));
    assert_eq!(
        fourth.client.status,
        200,
        "{}",
        String::from_utf8_lossy(&fourth.client.body)
    );
}
