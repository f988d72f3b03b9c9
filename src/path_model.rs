//! The model (and the provider) that a request's path names, for the APIs that address a
//! model by URL instead of (or as well as) in the body, so the model rules, pricing and
//! provider limits apply at request headers, before anything goes upstream.
//!
//! Path shapes, from each provider's public API reference:
//! - Gemini API (Google AI for developers, "Gemini API reference"):
//!   `/v1beta/models/{model}:{action}` (and `/v1/models/...`), provider `gemini`.
//! - Vertex AI (Google Cloud, REST resource `projects.locations.publishers.models`, and
//!   "Use Claude models" for Anthropic's models on Vertex):
//!   `.../publishers/{google|anthropic}/models/{model}:{action}` with the actions
//!   `generateContent`, `streamGenerateContent`, `rawPredict`, `streamRawPredict`, provider
//!   `vertex_ai`.
//! - Azure OpenAI (Microsoft Learn, "Azure OpenAI REST API reference", data plane
//!   inference): `/openai/deployments/{deployment-id}/{operation}`, provider `azure`. The
//!   deployment is an operator's name, mapped to a model by the configuration's
//!   `deployments` table, else taken as the model name.
//! - Amazon Bedrock (Amazon Bedrock API Reference, runtime actions Converse,
//!   ConverseStream, InvokeModel, InvokeModelWithResponseStream, CountTokens):
//!   `/model/{modelId}/{converse|converse-stream|invoke|invoke-with-response-stream|count-tokens}`,
//!   provider `bedrock`. SDKs percent-encode the model id (`v1%3A0`, an ARN's `/` as `%2F`).
//!
//! The provider names are LiteLLM's, the names operators already use in `provider_configs`.
//! The Gemini path must start the path; the others may follow a prefix of the operator's
//! routes (`/azure/openai/deployments/...`). Segments are percent-decoded; a model that does
//! not decode to UTF-8 is [`PathModel::Unreadable`].

use std::borrow::Cow;
use std::collections::BTreeMap;

use percent_encoding::percent_decode_str;

use crate::usage::positions;

/// What a path says about its model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathModel {
    /// The path names no model.
    None,
    /// The path names this model, served by this provider.
    Named {
        provider: &'static str,
        model: String,
        /// Bedrock: the response may report its token counts in headers (InvokeModel).
        bedrock: bool,
    },
    /// The path has a model's place, but what is there is not a name (not UTF-8 once
    /// percent-decoded, or empty).
    Unreadable,
}

/// Gemini API's provider name.
pub const GEMINI: &str = "gemini";
/// Vertex AI's provider name.
pub const VERTEX_AI: &str = "vertex_ai";
/// Azure OpenAI's provider name.
pub const AZURE: &str = "azure";
/// Amazon Bedrock's provider name.
pub const BEDROCK: &str = "bedrock";

const VERTEX_PUBLISHERS: [&str; 2] = ["google", "anthropic"];
const VERTEX_ACTIONS: [&str; 4] = [
    "generateContent",
    "streamGenerateContent",
    "rawPredict",
    "streamRawPredict",
];
const BEDROCK_ACTIONS: [&str; 5] = [
    "converse",
    "converse-stream",
    "invoke",
    "invoke-with-response-stream",
    "count-tokens",
];

/// The model `path` (query string included or not) names; `deployments` maps Azure
/// deployment names to models.
pub fn path_model(path: &str, deployments: &BTreeMap<String, String>) -> PathModel {
    // Every request pays for this, and most paths (`/v1/chat/completions`) name no model:
    // the `/`s up to the query are found with a vector search (a byte loop costs about
    // twenty instructions a byte in wasm), comparing only after a `/` followed by the first
    // letter of a shape.
    let bytes = path.as_bytes();
    let mut end = None;
    for at in positions(bytes, b'/', b'?') {
        let from = at.saturating_add(1);
        let next = bytes.get(from).copied();
        match (next, at) {
            _ if bytes.get(at) == Some(&b'?') => break,
            (Some(b'v'), 0) | (Some(b'p' | b'o' | b'm'), _) => {}
            _ => continue,
        }
        // What follows, without the query (cut at an ASCII byte, a character boundary).
        let end =
            *end.get_or_insert_with(|| positions(bytes, b'?', b'?').next().unwrap_or(bytes.len()));
        let rest = path.get(from..end).unwrap_or_default();
        let found = match next {
            // Gemini's shape only starts a path; the others may follow a route's prefix.
            Some(b'v') if at == 0 => gemini(rest),
            Some(b'p') => rest.strip_prefix("publishers/").and_then(vertex),
            Some(b'o') => rest
                .strip_prefix("openai/deployments/")
                .and_then(|rest| azure(rest, deployments)),
            Some(b'm') => rest.strip_prefix("model/").and_then(bedrock),
            _ => None,
        };
        if let Some(found) = found {
            return found;
        }
    }
    PathModel::None
}

/// After the leading `/`: `v1beta/models/{model}:{action}` or `v1/models/{model}:{action}`.
fn gemini(path: &str) -> Option<PathModel> {
    let rest = path
        .strip_prefix("v1beta/models/")
        .or_else(|| path.strip_prefix("v1/models/"))?;
    let (model, action) = rest.split_once(':')?;
    if action.is_empty() || model.contains('/') {
        return None;
    }
    Some(named(GEMINI, model, false))
}

/// After `.../publishers/`: `{google|anthropic}/models/{model}:{action}`.
fn vertex(rest: &str) -> Option<PathModel> {
    let (publisher, rest) = rest.split_once('/')?;
    let rest = rest.strip_prefix("models/")?;
    let (model, action) = rest.rsplit_once(':')?;
    if !VERTEX_PUBLISHERS.contains(&publisher)
        || !VERTEX_ACTIONS.contains(&action)
        || model.contains('/')
    {
        return None;
    }
    Some(named(VERTEX_AI, model, false))
}

/// After `.../openai/deployments/`: `{deployment}/{operation...}`.
fn azure(rest: &str, deployments: &BTreeMap<String, String>) -> Option<PathModel> {
    let (deployment, operation) = rest.split_once('/')?;
    if operation.is_empty() {
        return None;
    }
    let Some(deployment) = decode(deployment) else {
        return Some(PathModel::Unreadable);
    };
    let model = deployments
        .get(deployment.as_ref())
        .map_or(deployment.as_ref(), String::as_str);
    Some(PathModel::Named {
        provider: AZURE,
        model: model.to_string(),
        bedrock: false,
    })
}

/// After `.../model/`: `{modelId}/{action}`. The action is the last segment, so a model id
/// whose `/` were left unencoded (an ARN) is still read whole.
fn bedrock(rest: &str) -> Option<PathModel> {
    let (model, action) = rest.rsplit_once('/')?;
    if !BEDROCK_ACTIONS.contains(&action) {
        return None;
    }
    Some(named(BEDROCK, model, true))
}

fn named(provider: &'static str, raw: &str, bedrock: bool) -> PathModel {
    match decode(raw) {
        Some(model) => PathModel::Named {
            provider,
            model: model.into_owned(),
            bedrock,
        },
        None => PathModel::Unreadable,
    }
}

/// A path segment percent-decoded; `None` when empty or not UTF-8.
fn decode(raw: &str) -> Option<Cow<'_, str>> {
    let decoded = percent_decode_str(raw).decode_utf8().ok()?;
    (!decoded.is_empty()).then_some(decoded)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(path: &str) -> PathModel {
        let deployments = BTreeMap::from([("prod-4o".to_string(), "gpt-4o".to_string())]);
        path_model(path, &deployments)
    }

    fn named(provider: &'static str, model: &str, bedrock: bool) -> PathModel {
        PathModel::Named {
            provider,
            model: model.to_string(),
            bedrock,
        }
    }

    #[test]
    fn gemini_paths() {
        assert_eq!(
            model("/v1beta/models/gemini-2.5-flash:generateContent"),
            named(GEMINI, "gemini-2.5-flash", false)
        );
        assert_eq!(
            model("/v1/models/gemini-2.5-pro:streamGenerateContent?alt=sse"),
            named(GEMINI, "gemini-2.5-pro", false)
        );
        assert_eq!(model("/v1beta/models/gemini-2.5-flash"), PathModel::None);
        assert_eq!(model("/v1beta/models/x:"), PathModel::None);
        assert_eq!(
            model("/v1beta/models/:generateContent"),
            PathModel::Unreadable
        );
        assert_eq!(model("/v1/models"), PathModel::None);
    }

    #[test]
    fn vertex_paths_for_google_and_anthropic_models() {
        let google = "/v1/projects/p-1/locations/us-central1/publishers/google/models/gemini-2.5-flash:streamGenerateContent?alt=sse";
        assert_eq!(model(google), named(VERTEX_AI, "gemini-2.5-flash", false));
        let claude = "/v1/projects/p/locations/global/publishers/anthropic/models/claude-sonnet-4-5@20250929:rawPredict";
        assert_eq!(
            model(claude),
            named(VERTEX_AI, "claude-sonnet-4-5@20250929", false)
        );
        let encoded = "/v1/projects/p/locations/us-east5/publishers/anthropic/models/claude-sonnet-4-5%4020250929:streamRawPredict";
        assert_eq!(
            model(encoded),
            named(VERTEX_AI, "claude-sonnet-4-5@20250929", false)
        );
        // Another publisher or action is not one of the shapes metered here.
        assert_eq!(
            model("/v1/projects/p/locations/l/publishers/meta/models/llama:rawPredict"),
            PathModel::None
        );
        assert_eq!(
            model("/v1/projects/p/locations/l/publishers/google/models/gemini:countTokens"),
            PathModel::None
        );
    }

    #[test]
    fn azure_deployments_map_to_models_or_name_themselves() {
        assert_eq!(
            model("/openai/deployments/prod-4o/chat/completions?api-version=2024-10-21"),
            named(AZURE, "gpt-4o", false)
        );
        assert_eq!(
            model("/azure/openai/deployments/team%20mini/embeddings"),
            named(AZURE, "team mini", false)
        );
        assert_eq!(model("/openai/deployments/prod-4o"), PathModel::None);
        assert_eq!(model("/openai/deployments/prod-4o/"), PathModel::None);
        assert_eq!(
            model("/openai/deployments/%FF/chat/completions"),
            PathModel::Unreadable
        );
    }

    #[test]
    fn bedrock_model_ids_are_percent_decoded() {
        assert_eq!(
            model("/model/anthropic.claude-sonnet-4-5-20250929-v1%3A0/converse-stream"),
            named(BEDROCK, "anthropic.claude-sonnet-4-5-20250929-v1:0", true)
        );
        assert_eq!(
            model("/model/us.amazon.nova-pro-v1:0/invoke"),
            named(BEDROCK, "us.amazon.nova-pro-v1:0", true)
        );
        let arn = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-sonnet-4-5-20250929-v1:0";
        let encoded = format!(
            "/model/{}/converse",
            arn.replace(':', "%3A").replace('/', "%2F")
        );
        assert_eq!(model(&encoded), named(BEDROCK, arn, true));
        assert_eq!(
            model(&format!("/model/{arn}/invoke-with-response-stream")),
            named(BEDROCK, arn, true)
        );
        assert_eq!(model("/model/x/unknown-action"), PathModel::None);
        assert_eq!(model("/model//converse"), PathModel::Unreadable);
        assert_eq!(model("/model/%C3%28/converse"), PathModel::Unreadable);
    }

    #[test]
    fn paths_without_a_model_place() {
        for path in [
            "/v1/chat/completions",
            "/v1/messages",
            "/v1/responses/resp_1",
            "/",
            "",
            "/v1/models/gpt-4o",
        ] {
            assert_eq!(model(path), PathModel::None, "{path}");
        }
    }
}
