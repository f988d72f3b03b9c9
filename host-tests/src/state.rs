//! The per-VM state a wasmtime `Store` carries: what the hostcalls can see and change.

use crate::abi::headers::Headers;
use crate::abi::log::LogEntry;
use crate::abi::metrics::MetricKind;
use crate::abi::shared_data::SharedDataEvent;
use crate::events::{AnswerInView, CalloutBook, Mailbox};
use crate::host::HostShared;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use wasmtime::{Memory, StoreLimits, StoreLimitsBuilder, TypedFunc};

/// Envoy's V8 limit on one VM's linear memory (16384 pages).
pub(crate) const MAX_MEMORY_BYTES: usize = 1 << 30;

/// Which hostcalls may run right now (cpp-host's "restricted callback").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Restriction {
    /// Normal callbacks: everything.
    None,
    /// `_initialize` / `main`: logging, log level and WASI only.
    Initialize,
    /// Inside the guest allocator: `proxy_log`, `fd_write`, `clock_time_get`, `poll_oneoff`.
    Allocator,
}

/// Access the plugin currently has to one header map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    Unavailable,
    ReadWrite,
    ReadOnly,
}

/// Index of a map in [`HttpCtx::maps`]: proxy-wasm `MapType` 0..=3.
pub(crate) const REQ_HEADERS: usize = 0;
pub(crate) const REQ_TRAILERS: usize = 1;
pub(crate) const RESP_HEADERS: usize = 2;
pub(crate) const RESP_TRAILERS: usize = 3;

/// Envoy-side data of one HTTP stream context, as the hostcalls see it.
#[derive(Debug)]
pub(crate) struct HttpCtx {
    /// Request headers, request trailers, response headers, response trailers.
    pub maps: [Option<Headers>; 4],
    /// Current access to each map.
    pub access: [Access; 4],
    /// Trailers may be created on demand (inside a body callback with end_of_stream).
    pub may_create_trailers: [bool; 2],
    /// Request / response body buffer while the matching body callback runs.
    pub body: [Option<Vec<u8>>; 2],
    /// Filter state written by `proxy_set_property`.
    pub filter_state: HashMap<Vec<u8>, Vec<u8>>,
    /// Clock reading when the stream started (`request.time`).
    pub start_nanos: i64,
    /// Response code once known (`response.code`).
    pub response_code: Option<u32>,
    /// Response code details once known (`response.code_details`).
    pub code_details: Option<String>,
    /// Stream id within the connection (`connection.id` stand-in).
    pub stream_seq: u64,
}

impl HttpCtx {
    pub(crate) fn new(start_nanos: i64, stream_seq: u64) -> Self {
        HttpCtx {
            maps: [None, None, None, None],
            access: [Access::Unavailable; 4],
            may_create_trailers: [false; 2],
            body: [None, None],
            filter_state: HashMap::new(),
            start_nanos,
            response_code: None,
            code_details: None,
            stream_seq,
        }
    }
}

/// Per-root-context timer and lifecycle.
#[derive(Debug, Clone, Default)]
pub(crate) struct RootCtx {
    /// Tick period in ms (0 = disabled).
    pub tick_period_ms: u32,
    /// Clock reading at which the next tick is due.
    pub next_tick_nanos: i64,
    /// on_done returned false: waiting for `proxy_done`.
    pub pending_done: bool,
    /// What `proxy_get_status` reports: (code, message) of the last failed callout.
    pub status: (u32, String),
}

/// A host action a guest queued during a callback; Envoy runs these after the callback returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Deferred {
    /// `proxy_continue_stream(0|1)` for a stream context.
    Continue { ctx: u32, response: bool },
    /// `proxy_close_stream`.
    Close { ctx: u32 },
    /// `proxy_send_local_response`.
    LocalReply { ctx: u32, reply: PluginReply },
    /// `proxy_done` from a root context whose `on_done` returned false.
    RootDone { root: u32 },
}

/// The arguments of one `proxy_send_local_response` call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PluginReply {
    pub status: u32,
    pub details: String,
    pub body: Vec<u8>,
    pub headers: Headers,
    pub grpc_status: i32,
}

/// One guest callback the host invoked, in order (for lifecycle assertions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRecord {
    /// Export name without the `proxy_` prefix, e.g. `on_request_body`.
    pub name: &'static str,
    /// Context id the callback ran for.
    pub ctx: u32,
    /// Remaining integer arguments (sizes, flags).
    pub args: Vec<i64>,
}

/// A closure that observes every shared-data call of this VM after it completes.
pub(crate) type SharedHook = Box<dyn FnMut(&SharedDataEvent) + Send>;

/// Everything the store of one VM holds.
pub(crate) struct VmState {
    pub shared: Arc<HostShared>,
    pub memory: Option<Memory>,
    pub allocator: Option<TypedFunc<i32, i32>>,
    pub restriction: Restriction,
    /// Context whose callback is running (0 = VM context during start).
    pub current_ctx: u32,
    /// Context selected by `proxy_set_effective_context` (defaults to `current_ctx`).
    pub effective_ctx: u32,
    /// Root context of each context id, for roots themselves their own id.
    pub root_of: HashMap<u32, u32>,
    pub roots: BTreeMap<u32, RootCtx>,
    pub http: HashMap<u32, HttpCtx>,
    /// Plugin configuration bytes, readable only inside `on_configure`.
    pub plugin_config: Option<Vec<u8>>,
    pub deferred: Vec<Deferred>,
    pub logs: Vec<LogEntry>,
    pub trace: Vec<CallRecord>,
    /// Per export name: (calls, fuel spent), for profiles (see `Vm::fuel_by_callback`).
    pub fuel_by_callback: BTreeMap<&'static str, (u64, u64)>,
    pub metric_ids: HashMap<u32, (MetricKind, String)>,
    pub next_metric_id: [u32; 3],
    pub shared_get_count: usize,
    pub shared_set_count: usize,
    pub shared_hook: Option<SharedHook>,
    /// Label used in log output ("canary", "worker 0", ...).
    pub label: String,
    /// V8 caps a VM's linear memory at 1 GiB; growing beyond fails like there.
    pub limits: StoreLimits,
    /// HTTP callouts: tokens, history, calls waiting for an answer.
    pub callouts: CalloutBook,
    /// The answer readable while `proxy_on_http_call_response` runs.
    pub answering: Option<AnswerInView>,
    /// Events other VMs (or this one) posted to this VM.
    pub mailbox: Mailbox,
}

impl VmState {
    pub(crate) fn new(shared: Arc<HostShared>, label: String) -> Self {
        VmState {
            shared,
            memory: None,
            allocator: None,
            restriction: Restriction::Initialize,
            current_ctx: 0,
            effective_ctx: 0,
            root_of: HashMap::new(),
            roots: BTreeMap::new(),
            http: HashMap::new(),
            plugin_config: None,
            deferred: Vec::new(),
            logs: Vec::new(),
            trace: Vec::new(),
            fuel_by_callback: BTreeMap::new(),
            metric_ids: HashMap::new(),
            next_metric_id: [4, 5, 6],
            shared_get_count: 0,
            shared_set_count: 0,
            shared_hook: None,
            label,
            limits: StoreLimitsBuilder::new()
                .memory_size(MAX_MEMORY_BYTES)
                .build(),
            callouts: CalloutBook::default(),
            answering: None,
            mailbox: Mailbox::default(),
        }
    }

    /// The HTTP context hostcalls act on (effective context), if it is a stream.
    pub(crate) fn http_mut(&mut self) -> Option<&mut HttpCtx> {
        let ctx = self.effective_ctx;
        self.http.get_mut(&ctx)
    }

    /// Root context of the effective context.
    pub(crate) fn effective_root(&self) -> u32 {
        let ctx = self.effective_ctx;
        self.root_of.get(&ctx).copied().unwrap_or(ctx)
    }

    /// The callout answer, if one is being delivered to the effective context's root.
    pub(crate) fn answer_in_view(&self) -> Option<&AnswerInView> {
        let root = self.effective_root();
        self.answering.as_ref().filter(|a| a.root == root)
    }
}
