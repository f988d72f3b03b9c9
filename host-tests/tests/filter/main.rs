//! The governance filter, driven through the real governance.wasm in the Envoy-faithful host.

#![allow(
    clippy::indexing_slicing,
    reason = "test code: a bad index fails the test, as it should"
)]

mod common;
mod support;

mod accounting;
mod admission;
mod concurrency;
mod configuration;
mod counters;
mod fleet;
mod key_cache;
mod metering;
mod model_configs;
mod never;
mod operating;
mod paths;
mod per_value;
mod refusals;
mod reservations;
mod stream_usage;
