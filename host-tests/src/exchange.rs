//! The high-level API: one whole request/response through a VM, framed as Envoy frames an
//! HTTP/1.1 exchange (headers, one data frame, then an empty end-of-stream frame). While the
//! stream waits for the plugin's callouts, the exchange moves the host clock to the next answer
//! or timeout and delivers it, as time would pass for a real client.

use crate::abi::headers::Headers;
use crate::abi::log::LogEntry;
use crate::stream::{ClientView, StreamId, StreamView, UpstreamView};
use crate::vm::Vm;

/// A downstream request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Headers including pseudo-headers (`:method`, `:path`, `:authority`, `:scheme`).
    pub headers: Headers,
    /// Body bytes (empty = the headers end the stream).
    pub body: Vec<u8>,
    /// Trailers, if any.
    pub trailers: Option<Headers>,
}

impl Request {
    fn new(method: &str, path: &str) -> Request {
        let headers = Headers::from_pairs([
            (":method", method),
            (":path", path),
            (":authority", "example.com"),
            (":scheme", "http"),
            ("x-request-id", "req-1"),
        ]);
        Request {
            headers,
            body: Vec::new(),
            trailers: None,
        }
    }
    /// `GET path` without a body.
    pub fn get(path: &str) -> Request {
        Request::new("GET", path)
    }
    /// `POST path` with a JSON body (content-type and content-length set).
    pub fn post(path: &str, body: impl Into<Vec<u8>>) -> Request {
        let mut r = Request::new("POST", path);
        r.body = body.into();
        r.headers.add("content-type", "application/json");
        r.headers.add("content-length", &r.body.len().to_string());
        r
    }
    /// Adds a header.
    pub fn header(mut self, key: &str, value: &str) -> Request {
        self.headers.add(key, value);
        self
    }
    /// Adds a request header whose value need not be UTF-8 (Envoy passes bytes through).
    pub fn header_bytes(mut self, key: &str, value: &[u8]) -> Request {
        self.headers.add_bytes(key, value);
        self
    }
    /// Adds a trailer.
    pub fn trailer(mut self, key: &str, value: &str) -> Request {
        self.trailers
            .get_or_insert_with(Headers::default)
            .add(key, value);
        self
    }
}

/// An upstream response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Headers including `:status`.
    pub headers: Headers,
    /// Body bytes.
    pub body: Vec<u8>,
    /// Trailers, if any.
    pub trailers: Option<Headers>,
}

impl Response {
    /// A response with `status` and no body.
    pub fn status(status: u32) -> Response {
        Response {
            headers: Headers::from_pairs([(":status", status.to_string())]),
            body: Vec::new(),
            trailers: None,
        }
    }
    /// `200` with a JSON body.
    pub fn ok(body: impl Into<Vec<u8>>) -> Response {
        Response::status(200).body("application/json", body)
    }
    /// Sets the body with its content-type and content-length.
    pub fn body(mut self, content_type: &str, body: impl Into<Vec<u8>>) -> Response {
        self.body = body.into();
        self.headers.replace("content-type", content_type);
        self.headers
            .replace("content-length", &self.body.len().to_string());
        self
    }
    /// Adds a header.
    pub fn header(mut self, key: &str, value: &str) -> Response {
        self.headers.add(key, value);
        self
    }
    /// Adds a trailer.
    pub fn trailer(mut self, key: &str, value: &str) -> Response {
        self.trailers
            .get_or_insert_with(Headers::default)
            .add(key, value);
        self
    }
}

/// The outcome of [`Vm::exchange`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    /// The stream, still inspectable (and drivable, if stalled) on the VM.
    pub stream: StreamId,
    /// What the client saw (a local reply, or the upstream response as modified).
    pub client: ClientView,
    /// What the upstream received (headers after the filter, body, trailers).
    pub upstream: UpstreamView,
    /// The stream did not finish: the filter holds it (e.g. paused headers waiting for a body).
    pub stalled: bool,
    /// Fuel spent by the plugin's callbacks during the exchange.
    pub fuel: u64,
    /// Logs the VM produced during the exchange.
    pub logs: Vec<LogEntry>,
}

impl Exchange {
    /// True if any log line of the exchange contains `needle`.
    pub fn has_log(&self, needle: &str) -> bool {
        self.logs.iter().any(|l| l.message.contains(needle))
    }
}

impl Vm {
    /// Sends one side's frames back to back, as one read: callout answers and queue
    /// notifications wait until the whole side was sent.
    fn send_side(
        &mut self,
        s: StreamId,
        chunk: usize,
        response: bool,
        headers: &Headers,
        body: &[u8],
        trailers: Option<&Headers>,
    ) {
        self.batching = true;
        self.send_frames(s, chunk, response, headers, body, trailers);
        self.batching = false;
    }

    fn send_frames(
        &mut self,
        s: StreamId,
        chunk: usize,
        response: bool,
        headers: &Headers,
        body: &[u8],
        trailers: Option<&Headers>,
    ) {
        let headers_only = body.is_empty() && trailers.is_none();
        if response {
            self.send_response_headers(s, headers, headers_only);
        } else {
            self.send_request_headers(s, headers, headers_only);
        }
        for part in body.chunks(chunk.max(1)) {
            if response {
                self.send_response_body(s, part, false);
            } else {
                self.send_request_body(s, part, false);
            }
        }
        match (trailers, headers_only) {
            (Some(t), _) if response => self.send_response_trailers(s, t),
            (Some(t), _) => self.send_request_trailers(s, t),
            (None, false) if response => self.send_response_body(s, &[], true),
            (None, false) => self.send_request_body(s, &[], true),
            (None, true) => {}
        }
    }

    /// Runs one whole exchange: the request goes through the plugin; once the upstream has the
    /// whole request it answers `response`, which goes back through the plugin. Each body is one
    /// data frame followed by an empty end-of-stream frame (or the trailers). Callout answers
    /// are delivered as they come due; while the stream waits for them, the host clock is moved
    /// to the next one (or to the call's timeout).
    pub fn exchange(&mut self, request: &Request, response: &Response) -> Exchange {
        self.exchange_chunked(request, response, usize::MAX)
    }

    /// Like [`Vm::exchange`], with bodies split into data frames of at most `chunk` bytes.
    pub fn exchange_chunked(
        &mut self,
        request: &Request,
        response: &Response,
        chunk: usize,
    ) -> Exchange {
        let logs_before = self.logs().len();
        let fuel_before = self.fuel_consumed();
        let s = self.open_stream();
        self.send_side(
            s,
            chunk,
            false,
            &request.headers,
            &request.body,
            request.trailers.as_ref(),
        );
        self.wait_for_callouts(s, |v| v.finished || upstream_has_request(v));
        let view = self.stream(s);
        if !view.finished && upstream_has_request(&view) {
            self.send_side(
                s,
                chunk,
                true,
                &response.headers,
                &response.body,
                response.trailers.as_ref(),
            );
            self.wait_for_callouts(s, |v| v.finished);
        }
        let view = self.stream(s);
        Exchange {
            stream: s,
            client: view.client,
            upstream: view.upstream,
            stalled: !view.finished,
            fuel: self.fuel_consumed() - fuel_before,
            logs: self.logs().get(logs_before..).unwrap_or(&[]).to_vec(),
        }
    }
}

/// Rounds of "move the clock to the next answer" one wait may take before calling the stream
/// stalled (a plugin that keeps dispatching new calls never lets it finish).
const MAX_WAIT_ROUNDS: usize = 10_000;

impl Vm {
    /// Until `done` holds for stream `s`: delivers what is due, then moves the host clock to
    /// this VM's next callout answer or timeout. Stops when nothing more can come.
    fn wait_for_callouts(&mut self, s: StreamId, done: impl Fn(&StreamView) -> bool) {
        for _ in 0..MAX_WAIT_ROUNDS {
            self.run_due();
            if done(&self.stream(s)) {
                return;
            }
            let Some(at) = self.next_due_nanos() else {
                return;
            };
            let clock = self.clock();
            let wait = at.saturating_sub(clock.monotonic_nanos());
            clock.advance(std::time::Duration::from_nanos(
                u64::try_from(wait).unwrap_or(0),
            ));
        }
    }
}

/// True once the upstream has the whole request: its end passed the filter, or, for a body
/// framed by `content-length`, all of its bytes did. An HTTP/1.1 upstream answers then, even
/// while the filter still holds the empty end-of-stream frame (measured with Envoy 1.40).
fn upstream_has_request(view: &StreamView) -> bool {
    let up = &view.upstream;
    if up.complete {
        return true;
    }
    let length = up
        .headers
        .as_ref()
        .and_then(|h| h.get("content-length"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    length.is_some_and(|n| n > 0 && up.body.len() >= n)
}
