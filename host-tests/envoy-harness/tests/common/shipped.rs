//! The harness's `shipped` module for tests: the same functions, failing the test with the
//! harness's message instead of returning it.

use envoy_harness::runner::HarnessError;
use envoy_harness::shipped;
use serde_norway::Value as Yaml;
use std::path::{Path, PathBuf};

pub use envoy_harness::shipped::repo_path;

fn ok<T>(result: Result<T, HarnessError>) -> T {
    result.unwrap_or_else(|e| panic!("{e}"))
}

pub fn read(path: &Path) -> String {
    ok(shipped::read(path))
}

pub fn yaml_documents(path: &Path) -> Vec<Yaml> {
    ok(shipped::yaml_documents(path))
}

pub fn bootstraps() -> Vec<PathBuf> {
    ok(shipped::bootstraps())
}

pub fn embedded_plugin_configs(doc: &Yaml) -> Vec<String> {
    ok(shipped::embedded_plugin_configs(doc))
}

pub fn yaml_to_json(v: &Yaml) -> String {
    ok(shipped::yaml_to_json(v))
}

pub fn manifest_plugin_configs() -> Vec<(String, String)> {
    ok(shipped::manifest_plugin_configs())
}

pub fn all_plugin_configs() -> Vec<(String, String)> {
    ok(shipped::all_plugin_configs())
}

pub fn with_wasm_path(doc: &Yaml, wasm: &Path) -> Yaml {
    shipped::with_wasm_path(doc, wasm)
}

pub fn loopback_template(doc: &Yaml, wasm: &Path) -> String {
    ok(shipped::loopback_template(doc, wasm, &[]))
}

/// Starts the mock, then Envoy running `bootstrap` (a shipped file) rewritten by
/// [`loopback_template`].
pub fn run_shipped(bootstrap: &Path, workers: u32) -> envoy_harness::Stack {
    let doc = yaml_documents(bootstrap)
        .into_iter()
        .next()
        .expect("a bootstrap document");
    let template = loopback_template(&doc, &envoy_harness::runner::default_wasm());
    match envoy_harness::Stack::start_with("", |c| {
        c.bootstrap_template(template).concurrency(workers)
    }) {
        Ok(s) => s,
        Err(e) => panic!("{} did not start: {e}", bootstrap.display()),
    }
}
