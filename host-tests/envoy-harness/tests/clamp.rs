//! `reservation.clamp_output` in real Envoy: the body rewritten with a lower output cap
//! reaches the upstream whole (its `content-length` dropped, framed by the protocol), and
//! the client's reply says what cap it went with. A body without a length is not held and
//! is refused as before.

use envoy_harness::{Request, Stack};
use serde_json::{json, Value};

const KEY: &str = "sk-clamp-0001";

fn plugin_config() -> String {
    json!({
        "reservation": {"enabled": true, "clamp_output": true},
        "pricing": {
            "gpt-4o-mini": {"input_cost_per_token": 1.5e-7, "output_cost_per_token": 6e-7},
            "claude-sonnet-4*": {"input_cost_per_token": 3e-6, "output_cost_per_token": 1.5e-5}
        },
        "virtual_keys": [{"id": "k", "value": KEY,
            "rate_limit": {"token_max_limit": 1000, "token_reset_duration": "1d"}}]
    })
    .to_string()
}

/// Prompt tokens the filter estimates for a body (4 bytes a token, rounded up).
fn prompt(body: &[u8]) -> u64 {
    (body.len() as u64).div_ceil(4)
}

#[test]
fn the_rewritten_body_reaches_upstream_intact_with_the_lowered_cap() {
    let s = Stack::start(&plugin_config()).unwrap_or_else(|e| panic!("{e}"));
    let filler = "the quick brown fox ".repeat(40);
    let sent = json!({"model": "gpt-4o-mini", "max_tokens": 4096, "temperature": 0.5,
        "messages": [{"role": "user", "content": filler}]});
    let bytes = serde_json::to_vec(&sent).unwrap();
    let resp = s
        .client()
        .send(
            &Request::post("/v1/chat/completions")
                .header("x-bf-vk", KEY)
                .header("x-mock-usage", "prompt=10,completion=5")
                .json(&sent),
        )
        .unwrap();
    assert_eq!(resp.status, 200, "{}", resp.text());
    let cap = 1000 - prompt(&bytes);
    assert_eq!(
        resp.header("x-governance-output-clamped"),
        Some(cap.to_string().as_str())
    );
    let upstream = &s.mock.requests()[0];
    assert!(upstream.complete, "the upstream read the whole body");
    let mut want = sent.clone();
    want["max_tokens"] = json!(cap);
    assert_eq!(upstream.json(), Some(want));
    assert_eq!(
        upstream.body_len,
        bytes.len() - "4096".len() + cap.to_string().len(),
        "only 4096 became {cap}"
    );
    assert!(upstream
        .header("content-length")
        .is_none_or(|l| l == upstream.body_len.to_string()));

    // The room left after 15 tokens charged: a streaming Anthropic request, cap lowered.
    let msg = json!({"model": "claude-sonnet-4-5", "max_tokens": 8192, "stream": true,
        "messages": [{"role": "user", "content": "Hello"}]});
    let msg_bytes = serde_json::to_vec(&msg).unwrap();
    let resp = s
        .client()
        .send(
            &Request::post("/v1/messages")
                .header("x-bf-vk", KEY)
                .header("x-mock-usage", "prompt=10,completion=5")
                .json(&msg),
        )
        .unwrap();
    assert_eq!(resp.status, 200, "{}", resp.text());
    let upstream = &s.mock.requests()[1];
    let cap = 1000 - 15 - prompt(&msg_bytes);
    let got: Value = upstream.json().expect("JSON upstream");
    let mut want = msg.clone();
    want["max_tokens"] = json!(cap);
    assert_eq!(got, want);
    assert_eq!(
        resp.header("x-governance-output-clamped"),
        Some(cap.to_string().as_str())
    );

    // A body sent in chunks without a length is never held, so it cannot be rewritten:
    // refused as without clamp_output.
    let resp = s
        .client()
        .send(
            &Request::post("/v1/messages")
                .header("x-bf-vk", KEY)
                .json(&msg)
                .chunked(16),
        )
        .unwrap();
    assert_eq!(resp.status, 429, "{}", resp.text());
    assert_eq!(
        s.mock.complete_count(),
        2,
        "its last byte never went upstream"
    );
    s.envoy.stop();
}
