//! Public snapshots of a stream: what the client saw, what the upstream received.

use std::collections::BTreeMap;

use crate::abi::headers::Headers;

/// Handle of one HTTP stream on a [`crate::Vm`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StreamId(pub(crate) u64);

/// What the upstream (the test's backend) received from the filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpstreamView {
    /// Request headers after the filter, once forwarded.
    pub headers: Option<Headers>,
    /// Request body bytes forwarded so far.
    pub body: Vec<u8>,
    /// Request trailers, if forwarded.
    pub trailers: Option<Headers>,
    /// The request ended (end_of_stream passed the filter).
    pub complete: bool,
    /// The upstream request was abandoned (local reply or reset before it completed).
    pub reset: bool,
}

/// A local reply the client got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReplyInfo {
    /// HTTP status passed to the reply.
    pub status: u32,
    /// Response code details (e.g. `wasm_fail_stream`, `request_payload_too_large`).
    pub details: String,
    /// True if the plugin sent it (`proxy_send_local_response`), false if Envoy did.
    pub from_plugin: bool,
}

/// What the downstream client saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientView {
    /// `:status` of the response headers the client got, 0 if none.
    pub status: u32,
    /// Response headers as the client got them.
    pub headers: Option<Headers>,
    /// Response body bytes received so far.
    pub body: Vec<u8>,
    /// Response trailers, if any.
    pub trailers: Option<Headers>,
    /// The response ended normally.
    pub complete: bool,
    /// The stream was reset (client reset, `proxy_close_stream`, reply after headers sent).
    pub reset: bool,
    /// Set when the response is a local reply.
    pub local_reply: Option<LocalReplyInfo>,
}

/// A snapshot of one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamView {
    /// The plugin's context id, once created.
    pub ctx: Option<u32>,
    /// What the client saw.
    pub client: ClientView,
    /// What the upstream received.
    pub upstream: UpstreamView,
    /// The filter holds the request (headers or body stopped, waiting for continue/more data).
    pub request_stopped: bool,
    /// The filter holds the response.
    pub response_stopped: bool,
    /// on_log/on_done/on_delete have run (or the stream ended while the VM was failed).
    pub finished: bool,
    /// The filter is bypassed for this stream (fail-open after a VM failure).
    pub bypassed: bool,
    /// Filter state the plugin set (`proxy_set_property`), by name, as an access log written
    /// at the end of the stream would see it.
    pub filter_state: BTreeMap<String, Vec<u8>>,
}
