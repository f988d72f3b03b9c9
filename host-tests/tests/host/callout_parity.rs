//! The wasmtime host replays the scenarios recorded from a real Envoy 1.40 with the raw-ABI
//! probe guest (`fixtures/callouts/transcripts.txt`) and must log the same lines: callout
//! answers, Envoy's own failure answers, resets, refusals, local replies, pauses, and calls
//! that outlive their stream.

use crate::transcripts::{envoy_request_headers, expected, mock_answer, mock_response, normalize};
use host_tests::{CalloutAnswer, Host, HostBuilder, Request, Vm, ABI_PROBE_GUEST_WASM};
use std::time::Duration;

/// The probe behind the same clusters as in the Envoy bootstrap.
fn host() -> Host {
    HostBuilder::new(ABI_PROBE_GUEST_WASM)
        .vm_id("probe")
        .plugin_name("probe")
        .root_id("probe")
        .cluster_responding("limitador", mock_answer)
        .cluster_responding("silent", |_| CalloutAnswer::Never)
        .cluster_responding("refused", |_| CalloutAnswer::ConnectionRefused)
        .cluster_responding("cut", |_| CalloutAnswer::Reset)
        .cluster_without_endpoints("empty")
        .build()
        .expect("the probe loads")
}

fn probe_request(cmds: &str) -> Request {
    Request {
        headers: envoy_request_headers(cmds, true),
        body: b"hello".to_vec(),
        trailers: None,
    }
}

/// The probe's lines since log line `from`, normalised like the Envoy side.
fn lines_since(vm: &Vm, from: usize) -> Vec<String> {
    vm.logs()
        .iter()
        .skip(from)
        .map(|l| normalize(&l.message))
        .collect()
}

#[test]
fn answers_failures_and_refusals_match_envoy() {
    let mut host = host();
    for (name, cmds) in [
        ("answer-200", "call=limitador,hdr=x-mock-status:200"),
        ("answer-429", "call=limitador,hdr=x-mock-status:429"),
        ("timeout", "call=silent,timeout=300"),
        ("connection-refused", "call=refused"),
        ("reset", "call=cut"),
        ("after-a-reset", "call=limitador,hdr=x-mock-status:200"),
        ("no-endpoints", "call=empty"),
        ("bad-arguments", "call=nope,call=limitador,omit=:authority"),
        ("negative-timeout", "call=limitador,timeout=2147483648"),
        (
            "local-reply",
            "call=limitador,hdr=x-mock-status:200,then=reply-429",
        ),
        (
            "pause-last-bytes",
            "call=limitador,hdr=x-mock-status:200,at=last-bytes",
        ),
    ] {
        let vm = host.vm(0);
        let from = vm.logs().len();
        let ex = vm.exchange(&probe_request(cmds), &mock_response(true));
        assert!(!ex.stalled, "scenario {name} stalled");
        assert_eq!(lines_since(vm, from), expected(name), "scenario {name}");
    }
}

#[test]
fn holding_only_the_end_of_stream_frame_lets_the_upstream_answer_first() {
    let mut host = host();
    let from = host.vm(0).logs().len();
    let cmds = "call=limitador,hdr=x-mock-status:200,hdr=x-mock-delay-ms:500,hold=eos";
    // Envoy's router adds no upstream-service-time to a response that beat the request's end.
    let ex = host
        .vm(0)
        .exchange(&probe_request(cmds), &mock_response(false));
    assert_eq!(ex.client.status, 200);
    assert!(!ex.stalled);
    assert_eq!(host.advance(Duration::from_millis(500)), 1);
    assert_eq!(
        lines_since(host.vm(0), from),
        expected("hold-only-end-of-stream")
    );
}

#[test]
fn a_callout_answer_reaches_the_root_after_the_client_went_away() {
    let mut host = host();
    let vm = host.vm(0);
    let from = vm.logs().len();
    let mut headers = envoy_request_headers(
        "call=limitador,hdr=x-mock-status:200,hdr=x-mock-delay-ms:800",
        false,
    );
    headers.remove("x-probe");
    headers.add(
        "x-probe",
        "call=limitador,hdr=x-mock-status:200,hdr=x-mock-delay-ms:800",
    );
    let s = vm.open_stream();
    vm.send_request_headers(s, &headers, false);
    vm.send_request_body(s, b"hello", false);
    vm.send_request_body(s, b"", true);
    vm.reset_stream(s);
    assert_eq!(host.advance(Duration::from_millis(800)), 1);
    assert_eq!(lines_since(host.vm(0), from), expected("client-gone"));
}

/// Request-body callbacks in `lines`: (size, end_of_stream).
fn body_frames(lines: &[String]) -> Vec<(usize, bool)> {
    lines
        .iter()
        .filter_map(|l| {
            let rest = l.strip_prefix("req-body ctx=# size=")?;
            let (size, eos) = rest.split_once(" eos=")?;
            Some((size.parse().ok()?, eos == "1"))
        })
        .collect()
}

fn position(lines: &[String], prefix: &str) -> usize {
    match lines.iter().position(|l| l.starts_with(prefix)) {
        Some(i) => i,
        None => panic!("no line starting with {prefix:?} in {lines:#?}"),
    }
}

const FIVE_MIB: usize = 5 << 20;

fn big_request(cmds: &str) -> Request {
    let mut headers = envoy_request_headers(cmds, true);
    headers.replace("content-length", &FIVE_MIB.to_string());
    Request {
        headers,
        body: vec![b'x'; FIVE_MIB],
        trailers: None,
    }
}

/// As in Envoy: no 413, nothing delivered while the headers wait, then what was held (at most
/// twice the buffer limit) in one callback, the rest after it, and the whole body upstream.
#[test]
fn a_5_mib_request_paused_at_its_headers_passes_whole_after_the_answer() {
    let mut host = host();
    let vm = host.vm(0);
    let from = vm.logs().len();
    let ex = vm.exchange(
        &big_request("call=limitador,hdr=x-mock-status:200,hdr=x-mock-delay-ms:300"),
        &mock_response(true),
    );
    assert_eq!(ex.client.status, 200);
    let lines = lines_since(vm, from);
    let resumed = position(&lines, "callout continue");
    assert_eq!(body_frames(lines.get(..resumed).unwrap_or_default()), []);
    let frames = body_frames(&lines);
    assert_eq!(frames.iter().map(|f| f.0).sum::<usize>(), FIVE_MIB);
    let first = frames.first().copied().unwrap_or_default();
    assert!(
        first.0 > 1 << 20 && first.0 <= 2 << 20 && !first.1,
        "{frames:?}"
    );
    assert_eq!(frames.last(), Some(&(0, true)), "{frames:?}");
    assert_eq!(ex.upstream.body.len(), FIVE_MIB);
    assert!(ex.upstream.complete);
}

/// As in Envoy (whose reads are at most 1 MiB): the frame that completes the content-length
/// is held, the end_of_stream frame calls back with the held bytes, the answer can read them,
/// and the upstream answers only after the resume.
#[test]
fn holding_the_last_bytes_holds_a_5_mib_request_until_the_answer() {
    let mut host = host();
    let vm = host.vm(0);
    let from = vm.logs().len();
    let ex = vm.exchange_chunked(
        &big_request(
            "call=limitador,hdr=x-mock-status:200,hdr=x-mock-delay-ms:1000,hold=last-bytes",
        ),
        &mock_response(true),
        1 << 20,
    );
    assert_eq!(ex.client.status, 200);
    let lines = lines_since(vm, from);
    assert!(position(&lines, "callout continue") < position(&lines, "resp-headers"));
    let held = body_frames(&lines).last().copied().unwrap_or_default();
    assert!(held.1 && held.0 > 0, "{lines:#?}");
    let readable = format!(
        "callout origin request-header status=2 request-body status=0 len={}",
        held.0
    );
    assert!(lines.contains(&readable), "{lines:#?}");
    assert_eq!(ex.upstream.body.len(), FIVE_MIB);
}

/// The line of `vm` starting with `prefix`, after log line `from`.
fn line_after(vm: &Vm, from: usize, prefix: &str) -> Option<String> {
    vm.logs()
        .iter()
        .skip(from)
        .map(|l| l.message.clone())
        .find(|m| m.starts_with(prefix))
}

fn vm_number(line: &str) -> String {
    line.rsplit_once(" vm=")
        .map(|(_, v)| v.to_string())
        .unwrap_or_default()
}

/// As in Envoy: every worker registers the queue from on_configure and the last one started
/// wins; a notification runs on the registrant's VM when that VM next runs its events, after
/// the enqueuing callback (and, on the same VM, after the enqueuing stream ended); a
/// registration from a stream moves the notifications to that stream's VM and root.
#[test]
fn queue_notifications_go_to_the_last_registrant() {
    let mut host = HostBuilder::new(ABI_PROBE_GUEST_WASM)
        .vm_id("probe")
        .plugin_config("queue=charges")
        .workers(2)
        .build()
        .expect("build");
    let registered = line_after(host.vm(1), 0, "queue registered").expect("worker 1 registered");
    let last = vm_number(&registered);

    // From worker 0: nothing happens on worker 0; worker 1 hears of it when it runs events.
    let ex = host
        .vm(0)
        .exchange(&probe_request("enqueue=charges"), &mock_response(true));
    assert!(ex.has_log("enqueue name=charges id=1 resolve=0 status=0"));
    assert!(!ex.has_log("queue-ready"));
    let from = host.vm(1).logs().len();
    assert_eq!(host.vm(1).run_due(), 1);
    let ready = line_after(host.vm(1), from, "queue-ready").expect("notified");
    assert_eq!(ready, format!("queue-ready root=1 queue=1 vm={last}"));
    let item = line_after(host.vm(1), from, "dequeued").expect("dequeued");
    assert!(item.ends_with(&format!(
        "vm={}",
        vm_number(&line_after(host.vm(0), 0, "enqueue").unwrap_or_default())
    )));

    // From worker 1 itself: after its stream's on_delete.
    let from = host.vm(1).logs().len();
    host.vm(1)
        .exchange(&probe_request("enqueue=charges"), &mock_response(true));
    let lines: Vec<String> = host
        .vm(1)
        .logs()
        .iter()
        .skip(from)
        .map(|l| l.message.clone())
        .collect();
    let delete = position(&lines, "delete ctx=");
    assert!(
        delete < position(&lines, "queue-ready root=1"),
        "{lines:#?}"
    );

    // A stream on worker 0 registers: worker 0's root hears of the next enqueue.
    host.vm(0)
        .exchange(&probe_request("register=charges"), &mock_response(true));
    host.vm(1)
        .exchange(&probe_request("enqueue=charges"), &mock_response(true));
    let from = host.vm(0).logs().len();
    assert_eq!(host.run_due(), 1);
    let ready = line_after(host.vm(0), from, "queue-ready").expect("worker 0 notified");
    assert!(ready.starts_with("queue-ready root=1 queue=1"), "{ready}");
}
