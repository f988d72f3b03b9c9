//! The verbs natively, on what an operator would ask of them. (The JavaScript package's
//! tests run the same verbs compiled to WebAssembly against governance-cli.)

use serde_json::{json, Value};

use super::*;

const CONFIG: &str = r#"{
  "pricing": { "gpt-4o-mini": { "input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6 } },
  "customers": [ { "id": "acme", "calendar_aligned": true, "timezone": "America/New_York",
                   "budgets": [ { "max_limit": 100, "reset_duration": "1M" } ] } ],
  "teams": [ { "id": "ml", "customer_id": "acme",
               "rate_limit": { "request_max_limit": 2, "request_reset_duration": "1h" } } ],
  "virtual_keys": [ { "id": "vk-1", "value": "sk-one", "team_id": "ml" },
                    { "id": "vk-2", "value": "sk-two", "customer_id": "acme" },
                    { "id": "lone", "value": "sk-lone" } ]
}"#;

fn request(time: &str, key: &str) -> Value {
    json!({ "time": time, "key": key, "model": "gpt-4o-mini",
            "usage": { "prompt_tokens": 1000, "completion_tokens": 500 } })
}

fn trace(lines: &[Value]) -> String {
    lines
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn check_lists_every_problem_and_summarises_a_valid_configuration() {
    let invalid = check(r#"{"mode":"loud","teams":[{"id":"t","customer_id":"x"}]}"#);
    assert_eq!(invalid["valid"], false);
    assert_eq!(
        invalid["problems"],
        json!([
            { "path": "mode", "message": "unknown variant `loud`, expected `enforce` or `shadow`" },
            { "path": "teams[0].customer_id", "message": "no customer has id \"x\"" },
        ])
    );
    let valid = check(CONFIG);
    assert_eq!(valid["valid"], true);
    assert_eq!(valid["problems"], json!([]));
    assert_eq!(valid["summary"]["virtual_keys"], 3);
    assert_eq!(valid["summary"]["limits"], 2);
}

#[test]
fn explain_decides_with_the_counters_a_trace_left() {
    let earlier = trace(&[
        request("2026-03-02T09:00:00Z", "sk-one"),
        request("2026-03-02T09:10:00Z", "sk-one"),
        // After the explained request: not replayed.
        request("2026-03-02T09:40:00Z", "sk-one"),
    ]);
    let asked = request("2026-03-02T09:30:00Z", "sk-one").to_string();
    let explained = explain(CONFIG, &asked, Some(&earlier)).unwrap();
    assert_eq!(explained["virtual_key"]["id"], "vk-1");
    assert_eq!(
        (explained["team"].clone(), explained["customer"].clone()),
        (json!("ml"), json!("acme"))
    );
    let requests = &explained["limits"][0];
    assert_eq!(
        (requests["kind"].clone(), requests["used"].clone()),
        (json!("requests"), json!(2))
    );
    assert_eq!(requests["window_start"], "2026-03-02T09:00:00Z");
    let decision = &explained["decision"];
    assert_eq!(decision["admitted"], false);
    assert_eq!(decision["status"], 429);
    assert_eq!(decision["type"], "request_limited");
    assert_eq!(decision["headers"]["retry-after"], "1800");
    // The same request without the trace is admitted.
    let fresh = explain(CONFIG, &asked, None).unwrap();
    assert_eq!(fresh["decision"]["admitted"], true);
    assert_eq!(
        fresh["decision"]["response_headers"]["x-ratelimit-remaining-requests"],
        "1"
    );
}

#[test]
fn shadow_mode_is_explained_with_the_refusal_it_would_log_and_simulated_as_it_runs() {
    let shadow = CONFIG.replacen('{', r#"{"mode":"shadow","#, 1);
    let lines: Vec<Value> = ["09:00", "09:10", "09:20"]
        .iter()
        .map(|t| request(&format!("2026-03-02T{t}:00Z"), "sk-one"))
        .collect();
    let simulated = simulate(&shadow, &trace(&lines)).unwrap();
    assert_eq!(simulated["mode"], "shadow");
    assert_eq!(simulated["admitted"], 3, "shadow mode never refuses");
    assert_eq!(simulated["shadow_refused"], 1);
    let explained = explain(&shadow, &lines[2].to_string(), Some(&trace(&lines[..2]))).unwrap();
    assert_eq!(explained["mode"], "shadow");
    assert_eq!(explained["decision"]["type"], "request_limited");
}

#[test]
fn simulate_reports_spend_per_owner_and_when_limits_ran_out() {
    let lines: Vec<Value> = [
        ("2026-03-02T09:00:00Z", "sk-one"),
        ("2026-03-02T09:05:00Z", "sk-two"),
        ("2026-03-02T09:20:00Z", "sk-one"),
        ("2026-03-02T09:30:00Z", "sk-one"),
        ("2026-03-02T10:30:00Z", "sk-one"),
        ("2026-03-02T10:31:00Z", "sk-nobody"),
    ]
    .iter()
    .map(|(time, key)| request(time, key))
    .collect();
    // Out of order in the file: replayed in time order.
    let mut shuffled = lines.clone();
    shuffled.swap(0, 2);
    let simulated = simulate(CONFIG, &trace(&shuffled)).unwrap();
    assert_eq!(simulated["requests"], 6);
    assert_eq!(simulated["admitted"], 4);
    assert_eq!(
        simulated["refusals"],
        json!({ "request_limited": 1, "virtual_key_not_found": 1 })
    );
    let statuses: Vec<Value> = simulated["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| json!([r["line"], r["status"]]))
        .collect();
    assert_eq!(
        statuses,
        vec![
            json!([3, 200]),
            json!([2, 200]),
            json!([1, 200]),
            json!([4, 429]),
            json!([5, 200]),
            json!([6, 401])
        ]
    );
    // 1000 input tokens at $1/M and 500 output at $2/M: $0.002 a request.
    let spend: Vec<Value> = simulated["spend"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| json!([s["owner"], s["id"], s["usd"], s["requests"], s["tokens"]]))
        .collect();
    assert_eq!(
        spend,
        vec![
            json!(["virtual_key", "vk-1", 0.006, 3, 4500]),
            json!(["virtual_key", "vk-2", 0.002, 1, 1500]),
            json!(["team", "ml", 0.006, 3, 4500]),
            json!(["customer", "acme", 0.008, 4, 6000]),
        ]
    );
    let team_requests = simulated["limits"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["owner"] == "team")
        .unwrap();
    assert_eq!(
        team_requests["ran_out"],
        json!([{ "at": "2026-03-02T09:20:00Z", "window_start": "2026-03-02T09:00:00Z",
                 "window_end": "2026-03-02T10:00:00Z" }])
    );
    assert_eq!(
        team_requests["window_start"], "2026-03-02T10:00:00Z",
        "as at the last request"
    );
    assert_eq!(team_requests["used"], 1);
}

#[test]
fn a_fleet_configuration_is_replayed_on_local_counters() {
    let fleet = CONFIG.replacen('{', r#"{"fleet":{"cluster":"limitador"},"#, 1);
    let lines: Vec<Value> = ["09:00", "09:10", "09:20"]
        .iter()
        .map(|t| request(&format!("2026-03-02T{t}:00Z"), "sk-one"))
        .collect();
    let simulated = simulate(&fleet, &trace(&lines)).unwrap();
    assert_eq!(simulated["admitted"], 2);
    assert_eq!(simulated["refusals"], json!({ "request_limited": 1 }));
}

#[test]
fn describe_nests_owners_and_gives_each_limit_its_window_in_its_zone() {
    let at = parse_time("2026-03-15T12:00:00Z").unwrap();
    let described = describe(CONFIG, at).unwrap();
    let roots: Vec<Value> = described["hierarchy"]
        .as_array()
        .unwrap()
        .iter()
        .map(|node| json!([node["owner"], node["id"]]))
        .collect();
    assert_eq!(
        roots,
        vec![json!(["customer", "acme"]), json!(["virtual_key", "lone"])]
    );
    let acme = &described["hierarchy"][0];
    let children: Vec<Value> = acme["children"]
        .as_array()
        .unwrap()
        .iter()
        .map(|node| {
            json!([
                node["owner"],
                node["id"],
                node["children"].as_array().unwrap().len()
            ])
        })
        .collect();
    assert_eq!(
        children,
        vec![json!(["team", "ml", 1]), json!(["virtual_key", "vk-2", 0])]
    );
    let budget = &acme["limits"][0];
    assert_eq!(budget["window_start"], "2026-03-01T05:00:00Z");
    assert_eq!(
        budget["window_end"], "2026-04-01T04:00:00Z",
        "daylight saving began in between"
    );
    assert_eq!(budget["window_start_local"], "2026-03-01T00:00:00");
    assert_eq!(budget["timezone"], "America/New_York");
    let team = &acme["children"][0]["limits"][0];
    assert_eq!(team["in_use"], false);
    assert_eq!(team["window_start"], "2026-03-15T12:00:00Z");
}

#[test]
fn bad_inputs_are_failures_that_say_where() {
    let err = simulate(r#"{"namespace":""}"#, "").unwrap_err();
    assert_eq!(
        err.error,
        "invalid configuration: namespace: must not be empty"
    );
    assert_eq!(err.problems.len(), 1);
    let err = simulate(
        CONFIG,
        "\n{\"time\":\"2026-03-02T09:00:00Z\",\"key\":\"sk-one\"}\n{\"tme\":1}",
    )
    .unwrap_err();
    assert!(
        err.error.starts_with("trace line 3: unknown field `tme`"),
        "{}",
        err.error
    );
    let err = explain(CONFIG, r#"{"time":"noon"}"#, None).unwrap_err();
    assert!(
        err.error.starts_with("invalid request: time: \"noon\""),
        "{}",
        err.error
    );
}
