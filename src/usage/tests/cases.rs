//! Targeted cases: paths, nulls, early ends, escapes, numbers and event framing.

use super::super::{BodyFormat, Usage, UsageScanner, MODEL_MAX_BYTES};
use super::{fixture, scan, scan_json, scan_sse, usage};

#[test]
fn usage_lookalikes_in_model_output_are_ignored() {
    let body = r#"{"choices":[{"message":{"content":"x","usage":{"prompt_tokens":9}}}],
        "text":"\"usage\": {\"prompt_tokens\": 7}","meta":{"usage":{"prompt_tokens":5}},
        "model":"m"}"#;
    let found = scan_json(body);
    assert_eq!(found.usage, None);
    assert_eq!(found.model.as_deref(), Some("m"));
}

#[test]
fn sse_wrappers_do_not_count_in_a_json_body() {
    let body = r#"{"response":{"usage":{"input_tokens":5}},"message":{"model":"x"}}"#;
    assert_eq!(scan_json(body), Default::default());
}

#[test]
fn usage_null_does_not_erase_earlier_values() {
    let body = concat!(
        "data: {\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4}}\n\n",
        "data: {\"usage\":null}\n\n",
        "data: {\"usage\":{\"completion_tokens\":null}}\n\n",
    );
    assert_eq!(scan_sse(body).usage, Some(usage(3, 0, 0, 4)));
    assert_eq!(scan_json(r#"{"usage":null}"#).usage, None);
}

#[test]
fn anthropic_output_is_the_last_delta_not_a_sum() {
    let body = concat!(
        "event: message_start\ndata: {\"message\":{\"usage\":{\"input_tokens\":10,\"output_tokens\":1}}}\n\n",
        "event: message_delta\ndata: {\"usage\":{\"output_tokens\":5}}\n\n",
        "event: message_delta\ndata: {\"usage\":{\"output_tokens\":12}}\n\n",
    );
    assert_eq!(scan_sse(body).usage, Some(usage(10, 0, 0, 12)));
}

#[test]
fn stream_cut_short_returns_what_was_seen() {
    let f = fixture("anthropic-messages-stream.sse");
    let body = std::str::from_utf8(f.body).unwrap();
    let cut = body.find("event: content_block_start").unwrap();
    let found = scan(BodyFormat::EventStream, [&f.body[..cut]]);
    assert_eq!(found.usage, Some(usage(25, 8000, 2000, 1)));
    assert_eq!(found.model.as_deref(), Some("claude-sonnet-4-5-20250929"));

    // Cut inside the final count: "300" might have gone on, so it is not taken.
    let cut = body.find("300").unwrap() + 2;
    let found = scan(BodyFormat::EventStream, [&f.body[..cut]]);
    assert_eq!(found.usage, Some(usage(25, 8000, 2000, 1)));
}

#[test]
fn json_body_cut_short_keeps_completed_fields() {
    let body = r#"{"model":"m","usage":{"prompt_tokens":10,"completion_tokens":4"#;
    assert_eq!(scan_json(body).usage, Some(usage(10, 0, 0, 0)));
    assert_eq!(
        scan(BodyFormat::Json, [&body.as_bytes()[..body.len() - 1]]).usage,
        Some(usage(10, 0, 0, 0))
    );
    assert_eq!(
        scan(BodyFormat::Json, [&body.as_bytes()[..10]]),
        Default::default()
    );
}

#[test]
fn result_can_be_read_at_any_time() {
    let f = fixture("openai-chat-stream.sse");
    let mut scanner = UsageScanner::new(BodyFormat::EventStream);
    for chunk in f.body.chunks(7) {
        scanner.feed(chunk);
        let _ = scanner.result();
    }
    assert_eq!(scanner.result(), f.expected());
}

#[test]
fn escaped_keys_and_models_are_decoded() {
    let body = r#"{"mod\u0065l":"gpt-\u00e9\ud83d\ude00\"\\\/\b\f\n\r\t","\u0075sage":{"prompt_tokens":2}}"#;
    let found = scan_json(body);
    assert_eq!(found.model.as_deref(), Some("gpt-é😀\"\\/\u{8}\u{c}\n\r\t"));
    assert_eq!(found.usage, Some(usage(2, 0, 0, 0)));
}

#[test]
fn unusable_model_strings_are_ignored() {
    let long = "m".repeat(MODEL_MAX_BYTES + 1);
    let exact = "m".repeat(MODEL_MAX_BYTES);
    for (body, want) in [
        (format!(r#"{{"model":"{long}"}}"#), None),
        (format!(r#"{{"model":"{exact}"}}"#), Some(exact.as_str())),
        (r#"{"model":"a","model":""}"#.to_owned(), Some("a")),
        (format!(r#"{{"model":"a","model":"{long}"}}"#), Some("a")),
        (
            format!(r#"{{"model":"a","model":"\u006d{long}"}}"#),
            Some("a"),
        ),
        (r#"{"model":"a","model":"\ud800"}"#.to_owned(), Some("a")),
        (r#"{"model":"\udc00x"}"#.to_owned(), None),
        (r#"{"model":"\ud800\u0041"}"#.to_owned(), None),
        (r#"{"model":"\ud800x"}"#.to_owned(), None),
        (r#"{"model":7}"#.to_owned(), None),
        (r#"{"model":{"model":"x"}}"#.to_owned(), None),
    ] {
        assert_eq!(scan_json(&body).model.as_deref(), want, "{body}");
    }
    // Invalid UTF-8 inside the string.
    let found = scan(BodyFormat::Json, [&b"{\"model\":\"a\xff\"}"[..]]);
    assert_eq!(found.model, None);
}

#[test]
fn odd_numbers_are_ignored() {
    let max = u64::MAX.to_string();
    let over = "18446744073709551616";
    for (value, want) in [
        ("0", Some(0)),
        ("42", Some(42)),
        (max.as_str(), Some(u64::MAX)),
        (over, None),
        ("99999999999999999999999999", None),
        ("-1", None),
        ("-0", None),
        ("1.0", None),
        ("1.5", None),
        ("1e3", None),
        ("1E+3", None),
        ("012", None),
        ("\"12\"", None),
        ("true", None),
        ("null", None),
        ("[12]", None),
        ("{\"a\":12}", None),
    ] {
        let body = format!(r#"{{"usage":{{"completion_tokens":{value} }}}}"#);
        let found = scan_json(&body).usage.map(|u| u.output);
        assert_eq!(found, want, "{value}");
    }
}

#[test]
fn sums_saturate() {
    let u = Usage {
        input_uncached: u64::MAX,
        cache_read: 1,
        cache_write: 1,
        cache_write_1h: 1,
        output: 1,
    };
    assert_eq!(u.prompt_tokens(), u64::MAX);
    assert_eq!(u.total_tokens(), u64::MAX);
    let body = format!(
        r#"{{"usageMetadata":{{"candidatesTokenCount":{m},"thoughtsTokenCount":{m}}}}}"#,
        m = u64::MAX
    );
    assert_eq!(scan_json(&body).usage.map(|u| u.output), Some(u64::MAX));
    let body = r#"{"usage":{"prompt_tokens":5,"prompt_tokens_details":{"cached_tokens":9}}}"#;
    assert_eq!(scan_json(body).usage, Some(usage(0, 9, 0, 0)));
}

#[test]
fn provider_normalisation() {
    let anthropic = r#"{"usage":{"input_tokens":3,"cache_read_input_tokens":5,"cache_creation_input_tokens":7,"output_tokens":11}}"#;
    let responses = r#"{"usage":{"input_tokens":30,"input_tokens_details":{"cached_tokens":10},"output_tokens":11}}"#;
    let chat = r#"{"usage":{"prompt_tokens":30,"prompt_tokens_details":{"cached_tokens":10},"completion_tokens":11}}"#;
    let gemini = r#"{"usageMetadata":{"promptTokenCount":30,"cachedContentTokenCount":10,"candidatesTokenCount":4,"thoughtsTokenCount":7}}"#;
    assert_eq!(scan_json(anthropic).usage, Some(usage(3, 5, 7, 11)));
    assert_eq!(scan_json(responses).usage, Some(usage(20, 10, 0, 11)));
    assert_eq!(scan_json(chat).usage, Some(usage(20, 10, 0, 11)));
    assert_eq!(scan_json(gemini).usage, Some(usage(20, 10, 0, 11)));
    assert_eq!(usage(3, 5, 7, 11).prompt_tokens(), 15);
    assert_eq!(usage(3, 5, 7, 11).total_tokens(), 26);
}

#[test]
fn bedrock_converse_counts_mean_what_anthropic_counts_mean() {
    let bedrock = r#"{"usage":{"inputTokens":3,"outputTokens":11,"totalTokens":26,"cacheReadInputTokens":5,"cacheWriteInputTokens":7}}"#;
    assert_eq!(scan_json(bedrock).usage, Some(usage(3, 5, 7, 11)));
    let plain = r#"{"output":{"message":{"role":"assistant","content":[]}},"usage":{"inputTokens":3,"outputTokens":11,"totalTokens":14}}"#;
    assert_eq!(scan_json(plain).usage, Some(usage(3, 0, 0, 11)));
}

#[test]
fn anthropic_cache_writes_are_split_by_lifetime() {
    let split = |five: &str, one: &str| {
        let body = format!(
            r#"{{"usage":{{"input_tokens":1,"cache_creation_input_tokens":30,"cache_creation":{{{five}{one}}},"output_tokens":2}}}}"#
        );
        let u = scan_json(&body).usage.unwrap();
        (u.cache_write, u.cache_write_1h, u.prompt_tokens())
    };
    assert_eq!(
        split(
            r#""ephemeral_5m_input_tokens":10,"#,
            r#""ephemeral_1h_input_tokens":20"#
        ),
        (10, 20, 31)
    );
    // The total counts; of it, what does not live one hour lives five minutes, whatever
    // the five-minute count says (so the prompt is never counted twice or short).
    assert_eq!(split("", r#""ephemeral_1h_input_tokens":20"#), (10, 20, 31));
    assert_eq!(split(r#""ephemeral_5m_input_tokens":30"#, ""), (30, 0, 31));
    assert_eq!(
        split(
            r#""ephemeral_5m_input_tokens":99,"#,
            r#""ephemeral_1h_input_tokens":20"#
        ),
        (10, 20, 31)
    );
    assert_eq!(split("", r#""ephemeral_1h_input_tokens":50"#), (0, 50, 51));
    assert_eq!(
        split(
            r#""ephemeral_5m_input_tokens":0,"#,
            r#""ephemeral_1h_input_tokens":30"#
        ),
        (0, 30, 31)
    );
    // An empty breakdown, or none: every write is of the default lifetime.
    assert_eq!(split("", ""), (30, 0, 31));
    let none = r#"{"usage":{"input_tokens":1,"cache_creation_input_tokens":30}}"#;
    assert_eq!(scan_json(none).usage.map(|u| u.cache_write), Some(30));
    // The breakdown outside `usage` counts for nothing.
    let elsewhere = r#"{"cache_creation":{"ephemeral_1h_input_tokens":20},"usage":{"cache_creation_input_tokens":30}}"#;
    assert_eq!(
        scan_json(elsewhere)
            .usage
            .map(|u| (u.cache_write, u.cache_write_1h)),
        Some((30, 0))
    );
}

#[test]
fn anthropic_streams_split_cache_writes_too() {
    let body = concat!(
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":4,",
        "\"cache_creation_input_tokens\":9,\"cache_creation\":{\"ephemeral_5m_input_tokens\":2,",
        "\"ephemeral_1h_input_tokens\":7},\"output_tokens\":1}}}\n\n",
        "event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":6}}\n\n",
    );
    let want = Usage {
        input_uncached: 4,
        cache_write: 2,
        cache_write_1h: 7,
        output: 6,
        ..Usage::default()
    };
    assert_eq!(scan_sse(body).usage, Some(want));
}

#[test]
fn gemini_tool_use_prompt_is_billed_as_input() {
    let body = r#"{"usageMetadata":{"promptTokenCount":30,"cachedContentTokenCount":10,"toolUsePromptTokenCount":100,"candidatesTokenCount":4}}"#;
    assert_eq!(scan_json(body).usage, Some(usage(120, 10, 0, 4)));
    let alone = r#"{"usageMetadata":{"toolUsePromptTokenCount":100}}"#;
    assert_eq!(scan_json(alone).usage, Some(usage(100, 0, 0, 0)));
}

#[test]
fn embeddings_have_no_output() {
    let body = r#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.1,-2e-3]}],"model":"text-embedding-3-large","usage":{"prompt_tokens":8,"total_tokens":8}}"#;
    let found = scan_json(body);
    assert_eq!(found.usage, Some(usage(8, 0, 0, 0)));
    assert_eq!(found.model.as_deref(), Some("text-embedding-3-large"));
}

#[test]
fn whitespace_everywhere_is_fine() {
    let body = " \r\n\t{ \"usage\" \n: { \"output_tokens\" : 5 , \"input_tokens\":\t1\r\n} ,\"model\" : \"m\" } \n";
    let found = scan_json(body);
    assert_eq!(found.usage, Some(usage(1, 0, 0, 5)));
    assert_eq!(found.model.as_deref(), Some("m"));
}

#[test]
fn invalid_json_on_a_tracked_path_stops_the_document() {
    // Values before the error stay; nothing after it is read.
    let body = r#"{"usage":{"input_tokens":1,,"output_tokens":2}}"#;
    assert_eq!(scan_json(body).usage, Some(usage(1, 0, 0, 0)));
    for (bad, want) in [
        (r#"["usage",{"usage":{"input_tokens":1}}]"#, None),
        (r#"{usage:{"input_tokens":1}}"#, None),
        (r#"{"usage" {"input_tokens":1}}"#, None),
        (
            r#"{"usage":{"input_tokens":1 "output_tokens":2}}"#,
            Some(usage(1, 0, 0, 0)),
        ),
        (r#"{"us\xage":{"input_tokens":1}}"#, None),
        (r#"{"model":"\u12G4","usage":{"input_tokens":1}}"#, None),
        (r#"{"usage":nul,"usage":{"input_tokens":1}}"#, None),
        (r#"{"usage":{"input_tokens":1}]"#, Some(usage(1, 0, 0, 0))),
        (
            r#"{"usage":{"input_tokens":1}}}{"usage":{"input_tokens":2}}"#,
            Some(usage(1, 0, 0, 0)),
        ),
    ] {
        assert_eq!(scan_json(bad).usage, want, "{bad}");
    }
    // A second document after the first is ignored.
    let two = r#"{"usage":{"input_tokens":1}} {"usage":{"input_tokens":2}}"#;
    assert_eq!(scan_json(two).usage, Some(usage(1, 0, 0, 0)));
}

#[test]
fn skipped_values_may_hold_anything() {
    let body = r#"{"a":"}]\"{[\\","b":[{"usage":{"input_tokens":9}},[[[]]],"x\"y"],"c":{"d":{}},
        "e":-1.5e3,"f":true,"g":false,"h":null,"usage":{"x":[1,{"output_tokens":9}],"output_tokens":2}}"#;
    assert_eq!(scan_json(body).usage, Some(usage(0, 0, 0, 2)));
}

#[test]
fn sse_line_endings_fields_and_comments() {
    let events = [
        ": a comment\n",
        "event: x\nid: 1\nretry: 5\n",
        "data:{\"usage\":{\"prompt_tokens\":1,\n",
        "data:  \"completion_tokens\":2}}\n",
        "\n",
    ];
    let lf: String = events.concat();
    let crlf = lf.replace('\n', "\r\n");
    let cr = lf.replace('\n', "\r");
    for body in [&lf, &crlf, &cr] {
        assert_eq!(scan_sse(body).usage, Some(usage(1, 0, 0, 2)), "{body:?}");
        let with_bom = format!("\u{feff}{body}");
        assert_eq!(
            scan_sse(&with_bom).usage,
            Some(usage(1, 0, 0, 2)),
            "{body:?}"
        );
    }
}

#[test]
fn sse_field_names_must_be_exactly_data() {
    for body in [
        "dat: {\"usage\":{\"prompt_tokens\":1}}\n\n",
        "datas: {\"usage\":{\"prompt_tokens\":1}}\n\n",
        " data: {\"usage\":{\"prompt_tokens\":1}}\n\n",
        "\u{feff}\u{feff}data: {\"usage\":{\"prompt_tokens\":1}}\n\n",
        "\u{ef}data: {\"usage\":{\"prompt_tokens\":1}}\n\n",
        ":data: {\"usage\":{\"prompt_tokens\":1}}\n\n",
    ] {
        assert_eq!(scan_sse(body).usage, None, "{body:?}");
    }
    // A lone `data` line joins the event's data as an empty line.
    let body = "data: {\"usage\":\ndata\ndata: {\"prompt_tokens\":1}}\n\n";
    assert_eq!(scan_sse(body).usage, Some(usage(1, 0, 0, 0)));
}

#[test]
fn sse_events_are_separate_documents() {
    // An event cut short does not leak its open path into the next event.
    let body = concat!(
        "data: {\"usage\":{\"prompt_tokens\":1,\"x\":[\n\n",
        "data: {\"completion_tokens\":5}\n\n",
        "data: [DONE]\n\n",
        "data: {\"usage\":{\"completion_tokens\":2}}\n\n",
    );
    assert_eq!(scan_sse(body).usage, Some(usage(1, 0, 0, 2)));
}

#[test]
fn content_type_picks_the_format() {
    assert_eq!(
        BodyFormat::from_content_type("text/event-stream"),
        BodyFormat::EventStream
    );
    assert_eq!(
        BodyFormat::from_content_type(" Text/Event-Stream ; charset=utf-8"),
        BodyFormat::EventStream
    );
    assert_eq!(
        BodyFormat::from_content_type("application/json"),
        BodyFormat::Json
    );
    assert_eq!(
        BodyFormat::from_content_type("application/vnd.amazon.eventstream"),
        BodyFormat::AmazonEventStream
    );
    assert_eq!(
        BodyFormat::from_content_type(" Application/VND.Amazon.EventStream ;x=1"),
        BodyFormat::AmazonEventStream
    );
    assert_eq!(
        BodyFormat::from_content_type("application/vnd.amazon.eventstreams"),
        BodyFormat::Json
    );
    assert_eq!(BodyFormat::from_content_type(""), BodyFormat::Json);
}

#[test]
fn top_level_array_of_responses_is_read_element_by_element() {
    // Gemini's streamGenerateContent without alt=sse: a JSON array of responses.
    let f = fixture("gemini-stream.sse");
    let events: Vec<&str> = std::str::from_utf8(f.body)
        .unwrap()
        .split("\r\n\r\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .collect();
    let body = format!("[{}]", events.join(",\r\n"));
    let bytes = body.as_bytes();
    for cut in 0..=bytes.len() {
        let (a, b) = bytes.split_at(cut);
        assert_eq!(scan(BodyFormat::Json, [a, b]), f.expected(), "cut at {cut}");
    }
    assert_eq!(scan_json("[]"), Default::default());
    assert_eq!(
        scan_json(r#"[{"usage":{"input_tokens":1}},2,{"usage":{"input_tokens":5}}]"#).usage,
        Some(usage(1, 0, 0, 0))
    );
    assert_eq!(scan_json(r#"[[{"usage":{"input_tokens":1}}]]"#).usage, None);
}

#[test]
fn keys_longer_than_any_tracked_key_are_skipped() {
    // Decoded byte by byte (an escape), longer than the key buffer: not `usage`, even
    // though it starts like it.
    let body = r#"{"\u0075sage_with_a_name_longer_than_thirty_two":{"prompt_tokens":5},"usage":{"prompt_tokens":2}}"#;
    assert_eq!(scan_json(body).usage, Some(usage(2, 0, 0, 0)));
    // The longest tracked key, escaped, still counts.
    let body = r#"{"usage":{"input_tokens":1,"\u0063ache_creation_input_tokens":7}}"#;
    assert_eq!(scan_json(body).usage, Some(usage(1, 0, 7, 0)));
}
