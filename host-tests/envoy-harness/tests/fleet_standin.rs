//! The Limitador stand-in against a real Redis: what fleet mode relies on Limitador's HTTP
//! API to do, as limitador-server itself was measured to do it (and where the stand-in
//! differs, host-tests/limitador-standin/README.md says why). Needs `scripts/setup-fleet`
//! (redis-server and the stand-in's build).

use envoy_harness::fleet::{validate_limits, LimitadorApi};
use envoy_harness::{Limitador, Redis};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// A 32-day budget keyed by a window label, as fleet mode writes it for a monthly budget.
const MONTH_SECONDS: u64 = 32 * 24 * 3600;
const NOV: &str = "M:2026-11@America/New_York";
const DEC: &str = "M:2026-12@America/New_York";

/// One owner's namespace with one limit of `max` per window label.
fn budget(namespace: &str, max: u64) -> String {
    format!(
        "- namespace: \"{namespace}\"\n  max_value: {max}\n  seconds: {MONTH_SECONDS}\n  \
         name: budget\n  conditions: []\n  variables: [\"descriptors[0].window\"]\n"
    )
}

fn start(limits_yaml: &str) -> (Redis, Limitador) {
    let redis = Redis::start().unwrap();
    let limitador = Limitador::start(&redis, limits_yaml).unwrap();
    (redis, limitador)
}

fn window(label: &str) -> [(&str, &str); 1] {
    [("window", label)]
}

fn remaining(api: &LimitadorApi, ns: &str, label: &str) -> Option<u64> {
    api.remaining(ns, &[("descriptors[0].window", label)])
        .unwrap()
}

fn keys(v: &Value) -> BTreeSet<&str> {
    v.as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default()
}

#[test]
fn check_fits_iff_used_plus_delta_is_within_max_and_counts_nothing() {
    let (_redis, lim) = start(&budget("gov:vk:k1", 100));
    let api = lim.api();
    assert_eq!(api.report("gov:vk:k1", &window(NOV), 90).unwrap(), 200);
    assert_eq!(api.check("gov:vk:k1", &window(NOV), 10).unwrap(), 200);
    assert_eq!(api.check("gov:vk:k1", &window(NOV), 11).unwrap(), 429);
    // Checking never counts: the same question gets the same answer.
    assert_eq!(api.check("gov:vk:k1", &window(NOV), 10).unwrap(), 200);
    assert_eq!(remaining(&api, "gov:vk:k1", NOV), Some(10));
}

#[test]
fn a_refused_check_and_report_counts_nothing() {
    let (_redis, lim) = start(&budget("gov:vk:k1", 100));
    let api = lim.api();
    assert_eq!(api.report("gov:vk:k1", &window(NOV), 90).unwrap(), 200);
    assert_eq!(
        api.check_and_report("gov:vk:k1", &window(NOV), 20).unwrap(),
        429
    );
    assert_eq!(remaining(&api, "gov:vk:k1", NOV), Some(10));
    assert_eq!(
        api.check_and_report("gov:vk:k1", &window(NOV), 10).unwrap(),
        200
    );
    assert_eq!(remaining(&api, "gov:vk:k1", NOV), Some(0));
    assert_eq!(
        api.check_and_report("gov:vk:k1", &window(NOV), 1).unwrap(),
        429
    );
}

#[test]
fn report_is_never_refused_and_can_push_past_the_max() {
    let (_redis, lim) = start(&budget("gov:vk:k1", 100));
    let api = lim.api();
    assert_eq!(api.report("gov:vk:k1", &window(NOV), 90).unwrap(), 200);
    assert_eq!(api.report("gov:vk:k1", &window(NOV), 30).unwrap(), 200);
    assert_eq!(api.report("gov:vk:k1", &window(NOV), 1000).unwrap(), 200);
    // Used is now past the max: even a zero-sized question is refused.
    assert_eq!(api.check("gov:vk:k1", &window(NOV), 0).unwrap(), 429);
    // limitador 0.14 clamps `remaining` at 0 (limitador-server built on 0.12 showed the
    // negative value wrapped around as a u64).
    assert_eq!(remaining(&api, "gov:vk:k1", NOV), Some(0));
}

#[test]
fn delta_zero_is_200_at_the_max_and_429_past_it() {
    let (_redis, lim) = start(&budget("gov:vk:k1", 100));
    let api = lim.api();
    assert_eq!(api.check("gov:vk:k1", &window(NOV), 0).unwrap(), 200);
    assert_eq!(
        api.check_and_report("gov:vk:k1", &window(NOV), 100)
            .unwrap(),
        200
    );
    assert_eq!(api.check("gov:vk:k1", &window(NOV), 0).unwrap(), 200);
    assert_eq!(api.check("gov:vk:k1", &window(NOV), 1).unwrap(), 429);
    assert_eq!(api.report("gov:vk:k1", &window(NOV), 1).unwrap(), 200);
    assert_eq!(api.check("gov:vk:k1", &window(NOV), 0).unwrap(), 429);
}

#[test]
fn a_new_window_label_is_a_fresh_counter() {
    let (_redis, lim) = start(&budget("gov:vk:k1", 100));
    let api = lim.api();
    assert_eq!(api.report("gov:vk:k1", &window(NOV), 100).unwrap(), 200);
    assert_eq!(api.check("gov:vk:k1", &window(NOV), 1).unwrap(), 429);
    assert_eq!(api.check("gov:vk:k1", &window(DEC), 100).unwrap(), 200);
    assert_eq!(
        api.check_and_report("gov:vk:k1", &window(DEC), 60).unwrap(),
        200
    );
    assert_eq!(remaining(&api, "gov:vk:k1", DEC), Some(40));
    assert_eq!(remaining(&api, "gov:vk:k1", NOV), Some(0));
}

#[test]
fn values_that_match_no_limit_answer_200_for_any_delta_and_count_nothing() {
    let limits = format!(
        "{}- namespace: \"gov:vk:k1\"\n  max_value: 5\n  seconds: 60\n  \
         conditions: [\"descriptors[0].kind == 'requests'\"]\n  variables: []\n",
        budget("gov:vk:k1", 100)
    );
    let (_redis, lim) = start(&limits);
    let api = lim.api();
    let huge = u64::MAX;
    // The budget's variable is missing: the budget does not apply.
    assert_eq!(
        api.check("gov:vk:k1", &[("windw", NOV)], huge).unwrap(),
        200
    );
    assert_eq!(
        api.check_and_report("gov:vk:k1", &[("windw", NOV)], huge)
            .unwrap(),
        200
    );
    // The request limit's condition is false: it does not apply either.
    assert_eq!(
        api.check_and_report("gov:vk:k1", &[("kind", "tokens")], huge)
            .unwrap(),
        200
    );
    // A namespace without limits.
    assert_eq!(
        api.check_and_report("gov:vk:nobody", &window(NOV), huge)
            .unwrap(),
        200
    );
    assert_eq!(
        api.report("gov:vk:nobody", &window(NOV), huge).unwrap(),
        200
    );
    // Nothing was counted anywhere.
    assert_eq!(api.counters("gov:vk:k1").unwrap(), json!([]));
    assert_eq!(api.counters("gov:vk:nobody").unwrap(), json!([]));
    // While values that match do count.
    assert_eq!(
        api.check_and_report("gov:vk:k1", &[("kind", "requests")], 5)
            .unwrap(),
        200
    );
    assert_eq!(
        api.check_and_report("gov:vk:k1", &[("kind", "requests")], 1)
            .unwrap(),
        429
    );
}

#[test]
fn limits_lists_the_files_limits_in_limitador_servers_shape() {
    let limits = format!(
        "{}- namespace: \"gov:vk:k1\"\n  max_value: 5\n  seconds: 60\n  \
         conditions: [\"descriptors[0].kind == 'requests'\"]\n  variables: []\n{}",
        budget("gov:vk:k1", 100),
        budget("gov:team:t1", 7)
    );
    let (_redis, lim) = start(&limits);
    let api = lim.api();
    let listed = api.limits("gov:vk:k1").unwrap();
    let mut listed: Vec<Value> = listed.as_array().cloned().unwrap();
    listed.sort_by_key(|l| l["max_value"].as_u64());
    assert_eq!(
        listed,
        vec![
            json!({
                "id": null, "namespace": "gov:vk:k1", "max_value": 5, "seconds": 60,
                "name": null, "conditions": ["descriptors[0].kind == 'requests'"], "variables": []
            }),
            json!({
                "id": null, "namespace": "gov:vk:k1", "max_value": 100, "seconds": MONTH_SECONDS,
                "name": "budget", "conditions": [], "variables": ["descriptors[0].window"]
            }),
        ]
    );
    assert_eq!(api.limits("gov:team:t1").unwrap()[0]["max_value"], 7);
    assert_eq!(api.limits("gov:cust:none").unwrap(), json!([]));
}

#[test]
fn counters_show_limit_variables_remaining_and_expiry() {
    let (_redis, lim) = start(&budget("gov:vk:k1", 100));
    let api = lim.api();
    assert_eq!(api.counters("gov:vk:k1").unwrap(), json!([]));
    assert_eq!(api.report("gov:vk:k1", &window(NOV), 25).unwrap(), 200);
    let counters = api.counters("gov:vk:k1").unwrap();
    let list = counters.as_array().unwrap();
    assert_eq!(list.len(), 1);
    let counter = &list[0];
    assert_eq!(
        keys(counter),
        BTreeSet::from(["limit", "set_variables", "remaining", "expires_in_seconds"])
    );
    assert_eq!(
        keys(&counter["limit"]),
        BTreeSet::from([
            "id",
            "namespace",
            "max_value",
            "seconds",
            "name",
            "conditions",
            "variables"
        ])
    );
    assert_eq!(counter["limit"]["namespace"], "gov:vk:k1");
    assert_eq!(
        counter["set_variables"],
        json!({ "descriptors[0].window": NOV })
    );
    assert_eq!(counter["remaining"], 75);
    // The window starts at the counter's first hit and lasts the limit's seconds.
    let expires = counter["expires_in_seconds"].as_u64().unwrap();
    assert!(expires > 0 && expires <= MONTH_SECONDS, "{expires}");
}

#[test]
fn the_replies_have_limitador_servers_bodies_and_headers() {
    let (_redis, lim) = start(&budget("gov:vk:k1", 100));
    let api = lim.api();
    let body = LimitadorApi::body("gov:vk:k1", &window(NOV), 60);
    let ok = api.post("/check", &body).unwrap();
    assert_eq!((ok.status, ok.text().as_str()), (200, "null"));
    assert_eq!(ok.header("content-type"), Some("application/json"));
    let ok = api.post("/report", &body).unwrap();
    assert_eq!((ok.status, ok.text().as_str()), (200, "null"));
    let refused = api.post("/check", &body).unwrap();
    assert_eq!(
        (refused.status, refused.text().as_str()),
        (429, "Too many requests")
    );
    let refused = api.post("/check_and_report", &body).unwrap();
    assert_eq!((refused.status, refused.text().as_str()), (429, "null"));
    assert_eq!(refused.header("x-ratelimit-remaining"), None);

    // `response_headers: "DraftVersion03"` adds the most restrictive counter's figures.
    let mut with_headers = LimitadorApi::body("gov:vk:k1", &window(DEC), 30);
    with_headers["response_headers"] = json!("DraftVersion03");
    let ok = api.post("/check_and_report", &with_headers).unwrap();
    assert_eq!((ok.status, ok.text().as_str()), (200, "null"));
    assert_eq!(
        ok.header("x-ratelimit-limit"),
        Some(format!("100, 100;w={MONTH_SECONDS};name=\"budget\"").as_str())
    );
    assert_eq!(ok.header("x-ratelimit-remaining"), Some("70"));
    let reset: u64 = ok.header("x-ratelimit-reset").unwrap().parse().unwrap();
    assert!(reset <= MONTH_SECONDS, "{reset}");
    with_headers["delta"] = json!(71);
    let refused = api.post("/check_and_report", &with_headers).unwrap();
    assert_eq!(refused.status, 429);
    // limitador 0.14 reports what is left on a refusal (limitador-server on 0.12 said 0).
    assert_eq!(refused.header("x-ratelimit-remaining"), Some("70"));

    let status = api.status().unwrap();
    assert_eq!(
        keys(&status),
        BTreeSet::from([
            "started_at",
            "config_applied_at",
            "config_version",
            "config_err_since"
        ])
    );
    assert_eq!(status["config_version"], 0);
}

#[test]
fn bad_requests_are_refused_with_400_and_the_server_keeps_serving() {
    let (_redis, lim) = start(&budget("gov:vk:k1", 100));
    let api = lim.api();
    let client = api.client();
    let bad_bodies = [
        json!({ "namespace": "gov:vk:k1", "values": { "window": NOV } }),
        json!({ "namespace": "gov:vk:k1", "values": { "window": NOV }, "delta": -1 }),
        json!({ "namespace": "gov:vk:k1", "values": { "window": 7 }, "delta": 1 }),
        json!({ "values": {}, "delta": 1 }),
        json!([1, 2]),
    ];
    for path in ["/check", "/report", "/check_and_report"] {
        for body in &bad_bodies {
            assert_eq!(api.post(path, body).unwrap().status, 400, "{path} {body}");
        }
        let not_json = envoy_harness::Request::post(path)
            .header("content-type", "application/json")
            .body("{\"namespace\":");
        assert_eq!(client.send(&not_json).unwrap().status, 400, "{path}");
        let wrong_type = envoy_harness::Request::post(path)
            .header("content-type", "text/plain")
            .body(LimitadorApi::body("gov:vk:k1", &window(NOV), 1).to_string());
        assert_eq!(client.send(&wrong_type).unwrap().status, 400, "{path}");
    }
    assert_eq!(api.get("/nope").unwrap().status, 404);
    assert_eq!(api.get("/check").unwrap().status, 404);
    // Nothing was counted, and the server still answers.
    assert_eq!(api.counters("gov:vk:k1").unwrap(), json!([]));
    assert_eq!(
        api.check_and_report("gov:vk:k1", &window(NOV), 1).unwrap(),
        200
    );
}

#[test]
fn counters_survive_restarting_the_standin() {
    let (_redis, mut lim) = start(&budget("gov:vk:k1", 100));
    let port = lim.port();
    assert_eq!(
        lim.api()
            .check_and_report("gov:vk:k1", &window(NOV), 70)
            .unwrap(),
        200
    );
    lim.restart().unwrap();
    assert_eq!(lim.port(), port);
    let api = lim.api();
    assert_eq!(remaining(&api, "gov:vk:k1", NOV), Some(30));
    assert_eq!(
        api.check_and_report("gov:vk:k1", &window(NOV), 31).unwrap(),
        429
    );
    assert_eq!(
        api.check_and_report("gov:vk:k1", &window(NOV), 30).unwrap(),
        200
    );
}

#[test]
fn restarting_redis_starts_every_counter_afresh() {
    let (mut redis, lim) = start(&budget("gov:vk:k1", 100));
    let api = lim.api();
    assert_eq!(
        api.check_and_report("gov:vk:k1", &window(NOV), 100)
            .unwrap(),
        200
    );
    let port = redis.port();
    redis.restart().unwrap();
    assert_eq!(redis.port(), port);
    // The stand-in reconnects; the counter is gone with Redis's data. The first call may
    // still meet the old connection's error (500), as limitador-server's would.
    let first = api.check("gov:vk:k1", &window(NOV), 100).unwrap();
    assert!(first == 200 || first == 500, "{first}");
    assert_eq!(api.check("gov:vk:k1", &window(NOV), 100).unwrap(), 200);
}

#[test]
fn without_redis_nothing_is_admitted_and_limits_still_list() {
    let (mut redis, lim) = start(&budget("gov:vk:k1", 100));
    let api = lim.api().with_timeout(Duration::from_secs(2));
    redis.stop();
    // The call that meets the dropped connection answers 500. Later ones wait while the
    // Redis client retries (1 to 2 s, then a minute or more apart): no answer, or a 500, never a 200.
    let first = api.post(
        "/check_and_report",
        &LimitadorApi::body("gov:vk:k1", &window(NOV), 1),
    );
    assert_eq!(first.map(|r| r.status).ok(), Some(500));
    for path in ["/check", "/report", "/check_and_report"] {
        let status = api
            .post(path, &LimitadorApi::body("gov:vk:k1", &window(NOV), 1))
            .map(|r| r.status);
        assert!(matches!(status, Err(_) | Ok(500)), "{path}: {status:?}");
    }
    // Limits live in the stand-in, not in Redis.
    assert_eq!(api.limits("gov:vk:k1").unwrap()[0]["max_value"], 100);
}

#[test]
fn two_standins_on_one_redis_share_counters() {
    let redis = Redis::start().unwrap();
    let a = Limitador::start(&redis, &budget("gov:vk:k1", 1000)).unwrap();
    let b = Limitador::start(&redis, &budget("gov:vk:k1", 1000)).unwrap();
    let (a, b) = (a.api(), b.api());
    assert_eq!(
        a.check_and_report("gov:vk:k1", &window(NOV), 600).unwrap(),
        200
    );
    assert_eq!(
        b.check_and_report("gov:vk:k1", &window(NOV), 600).unwrap(),
        429
    );
    assert_eq!(
        b.check_and_report("gov:vk:k1", &window(NOV), 400).unwrap(),
        200
    );
    assert_eq!(
        a.check_and_report("gov:vk:k1", &window(NOV), 1).unwrap(),
        429
    );
    assert_eq!(remaining(&a, "gov:vk:k1", NOV), Some(0));
    assert_eq!(remaining(&b, "gov:vk:k1", NOV), Some(0));
}

#[test]
fn the_limits_file_is_hot_reloaded() {
    let (_redis, lim) = start(&budget("gov:vk:k1", 100));
    let api = lim.api();
    assert_eq!(
        api.check_and_report("gov:vk:k1", &window(NOV), 100)
            .unwrap(),
        200
    );
    assert_eq!(api.check("gov:vk:k1", &window(NOV), 50).unwrap(), 429);

    // A raised max applies to the running counter (what was used stays used).
    lim.set_limits(&format!(
        "{}{}",
        budget("gov:vk:k1", 150),
        budget("gov:vk:k2", 10)
    ))
    .unwrap();
    assert_eq!(api.status().unwrap()["config_version"], 1);
    assert_eq!(api.limits("gov:vk:k1").unwrap()[0]["max_value"], 150);
    assert_eq!(api.check("gov:vk:k1", &window(NOV), 50).unwrap(), 200);
    assert_eq!(api.check("gov:vk:k1", &window(NOV), 51).unwrap(), 429);
    assert_eq!(remaining(&api, "gov:vk:k1", NOV), Some(50));
    // A namespace added by the new file is live.
    assert_eq!(
        api.check_and_report("gov:vk:k2", &window(NOV), 11).unwrap(),
        429
    );

    // A file the server refuses leaves the previous limits in force.
    assert!(lim.set_limits("- namespace: [not, a, limit]\n").is_err());
    let status = api.status().unwrap();
    assert_eq!(
        (
            status["config_version"].as_u64(),
            status["config_err_since"].as_u64()
        ),
        (Some(1), Some(1))
    );
    assert_eq!(api.check("gov:vk:k1", &window(NOV), 51).unwrap(), 429);

    // A limit removed from the file no longer limits anything.
    lim.set_limits(&budget("gov:vk:k2", 10)).unwrap();
    assert_eq!(api.limits("gov:vk:k1").unwrap(), json!([]));
    assert_eq!(
        api.check("gov:vk:k1", &window(NOV), 1_000_000).unwrap(),
        200
    );
    assert_eq!(api.status().unwrap()["config_err_since"], 0);
}

#[test]
fn one_namespace_per_owner_keeps_owners_apart() {
    let owners = ["gov:vk:k1", "gov:vk:k2", "gov:team:t1", "gov:cust:c1"];
    let limits: String = owners.iter().map(|ns| budget(ns, 100)).collect();
    let (_redis, lim) = start(&limits);
    let api = lim.api();
    // One request charged to a key, its team and its customer, one call per owner.
    for ns in ["gov:vk:k1", "gov:team:t1", "gov:cust:c1"] {
        assert_eq!(
            api.check_and_report(ns, &window(NOV), 80).unwrap(),
            200,
            "{ns}"
        );
    }
    assert_eq!(
        api.check_and_report("gov:vk:k2", &window(NOV), 100)
            .unwrap(),
        200
    );
    assert_eq!(api.check("gov:vk:k1", &window(NOV), 21).unwrap(), 429);
    assert_eq!(api.check("gov:team:t1", &window(NOV), 20).unwrap(), 200);
    assert_eq!(api.check("gov:vk:k2", &window(NOV), 1).unwrap(), 429);
    for (ns, left) in [
        ("gov:vk:k1", 20),
        ("gov:vk:k2", 0),
        ("gov:team:t1", 20),
        ("gov:cust:c1", 20),
    ] {
        assert_eq!(remaining(&api, ns, NOV), Some(left), "{ns}");
        let listed = api.limits(ns).unwrap();
        assert_eq!(listed.as_array().map(Vec::len), Some(1), "{ns}");
        assert_eq!(listed[0]["namespace"], ns);
    }
}

#[test]
fn a_limits_file_rewritten_in_place_is_reloaded_too() {
    let (_redis, lim) = start(&budget("gov:vk:k1", 100));
    let api = lim.api();
    // Not through a rename (as set_limits does) but by writing over the same file.
    std::fs::write(lim.limits_path(), budget("gov:vk:k1", 300)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while api.status().unwrap()["config_version"] == 0 {
        assert!(
            Instant::now() < deadline,
            "not reloaded; log:\n{}",
            lim.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(api.limits("gov:vk:k1").unwrap()[0]["max_value"], 300);
    assert_eq!(api.check("gov:vk:k1", &window(NOV), 300).unwrap(), 200);
}

#[test]
fn validate_reads_a_limits_file_as_the_server_does() {
    let shown = validate_limits(&budget("gov:vk:k1", 100)).unwrap().unwrap();
    let listed: Vec<serde_json::Value> = serde_norway::from_str(&shown).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["namespace"], "gov:vk:k1");
    assert_eq!(listed[0]["max_value"], 100);
    assert_eq!(listed[0]["variables"], json!(["descriptors[0].window"]));
    for bad in [
        "- namespace: x\n  seconds: 1\n",
        "- {namespace: x, max_value: 1, seconds: 1, conditions: ['(('], variables: []}\n",
        "not: a list\n",
    ] {
        let refused = validate_limits(bad).unwrap().unwrap_err();
        assert!(refused.contains("Couldn't parse"), "{bad}: {refused}");
    }
}

/// The limits file `governance-cli limitador` writes for a `per_value` table, loaded into
/// the stand-in: each value (the hex SHA-256 the filter sends as `value`) has its own
/// counter, as many values as come, and the file's limit is what Limitador lists.
#[test]
fn a_per_value_limit_counts_each_value_apart() {
    let config = r#"{"fleet":{"cluster":"limitador","namespace_prefix":"gov"},
        "virtual_keys":[{"id":"k","value":"sk","per_value":{"header":"x-end-user","max_values":1,
            "rate_limit":{"request_max_limit":2,"request_reset_duration":"1m"}}}]}"#;
    let yaml = governance::tools::limitador(config).expect("limits file");
    assert!(yaml.contains("descriptors[0].value"), "{yaml}");
    let (_redis, lim) = start(&yaml);
    let api = lim.api();
    fn call(value: &str) -> [(&str, &str); 3] {
        [
            ("limit", "per_value:requests:1m:rolling"),
            ("window", "rolling"),
            ("value", value),
        ]
    }
    // Three values though max_values is 1: Limitador has no table to fill.
    for value in ["aa01", "bb02", "cc03"] {
        for _ in 0..2 {
            assert_eq!(
                api.check_and_report("gov:vk:k", &call(value), 1).unwrap(),
                200
            );
        }
        assert_eq!(
            api.check_and_report("gov:vk:k", &call(value), 1).unwrap(),
            429
        );
    }
    let counters = api.counters("gov:vk:k").unwrap();
    let values: BTreeSet<&str> = counters
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["set_variables"]["descriptors[0].value"].as_str())
        .collect();
    assert_eq!(values, BTreeSet::from(["aa01", "bb02", "cc03"]));
}
