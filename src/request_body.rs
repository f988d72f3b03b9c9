//! Reads what the filter needs from a request's JSON body as the body streams through: the
//! top-level `"model"`, and for reservation estimates the body's size and its output cap
//! (`max_tokens`, `max_completion_tokens`, `max_output_tokens`,
//! `generationConfig.maxOutputTokens`).
//!
//! The model is the LAST top-level `"model"` member, as the upstream's JSON parser reads a
//! body that names it twice, so it is known only once the body has been read whole; a
//! duplicate can never slip a blocked or unpriced model past the rules. Members named
//! `model` inside messages, tools or any other nested object never count.
//!
//! The request is never held back for this: each frame is scanned and passed on. The
//! scanner is the response-usage scanner in JSON mode, with the same bounded state.

use crate::usage::{BodyFormat, UsageScanner};

/// Streams a request body and reports its top-level `"model"` once it has been read whole.
pub struct RequestSniffer {
    scanner: UsageScanner,
    body_bytes: u64,
}

/// The model a request body names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyModel {
    /// No top-level `"model"` member (or not a JSON object).
    Absent,
    /// The last top-level `"model"`.
    Named(String),
    /// The last top-level `"model"` is not a name the filter can read: not a string, empty,
    /// longer than the longest model name kept, or not UTF-8.
    Unreadable,
}

impl Default for RequestSniffer {
    fn default() -> Self {
        Self {
            scanner: UsageScanner::new(BodyFormat::Json),
            body_bytes: 0,
        }
    }
}

impl RequestSniffer {
    pub fn feed(&mut self, chunk: &[u8]) {
        self.scanner.feed(chunk);
        let len = u64::try_from(chunk.len()).unwrap_or(u64::MAX);
        self.body_bytes = self.body_bytes.saturating_add(len);
    }

    /// Bytes fed so far.
    pub fn body_bytes(&self) -> u64 {
        self.body_bytes
    }

    /// The largest output cap the body names so far.
    pub fn max_output_tokens(&self) -> Option<u64> {
        self.scanner.requested_output_tokens()
    }

    /// The model named so far; final once the whole body has been fed.
    pub fn model(&self) -> BodyModel {
        if self.scanner.model_unreadable() {
            return BodyModel::Unreadable;
        }
        match self.scanner.model() {
            Some(name) => BodyModel::Named(name),
            None => BodyModel::Absent,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_model_after_a_large_messages_array_split_anywhere() {
        let filler = "x".repeat(200_000);
        let body = format!(
            r#"{{"messages":[{{"role":"user","content":"{filler} \"model\": \"fake\""}}],"model":"gpt-4o-mini","max_tokens":5}}"#
        );
        for chunk_size in [1usize, 7, 4096, 65536] {
            let mut sniffer = RequestSniffer::default();
            for chunk in body.as_bytes().chunks(chunk_size) {
                sniffer.feed(chunk);
            }
            assert_eq!(
                sniffer.model(),
                BodyModel::Named("gpt-4o-mini".into()),
                "chunk size {chunk_size}"
            );
        }
    }

    #[test]
    fn reads_every_output_cap_variant_and_counts_bytes_split_anywhere() {
        let filler = "y".repeat(10_000);
        let bodies = [
            (
                format!(
                    r#"{{"model":"m","messages":[{{"content":"{filler}"}}],"max_tokens":300}}"#
                ),
                Some(300),
            ),
            (
                format!(r#"{{"max_completion_tokens":77,"input":"{filler}"}}"#),
                Some(77),
            ),
            (
                format!(r#"{{"input":"{filler}","max_output_tokens":12}}"#),
                Some(12),
            ),
            (
                format!(
                    r#"{{"contents":[{{"parts":[{{"text":"{filler}"}}]}}],"generationConfig":{{"temperature":0.2,"maxOutputTokens":2048}}}}"#
                ),
                Some(2048),
            ),
            // Both caps: the larger bounds the output.
            (
                format!(r#"{{"max_tokens":10,"max_completion_tokens":20,"x":"{filler}"}}"#),
                Some(20),
            ),
            // Only top-level caps count; one inside a message or a tool schema does not.
            (
                format!(
                    r#"{{"messages":[{{"max_tokens":999,"content":"{filler} "max_tokens":5"}}]}}"#
                ),
                None,
            ),
            (
                r#"{"tools":[{"parameters":{"maxOutputTokens":7}}],"max_tokens":null}"#.to_string(),
                None,
            ),
            (r#"{"max_tokens":-4}"#.to_string(), None),
        ];
        for (body, expected) in bodies {
            for chunk_size in [1usize, 3, 1000, 1 << 20] {
                let mut sniffer = RequestSniffer::default();
                for chunk in body.as_bytes().chunks(chunk_size) {
                    sniffer.feed(chunk);
                }
                assert_eq!(
                    sniffer.max_output_tokens(),
                    expected,
                    "{chunk_size}: {body:.80}"
                );
                assert_eq!(sniffer.body_bytes(), body.len() as u64);
            }
        }
    }

    fn sniff(body: &str, chunk_size: usize) -> RequestSniffer {
        let mut sniffer = RequestSniffer::default();
        for chunk in body.as_bytes().chunks(chunk_size) {
            sniffer.feed(chunk);
        }
        assert_eq!(sniffer.body_bytes(), body.len() as u64);
        sniffer
    }

    #[test]
    fn the_last_top_level_model_counts_and_nested_ones_never() {
        let filler = "z".repeat(5_000);
        let named = |name: &str| BodyModel::Named(name.to_string());
        let long = "m".repeat(crate::usage::MODEL_MAX_BYTES + 1);
        let cases = [
            (
                format!(
                    r#"{{"model":"gpt-4o-mini","messages":[{{"content":"{filler}"}}],"max_tokens":9}}"#
                ),
                named("gpt-4o-mini"),
            ),
            (
                format!(
                    r#"{{"messages":[{{"content":"{filler}","model":"no"}}],"model":"gpt-4o-mini"}}"#
                ),
                named("gpt-4o-mini"),
            ),
            (
                format!(
                    r#"{{"model":"gpt-4o-mini","messages":[{{"content":"{filler}"}}],"model":"gpt-4.1"}}"#
                ),
                named("gpt-4.1"),
            ),
            (
                r#"{"model":"gpt-4.1","messages":[],"model":"gpt-4o-mini","tools":[{"model":"x"}]}"#
                    .to_string(),
                named("gpt-4o-mini"),
            ),
            (r#"{"model":"gpt-4.1"}"#.to_string(), named("gpt-4.1")),
            (
                format!(r#"{{"model":"ok","x":"{filler}","model":null}}"#),
                BodyModel::Unreadable,
            ),
            (
                r#"{"model":"ok","model":["gpt-4.1"]}"#.to_string(),
                BodyModel::Unreadable,
            ),
            (
                r#"{"model":"ok","model":7}"#.to_string(),
                BodyModel::Unreadable,
            ),
            (
                r#"{"model":"ok","model":""}"#.to_string(),
                BodyModel::Unreadable,
            ),
            (
                format!(r#"{{"model":"ok","model":"{long}"}}"#),
                BodyModel::Unreadable,
            ),
            (format!(r#"{{"model":"{long}","model":"ok"}}"#), named("ok")),
            (
                format!(r#"{{"messages":[{{"content":"{filler}"}}]}}"#),
                BodyModel::Absent,
            ),
            ("model=gpt-4o".to_string(), BodyModel::Absent),
        ];
        for (body, expected) in cases {
            for chunk_size in [1usize, 5, 4096, 1 << 20] {
                assert_eq!(
                    sniff(&body, chunk_size).model(),
                    expected,
                    "{chunk_size}: {body:.90}"
                );
            }
        }
    }
}
