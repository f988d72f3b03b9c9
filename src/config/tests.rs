//! Every way a configuration can be refused, with the one line an operator sees.

use super::*;

fn error_of(json: &str) -> String {
    match parse(json) {
        Ok(_) => panic!("configuration unexpectedly accepted: {json}"),
        Err(err) => err.to_string(),
    }
}

const PRICING: &str =
    r#""pricing":{"gpt-4o-mini":{"input_cost_per_token":1.5e-7,"output_cost_per_token":6e-7}}"#;

fn with_key(key: &str) -> String {
    format!(r#"{{{PRICING},"virtual_keys":[{key}]}}"#)
}

#[test]
fn defaults_fill_an_empty_configuration() {
    let policy = parse("{}").unwrap();
    assert_eq!(policy.namespace, "governance");
    assert_eq!(policy.mode, Mode::Enforce);
    assert_eq!(policy.failure_mode, FailureMode::Closed);
    assert_eq!(
        policy.key_headers,
        [
            "x-bf-vk",
            "authorization",
            "x-api-key",
            "x-goog-api-key",
            "api-key"
        ]
    );
    assert!(
        policy.require_virtual_key
            && policy.strip_virtual_key
            && policy.require_pricing
            && policy.response_headers
    );
    assert_eq!(policy.provider_header, "x-bf-provider");
    assert!(policy.usage_endpoint.is_none());
}

#[test]
fn the_spec_example_compiles() {
    let json = r#"{
      "namespace": "governance", "mode": "enforce", "failure_mode": "closed", "timezone": "UTC",
      "virtual_key_headers": ["x-bf-vk", "authorization", "x-api-key", "x-goog-api-key", "api-key"],
      "require_virtual_key": true, "strip_virtual_key": true, "provider_header": "x-bf-provider",
      "require_pricing": true, "response_headers": true,
      "usage_endpoint": { "path": "/governance/usage", "admin_key_sha256": "0000000000000000000000000000000000000000000000000000000000000000" },
      "pricing": {
        "gpt-4o-mini": { "input_cost_per_token": 1.5e-7, "output_cost_per_token": 6e-7, "cache_read_input_token_cost": 7.5e-8 },
        "claude-sonnet-4*": { "input_cost_per_token": 3e-6, "output_cost_per_token": 1.5e-5,
                              "cache_read_input_token_cost": 3e-7, "cache_creation_input_token_cost": 3.75e-6 }
      },
      "customers": [ { "id": "acme", "budgets": [{ "max_limit": 2000, "reset_duration": "1M" }],
                       "calendar_aligned": true, "timezone": "America/New_York" } ],
      "teams": [ { "id": "ml", "customer_id": "acme", "budgets": [{ "max_limit": 500, "reset_duration": "1M" }],
                   "rate_limit": { "token_max_limit": 5000000, "token_reset_duration": "1d" } } ],
      "virtual_keys": [
        { "id": "vk-ml-1", "value": "sk-bf-1f0c", "is_active": true, "team_id": "ml",
          "expires_at": "2027-06-30T00:00:00Z", "allowed_models": ["gpt-4o-mini", "claude-sonnet-4*"],
          "budgets": [{ "max_limit": 10, "reset_duration": "1d" }, { "max_limit": 100, "reset_duration": "1M" }],
          "rate_limit": { "request_max_limit": 60, "request_reset_duration": "1m",
                          "token_max_limit": 200000, "token_reset_duration": "1h" },
          "provider_configs": [
            { "provider": "openai", "allowed_models": ["gpt-4o-mini"],
              "budgets": [{ "max_limit": 5, "reset_duration": "1d" }],
              "rate_limit": { "request_max_limit": 30, "request_reset_duration": "1m" } },
            { "provider": "anthropic" } ] },
        { "id": "vk-ci", "value_sha256": "1111111111111111111111111111111111111111111111111111111111111111", "customer_id": "acme" }
      ]
    }"#;
    let policy = parse(json).unwrap();
    assert_eq!(policy.keys.len(), 2);
    assert_eq!(policy.limits.len(), 1 + 2 + 4 + 2);
    let key = &policy.keys[0];
    assert_eq!(key.team, Some(0));
    assert_eq!(
        key.customer,
        Some(0),
        "a team key reaches its team's customer"
    );
    assert_eq!(policy.keys[1].customer, Some(0));
    assert!(policy.providers.contains("openai") && policy.providers.contains("anthropic"));
    let config = key.provider_config("openai").unwrap();
    assert_eq!(config.owner.id, "vk-ml-1/openai");
    let keys: std::collections::HashSet<_> = policy
        .limits
        .iter()
        .map(|l| l.storage_key.clone())
        .collect();
    assert_eq!(
        keys.len(),
        policy.limits.len(),
        "every limit has its own shared-data key"
    );
    // Calendar alignment is inherited from the owner.
    assert!(
        policy
            .limits
            .iter()
            .find(|l| l.owner_id == "acme")
            .unwrap()
            .calendar_aligned
    );
    assert!(
        !policy
            .limits
            .iter()
            .find(|l| l.owner_id == "ml")
            .unwrap()
            .calendar_aligned
    );
}

#[test]
fn pricing_entries_accept_litellm_extras() {
    let json = r#"{"pricing":{"gpt-4o":{"input_cost_per_token":2.5e-6,"output_cost_per_token":1e-5,
        "litellm_provider":"openai","mode":"chat","max_tokens":16384,"supports_vision":true}}}"#;
    let policy = parse(json).unwrap();
    let price = policy.pricing.lookup("gpt-4o").unwrap().base;
    assert_eq!(
        price.cache_read, price.input,
        "cache prices default to the input price"
    );
    assert_eq!(price.cache_write, price.input);
    assert_eq!(price.cache_write_1h, price.input);
}

#[test]
fn a_limit_that_never_resets_ignores_the_owners_calendar_and_zone() {
    let key = |owner: &str| {
        parse(&with_key(&format!(
            r#"{{"id":"k","value":"s",{owner}"budgets":[{{"max_limit":10,"reset_duration":"never"}}],
               "rate_limit":{{"request_max_limit":5,"request_reset_duration":"never",
                              "token_max_limit":9,"token_reset_duration":"1d","calendar_aligned":true}}}}"#
        )))
        .unwrap()
    };
    let plain = key("");
    let zoned = key(r#""calendar_aligned":true,"timezone":"Asia/Tokyo","#);
    for (a, b) in plain.limits.iter().zip(&zoned.limits).take(2) {
        assert_eq!(a.storage_key, b.storage_key, "{:?}", a.kind);
        assert!(!b.calendar_aligned && !b.rule.calendar_aligned());
    }
    // The token limit beside it keeps its alignment.
    assert!(plain.limits[2].rule.calendar_aligned());
    for (json, path) in [
        (
            r#"{"id":"k","value":"s","budgets":[{"max_limit":1,"reset_duration":"never","calendar_aligned":true}]}"#,
            "virtual_keys[0].budgets[0].calendar_aligned",
        ),
        (
            r#"{"id":"k","value":"s","rate_limit":{"request_max_limit":1,"request_reset_duration":"never","calendar_aligned":true}}"#,
            "virtual_keys[0].rate_limit.calendar_aligned",
        ),
    ] {
        let err = error_of(&with_key(json));
        assert!(err.starts_with(path), "{err}");
        assert!(err.contains("never"), "{err}");
    }
}

#[test]
fn model_configs_compile_beside_the_owners_limits_with_their_own_counters() {
    let policy = parse(&format!(
        r#"{{{PRICING},
        "teams":[{{"id":"ml","budgets":[{{"max_limit":10,"reset_duration":"1d"}}],
            "model_configs":[{{"model":"gpt-4o*","budgets":[{{"max_limit":10,"reset_duration":"1d"}}]}}]}}],
        "virtual_keys":[{{"id":"k","value":"s","team_id":"ml",
            "model_configs":[{{"model":"gpt-4o-mini","rate_limit":{{"request_max_limit":5,"request_reset_duration":"1m"}}}}]}}]}}"#
    ))
    .unwrap();
    assert_eq!(policy.limits.len(), 3);
    let team = &policy.teams[0].owner;
    let own = &policy.limits[team.limits[0]];
    let model = &policy.limits[team.model_configs[0].limits[0]];
    assert_eq!(own.model, None);
    assert_eq!(model.model.as_deref(), Some("gpt-4o*"));
    assert_ne!(own.storage_key, model.storage_key, "a counter of its own");
    let key = &policy.keys[0];
    let key_model = policy.model_limits(key, "gpt-4o-mini");
    assert_eq!(
        key_model.len(),
        2,
        "the key's exact entry and the team's prefix"
    );
    assert_eq!(policy.model_limits(key, "gpt-4.1"), Vec::<LimitId>::new());
    assert!(policy.key_has_model_configs(key));
}

#[test]
fn model_config_problems_name_their_path() {
    let cases = [
        (
            r#"{"id":"k","value":"s","model_configs":[{"model":"","budgets":[]}]}"#,
            "virtual_keys[0].model_configs[0].model: must not be empty",
        ),
        (
            r#"{"id":"k","value":"s","model_configs":[{"model":"gpt-*o"}]}"#,
            "virtual_keys[0].model_configs[0].model: `*` may only end",
        ),
        (
            r#"{"id":"k","value":"s","model_configs":[{"model":"a"},{"model":"a"}]}"#,
            "virtual_keys[0].model_configs[1].model: \"a\" is listed twice",
        ),
        (
            r#"{"id":"k","value":"s","model_configs":[{"model":"a","budgets":[{"max_limit":0,"reset_duration":"1d"}]}]}"#,
            "virtual_keys[0].model_configs[0].budgets[0].max_limit",
        ),
        (
            r#"{"id":"k","value":"s","model_configs":[{"model":"a","rate_limit":{"request_max_limit":1}}]}"#,
            "virtual_keys[0].model_configs[0].rate_limit.request_reset_duration",
        ),
        (
            r#"{"id":"k","value":"s","model_configs":[{"model":"a","provider":"openai"}]}"#,
            "virtual_keys[0].model_configs[0]",
        ),
        (
            r#"{"id":"k","value":"s","model_configs":[["a"]]}"#,
            "virtual_keys[0].model_configs[0]: it must be a JSON object",
        ),
    ];
    for (key, expected) in cases {
        let err = error_of(&with_key(key));
        assert!(err.starts_with(expected), "{err}");
    }
}

#[test]
fn counter_identity_ignores_max_but_not_window() {
    let a = parse(&with_key(
        r#"{"id":"k","value":"s","budgets":[{"max_limit":10,"reset_duration":"1d"}]}"#,
    ))
    .unwrap();
    let b = parse(&with_key(
        r#"{"id":"k","value":"s","budgets":[{"max_limit":99,"reset_duration":"1d"}]}"#,
    ))
    .unwrap();
    let c = parse(&with_key(
        r#"{"id":"k","value":"s","budgets":[{"max_limit":10,"reset_duration":"1w"}]}"#,
    ))
    .unwrap();
    let d = parse(&with_key(
        r#"{"id":"k","value":"s","budgets":[{"max_limit":10,"reset_duration":"1d","calendar_aligned":true}]}"#,
    ))
    .unwrap();
    let e = parse(&with_key(
        r#"{"id":"k","value":"s","budgets":[{"max_limit":10,"reset_duration":"1d","timezone":"Europe/Berlin"}]}"#,
    ))
    .unwrap();
    assert_eq!(a.limits[0].storage_key, b.limits[0].storage_key);
    for other in [&c, &d, &e] {
        assert_ne!(a.limits[0].storage_key, other.limits[0].storage_key);
    }
}

/// Refused configurations and the start of the line each is refused with.
fn refusal_cases() -> Vec<(String, &'static str)> {
    vec![
        ("not json".to_string(), "configuration is not valid JSON"),
        (r#"{"nope":1}"#.to_string(), "nope: unknown field `nope`"),
        ("[]".to_string(), "the configuration must be a JSON object"),
        (r#"["x","shadow"]"#.to_string(), "the configuration must be a JSON object"),
        (r#"{"usage_endpoint":["/u"]}"#.to_string(), "usage_endpoint: it must be a JSON object"),
        (r#"{"pricing":{"m":[1,2]}}"#.to_string(), r#"pricing["m"]: it must be a JSON object"#),
        (r#"{"teams":[{"id":"t","budgets":[[5,"1d"]]}]}"#.to_string(), "teams[0].budgets[0]: it must be a JSON object"),
        (r#"{"virtual_keys":[["k","sk-1"]]}"#.to_string(), "virtual_keys[0]: it must be a JSON object"),
        (r#"{"customers":[{"id":"c","rate_limit":[1,"1m"]}]}"#.to_string(), "customers[0].rate_limit: it must be a JSON object"),
        (
            r#"{"virtual_keys":[{"id":"k","value":"v","provider_configs":[{"provider":"p","budgets":[[1,"1d"]]}]}]}"#.to_string(),
            "virtual_keys[0].provider_configs[0].budgets[0]: it must be a JSON object",
        ),
        (r#"{"mode":"loud"}"#.to_string(), "mode: unknown variant `loud`"),
        (r#"{"failure_mode":"maybe"}"#.to_string(), "failure_mode: unknown variant `maybe`"),
        (r#"{"namespace":""}"#.to_string(), "namespace: must not be empty"),
        (r#"{"virtual_key_headers":[]}"#.to_string(), "virtual_key_headers: must name at least one header"),
        (r#"{"virtual_key_headers":["x ok"]}"#.to_string(), "virtual_key_headers[0]: \"x ok\" is not an HTTP header name"),
        (r#"{"provider_header":""}"#.to_string(), "provider_header: must not be empty"),
        (r#"{"usage_endpoint":{"path":"usage"}}"#.to_string(), "usage_endpoint.path: \"usage\" must start with '/'"),
        (r#"{"usage_endpoint":{"path":"/u","admin_key_sha256":"abc"}}"#.to_string(), "usage_endpoint.admin_key_sha256: must be 64 hexadecimal characters"),
        (r#"{"usage_endpoint":{"path":"/u","extra":1}}"#.to_string(), "usage_endpoint.extra: unknown field `extra`"),
        (r#"{"pricing":{"m":{"input_cost_per_token":-1,"output_cost_per_token":0}}}"#.to_string(), r#"pricing["m"].input_cost_per_token: -1 is not a price >= 0"#),
        (r#"{"pricing":{"m":{"output_cost_per_token":0}}}"#.to_string(), r#"pricing["m"]: missing field `input_cost_per_token`"#),
        (r#"{"reservation":{"enabled":true,"prompt_bytes_per_token":0}}"#.to_string(), "reservation.prompt_bytes_per_token: must be > 0"),
        (r#"{"reservation":{"default_max_output_tokens":0}}"#.to_string(), "reservation.default_max_output_tokens: must be > 0"),
        (r#"{"reservation":{"enabled":"yes"}}"#.to_string(), "reservation.enabled: invalid type"),
        (r#"{"reservation":{"enable":true}}"#.to_string(), "reservation.enable: unknown field `enable`"),
        (r#"{"customers":[{"id":"a"},{"id":"a"}]}"#.to_string(), "customers[1].id: \"a\" is used twice"),
        (r#"{"customers":[{"id":""}]}"#.to_string(), "customers[0].id: must not be empty"),
        (r#"{"teams":[{"id":"t","customer_id":"ghost"}]}"#.to_string(), "teams[0].customer_id: no customer has id \"ghost\""),
        (r#"{"teams":[{"id":"t"},{"id":"t"}]}"#.to_string(), "teams[1].id: \"t\" is used twice"),
        (with_key(r#"{"id":"k"}"#), "virtual_keys[0]: needs `value` or `value_sha256`"),
        (with_key(r#"{"id":"k","value":"a","value_sha256":"00"}"#), "virtual_keys[0]: has both `value` and `value_sha256`"),
        (with_key(r#"{"id":"k","value":""}"#), "virtual_keys[0].value: must not be empty"),
        (with_key(r#"{"id":"k","value_sha256":"zz"}"#), "virtual_keys[0].value_sha256: must be 64 hexadecimal characters"),
        (with_key(r#"{"id":"k","value":"a"},{"id":"k","value":"b"}"#), "virtual_keys[1].id: \"k\" is used twice"),
        (with_key(r#"{"id":"k","value":"a"},{"id":"j","value":"a"}"#), "virtual_keys[1].value: another virtual key has the same secret"),
        (with_key(r#"{"id":"k","value":"a","team_id":"t"}"#), "virtual_keys[0].team_id: no team has id \"t\""),
        (with_key(r#"{"id":"k","value":"a","customer_id":"c"}"#), "virtual_keys[0].customer_id: no customer has id \"c\""),
        (
            r#"{"customers":[{"id":"c"}],"teams":[{"id":"t"}],"virtual_keys":[{"id":"k","value":"a","team_id":"t","customer_id":"c"}]}"#.to_string(),
            "virtual_keys[0]: names both `team_id` and `customer_id`",
        ),
        (with_key(r#"{"id":"k","value":"a","expires_at":"tomorrow"}"#), "virtual_keys[0].expires_at: \"tomorrow\" is not an RFC 3339 time"),
        (with_key(r#"{"id":"k","value":"a","name":"x"}"#), "virtual_keys[0].name: unknown field `name`"),
        (
            with_key(r#"{"id":"k","value":"a","budgets":[{"max_limit":0,"reset_duration":"1d"}]}"#),
            "virtual_keys[0].budgets[0].max_limit: 0 is not a USD amount > 0",
        ),
        (
            with_key(r#"{"id":"k","value":"a","budgets":[{"max_limit":1,"reset_duration":"1d"},{"max_limit":2,"reset_duration":"1d"}]}"#),
            "virtual_keys[0].budgets[1].reset_duration: \"1d\" is used by another budget of this owner",
        ),
        (
            with_key(r#"{"id":"k","value":"a","budgets":[{"max_limit":1,"reset_duration":"1d","timezone":"Mars/Olympus"}]}"#),
            "virtual_keys[0].budgets[0].timezone:",
        ),
        (
            with_key(r#"{"id":"k","value":"a","rate_limit":{"request_max_limit":5}}"#),
            "virtual_keys[0].rate_limit.request_reset_duration: is required with request_max_limit",
        ),
        (
            with_key(r#"{"id":"k","value":"a","rate_limit":{"token_reset_duration":"1h"}}"#),
            "virtual_keys[0].rate_limit.token_max_limit: is required with token_reset_duration",
        ),
        (
            with_key(r#"{"id":"k","value":"a","rate_limit":{"request_max_limit":0,"request_reset_duration":"1m"}}"#),
            "virtual_keys[0].rate_limit.request_max_limit: must be > 0",
        ),
        (
            with_key(r#"{"id":"k","value":"a","rate_limit":{"request_max_limit":-3,"request_reset_duration":"1m"}}"#),
            "virtual_keys[0].rate_limit.request_max_limit: invalid value: integer `-3`",
        ),
        (
            with_key(r#"{"id":"k","value":"a","provider_configs":[{"provider":"openai"},{"provider":"openai"}]}"#),
            "virtual_keys[0].provider_configs[1].provider: provider \"openai\" is listed twice",
        ),
        (
            with_key(r#"{"id":"k","value":"a","provider_configs":[{"provider":"a/b"}]}"#),
            "virtual_keys[0].provider_configs[0].provider: must be a non-empty provider name",
        ),
        (
            with_key(r#"{"id":"k","value":"a","provider_configs":[{"provider":"openai","budgets":[{"max_limit":-1,"reset_duration":"1d"}]}]}"#),
            "virtual_keys[0].provider_configs[0].budgets[0].max_limit: -1 is not a USD amount",
        ),
    ]
}

#[test]
fn refusals_name_the_json_path() {
    for (json, expected) in refusal_cases() {
        let error = error_of(&json);
        assert!(
            error.starts_with(expected),
            "for {json}\n  expected: {expected}\n  got:      {error}"
        );
        assert!(!error.contains('\n'), "one line: {error}");
    }
}

/// `problems` (the operators' check) starts with the very problem the filter refuses a
/// configuration with, for every way of being refused.
#[test]
fn every_problem_listed_starts_with_the_one_the_filter_reports() {
    for (json, _) in refusal_cases() {
        let listed = problems(&json);
        assert_eq!(
            listed.first().map(ToString::to_string),
            Some(error_of(&json)),
            "for {json}"
        );
    }
    let valid =
        with_key(r#"{"id":"k","value":"a","budgets":[{"max_limit":1,"reset_duration":"1d"}]}"#);
    assert!(parse(&valid).is_ok());
    assert_eq!(problems(&valid), []);
}

#[test]
fn every_problem_is_listed_once_with_its_path() {
    let json = r#"{
      "mode": "loud", "nope": 1, "timezone": "Mars/Olympus", "namespace": "",
      "virtual_key_headers": ["ok", "not ok", ""],
      "pricing": { "m": { "input_cost_per_token": -1, "output_cost_per_token": 0 },
                   "n": { "output_cost_per_token": 0 } },
      "customers": [ { "id": "c", "budgets": [ { "max_limit": "lots", "reset_duration": "1M" } ] } ],
      "teams": [ { "id": "t", "customer_id": "c", "timezone": "Nowhere/Land",
                   "budgets": [ { "max_limit": 0, "reset_duration": "1x" },
                                { "max_limit": 5, "reset_duration": "1d" },
                                { "max_limit": 6, "reset_duration": "1d" } ] },
                 { "id": "t" } ],
      "virtual_keys": [
        { "id": "k1", "value": "a", "team_id": "t",
          "rate_limit": { "request_max_limit": 0, "request_reset_duration": "1m",
                          "token_max_limit": 5 } },
        { "id": "k2", "team_id": "ghost", "expires_at": "soon" },
        { "id": "k3", "value": "a", "customer_id": "c",
          "provider_configs": [ { "provider": "a/b" }, { "provider": "p", "budgets": [
            { "max_limit": 1, "reset_duration": "7m", "calendar_aligned": true } ] } ] },
        { "id": "k4", "value": "b", "unknown": true }
      ]
    }"#;
    let listed: Vec<String> = problems(json).iter().map(ToString::to_string).collect();
    assert_eq!(listed.first(), Some(&error_of(json)));
    let paths: Vec<&str> = listed
        .iter()
        .map(|line| {
            line.split_once(": ")
                .map_or(line.as_str(), |(path, _)| path)
        })
        .collect();
    assert_eq!(
        paths,
        [
            // The small fields that cannot be read, each one.
            "mode",
            "nope",
            // Entries that cannot be read, before anything is compiled (as in the filter).
            "customers[0].budgets[0].max_limit",
            "virtual_keys[3].unknown",
            // The small fields' meaning, in the order the filter checks it.
            "namespace",
            "timezone",
            "virtual_key_headers[1]",
            "virtual_key_headers[2]",
            r#"pricing["m"].input_cost_per_token"#,
            r#"pricing["n"]"#,
            // Owners: a team's invalid zone does not make each of its limits a problem too,
            // and a customer that could not be read is still a customer others may name.
            "teams[0].timezone",
            "teams[0].budgets[0].max_limit",
            "teams[0].budgets[0].reset_duration",
            "teams[0].budgets[2].reset_duration",
            "teams[1].id",
            "virtual_keys[0].rate_limit.request_max_limit",
            "virtual_keys[0].rate_limit.token_reset_duration",
            "virtual_keys[1]",
            "virtual_keys[1].team_id",
            "virtual_keys[1].expires_at",
            "virtual_keys[2].provider_configs[0].provider",
            "virtual_keys[2].provider_configs[1].budgets[0].reset_duration",
            "virtual_keys[2].value",
        ],
        "{listed:#?}"
    );
}

#[test]
fn reservation_is_off_by_default_and_takes_the_spec_defaults() {
    let off = parse("{}").unwrap();
    assert!(!off.reservation.enabled);
    let on = parse(r#"{"reservation":{"enabled":true}}"#).unwrap();
    assert_eq!(
        (
            on.reservation.enabled,
            on.reservation.default_max_output_tokens,
            on.reservation.prompt_bytes_per_token
        ),
        (true, 4096, 4)
    );
    let tuned = parse(
        r#"{"reservation":{"enabled":true,"default_max_output_tokens":512,"prompt_bytes_per_token":3}}"#,
    )
    .unwrap();
    assert_eq!(
        (
            tuned.reservation.default_max_output_tokens,
            tuned.reservation.prompt_bytes_per_token
        ),
        (512, 3)
    );
}

/// The owners' entries are read one at a time (`document.rs`); what a document means, and
/// the exact line a broken one is refused with, stay those of reading it whole.
#[test]
fn entries_read_one_at_a_time_mean_what_the_whole_document_meant() {
    // Repeated fields: the last one counts, at the top level and inside an entry.
    let policy = parse(r#"{"mode":"shadow","mode":"enforce"}"#).unwrap();
    assert_eq!(policy.mode, Mode::Enforce);
    let policy =
        parse(r#"{"virtual_keys":[{"id":"k","value":"a","is_active":false,"is_active":true}]}"#)
            .unwrap();
    assert!(policy.keys[0].active);
    let policy = parse(r#"{"virtual_keys":[{"id":"k","value":"a"}],"virtual_keys":[]}"#).unwrap();
    assert!(policy.keys.is_empty());
    // Nesting up to serde_json's limit is fine (unknown price fields are ignored).
    let nested = |depth: usize| {
        format!(
            r#"{{"pricing":{{"m":{{"input_cost_per_token":0,"output_cost_per_token":0,"x":{}{}}}}}}}"#,
            "[".repeat(depth),
            "]".repeat(depth)
        )
    };
    assert!(parse(&nested(120)).is_ok());
    let deep_key = r#"{"virtual_keys":[{"id":"k","value":"a","budgets":[{"max_limit":1e999,"reset_duration":"1d"}]}]}"#;
    let bad_escape = r#"{"virtual_keys":[{"id":"k","value":"a"},{"id":"k2","value":"\ud800"}]}"#;
    for (json, expected) in [
        (r#"{"virtual_keys":null}"#.to_string(), "virtual_keys: invalid type: null, expected a sequence"),
        (r#"{"teams":[{"id":"t","budgets":5}]}"#.to_string(), "teams[0].budgets: invalid type: integer `5`, expected a sequence"),
        (" \n {\"virtual\\u005fkeys\":[{\"value\":\"x\"}]}".to_string(), "virtual_keys[0]: missing field `id`"),
        (r#"{"virtual_keys":[5]}"#.to_string(), "virtual_keys[0]: it must be a JSON object"),
        (r#"{"virtual_keys":[{"id":"k","value":"a","allowed_models":[1]}]}"#.to_string(), "virtual_keys[0].allowed_models[0]: invalid type: integer `1`, expected a string"),
        (
            r#"{"virtual_keys":[{"id":"k","value":"a","provider_configs":[{"provider":"p","budgets":[{"max_limit":1}]}]}]}"#.to_string(),
            "virtual_keys[0].provider_configs[0].budgets[0]: missing field `reset_duration`",
        ),
        // Positions count from the start of the document, not of the entry.
        (deep_key.to_string(), "configuration is not valid JSON: number out of range at line 1 column 68"),
        (bad_escape.to_string(), "configuration is not valid JSON: unexpected end of hex escape at line 1 column 67"),
        (nested(130), "configuration is not valid JSON: recursion limit exceeded at line 1 column 197"),
        ("{} x".to_string(), "configuration is not valid JSON: trailing characters at line 1 column 4"),
        ("5".to_string(), "the configuration must be a JSON object"),
        ("null".to_string(), "the configuration must be a JSON object"),
        ("\"x\"".to_string(), "the configuration must be a JSON object"),
    ] {
        assert_eq!(error_of(&json), expected, "for {json}");
    }
}

/// With a host that can hand the configuration over again, entries are read back from it
/// one at a time: the same policy as from the text in memory, and a refusal (not a wrong
/// policy) if the host cannot give the bytes again.
#[test]
fn a_configuration_read_back_from_the_host_gives_the_same_policy() {
    let text = format!(
        r#"{{{PRICING},"customers":[{{"id":"c","budgets":[{{"max_limit":9,"reset_duration":"1M"}}]}}],
        "teams":[{{"id":"t","customer_id":"c"}}],
        "virtual_keys":[{{"id":"k1","value":"s1","team_id":"t","rate_limit":{{"request_max_limit":5,"request_reset_duration":"1m"}}}},
                        {{"id":"k2","value_sha256":"{}","budgets":[{{"max_limit":1,"reset_duration":"1d"}}]}}]}}"#,
        "ab".repeat(32)
    );
    let reads = std::cell::Cell::new(0);
    let host = |start: usize, len: usize| {
        reads.set(reads.get() + 1);
        text.get(start..start + len).map(|s| s.as_bytes().to_vec())
    };
    let reread = parse_rereading(text.clone(), &host).unwrap();
    let direct = parse(&text).unwrap();
    assert_eq!(reads.get(), 4, "each entry read back once");
    let summary = |p: &Policy| {
        let limits: Vec<_> = p
            .limits
            .iter()
            .map(|l| (l.owner_id.clone(), l.max, l.storage_key.clone()))
            .collect();
        let keys: Vec<_> = p
            .keys
            .iter()
            .map(|k| {
                (
                    k.owner.id.clone(),
                    k.secret_sha256,
                    k.team,
                    k.customer,
                    k.owner.limits.clone(),
                )
            })
            .collect();
        (limits, keys, p.key_by_hash.clone())
    };
    assert_eq!(summary(&reread), summary(&direct));
    // Errors inside entries keep their paths.
    let broken =
        with_key(r#"{"id":"k","value":"a","budgets":[{"max_limit":0,"reset_duration":"1d"}]}"#);
    let echo = |start: usize, len: usize| {
        broken
            .get(start..start + len)
            .map(|s| s.as_bytes().to_vec())
    };
    assert_eq!(
        parse_rereading(broken.clone(), &echo)
            .unwrap_err()
            .to_string(),
        error_of(&broken)
    );
    // A host that cannot give the entry again, or gives other bytes.
    let none = |_: usize, _: usize| None;
    let short = |_: usize, _: usize| Some(b"{}".to_vec());
    for host in [&none as &dyn Fn(usize, usize) -> Option<Vec<u8>>, &short] {
        assert_eq!(
            parse_rereading(text.clone(), host).unwrap_err().to_string(),
            "the configuration could not be read again from the host"
        );
    }
}

#[test]
fn alerts_thresholds_are_fractions_in_ascending_order() {
    let policy = parse(r#"{"alerts":{"thresholds":[0.5,0.8,0.95]}}"#).unwrap();
    let alerts = policy.alerts.unwrap();
    assert_eq!(alerts.thresholds_ppm, vec![500_000, 800_000, 950_000]);
    assert_eq!(alerts.post, None);
    let posting = parse(r#"{"alerts":{"thresholds":[1],"cluster":"alerts"}}"#).unwrap();
    let post = posting.alerts.unwrap().post.unwrap();
    assert_eq!(
        (post.cluster.as_str(), post.path.as_str(), post.timeout_ms),
        ("alerts", "/", 2000)
    );
    assert_eq!(
        error_of(r#"{"alerts":{"thresholds":[0.8,0.5]}}"#),
        "alerts.thresholds[1]: thresholds must be in ascending order, each different"
    );
    assert_eq!(
        error_of(r#"{"alerts":{"thresholds":[0.5,0.5]}}"#),
        "alerts.thresholds[1]: thresholds must be in ascending order, each different"
    );
    assert!(
        error_of(r#"{"alerts":{"thresholds":[0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9]}}"#)
            .starts_with("alerts.thresholds: must list 1 to 8")
    );
    assert!(
        error_of(r#"{"alerts":{"thresholds":[0.5]},"fleet":{"cluster":"l"}}"#)
            .starts_with("alerts: not available in fleet mode")
    );
}
