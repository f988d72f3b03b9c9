//! Threshold alerts in real Envoy: several workers charge one key and one team at once,
//! and the receiver behind the `alerts` cluster gets each threshold's event exactly once.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use envoy_harness::mock::MockUpstream;
use envoy_harness::runner::BOOTSTRAP_TEMPLATE;
use envoy_harness::{Request, Stack};
use serde_json::{json, Value};

const TOKENS_KEY: &str = "sk-alerts-tokens";
const BUDGET_KEY: &str = "sk-alerts-budget";

/// The harness bootstrap with one more cluster, `alerts`, on the receiver's port.
fn template() -> String {
    format!(
        "{BOOTSTRAP_TEMPLATE}
  - name: alerts
    type: STATIC
    connect_timeout: 2s
    load_assignment:
      cluster_name: alerts
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address: {{ address: 127.0.0.1, port_value: {{{{ALERTS_PORT}}}} }}
"
    )
}

/// Key `k`: 3,000 tokens a day; key `b`, in team `ml`: the team's $0.0008 a day. Each
/// request (100 prompt and 50 output tokens of gpt-4o-mini) charges 150 tokens and
/// $0.000045, so 32 requests of each key take both limits past every threshold.
fn plugin_config() -> String {
    json!({
        "alerts": {"thresholds": [0.5, 0.8, 0.95], "cluster": "alerts", "path": "/hooks/governance"},
        "pricing": {"gpt-4o-mini": {"input_cost_per_token": 1.5e-7, "output_cost_per_token": 6e-7}},
        "teams": [{"id": "ml", "budgets": [{"max_limit": 0.0008, "reset_duration": "1d"}]}],
        "virtual_keys": [
            {"id": "k", "value": TOKENS_KEY,
             "rate_limit": {"token_max_limit": 3000, "token_reset_duration": "1d"}},
            {"id": "b", "value": BUDGET_KEY, "team_id": "ml"}
        ]
    })
    .to_string()
}

fn chat() -> Value {
    json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
}

#[test]
fn each_threshold_event_arrives_exactly_once_under_concurrent_charges() {
    let receiver = MockUpstream::start().expect("receiver");
    let s = Stack::start_with(&plugin_config(), |c| {
        c.template(template())
            .placeholder("ALERTS_PORT", receiver.port())
            .concurrency(4)
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let s = Arc::new(s);
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let s = Arc::clone(&s);
            thread::spawn(move || {
                (0..8)
                    .map(|i| {
                        let key = if i % 2 == 0 { TOKENS_KEY } else { BUDGET_KEY };
                        s.client()
                            .send(
                                &Request::post("/v1/chat/completions")
                                    .header("x-bf-vk", key)
                                    .header("x-mock-usage", "prompt=100,completion=50")
                                    .json(&chat()),
                            )
                            .map(|r| r.status)
                            .unwrap_or(0)
                    })
                    .collect::<Vec<u16>>()
            })
        })
        .collect();
    let statuses: Vec<u16> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("client thread"))
        .collect();
    // Each limit admits until it is used up: at least 20 of `k` (3,000 tokens) and 18 of
    // `b` ($0.0008), past 95% of both.
    let admitted = statuses.iter().filter(|&&s| s == 200).count();
    assert!(admitted >= 38, "{statuses:?}");
    let crossed = s
        .envoy
        .wait_for_counter(
            "governance.threshold_crossed",
            |v| v >= Some(6),
            Duration::from_secs(10),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(crossed, Some(6), "log:\n{}", s.envoy.log());
    let deadline = Instant::now() + Duration::from_secs(10);
    while receiver.request_count() < 6 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
    }
    let events = receiver.requests();
    let mut seen = BTreeMap::new();
    for event in &events {
        assert_eq!(event.method, "POST");
        assert_eq!(event.path, "/hooks/governance");
        let body = event.json().expect("a JSON event");
        let name = format!(
            "{} {} {} {}",
            body["owner"], body["id"], body["limit"], body["threshold"]
        );
        *seen.entry(name).or_insert(0) += 1;
    }
    let want: BTreeMap<String, i32> = [
        "\"team\" \"ml\" \"budget\" 0.5",
        "\"team\" \"ml\" \"budget\" 0.8",
        "\"team\" \"ml\" \"budget\" 0.95",
        "\"virtual_key\" \"k\" \"tokens\" 0.5",
        "\"virtual_key\" \"k\" \"tokens\" 0.8",
        "\"virtual_key\" \"k\" \"tokens\" 0.95",
    ]
    .into_iter()
    .map(|name| (name.to_string(), 1))
    .collect();
    assert_eq!(seen, want, "each event once: {events:#?}");
    assert_eq!(
        s.envoy.counter("governance.alerts_failed").unwrap(),
        Some(0)
    );
}
