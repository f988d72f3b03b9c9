//! What Envoy 1.40 does around HTTP callouts, shared-queue notifications and paused streams,
//! seen through the raw-ABI probe guest (`host-tests/abi-probe-guest`). Each scenario's lines
//! are compared with `host-tests/fixtures/callouts/transcripts.txt`, the record of what Envoy
//! logged; the wasmtime host is held to the same file (`tests/host/callout_parity.rs` in
//! host-tests). `RECORD_TRANSCRIPTS=1` prints the live transcripts in the file's format.

use envoy_harness::probe::ProbeStack;
use envoy_harness::Request;
use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

const TRANSCRIPTS: &str = include_str!("../../fixtures/callouts/transcripts.txt");

/// Keys whose numbers depend on the run (VM numbering, ids, timings), not on behaviour.
const VARIABLE: [&str; 5] = [
    "vm",
    "ctx",
    "token",
    "x-envoy-upstream-service-time",
    "x-mock-request-id",
];

/// Replaces the digits after each `key=` of [`VARIABLE`] with `#`.
fn normalize(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    'outer: while !rest.is_empty() {
        for key in VARIABLE {
            let at_word_start = out.is_empty() || out.ends_with([' ', ';']);
            if at_word_start {
                if let Some(after) = rest.strip_prefix(key).and_then(|r| r.strip_prefix('=')) {
                    let digits =
                        after.len() - after.trim_start_matches(|c: char| c.is_ascii_digit()).len();
                    if digits > 0 {
                        out.push_str(key);
                        out.push_str("=#");
                        rest = &after[digits..];
                        continue 'outer;
                    }
                }
            }
        }
        let mut chars = rest.chars();
        if let Some(c) = chars.next() {
            out.push(c);
        }
        rest = chars.as_str();
    }
    out.trim_end().to_string()
}

/// The expected lines of scenario `name` (a `== name` section of the transcripts file).
fn expected(name: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut inside = false;
    for line in TRANSCRIPTS.lines() {
        if let Some(section) = line.strip_prefix("== ") {
            inside = section.trim() == name;
            continue;
        }
        if inside && !line.starts_with('#') && !line.trim().is_empty() {
            lines.push(line.trim_end().to_string());
        }
    }
    assert!(!lines.is_empty(), "no transcript named {name}");
    lines
}

fn stack(plugin_config: &str, workers: u32) -> ProbeStack {
    match ProbeStack::start(plugin_config, workers) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    }
}

/// The probe's main request: `x-probe` commands, and a small fixed answer from the mock.
fn probe_request(cmds: &str, body: &[u8]) -> Request {
    Request::post("/v1/chat/completions")
        .header("x-probe", cmds)
        .header("x-mock-status", "200")
        .body(body.to_vec())
}

/// Lines logged since line `from`, once the last line of `want` has appeared (and a moment
/// longer, so that an unexpected extra line shows up too).
fn capture(s: &ProbeStack, from: usize, want: &[String]) -> Vec<String> {
    let last = want.last().cloned().unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let got: Vec<String> = s
            .lines()
            .iter()
            .skip(from)
            .map(|l| normalize(&l.message))
            .collect();
        if got.contains(&last) || Instant::now() >= deadline {
            let recording = std::env::var_os("RECORD_TRANSCRIPTS").is_some();
            std::thread::sleep(Duration::from_millis(if recording { 2000 } else { 300 }));
            return s
                .lines()
                .iter()
                .skip(from)
                .map(|l| normalize(&l.message))
                .collect();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn check(name: &str, got: Vec<String>) {
    if std::env::var_os("RECORD_TRANSCRIPTS").is_some() {
        println!("== {name}");
        for l in &got {
            println!("{l}");
        }
        println!();
        return;
    }
    assert_eq!(got, expected(name), "scenario {name}");
}

/// Sends one probe request and checks what the guest logged against transcript `name`.
fn scenario(s: &ProbeStack, name: &str, cmds: &str) {
    let from = s.lines().len();
    let resp = s
        .envoy
        .client()
        .with_timeout(Duration::from_secs(20))
        .send(&probe_request(cmds, b"hello"));
    if let Err(e) = resp {
        panic!("scenario {name}: {e}");
    }
    check(name, capture(s, from, &expected_or_empty(name)));
}

fn expected_or_empty(name: &str) -> Vec<String> {
    if std::env::var_os("RECORD_TRANSCRIPTS").is_some() {
        return vec!["delete ctx=#".to_string()];
    }
    expected(name)
}

#[test]
fn answers_failures_and_refusals_match_the_transcripts() {
    let s = stack("", 1);
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
        scenario(&s, name, cmds);
    }
}

#[test]
fn a_callout_outlives_its_stream() {
    let s = stack("", 1);
    // The end-of-stream frame alone does not hold an HTTP/1.1 request framed by
    // content-length: the upstream answers, the stream ends, then the callout answer comes.
    scenario(
        &s,
        "hold-only-end-of-stream",
        "call=limitador,hdr=x-mock-status:200,hdr=x-mock-delay-ms:500,hold=eos",
    );
    // The client goes away while its request waits for the answer.
    let from = s.lines().len();
    let mut sock = TcpStream::connect(s.envoy.listen_addr()).expect("connect");
    write!(
        sock,
        "POST /v1/chat/completions HTTP/1.1\r\nhost: localhost\r\ncontent-length: 5\r\n\
         x-probe: call=limitador,hdr=x-mock-status:200,hdr=x-mock-delay-ms:800\r\n\r\nhello"
    )
    .expect("send");
    let start = Instant::now();
    while !s
        .lines()
        .iter()
        .skip(from)
        .any(|l| l.message.starts_with("call "))
    {
        assert!(start.elapsed() < Duration::from_secs(10), "no call logged");
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(sock);
    let want = expected_or_empty("client-gone");
    check("client-gone", capture(&s, from, &want));
}

/// The request-body sizes logged after line `from`, with their end_of_stream flags.
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

/// (e) Pause from the request headers, a callout, resume from its answer, with a 5 MiB body.
#[test]
fn a_5_mib_request_paused_at_its_headers_passes_whole_after_the_answer() {
    let s = stack("", 1);
    let from = s.lines().len();
    let resp = s
        .envoy
        .client()
        .with_timeout(Duration::from_secs(30))
        .send(&probe_request(
            "call=limitador,hdr=x-mock-status:200,hdr=x-mock-delay-ms:300",
            &vec![b'x'; FIVE_MIB],
        ))
        .expect("response");
    assert_eq!(resp.status, 200, "no 413: the held body is flow-controlled");
    let lines = capture(&s, from, &["delete ctx=#".to_string()]);
    let resumed = position(&lines, "callout continue");
    let frames = body_frames(&lines);
    assert_eq!(
        body_frames(lines.get(..resumed).unwrap_or_default()),
        [],
        "no body callback while the headers are paused"
    );
    assert_eq!(frames.iter().map(|f| f.0).sum::<usize>(), FIVE_MIB);
    let first = frames.first().copied().unwrap_or_default();
    assert!(
        first.0 > 1 << 20 && first.0 <= 2 << 20 && !first.1,
        "Envoy held about twice its 1 MiB buffer limit and delivers that first: {frames:?}"
    );
    assert_eq!(frames.last(), Some(&(0, true)), "{frames:?}");
    let upstream: Vec<_> = s
        .mock
        .requests()
        .into_iter()
        .filter(|r| r.body_len == FIVE_MIB)
        .collect();
    assert_eq!(upstream.len(), 1);
    assert!(upstream.iter().all(|r| r.complete));
}

/// (f) Holding only the frame that brings a 5 MiB body to its content-length holds the
/// request: the upstream answers only after the callout's answer resumed it.
#[test]
fn holding_the_last_bytes_holds_a_5_mib_request_until_the_answer() {
    let s = stack("", 1);
    let from = s.lines().len();
    let resp = s
        .envoy
        .client()
        .with_timeout(Duration::from_secs(30))
        .send(&probe_request(
            "call=limitador,hdr=x-mock-status:200,hdr=x-mock-delay-ms:1000,hold=last-bytes",
            &vec![b'x'; FIVE_MIB],
        ))
        .expect("response");
    assert_eq!(resp.status, 200);
    let lines = capture(&s, from, &["delete ctx=#".to_string()]);
    assert!(position(&lines, "callout continue") < position(&lines, "resp-headers"));
    let frames = body_frames(&lines);
    let held = frames.last().copied().unwrap_or_default();
    assert!(
        held.1 && held.0 > 0,
        "the end_of_stream frame calls back with the held bytes: {frames:?}"
    );
    let readable = format!(
        "callout origin request-header status=2 request-body status=0 len={}",
        held.0
    );
    assert!(lines.contains(&readable), "{lines:#?}");
    assert!(s
        .mock
        .requests()
        .iter()
        .any(|r| r.body_len == FIVE_MIB && r.complete));
}

/// (g) on_queue_ready goes to the root context of the last VM that registered the queue,
/// on that VM's thread, once per enqueue, after the enqueuing callback returned.
#[test]
fn queue_notifications_go_to_the_last_registrant() {
    let s = stack("queue=charges", 2);
    let client = s.envoy.client().with_timeout(Duration::from_secs(10));
    // A registration from a stream makes the worker that served it the registrant.
    let from = s.lines().len();
    client
        .send(&probe_request("register=charges", b"hello"))
        .expect("register");
    let registrant = s
        .wait_for(
            "queue registered name=charges id=1 status=0 root=stream",
            Duration::from_secs(5),
        )
        .expect("registered")
        .into_iter()
        .skip(from)
        .find(|l| l.message.starts_with("queue registered"))
        .expect("line");
    let vm = registrant
        .message
        .rsplit_once(" vm=")
        .map(|(_, v)| v.to_string())
        .unwrap_or_default();
    // Enqueue from fresh connections until one came from the other worker too (bounded).
    let mut from_other_worker = false;
    for i in 0..30 {
        let from = s.lines().len();
        client
            .send(&probe_request("enqueue=charges", b"hello"))
            .expect("enqueue");
        let lines = s
            .wait_for_after(from, "dequeue status=7", Duration::from_secs(5))
            .expect("notified");
        let enqueue = lines
            .iter()
            .find(|l| l.message.starts_with("enqueue name=charges"))
            .expect("enqueue line");
        assert!(
            enqueue.message.contains("resolve=0 status=0"),
            "{enqueue:?}"
        );
        let ready: Vec<_> = lines
            .iter()
            .filter(|l| l.message.starts_with("queue-ready"))
            .collect();
        assert_eq!(ready.len(), 1, "one notification per enqueue: {lines:#?}");
        let ready = ready[0];
        assert_eq!(ready.message, format!("queue-ready root=1 queue=1 vm={vm}"));
        assert_eq!(ready.thread, registrant.thread);
        let enqueued_by = enqueue
            .message
            .rsplit_once(" vm=")
            .map(|(_, v)| v)
            .unwrap_or("");
        if enqueued_by == vm {
            // Same worker: after the enqueuing stream's on_log, on_done and on_delete.
            let delete = lines
                .iter()
                .position(|l| l.message.starts_with("delete ctx="))
                .expect("delete");
            let ready_at = lines
                .iter()
                .position(|l| l.message.starts_with("queue-ready"))
                .expect("ready");
            assert!(delete < ready_at, "{lines:#?}");
        } else {
            from_other_worker = true;
            assert_ne!(enqueue.thread, ready.thread);
        }
        let item = lines
            .iter()
            .find(|l| l.message.starts_with("dequeued "))
            .expect("dequeued");
        assert!(
            item.message.ends_with(&format!("vm={enqueued_by}")),
            "{item:?}"
        );
        if from_other_worker && i >= 3 {
            break;
        }
    }
    assert!(from_other_worker, "no request landed on the other worker");
}
