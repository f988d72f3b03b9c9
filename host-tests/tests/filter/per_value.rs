//! `per_value` through the real module (docs/configuration.md): each value of a request
//! header gets the template's limits inside its owner's, in a bounded table of slots whose
//! values are stored only as hashes; a full table refuses, or admits with `failure_mode:
//! open`; a slot is reused once every window of its value has ended.

use std::time::Duration;

use host_tests::{Request, Response};

use crate::support::*;

/// Key `vk`: each `x-end-user` gets 2 requests a minute and $0.0003 a day, in at most 2
/// slots; the key itself has 100 requests a minute.
fn per_user(rest: &str) -> String {
    config(&format!(
        r#""virtual_keys":[{{"id":"vk","value":"sk",
            "rate_limit":{{"request_max_limit":100,"request_reset_duration":"1m"}},
            "per_value":{{"header":"X-End-User","max_values":2,
                "budgets":[{{"max_limit":0.0003,"reset_duration":"1d"}}],
                "rate_limit":{{"request_max_limit":2,"request_reset_duration":"1m"}}}}}}]{rest}"#
    ))
}

fn as_user(user: &str) -> Request {
    chat("sk", "gpt-4o-mini").header("x-end-user", user)
}

fn message(ex: &host_tests::Exchange) -> String {
    body_json(ex)["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn each_value_gets_the_templates_limits_inside_the_keys() {
    let mut host = host(&per_user(""));
    let vm = host.vm(0);
    for user in ["alice", "alice", "bob"] {
        let ex = vm.exchange(&as_user(user), &openai_json(1, 1));
        assert_eq!(ex.client.status, 200, "{user}");
    }
    let ex = vm.exchange(&as_user("alice"), &openai_json(1, 1));
    assert_eq!(ex.client.status, 429);
    assert_eq!(error_type(&ex), "request_limited");
    assert!(
        message(&ex).starts_with("virtual key 'vk' per value request limit exceeded: 2 of 2"),
        "{}",
        message(&ex)
    );
    assert_eq!(header(&ex, "retry-after"), Some("60"));
    assert!(ex.upstream.headers.is_none(), "refused at its headers");
    // Bob has his own slot; the key's own limit counted everyone's requests.
    let ex = vm.exchange(&as_user("bob"), &openai_json(1, 1));
    assert_eq!(ex.client.status, 200);
    assert_eq!(
        header(&ex, "x-ratelimit-remaining-requests"),
        Some("0"),
        "bob's 2nd of 2"
    );
    assert_eq!(used(&mut host, "vk", "requests"), 4.0);
}

#[test]
fn a_values_budget_is_charged_and_refuses_and_the_usage_endpoint_shows_the_askers_own() {
    let mut host = host(&per_user(""));
    // 1,000 + 100 tokens of gpt-4o-mini: $0.00021.
    for _ in 0..2 {
        let ex = host
            .vm(0)
            .exchange(&as_user("carol"), &openai_json(1000, 100));
        assert_eq!(ex.client.status, 200);
    }
    // A minute on, her request limit has room again; her budget has not.
    host.advance(Duration::from_secs(61));
    let ex = host
        .vm(0)
        .exchange(&as_user("carol"), &openai_json(1000, 100));
    assert_eq!(ex.client.status, 402);
    let ex = host
        .vm(0)
        .exchange(&as_user("carol"), &openai_json(1000, 100));
    assert_eq!(error_type(&ex), "budget_exceeded");
    assert!(
        message(&ex).contains("per value budget exceeded: 0.0004 of 0.0003 USD used"),
        "{}",
        message(&ex)
    );
    // Carol's counters, as she sees them; dave has none yet.
    let usage = |user: &str, host: &mut host_tests::Host| {
        let ex = host.vm(0).exchange(
            &Request::get("/governance/usage")
                .header("x-bf-vk", "sk")
                .header("x-end-user", user),
            &Response::status(500),
        );
        body_json(&ex)["counters"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    let carol = usage("carol", &mut host);
    let budget = carol
        .iter()
        .find(|c| c["per_value"] == "x-end-user" && c["kind"] == "budget")
        .expect("carol's budget");
    assert_eq!(budget["used"], 0.00042);
    assert_eq!(budget["limit"], 0.0003);
    let requests = carol
        .iter()
        .find(|c| c["per_value"] == "x-end-user" && c["kind"] == "requests")
        .expect("carol's requests");
    assert_eq!(
        requests["used"], 0,
        "the refused ones gave their slots back"
    );
    assert!(usage("dave", &mut host)
        .iter()
        .all(|c| c.get("per_value").is_none()));
}

#[test]
fn a_full_table_refuses_a_new_value_until_a_slot_has_no_window_left() {
    let mut host = host(&per_user(""));
    for user in ["u1", "u2"] {
        assert_eq!(
            host.vm(0)
                .exchange(&as_user(user), &openai_json(1, 1))
                .client
                .status,
            200
        );
    }
    let ex = host.vm(0).exchange(&as_user("u3"), &openai_json(1, 1));
    assert_eq!(ex.client.status, 429);
    assert_eq!(error_type(&ex), "per_value_full");
    assert!(
        message(&ex).starts_with(
            "virtual key 'vk': every one of its 2 counters for values of 'x-end-user' is in use"
        ),
        "{}",
        message(&ex)
    );
    assert_eq!(metric(&host, "rejected.per_value_full"), 1);
    // A day later every window of u1 and u2 has ended: u3 takes a slot, with fresh counters.
    host.advance(Duration::from_secs(86_400));
    let ex = host.vm(0).exchange(&as_user("u3"), &openai_json(1, 1));
    assert_eq!(ex.client.status, 200);
    assert_eq!(
        header(&ex, "x-ratelimit-remaining-requests"),
        Some("1"),
        "u3's own window"
    );
}

#[test]
fn with_failure_mode_open_a_value_without_a_slot_goes_on_without_its_limits() {
    let mut host = host(&per_user(r#","failure_mode":"open""#));
    for user in ["u1", "u2"] {
        assert_eq!(
            host.vm(0)
                .exchange(&as_user(user), &openai_json(1, 1))
                .client
                .status,
            200
        );
    }
    for _ in 0..3 {
        let ex = host.vm(0).exchange(&as_user("u3"), &openai_json(1, 1));
        assert_eq!(ex.client.status, 200);
    }
    assert_eq!(metric(&host, "store_failures"), 3);
}

#[test]
fn values_are_stored_only_as_hashes_and_a_missing_header_is_one_value() {
    let mut host = host(&per_user(""));
    let secret_user = "user-4711@example.com";
    assert_eq!(
        host.vm(0)
            .exchange(&as_user(secret_user), &openai_json(1, 1))
            .client
            .status,
        200
    );
    let data = host.shared_data();
    let keys = data.keys("governance");
    assert!(!keys.is_empty());
    for key in &keys {
        let (value, _) = data.get("governance", key).expect("stored");
        for bytes in [key.as_slice(), value.as_slice()] {
            assert!(
                !bytes
                    .windows(secret_user.len())
                    .any(|w| w == secret_user.as_bytes()),
                "the value in the clear in {}",
                String::from_utf8_lossy(key)
            );
        }
    }
    // Requests without the header share one value: leaving it out does not escape the limits.
    let bare = chat("sk", "gpt-4o-mini");
    let statuses: Vec<u32> = (0..3)
        .map(|_| host.vm(0).exchange(&bare, &openai_json(1, 1)).client.status)
        .collect();
    assert_eq!(statuses, [200, 200, 429]);
}

#[test]
fn many_workers_claiming_at_once_never_share_a_slot() {
    // Two slots, four workers, four values at the same instant: exactly two values get one.
    let mut host = host_with(&per_user(""), 4);
    let statuses: Vec<u32> = (0..4)
        .map(|i| {
            host.vm(i)
                .exchange(&as_user(&format!("w{i}")), &openai_json(1, 1))
                .client
                .status
        })
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        2,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        2,
        "{statuses:?}"
    );
}

#[test]
fn per_value_problems_name_their_path() {
    for (per_value, path) in [
        (
            r#"{"header":"x user","budgets":[{"max_limit":1,"reset_duration":"1d"}]}"#,
            "virtual_keys[0].per_value.header",
        ),
        (
            r#"{"header":"x-user","max_values":0,"budgets":[{"max_limit":1,"reset_duration":"1d"}]}"#,
            "virtual_keys[0].per_value.max_values",
        ),
        (r#"{"header":"x-user"}"#, "virtual_keys[0].per_value"),
        (
            r#"{"header":"x-user","budgets":[{"max_limit":1,"reset_duration":"5x"}]}"#,
            "virtual_keys[0].per_value.budgets[0].reset_duration",
        ),
    ] {
        let config = config(&format!(
            r#""virtual_keys":[{{"id":"vk","value":"sk","per_value":{per_value}}}]"#
        ));
        let log = match host_tests::HostBuilder::new(host_tests::GOVERNANCE_WASM)
            .plugin_config(&config)
            .build()
        {
            Err(host_tests::HostError::ConfigRejected(log)) => log,
            Ok(_) => panic!("accepted: {per_value}"),
            Err(other) => panic!("unexpected error {other:?}"),
        };
        assert!(log.contains(path), "{log}");
    }
}

/// Fleet mode: a value's limits are Limitador limits keyed by the value's hash (a second
/// variable), unbounded there: no table, no `max_values`; the limits file holds them.
#[test]
fn in_fleet_mode_values_are_limitador_variables_without_a_table() {
    use crate::fleet::{fleet_config, fleet_host};
    let config = fleet_config(
        "closed",
        r#""virtual_keys":[{"id":"k","value":"sk",
            "per_value":{"header":"x-end-user","max_values":1,
                "rate_limit":{"request_max_limit":1,"request_reset_duration":"1m"}}}]"#,
    );
    let policy = governance::config::parse(&config).expect("valid");
    let expected = governance::fleet::expected_limits(&policy, "gov");
    assert_eq!(expected.len(), 1);
    assert_eq!(expected[0].namespace, "gov:vk:k");
    assert_eq!(
        expected[0].conditions,
        ["descriptors[0].limit == 'per_value:requests:1m:rolling'"]
    );
    assert_eq!(
        expected[0].variables,
        ["descriptors[0].window", "descriptors[0].value"]
    );
    let (mut host, limitador) = fleet_host(&config, 2);
    let as_user = |user: &str| chat("sk", "gpt-4o-mini").header("x-end-user", user);
    // Three users though max_values is 1: the fleet has no table to fill.
    for (i, user) in ["ann", "ben", "cy"].iter().enumerate() {
        let ex = host.vm(i % 2).exchange(&as_user(user), &openai_json(1, 1));
        assert_eq!(ex.client.status, 200, "{user}");
    }
    let ex = host.vm(1).exchange(&as_user("ann"), &openai_json(1, 1));
    assert_eq!(ex.client.status, 429);
    assert!(
        message(&ex)
            .starts_with("virtual key 'k' per value request limit exceeded across the fleet"),
        "{}",
        message(&ex)
    );
    // The refusal is not remembered for the whole table: ben's second request is asked.
    host.advance(Duration::from_secs(61));
    let ex = host.vm(0).exchange(&as_user("ben"), &openai_json(1, 1));
    assert_eq!(ex.client.status, 200);
    let fake = limitador.lock().expect("fake");
    let hex = |user: &str| -> String {
        governance::per_value::value_hash(user.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    let bodies: Vec<serde_json::Value> = fake
        .log
        .iter()
        .filter(|c| c.path == "/check_and_report")
        .map(|c| serde_json::from_slice(&c.body).unwrap_or_default())
        .collect();
    assert_eq!(bodies[0]["values"]["value"], hex("ann"));
    assert!(
        fake.log
            .iter()
            .all(|c| !String::from_utf8_lossy(&c.body).contains("ann\"")),
        "the value itself never leaves the Envoy"
    );
}
