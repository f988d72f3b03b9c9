//! Configuration through the real module: the canary refuses a bad one with one line naming
//! the JSON path, and nothing the filter is configured with can stop it from starting.

use host_tests::{HostBuilder, HostError, GOVERNANCE_WASM};

use crate::support::*;

fn refusal(config: &str) -> String {
    match HostBuilder::new(GOVERNANCE_WASM)
        .plugin_config(config)
        .build()
    {
        Ok(_) => panic!("configuration accepted: {config}"),
        Err(HostError::ConfigRejected(last_log)) => last_log,
        Err(other) => panic!("unexpected error {other:?}"),
    }
}

/// The module, and the operators' `check` (what governance-cli and the JavaScript package
/// answer), give every configuration of fixtures/verdicts.json the verdict recorded there:
/// the module accepts exactly the valid ones and refuses each other one with a log line
/// naming the first problem recorded; `check` lists every problem recorded, in order. The
/// package's own tests hold it to the same file, so the three agree.
#[test]
fn the_filter_and_the_operators_check_give_the_recorded_verdicts() {
    let verdicts: serde_json::Value =
        serde_json::from_str(include_str!("../../fixtures/verdicts.json")).unwrap();
    let cases = verdicts["cases"].as_array().unwrap();
    assert!(cases.len() >= 10);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let config = case["config"].as_str().unwrap();
        let valid = case["valid"].as_bool().unwrap();
        let recorded: Vec<&str> = case["problems"]
            .as_array()
            .unwrap()
            .iter()
            .map(|line| line.as_str().unwrap())
            .collect();
        assert_eq!(valid, recorded.is_empty(), "{name}");
        match HostBuilder::new(GOVERNANCE_WASM)
            .plugin_config(config)
            .build()
        {
            Ok(_) => assert!(valid, "{name}: the filter accepts it"),
            Err(HostError::ConfigRejected(log)) => {
                assert!(!valid, "{name}: the filter refuses it: {log}");
                let line = format!("invalid configuration: {}", recorded[0]);
                assert!(
                    log.ends_with(&line),
                    "{name}:\n  filter: {log}\n  recorded: {line}"
                );
            }
            Err(other) => panic!("{name}: {other:?}"),
        }
        let checked = governance::tools::check(config);
        let listed: Vec<String> = checked["problems"]
            .as_array()
            .unwrap()
            .iter()
            .map(|problem| match problem["path"].as_str().unwrap() {
                "" => problem["message"].as_str().unwrap().to_string(),
                path => format!("{path}: {}", problem["message"].as_str().unwrap()),
            })
            .collect();
        assert_eq!(listed, recorded, "{name}");
        assert_eq!(checked["valid"], valid, "{name}");
    }
}

#[test]
fn a_bad_duration_is_refused_naming_its_path() {
    let config = r#"{"virtual_keys":[{"id":"a","value":"x"},{"id":"b","value":"y"},
        {"id":"c","value":"z","budgets":[{"max_limit":1,"reset_duration":"5x"}]}]}"#;
    let logs = refusal(config);
    assert!(
        logs.contains(r#"virtual_keys[2].budgets[0].reset_duration: "5x" is not a duration"#),
        "{logs}"
    );
}

#[test]
fn non_json_and_unknown_fields_are_refused() {
    assert!(refusal("not json").contains("not valid JSON"));
    assert!(refusal(r#"{"teams":[{"id":"t","budget":5}]}"#)
        .contains("teams[0].budget: unknown field `budget`"));
}

#[test]
fn an_aligned_sub_day_duration_must_divide_the_day() {
    let logs = refusal(
        r#"{"virtual_keys":[{"id":"k","value":"s","rate_limit":{"request_max_limit":1,"request_reset_duration":"7h","calendar_aligned":true}}]}"#,
    );
    assert!(
        logs.contains("virtual_keys[0].rate_limit.request_reset_duration"),
        "{logs}"
    );
}

/// serde_json refuses nesting beyond 128 levels. A configuration nested just under that is
/// read whole by every pass (the check of the text, the entry's tree, serde), each of them
/// recursive, and must fit the module's stack (see build.rs): an overflow would trap the VM.
#[test]
fn the_deepest_configuration_the_parser_reads_fits_the_stack() {
    let nested = |depth: usize| (["[".repeat(depth), "]".repeat(depth)]).concat();
    // An unknown field of a price entry is allowed (and ignored), so this one is applied.
    let price = format!(
        r#"{{"pricing":{{"m":{{"input_cost_per_token":0,"output_cost_per_token":0,"x":{}}}}}}}"#,
        nested(124)
    );
    let built = HostBuilder::new(GOVERNANCE_WASM)
        .plugin_config(&price)
        .build();
    assert!(built.is_ok(), "{:?}", built.err());
    // In a key it is an unknown field, refused after being read whole.
    let key = format!(
        r#"{{"virtual_keys":[{{"id":"k","value":"v","x":{}}}]}}"#,
        nested(124)
    );
    assert!(refusal(&key).contains("virtual_keys[0].x: unknown field `x`"));
    // One level more is refused by the parser.
    let deeper = price.replacen('[', "[[", 1).replacen(']', "]]", 1);
    assert!(refusal(&deeper).contains("recursion limit exceeded"));
}

#[test]
fn a_price_the_filter_cannot_apply_is_refused_naming_its_path() {
    // LiteLLM's entry for this model prices web searches too, which the filter cannot see.
    let logs = refusal(
        r#"{"pricing":{"claude-sonnet-4-5":{"input_cost_per_token":3e-6,"output_cost_per_token":1.5e-5,
            "search_context_cost_per_query":{"search_context_size_low":0.01},"mode":"chat"}}}"#,
    );
    assert!(
        logs.contains(
            r#"pricing["claude-sonnet-4-5"].search_context_cost_per_query: this price cannot be applied"#
        ),
        "{logs}"
    );
}

#[test]
fn the_secret_of_a_refused_configuration_is_not_logged() {
    let logs = refusal(r#"{"virtual_keys":[{"id":"k","value":"sk-very-secret","bogus":1}]}"#);
    assert!(!logs.contains("sk-very-secret"), "{logs}");
}

#[test]
fn a_good_configuration_creates_every_counter_at_start() {
    let config = config(
        r#""customers":[{"id":"c","budgets":[{"max_limit":5,"reset_duration":"1M"}]}],
        "virtual_keys":[{"id":"k","value":"sk","customer_id":"c",
          "rate_limit":{"request_max_limit":3,"request_reset_duration":"1m","token_max_limit":9,"token_reset_duration":"1h"}}]"#,
    );
    let host = host_with(&config, 2);
    let keys = host.shared_data().keys("governance");
    // One key per configured limit, plus the namespace's guard key (atomic creation).
    assert_eq!(keys.len(), 4, "{keys:?}");
    let mut host = host;
    for _ in 0..20 {
        host.vm(1)
            .exchange(&chat("sk", "gpt-4o-mini"), &openai_json(1, 1));
    }
    host.clock().advance(std::time::Duration::from_secs(7200));
    host.vm(0)
        .exchange(&chat("sk", "gpt-4o-mini"), &openai_json(1, 1));
    assert_eq!(
        host.shared_data().keys("governance").len(),
        4,
        "traffic and time add no keys"
    );
}

#[test]
fn the_metering_fields_are_refused_naming_their_paths() {
    let cases = [
        (
            r#"{"max_rewrite_body_bytes":0}"#,
            "max_rewrite_body_bytes: 0 must be between 1 and 16777216",
        ),
        (
            r#"{"max_rewrite_body_bytes":16777217}"#,
            "max_rewrite_body_bytes: 16777217 must be between 1 and 16777216",
        ),
        (
            r#"{"max_rewrite_body_bytes":-5}"#,
            "max_rewrite_body_bytes: invalid value",
        ),
        (
            r#"{"inject_stream_usage":"yes"}"#,
            "inject_stream_usage: invalid type",
        ),
        (
            r#"{"deployments":{"prod":""}}"#,
            r#"deployments["prod"]: the model must not be empty"#,
        ),
        (
            r#"{"deployments":{"":"gpt-4o"}}"#,
            r#"deployments[""]: a deployment name must not be empty"#,
        ),
        (
            r#"{"deployments":{"prod":4}}"#,
            "deployments.prod: invalid type",
        ),
        (
            r#"{"free_paths":["/v1/models","v1/files"]}"#,
            r#"free_paths[1]: "v1/files" must be a path starting with '/'"#,
        ),
        (r#"{"free_paths":["/v1/models?limit=1"]}"#, "free_paths[0]:"),
        (r#"{"free_paths":"/v1/models"}"#, "free_paths: invalid type"),
    ];
    for (config, want) in cases {
        let logs = refusal(config);
        assert!(logs.contains(want), "{config}: {logs}");
    }
}
