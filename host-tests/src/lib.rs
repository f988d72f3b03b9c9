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
//! - One [`SharedData`], [`Metrics`], [`Clock`], [`Clusters`] and set of shared queues per
//!   host (or per "process": [`HostBuilder::same_process_as`]).
//! - A trap fails the VM: later streams get 503 `wasm_fail_stream`, or bypass with fail-open.
//! - [`Vm::after_nth_shared_get`] runs a closure (which may own and drive another VM) between
//!   a guest's get and its set, for deterministic CAS conflicts.
//!
//! # Callouts and queue notifications
//! ```no_run
//! use host_tests::{CalloutAnswer, CalloutResponse, HostBuilder, Request, Response, GOVERNANCE_WASM};
//! use std::time::Duration;
//! let mut host = HostBuilder::new(GOVERNANCE_WASM)
//!     .cluster_responding("limitador", |_call| {
//!         let r = CalloutResponse::json(200, "{}");
//!         CalloutAnswer::respond(r).after(Duration::from_millis(5))
//!     })
//!     .cluster("slow") // answered by hand: vm.answer_callout(token, answer)
//!     .build()?;
//! let ex = host.vm(0).exchange(&Request::post("/v1/chat", "{}"), &Response::ok("{}"));
//! for call in host.vm(0).callouts() { println!("{} {:?}", call.cluster, call.header(":path")); }
//! host.clusters().set_responder("limitador", |_| CalloutAnswer::ConnectionRefused);
//! host.advance(Duration::from_secs(1)); // late answers, timeouts, queue notifications
//! # Ok::<(), host_tests::HostError>(())
//! ```
//! - `proxy_http_call` checks like Envoy: a timeout above `i32::MAX`, an unknown cluster, or no
//!   `:path`/`:method`/`:authority` is BadArgument (no token used); a cluster without endpoints
//!   is InternalFailure (a token used, no callback ever). Tokens are 4, 8, 12... per VM. Each
//!   accepted call is recorded ([`Callout`]: VM, effective context, root, cluster, headers as
//!   sent with `content-length`, body, trailers, timeout, host clock).
//! - Answers come from the cluster's responder (called at dispatch) or by hand
//!   ([`Vm::answer_callout`]): [`CalloutAnswer::Respond`], `Reset`, `ConnectionRefused`,
//!   `Never`, or any of them `.after(delay)` on the host clock; a timeout that expires first
//!   replaces the answer. Nothing runs on a thread of its own: a VM delivers what is due at the
//!   end of each call that drives it (stream events, ticks, configuration, hand answers), each
//!   followed by the actions its callback deferred; later answers and timeouts wait until the
//!   clock reaches them and the VM is driven again ([`Vm::run_due`], [`Host::advance`],
//!   [`Host::run_due`]). An exchange sends each side's frames as one read, then delivers what
//!   is due, and while the stream waits it moves the clock to the next answer or timeout.
//! - Delivery is Envoy's: `proxy_on_http_call_response(root, token, headers, body, trailers)`
//!   on the root context of the dispatching context; maps 6/7 and buffer 4 are readable only
//!   during that callback (from any context of that root; trailers only if there are some);
//!   the upstream's response gets `x-envoy-upstream-service-time` (ms since dispatch) last. A
//!   call whose root is gone is dropped. `proxy_set_effective_context` accepts a live context
//!   (or 0, the running one); a stream that already ended is BadArgument, and continue/reply
//!   then act on the root, which Envoy ignores.
//! - Envoy 1.40's own answers, measured with `abi-probe-guest` on loopback and recorded in
//!   `fixtures/callouts/transcripts.txt` (the host is tested against that file): a timeout is
//!   a `504` with `:status`, `content-length: 24`, `content-type: text/plain` and body
//!   `upstream request timeout`; a refused connection a `503` with body `upstream connect
//!   error or disconnect/reset before headers. reset reason: remote connection failure` (98
//!   bytes); both leave `proxy_get_status` at 0. A connection closed mid-response calls back
//!   with (0, 0, 0), `proxy_get_status` = (11, "reset"), map 6 BadArgument (its pairs empty),
//!   buffer 4 NotFound; the code stays 11 on that root for later answers, the message clears.
//!   A client that goes away does not cancel the call: the answer still reaches the root.
//! - Shared queues: each registration (from a root or a stream, which registers its root)
//!   makes that VM's root the only one notified; an enqueue posts `proxy_on_queue_ready(root,
//!   queue)` to it, delivered when that VM next runs its events (after the enqueuing callback,
//!   and after the enqueuing stream ended when it is the same VM). With N workers registering
//!   from `on_configure`, the last one started wins; a dropped VM hears nothing.
//! - Paused requests: a header pause holds the body (Envoy reads on to about twice the buffer
//!   limit, then applies flow control: no 413) and a resume delivers what was held in one
//!   callback, then the rest frame by frame. A body frame paused with StopIterationAndBuffer
//!   stays readable and writable from the plugin's other callbacks (an answer's, through the
//!   effective context) until it passes; a later frame calls back with the cumulative size.
//!   Holding only the empty end-of-stream frame does not hold an HTTP/1.1 request framed by
//!   `content-length`: its upstream has every byte and answers; the exchange does the same.
//! - A body buffer out of reach reads as empty (Ok) and refuses writes (BadArgument), as in
//!   Envoy, whose buffer object always exists.
//!
//! # Not reproduced
//! gRPC callouts (no gRPC services: ParseFailure, as for an unknown cluster), Envoy's extra
//! main-thread VM (it registers queues from `on_configure` before the workers do, so it never
//! wins), a callout answer over the async client's buffer limit, FAIL_RELOAD, watermark flow
//! control for body actions 2/3 (they only stop), socket-level framing (after a header pause
//! the frames beyond the held part are the test's, not Envoy's reads; the high-level exchange
//! sends one data frame then an empty end-of-stream frame, and does not add the router's
//! `x-envoy-upstream-service-time` to the upstream's response), and CEL attributes beyond the
//! common `request.*`, `response.*`, `source.*`, `destination.*`, `connection.id`,
//! `plugin_*`, and filter state.

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
