//! The request flow driven natively, callback by callback, over the in-memory store that has
//! Envoy's shared-data rules. The same promises are proven again through the real module in
//! `host-tests`; these run in milliseconds and pin the logic down.

#![allow(clippy::arithmetic_side_effects, reason = "test arithmetic")]

use super::*;
use crate::metrics::MemoryMetrics;
use crate::money::Money;
use crate::store::MemoryStore;

const T0: i64 = 1_764_547_200_000_000_000; // 2025-12-01T00:00:00Z

struct Sim {
    policy: Rc<Policy>,
    store: MemoryStore,
    metrics: MemoryMetrics,
    outbox: RecordingOutbox,
    /// Fleet mode's Limitador (shared by the Sims of one fleet).
    limitador: Option<Rc<std::cell::RefCell<crate::fleet::fake::FakeLimitador>>>,
    now: i64,
    next_context: u32,
}

/// Keeps what the flow sends to the fleet's outbox.
#[derive(Default)]
struct RecordingOutbox {
    calls: Vec<crate::fleet::protocol::Call>,
}

impl Outbox for RecordingOutbox {
    fn send(&mut self, call: crate::fleet::protocol::Call) {
        self.calls.push(call);
    }
}

#[derive(Debug)]
struct Outcome {
    reply: Option<LocalReply>,
    removed: Vec<String>,
    response_headers: Vec<(String, String)>,
}

impl Outcome {
    fn status(&self) -> u32 {
        self.reply.as_ref().map_or(200, |r| r.status)
    }

    fn error_type(&self) -> String {
        let reply = self.reply.as_ref().expect("a local reply");
        let body: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
        body["error"]["type"].as_str().unwrap().to_string()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.response_headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl Sim {
    fn new(config: &str) -> Self {
        Self {
            policy: Rc::new(crate::config::parse(config).unwrap()),
            store: MemoryStore::new(),
            metrics: MemoryMetrics::default(),
            outbox: RecordingOutbox::default(),
            limitador: None,
            now: T0,
            next_context: 2,
        }
    }

    fn env(&mut self) -> Env<'_> {
        Env {
            store: &self.store,
            now: self.now,
            metrics: &mut self.metrics,
            outbox: &mut self.outbox,
        }
    }

    /// A whole exchange: request headers (+ body), then a JSON response with `usage`.
    fn exchange(&mut self, key: Option<&str>, body: &str, response: &str) -> Outcome {
        let mut headers = vec![("content-type".to_string(), b"application/json".to_vec())];
        if let Some(key) = key {
            headers.push((
                "authorization".to_string(),
                format!("Bearer {key}").into_bytes(),
            ));
        }
        self.exchange_with(headers, "POST", "/v1/chat/completions", body, response)
    }

    fn exchange_with(
        &mut self,
        headers: Vec<(String, Vec<u8>)>,
        method: &str,
        path: &str,
        body: &str,
        response: &str,
    ) -> Outcome {
        let context = self.next_context;
        self.next_context += 1;
        let mut flow = Flow::new(Rc::clone(&self.policy), context);
        let head = RequestHead {
            method,
            path,
            headers: &headers,
            end_of_stream: body.is_empty(),
        };
        let mut outcome = Outcome {
            reply: None,
            removed: Vec::new(),
            response_headers: Vec::new(),
        };
        let action = flow.on_request_headers(&head, &mut self.env());
        match self.answer_calls(&mut flow, action) {
            RequestAction::Reply(reply) => {
                outcome.reply = Some(reply);
                flow.on_stream_end(&mut self.env());
                self.deliver_charges();
                return outcome;
            }
            RequestAction::Continue { remove_headers } => outcome.removed = remove_headers,
            RequestAction::Call { .. } => panic!("calls are answered"),
        }
        if !body.is_empty() {
            let action = flow.on_request_body(body.as_bytes(), true, &mut self.env());
            if let RequestAction::Reply(reply) = self.answer_calls(&mut flow, action) {
                outcome.reply = Some(reply);
                flow.on_stream_end(&mut self.env());
                self.deliver_charges();
                return outcome;
            }
        }
        outcome.response_headers =
            flow.on_response_headers(Some(200), Some("application/json"), &mut self.env());
        flow.on_response_body(response.as_bytes(), true, &mut self.env());
        flow.on_stream_end(&mut self.env());
        self.deliver_charges();
        outcome
    }

    /// Answers a request's calls to Limitador (fleet mode) from the fake, until the flow
    /// decides; the remove-headers of the first action are kept.
    fn answer_calls(&mut self, flow: &mut Flow, mut action: RequestAction) -> RequestAction {
        let mut removed = None;
        loop {
            let RequestAction::Call {
                remove_headers,
                calls,
            } = action
            else {
                if let (Some(removed), RequestAction::Continue { .. }) = (removed, &action) {
                    return RequestAction::Continue {
                        remove_headers: removed,
                    };
                }
                return action;
            };
            removed.get_or_insert(remove_headers);
            let limitador = Rc::clone(self.limitador.as_ref().expect("a fake Limitador"));
            let mut decided = None;
            for (index, call) in calls.iter().enumerate() {
                let answer = limitador.borrow_mut().answer(call, self.now);
                if let Some(next) = flow.on_call_answer(index, answer, &mut self.env()) {
                    decided = Some(next);
                }
            }
            action = decided.expect("the round decides once every call is answered");
        }
    }

    /// What the root context does with the outbox: sends it to Limitador (kept while it is
    /// down).
    fn deliver_charges(&mut self) {
        let Some(limitador) = self.limitador.as_ref().map(Rc::clone) else {
            return;
        };
        if limitador.borrow().down.is_some() {
            return;
        }
        for call in std::mem::take(&mut self.outbox.calls) {
            limitador.borrow_mut().answer(&call, self.now);
        }
    }

    /// The counter of `owner_id`'s limit of `kind`, as of now.
    fn record(&self, owner_id: &str, kind: LimitKind) -> crate::counter::Record {
        let limit = self
            .policy
            .limits
            .iter()
            .find(|l| l.owner_id == owner_id && l.kind == kind)
            .expect("limit");
        let counters = Counters::new(&self.store, &self.policy.guard_key);
        counters.read(limit, self.now).unwrap()
    }

    fn used(&self, owner_id: &str, kind: LimitKind) -> u128 {
        self.record(owner_id, kind).used
    }
}

fn chat(model: &str) -> String {
    format!(r#"{{"model":"{model}","messages":[{{"role":"user","content":"hi"}}]}}"#)
}

fn usage_body(prompt: u64, completion: u64) -> String {
    format!(
        r#"{{"id":"x","model":"gpt-4o-mini","choices":[],"usage":{{"prompt_tokens":{prompt},"completion_tokens":{completion}}}}}"#
    )
}

const PRICING: &str =
    r#""pricing":{"gpt-4o-mini":{"input_cost_per_token":1e-6,"output_cost_per_token":2e-6}}"#;

#[test]
fn identification_failures() {
    let config = format!(
        r#"{{{PRICING},"virtual_keys":[{{"id":"on","value":"sk-on"}},{{"id":"off","value":"sk-off","is_active":false}},
        {{"id":"old","value":"sk-old","expires_at":"2025-01-01T00:00:00Z"}}]}}"#
    );
    let mut sim = Sim::new(&config);
    assert_eq!(
        sim.exchange(None, &chat("gpt-4o-mini"), "{}").error_type(),
        "virtual_key_required"
    );
    assert_eq!(
        sim.exchange(Some("sk-nope"), &chat("gpt-4o-mini"), "{}")
            .error_type(),
        "virtual_key_not_found"
    );
    let blocked = sim.exchange(Some("sk-off"), &chat("gpt-4o-mini"), "{}");
    assert_eq!(
        (blocked.status(), blocked.error_type().as_str()),
        (403, "virtual_key_blocked")
    );
    assert_eq!(
        sim.exchange(Some("sk-old"), &chat("gpt-4o-mini"), "{}")
            .error_type(),
        "virtual_key_expired"
    );
    let ok = sim.exchange(Some("sk-on"), &chat("gpt-4o-mini"), &usage_body(1, 1));
    assert_eq!(ok.status(), 200);
    assert_eq!(
        ok.removed,
        ["authorization"],
        "the key's header is stripped"
    );
    assert_eq!(sim.metrics.get("rejected"), 4);
    assert_eq!(sim.metrics.get("rejected.virtual_key_not_found"), 1);
    assert_eq!(sim.metrics.get("admitted"), 1);
}

#[test]
fn secrets_never_appear_in_replies() {
    let mut sim = Sim::new(&format!(
        r#"{{{PRICING},"virtual_keys":[{{"id":"k","value":"sk-secret-123","is_active":false}}]}}"#
    ));
    let reply = sim
        .exchange(Some("sk-secret-123"), &chat("gpt-4o-mini"), "{}")
        .reply
        .unwrap();
    assert!(!String::from_utf8_lossy(&reply.body).contains("sk-secret"));
}

#[test]
fn exactly_max_requests_then_429_with_retry_after() {
    let config = format!(
        r#"{{{PRICING},"virtual_keys":[{{"id":"k","value":"sk","rate_limit":{{"request_max_limit":3,"request_reset_duration":"1m"}}}}]}}"#
    );
    let mut sim = Sim::new(&config);
    for _ in 0..3 {
        assert_eq!(
            sim.exchange(Some("sk"), &chat("gpt-4o-mini"), &usage_body(1, 1))
                .status(),
            200
        );
    }
    sim.now += 10_000_000_000;
    let refused = sim.exchange(Some("sk"), &chat("gpt-4o-mini"), "{}");
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.error_type(), "request_limited");
    let reply = refused.reply.unwrap();
    assert!(
        reply
            .headers
            .contains(&("retry-after".to_string(), "50".to_string())),
        "{:?}",
        reply.headers
    );
    let message = String::from_utf8_lossy(&reply.body).to_string();
    assert!(
        message.contains("virtual key 'k' request limit exceeded: 3 of 3 requests used"),
        "{message}"
    );
    assert_eq!(
        sim.used("k", LimitKind::Requests),
        3,
        "a refused request takes no slot"
    );
    sim.now += 50_000_000_000;
    assert_eq!(
        sim.exchange(Some("sk"), &chat("gpt-4o-mini"), "{}")
            .status(),
        200,
        "the next window reopens"
    );
}

#[test]
fn refusal_at_a_higher_level_gives_back_lower_slots() {
    let config = format!(
        r#"{{{PRICING},"teams":[{{"id":"t","rate_limit":{{"request_max_limit":1,"request_reset_duration":"1h"}}}}],
        "virtual_keys":[{{"id":"k","value":"sk","team_id":"t","rate_limit":{{"request_max_limit":10,"request_reset_duration":"1h"}}}}]}}"#
    );
    let mut sim = Sim::new(&config);
    assert_eq!(
        sim.exchange(Some("sk"), &chat("gpt-4o-mini"), &usage_body(1, 1))
            .status(),
        200
    );
    let refused = sim.exchange(Some("sk"), &chat("gpt-4o-mini"), "{}");
    assert_eq!(refused.error_type(), "request_limited");
    assert!(String::from_utf8_lossy(&refused.reply.unwrap().body).contains("team 't'"));
    assert_eq!(
        sim.used("k", LimitKind::Requests),
        1,
        "the key's slot was given back"
    );
    assert_eq!(sim.used("t", LimitKind::Requests), 1);
}

#[test]
fn budget_is_charged_from_usage_and_then_refuses_with_402() {
    let config = format!(
        r#"{{{PRICING},"customers":[{{"id":"c","budgets":[{{"max_limit":0.01,"reset_duration":"1d"}}]}}],
        "virtual_keys":[{{"id":"k","value":"sk","customer_id":"c","rate_limit":{{"token_max_limit":100000,"token_reset_duration":"1h"}}}}]}}"#
    );
    let mut sim = Sim::new(&config);
    // 4000 prompt × 1e-6 + 3000 completion × 2e-6 = 0.004 + 0.006 = 0.01
    let ok = sim.exchange(Some("sk"), &chat("gpt-4o-mini"), &usage_body(4000, 3000));
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.header("x-budget-limit-usd"), Some("0.01"));
    assert_eq!(
        sim.used("c", LimitKind::Budget),
        Money::from_usd(0.01).unwrap().femto()
    );
    assert_eq!(sim.used("k", LimitKind::Tokens), 7000);
    assert_eq!(sim.metrics.get("tokens_charged"), 7000);
    assert_eq!(sim.metrics.get("spend_micro_usd"), 10_000);
    let refused = sim.exchange(Some("sk"), &chat("gpt-4o-mini"), "{}");
    assert_eq!(
        (refused.status(), refused.error_type().as_str()),
        (402, "budget_exceeded")
    );
    let body = String::from_utf8_lossy(&refused.reply.as_ref().unwrap().body).to_string();
    assert!(
        body.contains(
            "customer 'c' budget exceeded: 0.0100 of 0.0100 USD used, resets 2025-12-02T00:00:00Z"
        ),
        "{body}"
    );
}

#[test]
fn provider_and_model_rules() {
    let config = format!(
        r#"{{{PRICING},"virtual_keys":[{{"id":"k","value":"sk","allowed_models":["gpt-4o-mini","claude*"],
        "budgets":[{{"max_limit":5,"reset_duration":"1d"}}],
        "provider_configs":[{{"provider":"openai","allowed_models":["gpt-4o-mini"]}},{{"provider":"anthropic"}}]}}]}}"#
    );
    let mut sim = Sim::new(&config);
    assert_eq!(
        sim.exchange(Some("sk"), &chat("openai/gpt-4o"), "{}")
            .error_type(),
        "model_blocked"
    );
    // With provider configs, a request whose provider cannot be told is refused.
    let unknown = sim.exchange(Some("sk"), &chat("gpt-4o-mini"), "{}");
    assert_eq!(unknown.error_type(), "provider_blocked");
    let body = String::from_utf8_lossy(&unknown.reply.as_ref().unwrap().body).to_string();
    assert!(body.contains("could not be determined"), "{body}");
    // "gemini" is no provider this configuration names, so the prefix tells nothing.
    assert_eq!(
        sim.exchange(Some("sk"), &chat("gemini/gemini-2.5-flash"), "{}")
            .error_type(),
        "provider_blocked"
    );
    assert_eq!(
        sim.exchange(Some("sk"), &chat("openai/gpt-4o-mini"), &usage_body(1, 1))
            .status(),
        200
    );
    assert_eq!(
        sim.exchange(Some("sk"), &chat("anthropic/claude-x"), "{}")
            .error_type(),
        "model_not_priced"
    );
    let headers = vec![
        ("x-bf-vk".to_string(), b"sk".to_vec()),
        ("x-bf-provider".to_string(), b"gemini".to_vec()),
    ];
    let blocked = sim.exchange_with(
        headers,
        "POST",
        "/v1/chat/completions",
        &chat("gpt-4o-mini"),
        "{}",
    );
    assert_eq!(blocked.error_type(), "provider_blocked");
}

#[test]
fn rules_known_at_headers_come_before_limits() {
    let config = format!(
        r#"{{{PRICING},"virtual_keys":[{{"id":"k","value":"sk","rate_limit":{{"request_max_limit":1,"request_reset_duration":"1h"}},
        "provider_configs":[{{"provider":"openai"}}]}}]}}"#
    );
    let mut sim = Sim::new(&config);
    assert_eq!(
        sim.exchange(Some("sk"), &chat("openai/gpt-4o-mini"), &usage_body(1, 1))
            .status(),
        200
    );
    let headers = vec![
        ("x-bf-vk".to_string(), b"sk".to_vec()),
        ("x-bf-provider".to_string(), b"mistral".to_vec()),
    ];
    let refused = sim.exchange_with(
        headers,
        "POST",
        "/v1/chat/completions",
        &chat("gpt-4o-mini"),
        "{}",
    );
    assert_eq!(
        refused.error_type(),
        "provider_blocked",
        "step 3 before step 4 at the same moment"
    );
    assert_eq!(sim.used("k", LimitKind::Requests), 1);
}

#[test]
fn shadow_counts_a_blocked_provider_once() {
    let config = format!(
        r#"{{{PRICING},"mode":"shadow","virtual_keys":[{{"id":"k","value":"sk","provider_configs":[{{"provider":"openai"}}]}}]}}"#
    );
    let mut sim = Sim::new(&config);
    let headers = vec![
        ("x-bf-vk".to_string(), b"sk".to_vec()),
        ("x-bf-provider".to_string(), b"mistral".to_vec()),
    ];
    let ex = sim.exchange_with(
        headers,
        "POST",
        "/v1/chat/completions",
        &chat("gpt-4o-mini"),
        &usage_body(1, 1),
    );
    assert_eq!(ex.status(), 200);
    assert_eq!(sim.metrics.get("shadow_rejected"), 1);
    assert_eq!(sim.metrics.get("admitted"), 1);
}

/// The headers of a local reply, by name.
fn reply_header<'o>(outcome: &'o Outcome, name: &str) -> Option<&'o str> {
    let reply = outcome.reply.as_ref()?;
    reply
        .headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn reply_message(outcome: &Outcome) -> String {
    let reply = outcome.reply.as_ref().expect("a local reply");
    let body: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    body["error"]["message"].as_str().unwrap().to_string()
}

#[test]
fn a_request_without_a_key_is_told_which_headers_carry_one() {
    let config = format!(
        r#"{{{PRICING},"virtual_key_headers":["x-bf-vk","authorization"],
        "virtual_keys":[{{"id":"k","value":"sk"}}]}}"#
    );
    let mut sim = Sim::new(&config);
    // The right key in a header this configuration does not list.
    let headers = vec![("x-api-key".to_string(), b"sk".to_vec())];
    let refused = sim.exchange_with(headers, "POST", "/v1/messages", &chat("gpt-4o-mini"), "{}");
    assert_eq!(
        (refused.status(), refused.error_type().as_str()),
        (401, "virtual_key_required")
    );
    assert_eq!(
        reply_message(&refused),
        "a virtual key is required in one of these headers: x-bf-vk, authorization (Bearer <key>)"
    );
    // An authorization header with another scheme carries no key either.
    let headers = vec![("authorization".to_string(), b"Basic c2s6".to_vec())];
    let refused = sim.exchange_with(headers, "POST", "/v1/messages", &chat("gpt-4o-mini"), "{}");
    assert_eq!(refused.error_type(), "virtual_key_required");
}

#[test]
fn a_429_carries_the_quota_headers_of_the_level_that_refused() {
    // The key allows 10 requests an hour, its team 1 a minute: the team refuses.
    let config = format!(
        r#"{{{PRICING},"teams":[{{"id":"t","rate_limit":{{"request_max_limit":1,"request_reset_duration":"1m"}}}}],
        "virtual_keys":[{{"id":"k","value":"sk","team_id":"t","rate_limit":{{"request_max_limit":10,"request_reset_duration":"1h"}}}}]}}"#
    );
    let mut sim = Sim::new(&config);
    let ok = sim.exchange(Some("sk"), &chat("gpt-4o-mini"), &usage_body(1, 1));
    assert_eq!(ok.header("x-ratelimit-limit-requests"), Some("1"));
    sim.now += 15_000_000_000;
    let refused = sim.exchange(Some("sk"), &chat("gpt-4o-mini"), "{}");
    assert_eq!(refused.status(), 429);
    assert_eq!(reply_header(&refused, "retry-after"), Some("45"));
    assert_eq!(
        reply_header(&refused, "x-ratelimit-limit-requests"),
        Some("1")
    );
    assert_eq!(
        reply_header(&refused, "x-ratelimit-remaining-requests"),
        Some("0")
    );
    assert_eq!(
        reply_header(&refused, "x-ratelimit-reset-requests"),
        Some("45s")
    );
    assert_eq!(
        reply_header(&refused, "x-budget-limit-usd"),
        None,
        "only the refusing limit's kind"
    );
}

#[test]
fn a_402_carries_the_budget_headers_of_the_level_that_refused() {
    let config = format!(
        r#"{{{PRICING},"customers":[{{"id":"c","budgets":[{{"max_limit":0.01,"reset_duration":"1d"}}]}}],
        "virtual_keys":[{{"id":"k","value":"sk","customer_id":"c","budgets":[{{"max_limit":5,"reset_duration":"1h"}}]}}]}}"#
    );
    let mut sim = Sim::new(&config);
    // 4000 prompt × 1e-6 + 4000 completion × 2e-6 = $0.012, over the customer's $0.01.
    sim.exchange(Some("sk"), &chat("gpt-4o-mini"), &usage_body(4000, 4000));
    sim.now += 3_600_000_000_000;
    let refused = sim.exchange(Some("sk"), &chat("gpt-4o-mini"), "{}");
    assert_eq!(refused.status(), 402);
    assert!(reply_message(&refused).starts_with("customer 'c' budget exceeded"));
    let quota: Vec<(&str, &str)> = refused
        .reply
        .as_ref()
        .unwrap()
        .headers
        .iter()
        .filter(|(k, _)| k.starts_with("x-"))
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        quota,
        [
            ("x-budget-limit-usd", "0.01"),
            ("x-budget-remaining-usd", "0"),
            ("x-budget-reset", "23h0m0s"),
        ]
    );
    assert_eq!(reply_header(&refused, "retry-after"), Some("82800"));
}

#[test]
fn refusals_carry_no_quota_headers_when_they_are_turned_off() {
    let config = format!(
        r#"{{{PRICING},"response_headers":false,
        "virtual_keys":[{{"id":"k","value":"sk","rate_limit":{{"request_max_limit":1,"request_reset_duration":"1m"}}}}]}}"#
    );
    let mut sim = Sim::new(&config);
    sim.exchange(Some("sk"), &chat("gpt-4o-mini"), &usage_body(1, 1));
    let refused = sim.exchange(Some("sk"), &chat("gpt-4o-mini"), "{}");
    assert_eq!(refused.status(), 429);
    assert_eq!(reply_header(&refused, "retry-after"), Some("60"));
    assert_eq!(reply_header(&refused, "x-ratelimit-limit-requests"), None);
}

mod fleet;
mod refusals;
mod reservations;
