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
#[ignore = "needs the real filter's config validation"]
fn bad_plugin_config_makes_envoy_refuse_to_start() {
    let mock = MockUpstream::start().unwrap();
    let cfg = EnvoyConfig::new(mock.port(), "not json").ready_timeout(Duration::from_secs(20));
    let failure = match Envoy::start_expect_failure(&cfg) {
        Ok(f) => f,
        Err(e) => panic!("{e}"),
    };
    assert!(!failure.status.success(), "exit: {:?}", failure.status);
    assert!(
        failure
            .log
            .contains("Unable to create Wasm plugin governance"),
        "log:\n{}",
        failure.log
    );
    assert_eq!(mock.request_count(), 0);
}
