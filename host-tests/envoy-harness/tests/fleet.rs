//! Fleet mode end to end with real processes: two Envoys (two workers each) running the
//! filter in fleet mode, sharing one Limitador stand-in on one Redis (docs/fleet.md). What a
//! user sees: admissions and refusals across the fleet, what a budget lets through when
//! requests are sequential or in flight together, usage kept across restarts, each
//! `unavailable` mode while Limitador is stopped and after it returns, abandoned streams
//! charged, and the usage endpoint's fleet-wide numbers.
//!
//! Limitador's limits file is the one `governance-cli limitador` writes from the plugin
//! configuration. The overshoot tests print their figures (`--nocapture` shows them).
//! Needs `scripts/setup` (Envoy) and `scripts/setup-fleet` (Redis, the stand-in).

use envoy_harness::{FleetStack, LimitadorApi, Request, Response};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

/// Worker threads of each Envoy.
const WORKERS: u32 = 2;
/// The configuration's namespace, hence the prefix of every Limitador namespace.
const NAMESPACE: &str = "e2e";
/// The filter's wait for Limitador: generous, since two loaded cores are shared by every
/// process of the fleet (an answer later than this would count as Limitador unavailable).
const TIMEOUT_MS: u64 = 2000;
/// Bound on every wait for something to happen (charges arriving, a recovery).
const PATIENCE: Duration = Duration::from_secs(60);
/// `admin_key_sha256` of "admin-secret".
const ADMIN_KEY: &str = "admin-secret";
const ADMIN_SHA256: &str = "16175223c8ddce5ace0493c948569c211b03c4c6bb3d3e484434999448cffe01";
/// Output tokens the test requests ask for (`max_tokens`), which reservations estimate.
const MAX_TOKENS: u64 = 10;
/// USD per output token; input tokens are free, so a request's cost (and estimate) is its
/// output tokens alone.
const OUTPUT_USD: f64 = 1e-5;
/// What one request of [`MAX_TOKENS`] output tokens costs, in Limitador's nano-USD.
const COST_NANO: u64 = 100_000;

/// A plugin configuration in fleet mode: `fleet.unavailable` as given, reservations on or
/// off, the usage endpoint on, and `owners` (`virtual_keys`, `teams`, …) merged in.
fn config(unavailable: &str, reservations: bool, owners: Value) -> String {
    let mut config = json!({
        "namespace": NAMESPACE,
        "fleet": {"cluster": "limitador", "timeout_ms": TIMEOUT_MS, "unavailable": unavailable},
        "reservation": {"enabled": reservations},
        "usage_endpoint": {"path": "/governance/usage", "admin_key_sha256": ADMIN_SHA256},
        "pricing": {
            "gpt-4o-mini": {"input_cost_per_token": 0, "output_cost_per_token": OUTPUT_USD},
            "claude-sonnet-4*": {"input_cost_per_token": 3e-6, "output_cost_per_token": 1.5e-5}
        }
    });
    if let (Some(target), Some(more)) = (config.as_object_mut(), owners.as_object()) {
        target.extend(more.clone());
    }
    config.to_string()
}

/// The limits file for `config`, as `governance-cli limitador` writes it.
fn limits_file(config: &str) -> String {
    governance::tools::limitador(config).unwrap_or_else(|failure| {
        panic!(
            "governance-cli limitador refused the configuration: {}",
            failure.error
        )
    })
}

/// Redis, the stand-in and one Envoy per configuration (each with [`WORKERS`] workers).
fn fleet(configs: &[String]) -> FleetStack {
    let limits = limits_file(configs.first().expect("a configuration"));
    FleetStack::start(&limits, configs, WORKERS).unwrap_or_else(|err| panic!("{err}"))
}

/// A chat completion asking for [`MAX_TOKENS`] output tokens; the mock reports `usage`.
fn chat(key: &str, usage: &str) -> Request {
    Request::post("/v1/chat/completions")
        .bearer(key)
        .header("x-mock-usage", usage)
        .json(&json!({"model": "gpt-4o-mini", "max_tokens": MAX_TOKENS,
            "messages": [{"role": "user", "content": "Say hello"}]}))
}

/// The usage of a request that costs exactly [`COST_NANO`].
const ONE_COST: &str = "prompt=50,completion=10";

fn send(fleet: &FleetStack, envoy: usize, request: &Request) -> Response {
    fleet
        .client(envoy)
        .send(request)
        .unwrap_or_else(|err| panic!("Envoy {envoy}: {err}"))
}

/// Polls `done` every 50 ms until it holds; panics with `what` after [`PATIENCE`].
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "still not the case after {PATIENCE:?}: {what}"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// A counter of the filter's (named after the configuration's namespace).
fn metric(name: &str) -> String {
    format!("{NAMESPACE}.{name}")
}

fn namespace(owner: &str) -> String {
    format!("{NAMESPACE}:{owner}")
}

/// What Limitador counted on the limit `limit` (e.g. `requests:1h:rolling`) of `owner`'s
/// namespace (e.g. `vk:k1`): its max less what remains, so a counter pushed past its max
/// shows the max. 0 when there is no counter yet.
fn counted(api: &LimitadorApi, owner: &str, limit: &str) -> u64 {
    let counters = api
        .counters(&namespace(owner))
        .unwrap_or_else(|err| panic!("{err}"));
    let condition = format!("descriptors[0].limit == '{limit}'");
    counters
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c.pointer("/limit/conditions/0") == Some(&Value::from(condition.as_str())))
        .map(|c| {
            let max = c
                .pointer("/limit/max_value")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            let remaining = c.get("remaining").and_then(Value::as_u64);
            max.saturating_sub(remaining.unwrap_or(max))
        })
        .sum()
}

/// Waits until Limitador's counter of `limit` of `owner` shows `expected`.
fn wait_counted(api: &LimitadorApi, owner: &str, limit: &str, expected: u64) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let seen = counted(api, owner, limit);
        if seen == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "Limitador counts {seen} on {owner} {limit}, not {expected}, after {PATIENCE:?}"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

fn retry_after(response: &Response) -> u64 {
    response
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no retry-after on {}: {}", response.status, response.text()))
}

/// A counter entry of a usage-endpoint body.
fn usage_entry<'a>(body: &'a Value, owner: &str, kind: &str) -> &'a Value {
    body.get("counters")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|c| {
            c.get("owner") == Some(&Value::from(owner)) && c.get("kind") == Some(&Value::from(kind))
        })
        .unwrap_or_else(|| panic!("no {owner} {kind} counter in {body}"))
}

/// The sum of a counter over every Envoy of the fleet.
fn fleet_counter(fleet: &FleetStack, name: &str) -> u64 {
    fleet
        .envoys
        .iter()
        .map(|e| {
            e.counter(name)
                .unwrap_or_else(|err| panic!("{err}"))
                .unwrap_or(0)
        })
        .sum()
}

#[test]
fn requests_alternating_between_the_envoys_are_admitted_exactly_the_request_limit() {
    let config = config(
        "closed",
        false,
        json!({"virtual_keys": [{"id": "k1", "value": "sk-k1",
            "rate_limit": {"request_max_limit": 5, "request_reset_duration": "1h",
                           "token_max_limit": 1_000_000, "token_reset_duration": "1h"}}]}),
    );
    let fleet = fleet(&[config.clone(), config]);
    let api = fleet.api();
    let mut statuses = Vec::new();
    let mut remaining = Vec::new();
    for i in 0..8 {
        let r = send(&fleet, i % 2, &chat("sk-k1", ONE_COST));
        statuses.push(r.status);
        if r.status == 200 {
            remaining.push(
                r.header("x-ratelimit-remaining-requests")
                    .map(str::to_string),
            );
        } else {
            assert_eq!(
                r.error_type().as_deref(),
                Some("request_limited"),
                "{}",
                r.text()
            );
            let retry = retry_after(&r);
            assert!((1..=3600).contains(&retry), "retry-after {retry}");
        }
    }
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429, 429, 429]);
    // Each admission's quota header is the fleet's count, whichever Envoy answered.
    let expected: Vec<Option<String>> = ["4", "3", "2", "1", "0"]
        .iter()
        .map(|s| Some(s.to_string()))
        .collect();
    assert_eq!(remaining, expected);
    assert_eq!(counted(&api, "vk:k1", "requests:1h:rolling"), 5);
    // Each Envoy counted its own admissions. Polled (bounded) like the other counter
    // checks: Envoy's admin page has been seen one admission behind right after the last
    // 200; a count that is really lost still fails.
    for (envoy, admitted) in [(0, 3), (1, 2)] {
        let seen = fleet.envoy(envoy).wait_for_counter(
            &metric("admitted"),
            |value| value == Some(admitted),
            Duration::from_secs(5),
        );
        assert_eq!(
            seen.ok().flatten(),
            Some(admitted),
            "Envoy {envoy} admitted"
        );
    }

    // The usage endpoint of either Envoy shows the fleet's numbers.
    wait_counted(&api, "vk:k1", "tokens:1h:rolling", 5 * 60);
    for envoy in 0..2 {
        let r = send(
            &fleet,
            envoy,
            &Request::get("/governance/usage").bearer("sk-k1"),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        let body = r.json().unwrap_or(Value::Null);
        assert_eq!(body["source"], "fleet");
        assert_eq!(usage_entry(&body, "virtual_key", "requests")["used"], 5);
        assert_eq!(usage_entry(&body, "virtual_key", "tokens")["used"], 300);
        let admin = send(
            &fleet,
            envoy,
            &Request::get("/governance/usage?owner=virtual_key:k1").bearer(ADMIN_KEY),
        );
        assert_eq!(admin.status, 200, "{}", admin.text());
        let admin = admin.json().unwrap_or(Value::Null);
        assert_eq!(usage_entry(&admin, "virtual_key", "tokens")["used"], 300);
    }
}

#[test]
fn sequential_spend_stops_at_the_budget_within_one_requests_cost() {
    // 10.5 requests' worth: the 11th is admitted (room was left), the 12th is not.
    let budget_nano = 10 * COST_NANO + COST_NANO / 2;
    let config = config(
        "closed",
        false,
        json!({
            "teams": [{"id": "t1", "budgets": [{"max_limit": 1000.0, "reset_duration": "1d"}]}],
            "virtual_keys": [{"id": "k1", "value": "sk-k1", "team_id": "t1",
                "budgets": [{"max_limit": budget_nano as f64 / 1e9, "reset_duration": "1d"}]}]}),
    );
    let fleet = fleet(&[config.clone(), config]);
    let api = fleet.api();
    let mut admitted = 0u64;
    let mut refusal = None;
    for i in 0..20 {
        let r = send(&fleet, i % 2, &chat("sk-k1", ONE_COST));
        match r.status {
            200 => {
                admitted += 1;
                // The team's large budget sees every charge: wait for this one to land.
                wait_counted(&api, "team:t1", "budget:1d:rolling", admitted * COST_NANO);
            }
            402 => {
                refusal = Some((i % 2, r));
                break;
            }
            other => panic!("unexpected {other}: {}", r.text()),
        }
    }
    let (refused_by, refusal) = refusal.expect("the budget never stopped the requests");
    assert_eq!(refusal.error_type().as_deref(), Some("budget_exceeded"));
    assert!(retry_after(&refusal) >= 1);
    // The other Envoy refuses too.
    let other = send(&fleet, 1 - refused_by, &chat("sk-k1", ONE_COST));
    assert_eq!(other.status, 402, "{}", other.text());
    let spent = counted(&api, "team:t1", "budget:1d:rolling");
    println!(
        "fleet sequential spend: {admitted} admitted over 2 Envoys, spent {spent} nano-USD \
         against a budget of {budget_nano} (over by {}; one request costs {COST_NANO})",
        spent.saturating_sub(budget_nano)
    );
    assert_eq!(admitted, 11);
    assert!(spent >= budget_nano && spent - budget_nano < COST_NANO);
    assert_eq!(
        counted(&api, "vk:k1", "budget:1d:rolling"),
        budget_nano,
        "the key's counter is past its max"
    );
}

/// How the requests of a wave are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sending {
    /// All at the same instant: their admissions reach Limitador together.
    Burst,
    /// One after another, each once the previous one was admitted (its body reached the
    /// upstream whole) or refused: no two admissions overlap, yet every admitted request
    /// stays in flight until the wave is over.
    Staggered,
}

/// Requests the mock has received whole (admitted ones: a refused request never gets its
/// last bytes upstream).
fn admitted_upstream(fleet: &FleetStack) -> usize {
    fleet.mock.complete_count()
}

/// One wave of `n` requests of `key`, split over both Envoys. The upstream holds every
/// response (at the gate `gate`) until all `n` are decided, so the admitted ones are all in
/// flight together and none is charged before the last one is admitted. The statuses.
fn wave(
    fleet: &FleetStack,
    key: &str,
    n: usize,
    usage: &str,
    sending: Sending,
    gate: &str,
) -> Vec<u16> {
    let request = chat(key, usage).header("x-mock-gate", gate);
    let before = admitted_upstream(fleet);
    let start = std::sync::Barrier::new(if sending == Sending::Burst { n } else { 1 });
    thread::scope(|scope| {
        let mut handles = Vec::new();
        for i in 0..n {
            let (request, start) = (&request, &start);
            let admitted_before = admitted_upstream(fleet);
            handles.push(scope.spawn(move || {
                start.wait();
                send(fleet, i % 2, request).status
            }));
            if sending == Sending::Staggered {
                let last = handles.last();
                wait_until(&format!("request {i} of the wave is decided"), || {
                    last.is_none_or(|h| h.is_finished())
                        || admitted_upstream(fleet) > admitted_before
                });
            }
        }
        // Admitted requests wait at the gate; refused ones have their answer.
        wait_until("every request of the wave is decided", || {
            let refused = handles.iter().filter(|h| h.is_finished()).count();
            admitted_upstream(fleet) - before + refused == n
        });
        fleet.mock.open_gate(gate);
        handles
            .into_iter()
            .map(|h| h.join().expect("client thread"))
            .collect()
    })
}

/// Waves of `in_flight` requests of `key` (each costing `cost_nano`) until one is refused
/// whole; after each, waits for the key's counter to show every charge (the admitted
/// requests' costs, at most the budget). The admissions per wave.
fn waves(
    fleet: &FleetStack,
    key: &str,
    in_flight: usize,
    sending: Sending,
    (usage, cost_nano): (&str, u64),
    budget_nano: u64,
) -> Vec<u64> {
    let api = fleet.api();
    let owner = format!("vk:{key}");
    let mut per_wave = Vec::new();
    let mut admitted = 0;
    for round in 0..4 {
        let statuses = wave(
            fleet,
            &format!("sk-{key}"),
            in_flight,
            usage,
            sending,
            &format!("{key}-{round}"),
        );
        assert!(
            statuses.iter().all(|s| *s == 200 || *s == 402),
            "{statuses:?}"
        );
        let wave = statuses.iter().filter(|s| **s == 200).count() as u64;
        per_wave.push(wave);
        admitted += wave;
        wait_counted(
            &api,
            &owner,
            "budget:1d:rolling",
            (admitted * cost_nano).min(budget_nano),
        );
        if wave == 0 {
            break;
        }
    }
    assert_eq!(
        per_wave.last(),
        Some(&0),
        "the fleet never stopped: {per_wave:?}"
    );
    per_wave
}

/// Keys `keys`, each with a budget of `budget_nano` a day.
fn budget_config(reservations: bool, keys: &[&str], budget_nano: u64) -> String {
    let keys: Vec<Value> = keys
        .iter()
        .map(|id| {
            json!({"id": id, "value": format!("sk-{id}"),
                "budgets": [{"max_limit": budget_nano as f64 / 1e9, "reset_duration": "1d"}]})
        })
        .collect();
    config("closed", reservations, json!({ "virtual_keys": keys }))
}

#[test]
fn requests_in_flight_together_overshoot_by_at_most_their_number() {
    const IN_FLIGHT: usize = 16;
    // More than one wave's worth: the second wave is admitted on the first one's charges.
    let budget_nano = 20 * COST_NANO;
    let config = budget_config(false, &["k1"], budget_nano);
    let fleet = fleet(&[config.clone(), config]);
    let per_wave = waves(
        &fleet,
        "k1",
        IN_FLIGHT,
        Sending::Burst,
        (ONE_COST, COST_NANO),
        budget_nano,
    );
    let admitted: u64 = per_wave.iter().sum();
    let spent = admitted * COST_NANO;
    // What the filters charged agrees with the mock's usage.
    assert_eq!(
        fleet_counter(&fleet, &metric("spend_micro_usd")),
        spent / 1000
    );
    let over = spent.saturating_sub(budget_nano);
    println!(
        "fleet in flight, no reservations: waves of {IN_FLIGHT} at once over 2 Envoys x \
         {WORKERS} workers, admissions per wave {per_wave:?}: spent {spent} nano-USD against \
         a budget of {budget_nano}, over by {over} ({:.1} requests' cost; bound {IN_FLIGHT})",
        over as f64 / COST_NANO as f64
    );
    // 16 fit, 16 more are admitted while 4 requests' worth is left, then none.
    assert_eq!(per_wave, [16, 16, 0]);
    assert!(over <= IN_FLIGHT as u64 * COST_NANO);
}

#[test]
fn with_reservations_requests_in_flight_overshoot_by_at_most_the_estimates_error() {
    const IN_FLIGHT: usize = 16;
    let budget_nano = 4 * COST_NANO;
    let config = budget_config(true, &["k1", "k2"], budget_nano);
    let fleet = fleet(&[config.clone(), config]);
    // The estimate is MAX_TOKENS output tokens (COST_NANO); the upstream reports 2 more.
    let usage = "prompt=50,completion=12";
    let actual_nano = COST_NANO + 2 * COST_NANO / MAX_TOKENS;
    let error_nano = actual_nano - COST_NANO;
    let report = |what: &str, per_wave: &[u64]| {
        let admitted: u64 = per_wave.iter().sum();
        let spent = admitted * actual_nano;
        let over = spent.saturating_sub(budget_nano);
        println!(
            "fleet in flight, reservations, {what}: {IN_FLIGHT} over 2 Envoys x {WORKERS} \
             workers, admissions per wave {per_wave:?}: spent {spent} nano-USD against a \
             budget of {budget_nano}, over by {over} ({:.1} requests' cost; the estimates' \
             error is {admitted} x {error_nano})",
            over as f64 / actual_nano as f64
        );
        (admitted, spent, over)
    };

    // Sixteen requests in flight together, admitted one after another: the estimates held
    // in Limitador let exactly the four that fit through.
    let staggered = waves(
        &fleet,
        "k1",
        IN_FLIGHT,
        Sending::Staggered,
        (usage, actual_nano),
        budget_nano,
    );
    let (admitted, _, over) = report("admitted one after another", &staggered);
    assert_eq!(staggered, [4, 0]);
    assert!(over <= admitted * error_nano, "over by {over}");

    // Sixteen at the same instant: Limitador's check_and_report reads the counter, then
    // adds to it, so admissions that reach it together can all see room that only some
    // of them fit in. The in-flight bound still holds.
    let burst = waves(
        &fleet,
        "k2",
        IN_FLIGHT,
        Sending::Burst,
        (usage, actual_nano),
        budget_nano,
    );
    let (_, spent, _) = report("sent at once", &burst);
    assert!(spent <= budget_nano + IN_FLIGHT as u64 * actual_nano);
    assert_eq!(
        fleet_counter(&fleet, &metric("spend_micro_usd")),
        (staggered.iter().sum::<u64>() + burst.iter().sum::<u64>()) * actual_nano / 1000
    );
}

#[test]
fn usage_survives_restarting_both_envoys_and_then_limitador() {
    let config = config(
        "closed",
        false,
        json!({"virtual_keys": [{"id": "k1", "value": "sk-k1",
            "rate_limit": {"request_max_limit": 6, "request_reset_duration": "1h",
                           "token_max_limit": 1_000_000, "token_reset_duration": "1h"}}]}),
    );
    let mut fleet = fleet(&[config.clone(), config]);
    let api = fleet.api();
    let two_requests = |fleet: &FleetStack| {
        for envoy in 0..2 {
            let r = send(fleet, envoy, &chat("sk-k1", ONE_COST));
            assert_eq!(r.status, 200, "{}", r.text());
        }
    };
    two_requests(&fleet);
    wait_counted(&api, "vk:k1", "tokens:1h:rolling", 2 * 60);
    fleet.restart_envoys().unwrap_or_else(|err| panic!("{err}"));
    two_requests(&fleet);
    wait_counted(&api, "vk:k1", "tokens:1h:rolling", 4 * 60);
    fleet
        .limitador
        .restart()
        .unwrap_or_else(|err| panic!("{err}"));
    two_requests(&fleet);
    wait_counted(&api, "vk:k1", "tokens:1h:rolling", 6 * 60);
    // Six requests in all, through four Envoy processes and two Limitador processes: the
    // limit of six holds.
    for envoy in 0..2 {
        let r = send(&fleet, envoy, &chat("sk-k1", ONE_COST));
        assert_eq!(r.status, 429, "{}", r.text());
    }
    assert_eq!(counted(&api, "vk:k1", "requests:1h:rolling"), 6);
}

/// Sends requests of `key` to `envoy` until one is not admitted (at most `max`); returns
/// how many were and the first refusal.
fn admit_until_refused(
    fleet: &FleetStack,
    envoy: usize,
    key: &str,
    max: usize,
) -> (u64, Option<Response>) {
    for admitted in 0..max {
        let r = send(fleet, envoy, &chat(key, ONE_COST));
        if r.status != 200 {
            return (admitted as u64, Some(r));
        }
    }
    (max as u64, None)
}

#[test]
fn each_unavailable_mode_while_limitador_is_stopped_and_recovery_when_it_returns() {
    const CLOSED: usize = 0;
    const OPEN: usize = 1;
    const LOCAL: usize = 2;
    let keys: Vec<Value> = ["closed", "open", "local"]
        .iter()
        .map(|mode| {
            json!({"id": mode, "value": format!("sk-{mode}"),
                "rate_limit": {"request_max_limit": 10, "request_reset_duration": "1h",
                               "token_max_limit": 1_000_000, "token_reset_duration": "1h"}})
        })
        .collect();
    let owners = json!({ "virtual_keys": keys });
    let configs: Vec<String> = ["closed", "open", "local"]
        .iter()
        .map(|mode| config(mode, false, owners.clone()))
        .collect();
    // One limits file serves all three: `unavailable` is no part of it.
    assert!(configs
        .iter()
        .all(|c| limits_file(c) == limits_file(&configs[0])));
    let mut fleet = fleet(&configs);
    let api = fleet.api();
    let tokens = |mode: &str| counted(&api, &format!("vk:{mode}"), "tokens:1h:rolling");
    let mut admitted = [0u64; 3];
    for (envoy, mode) in ["closed", "open", "local"].iter().enumerate() {
        let r = send(&fleet, envoy, &chat(&format!("sk-{mode}"), ONE_COST));
        assert_eq!(r.status, 200, "{mode}: {}", r.text());
        admitted[envoy] += 1;
        wait_counted(&api, &format!("vk:{mode}"), "tokens:1h:rolling", 60);
    }

    fleet.limitador.stop();
    // closed: refused while Limitador is away.
    for _ in 0..3 {
        let r = send(&fleet, CLOSED, &chat("sk-closed", ONE_COST));
        assert_eq!(r.status, 503, "{}", r.text());
        assert_eq!(r.error_type().as_deref(), Some("governance_unavailable"));
    }
    // open: admitted, past the fleet's limit of 10 even.
    for _ in 0..12 {
        let r = send(&fleet, OPEN, &chat("sk-open", ONE_COST));
        assert_eq!(r.status, 200, "{}", r.text());
        admitted[OPEN] += 1;
    }
    // local: this Envoy's own counters decide, as without fleet mode (they never counted
    // the request Limitador admitted).
    let (local, refusal) = admit_until_refused(&fleet, LOCAL, "sk-local", 15);
    admitted[LOCAL] += local;
    let refusal = refusal.expect("local counters never refused");
    assert_eq!(refusal.status, 429, "{}", refusal.text());
    let message = refusal.error_message().unwrap_or_default();
    assert!(!message.contains("across the fleet"), "{message}");
    assert_eq!(local, 10);
    for envoy in [CLOSED, OPEN, LOCAL] {
        let unavailable = fleet
            .envoy(envoy)
            .counter(&metric("fleet.unavailable"))
            .unwrap();
        assert!(
            unavailable.unwrap_or(0) > 0,
            "Envoy {envoy}: {unavailable:?}"
        );
    }

    // Limitador returns (same port, same Redis); no Envoy is restarted.
    fleet
        .limitador
        .restart()
        .unwrap_or_else(|err| panic!("{err}"));
    // closed admits again.
    wait_until("the closed Envoy admits again", || {
        let r = send(&fleet, CLOSED, &chat("sk-closed", ONE_COST));
        admitted[CLOSED] += u64::from(r.status == 200);
        r.status == 200
    });
    // What open and local admitted without Limitador reaches it: their slots push the
    // fleet's count past 10, so the fleet refuses them from then on.
    for (envoy, mode) in [(OPEN, "open"), (LOCAL, "local")] {
        wait_until(&format!("the fleet refuses the {mode} key"), || {
            let r = send(&fleet, envoy, &chat(&format!("sk-{mode}"), ONE_COST));
            admitted[envoy] += u64::from(r.status == 200);
            r.status == 429
                && r.error_message()
                    .is_some_and(|m| m.contains("across the fleet"))
        });
    }
    // Every admitted request's tokens, those of the outage included.
    for (envoy, mode) in ["closed", "open", "local"].iter().enumerate() {
        let owner = format!("vk:{mode}");
        wait_counted(&api, &owner, "tokens:1h:rolling", admitted[envoy] * 60);
    }
    println!(
        "fleet outage: admitted per key (closed, open, local) {admitted:?}; Limitador's \
         token counters {:?}",
        ["closed", "open", "local"].map(tokens)
    );
}

#[test]
fn a_stream_the_client_abandons_is_still_charged() {
    let config = config(
        "closed",
        false,
        json!({"virtual_keys": [{"id": "k1", "value": "sk-k1",
            "rate_limit": {"token_max_limit": 1_000_000, "token_reset_duration": "1h"}}]}),
    );
    let fleet = fleet(&[config.clone(), config]);
    let api = fleet.api();
    // An Anthropic stream: the input tokens come in its first event, the output tokens in
    // its last; 40 events 100 ms apart.
    let body = json!({"model": "claude-sonnet-4-5", "max_tokens": 300, "stream": true,
        "messages": [{"role": "user", "content": "Tell a long story"}]})
    .to_string();
    let head = format!(
        "POST /v1/messages HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer sk-k1\r\n\
         anthropic-version: 2023-06-01\r\ncontent-type: application/json\r\n\
         x-mock-usage: prompt=500,completion=300\r\nx-mock-chunks: 40\r\n\
         x-mock-chunk-delay-ms: 100\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    let mut socket = TcpStream::connect(fleet.envoy(1).listen_addr()).expect("connect");
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    socket
        .write_all(format!("{head}{body}").as_bytes())
        .expect("send");
    // Read until the first text arrives, then go away.
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("content_block_delta") {
        let n = socket.read(&mut buf).expect("read");
        assert!(
            n > 0,
            "the stream ended early: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    assert!(String::from_utf8_lossy(&seen).starts_with("HTTP/1.1 200"));
    drop(socket);
    // The tokens the stream reported before the client left (its 500 input tokens, and
    // the first output token its opening event counts) reach Limitador, in one report.
    let mut charged = 0;
    wait_until("the abandoned stream's tokens reach Limitador", || {
        charged = counted(&api, "vk:k1", "tokens:1h:rolling");
        charged > 0
    });
    println!(
        "fleet abandoned stream: {charged} tokens charged (500 input tokens reported before \
         the client left; the 300 output tokens of its last event never came)"
    );
    assert!((500..800).contains(&charged), "charged {charged}");
}
