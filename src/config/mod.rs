//! Configuration: parsing the operator's JSON ([`wire`]) and compiling it into a [`Policy`],
//! the validated, immutable form every request reads.
//!
//! Compilation happens once per root context (per `on_configure`); requests share the result.
//! The first problem found is reported as one line naming its JSON path, e.g.
//! `virtual_keys[2].budgets[0].reset_duration: "5x" is not a duration`; [`problems`] lists
//! them all, the same first one included (the operators' `check`).

pub mod alerts;
mod compile;
mod document;
mod in_flight;
mod metering;
mod model_configs;
mod model_set;
mod prices;
mod problems;
mod shape;
pub mod wire;

use std::collections::{BTreeSet, HashMap};
use std::fmt;

use compile::{compile, count_limits};
use document::{Document, Text};
pub use metering::{Metering, PathPattern, MAX_REWRITE_BODY_BYTES_LIMIT};
pub use model_configs::ModelConfig;
pub use model_set::ModelSet;
use problems::{CollectAll, Problems, StopAtFirst};
pub use wire::{FailureMode, Mode};

use crate::money::Money;
use crate::pricing::Pricing;
use crate::window::WindowRule;

/// Index of a limit in [`Policy::limits`].
pub type LimitId = usize;

/// A configuration problem: where it is and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Parses and compiles a plugin configuration string.
pub fn parse(text: &str) -> Result<Policy, ConfigError> {
    parse_into(text, &mut StopAtFirst::new())
}

/// Every problem of a configuration, each with its JSON path, in the order compilation
/// meets them: the first is the one [`parse`] refuses the configuration with. Empty when
/// the configuration is valid. A problem in the shape of an owner's entry (a wrong type, an
/// unknown field) hides the rest of that entry, and a document that is not JSON has only
/// that problem.
pub fn problems(text: &str) -> Vec<ConfigError> {
    let mut problems = CollectAll::new();
    let fatal = parse_into(text, &mut problems).err();
    let mut found = problems.into_vec();
    found.extend(fatal.filter(|fatal| !found.contains(fatal)));
    found
}

/// [`parse`], with the problems going to `problems`: when it collects them, a policy is
/// returned even though problems were found, and is good for nothing else.
fn parse_into<const C: bool>(
    text: &str,
    problems: &mut Problems<C>,
) -> Result<Policy, ConfigError> {
    let document = Document::parse(text, problems)?;
    let text = Text::InMemory(text);
    let limit_count = count_limits(&document, &text, problems)?;
    compile(document, limit_count, &text, problems)
}

/// [`parse`] for a configuration the host can hand over again in pieces (Envoy's plugin
/// configuration buffer): `read(start, len)` gives bytes `start..start + len` of `text`.
/// The text is dropped once its structure is known and each owner's entry is read back
/// when it is compiled, so the text and the growing policy never fill memory together
/// (with 10,000 keys: 1.9 MB of text next to about 4.5 MB of policy).
pub fn parse_rereading(
    text: String,
    read: &dyn Fn(usize, usize) -> Option<Vec<u8>>,
) -> Result<Policy, ConfigError> {
    let problems = &mut StopAtFirst::new();
    let document = Document::parse(&text, problems)?;
    let limit_count = count_limits(&document, &Text::InMemory(&text), problems)?;
    drop(text);
    compile(document, limit_count, &Text::Host(read), problems)
}

/// The validated configuration.
#[derive(Debug)]
pub struct Policy {
    pub namespace: String,
    pub mode: Mode,
    pub failure_mode: FailureMode,
    /// Lower-cased header names, in the order they are tried.
    pub key_headers: Vec<String>,
    pub require_virtual_key: bool,
    pub strip_virtual_key: bool,
    /// Lower-cased.
    pub provider_header: String,
    pub require_pricing: bool,
    pub response_headers: bool,
    pub usage_endpoint: Option<UsageEndpoint>,
    pub reservation: Reservation,
    pub pricing: Pricing,
    /// Every configured limit, each with its own shared-data key.
    pub limits: Vec<Limit>,
    /// Every `rate_limit.max_in_flight`, each with its own shared-data key.
    pub in_flight: Vec<crate::in_flight::InFlightCap>,
    /// The `per_value` tables of keys and teams.
    pub per_values: Vec<PerValue>,
    /// Whether any owner has `model_configs` (requests skip looking for them otherwise).
    pub has_model_configs: bool,
    pub customers: Vec<Owner>,
    pub teams: Vec<Team>,
    pub keys: Vec<VirtualKey>,
    /// SHA-256 of a key's secret → index in `keys`.
    pub key_by_hash: HashMap<[u8; 32], usize>,
    /// This VM's secrets already found, per configuration (see [`crate::identity::KeyCache`]).
    pub key_cache: crate::identity::KeyCache,
    /// Provider names mentioned anywhere, so `openai/gpt-4o` can be split.
    pub providers: BTreeSet<String>,
    /// The namespace's guard key, whose version makes counter creation atomic
    /// (see [`crate::counter::Counters`]).
    pub guard_key: Vec<u8>,
    /// Fleet mode: counters in Limitador ([`crate::fleet`]); `None`: shared data only.
    pub fleet: Option<crate::fleet::FleetPolicy>,
    /// Stream-usage rewrite, Azure deployments, free paths.
    pub metering: Metering,
    /// Each charged exchange written as Envoy filter state ([`crate::filter_state`]).
    pub filter_state: bool,
    /// Threshold alerts ([`crate::alerts`]); `None`: off.
    pub alerts: Option<alerts::Alerts>,
}

/// docs/reservations.md: reserve an estimate before admitting, settle after the response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reservation {
    pub enabled: bool,
    /// Output tokens assumed when the request names no maximum.
    pub default_max_output_tokens: u64,
    /// Request-body bytes per estimated prompt token (> 0).
    pub prompt_bytes_per_token: u64,
    /// Lower the output cap of a request whose estimate does not fit but whose prompt
    /// does, instead of refusing it (`clamp.rs`).
    pub clamp_output: bool,
}

impl Default for Reservation {
    fn default() -> Self {
        Self {
            enabled: false,
            default_max_output_tokens: 4096,
            prompt_bytes_per_token: 4,
            clamp_output: false,
        }
    }
}

#[derive(Debug)]
pub struct UsageEndpoint {
    pub path: String,
    pub admin_key_sha256: Option<[u8; 32]>,
}

/// A level of the hierarchy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OwnerKind {
    ProviderConfig,
    VirtualKey,
    Team,
    Customer,
}

impl OwnerKind {
    /// The name used in the usage endpoint and in shared-data keys.
    pub fn as_str(self) -> &'static str {
        match self {
            OwnerKind::ProviderConfig => "provider_config",
            OwnerKind::VirtualKey => "virtual_key",
            OwnerKind::Team => "team",
            OwnerKind::Customer => "customer",
        }
    }

    /// The word used in rejection messages.
    pub fn label(self) -> &'static str {
        match self {
            OwnerKind::ProviderConfig => "provider config",
            OwnerKind::VirtualKey => "virtual key",
            OwnerKind::Team => "team",
            OwnerKind::Customer => "customer",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitKind {
    Budget,
    Requests,
    Tokens,
}

impl LimitKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LimitKind::Budget => "budget",
            LimitKind::Requests => "requests",
            LimitKind::Tokens => "tokens",
        }
    }
}

/// One configured limit.
#[derive(Debug)]
pub struct Limit {
    pub owner_kind: OwnerKind,
    pub owner_id: String,
    pub kind: LimitKind,
    /// Femto-USD for budgets, a count for requests and tokens.
    pub max: u128,
    pub rule: WindowRule,
    /// The configured duration text, echoed by the usage endpoint.
    pub duration_text: Box<str>,
    pub calendar_aligned: bool,
    /// The model (exact or `prefix*`) of the `model_configs` entry the limit belongs to;
    /// `None` for the owner's own limits.
    pub model: Option<Box<str>>,
    /// The `per_value` table (index in [`Policy::per_values`]) whose template this limit
    /// is: its counters are one per slot ([`crate::per_value`]).
    pub per_value: Option<u32>,
    /// The shared-data key: derived from the counter's identity (owner, kind, duration,
    /// alignment, zone), so a changed `max_limit` keeps its usage and a changed window
    /// starts a fresh counter.
    pub storage_key: Box<[u8]>,
}

impl Limit {
    pub fn max_money(&self) -> Money {
        Money::from_femto(self.max)
    }
}

#[derive(Debug)]
pub struct Owner {
    pub id: String,
    pub limits: Vec<LimitId>,
    /// Its `rate_limit.max_in_flight`: index in [`Policy::in_flight`].
    pub in_flight: Option<usize>,
    /// Per-model limits (keys, teams and customers only).
    pub model_configs: Vec<ModelConfig>,
    /// Limits per value of a request header (keys and teams only): index in
    /// [`Policy::per_values`].
    pub per_value: Option<u32>,
}

impl Owner {
    /// An owner with its own limits and no per-model ones.
    pub fn new(id: String, limits: Vec<LimitId>) -> Self {
        Self {
            id,
            limits,
            model_configs: Vec::new(),
            per_value: None,
            in_flight: None,
        }
    }
}

/// A `per_value` table: the template limits each value of `header` gets, in at most
/// `max_values` slots ([`crate::per_value`]).
#[derive(Debug)]
pub struct PerValue {
    /// Lower-cased.
    pub header: String,
    pub max_values: u32,
    /// The template limits (their counters are one per slot).
    pub limits: Vec<LimitId>,
    /// The owner's label in messages (`virtual key 'vk-1'`).
    pub owner_label: String,
    /// Prefix of the slots' claim keys.
    claim_prefix: Box<[u8]>,
}

impl PerValue {
    /// The key that says which value (its SHA-256) holds `slot`.
    pub fn claim_key(&self, slot: u32) -> Vec<u8> {
        let mut key = self.claim_prefix.to_vec();
        crate::decimal::push_u64(&mut key, u64::from(slot));
        key
    }

    /// The key of `limit`'s counter (a template limit of this table) in `slot`.
    pub fn counter_key(&self, limit: &Limit, slot: u32) -> Vec<u8> {
        slot_key(limit, slot)
    }
}

/// The key of a template limit's counter in `slot`: the template's key and the slot.
pub fn slot_key(limit: &Limit, slot: u32) -> Vec<u8> {
    let mut key = Vec::with_capacity(limit.storage_key.len().saturating_add(11));
    key.extend_from_slice(&limit.storage_key);
    key.push(b'@');
    crate::decimal::push_u64(&mut key, u64::from(slot));
    key
}

#[derive(Debug)]
pub struct Team {
    pub owner: Owner,
    pub customer: Option<usize>,
}

#[derive(Debug)]
pub struct VirtualKey {
    pub owner: Owner,
    pub secret_sha256: [u8; 32],
    pub active: bool,
    /// Nanoseconds since the Unix epoch.
    pub expires_at: Option<i64>,
    pub team: Option<usize>,
    /// The key's own customer, or its team's.
    pub customer: Option<usize>,
    pub allowed_models: Option<ModelSet>,
    /// `None`: every provider allowed, with no per-provider limits.
    pub provider_configs: Option<Vec<ProviderConfig>>,
}

#[derive(Debug)]
pub struct ProviderConfig {
    pub provider: String,
    pub allowed_models: Option<ModelSet>,
    /// Owner id `<key id>/<provider>`.
    pub owner: Owner,
}

impl VirtualKey {
    pub fn provider_config(&self, provider: &str) -> Option<&ProviderConfig> {
        self.provider_configs
            .as_ref()?
            .iter()
            .find(|config| config.provider == provider)
    }
}

/// SHA-256 of a key's secret, as stored in [`VirtualKey::secret_sha256`].
pub fn sha256_of(secret: &[u8]) -> [u8; 32] {
    compile::sha256(secret)
}

#[cfg(test)]
mod tests;

impl Policy {
    /// The limits of `key`, of its team and of its customer, one slice per level in that
    /// order (the levels that admission checks at request headers).
    pub fn hierarchy_levels<'a>(&'a self, key: &'a VirtualKey) -> [&'a [LimitId]; 3] {
        let team = key
            .team
            .and_then(|t| self.teams.get(t))
            .map(|t| t.owner.limits.as_slice())
            .unwrap_or_default();
        let customer = key
            .customer
            .and_then(|c| self.customers.get(c))
            .map(|c| c.limits.as_slice())
            .unwrap_or_default();
        [key.owner.limits.as_slice(), team, customer]
    }

    /// The owners of `key`'s levels: the key, its team and its customer (those it has).
    pub fn hierarchy_owners<'a>(&'a self, key: &'a VirtualKey) -> [Option<&'a Owner>; 3] {
        let team = key.team.and_then(|t| self.teams.get(t)).map(|t| &t.owner);
        let customer = key.customer.and_then(|c| self.customers.get(c));
        [Some(&key.owner), team, customer]
    }

    /// The limits of the `model_configs` entries that apply to `model` on `key`'s levels
    /// (at most one entry per level), in level order: key, team, customer.
    pub fn model_limits(&self, key: &VirtualKey, model: &str) -> Vec<LimitId> {
        let mut limits = Vec::new();
        if !self.has_model_configs {
            return limits;
        }
        for owner in self.hierarchy_owners(key).into_iter().flatten() {
            if let Some(config) = model_configs::matching(&owner.model_configs, model) {
                limits.extend_from_slice(&config.limits);
            }
        }
        limits
    }

    /// Whether any of `key`'s levels has per-model limits.
    pub fn key_has_model_configs(&self, key: &VirtualKey) -> bool {
        self.has_model_configs
            && self
                .hierarchy_owners(key)
                .into_iter()
                .flatten()
                .any(|owner| !owner.model_configs.is_empty())
    }

    /// [`Policy::hierarchy_levels`] one limit after the other.
    pub fn hierarchy_limits<'a>(
        &'a self,
        key: &'a VirtualKey,
    ) -> impl Iterator<Item = LimitId> + 'a {
        self.hierarchy_levels(key).into_iter().flatten().copied()
    }
}
