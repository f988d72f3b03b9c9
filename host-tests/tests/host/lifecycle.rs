//! HTTP stream lifecycle: map availability, pauses, buffering, local replies, resets.

use crate::common::{calls, get, line, post, probe, run};
use host_tests::{Headers, Request, Response};

#[test]
fn callbacks_run_in_envoy_order_with_an_empty_final_frame() {
    let mut host = probe("").build().expect("build");
    let ex = run(host.vm(0), &post("", "hello"));
    assert_eq!(ex.client.status, 200);
    assert_eq!(ex.client.body, b"upstream-body");
    assert_eq!(ex.upstream.body, b"hello");
    let ctx = host.vm(0).stream(ex.stream).ctx.expect("ctx");
    assert_eq!(ctx, 2);
    assert_eq!(
        calls(host.vm(0), ctx),
        [
            "on_context_create(1)",
            "on_request_headers(8,0)",
            "on_request_body(5,0)",
            "on_request_body(0,1)",
            "on_response_headers(3,0)",
            "on_response_body(13,0)",
            "on_response_body(0,1)",
            "on_log()",
            "on_done()",
            "on_delete()"
        ]
    );
}

#[test]
fn request_headers_unavailable_after_their_callback() {
    let mut host = probe("").build().expect("build");
    let ex = run(host.vm(0), &post("read-req-header-in-body", "x"));
    assert_eq!(line(&ex, "body-get"), "body-get status=2 value=");
    assert_eq!(line(&ex, "body-pairs"), "body-pairs status=0 len=0");
    assert_eq!(line(&ex, "body-add"), "body-add status=2");
    let ex = run(host.vm(0), &get("read-req-header-in-response"));
    assert_eq!(line(&ex, "resp-get"), "resp-get status=2 value=");
    assert_eq!(line(&ex, "resp-pairs"), "resp-pairs status=0 len=0");
    assert_eq!(line(&ex, "resp-add"), "resp-add status=2");
}

#[test]
fn on_log_reads_headers_read_only() {
    let mut host = probe("").build().expect("build");
    let ex = run(host.vm(0), &get("read-in-log"));
    assert_eq!(line(&ex, "log-get"), "log-get status=0 value=read-in-log");
    assert_eq!(line(&ex, "log-add"), "log-add status=2");
    assert_eq!(line(&ex, "log-trailers"), "log-trailers status=1");
}

#[test]
fn header_pause_stalls_the_stream_and_holds_the_body() {
    let mut host = probe("").build().expect("build");
    let ex = run(host.vm(0), &post("pause-req-headers", "body"));
    assert!(ex.stalled);
    assert_eq!(ex.upstream.headers, None);
    let view = host.vm(0).stream(ex.stream);
    assert!(view.request_stopped);
    assert!(!host
        .vm(0)
        .trace()
        .iter()
        .any(|c| c.name == "on_request_body"));
}

#[test]
fn continue_stream_from_a_tick_resumes_and_delivers_held_body() {
    let mut host = probe("tick-resume tick=10").build().expect("build");
    let ex = run(host.vm(0), &post("pause-until-tick", "abc"));
    assert!(ex.stalled);
    host.clock().advance(std::time::Duration::from_millis(10));
    assert_eq!(host.vm(0).fire_due_ticks(), 1);
    let vm = host.vm(0);
    let view = vm.stream(ex.stream);
    assert_eq!(view.upstream.body, b"abc");
    assert!(view.upstream.complete);
    let ctx = view.ctx.expect("ctx");
    assert!(
        calls(vm, ctx).contains(&"on_request_body(3,1)".to_string()),
        "{:?}",
        calls(vm, ctx)
    );
    vm.send_response_headers(ex.stream, &Headers::from_pairs([(":status", "204")]), true);
    let view = vm.stream(ex.stream);
    assert!(view.finished);
    assert_eq!(view.client.status, 204);
}

#[test]
fn stop_iteration_kept_only_when_allowed() {
    let mut host = probe("")
        .allow_on_headers_stop_iteration(true)
        .build()
        .expect("build");
    let ex = run(host.vm(0), &post("pause-req-headers", "abc"));
    assert!(
        !ex.stalled,
        "body callbacks keep coming and Continue from the body resumes"
    );
    assert_eq!(ex.upstream.body, b"abc");
    assert!(ex.upstream.headers.is_some());
}

#[test]
fn body_pause_buffers_with_cumulative_sizes() {
    let mut host = probe("").build().expect("build");
    let vm = host.vm(0);
    let s = vm.open_stream();
    let req = post("buffer-req", "");
    vm.send_request_headers(s, &req.headers, false);
    vm.send_request_body(s, b"ab", false);
    vm.send_request_body(s, b"cd", false);
    assert!(vm.stream(s).request_stopped);
    assert_eq!(vm.stream(s).upstream.body, b"");
    vm.send_request_body(s, b"", true);
    let view = vm.stream(s);
    assert_eq!(view.upstream.body, b"abcd");
    assert!(view.upstream.complete);
    let ctx = view.ctx.expect("ctx");
    let body_calls: Vec<String> = calls(vm, ctx)
        .into_iter()
        .filter(|c| c.starts_with("on_request_body"))
        .collect();
    assert_eq!(
        body_calls,
        [
            "on_request_body(2,0)",
            "on_request_body(4,0)",
            "on_request_body(4,1)"
        ]
    );
    assert!(vm.has_log("req-body len=4 body=abcd"));
}

#[test]
fn chunked_exchange_delivers_every_frame() {
    let mut host = probe("").build().expect("build");
    let ex = host
        .vm(0)
        .exchange_chunked(&post("buffer-req", "abcdefg"), &Response::ok("xyz"), 3);
    assert_eq!(ex.upstream.body, b"abcdefg");
    assert_eq!(ex.client.body, b"xyz");
    let ctx = host.vm(0).stream(ex.stream).ctx.expect("ctx");
    let sizes: Vec<String> = calls(host.vm(0), ctx)
        .into_iter()
        .filter(|c| c.contains("_body("))
        .collect();
    assert_eq!(
        sizes,
        [
            "on_request_body(3,0)",
            "on_request_body(6,0)",
            "on_request_body(7,0)",
            "on_request_body(7,1)",
            "on_response_body(3,0)",
            "on_response_body(0,1)"
        ]
    );
}

#[test]
fn request_over_buffer_limit_gets_413_through_the_plugin() {
    let mut host = probe("").buffer_limit(10).build().expect("build");
    let vm = host.vm(0);
    let s = vm.open_stream();
    vm.send_request_headers(
        s,
        &post("buffer-req-forever,resp-add=x-seen:1", "").headers,
        false,
    );
    vm.send_request_body(s, b"123456", false);
    assert!(!vm.stream(s).finished);
    vm.send_request_body(s, b"789012", false);
    let view = vm.stream(s);
    assert!(view.finished);
    assert_eq!(view.client.status, 413);
    let info = view.client.local_reply.expect("local reply");
    assert_eq!(
        (info.details.as_str(), info.from_plugin),
        ("request_payload_too_large", false)
    );
    assert_eq!(
        view.client.headers.as_ref().and_then(|h| h.get("x-seen")),
        Some("1")
    );
}

#[test]
fn response_over_buffer_limit_gets_500_or_a_reset() {
    let body = "0123456789abcdef";
    // Headers held (StopIteration allowed) while the body is buffered: Envoy can still answer 500.
    let mut host = probe("")
        .buffer_limit(10)
        .allow_on_headers_stop_iteration(true)
        .build()
        .expect("build");
    let ex = host.vm(0).exchange(
        &get("pause-resp-headers,buffer-resp-forever"),
        &Response::ok(body),
    );
    assert_eq!(ex.client.status, 500);
    assert_eq!(
        ex.client.local_reply.map(|l| l.details),
        Some("response_payload_too_large".to_string())
    );
    // Headers already sent downstream: the only way out is a reset.
    let ex = host
        .vm(0)
        .exchange(&get("buffer-resp-forever"), &Response::ok(body));
    assert!(ex.client.reset);
    assert_eq!(ex.client.status, 200);
    assert!(!ex.stalled);
}

#[test]
fn data_held_behind_a_header_pause_is_flow_controlled_not_rejected() {
    // Pause from headers becomes StopAllIterationAndWatermark: over the limit the stream just
    // waits (no 413/500), as observed in Envoy.
    let mut host = probe("").buffer_limit(10).build().expect("build");
    let ex = host.vm(0).exchange(
        &post("pause-req-headers", "0123456789abcdef"),
        &Response::ok(""),
    );
    assert!(ex.stalled);
    assert_eq!(ex.client.status, 0);
    let ex = host.vm(0).exchange(
        &get("pause-resp-headers"),
        &Response::ok("0123456789abcdef"),
    );
    assert!(ex.stalled);
    assert_eq!(ex.client.headers, None);
}

#[test]
fn body_set_semantics_follow_envoy() {
    let mut host = probe("").build().expect("build");
    let ex = run(host.vm(0), &post("set-buffer-mid", "abc"));
    assert!(ex.has_log("set-mid status=2"));
    let ex = run(host.vm(0), &post("prepend=<<", "abc"));
    assert_eq!(ex.upstream.body, b"<<abc");
    let ex = run(host.vm(0), &post("append=>>", "abc"));
    assert_eq!(ex.upstream.body, b"abc>>");
    let ex = run(
        host.vm(0),
        &post("buffer-req,set-body=replaced", "original"),
    );
    assert_eq!(ex.upstream.body, b"replaced");
    let ex = run(host.vm(0), &post("buffer-req,get-buffer-clamp", "abcdef"));
    assert!(ex.has_log("clamp=cdef"));
}

#[test]
fn local_reply_is_deferred_built_like_envoy_and_reenters_response_callbacks() {
    let mut host = probe("").build().expect("build");
    let ex = run(
        host.vm(0),
        &get("local-reply=403,resp-add=x-from-filter:yes,resp-body-log"),
    );
    assert_eq!(ex.client.status, 403);
    assert_eq!(ex.client.body, b"denied");
    assert_eq!(ex.upstream.headers, None, "upstream skipped");
    let h = ex.client.headers.clone().expect("headers");
    assert_eq!(h.get("x-local"), Some("1"));
    assert_eq!(h.get_all("x-dup"), ["a", "b"]);
    assert_eq!(h.get("content-length"), Some("6"));
    assert_eq!(h.get("content-type"), Some("text/plain"));
    assert_eq!(h.get("x-from-filter"), Some("yes"));
    assert!(ex.has_log("resp-body=denied"));
    let ctx = host.vm(0).stream(ex.stream).ctx.expect("ctx");
    assert_eq!(
        calls(host.vm(0), ctx).get(1..).unwrap_or(&[]),
        [
            "on_request_headers(6,1)",
            "on_response_headers(6,0)",
            "on_response_body(6,1)",
            "on_log()",
            "on_done()",
            "on_delete()"
        ]
    );
}

#[test]
fn local_reply_after_headers_went_upstream_abandons_the_upstream_request() {
    let mut host = probe("").build().expect("build");
    let ex = run(host.vm(0), &post("local-reply-in-body=429", "abc"));
    assert_eq!(ex.client.status, 429);
    assert_eq!(ex.client.body, b"late");
    assert!(ex.upstream.headers.is_some());
    assert!(ex.upstream.reset);
    assert!(!ex.upstream.complete);
}

#[test]
fn grpc_and_head_requests_get_envoys_local_reply_shapes() {
    let mut host = probe("").build().expect("build");
    let ex = run(
        host.vm(0),
        &get("local-reply=429").header("content-type", "application/grpc"),
    );
    let h = ex.client.headers.expect("headers");
    assert_eq!(h.get(":status"), Some("200"));
    assert_eq!(h.get("content-type"), Some("application/grpc"));
    assert_eq!(h.get("grpc-status"), Some("14"));
    assert_eq!(h.get("grpc-message"), Some("denied"));
    assert!(ex.client.body.is_empty());
    let mut head = get("local-reply=403");
    head.headers.replace(":method", "HEAD");
    let ex = run(host.vm(0), &head);
    assert_eq!(ex.client.status, 403);
    assert!(ex.client.body.is_empty());
    assert_eq!(
        ex.client
            .headers
            .and_then(|h| h.get("content-length").map(str::to_string)),
        Some("6".to_string())
    );
}

#[test]
fn local_reply_without_body_drops_content_headers() {
    let mut host = probe("").build().expect("build");
    let ex = run(host.vm(0), &get("local-reply-empty=204"));
    let h = ex.client.headers.expect("headers");
    assert_eq!(h.get(":status"), Some("204"));
    assert_eq!(h.get("content-type"), None);
    assert_eq!(h.get("content-length"), None);
}

#[test]
fn local_reply_from_response_headers_replaces_the_upstream_response() {
    let mut host = probe("").build().expect("build");
    let ex = run(host.vm(0), &get("reply-in-resp=502"));
    assert_eq!(ex.client.status, 502);
    assert_eq!(ex.client.body, b"replaced");
    assert!(ex.upstream.complete);
}

#[test]
fn close_stream_and_client_reset_end_the_stream_without_eos() {
    let mut host = probe("").build().expect("build");
    let ex = run(host.vm(0), &get("close"));
    assert!(ex.client.reset);
    let vm = host.vm(0);
    let s = vm.open_stream();
    vm.send_request_headers(s, &post("", "").headers, false);
    vm.send_request_body(s, b"part", false);
    vm.reset_stream(s);
    let view = vm.stream(s);
    assert!(view.finished && view.client.reset && view.upstream.reset);
    let tail: Vec<String> = calls(vm, view.ctx.expect("ctx"))
        .into_iter()
        .rev()
        .take(3)
        .collect();
    assert_eq!(tail, ["on_delete()", "on_done()", "on_log()"]);
}

#[test]
fn upstream_reset_gives_503_before_headers_and_a_client_reset_after() {
    let mut host = probe("").build().expect("build");
    let vm = host.vm(0);
    let s = vm.open_stream();
    vm.send_request_headers(s, &get("resp-add=x-f:1").headers, true);
    vm.upstream_reset(s);
    let view = vm.stream(s);
    assert!(view.finished);
    assert_eq!(view.client.status, 503);
    assert_eq!(
        view.client.headers.as_ref().and_then(|h| h.get("x-f")),
        Some("1"),
        "through the plugin"
    );
    let info = view.client.local_reply.expect("reply");
    assert_eq!(
        info.details,
        "upstream_reset_before_response_started{remote_reset}"
    );
    let s = vm.open_stream();
    vm.send_request_headers(s, &get("").headers, true);
    vm.send_response_headers(s, &Response::ok("abc").headers, false);
    vm.send_response_body(s, b"ab", false);
    vm.upstream_reset(s);
    let view = vm.stream(s);
    assert!(view.finished && view.client.reset && view.upstream.reset);
    assert_eq!(view.client.body, b"ab");
    let ctx = view.ctx.expect("ctx");
    assert_eq!(
        calls(vm, ctx).last().map(String::as_str),
        Some("on_delete()")
    );
}

#[test]
fn interleaved_streams_on_one_vm_keep_their_own_maps_and_buffers() {
    let mut host = probe("").build().expect("build");
    let vm = host.vm(0);
    let (a, b) = (vm.open_stream(), vm.open_stream());
    vm.send_request_headers(a, &post("buffer-req", "").headers, false);
    vm.send_request_headers(b, &post("prepend=B:", "").headers, false);
    vm.send_request_body(a, b"a1", false);
    vm.send_request_body(b, b"b1", false);
    vm.send_request_body(a, b"a2", true);
    vm.send_request_body(b, b"b2", true);
    let (va, vb) = (vm.stream(a), vm.stream(b));
    assert_eq!((va.ctx, vb.ctx), (Some(2), Some(3)));
    assert_eq!(va.upstream.body, b"a1a2");
    assert_eq!(vb.upstream.body, b"B:b1B:b2");
    assert!(vm.has_log("req-body len=4 body=a1a2"));
}

#[test]
fn continue_stream_statuses() {
    let mut host = probe("").build().expect("build");
    let ex = run(host.vm(0), &get("upstream-continue"));
    assert!(ex.has_log("continue-upstream status=12"));
    assert!(ex.has_log("continue-bad status=2"));
}

#[test]
fn trailers_end_the_stream_and_can_be_added_at_end_of_body() {
    let mut host = probe("").build().expect("build");
    let req = post("", "abc").trailer("x-t", "1");
    let ex = run(host.vm(0), &req);
    assert_eq!(
        ex.upstream.trailers.as_ref().and_then(|t| t.get("x-t")),
        Some("1")
    );
    assert!(ex.has_log("req-trailers n=1"));
    let ctx = host.vm(0).stream(ex.stream).ctx.expect("ctx");
    assert!(calls(host.vm(0), ctx).contains(&"on_request_body(3,0)".to_string()));
    let ex = run(host.vm(0), &post("trailer-in-body", "abc"));
    assert!(ex.has_log("add-trailer status=0"));
    assert_eq!(
        ex.upstream
            .trailers
            .and_then(|t| t.get("x-added-trailer").map(str::to_string)),
        Some("1".to_string())
    );
    let _ = Request::get("/");
}
