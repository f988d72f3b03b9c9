//! An Envoy-faithful proxy-wasm host on wasmtime, for deterministic tests of proxy-wasm filters.
//!
//! The host loads a real `.wasm` module and reproduces what Envoy (with proxy-wasm-cpp-host)
//! does wherever a filter can notice it: hostcall status codes, header-map and body-buffer
//! availability per callback, deferred local replies that re-enter the plugin's response
//! callbacks, the VM failure model, shared data with cpp-host's CAS rules, one VM per worker
//! plus a short-lived canary, ticks on a movable clock, and metrics aggregated across VMs.
//!
//! All state lives in values the test owns ([`Host`], [`Vm`]); there are no globals, so tests
//! run in parallel.
//!
//! # Filter test, high level
//! ```no_run
//! use host_tests::{HostBuilder, Request, Response, GOVERNANCE_WASM};
//! let mut host = HostBuilder::new(GOVERNANCE_WASM)
//!     .plugin_config(r#"{"limits":[]}"#)
//!     .vm_id("governance")
//!     .workers(2)
//!     .build()?;
//! let ex = host.vm(0).exchange(&Request::post("/v1/chat", "{}"), &Response::ok("{}"));
//! assert_eq!(ex.client.status, 200);
//! assert!(ex.upstream.headers.is_some());
//! host.clock().advance(std::time::Duration::from_secs(60));
//! # Ok::<(), host_tests::HostError>(())
//! ```
//!
//! # Step by step
//! ```no_run
//! use host_tests::{HostBuilder, Request, Headers, PROBE_GUEST_WASM};
//! let mut host = HostBuilder::new(PROBE_GUEST_WASM).build()?;
//! let vm = host.vm(0);
//! let s = vm.open_stream();
//! vm.send_request_headers(s, &Request::post("/", "").headers, false);
//! vm.send_request_body(s, b"part 1", false);
//! vm.send_request_body(s, b"", true);
//! vm.send_response_headers(s, &Headers::from_pairs([(":status", "200")]), true);
//! assert!(vm.stream(s).finished);
//! # Ok::<(), host_tests::HostError>(())
//! ```
//!
//! # Model
//! - [`HostBuilder::build`] compiles the module, runs a canary VM (`on_context_create`,
//!   `on_vm_start`, `on_configure`, then dropped; `false` = [`HostError::ConfigRejected`]) and
//!   starts N worker [`Vm`]s, each its own `Store` + instance (`Send`: move one per thread).
//! - [`Host::reconfigure`] validates a new plugin configuration with a canary, then gives each
//!   VM a new root context; the old root gets `on_done`/`on_delete`.
//! - One [`SharedData`], [`Metrics`] and [`Clock`] per host (or per "process":
//!   [`HostBuilder::same_process_as`]).
//! - A trap fails the VM: later streams get 503 `wasm_fail_stream`, or bypass with fail-open.
//! - [`Vm::after_nth_shared_get`] runs a closure (which may own and drive another VM) between
//!   a guest's get and its set, for deterministic CAS conflicts.
//!
//! # Not reproduced
//! HTTP and gRPC callouts (no clusters exist: `proxy_http_call` answers BadArgument like an
//! unknown cluster, gRPC ParseFailure), `on_queue_ready` notifications (queues store data
//! only), FAIL_RELOAD, watermark flow control (body actions 2/3 only stop), codec framing
//! (the high-level exchange sends one data frame then an empty end-of-stream frame), and
//! CEL attributes beyond the common `request.*`, `response.*`, `source.*`,
//! `destination.*`, `connection.id`, `plugin_*`, and filter state.

#![deny(missing_docs)]

mod abi;
mod callbacks;
mod callouts;
mod error;
mod events;
mod exchange;
mod host;
mod state;
mod stream;
mod vm;

pub use abi::headers::{decode_pairs, encode_pairs, Headers};
pub use abi::log::{LogEntry, LogLevel};
pub use abi::metrics::{MetricKind, Metrics};
pub use abi::shared_data::{SetError, SharedData, SharedDataEvent, SharedDataOp};
pub use abi::time::Clock;
pub use abi::Status;
pub use callouts::{Callout, CalloutAnswer, CalloutResponse, Clusters, Responder};
pub use error::HostError;
pub use exchange::{Exchange, Request, Response};
pub use host::{Host, HostBuilder};
pub use state::CallRecord;
pub use stream::{ClientView, LocalReplyInfo, StreamId, StreamView, UpstreamView};
pub use vm::Vm;

/// Path of the filter module built by this crate's build script from the current sources.
pub const GOVERNANCE_WASM: &str = env!("GOVERNANCE_WASM");
/// Path of the host's own probe guest, for host paths the filter does not exercise.
pub const PROBE_GUEST_WASM: &str = env!("PROBE_GUEST_WASM");
/// Path of the raw-ABI probe guest (no SDK), which logs exactly what the host passes around
/// callouts, queues and paused streams; the real-Envoy harness runs the same module.
pub const ABI_PROBE_GUEST_WASM: &str = env!("ABI_PROBE_GUEST_WASM");
/// Path of the benchmark's floor guest: the filter's hostcalls without its policy.
pub const FLOOR_GUEST_WASM: &str = env!("FLOOR_GUEST_WASM");
