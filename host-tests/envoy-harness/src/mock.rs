//! A mock LLM provider on 127.0.0.1, std only: one thread accepts, one thread per connection
//! (HTTP/1.1 keep-alive, content-length and chunked request bodies).
//!
//! Routes (method is not checked, except that `GET /v1/models` lists models):
//! - `/v1/chat/completions`: OpenAI chat JSON, or SSE when the body has `"stream": true`
//!   (then, as OpenAI does, usage in a final chunk only when the body asks with
//!   `"stream_options": {"include_usage": true}`, then `data: [DONE]`);
//! - `/openai/deployments/{deployment}/chat/completions`: the same, as Azure OpenAI serves
//!   it (the model reported is the body's, else the deployment name);
//! - `/model/{modelId}/converse`: Bedrock Converse JSON (camelCase `usage`);
//! - `/model/{modelId}/converse-stream`: Bedrock ConverseStream in Amazon's binary event
//!   stream framing (`application/vnd.amazon.eventstream`, CRC-32 checked messages:
//!   `messageStart`, one `contentBlockDelta` per chunk, `contentBlockStop`, `messageStop`,
//!   and `metadata` with the usage);
//! - `/v1/responses`: OpenAI Responses JSON, or SSE ending with `response.completed`;
//! - `/v1/messages`: Anthropic Messages JSON, or SSE (`message_start` with input and cache
//!   counts, `message_delta` with output tokens, `message_stop`);
//! - `/v1beta/models/{model}:generateContent`: Gemini JSON with `usageMetadata`;
//! - `/v1beta/models/{model}:streamGenerateContent`: Gemini SSE, usage in the last event;
//! - `/v1/models`: a model list; anything else: 404 with an OpenAI-style error.
//!
//! Request headers that steer a response (all optional):
//! - `x-mock-usage: prompt=100,completion=20,cached=0,cache_write=0,thoughts=0` sets the usage
//!   reported (defaults 10 and 5, others 0); `x-mock-usage: none` omits usage entirely.
//!   The same keys may be given in the JSON body as `"mock_usage": {"prompt": 100, …}`; the
//!   header wins.
//! - `x-mock-chunks: N` content events in a stream (default 3, at most 10 000);
//! - `x-mock-chunk-delay-ms: D` sleep before each content event of a stream (default 0);
//! - `x-mock-delay-ms: D` sleep before the response head (JSON and SSE);
//! - `x-mock-gate: NAME` hold the response (after any delay) until the test calls
//!   [`MockUpstream::open_gate`] with that name (at most 60 s), so that requests stay in
//!   flight together for as long as a test needs;
//! - `x-mock-status: S` answer status S with an OpenAI-style error body instead;
//! - `x-mock-response-bytes: N` pad the generated text to about N bytes.
//!
//! Every response carries `x-mock-request-id: <n>`, the index of the request in
//! [`MockUpstream::requests`], where the path, headers, body and timing are recorded.

use crate::wire::{find_header, write_chunk, write_last_chunk, Framing, WireReader};
use serde_json::{json, Value};
use std::io::{self, BufWriter, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Largest request body the mock accepts (larger ones get 413).
pub const MAX_REQUEST_BODY: usize = 64 * 1024 * 1024;
/// Idle time after which a kept-alive connection is closed by the mock.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
const MAX_CHUNKS: usize = 10_000;
const MAX_DELAY_MS: u64 = 60_000;

/// What the mock received for one request.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// Index in [`MockUpstream::requests`] (also sent back as `x-mock-request-id`).
    pub id: usize,
    pub method: String,
    /// Path with query string, as received.
    pub path: String,
    /// Header names are lower-case.
    pub headers: Vec<(String, String)>,
    pub body_len: usize,
    pub body: Vec<u8>,
    /// False while the body is being read, and for good when the connection ended before
    /// the body did (the request never reached the mock whole).
    pub complete: bool,
    /// When the request head was parsed.
    pub received_at: Instant,
    /// When the mock finished writing the response (`None` while writing or if it failed).
    pub finished_at: Option<Instant>,
}

impl RecordedRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    pub fn has_header(&self, name: &str) -> bool {
        self.header(name).is_some()
    }

    /// The body parsed as JSON, if it is JSON.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// Usage the mock reports in a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MockUsage {
    pub prompt: u64,
    pub completion: u64,
    pub cached: u64,
    pub cache_write: u64,
    pub thoughts: u64,
}

impl Default for MockUsage {
    fn default() -> Self {
        MockUsage {
            prompt: 10,
            completion: 5,
            cached: 0,
            cache_write: 0,
            thoughts: 0,
        }
    }
}

impl MockUsage {
    /// The `x-mock-usage` header value that asks for this usage.
    pub fn header_value(&self) -> String {
        format!(
            "prompt={},completion={},cached={},cache_write={},thoughts={}",
            self.prompt, self.completion, self.cached, self.cache_write, self.thoughts
        )
    }

    fn set(&mut self, key: &str, value: u64) {
        match key {
            "prompt" => self.prompt = value,
            "completion" => self.completion = value,
            "cached" => self.cached = value,
            "cache_write" => self.cache_write = value,
            "thoughts" => self.thoughts = value,
            _ => {}
        }
    }
}

#[derive(Default)]
struct State {
    requests: Vec<RecordedRequest>,
    connections: usize,
    /// Gates opened by [`MockUpstream::open_gate`].
    open_gates: Vec<String>,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    stop: AtomicBool,
    streams: Mutex<Vec<TcpStream>>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A running mock upstream; dropping it stops the listener and closes every connection.
pub struct MockUpstream {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl MockUpstream {
    /// Starts on a free port of 127.0.0.1.
    pub fn start() -> io::Result<MockUpstream> {
        MockUpstream::start_on(0)
    }

    /// Starts on the given port of 127.0.0.1 (0: any free port).
    pub fn start_on(port: u16) -> io::Result<MockUpstream> {
        let listener = TcpListener::bind(("127.0.0.1", port))?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            stop: AtomicBool::new(false),
            streams: Mutex::new(Vec::new()),
        });
        let acceptor_shared = Arc::clone(&shared);
        let acceptor = thread::Builder::new()
            .name("mock-upstream-accept".into())
            .spawn(move || accept_loop(listener, acceptor_shared))?;
        Ok(MockUpstream {
            addr,
            shared,
            acceptor: Some(acceptor),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Everything received so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.lock().requests.clone()
    }

    pub fn request(&self, id: usize) -> Option<RecordedRequest> {
        self.shared.lock().requests.get(id).cloned()
    }

    pub fn request_count(&self) -> usize {
        self.shared.lock().requests.len()
    }

    /// Connections accepted so far.
    pub fn connection_count(&self) -> usize {
        self.shared.lock().connections
    }

    /// Forgets the recorded requests (ids keep counting from 0 again).
    pub fn clear(&self) {
        self.shared.lock().requests.clear();
    }

    /// Lets every response held by `x-mock-gate: <name>` go (now and from now on).
    pub fn open_gate(&self, name: &str) {
        self.shared.lock().open_gates.push(name.to_string());
        self.shared.changed.notify_all();
    }

    /// Requests whose body arrived whole.
    pub fn complete_count(&self) -> usize {
        self.shared
            .lock()
            .requests
            .iter()
            .filter(|r| r.complete)
            .count()
    }

    /// Waits until at least `n` requests were received (heads); false on timeout.
    pub fn wait_for_requests(&self, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.lock();
        while state.requests.len() < n {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            state = match self.shared.changed.wait_timeout(state, deadline - now) {
                Ok((guard, _)) => guard,
                Err(p) => p.into_inner().0,
            };
        }
        true
    }

    /// Waits until the response to request `id` was completely written; false on timeout.
    pub fn wait_finished(&self, id: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.lock();
        loop {
            if state
                .requests
                .get(id)
                .is_some_and(|r| r.finished_at.is_some())
            {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            state = match self.shared.changed.wait_timeout(state, deadline - now) {
                Ok((guard, _)) => guard,
                Err(p) => p.into_inner().0,
            };
        }
    }
}

impl Drop for MockUpstream {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Responses held at a gate go now.
        self.shared.changed.notify_all();
        // Wake the acceptor, then close every open connection so their threads end.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(handle) = self.acceptor.take() {
            let _ = handle.join();
        }
        let streams = std::mem::take(
            &mut *self
                .shared
                .streams
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        );
        for s in streams {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for conn in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(stream) = conn else { continue };
        if let Ok(clone) = stream.try_clone() {
            let mut streams = shared.streams.lock().unwrap_or_else(|p| p.into_inner());
            // Forget connections that are already closed (bounded list).
            streams.retain(|s| s.peer_addr().is_ok());
            streams.push(clone);
        }
        shared.lock().connections += 1;
        let conn_shared = Arc::clone(&shared);
        let _ = thread::Builder::new()
            .name("mock-upstream-conn".into())
            .spawn(move || {
                let _ = serve_connection(stream, &conn_shared);
            });
    }
}

fn serve_connection(stream: TcpStream, shared: &Shared) -> io::Result<()> {
    stream.set_read_timeout(Some(IDLE_TIMEOUT))?;
    stream.set_write_timeout(Some(IDLE_TIMEOUT))?;
    stream.set_nodelay(true)?;
    let mut writer = BufWriter::new(stream.try_clone()?);
    let mut reader = WireReader::new(stream);
    while !shared.stop.load(Ordering::SeqCst) {
        let Some(head) = reader.read_head()? else {
            return Ok(());
        };
        let received_at = Instant::now();
        let mut parts = head.first_line.split(' ');
        let method = parts.next().unwrap_or("").to_string();
        let path = parts.next().unwrap_or("").to_string();
        if head
            .header("expect")
            .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
        {
            writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
            writer.flush()?;
        }
        let framing = head.framing(false)?;
        let too_large = matches!(framing, Framing::ContentLength(n) if n > MAX_REQUEST_BODY);
        let close = head
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        // Recorded as soon as the head is in, so a request whose body never completes
        // (a proxy that resets it) is still visible, with `complete == false`.
        let id = {
            let mut state = shared.lock();
            let id = state.requests.len();
            state.requests.push(RecordedRequest {
                id,
                method: method.clone(),
                path: path.clone(),
                headers: head.headers.clone(),
                body_len: 0,
                body: Vec::new(),
                complete: false,
                received_at,
                finished_at: None,
            });
            shared.changed.notify_all();
            id
        };
        if too_large {
            write_simple(&mut writer, 413, "request body too large", &[])?;
            return Ok(());
        }
        let mut body = Vec::new();
        let read = reader.read_body(framing, MAX_REQUEST_BODY, &mut |data, _| {
            body.extend_from_slice(data)
        });
        {
            let mut state = shared.lock();
            if let Some(r) = state.requests.get_mut(id) {
                r.body_len = body.len();
                r.body = body.clone();
                r.complete = read.is_ok();
            }
            shared.changed.notify_all();
        }
        read?;
        if let Some(gate) = find_header(&head.headers, "x-mock-gate") {
            wait_for_gate(shared, gate);
        }
        respond(&mut writer, id, &method, &path, &head.headers, &body)?;
        {
            let mut state = shared.lock();
            if let Some(r) = state.requests.get_mut(id) {
                r.finished_at = Some(Instant::now());
            }
            shared.changed.notify_all();
        }
        if close {
            return Ok(());
        }
    }
    Ok(())
}

/// The knobs a request sets through `x-mock-*` headers and its body.
struct Steering {
    usage: Option<MockUsage>,
    chunks: usize,
    chunk_delay: Duration,
    delay: Duration,
    status: Option<u16>,
    pad: usize,
    stream: bool,
    /// `stream_options.include_usage` is `true`.
    include_usage: bool,
    model: Option<String>,
}

fn header_num(headers: &[(String, String)], name: &str) -> Option<u64> {
    find_header(headers, name).and_then(|v| v.trim().parse().ok())
}

fn steering(headers: &[(String, String)], body: &[u8]) -> Steering {
    let json: Option<Value> = serde_json::from_slice(body).ok();
    let mut usage = Some(MockUsage::default());
    if let Some(Value::Object(map)) = json.as_ref().and_then(|j| j.get("mock_usage")) {
        let mut u = MockUsage::default();
        for (k, v) in map {
            if let Some(n) = v.as_u64() {
                u.set(k, n);
            }
        }
        usage = Some(u);
    }
    if let Some(spec) = find_header(headers, "x-mock-usage") {
        if spec.trim().eq_ignore_ascii_case("none") {
            usage = None;
        } else {
            let mut u = MockUsage::default();
            for part in spec.split(',') {
                if let Some((k, v)) = part.split_once('=') {
                    if let Ok(n) = v.trim().parse::<u64>() {
                        u.set(k.trim(), n);
                    }
                }
            }
            usage = Some(u);
        }
    }
    let ms = |name| Duration::from_millis(header_num(headers, name).unwrap_or(0).min(MAX_DELAY_MS));
    Steering {
        usage,
        chunks: header_num(headers, "x-mock-chunks")
            .map_or(3, |n| usize::try_from(n).unwrap_or(MAX_CHUNKS))
            .clamp(1, MAX_CHUNKS),
        chunk_delay: ms("x-mock-chunk-delay-ms"),
        delay: ms("x-mock-delay-ms"),
        status: header_num(headers, "x-mock-status").and_then(|s| u16::try_from(s).ok()),
        pad: header_num(headers, "x-mock-response-bytes")
            .map_or(0, |n| usize::try_from(n).unwrap_or(0).min(MAX_REQUEST_BODY)),
        stream: json
            .as_ref()
            .and_then(|j| j.get("stream"))
            .and_then(Value::as_bool)
            .unwrap_or(false),
        include_usage: json
            .as_ref()
            .and_then(|j| j.pointer("/stream_options/include_usage"))
            .and_then(Value::as_bool)
            .unwrap_or(false),
        model: json
            .as_ref()
            .and_then(|j| j.get("model"))
            .and_then(Value::as_str)
            .map(str::to_string),
    }
}

/// Waits until the test opens `gate` (or the mock stops), at most `MAX_DELAY_MS`.
fn wait_for_gate(shared: &Shared, gate: &str) {
    let deadline = Instant::now() + Duration::from_millis(MAX_DELAY_MS);
    let mut state = shared.lock();
    while !state.open_gates.iter().any(|g| g == gate) && !shared.stop.load(Ordering::SeqCst) {
        let now = Instant::now();
        if now >= deadline {
            return;
        }
        state = match shared.changed.wait_timeout(state, deadline - now) {
            Ok((guard, _)) => guard,
            Err(p) => p.into_inner().0,
        };
    }
}

fn respond(
    w: &mut BufWriter<TcpStream>,
    id: usize,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> io::Result<()> {
    let s = steering(headers, body);
    if !s.delay.is_zero() {
        thread::sleep(s.delay);
    }
    let id_header = [("x-mock-request-id", id.to_string())];
    if let Some(status) = s.status {
        let err = json!({"error": {"message": format!("mock status {status}"),
            "type": "mock_error", "code": "mock_error", "param": null}});
        return write_json(w, status, &err, &id_header);
    }
    let route = path.split('?').next().unwrap_or("");
    let text = generated_text(s.pad);
    if let Some(rest) = route.strip_prefix("/v1beta/models/") {
        let (model, action) = rest.split_once(':').unwrap_or((rest, ""));
        return match action {
            "generateContent" => write_json(
                w,
                200,
                &gemini_body(model, &text, s.usage.as_ref()),
                &id_header,
            ),
            "streamGenerateContent" => {
                let events = gemini_events(model, &split_text(&text, s.chunks), s.usage.as_ref());
                write_sse(w, &events, &s, &id_header)
            }
            _ => write_simple(w, 404, "unknown gemini action", &id_header),
        };
    }
    if let Some((model, action)) = route
        .strip_prefix("/model/")
        .and_then(|rest| rest.rsplit_once('/'))
    {
        return match action {
            "converse" => write_json(w, 200, &converse_body(&text, s.usage.as_ref()), &id_header),
            "converse-stream" => {
                let messages = converse_stream(&split_text(&text, s.chunks), s.usage.as_ref());
                write_event_stream(w, &messages, &s, &id_header)
            }
            _ => write_simple(
                w,
                404,
                &format!("unknown bedrock action for {model}"),
                &id_header,
            ),
        };
    }
    let deployment = route
        .strip_prefix("/openai/deployments/")
        .and_then(|rest| rest.strip_suffix("/chat/completions"));
    let chat_route = if deployment.is_some() {
        "/v1/chat/completions"
    } else {
        route
    };
    match chat_route {
        "/v1/chat/completions" => {
            let model = s
                .model
                .clone()
                .or_else(|| deployment.map(str::to_string))
                .unwrap_or_else(|| "gpt-4o-mini".into());
            if s.stream {
                let usage = s.usage.as_ref().filter(|_| s.include_usage);
                let events = chat_events(&model, &split_text(&text, s.chunks), usage);
                write_sse(w, &events, &s, &id_header)
            } else {
                write_json(
                    w,
                    200,
                    &chat_body(&model, &text, s.usage.as_ref()),
                    &id_header,
                )
            }
        }
        "/v1/responses" => {
            let model = s.model.clone().unwrap_or_else(|| "gpt-4o-mini".into());
            if s.stream {
                let events =
                    responses_events(&model, &split_text(&text, s.chunks), s.usage.as_ref());
                write_sse(w, &events, &s, &id_header)
            } else {
                write_json(
                    w,
                    200,
                    &responses_body(&model, &text, s.usage.as_ref()),
                    &id_header,
                )
            }
        }
        "/v1/messages" => {
            let model = s
                .model
                .clone()
                .unwrap_or_else(|| "claude-sonnet-4-5".into());
            if s.stream {
                let events =
                    anthropic_events(&model, &split_text(&text, s.chunks), s.usage.as_ref());
                write_sse(w, &events, &s, &id_header)
            } else {
                write_json(
                    w,
                    200,
                    &anthropic_body(&model, &text, s.usage.as_ref()),
                    &id_header,
                )
            }
        }
        "/v1/models" if method.eq_ignore_ascii_case("GET") => {
            let list = json!({"object": "list", "data": [
                {"id": "gpt-4o-mini", "object": "model", "owned_by": "mock"},
                {"id": "claude-sonnet-4-5", "object": "model", "owned_by": "mock"}]});
            write_json(w, 200, &list, &id_header)
        }
        _ => {
            let err = json!({"error": {"message": format!("mock: no route for {route}"),
                "type": "invalid_request_error", "code": "not_found", "param": null}});
            write_json(w, 404, &err, &id_header)
        }
    }
}

fn generated_text(pad: usize) -> String {
    let mut text = String::from("Hello from the mock LLM.");
    while text.len() < pad {
        text.push_str(" lorem ipsum");
    }
    text
}

/// Splits `text` into `n` pieces (some may be empty when text is short).
fn split_text(text: &str, n: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let per = chars.len().div_ceil(n).max(1);
    let mut out: Vec<String> = chars.chunks(per).map(|c| c.iter().collect()).collect();
    while out.len() < n {
        out.push(String::new());
    }
    out
}

fn chat_usage(u: &MockUsage) -> Value {
    json!({"prompt_tokens": u.prompt, "completion_tokens": u.completion,
        "total_tokens": u.prompt + u.completion,
        "prompt_tokens_details": {"cached_tokens": u.cached}})
}

fn chat_body(model: &str, text: &str, usage: Option<&MockUsage>) -> Value {
    let mut body = json!({"id": "chatcmpl-mock", "object": "chat.completion", "created": 0,
        "model": model, "choices": [{"index": 0, "finish_reason": "stop",
        "message": {"role": "assistant", "content": text}}]});
    if let (Some(u), Some(obj)) = (usage, body.as_object_mut()) {
        obj.insert("usage".into(), chat_usage(u));
    }
    body
}

fn chat_events(model: &str, pieces: &[String], usage: Option<&MockUsage>) -> Vec<String> {
    let mut events: Vec<String> = pieces
        .iter()
        .map(|p| {
            let chunk = json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk",
                "created": 0, "model": model, "choices": [{"index": 0,
                "delta": {"content": p}, "finish_reason": null}]});
            format!("data: {chunk}\n\n")
        })
        .collect();
    let mut last = json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk",
        "created": 0, "model": model, "choices": [{"index": 0, "delta": {},
        "finish_reason": "stop"}], "usage": null});
    if let (Some(u), Some(obj)) = (usage, last.as_object_mut()) {
        obj.insert("usage".into(), chat_usage(u));
        obj.insert("choices".into(), json!([]));
    }
    events.push(format!("data: {last}\n\n"));
    events.push("data: [DONE]\n\n".into());
    events
}

fn converse_usage(u: &MockUsage) -> Value {
    json!({"inputTokens": u.prompt, "outputTokens": u.completion,
        "cacheReadInputTokens": u.cached, "cacheWriteInputTokens": u.cache_write,
        "totalTokens": u.prompt + u.completion + u.cached + u.cache_write})
}

fn converse_body(text: &str, usage: Option<&MockUsage>) -> Value {
    let mut body = json!({"output": {"message": {"role": "assistant",
        "content": [{"text": text}]}}, "stopReason": "end_turn",
        "metrics": {"latencyMs": 10}});
    if let (Some(u), Some(obj)) = (usage, body.as_object_mut()) {
        obj.insert("usage".into(), converse_usage(u));
    }
    body
}

/// ConverseStream's events, each `(event type, JSON payload)`.
fn converse_stream(pieces: &[String], usage: Option<&MockUsage>) -> Vec<(&'static str, Value)> {
    let mut events = vec![("messageStart", json!({"role": "assistant"}))];
    for p in pieces {
        events.push((
            "contentBlockDelta",
            json!({"contentBlockIndex": 0, "delta": {"text": p}}),
        ));
    }
    events.push(("contentBlockStop", json!({"contentBlockIndex": 0})));
    events.push(("messageStop", json!({"stopReason": "end_turn"})));
    let mut metadata = json!({"metrics": {"latencyMs": 10}});
    if let (Some(u), Some(obj)) = (usage, metadata.as_object_mut()) {
        obj.insert("usage".into(), converse_usage(u));
    }
    events.push(("metadata", metadata));
    events
}

/// One message of Amazon's binary event stream: a prelude (total and headers lengths, and
/// their CRC-32), string headers, the payload, and the CRC-32 of everything before it.
pub fn event_stream_message(event_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut headers = Vec::new();
    for (name, value) in [
        (":event-type", event_type),
        (":content-type", "application/json"),
        (":message-type", "event"),
    ] {
        headers.push(name.len() as u8);
        headers.extend_from_slice(name.as_bytes());
        headers.push(7);
        headers.extend_from_slice(&(value.len() as u16).to_be_bytes());
        headers.extend_from_slice(value.as_bytes());
    }
    let total = 12 + headers.len() + payload.len() + 4;
    let mut message = Vec::with_capacity(total);
    message.extend_from_slice(&(total as u32).to_be_bytes());
    message.extend_from_slice(&(headers.len() as u32).to_be_bytes());
    let prelude_crc = crc32fast::hash(&message);
    message.extend_from_slice(&prelude_crc.to_be_bytes());
    message.extend_from_slice(&headers);
    message.extend_from_slice(payload);
    let crc = crc32fast::hash(&message);
    message.extend_from_slice(&crc.to_be_bytes());
    message
}

/// Writes an event-stream response, chunked, one message per chunk (after `chunk_delay`
/// each, but the first).
fn write_event_stream(
    w: &mut BufWriter<TcpStream>,
    events: &[(&'static str, Value)],
    s: &Steering,
    extra: &[(&str, String)],
) -> io::Result<()> {
    write_head(
        w,
        200,
        &[
            ("content-type", "application/vnd.amazon.eventstream".into()),
            ("transfer-encoding", "chunked".into()),
        ],
        extra,
    )?;
    w.flush()?;
    for (i, (event_type, payload)) in events.iter().enumerate() {
        if i > 0 && !s.chunk_delay.is_zero() {
            thread::sleep(s.chunk_delay);
        }
        let bytes = serde_json::to_vec(payload).unwrap_or_default();
        write_chunk(w, &event_stream_message(event_type, &bytes))?;
    }
    write_last_chunk(w)
}

fn responses_usage(u: &MockUsage) -> Value {
    json!({"input_tokens": u.prompt, "output_tokens": u.completion,
        "total_tokens": u.prompt + u.completion,
        "input_tokens_details": {"cached_tokens": u.cached},
        "output_tokens_details": {"reasoning_tokens": 0}})
}

fn responses_body(model: &str, text: &str, usage: Option<&MockUsage>) -> Value {
    let mut body = json!({"id": "resp_mock", "object": "response", "status": "completed",
        "model": model, "output": [{"type": "message", "role": "assistant",
        "content": [{"type": "output_text", "text": text}]}]});
    if let (Some(u), Some(obj)) = (usage, body.as_object_mut()) {
        obj.insert("usage".into(), responses_usage(u));
    }
    body
}

fn responses_events(model: &str, pieces: &[String], usage: Option<&MockUsage>) -> Vec<String> {
    let mut events = vec![format!(
        "event: response.created\ndata: {}\n\n",
        json!({"type": "response.created", "response": {"id": "resp_mock",
            "status": "in_progress", "model": model}})
    )];
    for p in pieces {
        events.push(format!(
            "event: response.output_text.delta\ndata: {}\n\n",
            json!({"type": "response.output_text.delta", "delta": p})
        ));
    }
    let text: String = pieces.concat();
    events.push(format!(
        "event: response.completed\ndata: {}\n\n",
        json!({"type": "response.completed", "response": responses_body(model, &text, usage)})
    ));
    events
}

fn anthropic_body(model: &str, text: &str, usage: Option<&MockUsage>) -> Value {
    let mut body = json!({"id": "msg_mock", "type": "message", "role": "assistant",
        "model": model, "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn", "stop_sequence": null});
    if let (Some(u), Some(obj)) = (usage, body.as_object_mut()) {
        obj.insert(
            "usage".into(),
            json!({"input_tokens": u.prompt, "output_tokens": u.completion,
                "cache_read_input_tokens": u.cached,
                "cache_creation_input_tokens": u.cache_write}),
        );
    }
    body
}

fn anthropic_events(model: &str, pieces: &[String], usage: Option<&MockUsage>) -> Vec<String> {
    let sse = |name: &str, data: Value| format!("event: {name}\ndata: {data}\n\n");
    let mut start = json!({"type": "message_start", "message": {"id": "msg_mock",
        "type": "message", "role": "assistant", "model": model, "content": [],
        "stop_reason": null}});
    if let (Some(u), Some(msg)) = (
        usage,
        start.get_mut("message").and_then(Value::as_object_mut),
    ) {
        msg.insert(
            "usage".into(),
            json!({"input_tokens": u.prompt, "output_tokens": 1,
                "cache_read_input_tokens": u.cached,
                "cache_creation_input_tokens": u.cache_write}),
        );
    }
    let mut events = vec![
        sse("message_start", start),
        sse(
            "content_block_start",
            json!({"type": "content_block_start", "index": 0,
                "content_block": {"type": "text", "text": ""}}),
        ),
    ];
    for p in pieces {
        events.push(sse(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0,
                "delta": {"type": "text_delta", "text": p}}),
        ));
    }
    events.push(sse(
        "content_block_stop",
        json!({"type": "content_block_stop", "index": 0}),
    ));
    let mut delta = json!({"type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": null}});
    if let (Some(u), Some(obj)) = (usage, delta.as_object_mut()) {
        obj.insert("usage".into(), json!({"output_tokens": u.completion}));
    }
    events.push(sse("message_delta", delta));
    events.push(sse("message_stop", json!({"type": "message_stop"})));
    events
}

fn gemini_usage(u: &MockUsage) -> Value {
    json!({"promptTokenCount": u.prompt, "candidatesTokenCount": u.completion,
        "thoughtsTokenCount": u.thoughts, "cachedContentTokenCount": u.cached,
        "totalTokenCount": u.prompt + u.completion + u.thoughts})
}

fn gemini_chunk(model: &str, text: &str, finish: bool) -> Value {
    let mut cand = json!({"content": {"role": "model", "parts": [{"text": text}]}, "index": 0});
    if let (true, Some(obj)) = (finish, cand.as_object_mut()) {
        obj.insert("finishReason".into(), json!("STOP"));
    }
    json!({"candidates": [cand], "modelVersion": model})
}

fn gemini_body(model: &str, text: &str, usage: Option<&MockUsage>) -> Value {
    let mut body = gemini_chunk(model, text, true);
    if let (Some(u), Some(obj)) = (usage, body.as_object_mut()) {
        obj.insert("usageMetadata".into(), gemini_usage(u));
    }
    body
}

fn gemini_events(model: &str, pieces: &[String], usage: Option<&MockUsage>) -> Vec<String> {
    let n = pieces.len();
    pieces
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let last = i + 1 == n;
            let mut chunk = gemini_chunk(model, p, last);
            if let (true, Some(u), Some(obj)) = (last, usage, chunk.as_object_mut()) {
                obj.insert("usageMetadata".into(), gemini_usage(u));
            }
            format!("data: {chunk}\r\n\r\n")
        })
        .collect()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

fn write_head(
    w: &mut dyn Write,
    status: u16,
    headers: &[(&str, String)],
    extra: &[(&str, String)],
) -> io::Result<()> {
    write!(w, "HTTP/1.1 {status} {}\r\n", reason(status))?;
    for (k, v) in headers.iter().chain(extra) {
        write!(w, "{k}: {v}\r\n")?;
    }
    w.write_all(b"\r\n")
}

fn write_json(
    w: &mut BufWriter<TcpStream>,
    status: u16,
    body: &Value,
    extra: &[(&str, String)],
) -> io::Result<()> {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    write_head(
        w,
        status,
        &[
            ("content-type", "application/json".into()),
            ("content-length", bytes.len().to_string()),
        ],
        extra,
    )?;
    w.write_all(&bytes)?;
    w.flush()
}

fn write_simple(
    w: &mut BufWriter<TcpStream>,
    status: u16,
    message: &str,
    extra: &[(&str, String)],
) -> io::Result<()> {
    let err = json!({"error": {"message": message, "type": "mock_error",
        "code": "mock_error", "param": null}});
    write_json(w, status, &err, extra)
}

/// Writes an SSE response, chunked, flushing every event; the first event is written
/// without delay, each later one after `chunk_delay`.
fn write_sse(
    w: &mut BufWriter<TcpStream>,
    events: &[String],
    s: &Steering,
    extra: &[(&str, String)],
) -> io::Result<()> {
    write_head(
        w,
        200,
        &[
            ("content-type", "text/event-stream".into()),
            ("cache-control", "no-cache".into()),
            ("transfer-encoding", "chunked".into()),
        ],
        extra,
    )?;
    w.flush()?;
    for (i, event) in events.iter().enumerate() {
        if i > 0 && !s.chunk_delay.is_zero() {
            thread::sleep(s.chunk_delay);
        }
        write_chunk(w, event.as_bytes())?;
    }
    write_last_chunk(w)
}
