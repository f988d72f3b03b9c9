//! Hostile and huge input: no panics, fixed memory, garbage finds nothing, and chunking
//! never changes the answer.

use super::super::{BodyFormat, ScannedUsage, UsageScanner, MODEL_MAX_BYTES};
use super::reference::try_scan_with_serde;
use super::{scan, scan_json, split_at, usage, FIXTURES};
use proptest::prelude::*;

/// The scanner's whole state is inline (no heap), so its size is its memory bound.
#[test]
fn memory_is_fixed_and_small() {
    let size = core::mem::size_of::<UsageScanner>();
    println!("UsageScanner is {size} bytes");
    assert!(size <= UsageScanner::STATE_BYTES_MAX, "{size} bytes");
    const { assert!(UsageScanner::STATE_BYTES_MAX <= 16 * 1024) };
}

fn check_bounds(found: &ScannedUsage) {
    if let Some(model) = &found.model {
        assert!(!model.is_empty() && model.len() <= MODEL_MAX_BYTES);
    }
}

fn all_formats() -> impl Strategy<Value = BodyFormat> {
    prop_oneof![
        Just(BodyFormat::Json),
        Just(BodyFormat::EventStream),
        Just(BodyFormat::AmazonEventStream)
    ]
}

fn cuts_for(len: usize, cuts: &[prop::sample::Index]) -> Vec<usize> {
    let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(len + 1)).collect();
    cuts.sort_unstable();
    cuts
}

/// A fixture with a few bytes replaced, inserted or deleted.
fn mutated_fixture() -> impl Strategy<Value = (usize, Vec<u8>)> {
    let edit = (
        any::<prop::sample::Index>(),
        0..3u8,
        any::<u8>(),
        any::<bool>(),
    );
    (0..FIXTURES.len(), proptest::collection::vec(edit, 1..4)).prop_map(|(which, edits)| {
        let mut body = FIXTURES[which].body.to_vec();
        for (at, kind, byte, json_byte) in edits {
            // Half the time pick a byte that JSON and SSE care about.
            let special = b"{}[]\":,\\ \n\r0-.eu";
            let byte = if json_byte {
                special[usize::from(byte) % special.len()]
            } else {
                byte
            };
            let at = at.index(body.len() + 1);
            match kind {
                0 if at < body.len() => body[at] = byte,
                1 if at < body.len() => {
                    body.remove(at);
                }
                _ => body.insert(at, byte),
            }
        }
        (which, body)
    })
}

/// Whether every event's data is JSON (or `[DONE]`), so the serde reference applies.
fn sse_events_all_parse(body: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(body) else {
        return false;
    };
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    text.split("\n\n").all(|event| {
        let data: Vec<&str> = event
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(|v| v.strip_prefix(' ').unwrap_or(v))
            .collect();
        let data = data.join("\n");
        data.is_empty()
            || data == "[DONE]"
            || serde_json::from_str::<serde_json::Value>(&data).is_ok()
    }) && text.lines().all(|l| {
        // Keep to lines the reference frames the same way: known fields and comments.
        l.is_empty() || l.starts_with("data:") || l.starts_with("event:") || l.starts_with(':')
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn random_bytes_find_nothing(
        format in all_formats(),
        body in proptest::collection::vec(any::<u8>(), 0..2048),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let cuts = cuts_for(body.len(), &cuts);
        let found = scan(format, split_at(&body, &cuts));
        check_bounds(&found);
        prop_assert_eq!(found.usage, None);
    }

    #[test]
    fn json_like_noise_never_panics_and_chunking_is_irrelevant(
        format in all_formats(),
        body in "([{}\\[\\]\":,\\\\ \n\r0-9eE.+\\-]|usage|model|data: |null|true|\\\\u00|\\\\ud83d|prompt_tokens|usageMetadata|response|message){0,200}",
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let body = body.as_bytes();
        let whole = scan(format, [body]);
        check_bounds(&whole);
        let cuts = cuts_for(body.len(), &cuts);
        prop_assert_eq!(scan(format, split_at(body, &cuts)), whole.clone());
        prop_assert_eq!(scan(format, body.chunks(1)), whole);
    }

    #[test]
    fn mutated_fixtures_agree_with_serde_when_valid(
        (which, body) in mutated_fixture(),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let format = FIXTURES[which].format();
        let whole = scan(format, [&body[..]]);
        check_bounds(&whole);
        let cuts = cuts_for(body.len(), &cuts);
        prop_assert_eq!(scan(format, split_at(&body, &cuts)), whole.clone());
        let reference_applies = match format {
            BodyFormat::Json | BodyFormat::AmazonEventStream => true,
            BodyFormat::EventStream => sse_events_all_parse(&body),
        };
        if reference_applies {
            if let Some(expected) = try_scan_with_serde(format, &body) {
                prop_assert_eq!(whole, expected, "{}", String::from_utf8_lossy(&body));
            }
        }
    }
}

#[test]
fn deep_nesting_costs_nothing() {
    let depth = 1_000_000;
    let mut body = String::from(r#"{"x":"#);
    body.push_str(&"[{\"a\":".repeat(depth));
    body.push_str(&"}]".repeat(depth));
    body.push_str(r#","usage":{"input_tokens":4,"deep":"#);
    body.push_str(&"[".repeat(depth));
    body.push_str(&"]".repeat(depth));
    body.push_str(r#","output_tokens":6}}"#);
    assert_eq!(scan_json(&body).usage, Some(usage(4, 0, 0, 6)));
    // Never closed: nothing after it can count.
    let open = format!(
        r#"{{"x":{}"usage":{{"input_tokens":4}}}}"#,
        "[".repeat(depth)
    );
    assert_eq!(scan_json(&open).usage, None);
}

#[test]
fn huge_strings_are_crossed_not_kept() {
    let text = "a\\\"}]{[ é 😀 \\u0041".repeat(400_000);
    let body = format!(
        r#"{{"model":"{text}","content":"{text}","usage":{{"{text}":1,"input_tokens":3}}}}"#
    );
    let found = scan(BodyFormat::Json, body.as_bytes().chunks(16 * 1024));
    assert_eq!(found.model, None);
    assert_eq!(found.usage, Some(usage(3, 0, 0, 0)));
}

#[test]
fn twenty_megabyte_event_stream_in_16k_chunks() {
    let mut body = Vec::with_capacity(21 << 20);
    let mut events = 0u64;
    while body.len() < 20 << 20 {
        // Content with escapes, brackets, multi-byte UTF-8 and lookalike usage text.
        body.extend_from_slice(
            br#"data: {"id":"c","object":"chat.completion.chunk","model":"gpt-4o","choices":[{"index":0,"delta":{"content":"\"usage\":{\"prompt_tokens\":1} } ] \u00e9 \ud83d\ude00 caf\u00e9 "},"finish_reason":null}],"usage":null}"#,
        );
        body.extend_from_slice("\n\n".as_bytes());
        events += 1;
    }
    body.extend_from_slice(
        b"data: {\"choices\":[],\"model\":\"gpt-4o\",\"usage\":{\"prompt_tokens\":77,\"completion_tokens\":88}}\n\ndata: [DONE]\n\n",
    );
    assert!(events > 50_000);
    let found = scan(BodyFormat::EventStream, body.chunks(16 * 1024));
    assert_eq!(found.usage, Some(usage(77, 0, 0, 88)));
    assert_eq!(found.model.as_deref(), Some("gpt-4o"));
}
