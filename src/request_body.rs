//! Reads what the filter needs from a request's JSON body as the body streams through: the
//! top-level `"model"`, and for reservation estimates (SPEC.md §8) the body's size and its
//! output cap (`max_tokens`, `max_completion_tokens`, `max_output_tokens`,
//! `generationConfig.maxOutputTokens`).
//!
//! The request is never held back for this: each frame is scanned and passed on. The
//! scanner is the response-usage scanner in JSON mode, with the same bounded state.

use crate::usage::{BodyFormat, UsageScanner};

/// Streams a request body and reports its top-level `"model"` once it has been read whole.
pub struct RequestSniffer {
    scanner: UsageScanner,
    body_bytes: u64,
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
    /// A sniffer for the model alone: it stops reading the body once the model is read
    /// (sizes are still counted; output caps after the model are not seen).
    pub fn model_only() -> Self {
        Self {
            scanner: UsageScanner::model_only(),
            body_bytes: 0,
        }
    }

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

    pub fn model(&self) -> Option<String> {
        self.scanner.model()
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
                sniffer.model().as_deref(),
                Some("gpt-4o-mini"),
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

    #[test]
    fn a_model_only_sniffer_finds_the_model_wherever_it_is() {
        let filler = "z".repeat(5_000);
        let bodies = [
            format!(
                r#"{{"model":"gpt-4o-mini","messages":[{{"content":"{filler}"}}],"max_tokens":9}}"#
            ),
            format!(
                r#"{{"messages":[{{"content":"{filler}","model":"no"}}],"model":"gpt-4o-mini"}}"#
            ),
        ];
        for body in bodies {
            for chunk_size in [1usize, 5, 4096] {
                let mut sniffer = RequestSniffer::model_only();
                for chunk in body.as_bytes().chunks(chunk_size) {
                    sniffer.feed(chunk);
                }
                assert_eq!(sniffer.model().as_deref(), Some("gpt-4o-mini"));
                assert_eq!(sniffer.body_bytes(), body.len() as u64);
            }
        }
    }

    #[test]
    fn no_model_in_a_non_json_body() {
        let mut sniffer = RequestSniffer::default();
        sniffer.feed(b"model=gpt-4o");
        assert_eq!(sniffer.model(), None);
    }
}
