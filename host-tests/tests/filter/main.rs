//! Tests of governance.wasm through the Envoy-faithful host.

mod common;
mod concurrency;
mod counters;
