//! Finds the model a request names in its JSON body, as the body streams through.
//!
//! The request is never held back for this: each frame is scanned and passed on. The
//! scanner is the response-usage scanner in JSON mode, which tracks the top-level `model`
//! member and nothing else of a request body, with the same bounded state.

use crate::usage::{BodyFormat, UsageScanner};

/// Streams a request body and reports its top-level `"model"` once it has been read whole.
pub struct RequestSniffer {
    scanner: UsageScanner,
}

impl Default for RequestSniffer {
    fn default() -> Self {
        Self {
            scanner: UsageScanner::new(BodyFormat::Json),
        }
    }
}

impl RequestSniffer {
    pub fn feed(&mut self, chunk: &[u8]) {
        self.scanner.feed(chunk);
    }

    pub fn model(&self) -> Option<String> {
        self.scanner.result().model
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
    fn no_model_in_a_non_json_body() {
        let mut sniffer = RequestSniffer::default();
        sniffer.feed(b"model=gpt-4o");
        assert_eq!(sniffer.model(), None);
    }
}
