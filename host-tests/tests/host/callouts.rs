//! HTTP callouts and queue notifications through the SDK probe guest, as a filter uses them:
//! what is recorded, how answers (by hand, by a responder, late, never, reset) reach the
//! stream, and how the clock and the exchange drive them.

use crate::common::{calls, post, probe};
use host_tests::{
    Callout, CalloutAnswer, CalloutResponse, Headers, Host, HostBuilder, Response, StreamId, Vm,
};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn ok_answer(body: &str) -> CalloutAnswer {
    CalloutAnswer::respond(CalloutResponse::json(200, body))
}

/// The probe with `cluster` answered by `responder`.
fn host_with(
    config: &str,
    responder: impl FnMut(&Callout) -> CalloutAnswer + Send + 'static,
) -> Host {
    probe(config)
        .cluster_responding("limitador", responder)
        .build()
        .expect("build")
}

/// Sends the request headers of a POST with `cmds`, then "hello" and the end of stream.
fn send_request(vm: &mut Vm, cmds: &str) -> StreamId {
    let s = vm.open_stream();
    vm.send_request_headers(s, &post(cmds, "hello").headers, false);
    vm.send_request_body(s, b"hello", false);
    vm.send_request_body(s, b"", true);
    s
}

fn has_log(vm: &Vm, needle: &str) -> bool {
    vm.logs().iter().any(|l| l.message.contains(needle))
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn tokens_count_by_four_per_vm_and_every_call_is_recorded() {
    let mut host = probe("")
        .cluster("limitador")
        .workers(2)
        .build()
        .expect("build");
    let now = host.clock().now_nanos();
    let s = send_request(
        host.vm(0),
        "dispatch=limitador,dispatch=limitador,timeout=250",
    );
    send_request(host.vm(1), "dispatch=limitador");
    let tokens = |vm: &Vm| vm.callouts().iter().map(|c| c.token).collect::<Vec<_>>();
    assert_eq!(tokens(host.vm(0)), [4, 8]);
    assert_eq!(tokens(host.vm(1)), [4]);
    let vm = host.vm(0);
    let ctx = vm.stream(s).ctx.expect("ctx");
    let call = vm.callouts().first().cloned().expect("a call");
    assert_eq!(call.vm, "worker 0");
    assert_eq!((call.context, call.root), (ctx, 1));
    assert_eq!(call.cluster, "limitador");
    assert_eq!(
        call.headers,
        Headers::from_pairs([
            (":method", "POST"),
            (":path", "/check"),
            (":authority", "limitador"),
            ("content-type", "application/json"),
            ("content-length", "9"),
        ])
    );
    assert_eq!(call.body_text(), format!("{{\"ctx\":{ctx}}}"));
    assert_eq!(call.trailers, Headers::from_pairs([("x-trailer", "t")]));
    assert_eq!(call.timeout_ms, 250);
    assert_eq!(call.dispatched_at_nanos, now);
    assert_eq!(vm.pending_callouts().len(), 2);
    assert!(vm.stream(s).request_stopped);
    assert_eq!(vm.stream(s).upstream.headers, None);
}

#[test]
fn calls_envoy_refuses_are_not_dispatched() {
    let mut host = probe("")
        .cluster("limitador")
        .cluster_without_endpoints("empty")
        .build()
        .expect("build");
    let vm = host.vm(0);
    let ex = vm.exchange(
        &post("dispatch=nope,dispatch=empty", "hello"),
        &Response::ok("{}"),
    );
    assert!(ex.has_log("dispatch nope -> Err(BadArgument)"));
    assert!(ex.has_log("dispatch empty -> Err(InternalFailure)"));
    assert_eq!(
        ex.client.status, 200,
        "nothing pending: the request went on"
    );
    let ex = vm.exchange(
        &post("dispatch=limitador,dispatch-without=:path", "hello"),
        &Response::ok("{}"),
    );
    assert!(ex.has_log("dispatch limitador -> Err(BadArgument)"));
    assert!(vm.callouts().is_empty());
    // A call to a cluster without endpoints used a token, as in Envoy.
    send_request(vm, "dispatch=limitador");
    assert_eq!(vm.callouts().first().map(|c| c.token), Some(8));
}

#[test]
fn a_hand_given_answer_resumes_the_request_with_its_held_body() {
    let mut host = probe("").cluster("limitador").build().expect("build");
    let vm = host.vm(0);
    let s = send_request(vm, "dispatch=limitador");
    let ctx = vm.stream(s).ctx.expect("ctx");
    assert!(!calls(vm, ctx)
        .iter()
        .any(|c| c.starts_with("on_request_body")));
    assert_eq!(vm.pending_callouts().len(), 1);
    vm.answer_callout(4, ok_answer("{\"ok\":true}"));
    assert!(has_log(
        vm,
        "answer token=4 status=200 headers=4 body={\"ok\":true} trailers=0:[] get_status=0:"
    ));
    // Delivered to the root context, then the stream resumed and got its held body at once.
    assert!(calls(vm, 1).contains(&"on_http_call_response(4,4,11,0)".to_string()));
    assert!(calls(vm, ctx).contains(&"on_request_body(5,1)".to_string()));
    let view = vm.stream(s);
    assert_eq!(view.upstream.body, b"hello");
    assert!(view.upstream.complete);
    assert!(vm.pending_callouts().is_empty());
}

#[test]
fn a_late_answer_arrives_when_the_clock_reaches_it() {
    let mut host = host_with("", |_| ok_answer("{}").after(ms(300)));
    let s = send_request(host.vm(0), "dispatch=limitador");
    host.clock().advance(ms(299));
    assert_eq!(host.vm(0).run_due(), 0);
    assert!(host.vm(0).stream(s).request_stopped);
    assert_eq!(host.advance(ms(1)), 1);
    assert!(host.vm(0).stream(s).upstream.complete);
}

#[test]
fn a_timeout_shorter_than_the_answer_wins_with_envoys_504() {
    let mut host = host_with("", |_| ok_answer("{}").after(ms(2000)));
    let s = send_request(host.vm(0), "dispatch=limitador,timeout=500");
    assert_eq!(host.advance(ms(500)), 1);
    assert!(has_log(
        host.vm(0),
        "answer token=4 status=504 headers=3 body=upstream request timeout trailers=0:[]"
    ));
    assert!(host.vm(0).stream(s).upstream.complete);
    assert_eq!(
        host.advance(ms(2000)),
        0,
        "the late answer is gone with the call"
    );
}

#[test]
fn an_answer_that_never_comes_without_a_timeout_waits_forever() {
    let mut host = host_with("", |_| CalloutAnswer::Never);
    let s = send_request(host.vm(0), "dispatch=limitador,timeout=0");
    assert_eq!(host.advance(Duration::from_secs(3600)), 0);
    assert!(host.vm(0).stream(s).request_stopped);
    let ex = host.vm(0).exchange(
        &post("dispatch=limitador,timeout=0", "x"),
        &Response::ok("{}"),
    );
    assert!(ex.stalled);
}

#[test]
fn a_reset_shows_no_answer_and_status_11_which_stays() {
    let mut answers = vec![CalloutAnswer::Reset, ok_answer("{}")].into_iter();
    let mut host = host_with("", move |_| answers.next().unwrap_or(CalloutAnswer::Never));
    let vm = host.vm(0);
    let s = send_request(vm, "dispatch=limitador");
    assert!(has_log(vm, "answer token=4 failed get_status=11:reset"));
    assert!(vm.stream(s).upstream.complete, "the probe resumes anyway");
    send_request(vm, "dispatch=limitador");
    assert!(has_log(
        vm,
        "answer token=8 status=200 headers=4 body={} trailers=0:[] get_status=11:"
    ));
}

#[test]
fn the_answer_is_unreadable_once_its_callback_returned() {
    let mut host = host_with("", |_| ok_answer("{}"));
    let ex = host.vm(0).exchange(
        &post("dispatch=limitador,late-callout-read", "hello"),
        &Response::ok("{}"),
    );
    assert!(ex.has_log("late-callout-read status=2"));
}

#[test]
fn the_request_waits_for_every_answer() {
    let mut n = 0;
    let mut host = host_with("", move |_| {
        n += 1;
        ok_answer("{}").after(ms(if n == 1 { 0 } else { 100 }))
    });
    let s = send_request(host.vm(0), "dispatch=limitador,dispatch=limitador");
    assert!(has_log(host.vm(0), "answer token=4 status=200"));
    assert!(host.vm(0).stream(s).request_stopped);
    assert_eq!(host.advance(ms(100)), 1);
    assert!(has_log(host.vm(0), "answer token=8 status=200"));
    assert!(host.vm(0).stream(s).upstream.complete);
}

#[test]
fn a_local_reply_from_the_answer_runs_through_the_response_callbacks() {
    let mut host = host_with("", |_| {
        CalloutAnswer::respond(CalloutResponse::json(429, "{\"limited\":true}"))
    });
    let vm = host.vm(0);
    let ex = vm.exchange(
        &post("dispatch=limitador,on-answer=reply", "hello"),
        &Response::ok("{}"),
    );
    assert_eq!(ex.client.status, 429);
    assert_eq!(ex.client.body, b"{\"limited\":true}");
    assert_eq!(
        ex.client.headers.as_ref().and_then(|h| h.get("x-from")),
        Some("callout")
    );
    assert_eq!(ex.upstream.headers, None, "the request never went upstream");
    let ctx = vm.stream(ex.stream).ctx.expect("ctx");
    let trace = calls(vm, ctx);
    assert!(
        trace.contains(&"on_response_headers(4,0)".to_string()),
        "{trace:?}"
    );
    assert!(
        trace.contains(&"on_response_body(16,1)".to_string()),
        "{trace:?}"
    );
}

#[test]
fn the_end_of_stream_frame_waits_for_the_answer() {
    let mut host = probe("").cluster("limitador").build().expect("build");
    let vm = host.vm(0);
    let s = send_request(vm, "dispatch=limitador,dispatch-at-last-body");
    let view = vm.stream(s);
    assert_eq!(view.upstream.body, b"hello", "the bytes passed");
    assert!(!view.upstream.complete, "the end is held");
    assert!(view.request_stopped);
    vm.answer_callout(4, ok_answer("{}"));
    assert!(vm.stream(s).upstream.complete);
}

#[test]
fn an_exchange_waits_for_late_answers_on_the_host_clock() {
    let mut host = host_with("", |_| ok_answer("{}").after(ms(250)));
    let before = host.clock().monotonic_nanos();
    let ex = host
        .vm(0)
        .exchange(&post("dispatch=limitador", "hello"), &Response::ok("{}"));
    assert!(!ex.stalled);
    assert_eq!(ex.client.status, 200);
    assert_eq!(ex.upstream.body, b"hello");
    assert_eq!(host.clock().monotonic_nanos() - before, 250_000_000);
}

#[test]
fn responders_can_change_while_the_host_runs() {
    let mut host = host_with("", |_| ok_answer("{}"));
    host.clusters()
        .set_responder("limitador", |_| CalloutAnswer::ConnectionRefused);
    let ex = host
        .vm(0)
        .exchange(&post("dispatch=limitador", "x"), &Response::ok("{}"));
    assert!(ex.has_log("answer token=4 status=503"));
    host.clusters().clear_responder("limitador");
    let vm = host.vm(0);
    let ex = vm.exchange(
        &post("dispatch=limitador,timeout=0", "x"),
        &Response::ok("{}"),
    );
    assert!(
        ex.stalled,
        "no responder: the call waits for a hand-given answer"
    );
    assert_eq!(vm.pending_callouts().len(), 1);
    // With a timeout, the wait ends with Envoy's 504 (the exchange moves the clock to it).
    let ex = vm.exchange(
        &post("dispatch=limitador,timeout=700", "x"),
        &Response::ok("{}"),
    );
    assert!(!ex.stalled);
    assert!(ex.has_log("answer token=12 status=504"));
}

#[test]
fn charges_queued_from_on_log_reach_the_last_registrant_and_leave_by_its_callout() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let mut host = probe("queue=charges charge-to=limitador")
        .workers(2)
        .cluster_responding("limitador", move |c| {
            record.lock().unwrap().push(c.clone());
            ok_answer("{}")
        })
        .build()
        .expect("build");
    let ex = host
        .vm(0)
        .exchange(&post("enqueue=charges", "hello"), &Response::ok("{}"));
    assert!(ex.has_log("enqueue charges id=Some(1) -> Some(Ok(()))"));
    assert!(!ex.has_log("queue-ready"), "worker 1 registered last");
    assert_eq!(
        host.run_due(),
        2,
        "the notification, then the root's callout answer"
    );
    let vm = host.vm(1);
    assert!(has_log(vm, "queue-ready root=1 queue=1"));
    assert!(has_log(vm, "dequeued charge ctx=2"));
    assert!(has_log(vm, "root-answer token=4 status=200"));
    let calls = seen.lock().unwrap().clone();
    assert_eq!(calls.len(), 1);
    let call = calls.first().cloned().expect("one call");
    assert_eq!(
        (call.vm.as_str(), call.context, call.root),
        ("worker 1", 1, 1)
    );
    assert_eq!(call.header(":path"), Some("/report"));
    assert_eq!(call.body_text(), "charge ctx=2");
}

#[test]
fn a_registrant_that_is_gone_hears_nothing() {
    let mut host = probe("queue=charges").build().expect("build");
    let extra = host.new_worker().expect("worker");
    drop(extra);
    host.vm(0)
        .exchange(&post("enqueue=charges", "hello"), &Response::ok("{}"));
    assert_eq!(host.run_due(), 0);
    assert!(!has_log(host.vm(0), "queue-ready"));
}

#[test]
fn callout_builder_declares_clusters() {
    // An undeclared cluster is unknown even when another is declared.
    let mut host = HostBuilder::new(host_tests::PROBE_GUEST_WASM)
        .cluster("a")
        .build()
        .expect("build");
    let ex = host
        .vm(0)
        .exchange(&post("dispatch=b,dispatch=a", "x"), &Response::ok("{}"));
    assert!(ex.has_log("dispatch b -> Err(BadArgument)"));
    assert!(ex.has_log("dispatch a -> Ok(4)"));
}

#[test]
fn a_close_from_the_answer_resets_the_stream() {
    let mut host = host_with("", |_| ok_answer("{}"));
    let vm = host.vm(0);
    let s = send_request(vm, "dispatch=limitador,on-answer=close");
    let view = vm.stream(s);
    assert!(view.finished);
    assert!(view.client.reset);
    assert_eq!(view.upstream.headers, None);
}
