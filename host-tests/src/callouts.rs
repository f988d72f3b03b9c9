//! HTTP callouts as a test sees them: the clusters a host declares, the record of every
//! `proxy_http_call`, and the answers a test (or a cluster's responder) gives.
//!
//! Envoy's own answers are reproduced byte for byte as Envoy 1.40 produced them on loopback
//! (see the crate docs, "Callouts"): a timeout is a `504` with body `upstream request timeout`,
//! a refused connection a `503` with Envoy's "upstream connect error" body, and a connection
//! broken mid-response the callback with no headers, no body and `proxy_get_status` = 11
//! ("reset").

use crate::abi::headers::Headers;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One `proxy_http_call` the host accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Callout {
    /// The token the guest got (4, 8, 12, ... per VM).
    pub token: u32,
    /// Label of the VM that dispatched it ("worker 0", "canary", ...).
    pub vm: String,
    /// The context whose callback dispatched it (the effective context: a stream or a root).
    pub context: u32,
    /// The root context the answer will be delivered to.
    pub root: u32,
    /// Cluster name.
    pub cluster: String,
    /// Request headers as Envoy sends them (keys lowercased, `content-length` set for a body).
    pub headers: Headers,
    /// Request body.
    pub body: Vec<u8>,
    /// Request trailers (empty if none).
    pub trailers: Headers,
    /// Timeout in milliseconds (0 = none).
    pub timeout_ms: u32,
    /// Host clock (Unix nanoseconds) when it was dispatched.
    pub dispatched_at_nanos: i64,
}

impl Callout {
    /// First value of request header `key`.
    pub fn header(&self, key: &str) -> Option<&str> {
        self.headers.get(key)
    }
    /// The body as text (lossy).
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A response from the cluster's upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CalloutResponse {
    /// Headers including `:status`.
    pub headers: Headers,
    /// Body bytes.
    pub body: Vec<u8>,
    /// Trailers, if the upstream sent any.
    pub trailers: Option<Headers>,
}

impl CalloutResponse {
    /// A response with `status` and no body.
    pub fn status(status: u32) -> CalloutResponse {
        CalloutResponse {
            headers: Headers::from_pairs([(":status", status.to_string())]),
            body: Vec::new(),
            trailers: None,
        }
    }
    /// `status` with a JSON body (content-type and content-length set).
    pub fn json(status: u32, body: impl Into<Vec<u8>>) -> CalloutResponse {
        CalloutResponse::status(status).body("application/json", body)
    }
    /// Sets the body with its content-type and content-length.
    pub fn body(mut self, content_type: &str, body: impl Into<Vec<u8>>) -> CalloutResponse {
        self.body = body.into();
        self.headers.replace("content-type", content_type);
        self.headers
            .replace("content-length", &self.body.len().to_string());
        self
    }
    /// Adds a header.
    pub fn header(mut self, key: &str, value: &str) -> CalloutResponse {
        self.headers.add(key, value);
        self
    }
    /// Adds a trailer.
    pub fn trailer(mut self, key: &str, value: &str) -> CalloutResponse {
        self.trailers
            .get_or_insert_with(Headers::default)
            .add(key, value);
        self
    }

    /// What Envoy's router answers when the call's timeout expires first.
    pub(crate) fn envoy_timeout() -> CalloutResponse {
        CalloutResponse::status(504)
            .body("text/plain", "upstream request timeout")
            .envoy_order()
    }
    /// What Envoy's router answers when nobody listens at the cluster's endpoint.
    pub(crate) fn envoy_connection_refused() -> CalloutResponse {
        CalloutResponse::status(503).body(
            "text/plain",
            "upstream connect error or disconnect/reset before headers. reset reason: remote connection failure",
        )
        .envoy_order()
    }
    /// The header order of Envoy's own replies: `:status`, `content-length`, `content-type`.
    fn envoy_order(mut self) -> CalloutResponse {
        let mut ordered = Headers::default();
        for key in [":status", "content-length", "content-type"] {
            if let Some(v) = self.headers.get_bytes(key) {
                ordered.add_bytes(key, v);
            }
        }
        self.headers = ordered;
        self
    }
}

/// How a callout ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CalloutAnswer {
    /// The upstream answers (any status: a 429 is an answer like a 200).
    Respond(CalloutResponse),
    /// The connection breaks after the response started: Envoy calls back with no headers,
    /// no body, and `proxy_get_status` = (11, "reset"); the response maps are unavailable.
    Reset,
    /// Nobody listens at the endpoint: Envoy answers `503` itself (see the crate docs).
    ConnectionRefused,
    /// The upstream never answers: only the call's timeout (if any) ends it (with a `504`).
    Never,
    /// The inner answer, after this long on the host clock. A timeout that expires first wins.
    After(Duration, Box<CalloutAnswer>),
}

impl CalloutAnswer {
    /// [`CalloutAnswer::Respond`].
    pub fn respond(response: CalloutResponse) -> CalloutAnswer {
        CalloutAnswer::Respond(response)
    }
    /// This answer, `delay` later.
    pub fn after(self, delay: Duration) -> CalloutAnswer {
        CalloutAnswer::After(delay, Box::new(self))
    }
}

/// Decides how a cluster answers each call; it may keep state (count calls, fail the n-th).
/// It runs inside the guest's `proxy_http_call`, so it must not block.
pub type Responder = Box<dyn FnMut(&Callout) -> CalloutAnswer + Send>;

#[derive(Default)]
struct Cluster {
    /// No endpoints: Envoy fails the call inline (`proxy_http_call` = InternalFailure).
    no_endpoints: bool,
    responder: Option<Arc<Mutex<Responder>>>,
}

/// The upstream clusters of one Envoy process (shared by its VMs; cheap to clone). Calls to a
/// cluster without a responder wait until the test answers them ([`crate::Vm::answer_callout`]).
#[derive(Clone, Default)]
pub struct Clusters {
    inner: Arc<Mutex<HashMap<String, Cluster>>>,
}

/// What the cluster manager says about a call to a cluster, at dispatch.
pub(crate) enum Route {
    Unknown,
    NoEndpoints,
    Answer(Option<Arc<Mutex<Responder>>>),
}

impl Clusters {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Cluster>> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
    /// Declares a cluster whose calls wait for a hand-given answer.
    pub fn declare(&self, name: &str) {
        self.lock().entry(name.to_string()).or_default();
    }
    /// Declares a cluster with no endpoints: `proxy_http_call` fails with InternalFailure and
    /// no callback ever comes (Envoy's router answers "no healthy upstream" inline).
    pub fn declare_without_endpoints(&self, name: &str) {
        self.lock().insert(
            name.to_string(),
            Cluster {
                no_endpoints: true,
                responder: None,
            },
        );
    }
    /// Declares (if needed) `name` and makes `responder` answer its calls from now on.
    pub fn set_responder(
        &self,
        name: &str,
        responder: impl FnMut(&Callout) -> CalloutAnswer + Send + 'static,
    ) {
        let mut map = self.lock();
        let cluster = map.entry(name.to_string()).or_default();
        cluster.no_endpoints = false;
        cluster.responder = Some(Arc::new(Mutex::new(Box::new(responder))));
    }
    /// Removes `name`'s responder: its calls wait for hand-given answers again.
    pub fn clear_responder(&self, name: &str) {
        if let Some(c) = self.lock().get_mut(name) {
            c.responder = None;
        }
    }
    pub(crate) fn route(&self, name: &str) -> Route {
        match self.lock().get(name) {
            None => Route::Unknown,
            Some(c) if c.no_endpoints => Route::NoEndpoints,
            Some(c) => Route::Answer(c.responder.clone()),
        }
    }
}

impl std::fmt::Debug for Clusters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> = self.lock().keys().cloned().collect();
        f.debug_struct("Clusters").field("names", &names).finish()
    }
}
