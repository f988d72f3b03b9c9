//! An Envoy-faithful proxy-wasm host on wasmtime, for deterministic tests of proxy-wasm filters.
//!
//! The host loads a real `.wasm` module and reproduces what Envoy (with proxy-wasm-cpp-host)
//! does wherever a filter can notice it: hostcall status codes, header-map and body-buffer
//! availability per callback, deferred local replies that re-enter the plugin's response
//! callbacks, the VM failure model, shared data with cpp-host's CAS rules, one VM per worker
//! plus a short-lived canary, ticks on a movable clock, and metrics aggregated across VMs.
//!
//! All state lives in values the test owns ([`Host`], [`Vm`]); there are no globals, so tests
//! run in parallel. A typical filter test:
//!
//! ```no_run
//! use host_tests::{HostBuilder, Request, Response, GOVERNANCE_WASM};
//! let mut host = HostBuilder::new(GOVERNANCE_WASM).plugin_config(r#"{"limits":[]}"#).build()?;
//! let ex = host.vm(0).exchange(&Request::get("/v1/chat"), &Response::ok("{}"));
//! assert_eq!(ex.client.status, 200);
//! # Ok::<(), host_tests::HostError>(())
//! ```

mod abi;
mod callbacks;
mod error;
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
