//! The HTTP context: reads what a callback makes available, asks the core's [`Flow`], and
//! carries out its answer. Header maps are only readable inside their own callback, so
//! everything the core needs later is copied out there.

use std::borrow::Cow;
use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, MapType};

use super::fleet::{dispatch, read_answer, QueueOutbox};
use super::host::{now_nanos, set_filter_state, EnvoyMetrics, MetricsHandle, SharedData};
use crate::config::Policy;
use crate::fleet::protocol::{Answer, Call};
use crate::flow::{Env, Flow, RequestAction, RequestHead};
use crate::identity::RequestHeaders;
use crate::rejection::LocalReply;

pub struct GovernanceStream {
    policy: Rc<Policy>,
    flow: Flow,
    metrics: MetricsHandle,
    /// Bytes of the request body Envoy holds for this filter (the body callbacks answered
    /// Pause) that were read already: each callback hands over everything held.
    request_body_read: usize,
    /// Fleet mode: the charge queue of this VM's root context.
    outbox: QueueOutbox,
    /// Fleet calls awaiting their answer: (token, index in the flow's round).
    calls: Vec<(u32, usize)>,
}

impl GovernanceStream {
    pub fn new(
        policy: Rc<Policy>,
        context_id: u32,
        metrics: Rc<EnvoyMetrics>,
        charge_queue: Option<u32>,
        alert_queue: Option<u32>,
    ) -> Self {
        Self {
            request_body_read: 0,
            flow: Flow::new(Rc::clone(&policy), context_id),
            policy,
            metrics: MetricsHandle(metrics),
            outbox: QueueOutbox {
                queue: charge_queue,
                alerts: alert_queue,
            },
            calls: Vec::new(),
        }
    }

    fn with_env<T>(&mut self, f: impl FnOnce(&mut Flow, &mut Env<'_>) -> T) -> T {
        let store = SharedData;
        let mut env = Env {
            store: &store,
            now: now_nanos(),
            metrics: &mut self.metrics,
            outbox: &mut self.outbox,
        };
        f(&mut self.flow, &mut env)
    }

    /// Does what the core decided, inside a request callback. Header removal is only asked
    /// for from the request headers callback, the one place the map is writable. Calls to
    /// Limitador hold the request (Pause) until their answers come.
    fn carry_out(&mut self, action: RequestAction) -> Action {
        match action {
            RequestAction::Continue { remove_headers } => {
                self.strip(remove_headers);
                Action::Continue
            }
            RequestAction::Reply(reply) => {
                self.send(&reply);
                Action::Pause
            }
            RequestAction::Call {
                remove_headers,
                calls,
            } => {
                self.strip(remove_headers);
                match self.dispatch_calls(calls) {
                    None => Action::Pause,
                    Some(decided) => self.carry_out(decided),
                }
            }
        }
    }

    /// Does what the core decided once an answer came (the request is held).
    fn carry_out_later(&mut self, action: RequestAction) {
        match action {
            RequestAction::Continue { .. } => self.resume_http_request(),
            RequestAction::Reply(reply) => self.send(&reply),
            RequestAction::Call { calls, .. } => {
                if let Some(decided) = self.dispatch_calls(calls) {
                    self.carry_out_later(decided);
                }
            }
        }
    }

    fn strip(&self, names: Vec<String>) {
        for name in names {
            self.set_http_request_header(&name, None);
        }
    }

    /// Sends the calls. A call the host refuses at once is an answer already (unavailable);
    /// when that completes the round, the decision is returned.
    fn dispatch_calls(&mut self, calls: Vec<Call>) -> Option<RequestAction> {
        self.calls.clear();
        let mut failed = Vec::new();
        for (index, call) in calls.iter().enumerate() {
            let token = self
                .policy
                .fleet
                .as_ref()
                .and_then(|fleet| dispatch(fleet, call));
            match token {
                Some(token) => self.calls.push((token, index)),
                None => failed.push(index),
            }
        }
        let mut decided = None;
        for index in failed {
            if let Some(action) =
                self.with_env(|flow, env| flow.on_call_answer(index, Answer::failed(), env))
            {
                decided = Some(action);
            }
        }
        decided
    }

    /// Replaces the held request body (`body_size` bytes, `whole` when already read) with
    /// the flow's rewrite of it, if it has one.
    fn rewrite_held_body(&mut self, body_size: usize, whole: Option<&[u8]>) {
        let read;
        let body = match whole {
            Some(body) => body,
            None => {
                read = self.get_http_request_body(0, body_size).unwrap_or_default();
                &read
            }
        };
        // No clock read, unlike `with_env`: the rewrite only counts.
        let rewritten = self.flow.rewrite_request_body(body, &mut self.metrics);
        if let Some(rewritten) = rewritten {
            self.set_http_request_body(0, body_size, &rewritten);
        }
    }

    /// Writes what the exchange was charged as filter state, once it was charged (with
    /// `filter_state` on; see `filter_state.rs`). Off, it costs one test.
    #[inline(always)]
    fn write_filter_state(&mut self) {
        if self.policy.filter_state {
            self.write_charge_record();
        }
    }

    #[cold]
    #[inline(never)]
    fn write_charge_record(&mut self) {
        let Some(record) = self.flow.take_charge_record() else {
            return;
        };
        record.write(&self.policy, &mut |name, value| {
            if let Err(status) = set_filter_state(name, value) {
                log::warn!("filter state {name} not set: status {status}");
            }
        });
    }

    fn send(&self, reply: &LocalReply) {
        let headers: Vec<(&str, &str)> = reply
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        self.send_http_response(reply.status, headers, Some(&reply.body));
    }
}

impl Context for GovernanceStream {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        let Some(at) = self.calls.iter().position(|(token, _)| *token == token_id) else {
            return;
        };
        let (_, index) = self.calls.swap_remove(at);
        let answer = read_answer(num_headers, body_size);
        if let Some(action) = self.with_env(|flow, env| flow.on_call_answer(index, answer, env)) {
            self.carry_out_later(action);
        }
    }
}

impl HttpContext for GovernanceStream {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        // One hostcall per header the core asks for, instead of copying the whole map (Envoy
        // matches names case-insensitively).
        let headers = HostRequestHeaders;
        let method = header_string(&headers, ":method");
        let path = header_string(&headers, ":path");
        let head = RequestHead {
            method: &method,
            path: &path,
            headers: &headers,
            end_of_stream,
        };
        let action = self.with_env(|flow, env| flow.on_request_headers(&head, env));
        if self.flow.holds_request_body() {
            // Its body may be rewritten, and Envoy would forward this length as it is.
            self.set_http_request_header("content-length", None);
        }
        self.carry_out(action)
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.flow.is_calling() {
            // Held for Limitador's answers; what Envoy buffers meanwhile was read already.
            return Action::Pause;
        }
        // Continue passes each frame on and Envoy keeps nothing; while the body is held for
        // the stream-usage rewrite, Envoy hands over all it holds and only the end is new.
        let start = self.request_body_read.min(body_size);
        let chunk = self
            .get_http_request_body(start, body_size.saturating_sub(start))
            .unwrap_or_default();
        let action = self.with_env(|flow, env| flow.on_request_body(&chunk, end_of_stream, env));
        if self.flow.request_body_to_rewrite() && !matches!(action, RequestAction::Reply(_)) {
            self.rewrite_held_body(body_size, (start == 0).then_some(chunk.as_slice()));
        }
        let holding = self.flow.holds_request_body();
        self.request_body_read = if holding { body_size } else { 0 };
        match self.carry_out(action) {
            Action::Continue if holding => Action::Pause,
            other => other,
        }
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        if self.flow.is_calling() {
            return Action::Pause;
        }
        // Trailers end the request body: decide now if the body never named a model. A
        // held body is not rewritten here (the body buffer is the body callbacks'); it
        // goes on as it came.
        let action = self.with_env(|flow, env| flow.on_request_body(&[], true, env));
        self.carry_out(action)
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let content_type = self
            .get_http_response_header_bytes("content-type")
            .and_then(|value| text_of(value).ok());
        let status = self
            .get_http_response_header_bytes(":status")
            .and_then(|value| text_of(value).ok()?.parse::<u16>().ok());
        self.with_env(|flow, env| {
            flow.on_response_headers_with(
                status,
                content_type.as_deref(),
                env,
                &mut |name, value| {
                    // Replace, like `set_http_response_header`; the map is writable here.
                    let _ = hostcalls::set_map_value_bytes(
                        MapType::HttpResponseHeaders,
                        name,
                        Some(value),
                    );
                },
            )
        });
        let names = self.flow.token_count_headers();
        if !names.is_empty() {
            let values: Vec<(&str, Vec<u8>)> = names
                .iter()
                .filter_map(|name| Some((*name, self.get_http_response_header_bytes(name)?)))
                .collect();
            self.flow.on_token_count_headers(
                values.iter().map(|(name, value)| (*name, value.as_slice())),
            );
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let chunk = self
            .get_http_response_body(0, body_size)
            .unwrap_or_default();
        if end_of_stream {
            self.with_env(|flow, env| flow.on_response_body(&chunk, true, env));
            self.write_filter_state();
        } else {
            // Only the end of the body charges (and reads the clock): scan without a hostcall.
            self.flow.feed_response_body(&chunk);
        }
        Action::Continue
    }

    fn on_http_response_trailers(&mut self, _num_trailers: usize) -> Action {
        self.with_env(|flow, env| flow.on_response_trailers(env));
        self.write_filter_state();
        Action::Continue
    }

    fn on_log(&mut self) {
        self.with_env(|flow, env| flow.on_stream_end(env));
        self.write_filter_state();
    }
}

/// The request header map of the current callback, read one header at a time. Only valid
/// inside `on_http_request_headers` (Envoy refuses the map afterwards, and the SDK panics).
struct HostRequestHeaders;

impl RequestHeaders for HostRequestHeaders {
    fn get(&self, name: &str) -> Option<Cow<'_, [u8]>> {
        hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, name)
            .ok()
            .flatten()
            .map(Cow::Owned)
    }
}

fn header_string(headers: &HostRequestHeaders, name: &str) -> String {
    match headers.get(name).map(Cow::into_owned).map(text_of) {
        Some(Ok(text)) => text,
        Some(Err(err)) => String::from_utf8_lossy(err.as_bytes()).into_owned(),
        None => String::new(),
    }
}

/// A header value as text, like `String::from_utf8`. Header values are nearly always
/// ASCII, and testing that costs a fraction of the UTF-8 check in wasm.
fn text_of(bytes: Vec<u8>) -> Result<String, std::string::FromUtf8Error> {
    if bytes.is_ascii() {
        // SAFETY: ASCII is valid UTF-8.
        Ok(unsafe { String::from_utf8_unchecked(bytes) })
    } else {
        String::from_utf8(bytes)
    }
}
