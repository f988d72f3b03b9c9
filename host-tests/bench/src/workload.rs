//! What the benchmark sends: the policy configurations, the typical request and its
//! response, the long server-sent-events stream and its Bedrock counterpart in Amazon's
//! binary event stream framing.

use host_tests::{Request, Response};
use std::fmt::Write as _;

/// The virtual key every benchmark request carries (key 0 of every configuration).
pub const KEY: &str = "sk-bench-key-00000";

/// A configuration with `keys` virtual keys in teams of 50 and customers of 20 teams (at
/// least one of each). Every key, team and customer has one USD budget; every key has a
/// request limit. Limits are far above what the benchmark spends, so every request is
/// admitted and charged (the path being measured is the common one).
pub fn config(keys: usize) -> String {
    let teams = (keys / 50).max(1);
    let customers = (teams / 20).max(1);
    let budget = |window: &str| format!(r#"[{{"max_limit":1000.0,"reset_duration":"{window}"}}]"#);
    let mut out = String::new();
    out.push_str(
        r#"{"namespace":"governance","timezone":"UTC","pricing":{"gpt-4o-mini*":{"input_cost_per_token":1.5e-7,"output_cost_per_token":6e-7,"cache_read_input_token_cost":7.5e-8}},"customers":["#,
    );
    for c in 0..customers {
        if c > 0 {
            out.push(',');
        }
        let _ = write!(out, r#"{{"id":"c{c}","budgets":{}}}"#, budget("1d"));
    }
    out.push_str(r#"],"teams":["#);
    for t in 0..teams {
        if t > 0 {
            out.push(',');
        }
        let _ = write!(
            out,
            r#"{{"id":"t{t}","customer_id":"c{}","budgets":{}}}"#,
            t % customers,
            budget("1h")
        );
    }
    out.push_str(r#"],"virtual_keys":["#);
    for k in 0..keys {
        if k > 0 {
            out.push(',');
        }
        let _ = write!(
            out,
            r#"{{"id":"k{k}","value":"{}","team_id":"t{}","budgets":{},"rate_limit":{{"request_max_limit":1000000000,"request_reset_duration":"1m"}}}}"#,
            key_value(k),
            k % teams,
            budget("1h")
        );
    }
    out.push_str("]}");
    out
}

/// `config` with a per-model entry on key 0 (the benchmark's key) that matches the typical
/// request's model: a budget and a request limit beside the key's own.
pub fn with_model_config(config: &str) -> String {
    config.replacen(
        r#"{"id":"k0","#,
        r#"{"id":"k0","model_configs":[{"model":"gpt-4o*","budgets":[{"max_limit":1000.0,"reset_duration":"1d"}],"rate_limit":{"request_max_limit":1000000000,"request_reset_duration":"1m"}}],"#,
        1,
    )
}

/// `config` with a `per_value` table on key 0: each `x-end-user` gets a budget and a request
/// limit (the typical request carries no such header: it is the table's empty value).
pub fn with_per_value(config: &str) -> String {
    config.replacen(
        r#"{"id":"k0","#,
        r#"{"id":"k0","per_value":{"header":"x-end-user","budgets":[{"max_limit":1000.0,"reset_duration":"1d"}],"rate_limit":{"request_max_limit":1000000000,"request_reset_duration":"1m"}},"#,
        1,
    )
}

/// `config` with key 0's own budget a prepaid credit (`"reset_duration": "never"`).
pub fn with_never_budget(config: &str) -> String {
    let Some(key) = config.find(r#"{"id":"k0","#) else {
        return config.to_string();
    };
    let (before, after) = config.split_at(key);
    format!(
        "{before}{}",
        after.replacen(r#""reset_duration":"1h""#, r#""reset_duration":"never""#, 1)
    )
}

/// `config` with reservations (docs/reservations.md) enabled.
pub fn with_reservation(config: &str) -> String {
    config.replacen('{', r#"{"reservation":{"enabled":true},"#, 1)
}

/// `config` with a cap on requests in flight (far above what the benchmark holds) on every
/// key and, with `every_level`, on every team and customer too.
pub fn with_in_flight(config: &str, every_level: bool) -> String {
    let cap = r#""max_in_flight":1000000"#;
    let mut out = config.replace(
        r#""request_reset_duration":"1m"}"#,
        &format!(r#""request_reset_duration":"1m",{cap}}}"#),
    );
    if every_level {
        for owner in [r#"{"id":"t"#, r#"{"id":"c"#] {
            let capped = format!(r#"{{"rate_limit":{{{cap}}},{}"#, &owner[1..]);
            out = out.replace(owner, &capped);
        }
    }
    out
}

/// `config` with further top-level fields (`fields`: `"name": value` pairs, comma-separated).
pub fn with_fields(config: &str, fields: &str) -> String {
    config.replacen('{', &format!("{{{fields},"), 1)
}

/// The secret of key `k`.
pub fn key_value(k: usize) -> String {
    format!("sk-bench-key-{k:05}")
}

/// The typical request body: a short chat completion.
pub const REQUEST_BODY: &str = r#"{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Say hello in one short sentence."}],"max_tokens":256}"#;

/// The streaming variant of [`REQUEST_BODY`].
pub const STREAM_REQUEST_BODY: &str = r#"{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Write a very long story."}]}"#;

/// POST /v1/chat/completions with the key as a Bearer token.
pub fn request(body: &str) -> Request {
    Request::post("/v1/chat/completions", body.as_bytes().to_vec())
        .header("authorization", &format!("Bearer {KEY}"))
}

/// A 1.5 KB (1,536-byte) OpenAI chat completion with usage, pretty-printed like OpenAI's.
pub fn response_json() -> String {
    response_json_of(1536)
}

/// An OpenAI chat completion with usage of about `size` bytes (the content is padded).
pub fn response_json_of(size: usize) -> String {
    let head = r#"{
  "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
  "object": "chat.completion",
  "created": 1764300000,
  "model": "gpt-4o-mini-2024-07-18",
  "choices": [
    {
      "index": 0,
      "message": {
        "role": "assistant",
        "content": ""#;
    let tail = r#"",
        "refusal": null,
        "annotations": []
      },
      "logprobs": null,
      "finish_reason": "stop"
    }
  ],
  "usage": {
    "prompt_tokens": 1234,
    "completion_tokens": 256,
    "total_tokens": 1490,
    "prompt_tokens_details": {
      "cached_tokens": 1024,
      "audio_tokens": 0
    },
    "completion_tokens_details": {
      "reasoning_tokens": 0,
      "audio_tokens": 0,
      "accepted_prediction_tokens": 0,
      "rejected_prediction_tokens": 0
    }
  },
  "service_tier": "default",
  "system_fingerprint": "fp_b376dfbbd5"
}"#;
    let words = "Hello! Here is a short answer, with a \"quoted\" word and a newline\\n. ";
    let target = size.saturating_sub(head.len() + tail.len());
    let mut content = String::new();
    while content.len() < target {
        content.push_str(words);
    }
    // Cut on a plain character so no escape is split.
    while content.len() > target || content.ends_with('\\') {
        content.pop();
    }
    format!("{head}{content}{tail}")
}

/// The typical upstream response.
pub fn response() -> Response {
    Response::ok(response_json().into_bytes())
}

/// An OpenAI chat-completions SSE stream of about `bytes` bytes: a role chunk, content chunks
/// of a few words each, the finish chunk, the usage chunk and `[DONE]`.
pub fn sse_stream(bytes: usize) -> Vec<u8> {
    sse_stream_with(bytes, 1)
}

/// Like [`sse_stream`], with `repeat` content pieces per event (more bytes inside strings).
pub fn sse_stream_with(bytes: usize, repeat: usize) -> Vec<u8> {
    let prefix = r#"data: {"id":"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT","object":"chat.completion.chunk","created":1764300001,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_b376dfbbd5","choices":[{"index":0,"delta":{"#;
    let suffix = r#"},"logprobs":null,"finish_reason":null}],"usage":null}"#;
    let mut out = Vec::with_capacity(bytes + 4096);
    let _ = write_event(
        &mut out,
        prefix,
        r#""role":"assistant","content":"""#,
        suffix,
    );
    let mut i = 0usize;
    while out.len() < bytes {
        let piece = PIECES.get(i % PIECES.len()).copied().unwrap_or(" x");
        let delta = format!(r#""content":"{}""#, piece.repeat(repeat.max(1)));
        write_event(&mut out, prefix, &delta, suffix);
        i += 1;
    }
    out.extend_from_slice(
        br#"data: {"id":"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT","object":"chat.completion.chunk","created":1764300001,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_b376dfbbd5","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"length"}],"usage":null}

data: {"id":"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT","object":"chat.completion.chunk","created":1764300001,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_b376dfbbd5","choices":[],"usage":{"prompt_tokens":40,"completion_tokens":90000,"total_tokens":90040,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0}}}

data: [DONE]

"#,
    );
    out
}

fn write_event(out: &mut Vec<u8>, prefix: &str, delta: &str, suffix: &str) -> usize {
    let before = out.len();
    out.extend_from_slice(prefix.as_bytes());
    out.extend_from_slice(delta.as_bytes());
    out.extend_from_slice(suffix.as_bytes());
    out.extend_from_slice(b"\n\n");
    out.len() - before
}

/// The text deltas of the long streams.
const PIECES: [&str; 13] = [
    "Once",
    " upon",
    " a time,",
    " in a",
    " land",
    " far",
    " away,",
    " there",
    " lived",
    " a \\\"model\\\"",
    " that",
    " counted",
    " tokens.\\n",
];

/// A Bedrock ConverseStream body of about `bytes` bytes in Amazon's binary event stream
/// framing (`application/vnd.amazon.eventstream`): `messageStart`, one `contentBlockDelta`
/// message per few words (with Bedrock's `p` padding), the stop messages and `metadata` with
/// the usage, each message with the three string headers Bedrock sends and right CRCs.
pub fn amazon_event_stream(bytes: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes + 4096);
    out.extend(amazon_message(
        "messageStart",
        r#"{"p":"abcdefghijklmnopqrstuvwxyzABCDEFGHIJ","role":"assistant"}"#,
    ));
    let mut i = 0usize;
    while out.len() < bytes {
        let piece = PIECES.get(i % PIECES.len()).copied().unwrap_or(" x");
        let padding = "abcdefghijklmnopqrstuvwxyz".get(..(i % 26)).unwrap_or("");
        let payload =
            format!(r#"{{"contentBlockIndex":0,"delta":{{"text":"{piece}"}},"p":"{padding}"}}"#);
        out.extend(amazon_message("contentBlockDelta", &payload));
        i += 1;
    }
    out.extend(amazon_message(
        "contentBlockStop",
        r#"{"contentBlockIndex":0,"p":"abcdefgh"}"#,
    ));
    out.extend(amazon_message(
        "messageStop",
        r#"{"p":"abcdefghijklmn","stopReason":"max_tokens"}"#,
    ));
    out.extend(amazon_message(
        "metadata",
        r#"{"metrics":{"latencyMs":61234},"p":"abc","usage":{"inputTokens":40,"outputTokens":90000,"totalTokens":90040}}"#,
    ));
    out
}

/// One event-stream message: prelude with its CRC, the string headers, payload, CRC.
fn amazon_message(event_type: &str, payload: &str) -> Vec<u8> {
    let mut headers = Vec::new();
    for (name, value) in [
        (":event-type", event_type),
        (":content-type", "application/json"),
        (":message-type", "event"),
    ] {
        headers.push(u8::try_from(name.len()).unwrap_or(u8::MAX));
        headers.extend_from_slice(name.as_bytes());
        headers.push(7);
        let len = u16::try_from(value.len()).unwrap_or(u16::MAX);
        headers.extend_from_slice(&len.to_be_bytes());
        headers.extend_from_slice(value.as_bytes());
    }
    let total = 16 + headers.len() + payload.len();
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&u32::try_from(total).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(
        &u32::try_from(headers.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    let prelude_crc = crc32fast::hash(&out);
    out.extend_from_slice(&prelude_crc.to_be_bytes());
    out.extend_from_slice(&headers);
    out.extend_from_slice(payload.as_bytes());
    let message_crc = crc32fast::hash(&out);
    out.extend_from_slice(&message_crc.to_be_bytes());
    out
}
