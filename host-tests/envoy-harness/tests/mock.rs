//! The mock upstream and the client on their own, without Envoy.

use envoy_harness::{Client, MockUpstream, Request};
use serde_json::json;
use std::time::Duration;

fn mock() -> (MockUpstream, Client) {
    let m = MockUpstream::start().expect("start mock");
    let c = Client::new(m.addr()).with_timeout(Duration::from_secs(10));
    (m, c)
}

#[test]
fn openai_chat_json_takes_usage_from_the_header() {
    let (m, c) = mock();
    let r = c
        .send(
            &Request::post("/v1/chat/completions")
                .header("x-mock-usage", "prompt=100,completion=20,cached=30")
                .header("x-bf-vk", "sk-secret")
                .json(&json!({"model": "gpt-4o-mini", "messages": []})),
        )
        .unwrap();
    assert_eq!(r.status, 200);
    let b = r.json().unwrap();
    assert_eq!(b["model"], "gpt-4o-mini");
    assert_eq!(b["usage"]["prompt_tokens"], 100);
    assert_eq!(b["usage"]["completion_tokens"], 20);
    assert_eq!(b["usage"]["prompt_tokens_details"]["cached_tokens"], 30);
    let seen = m.requests();
    assert_eq!(seen[0].header("x-bf-vk"), Some("sk-secret"));
    assert_eq!(seen[0].path, "/v1/chat/completions");
    assert_eq!(seen[0].method, "POST");
}

#[test]
fn usage_from_the_body_and_none() {
    let (_m, c) = mock();
    let r = c
        .send(
            &Request::post("/v1/chat/completions").json(
                &json!({"model": "gpt-4o-mini", "mock_usage": {"prompt": 3, "completion": 4}}),
            ),
        )
        .unwrap();
    assert_eq!(r.json().unwrap()["usage"]["total_tokens"], 7);
    let r = c
        .send(
            &Request::post("/v1/chat/completions")
                .header("x-mock-usage", "none")
                .json(&json!({"model": "gpt-4o-mini"})),
        )
        .unwrap();
    assert!(r.json().unwrap().get("usage").is_none());
}

#[test]
fn openai_chat_sse_ends_with_usage_then_done() {
    let (_m, c) = mock();
    let r = c
        .send(
            &Request::post("/v1/chat/completions")
                .header("x-mock-usage", "prompt=5,completion=6")
                .header("x-mock-chunks", "4")
                .json(&json!({"model": "gpt-4o-mini", "stream": true,
                    "stream_options": {"include_usage": true}})),
        )
        .unwrap();
    assert_eq!(r.header("content-type"), Some("text/event-stream"));
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    let data = r.sse_data();
    assert_eq!(data.len(), 4 + 2);
    assert_eq!(data[5], "[DONE]");
    let last: serde_json::Value = serde_json::from_str(&data[4]).unwrap();
    assert_eq!(last["usage"]["completion_tokens"], 6);
}

#[test]
fn openai_chat_sse_reports_usage_only_when_asked() {
    let (_m, c) = mock();
    let r = c
        .send(
            &Request::post("/openai/deployments/prod-mini/chat/completions?api-version=2024-10-21")
                .json(&json!({"stream": true})),
        )
        .unwrap();
    let data = r.sse_data();
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let last: serde_json::Value = serde_json::from_str(&data[data.len() - 2]).unwrap();
    assert_eq!(last["usage"], serde_json::Value::Null);
    assert_eq!(
        last["model"], "prod-mini",
        "Azure: the deployment names the model"
    );
}

#[test]
fn bedrock_converse_json_and_event_stream() {
    let (_m, c) = mock();
    let r = c
        .send(
            &Request::post("/model/anthropic.claude-sonnet-4-5-20250929-v1%3A0/converse")
                .header("x-mock-usage", "prompt=30,completion=7,cached=3")
                .json(&json!({"messages": []})),
        )
        .unwrap();
    let b = r.json().unwrap();
    assert_eq!(b["usage"]["inputTokens"], 30);
    assert_eq!(b["usage"]["cacheReadInputTokens"], 3);
    let r = c
        .send(
            &Request::post("/model/anthropic.claude-sonnet-4-5-20250929-v1%3A0/converse-stream")
                .header("x-mock-usage", "prompt=30,completion=7")
                .header("x-mock-chunks", "2")
                .json(&json!({"messages": []})),
        )
        .unwrap();
    assert_eq!(
        r.header("content-type"),
        Some("application/vnd.amazon.eventstream")
    );
    // Walk the messages: lengths and both CRCs hold; the last is `metadata` with usage.
    let mut rest = r.body.as_slice();
    let mut events = Vec::new();
    while !rest.is_empty() {
        let word = |at: usize| u32::from_be_bytes(rest[at..at + 4].try_into().unwrap());
        let (total, headers) = (word(0) as usize, word(4) as usize);
        assert_eq!(word(8), crc32fast::hash(&rest[..8]));
        assert_eq!(
            word(total - 4),
            crc32fast::hash(&rest[..total - 4]),
            "message CRC"
        );
        let payload: serde_json::Value =
            serde_json::from_slice(&rest[12 + headers..total - 4]).unwrap();
        events.push(payload);
        rest = &rest[total..];
    }
    assert_eq!(events.len(), 1 + 2 + 3);
    assert_eq!(events[5]["usage"]["inputTokens"], 30);
    assert_eq!(events[5]["usage"]["outputTokens"], 7);
}

#[test]
fn responses_json_and_sse() {
    let (_m, c) = mock();
    let r = c
        .send(
            &Request::post("/v1/responses")
                .header("x-mock-usage", "prompt=8,completion=9,cached=2")
                .json(&json!({"model": "gpt-4o-mini", "input": "hi"})),
        )
        .unwrap();
    let b = r.json().unwrap();
    assert_eq!(b["usage"]["input_tokens"], 8);
    assert_eq!(b["usage"]["input_tokens_details"]["cached_tokens"], 2);
    let r = c
        .send(
            &Request::post("/v1/responses")
                .header("x-mock-usage", "prompt=8,completion=9")
                .json(&json!({"model": "gpt-4o-mini", "input": "hi", "stream": true})),
        )
        .unwrap();
    let text = r.text();
    assert!(text.contains("event: response.completed"), "{text}");
    let done: serde_json::Value = serde_json::from_str(r.sse_data().last().unwrap()).unwrap();
    assert_eq!(done["response"]["usage"]["output_tokens"], 9);
}

#[test]
fn anthropic_json_and_sse() {
    let (_m, c) = mock();
    let usage = "prompt=50,completion=7,cached=10,cache_write=5";
    let r = c
        .send(
            &Request::post("/v1/messages")
                .header("x-mock-usage", usage)
                .json(&json!({"model": "claude-sonnet-4-5", "max_tokens": 10})),
        )
        .unwrap();
    let b = r.json().unwrap();
    assert_eq!(b["usage"]["input_tokens"], 50);
    assert_eq!(b["usage"]["cache_read_input_tokens"], 10);
    assert_eq!(b["usage"]["cache_creation_input_tokens"], 5);
    let r = c
        .send(
            &Request::post("/v1/messages")
                .header("x-mock-usage", usage)
                .json(&json!({"model": "claude-sonnet-4-5", "stream": true})),
        )
        .unwrap();
    let data: Vec<serde_json::Value> = r
        .sse_data()
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert_eq!(data[0]["type"], "message_start");
    assert_eq!(data[0]["message"]["usage"]["input_tokens"], 50);
    let delta = data.iter().find(|d| d["type"] == "message_delta").unwrap();
    assert_eq!(delta["usage"]["output_tokens"], 7);
    assert_eq!(data.last().unwrap()["type"], "message_stop");
}

#[test]
fn gemini_json_and_sse() {
    let (_m, c) = mock();
    let usage = "prompt=12,completion=13,thoughts=4,cached=1";
    let r = c
        .send(
            &Request::post("/v1beta/models/gemini-2.5-flash:generateContent")
                .header("x-mock-usage", usage)
                .json(&json!({"contents": []})),
        )
        .unwrap();
    let b = r.json().unwrap();
    assert_eq!(b["modelVersion"], "gemini-2.5-flash");
    assert_eq!(b["usageMetadata"]["promptTokenCount"], 12);
    assert_eq!(b["usageMetadata"]["thoughtsTokenCount"], 4);
    let r = c
        .send(
            &Request::post("/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse")
                .header("x-mock-usage", usage)
                .header("x-mock-chunks", "3")
                .json(&json!({"contents": []})),
        )
        .unwrap();
    assert_eq!(r.header("content-type"), Some("text/event-stream"));
    let data = r.sse_data();
    assert_eq!(data.len(), 3);
    let last: serde_json::Value = serde_json::from_str(&data[2]).unwrap();
    assert_eq!(last["usageMetadata"]["candidatesTokenCount"], 13);
    let first: serde_json::Value = serde_json::from_str(&data[0]).unwrap();
    assert!(first.get("usageMetadata").is_none());
}

#[test]
fn keep_alive_chunked_and_large_bodies() {
    let (m, c) = mock();
    let mut conn = c.connect().unwrap();
    let big = vec![b'a'; 5 * 1024 * 1024];
    for i in 0..3 {
        let r = conn
            .send(
                &Request::post("/v1/chat/completions")
                    .header("content-type", "application/json")
                    .body(big.clone())
                    .chunked(100_000 + i),
            )
            .unwrap();
        assert_eq!(r.status, 200);
    }
    let r = conn
        .send(&Request::post("/v1/chat/completions").body(big.clone()))
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(m.connection_count(), 1);
    let seen = m.requests();
    assert_eq!(seen.len(), 4);
    assert!(seen.iter().all(|r| r.body_len == big.len()));
}

#[test]
fn status_override_unknown_route_and_models() {
    let (_m, c) = mock();
    let r = c
        .send(&Request::post("/v1/chat/completions").header("x-mock-status", "503"))
        .unwrap();
    assert_eq!(r.status, 503);
    assert_eq!(r.error_type().as_deref(), Some("mock_error"));
    assert_eq!(c.get("/nope").unwrap().status, 404);
    let r = c.get("/v1/models").unwrap();
    assert_eq!(r.json().unwrap()["object"], "list");
}

#[test]
fn slow_stream_trickles() {
    let (m, c) = mock();
    let r = c
        .send(
            &Request::post("/v1/messages")
                .header("x-mock-chunks", "4")
                .header("x-mock-chunk-delay-ms", "100")
                .json(&json!({"model": "claude-sonnet-4-5", "stream": true})),
        )
        .unwrap();
    let id: usize = r.header("x-mock-request-id").unwrap().parse().unwrap();
    assert!(m.wait_finished(id, Duration::from_secs(5)));
    let finished = m.request(id).unwrap().finished_at.unwrap();
    let first = r.first_body_byte_at.unwrap();
    assert!(first + Duration::from_millis(400) < finished);
    assert!(r.arrivals.len() >= 4, "{:?}", r.arrivals);
}

#[test]
fn response_padding() {
    let (_m, c) = mock();
    let r = c
        .send(
            &Request::post("/v1/chat/completions")
                .header("x-mock-response-bytes", "200000")
                .json(&json!({"model": "gpt-4o-mini"})),
        )
        .unwrap();
    assert!(r.body.len() > 200_000);
    assert_eq!(r.json().unwrap()["usage"]["prompt_tokens"], 10);
}

#[test]
fn a_request_cut_short_is_recorded_as_incomplete() {
    use std::io::Write;
    let (m, c) = mock();
    let mut raw = std::net::TcpStream::connect(m.addr()).unwrap();
    raw.write_all(
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: 1000\r\n\r\n0123456789",
    )
    .unwrap();
    assert!(m.wait_for_requests(1, Duration::from_secs(5)));
    drop(raw);
    // Bounded wait for the connection thread to see the close.
    for _ in 0..50 {
        if m.requests()[0].body_len == 10 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let r = &m.requests()[0];
    assert!(!r.complete);
    assert_eq!(r.body_len, 10);
    assert_eq!(m.complete_count(), 0);
    // A whole request afterwards is complete.
    assert_eq!(c.get("/v1/models").unwrap().status, 200);
    assert_eq!(m.complete_count(), 1);
}

#[test]
fn a_gate_holds_responses_until_the_test_opens_it() {
    let (m, c) = mock();
    let held = |gate: &str| {
        Request::post("/v1/chat/completions")
            .header("x-mock-gate", gate)
            .json(&json!({"model": "gpt-4o-mini", "messages": []}))
    };
    std::thread::scope(|s| {
        let waiting = [
            s.spawn(|| c.send(&held("g1"))),
            s.spawn(|| c.send(&held("g1"))),
        ];
        assert!(m.wait_for_requests(2, Duration::from_secs(10)));
        // Another gate opens on its own: its response comes while the first two wait.
        m.open_gate("g2");
        assert_eq!(c.send(&held("g2")).expect("response").status, 200);
        assert!(m.requests().iter().take(2).all(|r| r.finished_at.is_none()));
        m.open_gate("g1");
        for handle in waiting {
            let r = handle.join().expect("client thread").expect("response");
            assert_eq!(r.status, 200);
        }
    });
    assert!(m.requests().iter().take(2).all(|r| r.finished_at.is_some()));
}
