//! Envoy's verdict on configurations: the rendered bootstrap validates, and a bad plugin
//! configuration makes Envoy refuse to start.

mod common;

use envoy_harness::{
    runner::BOOTSTRAP_TEMPLATE, validate_config, Envoy, EnvoyConfig, MockUpstream,
};
use std::time::Duration;

#[test]
fn rendered_bootstrap_passes_validate_mode() {
    let cfg = EnvoyConfig::new(9, common::plugin_config());
    let v = validate_config(&cfg).expect("run envoy --mode validate");
    assert!(v.ok, "validate failed:\n{}", v.output);
}

#[test]
fn validate_mode_rejects_a_misspelled_field() {
    let broken = BOOTSTRAP_TEMPLATE.replace("failure_policy:", "failure_polcy:");
    let cfg = EnvoyConfig::new(9, common::plugin_config()).template(broken);
    let v = validate_config(&cfg).expect("run envoy --mode validate");
    assert!(!v.ok, "validate accepted a misspelled field:\n{}", v.output);
    assert!(v.output.contains("failure_polcy"), "{}", v.output);
}

#[test]
fn bad_plugin_config_makes_envoy_refuse_to_start() {
    let mock = MockUpstream::start().unwrap();
    let cfg = EnvoyConfig::new(mock.port(), "not json").ready_timeout(Duration::from_secs(20));
    let failure = match Envoy::start_expect_failure(&cfg) {
        Ok(f) => f,
        Err(e) => panic!("{e}"),
    };
    eprintln!(
        "Envoy refused the configuration: {} after {:?}",
        failure.status, failure.elapsed
    );
    assert!(!failure.status.success(), "exit: {:?}", failure.status);
    assert!(failure.elapsed < Duration::from_secs(15));
    assert!(
        failure
            .log
            .contains("Unable to create Wasm plugin governance"),
        "log:\n{}",
        failure.log
    );
    assert_eq!(mock.request_count(), 0);
}

/// Finds the plugin configuration string in an admin `/config_dump`.
fn find_plugin_configuration(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::Object(map) => {
            if let Some(s) = map
                .get("configuration")
                .and_then(|c| c.get("value"))
                .and_then(|s| s.as_str())
            {
                return Some(s.to_string());
            }
            map.values().find_map(find_plugin_configuration)
        }
        serde_json::Value::Array(items) => items.iter().find_map(find_plugin_configuration),
        _ => None,
    }
}

#[test]
fn plugin_configuration_reaches_envoy_verbatim() {
    // Pretty-printed (newlines), non-ASCII, an astral character, quotes and backslashes.
    let config = serde_json::to_string_pretty(&serde_json::json!({
        "virtual_keys": [{"id": "vk-quoting", "value": "sk-ünï-😀-\"q\"-\\-{{VM_ID}}"}]
    }))
    .unwrap();
    let s = envoy_harness::Stack::start_with(&config, |c| c.concurrency(1)).unwrap();
    let dump = s.envoy.admin_get("/config_dump").unwrap();
    assert_eq!(dump.status, 200);
    let seen = find_plugin_configuration(&dump.json().unwrap()).expect("configuration in dump");
    assert_eq!(seen, config);
}
