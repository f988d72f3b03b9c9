//! The governance filter, driven through the real governance.wasm in the Envoy-faithful host.

mod support;

mod accounting;
mod admission;
mod configuration;
mod operating;
