//! The HTTP context: reads what a callback makes available, asks the core's [`Flow`], and
//! carries out its answer. Header maps are only readable inside their own callback, so
//! everything the core needs later is copied out there.

use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;

use super::host::{now_nanos, EnvoyMetrics, MetricsHandle, SharedData};
use crate::config::Policy;
use crate::flow::{Env, Flow, RequestAction, RequestHead};
use crate::rejection::LocalReply;

pub struct GovernanceStream {
    flow: Flow,
    metrics: MetricsHandle,
    creator_tag: u64,
}

impl GovernanceStream {
    pub fn new(
        policy: Rc<Policy>,
        context_id: u32,
        metrics: Rc<EnvoyMetrics>,
        creator_tag: u64,
    ) -> Self {
        Self {
            flow: Flow::new(policy, context_id),
            metrics: MetricsHandle(metrics),
            creator_tag,
        }
    }

    fn with_env<T>(&mut self, f: impl FnOnce(&mut Flow, &mut Env<'_>) -> T) -> T {
        let store = SharedData;
        let mut env = Env {
            store: &store,
            now: now_nanos(),
            metrics: &mut self.metrics,
            creator_tag: self.creator_tag,
        };
        f(&mut self.flow, &mut env)
    }

    /// Does what the core decided. Header removal is only asked for from the request
    /// headers callback, the one place the map is writable.
    fn carry_out(&self, action: RequestAction) -> Action {
        match action {
            RequestAction::Continue { remove_headers } => {
                for name in remove_headers {
                    self.set_http_request_header(&name, None);
                }
                Action::Continue
            }
            RequestAction::Reply(reply) => {
                self.send(&reply);
                Action::Pause
            }
        }
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

impl Context for GovernanceStream {}

impl HttpContext for GovernanceStream {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let headers: Vec<(String, Vec<u8>)> = self
            .get_http_request_headers_bytes()
            .into_iter()
            .map(|(name, value)| (name.to_ascii_lowercase(), value))
            .collect();
        let method = pseudo_header(&headers, ":method");
        let path = pseudo_header(&headers, ":path");
        let head = RequestHead {
            method: &method,
            path: &path,
            headers: &headers,
            end_of_stream,
        };
        let action = self.with_env(|flow, env| flow.on_request_headers(&head, env));
        self.carry_out(action)
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        // Continue passes each frame on; only the body's own bytes are read, never buffered.
        let chunk = self.get_http_request_body(0, body_size).unwrap_or_default();
        let action = self.with_env(|flow, env| flow.on_request_body(&chunk, end_of_stream, env));
        self.carry_out(action)
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        // Trailers end the request body: decide now if the body never named a model.
        let action = self.with_env(|flow, env| flow.on_request_body(&[], true, env));
        self.carry_out(action)
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let content_type = self
            .get_http_response_header_bytes("content-type")
            .and_then(|value| String::from_utf8(value).ok());
        let status = self
            .get_http_response_header_bytes(":status")
            .and_then(|value| std::str::from_utf8(&value).ok()?.parse::<u16>().ok());
        let add = self
            .with_env(|flow, env| flow.on_response_headers(status, content_type.as_deref(), env));
        for (name, value) in add {
            self.set_http_response_header(&name, Some(&value));
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let chunk = self
            .get_http_response_body(0, body_size)
            .unwrap_or_default();
        self.with_env(|flow, env| flow.on_response_body(&chunk, end_of_stream, env));
        Action::Continue
    }

    fn on_http_response_trailers(&mut self, _num_trailers: usize) -> Action {
        self.with_env(|flow, env| flow.on_response_trailers(env));
        Action::Continue
    }

    fn on_log(&mut self) {
        self.with_env(|flow, env| flow.on_stream_end(env));
    }
}

fn pseudo_header(headers: &[(String, Vec<u8>)], name: &str) -> String {
    headers
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| String::from_utf8_lossy(value).into_owned())
        .unwrap_or_default()
}
