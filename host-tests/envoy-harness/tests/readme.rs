//! The README's sample: its configuration is accepted, the secrets it states are those the
//! configuration holds, and the reply it quotes is what Envoy answers to its request.

mod common;

use common::replies::check;
use common::shipped::{read, repo_path};
use envoy_harness::{Request, Stack};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;

/// The JSON block after `<!-- readme-config -->`.
fn readme_config() -> String {
    let readme = read(&repo_path("README.md"));
    let at = readme
        .find("<!-- readme-config -->")
        .expect("README.md marks its sample configuration");
    let block = &readme[at..];
    let start = block.find("```json\n").expect("a json block") + "```json\n".len();
    let end = block[start..].find("```").expect("the block ends") + start;
    block[start..end].to_string()
}

fn hex(bytes: &[u8; 32]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn the_readme_configuration_is_accepted_and_its_stated_secrets_are_its_own() {
    let text = readme_config();
    governance::config::parse(&text).unwrap_or_else(|e| panic!("README.md sample: {e}"));
    let config: Value = serde_json::from_str(&text).unwrap();
    let readme = read(&repo_path("README.md"));
    for (secret, configured) in [
        (
            "governance-admin-example",
            &config["usage_endpoint"]["admin_key_sha256"],
        ),
        (
            "sk-bf-ci-example",
            &config["virtual_keys"][1]["value_sha256"],
        ),
    ] {
        assert!(readme.contains(secret), "README.md states {secret}");
        assert_eq!(
            configured.as_str(),
            Some(hex(&governance::config::sha256_of(secret.as_bytes())).as_str()),
            "the SHA-256 of {secret}"
        );
    }
    assert!(readme.contains(config["virtual_keys"][0]["value"].as_str().unwrap()));
}

#[test]
fn the_readme_reply_is_what_envoy_answers() {
    let stack =
        Stack::start_with(&readme_config(), |c| c.concurrency(2)).unwrap_or_else(|e| panic!("{e}"));
    let claude = json!({"model": "claude-sonnet-4-5", "max_tokens": 1024,
        "messages": [{"role": "user", "content": "Hello"}]});
    let call = |usage: Option<&str>| {
        let mut req = Request::post("/v1/messages")
            .header("x-api-key", "sk-bf-1f0c5e")
            .header("x-bf-provider", "anthropic")
            .json(&claude);
        if let Some(usage) = usage {
            req = req.header("x-mock-usage", usage);
        }
        stack.client().send(&req).expect("request through Envoy")
    };
    // 200,000 × $3e-6 + 30,000 × $1.5e-5 = $1.05 against the key's $1 a day.
    let first = call(Some("prompt=200000,completion=30000"));
    assert_eq!(first.status, 200, "{}", first.text());
    stack
        .envoy
        .wait_for_counter(
            "governance.tokens_charged",
            |v| v.unwrap_or(0) >= 230_000,
            Duration::from_secs(5),
        )
        .unwrap();
    let mut live = BTreeMap::new();
    live.insert("402".to_string(), call(None));
    check("README.md", &live);
    stack.envoy.stop();
}
