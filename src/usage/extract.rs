//! Which JSON paths carry usage, and how the providers' fields become a [`Usage`].
//!
//! The paths form a tiny tree of object [`Node`]s; [`child`] says what a key inside a node
//! leads to. Everything not named here is skipped by the tokenizer without being read.

use super::text::ModelName;
use super::Usage;

/// An object on a path that matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Node {
    /// The document itself.
    Root,
    /// `response` (OpenAI Responses events) or `message` (Anthropic `message_start`).
    Wrapper,
    /// A `usage` object (OpenAI chat, embeddings and Responses, Anthropic, Bedrock).
    Usage,
    /// `prompt_tokens_details` / `input_tokens_details` inside `usage`.
    Details,
    /// Anthropic's `cache_creation` inside `usage`: cache writes by lifetime.
    CacheCreation,
    /// Gemini's `usageMetadata`.
    Gemini,
    /// Gemini's `generationConfig` (request bodies).
    GenerationConfig,
}

/// What the value after a key is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// Irrelevant: skip it.
    Skip,
    /// An object worth descending into (anything else there is skipped).
    Object(Node),
    /// A token count (anything but a non-negative integer there is ignored).
    Count(Field),
    /// The model name (anything but a string there is ignored).
    Model,
}

/// A provider token-count field, before normalisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Field {
    /// OpenAI chat `prompt_tokens`: includes cached tokens.
    PromptTokens,
    /// OpenAI chat `completion_tokens`.
    CompletionTokens,
    /// Responses `input_tokens` (includes cached) or Anthropic `input_tokens` / Bedrock
    /// `inputTokens` (exclude caches); told apart by whether a `*_details.cached_tokens`
    /// was seen.
    InputTokens,
    /// Responses / Anthropic `output_tokens`, Bedrock `outputTokens`.
    OutputTokens,
    /// OpenAI `prompt_tokens_details.cached_tokens` / `input_tokens_details.cached_tokens`.
    DetailsCached,
    /// Anthropic `cache_read_input_tokens`, Bedrock `cacheReadInputTokens`.
    CacheRead,
    /// Anthropic `cache_creation_input_tokens`, Bedrock `cacheWriteInputTokens`: every
    /// cache write, whatever its lifetime.
    CacheCreation,
    /// Anthropic `cache_creation.ephemeral_1h_input_tokens`: the part of the cache writes
    /// that lives one hour (the rest, `ephemeral_5m_input_tokens`, is what remains of
    /// `cache_creation_input_tokens`, so it is not kept).
    CacheCreation1h,
    /// Gemini `promptTokenCount`: includes cached tokens.
    GeminiPrompt,
    /// Gemini `candidatesTokenCount`.
    GeminiCandidates,
    /// Gemini `thoughtsTokenCount`: thinking, billed as output.
    GeminiThoughts,
    /// Gemini `cachedContentTokenCount`.
    GeminiCached,
    /// Gemini `toolUsePromptTokenCount`: tool results given back to the model, billed as
    /// input and not part of `promptTokenCount`.
    GeminiToolUse,
    /// A request's output cap: `max_tokens`, `max_completion_tokens`, `max_output_tokens`
    /// or Gemini's `generationConfig.maxOutputTokens` (reservation estimates,
    /// docs/reservations.md).
    MaxOutput,
}

/// What the value of `key` inside `node` is. `events` adds the wrappers that only
/// server-sent events use; a plain JSON body counts its top-level `usage` only.
pub(crate) fn child(node: Node, key: &[u8], events: bool) -> Target {
    use Field::*;
    match (node, key) {
        (Node::Root, b"usage") | (Node::Wrapper, b"usage") => Target::Object(Node::Usage),
        (Node::Root, b"usageMetadata") => Target::Object(Node::Gemini),
        (Node::Root, b"model" | b"modelVersion") | (Node::Wrapper, b"model") => Target::Model,
        (Node::Root, b"response" | b"message") if events => Target::Object(Node::Wrapper),
        (Node::Root, b"max_tokens" | b"max_completion_tokens" | b"max_output_tokens") => {
            Target::Count(MaxOutput)
        }
        (Node::Root, b"generationConfig") => Target::Object(Node::GenerationConfig),
        (Node::GenerationConfig, b"maxOutputTokens") => Target::Count(MaxOutput),
        (Node::Usage, b"prompt_tokens") => Target::Count(PromptTokens),
        (Node::Usage, b"completion_tokens") => Target::Count(CompletionTokens),
        (Node::Usage, b"input_tokens") => Target::Count(InputTokens),
        (Node::Usage, b"output_tokens") => Target::Count(OutputTokens),
        (Node::Usage, b"cache_read_input_tokens") => Target::Count(CacheRead),
        (Node::Usage, b"cache_creation_input_tokens") => Target::Count(CacheCreation),
        (Node::Usage, b"prompt_tokens_details" | b"input_tokens_details") => {
            Target::Object(Node::Details)
        }
        (Node::Usage, b"cache_creation") => Target::Object(Node::CacheCreation),
        // Bedrock Converse: the same counts as Anthropic's, in camelCase.
        (Node::Usage, b"inputTokens") => Target::Count(InputTokens),
        (Node::Usage, b"outputTokens") => Target::Count(OutputTokens),
        (Node::Usage, b"cacheReadInputTokens") => Target::Count(CacheRead),
        (Node::Usage, b"cacheWriteInputTokens") => Target::Count(CacheCreation),
        (Node::Details, b"cached_tokens") => Target::Count(DetailsCached),
        (Node::CacheCreation, b"ephemeral_1h_input_tokens") => Target::Count(CacheCreation1h),
        (Node::Gemini, b"promptTokenCount") => Target::Count(GeminiPrompt),
        (Node::Gemini, b"candidatesTokenCount") => Target::Count(GeminiCandidates),
        (Node::Gemini, b"thoughtsTokenCount") => Target::Count(GeminiThoughts),
        (Node::Gemini, b"cachedContentTokenCount") => Target::Count(GeminiCached),
        (Node::Gemini, b"toolUsePromptTokenCount") => Target::Count(GeminiToolUse),
        _ => Target::Skip,
    }
}

/// Everything found so far; each field is last-one-wins, and absent until seen.
#[derive(Debug, Clone, Default)]
pub(crate) struct Collected {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    details_cached: Option<u64>,
    cache_read: Option<u64>,
    cache_creation: Option<u64>,
    cache_creation_1h: Option<u64>,
    gemini_prompt: Option<u64>,
    gemini_candidates: Option<u64>,
    gemini_thoughts: Option<u64>,
    gemini_cached: Option<u64>,
    gemini_tool_use: Option<u64>,
    max_output: Option<u64>,
    model: ModelName,
    /// The last top-level `model` member was not a usable name (not a string, empty, too
    /// long, not UTF-8). A response keeps its earlier name; a request is judged on it.
    model_unreadable: bool,
}

impl Collected {
    pub(crate) fn set_count(&mut self, field: Field, value: u64) {
        if field == Field::MaxOutput {
            // Several caps in one request: the largest bounds what may be generated.
            self.max_output = Some(self.max_output.map_or(value, |seen| seen.max(value)));
            return;
        }
        let slot = match field {
            Field::MaxOutput => return,
            Field::PromptTokens => &mut self.prompt_tokens,
            Field::CompletionTokens => &mut self.completion_tokens,
            Field::InputTokens => &mut self.input_tokens,
            Field::OutputTokens => &mut self.output_tokens,
            Field::DetailsCached => &mut self.details_cached,
            Field::CacheRead => &mut self.cache_read,
            Field::CacheCreation => &mut self.cache_creation,
            Field::CacheCreation1h => &mut self.cache_creation_1h,
            Field::GeminiPrompt => &mut self.gemini_prompt,
            Field::GeminiCandidates => &mut self.gemini_candidates,
            Field::GeminiThoughts => &mut self.gemini_thoughts,
            Field::GeminiCached => &mut self.gemini_cached,
            Field::GeminiToolUse => &mut self.gemini_tool_use,
        };
        *slot = Some(value);
    }

    pub(crate) fn set_model(&mut self, bytes: &[u8]) {
        self.model_unreadable = !self.model.set(bytes);
    }

    pub(crate) fn set_model_unreadable(&mut self) {
        self.model_unreadable = true;
    }

    /// Whether the last `model` member seen could not be read as a name.
    pub(crate) fn model_unreadable(&self) -> bool {
        self.model_unreadable
    }

    pub(crate) fn max_output(&self) -> Option<u64> {
        self.max_output
    }

    /// The model found so far, as its bytes.
    pub(crate) fn model_bytes(&self) -> Option<&[u8]> {
        self.model.bytes()
    }

    pub(crate) fn model(&self) -> Option<String> {
        self.model.get().map(str::to_owned)
    }

    /// Normalises whatever provider fields were seen; `None` if none were.
    pub(crate) fn usage(&self) -> Option<Usage> {
        let counts = [
            self.prompt_tokens,
            self.completion_tokens,
            self.input_tokens,
            self.output_tokens,
            self.details_cached,
            self.cache_read,
            self.cache_creation,
            self.cache_creation_1h,
            self.gemini_prompt,
            self.gemini_candidates,
            self.gemini_thoughts,
            self.gemini_cached,
            self.gemini_tool_use,
        ];
        if counts.iter().all(Option::is_none) {
            return None;
        }
        // One provider's fields appear in a real body; the `or` chains pick that provider.
        let cache_read = self
            .details_cached
            .or(self.cache_read)
            .or(self.gemini_cached)
            .unwrap_or(0);
        let (cache_write, cache_write_1h) = self.cache_writes();
        let input_uncached = if let Some(prompt) = self.prompt_tokens.or(self.gemini_prompt) {
            // OpenAI chat and Gemini prompt counts include the cached part; Gemini's
            // tool-use prompt is counted apart from the prompt and billed as input.
            prompt
                .saturating_sub(cache_read)
                .saturating_add(self.gemini_tool_use.unwrap_or(0))
        } else {
            match (self.input_tokens, self.details_cached) {
                // Responses: `input_tokens` includes `input_tokens_details.cached_tokens`.
                (Some(input), Some(cached)) => input.saturating_sub(cached),
                // Anthropic and Bedrock: the input count already excludes cache reads
                // and writes.
                (Some(input), None) => input,
                (None, _) => self.gemini_tool_use.unwrap_or(0),
            }
        };
        let output = match self.completion_tokens.or(self.output_tokens) {
            Some(output) => output,
            None => self
                .gemini_candidates
                .unwrap_or(0)
                .saturating_add(self.gemini_thoughts.unwrap_or(0)),
        };
        Some(Usage {
            input_uncached,
            cache_read,
            cache_write,
            cache_write_1h,
            output,
        })
    }

    /// Cache writes as (default lifetime, one hour). Anthropic's `cache_creation` tells how
    /// many of its `cache_creation_input_tokens` live one hour; the others live the default
    /// five minutes.
    fn cache_writes(&self) -> (u64, u64) {
        let total = self.cache_creation.unwrap_or(0);
        let one_hour = self.cache_creation_1h.unwrap_or(0);
        (total.saturating_sub(one_hour), one_hour)
    }
}
