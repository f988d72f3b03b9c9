//! Swapping the plugin configuration while Envoy runs (listener served from a file).

mod common;

use common::{chat, plugin_config, KEY};
use envoy_harness::runner::{Reload, TempDir};
use envoy_harness::{validate, Request, Stack};
use serde_json::json;

fn reloadable_stack() -> Stack {
    match Stack::start_with(&plugin_config(), |c| c.reloadable().concurrency(2)) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    }
}

fn second_config() -> String {
    json!({
        "pricing": {
            "gpt-4o-mini": {"input_cost_per_token": 1.5e-7, "output_cost_per_token": 6e-7}
        },
        "virtual_keys": [
            {"id": "vk-test", "value": KEY},
            {"id": "vk-new", "value": "sk-test-reload-0002"}
        ]
    })
    .to_string()
}

#[test]
fn reloadable_bootstrap_passes_validate_mode() {
    let cfg = envoy_harness::EnvoyConfig::new(9, plugin_config());
    let dir = TempDir::new("envoy-validate-lds").unwrap();
    let lds = dir.path().join("lds.yaml");
    let (boot, listener) = cfg.render_reloadable(10, 11, &lds).unwrap();
    std::fs::write(&lds, listener).unwrap();
    let boot_path = dir.path().join("envoy.yaml");
    std::fs::write(&boot_path, boot).unwrap();
    let v = validate(&boot_path).unwrap();
    assert!(v.ok, "{}", v.output);
}

#[test]
fn a_new_configuration_is_applied_while_envoy_runs() {
    let mut s = reloadable_stack();
    let send = |s: &Stack, key: &str| {
        s.client()
            .send(
                &Request::post("/v1/chat/completions")
                    .header("x-bf-vk", key)
                    .json(&chat(false)),
            )
            .expect("request through Envoy")
    };
    assert_eq!(send(&s, KEY).status, 200);
    assert_eq!(
        s.envoy.reload_plugin_config(&second_config()).unwrap(),
        Reload::Accepted
    );
    assert_eq!(
        s.envoy
            .counter("listener_manager.listener_modified")
            .unwrap(),
        Some(1)
    );
    let r = send(&s, "sk-test-reload-0002");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(send(&s, KEY).status, 200);
}

#[test]
fn a_bad_configuration_is_rejected_and_the_old_one_keeps_serving() {
    let mut s = reloadable_stack();
    match s.envoy.reload_plugin_config("not json").unwrap() {
        Reload::Rejected(lines) => {
            assert!(lines.contains("Unable to create Wasm plugin"), "{lines}")
        }
        Reload::Accepted => panic!("Envoy accepted a bad plugin configuration"),
    }
    let r = s
        .client()
        .send(
            &Request::post("/v1/chat/completions")
                .header("x-bf-vk", KEY)
                .json(&chat(false)),
        )
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
}
