//! The settings that decide how every path is metered: the stream-usage rewrite and its
//! bound, Azure deployment names, and the paths the operator lists as free.

use std::collections::BTreeMap;

use super::wire::WireConfig;
use super::ConfigError;

/// Largest `max_rewrite_body_bytes` accepted: a body up to it is held in Envoy and copied
/// into the VM, twice while it is rewritten.
pub const MAX_REWRITE_BODY_BYTES_LIMIT: u64 = 16 * 1024 * 1024;

/// How requests and responses without usage are metered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metering {
    /// Add `stream_options.include_usage` to OpenAI-shaped streaming requests.
    pub inject_stream_usage: bool,
    /// Largest request body read whole for that rewrite; larger ones pass unchanged.
    pub max_rewrite_body_bytes: u64,
    /// Azure OpenAI deployment name -> model.
    pub deployments: BTreeMap<String, String>,
    /// Paths whose responses without usage are not charged an estimate.
    pub free_paths: Vec<PathPattern>,
}

impl Default for Metering {
    fn default() -> Self {
        Self {
            inject_stream_usage: true,
            max_rewrite_body_bytes: 256 * 1024,
            deployments: BTreeMap::new(),
            free_paths: Vec::new(),
        }
    }
}

impl Metering {
    /// Whether a response to `path` (its query string ignored) goes uncharged when it
    /// carries no usage.
    pub fn is_free(&self, path: &str) -> bool {
        let path = path.split_once('?').map_or(path, |(path, _)| path);
        self.free_paths.iter().any(|pattern| pattern.matches(path))
    }
}

/// A path, where each `*` stands for any run of characters (`/` included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    /// The text between the stars, in order (one more than there are stars).
    parts: Vec<String>,
}

impl PathPattern {
    pub fn new(text: &str) -> Self {
        Self {
            parts: text.split('*').map(str::to_string).collect(),
        }
    }

    pub fn matches(&self, path: &str) -> bool {
        let Some((first, rest)) = self.parts.split_first() else {
            return false;
        };
        let Some(mut tail) = path.strip_prefix(first.as_str()) else {
            return false;
        };
        let Some((last, middle)) = rest.split_last() else {
            // No star: the whole path.
            return tail.is_empty();
        };
        // The leftmost place of each middle part leaves the most room for the rest.
        for part in middle {
            match tail.find(part.as_str()) {
                Some(at) => tail = tail.get(at.saturating_add(part.len())..).unwrap_or(""),
                None => return false,
            }
        }
        tail.ends_with(last.as_str())
    }
}

pub fn compile_metering(wire: &WireConfig) -> Result<Metering, ConfigError> {
    let bound = wire.max_rewrite_body_bytes;
    if bound == 0 || bound > MAX_REWRITE_BODY_BYTES_LIMIT {
        return Err(ConfigError::new(
            "max_rewrite_body_bytes",
            format!("{bound} must be between 1 and {MAX_REWRITE_BODY_BYTES_LIMIT}"),
        ));
    }
    for (deployment, model) in &wire.deployments {
        let path = format!("deployments[{deployment:?}]");
        if deployment.is_empty() {
            return Err(ConfigError::new(
                path,
                "a deployment name must not be empty",
            ));
        }
        if model.is_empty() {
            return Err(ConfigError::new(path, "the model must not be empty"));
        }
    }
    let mut free_paths = Vec::with_capacity(wire.free_paths.len());
    for (i, text) in wire.free_paths.iter().enumerate() {
        if !text.starts_with('/') || text.contains('?') {
            return Err(ConfigError::new(
                format!("free_paths[{i}]"),
                format!("{text:?} must be a path starting with '/', without a query string"),
            ));
        }
        free_paths.push(PathPattern::new(text));
    }
    Ok(Metering {
        inject_stream_usage: wire.inject_stream_usage,
        max_rewrite_body_bytes: bound,
        deployments: wire.deployments.clone(),
        free_paths,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_whole_paths_with_stars_for_any_run() {
        let exact = PathPattern::new("/v1/models");
        assert!(exact.matches("/v1/models"));
        assert!(!exact.matches("/v1/models/gpt-4o"));
        assert!(!exact.matches("/v1/model"));
        let prefix = PathPattern::new("/v1/models*");
        assert!(prefix.matches("/v1/models"));
        assert!(prefix.matches("/v1/models/gpt-4o"));
        let middle = PathPattern::new("/v1/responses/*/cancel");
        assert!(middle.matches("/v1/responses/resp_1/cancel"));
        assert!(middle.matches("/v1/responses/a/b/cancel"));
        assert!(!middle.matches("/v1/responses/resp_1"));
        assert!(!middle.matches("/v1/responses/cancel"));
        let two = PathPattern::new("/model/*/count-*");
        assert!(two.matches("/model/anthropic.claude%3A0/count-tokens"));
        assert!(!two.matches("/model/x/converse"));
        let overlap = PathPattern::new("/a*ab");
        assert!(overlap.matches("/aab"));
        assert!(!overlap.matches("/ab"));
        assert!(PathPattern::new("*").matches("/anything"));
    }

    #[test]
    fn free_paths_ignore_the_query_string() {
        let metering = Metering {
            free_paths: vec![PathPattern::new("/v1/models")],
            ..Metering::default()
        };
        assert!(metering.is_free("/v1/models?limit=5"));
        assert!(!metering.is_free("/v1/chat/completions"));
    }
}
