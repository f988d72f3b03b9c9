//! Asking OpenAI-shaped streams for their usage: a chat or text completion streamed with
//! `"stream": true` reports token usage only when the request says
//! `"stream_options": {"include_usage": true}`, and a response without usage can only be
//! charged an estimate. So the filter adds that option to requests that lack it.
//!
//! The body is edited in place, never re-serialised: every byte outside the edit stays as
//! the client sent it (member order, spacing, escapes, number spellings). The top-level
//! members are read with serde_json, each value kept as a slice of the body
//! ([`RawValue`]), and the last `stream` and `stream_options` members count, as in the
//! upstream's parser:
//! - no `stream_options`: `,"stream_options":{"include_usage":true}` goes before the
//!   closing brace;
//! - an object without `include_usage`: `"include_usage":true` goes first in it;
//! - `include_usage` other than `true` (false, null...): its value becomes `true`;
//! - `stream_options` that is not an object (`null`): it becomes `{"include_usage":true}`.
//!
//! A body that is not a JSON object, or whose last `stream` is not `true`, or that already
//! asks for usage, is left alone.

use std::collections::BTreeMap;

use serde_json::value::RawValue;

/// Whether a `POST` to `path` is an OpenAI-shaped completion, whose stream carries usage
/// only when asked: chat completions and (legacy) completions, at OpenAI, Azure OpenAI's
/// deployments and OpenAI-compatible APIs alike. The Responses API, Anthropic's Messages
/// and Gemini report usage in every stream and refuse the option, so they are not.
pub fn is_completions_path(path: &str) -> bool {
    // Every request with a body asks: a vector search finds the query for a fraction of
    // what `split_once` (memchr) or a byte loop costs in wasm.
    let path = path.as_bytes();
    let end = crate::usage::positions(path, b'?', b'?')
        .next()
        .unwrap_or(path.len());
    path.get(..end)
        .is_some_and(|path| path.ends_with(b"/completions"))
}

/// `body` with `stream_options.include_usage` set to `true`, when it is a JSON object
/// whose last top-level `stream` is `true` and which does not ask for usage already;
/// `None` when it stays as it is.
pub fn with_usage_requested(body: &[u8]) -> Option<Vec<u8>> {
    // Most requests do not stream: a byte search spares them the parse.
    if !mentions_stream(body) {
        return None;
    }
    let text = std::str::from_utf8(body).ok()?;
    let members: Members<'_> = serde_json::from_str(text).ok()?;
    if members.get("stream").map(|value| value.get()) != Some("true") {
        return None;
    }
    let edit = match members.get("stream_options").copied() {
        None => {
            let close = text.trim_end().len().checked_sub(1)?;
            Edit::insert(close, r#","stream_options":{"include_usage":true}"#)
        }
        Some(options) if options.get().starts_with('{') => {
            let inner: Members<'_> = serde_json::from_str(options.get()).ok()?;
            match inner.get("include_usage").copied() {
                Some(value) if value.get() == "true" => return None,
                Some(value) => Edit::replace(span(text, value)?, "true"),
                None => {
                    let open = span(text, options)?.0.checked_add(1)?;
                    let member = if inner.is_empty() {
                        r#""include_usage":true"#
                    } else {
                        r#""include_usage":true,"#
                    };
                    Edit::insert(open, member)
                }
            }
        }
        Some(options) => Edit::replace(span(text, options)?, r#"{"include_usage":true}"#),
    };
    edit.apply(body)
}

/// Whether `body` has the bytes `"stream"` anywhere (a key of that name, or text). This
/// runs on every held completions body, so it is a vector search for a quote with an `m`
/// six bytes on (rare in JSON), the needle checked only there.
fn mentions_stream(body: &[u8]) -> bool {
    crate::usage::contains(body, b"\"stream\"", 6)
}

/// Where `value` (a slice of `text`, as serde_json hands out borrowed raw values) starts in
/// `text`, and its length.
fn span(text: &str, value: &RawValue) -> Option<(usize, usize)> {
    let inner = value.get();
    let start = (inner.as_ptr() as usize).checked_sub(text.as_ptr() as usize)?;
    let end = start.checked_add(inner.len())?;
    (text.get(start..end) == Some(inner)).then_some((start, inner.len()))
}

/// One change to the body: `removed` bytes at `at` replaced by `text`.
struct Edit {
    at: usize,
    removed: usize,
    text: &'static str,
}

impl Edit {
    fn insert(at: usize, text: &'static str) -> Self {
        Self {
            at,
            removed: 0,
            text,
        }
    }

    fn replace((at, removed): (usize, usize), text: &'static str) -> Self {
        Self { at, removed, text }
    }

    fn apply(&self, body: &[u8]) -> Option<Vec<u8>> {
        let head = body.get(..self.at)?;
        let tail = body.get(self.at.checked_add(self.removed)?..)?;
        let mut out = Vec::with_capacity(
            head.len()
                .saturating_add(self.text.len())
                .saturating_add(tail.len()),
        );
        out.extend_from_slice(head);
        out.extend_from_slice(self.text.as_bytes());
        out.extend_from_slice(tail);
        Some(out)
    }
}

/// A JSON object's members, values unparsed. A name given twice keeps its last value, the
/// one the upstream's parser keeps (the same map type the configuration is read with, so
/// the module carries one copy of that parser).
type Members<'a> = BTreeMap<String, &'a RawValue>;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn rewritten(body: &str) -> Option<String> {
        with_usage_requested(body.as_bytes()).map(|b| String::from_utf8(b).unwrap())
    }

    #[test]
    fn adds_the_option_before_the_closing_brace_keeping_every_byte() {
        let body = "{\"model\": \"gpt-4o-mini\",\n \"stream\": true, \"messages\": [{\"role\":\"user\",\"content\":\"h\\u00e9\"}], \"temperature\": 1.0e0 }\n";
        let out = rewritten(body).unwrap();
        assert_eq!(
            out,
            "{\"model\": \"gpt-4o-mini\",\n \"stream\": true, \"messages\": [{\"role\":\"user\",\"content\":\"h\\u00e9\"}], \"temperature\": 1.0e0 ,\"stream_options\":{\"include_usage\":true}}\n"
        );
    }

    #[test]
    fn completes_or_corrects_existing_stream_options() {
        let cases = [
            (
                r#"{"stream":true,"stream_options":{}}"#,
                r#"{"stream":true,"stream_options":{"include_usage":true}}"#,
            ),
            (
                r#"{"stream":true,"stream_options":{ "include_obfuscation": false }}"#,
                r#"{"stream":true,"stream_options":{"include_usage":true, "include_obfuscation": false }}"#,
            ),
            (
                r#"{"stream":true,"stream_options":{"include_usage": false}}"#,
                r#"{"stream":true,"stream_options":{"include_usage": true}}"#,
            ),
            (
                r#"{"stream":true,"stream_options":{"include_usage":null,"x":1}}"#,
                r#"{"stream":true,"stream_options":{"include_usage":true,"x":1}}"#,
            ),
            (
                r#"{"stream_options":null,"stream":true}"#,
                r#"{"stream_options":{"include_usage":true},"stream":true}"#,
            ),
            // The last duplicate is the one that counts, and the one edited.
            (
                r#"{"stream":true,"stream_options":{"include_usage":true},"stream_options":{"include_usage":false}}"#,
                r#"{"stream":true,"stream_options":{"include_usage":true},"stream_options":{"include_usage":true}}"#,
            ),
        ];
        for (body, want) in cases {
            assert_eq!(rewritten(body).as_deref(), Some(want), "{body}");
        }
    }

    #[test]
    fn leaves_alone_what_is_not_a_stream_missing_usage() {
        for body in [
            r#"{"model":"gpt-4o-mini","messages":[]}"#,
            r#"{"stream":false}"#,
            r#"{"stream":"true"}"#,
            r#"{"stream":true,"stream":false}"#,
            r#"{"stream":true,"stream_options":{"include_usage":true}}"#,
            r#"{"stream":true,"stream_options":{"include_usage":false},"stream_options":{"include_usage":true}}"#,
            r#"{"messages":[{"content":"\"stream\": true"}]}"#,
            r#"{"messages":[{"stream":true}]}"#,
            r#"[{"stream":true}]"#,
            r#"{"stream":true"#,
            r#"{"stream":true} trailing"#,
            "",
        ] {
            assert_eq!(rewritten(body), None, "{body}");
        }
        assert_eq!(
            with_usage_requested(b"{\"stream\":true,\"x\":\"\xff\"}"),
            None
        );
    }

    #[test]
    fn member_names_with_escapes_are_read_as_the_upstream_reads_them() {
        let out = rewritten(r#"{"stream":true,"stream_\u006fptions":{"x":1}}"#).unwrap();
        let parsed: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            parsed["stream_options"],
            json!({"include_usage": true, "x": 1})
        );
        // `"stream"` itself spelled with an escape is not looked for (the byte search that
        // spares most requests the parse): such a stream comes back without usage and is
        // charged the estimate of a response without usage.
        assert_eq!(rewritten(r#"{"str\u0065am":true}"#), None);
    }

    #[test]
    fn the_result_parses_to_the_same_document_plus_the_option() {
        let body = json!({"model":"m","stream":true,"n":2,"tools":[{"type":"function"}],
            "stream_options":{"include_obfuscation":true}});
        let out = with_usage_requested(body.to_string().as_bytes()).unwrap();
        let mut want = body.clone();
        want["stream_options"]["include_usage"] = json!(true);
        assert_eq!(serde_json::from_slice::<Value>(&out).unwrap(), want);
    }

    #[test]
    fn the_byte_search_finds_the_needle_at_every_offset_and_nothing_else() {
        for pad in 0..20 {
            let found = format!("{}\"stream\"{}", "x".repeat(pad), "y".repeat(pad % 7));
            assert!(mentions_stream(found.as_bytes()), "{found}");
            for near in [
                "\"streams\"",
                "stream\"",
                "\"strea\"",
                "\"Stream\"",
                "mmmmmmmm",
            ] {
                let text = format!("{}{near}{}", "m".repeat(pad), "x".repeat(pad % 5));
                assert!(!mentions_stream(text.as_bytes()), "{text}");
            }
        }
        assert!(!mentions_stream(b""));
        assert!(mentions_stream(b"\"stream\""));
    }

    #[test]
    fn completions_paths() {
        for path in [
            "/v1/chat/completions",
            "/v1/completions",
            "/openai/deployments/d/chat/completions?api-version=2024-10-21",
            "/api/v1/chat/completions",
        ] {
            assert!(is_completions_path(path), "{path}");
        }
        for path in [
            "/v1/responses",
            "/v1/messages",
            "/v1/chat/completions/abc",
            "/v1/embeddings",
        ] {
            assert!(!is_completions_path(path), "{path}");
        }
    }
}
