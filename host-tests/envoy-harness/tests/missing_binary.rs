//! Without an Envoy binary, the harness fails loudly and says how to get one.
//! (Its own test binary: it changes ENVOY_BIN for the whole process.)

use envoy_harness::{envoy_bin, Stack};

#[test]
fn missing_envoy_names_scripts_setup() {
    std::env::set_var("ENVOY_BIN", "/nonexistent/envoy");
    let e = envoy_bin().unwrap_err().to_string();
    assert!(e.contains("scripts/setup"), "{e}");
    let e = Stack::start("{}")
        .err()
        .expect("no Envoy, no stack")
        .to_string();
    assert!(e.contains("scripts/setup"), "{e}");
}
