//! envoy/governance.schema.json stays honest: every shipped configuration (the examples'
//! config.json files including the demo's, those embedded in bootstraps, those in the Istio
//! and Envoy Gateway manifests) is valid under it, and a set of known-bad configurations is
//! refused both by the schema and by the filter's own parser.

mod common;

use common::json_schema::Schema;
use common::shipped::{all_plugin_configs, read, repo_path};
use serde_json::{json, Value};

fn validator() -> Schema {
    let schema: Value = serde_json::from_str(&read(&repo_path("envoy/governance.schema.json")))
        .expect("the schema is JSON");
    assert_eq!(
        schema.get("$schema").and_then(Value::as_str),
        Some("https://json-schema.org/draft/2020-12/schema")
    );
    Schema::new(schema).unwrap_or_else(|e| panic!("schema: {e}"))
}

fn schema_errors(v: &Schema, config: &Value) -> Vec<String> {
    v.errors(config)
}

/// A valid base that each bad case breaks in one place.
fn base() -> Value {
    json!({
        "pricing": {"gpt-4o-mini": {"input_cost_per_token": 1.5e-7, "output_cost_per_token": 6e-7}},
        "teams": [{"id": "t", "budgets": [{"max_limit": 5, "reset_duration": "1d"}]}],
        "virtual_keys": [{"id": "k", "value": "sk-1", "team_id": "t",
            "rate_limit": {"request_max_limit": 5, "request_reset_duration": "1m"}}]
    })
}

fn with(edit: impl FnOnce(&mut Value)) -> Value {
    let mut v = base();
    edit(&mut v);
    v
}

#[test]
fn every_shipped_configuration_is_valid_under_the_schema() {
    let v = validator();
    let all = all_plugin_configs();
    assert!(
        all.iter()
            .any(|(w, _)| w.contains("examples/demo/config.json")),
        "the demo config is checked too"
    );
    for (where_, text) in &all {
        let config: Value = serde_json::from_str(text).unwrap();
        let errors = schema_errors(&v, &config);
        assert!(errors.is_empty(), "{where_} fails the schema: {errors:#?}");
    }
}

#[test]
fn the_base_a_litellm_priced_entry_reservations_and_fleet_blocks_are_valid_for_both() {
    let v = validator();
    let litellm = with(|c| {
        c["pricing"]["gpt-4o"] = json!({"input_cost_per_token": 2.5e-6,
            "output_cost_per_token": 1e-5, "litellm_provider": "openai", "mode": "chat",
            "max_input_tokens": 128000});
    });
    let reserving = with(|c| {
        c["reservation"] = json!({"enabled": true, "default_max_output_tokens": 1024,
            "prompt_bytes_per_token": 3});
    });
    let long_context = with(|c| {
        c["pricing"]["claude-sonnet-4-5"] = json!({"input_cost_per_token": 3e-6,
            "output_cost_per_token": 1.5e-5, "cache_read_input_token_cost": 3e-7,
            "cache_creation_input_token_cost": 3.75e-6,
            "cache_creation_input_token_cost_above_1hr": 6e-6,
            "input_cost_per_token_above_200k_tokens": 6e-6,
            "output_cost_per_token_above_200k_tokens": 2.25e-5,
            "cache_creation_input_token_cost_above_1hr_above_200k_tokens": 1.2e-5,
            "input_cost_per_request": 0.001, "litellm_provider": "anthropic",
            "supports_prompt_caching": true});
    });
    let metering = with(|c| {
        c["inject_stream_usage"] = json!(false);
        c["max_rewrite_body_bytes"] = json!(1_048_576);
        c["deployments"] = json!({"prod-4o": "gpt-4o", "team mini": "gpt-4o-mini"});
        c["free_paths"] = json!([
            "/v1/models",
            "/v1/responses/*/cancel",
            "/model/*/count-tokens"
        ]);
    });
    let fleet = with(|c| {
        c["fleet"] = json!({"cluster": "limitador", "authority": "limitador.internal",
            "timeout_ms": 250, "namespace_prefix": "gw", "unavailable": "closed"});
    });
    let fleet_defaults = with(|c| c["fleet"] = json!({"cluster": "limitador"}));
    let never = with(|c| {
        c["teams"][0]["budgets"][0]["reset_duration"] = json!("never");
        c["virtual_keys"][0]["rate_limit"] = json!({"request_max_limit": 5,
            "request_reset_duration": "never", "token_max_limit": 1000,
            "token_reset_duration": "never"});
    });
    let per_model = with(|c| {
        let entry = json!([{"model": "gpt-4o*", "budgets": [{"max_limit": 5,
            "reset_duration": "1d"}], "rate_limit": {"request_max_limit": 10,
            "request_reset_duration": "1m"}}, {"model": "gpt-4o-mini"}]);
        c["teams"][0]["model_configs"] = entry.clone();
        c["virtual_keys"][0]["model_configs"] = entry;
        c["customers"] = json!([{"id": "acme", "model_configs": [{"model": "*",
            "rate_limit": {"token_max_limit": 1000, "token_reset_duration": "never"}}]}]);
        c["teams"][0]["customer_id"] = json!("acme");
    });
    let per_value = with(|c| {
        c["virtual_keys"][0]["per_value"] = json!({"header": "x-end-user",
            "budgets": [{"max_limit": 1, "reset_duration": "1d"}],
            "rate_limit": {"request_max_limit": 10, "request_reset_duration": "1m"},
            "max_values": 500});
        c["teams"][0]["per_value"] = json!({"header": "x-agent-run",
            "rate_limit": {"token_max_limit": 100000, "token_reset_duration": "never"}});
    });
    for config in [
        per_value,
        per_model,
        never,
        base(),
        litellm,
        reserving,
        long_context,
        fleet,
        fleet_defaults,
        metering,
    ] {
        assert!(schema_errors(&v, &config).is_empty(), "{config}");
        governance::config::parse(&config.to_string()).unwrap();
    }
}

#[test]
fn known_bad_configurations_are_refused_by_schema_and_filter() {
    let v = validator();
    let sha = "ab".repeat(32);
    let cases: Vec<(&str, Value)> = vec![
        (
            "$schema is not a field",
            with(|c| c["$schema"] = json!("./governance.schema.json")),
        ),
        ("unknown top-level field", with(|c| c["budget"] = json!(5))),
        ("unknown mode", with(|c| c["mode"] = json!("audit"))),
        (
            "unknown failure mode",
            with(|c| c["failure_mode"] = json!("fail")),
        ),
        ("empty namespace", with(|c| c["namespace"] = json!(""))),
        (
            "no key header",
            with(|c| c["virtual_key_headers"] = json!([])),
        ),
        (
            "bad key header name",
            with(|c| c["virtual_key_headers"] = json!(["x bad"])),
        ),
        (
            "usage path without slash",
            with(|c| c["usage_endpoint"] = json!({"path": "usage"})),
        ),
        (
            "admin hash not hex",
            with(|c| c["usage_endpoint"] = json!({"path": "/u", "admin_key_sha256": "xyz"})),
        ),
        (
            "price missing output",
            with(|c| c["pricing"]["m"] = json!({"input_cost_per_token": 1e-6})),
        ),
        (
            "negative price",
            with(|c| {
                c["pricing"]["m"] =
                    json!({"input_cost_per_token": -1.0, "output_cost_per_token": 1e-6})
            }),
        ),
        (
            "a price the filter cannot apply",
            with(|c| {
                c["pricing"]["m"] = json!({"input_cost_per_token": 1e-6,
                    "output_cost_per_token": 1e-6, "input_cost_per_audio_token": 4e-5})
            }),
        ),
        (
            "prices by range",
            with(|c| {
                c["pricing"]["m"] = json!({"input_cost_per_token": 1e-6,
                    "output_cost_per_token": 1e-6,
                    "tiered_pricing": [{"range": [0, 1000], "input_cost_per_token": 1e-6}]})
            }),
        ),
        (
            "negative one-hour cache price",
            with(|c| {
                c["pricing"]["m"] = json!({"input_cost_per_token": 1e-6,
                    "output_cost_per_token": 1e-6, "cache_creation_input_token_cost_above_1hr": -1})
            }),
        ),
        (
            "zero budget",
            with(|c| c["teams"][0]["budgets"][0]["max_limit"] = json!(0)),
        ),
        (
            "bad duration unit",
            with(|c| c["teams"][0]["budgets"][0]["reset_duration"] = json!("5x")),
        ),
        (
            "fractional duration",
            with(|c| c["teams"][0]["budgets"][0]["reset_duration"] = json!("1.5h")),
        ),
        (
            "zero duration",
            with(|c| c["teams"][0]["budgets"][0]["reset_duration"] = json!("0s")),
        ),
        (
            "model config without a model",
            with(|c| c["teams"][0]["model_configs"] = json!([{"budgets": []}])),
        ),
        (
            "model config with a star inside its model",
            with(|c| c["teams"][0]["model_configs"] = json!([{"model": "gpt-*o"}])),
        ),
        (
            "unknown model config field",
            with(|c| {
                c["virtual_keys"][0]["model_configs"] =
                    json!([{"model": "gpt-4o", "allowed_models": []}])
            }),
        ),
        (
            "model configs on a provider config",
            with(|c| {
                c["virtual_keys"][0]["provider_configs"] =
                    json!([{"provider": "openai", "model_configs": [{"model": "gpt-4o"}]}])
            }),
        ),
        (
            "per_value without limits",
            with(|c| c["virtual_keys"][0]["per_value"] = json!({"header": "x-end-user"})),
        ),
        (
            "per_value with a header that is no header name",
            with(|c| {
                c["virtual_keys"][0]["per_value"] = json!({"header": "end user",
                    "budgets": [{"max_limit": 1, "reset_duration": "1d"}]})
            }),
        ),
        (
            "per_value with max_values 0",
            with(|c| {
                c["virtual_keys"][0]["per_value"] = json!({"header": "x-end-user",
                    "max_values": 0, "budgets": [{"max_limit": 1, "reset_duration": "1d"}]})
            }),
        ),
        (
            "per_value on a customer",
            with(|c| {
                c["customers"] = json!([{"id": "acme", "per_value": {"header": "x-end-user",
                    "budgets": [{"max_limit": 1, "reset_duration": "1d"}]}}])
            }),
        ),
        (
            "never misspelt",
            with(|c| c["teams"][0]["budgets"][0]["reset_duration"] = json!("Never")),
        ),
        (
            "unknown budget field",
            with(|c| c["teams"][0]["budgets"][0]["limit"] = json!(5)),
        ),
        (
            "request max without duration",
            with(|c| c["virtual_keys"][0]["rate_limit"] = json!({"request_max_limit": 5})),
        ),
        (
            "zero request max",
            with(|c| c["virtual_keys"][0]["rate_limit"]["request_max_limit"] = json!(0)),
        ),
        (
            "key with value and hash",
            with(|c| c["virtual_keys"][0]["value_sha256"] = json!(sha)),
        ),
        (
            "key with neither value nor hash",
            with(|c| {
                c["virtual_keys"][0]
                    .as_object_mut()
                    .unwrap()
                    .remove("value");
            }),
        ),
        (
            "key hash not 64 hex",
            with(|c| {
                let k = c["virtual_keys"][0].as_object_mut().unwrap();
                k.remove("value");
                k.insert("value_sha256".into(), json!("abc"));
            }),
        ),
        (
            "key with team and customer",
            with(|c| c["virtual_keys"][0]["customer_id"] = json!("acme")),
        ),
        (
            "key without id",
            with(|c| {
                c["virtual_keys"][0].as_object_mut().unwrap().remove("id");
            }),
        ),
        (
            "unknown provider-config field",
            with(|c| {
                c["virtual_keys"][0]["provider_configs"] =
                    json!([{"provider": "openai", "models": ["x"]}])
            }),
        ),
        (
            "reservation with zero bytes per token",
            with(|c| c["reservation"] = json!({"enabled": true, "prompt_bytes_per_token": 0})),
        ),
        (
            "reservation with an unknown field",
            with(|c| c["reservation"] = json!({"enabled": true, "estimate": "high"})),
        ),
        (
            "stream-usage injection not a boolean",
            with(|c| c["inject_stream_usage"] = json!("yes")),
        ),
        (
            "zero rewrite bound",
            with(|c| c["max_rewrite_body_bytes"] = json!(0)),
        ),
        (
            "rewrite bound over 16 MiB",
            with(|c| c["max_rewrite_body_bytes"] = json!(16 * 1024 * 1024 + 1)),
        ),
        (
            "fractional rewrite bound",
            with(|c| c["max_rewrite_body_bytes"] = json!(1.5)),
        ),
        (
            "deployment mapped to no model",
            with(|c| c["deployments"] = json!({"prod": ""})),
        ),
        (
            "deployment mapped to a number",
            with(|c| c["deployments"] = json!({"prod": 4})),
        ),
        (
            "empty deployment name",
            with(|c| c["deployments"] = json!({"": "gpt-4o"})),
        ),
        (
            "free path without a slash",
            with(|c| c["free_paths"] = json!(["v1/models"])),
        ),
        (
            "free path with a query",
            with(|c| c["free_paths"] = json!(["/v1/models?x=1"])),
        ),
        (
            "free paths not a list",
            with(|c| c["free_paths"] = json!("/v1/models")),
        ),
        ("fleet without a cluster", with(|c| c["fleet"] = json!({}))),
        (
            "fleet with an empty cluster",
            with(|c| c["fleet"] = json!({"cluster": " "})),
        ),
        (
            "fleet with an empty authority",
            with(|c| c["fleet"] = json!({"cluster": "limitador", "authority": ""})),
        ),
        (
            "fleet timeout of zero",
            with(|c| c["fleet"] = json!({"cluster": "limitador", "timeout_ms": 0})),
        ),
        (
            "fleet timeout over a minute",
            with(|c| c["fleet"] = json!({"cluster": "limitador", "timeout_ms": 60001})),
        ),
        (
            "fleet with an empty namespace prefix",
            with(|c| c["fleet"] = json!({"cluster": "limitador", "namespace_prefix": ""})),
        ),
        (
            "unknown unavailable mode",
            with(|c| c["fleet"] = json!({"cluster": "limitador", "unavailable": "fail"})),
        ),
        (
            "unknown fleet field",
            with(|c| c["fleet"] = json!({"cluster": "limitador", "redis": "redis://r"})),
        ),
    ];
    let mut problems = Vec::new();
    for (name, config) in &cases {
        if schema_errors(&v, config).is_empty() {
            problems.push(format!("schema accepts: {name}"));
        }
        if governance::config::parse(&config.to_string()).is_ok() {
            problems.push(format!("filter accepts: {name}"));
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn in_flight_caps_on_every_level_are_valid_and_bad_ones_refused_by_both() {
    let v = validator();
    let good = json!({
        "pricing": {"gpt-4o-mini": {"input_cost_per_token": 1.5e-7, "output_cost_per_token": 6e-7}},
        "customers": [{"id": "c", "rate_limit": {"max_in_flight": 100}}],
        "teams": [{"id": "t", "customer_id": "c",
            "rate_limit": {"max_in_flight": 20, "in_flight_timeout": "1h30m"}}],
        "virtual_keys": [{"id": "k", "value": "sk-1", "team_id": "t",
            "rate_limit": {"request_max_limit": 5, "request_reset_duration": "1m",
                           "max_in_flight": 4, "in_flight_timeout": "2d"},
            "provider_configs": [{"provider": "openai",
                "rate_limit": {"max_in_flight": 2, "in_flight_timeout": "90s"}}]}]
    });
    assert!(schema_errors(&v, &good).is_empty(), "{good}");
    governance::config::parse(&good.to_string()).unwrap();
    let rate = |limit: Value| with(|c| c["virtual_keys"][0]["rate_limit"] = limit);
    let cases = [
        ("no room at all", rate(json!({"max_in_flight": 0}))),
        ("a fraction", rate(json!({"max_in_flight": 1.5}))),
        (
            "a timeout without a cap",
            rate(json!({"in_flight_timeout": "10m"})),
        ),
        (
            "a calendar timeout",
            rate(json!({"max_in_flight": 1, "in_flight_timeout": "1M"})),
        ),
        (
            "a timeout that is no duration",
            rate(json!({"max_in_flight": 1, "in_flight_timeout": "10 minutes"})),
        ),
    ];
    for (name, config) in &cases {
        assert!(
            !schema_errors(&v, config).is_empty(),
            "schema accepts: {name}"
        );
        assert!(
            governance::config::parse(&config.to_string()).is_err(),
            "filter accepts: {name}"
        );
    }
}

/// Objects written as JSON arrays. The schema refuses them; the filter (serde's derived
/// `Deserialize` accepts a sequence for a struct, field by field in declaration order)
/// currently accepts them: `["x", "shadow"]` is read as namespace "x" in shadow mode, and a
/// budget `[5, "1d"]` as `{"max_limit": 5, "reset_duration": "1d"}`. docs/configuration.md
/// says the configuration is one JSON object.
#[test]
fn arrays_in_place_of_objects_are_refused_by_schema_and_filter() {
    let v = validator();
    let cases = [
        json!([]),
        json!(["x", "shadow"]),
        json!({"teams": [{"id": "t", "budgets": [[5, "1d"]]}]}),
        json!({"virtual_keys": [["k", "sk-1"]]}),
    ];
    for config in &cases {
        assert!(
            !schema_errors(&v, config).is_empty(),
            "schema accepts {config}"
        );
        assert!(
            governance::config::parse(&config.to_string()).is_err(),
            "filter accepts {config}"
        );
    }
}

#[test]
fn the_schema_refuses_arrays_in_place_of_objects() {
    let v = validator();
    for config in [
        json!([]),
        json!(["x", "shadow"]),
        json!({"teams": [{"id": "t", "budgets": [[5, "1d"]]}]}),
        json!({"virtual_keys": [["k", "sk-1"]]}),
    ] {
        assert!(
            !schema_errors(&v, &config).is_empty(),
            "schema accepts {config}"
        );
    }
}

#[test]
fn the_validator_refuses_keywords_it_does_not_implement() {
    assert!(Schema::new(json!({"type": "object", "patternProperties": {}})).is_err());
    assert!(Schema::new(json!({"properties": {"a": {"uniqueItems": true}}})).is_err());
    let s = Schema::new(json!({"type": "object", "required": ["a"]})).unwrap();
    assert!(!s.errors(&json!({})).is_empty());
    assert!(s.errors(&json!({"a": 1})).is_empty());
}

/// filter_state, alerts (and their refusals): valid for both, or refused by both.
#[test]
fn filter_state_and_alerts_are_described_for_both() {
    let v = validator();
    for config in [
        with(|c| c["filter_state"] = json!(true)),
        with(|c| c["alerts"] = json!({"thresholds": [0.5, 0.8, 1]})),
        with(|c| {
            c["alerts"] = json!({"thresholds": [0.9], "cluster": "alerts",
                "path": "/hooks/governance", "timeout_ms": 500});
        }),
    ] {
        assert!(schema_errors(&v, &config).is_empty(), "{config}");
        governance::config::parse(&config.to_string()).unwrap();
    }
    let cases = [
        (
            "filter_state not a boolean",
            with(|c| c["filter_state"] = json!("yes")),
        ),
        (
            "alerts without thresholds",
            with(|c| c["alerts"] = json!({"cluster": "a"})),
        ),
        (
            "no threshold",
            with(|c| c["alerts"] = json!({"thresholds": []})),
        ),
        (
            "threshold 0",
            with(|c| c["alerts"] = json!({"thresholds": [0]})),
        ),
        (
            "threshold over 1",
            with(|c| c["alerts"] = json!({"thresholds": [1.5]})),
        ),
        (
            "path without cluster",
            with(|c| c["alerts"] = json!({"thresholds": [0.5], "path": "/x"})),
        ),
        (
            "timeout without cluster",
            with(|c| c["alerts"] = json!({"thresholds": [0.5], "timeout_ms": 100})),
        ),
        (
            "path without its slash",
            with(|c| c["alerts"] = json!({"thresholds": [0.5], "cluster": "a", "path": "x"})),
        ),
        (
            "empty cluster",
            with(|c| c["alerts"] = json!({"thresholds": [0.5], "cluster": ""})),
        ),
        (
            "timeout 0",
            with(|c| c["alerts"] = json!({"thresholds": [0.5], "cluster": "a", "timeout_ms": 0})),
        ),
        (
            "unknown alerts field",
            with(|c| c["alerts"] = json!({"thresholds": [0.5], "email": "ops@example.com"})),
        ),
        (
            "alerts in fleet mode",
            with(|c| {
                c["alerts"] = json!({"thresholds": [0.5]});
                c["fleet"] = json!({"cluster": "limitador"});
            }),
        ),
    ];
    let mut problems = Vec::new();
    for (name, config) in &cases {
        // Fleet mode's refusal is the filter's alone: the schema describes fields, not
        // which may go together.
        if name != &"alerts in fleet mode" && schema_errors(&v, config).is_empty() {
            problems.push(format!("schema accepts: {name}"));
        }
        if governance::config::parse(&config.to_string()).is_ok() {
            problems.push(format!("filter accepts: {name}"));
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

/// reservation.clamp_output: valid with reservations on; refused by both without them.
#[test]
fn clamp_output_is_described_for_both() {
    let v = validator();
    let on = with(|c| c["reservation"] = json!({"enabled": true, "clamp_output": true}));
    assert!(schema_errors(&v, &on).is_empty(), "{on}");
    governance::config::parse(&on.to_string()).unwrap();
    for bad in [
        with(|c| c["reservation"] = json!({"clamp_output": true})),
        with(|c| c["reservation"] = json!({"enabled": false, "clamp_output": true})),
        with(|c| c["reservation"] = json!({"enabled": true, "clamp_output": "yes"})),
    ] {
        assert!(!schema_errors(&v, &bad).is_empty(), "schema accepts {bad}");
        assert!(
            governance::config::parse(&bad.to_string()).is_err(),
            "filter accepts {bad}"
        );
    }
    let fleet = with(|c| {
        c["reservation"] = json!({"enabled": true, "clamp_output": true});
        c["fleet"] = json!({"cluster": "limitador"});
    });
    let err = governance::config::parse(&fleet.to_string()).unwrap_err();
    assert_eq!(err.path, "reservation.clamp_output");
}
