//! The governance filter, driven through the real governance.wasm in the Envoy-faithful host.

#![allow(
    clippy::indexing_slicing,
    reason = "test code: a bad index fails the test, as it should"
)]

mod common;
mod support;

mod accounting;
mod admin;
mod admission;
mod alerts;
mod clamp;
mod concurrency;
mod configuration;
mod counters;
mod filter_state;
mod fleet;
mod in_flight;
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
