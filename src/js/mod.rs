//! The JavaScript/WebAssembly package's bindings (wasm32-unknown-unknown, through
//! `wasm-bindgen`): the verbs of `crate::tools`, one export each, with the same names as the
//! command-line tool's. Each returns JSON text, `{"result": ...}` or `{"error": ...,
//! "problems": [...]}`; the package's `index.js` (src/js/npm/) parses it, returns the result
//! and throws the error. Times are RFC 3339 strings: the module has no clock of its own.

use serde_json::{json, Value};
use wasm_bindgen::prelude::wasm_bindgen;

use crate::tools::{self, Answer, Failure};

fn envelope(answer: Answer) -> String {
    match answer {
        Ok(result) => json!({ "result": result }).to_string(),
        Err(failure) => failure.to_json().to_string(),
    }
}

fn time(text: &str) -> Result<i64, Failure> {
    tools::parse_time(text).map_err(|err| Failure::new(format!("time: {err}")))
}

/// Every problem of a configuration with its JSON path.
#[wasm_bindgen]
pub fn check(config: &str) -> String {
    envelope(Ok(tools::check(config)))
}

/// The hierarchy of owners and each limit's window at `at` (RFC 3339).
#[wasm_bindgen]
pub fn describe(config: &str, at: &str) -> String {
    envelope(time(at).and_then(|at| tools::describe(config, at)))
}

/// What the filter would do with a request (JSON), after an optional trace (JSONL; empty:
/// none).
#[wasm_bindgen]
pub fn explain(config: &str, request: &str, trace: &str) -> String {
    let trace = Some(trace).filter(|trace| !trace.trim().is_empty());
    envelope(tools::explain(config, request, trace))
}

/// A trace of requests (JSONL) replayed through the filter's flow.
#[wasm_bindgen]
pub fn simulate(config: &str, trace: &str) -> String {
    envelope(tools::simulate(config, trace))
}

/// Limitador's limits file (YAML) for fleet mode.
#[wasm_bindgen]
pub fn limitador(config: &str) -> String {
    envelope(tools::limitador(config).map(Value::String))
}
