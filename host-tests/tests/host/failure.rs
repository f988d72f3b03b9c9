//! The failure model: a trap fails the whole VM; 503 `wasm_fail_stream` or fail-open bypass.

use crate::common::{get, post, probe, run};
use host_tests::LogLevel;

#[test]
fn trap_answers_503_and_fails_the_vm_for_later_streams() {
    let mut host = probe("").build().expect("build");
    let ex = run(host.vm(0), &get("trap-req-headers"));
    assert_eq!(ex.client.status, 503);
    let reply = ex.client.local_reply.expect("local reply");
    assert_eq!(
        (reply.details.as_str(), reply.from_plugin),
        ("wasm_fail_stream", false)
    );
    assert_eq!(ex.upstream.headers, None);
    let vm = host.vm(0);
    assert!(vm.is_failed());
    assert!(vm
        .logs()
        .iter()
        .any(|l| l.level == LogLevel::Critical
            && l.message.contains("probe trap in request headers")));
    assert!(vm.logs().iter().any(|l| l
        .message
        .starts_with("Function: proxy_on_request_headers failed")));
    let before = vm.trace().len();
    let ex = run(vm, &get(""));
    assert_eq!(ex.client.status, 503);
    assert_eq!(vm.trace().len(), before, "no callback runs on a failed VM");
}

#[test]
fn sdk_panics_on_a_late_typed_header_read() {
    let mut host = probe("").build().expect("build");
    let ex = run(host.vm(0), &get("sdk-late-read"));
    assert!(host.vm(0).is_failed());
    assert_eq!(
        ex.client.local_reply.map(|r| r.details),
        Some("wasm_fail_stream".to_string())
    );
}

#[test]
fn fail_open_bypasses_the_filter() {
    let mut host = probe("").fail_open(true).build().expect("build");
    let ex = run(host.vm(0), &post("trap-req-body", "payload"));
    assert!(host.vm(0).is_failed());
    assert_eq!(ex.client.status, 200);
    assert_eq!(ex.upstream.body, b"payload");
    let ex = run(host.vm(0), &get("resp-add=x-a:1"));
    assert_eq!(ex.client.status, 200);
    assert!(host.vm(0).stream(ex.stream).bypassed);
    assert_eq!(
        ex.client
            .headers
            .and_then(|h| h.get("x-a").map(str::to_string)),
        None
    );
}

#[test]
fn a_failed_worker_does_not_affect_the_others() {
    let mut host = probe("").workers(2).build().expect("build");
    run(host.vm(0), &get("trap-resp-headers"));
    assert!(host.vm(0).is_failed());
    let ex = run(host.vm(1), &get(""));
    assert_eq!(ex.client.status, 200);
    assert!(!host.vm(1).is_failed());
}

#[test]
fn trap_in_tick_fails_the_vm_and_stops_ticks() {
    let mut host = probe("tick=5 trap-tick").build().expect("build");
    host.clock().advance(std::time::Duration::from_millis(5));
    assert_eq!(host.vm(0).fire_due_ticks(), 1);
    assert!(host.vm(0).is_failed());
    host.clock().advance(std::time::Duration::from_millis(5));
    assert_eq!(host.vm(0).fire_due_ticks(), 0);
}
