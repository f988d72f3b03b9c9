//! Governance filter for LLM traffic through Envoy.
//!
//! The crate has two halves. Everything outside `glue` is the policy core: configuration,
//! windows, money, the response-usage scanner, counters and admission. It knows nothing of
//! proxy-wasm and is unit-tested natively. `glue` exists only when compiling for wasm32; it
//! translates proxy-wasm callbacks into calls on the core and back. The core reaches the host
//! only through two seams, [`store::CasStore`] and [`store::Clock`].

pub mod accounting;
pub mod admission;
#[cfg(not(target_arch = "wasm32"))]
pub mod cli;
pub mod config;
pub mod counter;
pub mod decimal;
pub mod duration;
pub mod estimate;
pub mod fleet;
pub mod flow;
pub mod identity;
pub mod metrics;
pub mod money;
pub mod path_model;
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

#[cfg(target_arch = "wasm32")]
mod glue;
