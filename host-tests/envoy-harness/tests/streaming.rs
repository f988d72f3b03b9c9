//! Streams are not held back: through Envoy and the filter, the client sees the first
//! events while the upstream is still writing.

mod common;

use common::{chat, stack, KEY};
use envoy_harness::Request;
use std::time::Duration;

#[test]
fn first_bytes_reach_the_client_before_upstream_finishes() {
    let s = stack();
    let resp = s
        .client()
        .send(
            &Request::post("/v1/chat/completions")
                .header("x-bf-vk", KEY)
                .header("x-mock-chunks", "5")
                .header("x-mock-chunk-delay-ms", "400")
                .json(&chat(true)),
        )
        .expect("stream through Envoy");
    assert_eq!(resp.status, 200, "body: {}", resp.text());
    let id: usize = resp.header("x-mock-request-id").unwrap().parse().unwrap();
    assert!(s.mock.wait_finished(id, Duration::from_secs(10)));
    let upstream = s.mock.request(id).unwrap();
    let finished = upstream.finished_at.unwrap();
    let first = resp.first_body_byte_at.expect("a body");
    assert!(
        first + Duration::from_millis(800) < finished,
        "first byte {:?} after send, upstream finished {:?} after send",
        first - resp.sent_at,
        finished - resp.sent_at
    );
    assert!(
        resp.arrivals.len() >= 3,
        "arrivals: {:?}",
        resp.arrivals.len()
    );
    assert_eq!(resp.sse_data().last().map(String::as_str), Some("[DONE]"));
}
