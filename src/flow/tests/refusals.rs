//! A refused request leaves no trace: any sequence of requests gives the same counters as
//! the same sequence with its refused requests left out.

use proptest::prelude::*;

use super::*;

/// Small rolling limits on every level, so sequences run into every kind of refusal: k1
/// allows only gpt-4o-mini and has an openai provider config; k2 has no model rules.
fn config(reservations: bool) -> String {
    format!(
        r#"{{{PRICING}, "reservation": {{"enabled": {reservations}, "default_max_output_tokens": 50}},
        "customers": [{{"id": "c", "budgets": [{{"max_limit": 0.002, "reset_duration": "5m"}}],
            "rate_limit": {{"request_max_limit": 6, "request_reset_duration": "3m"}}}}],
        "teams": [{{"id": "t", "customer_id": "c",
            "rate_limit": {{"request_max_limit": 4, "request_reset_duration": "1m",
                            "token_max_limit": 900, "token_reset_duration": "2m"}}}}],
        "virtual_keys": [
          {{"id": "k1", "value": "sk-1", "team_id": "t", "allowed_models": ["gpt-4o-mini"],
            "budgets": [{{"max_limit": 0.001, "reset_duration": "90s"}}],
            "rate_limit": {{"request_max_limit": 3, "request_reset_duration": "1m"}},
            "provider_configs": [{{"provider": "openai",
                "rate_limit": {{"request_max_limit": 2, "request_reset_duration": "45s",
                                "token_max_limit": 500, "token_reset_duration": "1m"}}}}]}},
          {{"id": "k2", "value": "sk-2", "team_id": "t",
            "rate_limit": {{"token_max_limit": 600, "token_reset_duration": "1m"}}}}]}}"#
    )
}

#[derive(Debug, Clone)]
struct Step {
    wait_secs: i64,
    key: &'static str,
    model: &'static str,
    prompt: u64,
    completion: u64,
}

fn step() -> impl Strategy<Value = Step> {
    (
        prop_oneof![Just(0i64), 1i64..20, 30i64..200],
        prop_oneof![Just("sk-1"), Just("sk-2")],
        // Allowed, blocked, unpriced, provider unknown (for k1), and an unreadable model.
        prop_oneof![
            Just("openai/gpt-4o-mini"),
            Just("openai/gpt-4o-mini"),
            Just("gpt-4o-mini"),
            Just("openai/gpt-4.1"),
            Just("openai/mystery"),
        ],
        0u64..300,
        0u64..300,
    )
        .prop_map(|(wait_secs, key, model, prompt, completion)| Step {
            wait_secs,
            key,
            model,
            prompt,
            completion,
        })
}

/// Runs `steps` (those with `keep` true) and returns each step's status and every counter
/// as of the end.
fn run(
    reservations: bool,
    steps: &[Step],
    keep: &[bool],
    end: i64,
) -> (Vec<u32>, Vec<crate::counter::Record>) {
    let mut sim = Sim::new(&config(reservations));
    let mut statuses = Vec::new();
    for (step, keep) in steps.iter().zip(keep) {
        sim.now += step.wait_secs * 1_000_000_000;
        if !keep {
            continue;
        }
        let outcome = sim.exchange(
            Some(step.key),
            &chat(step.model),
            &usage_body(step.prompt, step.completion),
        );
        statuses.push(outcome.status());
    }
    sim.now = end;
    let counters = Counters::new(&sim.store, &sim.policy.guard_key);
    let records = sim
        .policy
        .limits
        .iter()
        .map(|limit| counters.read(limit, end).unwrap())
        .collect();
    (statuses, records)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(150))]

    #[test]
    fn refused_requests_change_no_counter(
        steps in proptest::collection::vec(step(), 1..40),
        reservations in any::<bool>(),
    ) {
        let end = T0 + steps.iter().map(|s| s.wait_secs).sum::<i64>() * 1_000_000_000 + 1;
        let all = vec![true; steps.len()];
        let (statuses, with_refused) = run(reservations, &steps, &all, end);
        let admitted: Vec<bool> = statuses.iter().map(|s| *s == 200).collect();
        prop_assume!(admitted.iter().any(|a| !a));
        let (again, without_refused) = run(reservations, &steps, &admitted, end);
        prop_assert!(again.iter().all(|s| *s == 200), "admitted alone: {:?}", again);
        prop_assert_eq!(with_refused, without_refused);
    }
}
