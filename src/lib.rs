//! Governance filter for LLM traffic through Envoy.
//!
//! Everything outside `glue`, `tools`, `cli` and `js` is the policy core: configuration,
//! windows, money, the response-usage scanner, counters and admission. It knows nothing of
//! proxy-wasm nor of the tools built on it, and is unit-tested natively. The core reaches
//! the host only through two seams, [`store::CasStore`] and [`store::Clock`].
//!
//! The same core is compiled three ways, each with a thin layer of its own:
//! - `glue` (wasm32-wasip1): the proxy-wasm filter Envoy loads; proxy-wasm callbacks into
//!   calls on the core and back;
//! - `cli` (native): the operators' command-line tool, `governance-cli`;
//! - `js` (wasm32-unknown-unknown): the JavaScript/WebAssembly package, through
//!   `wasm-bindgen`.
//!
//! The last two share `tools`, the operators' verbs (`check`, `describe`, `explain`,
//! `simulate`, `limitador`), which drive the core as the filter does; the filter's module
//! carries none of it.

pub mod accounting;
pub mod admin;
pub mod admission;
pub mod alerts;
pub mod clamp;
pub mod config;
pub mod counter;
pub mod decimal;
pub mod duration;
pub mod estimate;
pub mod filter_state;
pub mod fleet;
pub mod flow;
pub mod identity;
pub mod in_flight;
pub mod metrics;
pub mod money;
pub mod path_model;
pub mod per_value;
pub mod pricing;
pub mod recycler;
pub mod rejection;
pub mod request_body;
pub mod response_headers;
pub mod store;
pub mod stream_usage;
pub mod usage;
pub mod usage_endpoint;
pub mod window;
pub mod zone;

#[cfg(all(target_arch = "wasm32", target_os = "wasi"))]
mod glue;

#[cfg(not(all(target_arch = "wasm32", target_os = "wasi")))]
pub mod tools;

#[cfg(not(target_arch = "wasm32"))]
pub mod cli;

#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
mod js;
