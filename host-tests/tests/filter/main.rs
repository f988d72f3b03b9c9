//! The governance filter, driven through the real governance.wasm in the Envoy-faithful host.

mod common;
mod support;

mod accounting;
mod admission;
mod concurrency;
mod configuration;
mod counters;
mod operating;
