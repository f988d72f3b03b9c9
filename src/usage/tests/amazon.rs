//! Amazon's binary event stream (Bedrock ConverseStream): hand-built messages with right
//! and wrong CRCs, cut anywhere, against the whole-message reference.

use super::super::eventstream::{EventStreamDecoder, HEADERS_MAX};
use super::super::{BodyFormat, ScannedUsage, Usage};
use super::reference::try_scan_with_serde;
use super::{fixture, scan, split_at, usage};
use proptest::prelude::*;

/// A header value of one of the encoding's types.
enum Value<'a> {
    True,
    Byte(i8),
    Short(i16),
    Int(i32),
    Long(i64),
    Bytes(&'a [u8]),
    Str(&'a str),
    Timestamp(i64),
    Uuid([u8; 16]),
    /// A type byte the encoding does not define.
    Unknown(u8),
}

fn header(name: &str, value: &Value) -> Vec<u8> {
    let mut out = vec![u8::try_from(name.len()).unwrap()];
    out.extend_from_slice(name.as_bytes());
    let (kind, bytes): (u8, Vec<u8>) = match value {
        Value::True => (0, vec![]),
        Value::Byte(v) => (2, v.to_be_bytes().to_vec()),
        Value::Short(v) => (3, v.to_be_bytes().to_vec()),
        Value::Int(v) => (4, v.to_be_bytes().to_vec()),
        Value::Long(v) => (5, v.to_be_bytes().to_vec()),
        Value::Bytes(b) => (
            6,
            [&u16::try_from(b.len()).unwrap().to_be_bytes()[..], b].concat(),
        ),
        Value::Str(s) => (
            7,
            [
                &u16::try_from(s.len()).unwrap().to_be_bytes()[..],
                s.as_bytes(),
            ]
            .concat(),
        ),
        Value::Timestamp(v) => (8, v.to_be_bytes().to_vec()),
        Value::Uuid(v) => (9, v.to_vec()),
        Value::Unknown(kind) => (*kind, vec![]),
    };
    out.push(kind);
    out.extend_from_slice(&bytes);
    out
}

/// A message with right CRCs.
fn message(headers: &[(&str, Value)], payload: &[u8]) -> Vec<u8> {
    let headers: Vec<u8> = headers.iter().flat_map(|(n, v)| header(n, v)).collect();
    framed(&headers, payload)
}

fn framed(headers: &[u8], payload: &[u8]) -> Vec<u8> {
    let total = u32::try_from(16 + headers.len() + payload.len()).unwrap();
    let mut out = total.to_be_bytes().to_vec();
    out.extend_from_slice(&u32::try_from(headers.len()).unwrap().to_be_bytes());
    out.extend_from_slice(&crc32fast::hash(&out).to_be_bytes());
    out.extend_from_slice(headers);
    out.extend_from_slice(payload);
    out.extend_from_slice(&crc32fast::hash(&out).to_be_bytes());
    out
}

/// An event as Bedrock sends it: the three string headers, then the JSON payload.
fn event(event_type: &str, payload: &str) -> Vec<u8> {
    message(
        &[
            (":event-type", Value::Str(event_type)),
            (":content-type", Value::Str("application/json")),
            (":message-type", Value::Str("event")),
        ],
        payload.as_bytes(),
    )
}

fn metadata(input: u64, output: u64) -> Vec<u8> {
    event(
        "metadata",
        &format!(
            r#"{{"metrics":{{"latencyMs":9}},"p":"abc","usage":{{"inputTokens":{input},"outputTokens":{output},"totalTokens":{}}}}}"#,
            input + output
        ),
    )
}

fn delta(text: &str) -> Vec<u8> {
    event(
        "contentBlockDelta",
        &format!(r#"{{"contentBlockIndex":0,"delta":{{"text":{text:?}}},"p":"abcdef"}}"#),
    )
}

fn scan_all(body: &[u8]) -> ScannedUsage {
    scan(BodyFormat::AmazonEventStream, [body])
}

fn found(body: &[u8]) -> Option<Usage> {
    scan_all(body).usage
}

/// The same answer fed whole, split in two at every byte, and one byte at a time.
fn agrees_everywhere(body: &[u8]) -> Option<Usage> {
    let whole = scan_all(body);
    for cut in 0..=body.len() {
        let (a, b) = body.split_at(cut);
        assert_eq!(
            scan(BodyFormat::AmazonEventStream, [a, b]),
            whole,
            "cut at {cut}"
        );
    }
    assert_eq!(
        scan(BodyFormat::AmazonEventStream, body.chunks(1)),
        whole,
        "byte at a time"
    );
    whole.usage
}

#[test]
fn crcs_match_the_encodings_published_examples() {
    // The encoding's examples: `{"foo": "bar"}` without headers, and with a content type.
    let bare = framed(&[], br#"{"foo": "bar"}"#);
    assert_eq!(&bare[..12], [0, 0, 0, 30, 0, 0, 0, 0, 186, 242, 246, 138]);
    assert_eq!(&bare[26..], [174, 114, 88, 228]);
    let typed = message(
        &[("content-type", Value::Str("application/json"))],
        br#"{"foo": "bar"}"#,
    );
    assert_eq!(&typed[..12], [0, 0, 0, 62, 0, 0, 0, 32, 64, 93, 249, 70]);
    assert_eq!(&typed[58..], [111, 162, 191, 59]);
}

#[test]
fn usage_comes_from_the_metadata_event_only() {
    let start = event("messageStart", r#"{"p":"abcdefgh","role":"assistant"}"#);
    let lookalike = delta(r#""usage":{"inputTokens":999,"outputTokens":999}"#);
    let stop = event("messageStop", r#"{"p":"ab","stopReason":"end_turn"}"#);
    let without = [start.clone(), lookalike.clone(), stop.clone()].concat();
    assert_eq!(agrees_everywhere(&without), None);
    let body = [start, lookalike, stop, metadata(3, 11)].concat();
    assert_eq!(agrees_everywhere(&body), Some(usage(3, 0, 0, 11)));
    // A usage object that is not the top-level one of the payload does not count.
    let nested = event(
        "metadata",
        r#"{"metrics":{"usage":{"inputTokens":5}},"trace":{"usage":{"outputTokens":5}}}"#,
    );
    assert_eq!(found(&nested), None);
}

#[test]
fn the_fixture_is_read_in_any_chunking() {
    let f = fixture("bedrock-converse-stream.eventstream");
    assert_eq!(agrees_everywhere(f.body), f.expected().usage);
    assert_eq!(
        found(f.body),
        Some(Usage {
            input_uncached: 30,
            cache_read: 3500,
            cache_write: 1000,
            cache_write_1h: 0,
            output: 265,
        })
    );
}

#[test]
fn a_wrong_message_crc_discards_that_message_only() {
    let mut bad_crc = metadata(100, 100);
    *bad_crc.last_mut().unwrap() ^= 1;
    let mut bad_payload = metadata(200, 200);
    let at = bad_payload.len() - 10;
    bad_payload[at] ^= 0x20;
    for bad in [&bad_crc, &bad_payload] {
        assert_eq!(agrees_everywhere(bad), None);
        // Before a good one: the good one counts.
        let body = [bad.clone(), metadata(3, 4)].concat();
        assert_eq!(agrees_everywhere(&body), Some(usage(3, 0, 0, 4)));
        // After a good one: the good one stays.
        let body = [metadata(3, 4), bad.clone(), delta("x")].concat();
        assert_eq!(agrees_everywhere(&body), Some(usage(3, 0, 0, 4)));
    }
}

#[test]
fn a_wrong_prelude_crc_ends_the_reading() {
    let mut broken = delta("hello");
    broken[11] ^= 0xff;
    let body = [metadata(3, 4), broken.clone(), metadata(50, 60)].concat();
    assert_eq!(agrees_everywhere(&body), Some(usage(3, 0, 0, 4)));
    // Garbage where a prelude should be: the same.
    let body = [b"HTTP/1.1 200 OK\r\n\r\n".to_vec(), metadata(50, 60)].concat();
    assert_eq!(agrees_everywhere(&body), None);
}

#[test]
fn lengths_that_contradict_each_other_end_the_reading() {
    // A prelude with a right CRC but a total shorter than its overhead, or headers longer
    // than the message.
    let prelude = |total: u32, headers: u32| {
        let mut p = total.to_be_bytes().to_vec();
        p.extend_from_slice(&headers.to_be_bytes());
        p.extend_from_slice(&crc32fast::hash(&p).to_be_bytes());
        p
    };
    for (total, headers) in [(0, 0), (15, 0), (20, 5), (16, u32::MAX)] {
        let body = [prelude(total, headers), metadata(3, 4)].concat();
        assert_eq!(agrees_everywhere(&body), None, "{total} {headers}");
    }
}

#[test]
fn a_message_with_headers_over_the_bound_is_skipped_not_held() {
    let padding = "x".repeat(HEADERS_MAX);
    let oversized = message(
        &[
            ("x-padding", Value::Str(&padding)),
            (":event-type", Value::Str("metadata")),
        ],
        br#"{"usage":{"inputTokens":100}}"#,
    );
    assert_eq!(agrees_everywhere(&oversized), None);
    let body = [oversized, metadata(3, 4)].concat();
    assert_eq!(agrees_everywhere(&body), Some(usage(3, 0, 0, 4)));
    // Right at the bound, the headers are read.
    let name_and_type = ":event-type".len() + 1 + 1 + 2 + "metadata".len();
    let fill = "y".repeat(HEADERS_MAX - name_and_type - 1 - "x-fill".len() - 1 - 2);
    let at_bound = message(
        &[
            ("x-fill", Value::Str(&fill)),
            (":event-type", Value::Str("metadata")),
        ],
        br#"{"usage":{"inputTokens":7}}"#,
    );
    assert_eq!(
        at_bound.len() - 16 - br#"{"usage":{"inputTokens":7}}"#.len(),
        HEADERS_MAX
    );
    assert_eq!(found(&at_bound), Some(usage(7, 0, 0, 0)));
}

#[test]
fn long_messages_stream_through_in_bounded_memory() {
    // A 4 MiB text delta between two metadata events, in 16 KiB chunks: skipped by its
    // length, so nothing of it is kept.
    let long = delta(&"a".repeat(4 << 20));
    let body = [metadata(1, 2), long, metadata(3, 4)].concat();
    let chunks = body.chunks(16 * 1024);
    assert_eq!(
        scan(BodyFormat::AmazonEventStream, chunks).usage,
        Some(usage(3, 0, 0, 4))
    );
    // The decoder has no heap of its own: its size is its memory.
    let size = core::mem::size_of::<EventStreamDecoder>();
    println!("EventStreamDecoder is {size} bytes");
    assert!(size <= 1024, "{size} bytes");
}

#[test]
fn every_header_type_is_stepped_over() {
    let headers = [
        (":flag", Value::True),
        (":byte", Value::Byte(-1)),
        (":short", Value::Short(300)),
        (":int", Value::Int(-5)),
        (":long", Value::Long(1 << 40)),
        (":bytes", Value::Bytes(b"\x00\x07:event-type")),
        (":date", Value::Timestamp(1_700_000_000_000)),
        (":id", Value::Uuid([7; 16])),
        (":event-type", Value::Str("metadata")),
    ];
    let body = message(&headers, br#"{"usage":{"inputTokens":8,"outputTokens":9}}"#);
    assert_eq!(agrees_everywhere(&body), Some(usage(8, 0, 0, 9)));
    // A header of a type the encoding does not define hides what follows it: the message
    // is passed over, the next one read.
    let unknown = message(
        &[
            (":odd", Value::Unknown(10)),
            (":event-type", Value::Str("metadata")),
        ],
        br#"{"usage":{"inputTokens":8}}"#,
    );
    let body = [unknown, metadata(3, 4)].concat();
    assert_eq!(agrees_everywhere(&body), Some(usage(3, 0, 0, 4)));
}

#[test]
fn the_event_type_must_be_the_string_metadata() {
    let payload = br#"{"usage":{"inputTokens":8}}"#;
    for headers in [
        vec![(":event-type", Value::Bytes(b"metadata"))],
        vec![(":event-type", Value::Str("Metadata"))],
        vec![(":event-type", Value::Str("metadata "))],
        vec![(":event-typ", Value::Str("metadata"))],
        vec![(":message-type", Value::Str("metadata"))],
        vec![],
    ] {
        assert_eq!(agrees_everywhere(&message(&headers, payload)), None);
    }
}

#[test]
fn exceptions_and_empty_payloads_are_not_usage() {
    let throttled = message(
        &[
            (":exception-type", Value::Str("throttlingException")),
            (":content-type", Value::Str("application/json")),
            (":message-type", Value::Str("exception")),
        ],
        br#"{"message":"Too many requests, \"usage\":{\"inputTokens\":1}"}"#,
    );
    let empty = event("metadata", "");
    let body = [throttled, empty, metadata(3, 4)].concat();
    assert_eq!(agrees_everywhere(&body), Some(usage(3, 0, 0, 4)));
}

#[test]
fn a_stream_cut_inside_the_metadata_message_counts_nothing_of_it() {
    let first = metadata(3, 4);
    let body = [first.clone(), delta("hi"), metadata(50, 60)].concat();
    for cut in 0..body.len() {
        let want = if cut < first.len() {
            None
        } else {
            Some(usage(3, 0, 0, 4))
        };
        assert_eq!(found(&body[..cut]), want, "cut at {cut}");
    }
    assert_eq!(found(&body), Some(usage(50, 0, 0, 60)));
}

/// A message for the property test: an event of some type, possibly damaged.
fn piece() -> impl Strategy<Value = Vec<u8>> {
    let kind = prop_oneof![
        (0u64..1000, 0u64..1000).prop_map(|(i, o)| metadata(i, o)),
        Just(delta(r#""usage":{"inputTokens":1}"#)),
        Just(delta("plain text")),
        Just(event("messageStop", r#"{"stopReason":"end_turn"}"#)),
        Just(event(
            "metadata",
            r#"{"usage":{"cacheReadInputTokens":5,"cacheWriteInputTokens":6}}"#
        )),
        Just(event("metadata", r#"{"usage":{"inputTokens":"#)),
    ];
    (kind, 0u8..8, any::<prop::sample::Index>(), any::<u8>()).prop_map(
        |(mut bytes, damage, at, byte)| {
            let at = at.index(bytes.len());
            match damage {
                0 => bytes[at] ^= byte | 1,
                1 => {
                    bytes.remove(at);
                }
                2 => bytes.truncate(at),
                _ => {}
            }
            bytes
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn same_as_whole_message_reference_in_any_chunking(
        pieces in proptest::collection::vec(piece(), 0..8),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..10),
    ) {
        let body = pieces.concat();
        let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(body.len() + 1)).collect();
        cuts.sort_unstable();
        let whole = scan_all(&body);
        prop_assert_eq!(scan(BodyFormat::AmazonEventStream, split_at(&body, &cuts)), whole.clone());
        if let Some(reference) = try_scan_with_serde(BodyFormat::AmazonEventStream, &body) {
            prop_assert_eq!(whole, reference);
        }
    }
}
