//! A proxy-wasm guest written against the raw ABI, without the SDK, so that it sees exactly
//! what a host passes: the root context id given to `proxy_on_http_call_response`, callouts
//! to streams that are gone, every hostcall status. The same module runs in a real Envoy
//! (`envoy-harness/tests/callouts.rs`) and in the wasmtime host (`tests/host/envoy_parity.rs`),
//! and both are asserted to log the same lines.
//!
//! Plugin configuration (space-separated): `queue=<name>` registers a shared queue from
//! `on_configure`. Each VM numbers itself from a shared-data counter (`vm=<n>` in its lines).
//!
//! Request header `x-probe` (comma-separated):
//! - `call=<cluster>` (repeatable): a POST callout with `:path` = `path=<p>` (default
//!   `/v1/chat/completions`), `:authority: probe`, extra `hdr=<name>:<value>` headers, minus
//!   any `omit=<name>`, timeout `timeout=<ms>` (default 5000);
//! - `at=headers` (default) dispatches from the request headers and pauses there;
//!   `at=eos` / `at=last-bytes` dispatch from the request-body callback with end_of_stream /
//!   the one that brings the body to its `content-length` (or end_of_stream), and pause it;
//!   `hold=eos` / `hold=last-bytes` dispatch from the headers, let the body pass, and pause
//!   that frame only while an answer is still missing; `no-pause` never pauses;
//! - `then=resume` (default) continues the request once every answer arrived,
//!   `then=reply-<code>` sends a local reply instead, `then=none` does nothing;
//! - `register=<queue>` registers a queue from the stream; `enqueue=<queue>` enqueues one
//!   item from `on_log`; `show-headers` logs the request headers.

mod abi;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

/// Parsed `key=value` / `word` commands.
#[derive(Debug, Default, Clone)]
struct Commands(Vec<(String, String)>);

impl Commands {
    fn parse(text: &str, sep: char) -> Commands {
        Commands(
            text.split(sep)
                .map(str::trim)
                .filter(|w| !w.is_empty())
                .map(|w| match w.split_once('=') {
                    Some((k, v)) => (k.to_string(), v.to_string()),
                    None => (w.to_string(), String::new()),
                })
                .collect(),
        )
    }
    fn has(&self, key: &str) -> bool {
        self.0.iter().any(|(k, _)| k == key)
    }
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
    fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// What this guest remembers of one stream.
#[derive(Debug, Default)]
struct Stream {
    cmds: Commands,
    /// Callouts not answered yet.
    pending: u32,
    /// The stream is paused waiting for the answers.
    held: bool,
    /// The request's `content-length`, if any.
    content_length: Option<u64>,
    /// Body bytes let through so far.
    passed: u64,
    /// The body callback already dispatched this stream's calls.
    dispatched: bool,
}

thread_local! {
    static VM: Cell<u64> = const { Cell::new(0) };
    static STREAMS: RefCell<HashMap<u32, Stream>> = RefCell::new(HashMap::new());
    /// Callout token -> the context that dispatched it.
    static CALLS: RefCell<HashMap<u32, u32>> = RefCell::new(HashMap::new());
}

fn vm() -> u64 {
    VM.with(Cell::get)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).replace('\n', "\\n")
}

fn show_pairs(p: &[(String, String)]) -> String {
    p.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(";")
}

#[no_mangle]
pub extern "C" fn proxy_abi_version_0_2_1() {}

#[no_mangle]
pub extern "C" fn proxy_on_memory_allocate(size: usize) -> *mut u8 {
    let mut v: Vec<u8> = Vec::with_capacity(size);
    let p = v.as_mut_ptr();
    std::mem::forget(v);
    p
}

#[no_mangle]
pub extern "C" fn proxy_on_context_create(_ctx: u32, _parent: u32) {}

#[no_mangle]
pub extern "C" fn proxy_on_vm_start(root: u32, _size: u32) -> u32 {
    VM.with(|v| v.set(abi::shared_increment("abi-probe-vms")));
    abi::log(&format!("vm_start root={root} vm={}", vm()));
    1
}

#[no_mangle]
pub extern "C" fn proxy_on_configure(root: u32, size: u32) -> u32 {
    let (_, config) = abi::buffer(abi::PLUGIN_CONFIGURATION, size as usize);
    let config = Commands::parse(&String::from_utf8_lossy(&config), ' ');
    for name in config.all("queue") {
        let (s, id) = abi::register_queue(name);
        abi::log(&format!(
            "queue registered name={name} id={id} status={s} root={root} vm={}",
            vm()
        ));
    }
    1
}

/// Dispatches every `call=` of `cmds` for context `ctx`; returns how many were accepted.
fn dispatch(ctx: u32, cmds: &Commands) -> u32 {
    let mut accepted = 0;
    for cluster in cmds.all("call") {
        let path = cmds.get("path").unwrap_or("/v1/chat/completions");
        let mut headers: Vec<(String, String)> = [
            (":method", "POST"),
            (":path", path),
            (":authority", "probe"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        for h in cmds.all("hdr") {
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.to_string(), v.to_string()));
            }
        }
        for name in cmds.all("omit") {
            headers.retain(|(k, _)| k != name);
        }
        let timeout = cmds
            .get("timeout")
            .and_then(|t| t.parse().ok())
            .unwrap_or(5000);
        let (s, token) = abi::http_call(cluster, &headers, br#"{"model":"probe"}"#, timeout);
        abi::log(&format!(
            "call ctx={ctx} cluster={cluster} status={s} token={token}"
        ));
        if s == 0 {
            CALLS.with(|c| c.borrow_mut().insert(token, ctx));
            accepted += 1;
        }
    }
    accepted
}

#[no_mangle]
pub extern "C" fn proxy_on_request_headers(ctx: u32, n: u32, eos: u32) -> u32 {
    let (_, value) = abi::header(abi::REQUEST_HEADERS, "x-probe");
    let cmds = Commands::parse(&String::from_utf8_lossy(&value), ',');
    abi::log(&format!("req-headers ctx={ctx} n={n} eos={eos}"));
    if cmds.has("show-headers") {
        let (_, pairs) = abi::pairs(abi::REQUEST_HEADERS);
        abi::log(&format!("req-header-pairs {}", show_pairs(&pairs)));
    }
    for name in cmds.all("register") {
        let (s, id) = abi::register_queue(name);
        abi::log(&format!(
            "queue registered name={name} id={id} status={s} root=stream vm={}",
            vm()
        ));
    }
    let (_, length) = abi::header(abi::REQUEST_HEADERS, "content-length");
    let mut stream = Stream {
        content_length: String::from_utf8_lossy(&length).parse().ok(),
        ..Stream::default()
    };
    let at_headers = cmds.get("at").unwrap_or("headers") == "headers";
    if at_headers {
        stream.pending = dispatch(ctx, &cmds);
    }
    let pause = at_headers && stream.pending > 0 && !cmds.has("no-pause") && !cmds.has("hold");
    stream.held = pause;
    stream.cmds = cmds;
    STREAMS.with(|s| s.borrow_mut().insert(ctx, stream));
    u32::from(pause)
}

#[no_mangle]
pub extern "C" fn proxy_on_request_body(ctx: u32, size: u32, eos: u32) -> u32 {
    abi::log(&format!("req-body ctx={ctx} size={size} eos={eos}"));
    STREAMS.with(|s| {
        let mut streams = s.borrow_mut();
        let Some(stream) = streams.get_mut(&ctx) else {
            return 0;
        };
        if stream.held {
            // Still waiting: Envoy calls again with everything buffered so far.
            return 1;
        }
        let last_bytes = eos == 1
            || stream
                .content_length
                .is_some_and(|cl| stream.passed + u64::from(size) >= cl);
        let reached = |mode: Option<&str>| match mode {
            Some("eos") => eos == 1,
            Some("last-bytes") => last_bytes,
            _ => false,
        };
        if reached(stream.cmds.get("at")) && !stream.dispatched {
            stream.dispatched = true;
            let cmds = stream.cmds.clone();
            stream.pending += dispatch(ctx, &cmds);
        }
        let pause_here = reached(stream.cmds.get("at")) || reached(stream.cmds.get("hold"));
        if pause_here && stream.pending > 0 && !stream.cmds.has("no-pause") {
            stream.held = true;
            return 1;
        }
        stream.passed += u64::from(size);
        0
    })
}

#[no_mangle]
pub extern "C" fn proxy_on_response_headers(ctx: u32, n: u32, eos: u32) -> u32 {
    let (_, status) = abi::header(2, ":status");
    abi::log(&format!(
        "resp-headers ctx={ctx} n={n} eos={eos} status={}",
        text(&status)
    ));
    0
}

#[no_mangle]
pub extern "C" fn proxy_on_response_body(ctx: u32, size: u32, eos: u32) -> u32 {
    abi::log(&format!("resp-body ctx={ctx} size={size} eos={eos}"));
    0
}

#[no_mangle]
pub extern "C" fn proxy_on_log(ctx: u32) {
    abi::log(&format!("log ctx={ctx}"));
    let queues: Vec<String> = STREAMS.with(|s| {
        s.borrow()
            .get(&ctx)
            .map(|st| st.cmds.all("enqueue").map(str::to_string).collect())
            .unwrap_or_default()
    });
    for name in queues {
        let (rs, id) = abi::resolve_queue(&name);
        let s = abi::enqueue(id, &format!("from ctx={ctx} vm={}", vm()));
        abi::log(&format!(
            "enqueue name={name} id={id} resolve={rs} status={s} vm={}",
            vm()
        ));
    }
}

#[no_mangle]
pub extern "C" fn proxy_on_done(_ctx: u32) -> u32 {
    1
}

#[no_mangle]
pub extern "C" fn proxy_on_delete(ctx: u32) {
    abi::log(&format!("delete ctx={ctx}"));
    STREAMS.with(|s| s.borrow_mut().remove(&ctx));
}

/// Logs what the host shows of the answer (maps 6/7, buffer 4, `proxy_get_status`).
fn log_answer(root: u32, token: u32, n_headers: u32, body: u32, n_trailers: u32) {
    abi::log(&format!(
        "callout root={root} token={token} headers={n_headers} body={body} trailers={n_trailers} vm={}",
        vm()
    ));
    let (s, code, msg) = abi::status();
    abi::log(&format!("callout get_status={s} code={code} message={msg}"));
    let (s, pairs) = abi::pairs(abi::CALLOUT_HEADERS);
    abi::log(&format!(
        "callout headers status={s} {}",
        show_pairs(&pairs)
    ));
    let (s, v) = abi::header(abi::CALLOUT_HEADERS, ":status");
    abi::log(&format!("callout :status status={s} value={}", text(&v)));
    let (s, b) = abi::buffer(abi::CALLOUT_BODY, 4096);
    abi::log(&format!(
        "callout body status={s} len={} text={}",
        b.len(),
        text(&b)
    ));
    let (s, pairs) = abi::pairs(abi::CALLOUT_TRAILERS);
    abi::log(&format!(
        "callout trailers status={s} {}",
        show_pairs(&pairs)
    ));
    let (s, b) = abi::buffer(abi::REQUEST_BODY, 16);
    abi::log(&format!(
        "callout root request-body status={s} len={}",
        b.len()
    ));
    let s = abi::set_effective_context(4242);
    abi::log(&format!("callout effective unknown status={s}"));
    let s = abi::set_effective_context(0);
    abi::log(&format!("callout effective zero status={s}"));
}

#[no_mangle]
pub extern "C" fn proxy_on_http_call_response(
    root: u32,
    token: u32,
    n_headers: u32,
    body: u32,
    n_trailers: u32,
) {
    log_answer(root, token, n_headers, body, n_trailers);
    let Some(origin) = CALLS.with(|c| c.borrow_mut().remove(&token)) else {
        abi::log("callout origin unknown");
        return;
    };
    let s = abi::set_effective_context(origin);
    abi::log(&format!("callout effective ctx={origin} status={s}"));
    let (hs, _) = abi::header(abi::REQUEST_HEADERS, "x-probe");
    let (bs, b) = abi::buffer(abi::REQUEST_BODY, usize::MAX);
    abi::log(&format!(
        "callout origin request-header status={hs} request-body status={bs} len={}",
        b.len()
    ));
    let act = STREAMS.with(|s| {
        let mut streams = s.borrow_mut();
        match streams.get_mut(&origin) {
            None => Some("resume".to_string()),
            Some(st) => {
                st.pending = st.pending.saturating_sub(1);
                let then = st.cmds.get("then").unwrap_or("resume").to_string();
                let ready = st.pending == 0 && (st.held || then != "resume");
                ready.then_some(then)
            }
        }
    });
    if act.is_some() {
        STREAMS.with(|s| {
            if let Some(st) = s.borrow_mut().get_mut(&origin) {
                st.held = false;
            }
        });
    }
    match act.as_deref() {
        Some("resume") => {
            let s = abi::continue_request();
            abi::log(&format!("callout continue status={s}"));
        }
        Some(reply) if reply.starts_with("reply-") => {
            let code = reply
                .strip_prefix("reply-")
                .and_then(|c| c.parse().ok())
                .unwrap_or(503);
            let h = [("x-probe-reply".to_string(), "1".to_string())];
            let s = abi::local_reply(code, "refused by callout", &h);
            abi::log(&format!("callout reply status={s}"));
        }
        _ => {}
    }
}

#[no_mangle]
pub extern "C" fn proxy_on_queue_ready(root: u32, queue: u32) {
    abi::log(&format!(
        "queue-ready root={root} queue={queue} vm={}",
        vm()
    ));
    loop {
        let (s, item) = abi::dequeue(queue);
        if s != 0 {
            abi::log(&format!("dequeue status={s}"));
            return;
        }
        abi::log(&format!("dequeued {}", text(&item)));
    }
}
