//! `reset_duration: "never"` through the real module (docs/windows.md): one window from
//! first use on, never reset; refusals carry no `retry-after`, quota headers no reset, and the
//! usage endpoint a `null` window end.

use std::time::Duration;

use crate::support::*;

const YEARS_10: Duration = Duration::from_secs(10 * 366 * 86_400);

/// A prepaid $0.001 credit on the key, a trial of 3 requests on its team, and a daily
/// budget beside the credit (its reset is the one the headers show).
fn credit_config() -> String {
    config(
        r#""teams":[{"id":"trial","calendar_aligned":true,"timezone":"America/New_York",
            "rate_limit":{"request_max_limit":3,"request_reset_duration":"never"}}],
        "virtual_keys":[{"id":"vk-prepaid","value":"sk-prepaid","team_id":"trial",
            "budgets":[{"max_limit":0.001,"reset_duration":"never"},
                       {"max_limit":100,"reset_duration":"1d"}]}]"#,
    )
}

#[test]
fn a_credit_that_never_resets_refuses_once_spent_even_years_later() {
    let mut host = host(&credit_config());
    // 1,000 prompt + 1,000 output tokens of gpt-4o-mini: $0.00075.
    let ex = host
        .vm(0)
        .exchange(&chat("sk-prepaid", "gpt-4o-mini"), &openai_json(1000, 1000));
    assert_eq!(ex.client.status, 200);
    // The tightest budget is the credit: its remaining amount, and no reset announced.
    assert_eq!(header(&ex, "x-budget-limit-usd"), Some("0.001"));
    assert_eq!(header(&ex, "x-budget-remaining-usd"), Some("0.001"));
    assert_eq!(header(&ex, "x-budget-reset"), None);
    // The request limit never resets either.
    assert_eq!(header(&ex, "x-ratelimit-remaining-requests"), Some("2"));
    assert_eq!(header(&ex, "x-ratelimit-reset-requests"), None);

    let credit = counters(&mut host)
        .into_iter()
        .find(|c| c["id"] == "vk-prepaid" && c["reset_duration"] == "never")
        .expect("the credit's counter");
    assert_eq!(credit["used"], 0.00075);
    assert_eq!(credit["calendar_aligned"], false);
    assert!(credit["window_end"].is_null(), "{credit}");
    assert_eq!(credit["window_start"], "2026-11-02T12:00:00Z");

    host.advance(YEARS_10);
    let ex = host
        .vm(0)
        .exchange(&chat("sk-prepaid", "gpt-4o-mini"), &openai_json(1000, 1000));
    assert_eq!(ex.client.status, 200, "$0.00025 left: still admitted");
    let ex = host
        .vm(0)
        .exchange(&chat("sk-prepaid", "gpt-4o-mini"), &openai_json(1, 1));
    assert_eq!(ex.client.status, 402);
    assert_eq!(error_type(&ex), "budget_exceeded");
    assert_eq!(header(&ex, "retry-after"), None, "waiting does not help");
    assert_eq!(header(&ex, "x-budget-reset"), None);
    assert_eq!(header(&ex, "x-budget-remaining-usd"), Some("0"));
    let message = body_json(&ex)["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        message.contains("virtual key 'vk-prepaid' budget exceeded: 0.0015 of 0.0010 USD used")
            && message.ends_with("never resets"),
        "{message}"
    );
}

#[test]
fn a_trial_request_count_never_resets_and_ignores_the_owners_calendar() {
    let mut host = host(&credit_config());
    for _ in 0..3 {
        let ex = host
            .vm(0)
            .exchange(&chat("sk-prepaid", "gpt-4o-mini"), &openai_json(1, 1));
        assert_eq!(ex.client.status, 200);
        host.advance(Duration::from_secs(40 * 86_400));
    }
    // The team's zone and alignment change: a window that never ends keeps its counter.
    let moved = credit_config().replace("America/New_York", "Europe/Paris");
    host.reconfigure(&moved)
        .expect("the new configuration is accepted");
    let ex = host
        .vm(0)
        .exchange(&chat("sk-prepaid", "gpt-4o-mini"), &openai_json(1, 1));
    assert_eq!(ex.client.status, 429);
    assert_eq!(error_type(&ex), "request_limited");
    assert_eq!(header(&ex, "retry-after"), None);
    assert_eq!(header(&ex, "x-ratelimit-remaining-requests"), Some("0"));
    assert_eq!(header(&ex, "x-ratelimit-reset-requests"), None);
    let trial = counter(&mut host, "trial", "requests");
    assert_eq!(trial["used"], 3);
    assert_eq!(trial["reset_duration"], "never");
    assert_eq!(
        trial["calendar_aligned"], false,
        "the team's alignment does not apply"
    );
    assert!(trial["window_end"].is_null());
}

#[test]
fn calendar_alignment_written_on_a_limit_that_never_resets_is_refused() {
    let config = config(
        r#""virtual_keys":[{"id":"vk","value":"sk",
            "budgets":[{"max_limit":5,"reset_duration":"never","calendar_aligned":true}]}]"#,
    );
    let text = match host_tests::HostBuilder::new(host_tests::GOVERNANCE_WASM)
        .plugin_config(&config)
        .build()
    {
        Err(host_tests::HostError::ConfigRejected(log)) => log,
        Ok(_) => panic!("accepted: {config}"),
        Err(other) => panic!("unexpected error {other:?}"),
    };
    assert!(
        text.contains("virtual_keys[0].budgets[0].calendar_aligned"),
        "{text}"
    );
}
