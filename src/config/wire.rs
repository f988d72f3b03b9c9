//! The plugin configuration as written by the operator (docs/configuration.md): serde types only.
//!
//! Every struct refuses unknown fields, except a pricing entry, which accepts the other fields
//! of the LiteLLM price list so entries can be pasted from it (`prices.rs` applies or refuses
//! the prices among them and ignores the rest). Defaults live in named functions so each is
//! written once. Meaning is checked later, in `compile`.

use std::collections::BTreeMap;

use serde::de::IgnoredAny;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireConfig {
    #[serde(default = "default_namespace")]
    pub namespace: String,
    #[serde(default)]
    pub mode: Mode,
    #[serde(default)]
    pub failure_mode: FailureMode,
    #[serde(default = "default_timezone")]
    pub timezone: String,
    #[serde(default = "default_key_headers")]
    pub virtual_key_headers: Vec<String>,
    #[serde(default = "yes")]
    pub require_virtual_key: bool,
    #[serde(default = "yes")]
    pub strip_virtual_key: bool,
    #[serde(default = "default_provider_header")]
    pub provider_header: String,
    #[serde(default = "yes")]
    pub require_pricing: bool,
    #[serde(default = "yes")]
    pub response_headers: bool,
    #[serde(default)]
    pub usage_endpoint: Option<WireUsageEndpoint>,
    /// Model name -> a [`WirePrice`], read entry by entry in `compile` so that an error
    /// names the entry (`pricing["gpt-4o"].input_cost_per_token`).
    #[serde(default)]
    pub pricing: BTreeMap<String, serde_json::Value>,
    // The owners' entries are read one at a time (`document.rs`); these fields only see a
    // list that is not an array (`null`, a number...), to refuse it as serde always did.
    #[serde(default)]
    pub customers: Vec<IgnoredAny>,
    #[serde(default)]
    pub teams: Vec<IgnoredAny>,
    #[serde(default)]
    pub virtual_keys: Vec<IgnoredAny>,
    #[serde(default)]
    pub reservation: Option<WireReservation>,
    #[serde(default)]
    pub fleet: Option<crate::fleet::WireFleet>,
    #[serde(default = "yes")]
    pub inject_stream_usage: bool,
    #[serde(default = "default_max_rewrite_body_bytes")]
    pub max_rewrite_body_bytes: u64,
    /// Azure OpenAI deployment name -> model name.
    #[serde(default)]
    pub deployments: BTreeMap<String, String>,
    #[serde(default)]
    pub free_paths: Vec<String>,
    /// Write what each exchange was charged as Envoy filter state (`filter_state.rs`).
    #[serde(default)]
    pub filter_state: bool,
    #[serde(default)]
    pub alerts: Option<WireAlerts>,
}

/// `alerts` (`config/alerts.rs`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireAlerts {
    pub thresholds: Vec<f64>,
    #[serde(default)]
    pub cluster: Option<String>,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub timeout_ms: Option<u32>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    #[default]
    Enforce,
    Shadow,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureMode {
    #[default]
    Closed,
    Open,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireUsageEndpoint {
    pub path: String,
    #[serde(default)]
    pub admin_key_sha256: Option<String>,
}

/// A price-list entry in the LiteLLM shape. Its other fields are kept in `other`, where
/// `compile` finds the long-context tiers (`*_above_<N>k_tokens`), refuses any other price
/// (a field whose name has `cost` in it) and ignores the rest (`max_tokens`, `mode`, ...).
#[derive(Debug, Deserialize)]
pub struct WirePrice {
    pub input_cost_per_token: f64,
    pub output_cost_per_token: f64,
    #[serde(default)]
    pub cache_read_input_token_cost: Option<f64>,
    #[serde(default)]
    pub cache_creation_input_token_cost: Option<f64>,
    /// Cache writes that live one hour (LiteLLM's name).
    #[serde(default)]
    pub cache_creation_input_token_cost_above_1hr: Option<f64>,
    #[serde(default)]
    pub input_cost_per_request: Option<f64>,
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

// Customers, teams and keys repeat their limit fields (`budgets`, `rate_limit`,
// `calendar_aligned`, `timezone`) instead of sharing a flattened struct: serde cannot combine
// `flatten` with `deny_unknown_fields`, and refusing unknown fields matters more here.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireCustomer {
    pub id: String,
    #[serde(default)]
    pub budgets: Vec<WireBudget>,
    #[serde(default)]
    pub rate_limit: Option<WireRateLimit>,
    /// Per-model limits beside the owner's own (docs/configuration.md).
    #[serde(default)]
    pub model_configs: Vec<WireModelConfig>,
    #[serde(default)]
    pub calendar_aligned: Option<bool>,
    #[serde(default)]
    pub timezone: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireTeam {
    pub id: String,
    #[serde(default)]
    pub customer_id: Option<String>,
    #[serde(default)]
    pub budgets: Vec<WireBudget>,
    #[serde(default)]
    pub rate_limit: Option<WireRateLimit>,
    /// Per-model limits beside the owner's own (docs/configuration.md).
    #[serde(default)]
    pub model_configs: Vec<WireModelConfig>,
    /// Limits for each value of a request header, inside the owner's.
    #[serde(default)]
    pub per_value: Option<WirePerValue>,
    #[serde(default)]
    pub calendar_aligned: Option<bool>,
    #[serde(default)]
    pub timezone: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireVirtualKey {
    pub id: String,
    #[serde(default)]
    pub value: Option<String>,
    #[serde(default)]
    pub value_sha256: Option<String>,
    #[serde(default = "yes")]
    pub is_active: bool,
    #[serde(default)]
    pub team_id: Option<String>,
    #[serde(default)]
    pub customer_id: Option<String>,
    #[serde(default)]
    pub expires_at: Option<String>,
    #[serde(default)]
    pub allowed_models: Option<Vec<String>>,
    #[serde(default)]
    pub provider_configs: Option<Vec<WireProviderConfig>>,
    #[serde(default)]
    pub budgets: Vec<WireBudget>,
    #[serde(default)]
    pub rate_limit: Option<WireRateLimit>,
    /// Per-model limits beside the owner's own (docs/configuration.md).
    #[serde(default)]
    pub model_configs: Vec<WireModelConfig>,
    /// Limits for each value of a request header, inside the owner's.
    #[serde(default)]
    pub per_value: Option<WirePerValue>,
    #[serde(default)]
    pub calendar_aligned: Option<bool>,
    #[serde(default)]
    pub timezone: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireProviderConfig {
    pub provider: String,
    #[serde(default)]
    pub allowed_models: Option<Vec<String>>,
    #[serde(default)]
    pub budgets: Vec<WireBudget>,
    #[serde(default)]
    pub rate_limit: Option<WireRateLimit>,
}

/// `per_value`: the limits each value of `header` gets, in a table of `max_values` slots.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WirePerValue {
    pub header: String,
    #[serde(default)]
    pub budgets: Vec<WireBudget>,
    #[serde(default)]
    pub rate_limit: Option<WireRateLimit>,
    #[serde(default = "default_max_values")]
    pub max_values: u64,
}

fn default_max_values() -> u64 {
    10_000
}

/// One entry of `model_configs`: a model (exact or `prefix*`) and its limits.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireModelConfig {
    pub model: String,
    #[serde(default)]
    pub budgets: Vec<WireBudget>,
    #[serde(default)]
    pub rate_limit: Option<WireRateLimit>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireBudget {
    pub max_limit: f64,
    pub reset_duration: String,
    #[serde(default)]
    pub calendar_aligned: Option<bool>,
    #[serde(default)]
    pub timezone: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireRateLimit {
    #[serde(default)]
    pub request_max_limit: Option<u64>,
    #[serde(default)]
    pub request_reset_duration: Option<String>,
    #[serde(default)]
    pub token_max_limit: Option<u64>,
    #[serde(default)]
    pub token_reset_duration: Option<String>,
    #[serde(default)]
    pub calendar_aligned: Option<bool>,
    #[serde(default)]
    pub timezone: Option<String>,
    /// Requests in flight at once (docs/clients.md, concurrency).
    #[serde(default)]
    pub max_in_flight: Option<u64>,
    /// How long a slot whose request never ended is kept (default 10m).
    #[serde(default)]
    pub in_flight_timeout: Option<String>,
}

/// Reservations (docs/reservations.md): off unless `enabled`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireReservation {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default = "default_max_output_tokens")]
    pub default_max_output_tokens: u64,
    #[serde(default = "default_prompt_bytes_per_token")]
    pub prompt_bytes_per_token: u64,
    #[serde(default)]
    pub clamp_output: bool,
}

fn default_namespace() -> String {
    "governance".to_string()
}

fn default_timezone() -> String {
    "UTC".to_string()
}

fn default_key_headers() -> Vec<String> {
    [
        "x-bf-vk",
        "authorization",
        "x-api-key",
        "x-goog-api-key",
        "api-key",
    ]
    .iter()
    .map(|h| h.to_string())
    .collect()
}

fn default_provider_header() -> String {
    "x-bf-provider".to_string()
}

fn default_max_output_tokens() -> u64 {
    4096
}

fn default_prompt_bytes_per_token() -> u64 {
    4
}

fn default_max_rewrite_body_bytes() -> u64 {
    256 * 1024
}

fn yes() -> bool {
    true
}
