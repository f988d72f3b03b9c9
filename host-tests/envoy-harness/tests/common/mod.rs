//! Shared by the integration tests.
#![allow(dead_code, reason = "each test binary uses a different subset")]

use envoy_harness::Stack;
use serde_json::{json, Value};

/// The secret of the one virtual key in [`plugin_config`].
pub const KEY: &str = "sk-test-smoke-0001";

/// A small valid plugin configuration (docs/configuration.md): one key, no limits, two
/// priced models.
pub fn plugin_config() -> String {
    json!({
        "pricing": {
            "gpt-4o-mini": {"input_cost_per_token": 1.5e-7, "output_cost_per_token": 6e-7},
            "claude-sonnet-4*": {"input_cost_per_token": 3e-6, "output_cost_per_token": 1.5e-5}
        },
        "virtual_keys": [{"id": "vk-test", "value": KEY}]
    })
    .to_string()
}

/// Mock + Envoy with [`plugin_config`]; panics with Envoy's log (or the setup hint).
pub fn stack() -> Stack {
    match Stack::start(&plugin_config()) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    }
}

pub fn chat(stream: bool) -> Value {
    json!({"model": "gpt-4o-mini", "stream": stream,
        "messages": [{"role": "user", "content": "hi"}]})
}
pub mod json_schema;
pub mod replies;
pub mod shipped;
