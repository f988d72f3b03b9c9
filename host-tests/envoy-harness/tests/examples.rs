//! Every shipped example runs on this machine as `make try EXAMPLE=<name>` runs it: the
//! shipped bootstrap (or manifest) in a real Envoy in front of the mock upstream, fleet mode
//! with Redis and the Limitador stand-in, and the requests of its `try.json`. Each answer
//! must have the status the script expects, and the replies the example's README quotes
//! (`<!-- envoy-reply: NAME -->`) must be the live ones (see `common/replies.rs`).

mod common;

use common::replies::{check, quoted_names};
use common::shipped::repo_path;
use envoy_harness::client::Response;
use envoy_harness::examples::{self, SCRIPT};
use envoy_harness::runner::default_wasm;
use std::collections::BTreeMap;

/// Runs example `name` as `make try` does; returns what it printed and the named replies.
fn try_example(name: &str) -> BTreeMap<String, Response> {
    let example = examples::load(name).unwrap_or_else(|e| panic!("{e}"));
    let mut printed = Vec::new();
    let running = examples::start(example, &default_wasm(), &mut printed)
        .unwrap_or_else(|e| panic!("{name} did not start: {e}"));
    let exchanges = running
        .play(&mut printed)
        .unwrap_or_else(|e| panic!("{name}: {e}\n{}", String::from_utf8_lossy(&printed)));
    let printed = String::from_utf8_lossy(&printed).into_owned();
    assert!(
        exchanges.iter().all(|e| e.as_expected()),
        "{name}: answers differ from its try.json:\n{printed}"
    );
    assert!(
        printed.contains("every answer as try.json expects"),
        "{printed}"
    );
    exchanges
        .into_iter()
        .filter_map(|e| Some((e.reply?, e.response)))
        .collect()
}

/// The example's README, when it quotes replies, quotes exactly the live ones.
fn check_readme(name: &str, live: &BTreeMap<String, Response>) {
    let readme = if name == "envoy" {
        "envoy/README.md".to_string()
    } else {
        format!("examples/{name}/README.md")
    };
    if repo_path(&readme).is_file() && !quoted_names(&readme).is_empty() {
        check(&readme, live);
    } else {
        assert!(live.is_empty(), "{name}: replies named but not quoted");
    }
}

fn try_and_check(name: &str) {
    let live = try_example(name);
    check_readme(name, &live);
}

#[test]
fn every_example_directory_has_a_script() {
    let mut dirs: Vec<String> = std::fs::read_dir(repo_path("examples"))
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    dirs.sort();
    let mut names = examples::names();
    assert_eq!(
        names.remove(0),
        "envoy",
        "the reference bootstrap has a script"
    );
    assert_eq!(names, dirs, "every directory of examples/ needs a {SCRIPT}");
    for name in examples::names() {
        examples::load(&name).unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn the_reference_bootstrap_runs_as_its_script_says() {
    try_and_check("envoy");
}

#[test]
fn single_team_openai_runs_as_its_script_and_readme_say() {
    try_and_check("single-team-openai");
}

#[test]
fn multi_tenant_runs_as_its_script_and_readme_say() {
    try_and_check("multi-tenant");
}

#[test]
fn the_istio_configuration_runs_as_its_script_says() {
    try_and_check("istio");
}

#[test]
fn the_envoy_gateway_configuration_runs_as_its_script_says() {
    try_and_check("envoy-gateway");
}

#[test]
fn the_demo_configuration_runs_as_its_script_says() {
    try_and_check("demo");
}

#[test]
fn the_fit_to_budget_configuration_runs_as_its_script_says() {
    try_and_check("fit-to-budget");
}

/// Needs `scripts/setup-fleet` (Redis and the Limitador stand-in), as `make test` runs it.
#[test]
fn the_fleet_example_runs_as_its_script_and_readme_say() {
    try_and_check("fleet");
}

#[test]
fn an_unknown_example_is_refused_with_the_list() {
    let e = examples::load("no-such-example").unwrap_err().to_string();
    assert!(
        e.contains("no example \"no-such-example\"") && e.contains("single-team-openai"),
        "{e}"
    );
}

/// A script whose expectation the answer does not meet is reported (`make try` then exits
/// 1): the answer is marked and the summary counts it.
#[test]
fn an_answer_that_differs_from_the_script_is_marked() {
    let mut example = examples::load("demo").unwrap();
    example.script.steps.truncate(1);
    example.script.steps[0].times = 1;
    example.script.steps[0].expect = 402;
    let mut printed = Vec::new();
    let running = examples::start(example, &default_wasm(), &mut printed).unwrap();
    let exchanges = running.play(&mut printed).unwrap();
    let printed = String::from_utf8_lossy(&printed);
    assert_eq!(exchanges.len(), 1);
    assert_eq!(exchanges[0].response.status, 200);
    assert!(!exchanges[0].as_expected());
    assert!(printed.contains("!! try.json expects 402"), "{printed}");
    assert!(
        printed.contains("1 of 1 answers differ from try.json"),
        "{printed}"
    );
}
