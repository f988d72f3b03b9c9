//! From wire types to a validated [`Policy`]: every rule of docs/configuration.md that serde
//! cannot express is checked here, and each failure names the JSON path of its problem.
//! Problems go to [`Problems`]: the filter stops at the first; `check` collects them all,
//! and then each part a problem spoils is left out (an owner's invalid zone falls back to
//! its parent's, an owner whose entry cannot be read stays in the tables empty) so one
//! mistake is reported once, not again by everything that depends on it.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::hash::BuildHasher as _;

use sha2::{Digest, Sha256};

use super::alerts::compile_alerts;
use super::document::{Document, Text};
use super::metering::compile_metering;
use super::prices::compile_pricing;
use super::problems::Problems;
use super::wire::{
    WireBudget, WireCustomer, WireModelConfig, WirePerValue, WireProviderConfig, WireRateLimit,
    WireReservation, WireTeam, WireVirtualKey,
};
use super::{
    ConfigError, Limit, LimitId, LimitKind, ModelConfig, ModelSet, Owner, OwnerKind, PerValue,
    Policy, ProviderConfig, Reservation, Team, UsageEndpoint, VirtualKey,
};
use crate::duration::LimitDuration;
use crate::money::Money;
use crate::window::WindowRule;
use crate::zone::Zone;

type Result<T> = std::result::Result<T, ConfigError>;

/// The largest `max_values` of a `per_value` table: shared data holds a claim and a counter
/// per template limit for each slot, and has no delete.
const MAX_VALUES_LIMIT: u32 = 1_000_000;

/// Window defaults an owner hands down to its limits.
#[derive(Clone)]
struct Inherited {
    calendar_aligned: bool,
    zone_text: String,
}

/// Compiles the document's owners one entry at a time, read from `text`, so only one
/// entry's wire form exists at once. `limit_count` is [`count_limits`]'s.
pub fn compile<const C: bool>(
    document: Document,
    limit_count: usize,
    text: &Text<'_>,
    problems: &mut Problems<C>,
) -> Result<Policy> {
    let wire = document.wire;
    let reservation = problems
        .take(compile_reservation(wire.reservation.as_ref()))?
        .unwrap_or_default();
    if wire.namespace.is_empty() {
        problems.note(ConfigError::new("namespace", "must not be empty"))?;
    }
    let zone_valid = problems
        .take(parse_zone(&wire.timezone, "timezone"))?
        .is_some();
    let key_headers = header_names(&wire.virtual_key_headers, problems)?;
    if wire.provider_header.is_empty() {
        problems.note(ConfigError::new("provider_header", "must not be empty"))?;
    }
    let usage_endpoint = match wire.usage_endpoint.as_ref() {
        Some(endpoint) => problems.take(compile_usage_endpoint(endpoint))?,
        None => None,
    };
    let pricing = compile_pricing(&wire.pricing, problems)?;
    // Spoiled metering settings: the defaults, so the rest can still be checked.
    let metering = problems.take(compile_metering(&wire))?.unwrap_or_default();
    let alerts = match wire.alerts.as_ref() {
        Some(alerts) => problems.take(compile_alerts(alerts))?,
        None => None,
    };
    if reservation.clamp_output && wire.fleet.is_some() {
        problems.note(ConfigError::new(
            "reservation.clamp_output",
            "not available in fleet mode: Limitador cannot say how much room is left",
        ))?;
    }
    if alerts.is_some() && wire.fleet.is_some() {
        problems.note(ConfigError::new(
            "alerts",
            "not available in fleet mode: Limitador keeps the counters, so no Envoy sees \
             a threshold crossed",
        ))?;
    }

    let mut builder = Builder {
        namespace: wire.namespace.clone(),
        limits: Vec::with_capacity(limit_count),
        in_flight: Vec::new(),
        per_values: Vec::new(),
        per_value_scope: None,
    };
    let global = Inherited {
        calendar_aligned: false,
        zone_text: if zone_valid {
            wire.timezone.clone()
        } else {
            "UTC".to_string()
        },
    };

    let mut customers = Vec::with_capacity(document.customers.len());
    let mut customer_index = HashMap::new();
    for i in 0..document.customers.len() {
        let Some(customer) = problems.take(document.customers.decode::<WireCustomer>(i, text))?
        else {
            let id = document.customers.id(i, text).unwrap_or_default();
            customer_index.entry(id.clone()).or_insert(i);
            customers.push(Owner::new(id, Vec::new()));
            continue;
        };
        let path = format!("customers[{i}]");
        problems.take(check_id(&customer.id, &path))?;
        if customer_index.insert(customer.id.clone(), i).is_some() {
            problems.note(duplicate_id(&path, &customer.id))?;
        }
        let inherited = owner_defaults(
            &global,
            customer.calendar_aligned,
            customer.timezone.as_deref(),
            &path,
            problems,
        )?;
        let limits = builder.owner_limits(
            OwnerKind::Customer,
            &customer.id,
            None,
            &customer.budgets,
            customer.rate_limit.as_ref(),
            &inherited,
            &path,
            problems,
        )?;
        let in_flight = builder.owner_in_flight(
            OwnerKind::Customer,
            &customer.id,
            customer.rate_limit.as_ref(),
            &path,
            problems,
        )?;
        let model_configs = builder.model_configs(
            OwnerKind::Customer,
            &customer.id,
            &customer.model_configs,
            &inherited,
            &path,
            problems,
        )?;
        customers.push(Owner {
            id: customer.id.clone(),
            limits,
            in_flight,
            model_configs,
            per_value: None,
        });
    }

    let mut teams = Vec::with_capacity(document.teams.len());
    let mut team_index = HashMap::new();
    for i in 0..document.teams.len() {
        let Some(team) = problems.take(document.teams.decode::<WireTeam>(i, text))? else {
            let id = document.teams.id(i, text).unwrap_or_default();
            team_index.entry(id.clone()).or_insert(i);
            let owner = Owner::new(id, Vec::new());
            teams.push(Team {
                owner,
                customer: None,
            });
            continue;
        };
        let path = format!("teams[{i}]");
        problems.take(check_id(&team.id, &path))?;
        if team_index.insert(team.id.clone(), i).is_some() {
            problems.note(duplicate_id(&path, &team.id))?;
        }
        let customer = resolve(
            &customer_index,
            team.customer_id.as_deref(),
            &path,
            "customer_id",
            "customer",
        );
        let customer = problems.take(customer)?.flatten();
        let inherited = owner_defaults(
            &global,
            team.calendar_aligned,
            team.timezone.as_deref(),
            &path,
            problems,
        )?;
        let limits = builder.owner_limits(
            OwnerKind::Team,
            &team.id,
            None,
            &team.budgets,
            team.rate_limit.as_ref(),
            &inherited,
            &path,
            problems,
        )?;
        let in_flight = builder.owner_in_flight(
            OwnerKind::Team,
            &team.id,
            team.rate_limit.as_ref(),
            &path,
            problems,
        )?;
        let model_configs = builder.model_configs(
            OwnerKind::Team,
            &team.id,
            &team.model_configs,
            &inherited,
            &path,
            problems,
        )?;
        let per_value = match &team.per_value {
            Some(wire) => {
                builder.per_value(OwnerKind::Team, &team.id, wire, &inherited, &path, problems)?
            }
            None => None,
        };
        teams.push(Team {
            owner: Owner {
                id: team.id.clone(),
                limits,
                in_flight,
                model_configs,
                per_value,
            },
            customer,
        });
    }

    let mut providers = BTreeSet::new();
    let mut keys = Vec::with_capacity(document.virtual_keys.len());
    let mut key_by_hash = HashMap::with_capacity(document.virtual_keys.len());
    // Ids seen so far, as hashes: the ids themselves are in `keys`, and a set of copies
    // would hold 10,000 of them twice while the policy is built. A repeated hash is a
    // repeated id only if a key before really has it.
    let id_hasher = RandomState::new();
    let mut key_id_hashes = HashSet::with_capacity(document.virtual_keys.len());
    for i in 0..document.virtual_keys.len() {
        let Some(key) = problems.take(document.virtual_keys.decode::<WireVirtualKey>(i, text))?
        else {
            continue;
        };
        let key = &key;
        let path = format!("virtual_keys[{i}]");
        problems.take(check_id(&key.id, &path))?;
        let new_hash = key_id_hashes.insert(id_hasher.hash_one(&key.id));
        if !new_hash && keys.iter().any(|seen: &VirtualKey| seen.owner.id == key.id) {
            problems.note(duplicate_id(&path, &key.id))?;
        }
        let secret_sha256 = problems.take(key_secret(key, &path))?;
        let compiled = compile_key(
            key,
            secret_sha256.unwrap_or_default(),
            &path,
            &global,
            &team_index,
            &teams,
            &customer_index,
            &mut builder,
            &mut providers,
            problems,
        )?;
        let Some(secret_sha256) = secret_sha256 else {
            continue;
        };
        // Indices are those of `keys` (an entry left out when collecting shifts them).
        if key_by_hash.insert(secret_sha256, keys.len()).is_some() {
            let field = if key.value.is_some() {
                "value"
            } else {
                "value_sha256"
            };
            problems.note(ConfigError::new(
                format!("{path}.{field}"),
                "another virtual key has the same secret",
            ))?;
        }
        keys.push(compiled);
    }

    let guard_key = format!("{}:cas-guard", wire.namespace).into_bytes();
    let wire_fleet = wire.fleet;
    let mut policy = Policy {
        guard_key,
        namespace: wire.namespace,
        mode: wire.mode,
        failure_mode: wire.failure_mode,
        key_headers,
        require_virtual_key: wire.require_virtual_key,
        strip_virtual_key: wire.strip_virtual_key,
        provider_header: wire.provider_header.to_ascii_lowercase(),
        require_pricing: wire.require_pricing,
        response_headers: wire.response_headers,
        usage_endpoint,
        reservation,
        pricing,
        limits: builder.limits,
        in_flight: builder.in_flight,
        per_values: builder.per_values,
        has_model_configs: false,
        customers,
        teams,
        keys,
        key_by_hash,
        key_cache: Default::default(),
        providers,
        fleet: None,
        metering,
        filter_state: wire.filter_state,
        alerts,
    };
    policy.has_model_configs = policy
        .customers
        .iter()
        .chain(policy.teams.iter().map(|t| &t.owner))
        .chain(policy.keys.iter().map(|k| &k.owner))
        .any(|owner| !owner.model_configs.is_empty());
    if let Some(wire_fleet) = wire_fleet {
        policy.fleet = problems.take(crate::fleet::FleetPolicy::compile(&wire_fleet, &policy))?;
    }
    if let Some(alerts) = policy.alerts.as_mut() {
        alerts.set_lines(&policy.limits);
    }
    Ok(policy)
}

/// At least as many limits as the owners define (exactly as many in a valid document), read
/// in a first pass over the entries: the list is then allocated once, where growing it by
/// doubling would hold the old and the new copy at once (megabytes with 10,000 keys). The
/// pass also refuses a malformed entry before any entry is compiled, as reading the whole
/// document first did.
pub fn count_limits<const C: bool>(
    document: &Document,
    text: &Text<'_>,
    problems: &mut Problems<C>,
) -> Result<usize> {
    let mut count = 0usize;
    for i in 0..document.customers.len() {
        let Some(customer) = problems.take(document.customers.decode::<WireCustomer>(i, text))?
        else {
            continue;
        };
        count = count.saturating_add(limits_of(&customer.budgets, customer.rate_limit.as_ref()));
        count = count.saturating_add(model_limits_of(&customer.model_configs));
    }
    for i in 0..document.teams.len() {
        let Some(team) = problems.take(document.teams.decode::<WireTeam>(i, text))? else {
            continue;
        };
        count = count.saturating_add(limits_of(&team.budgets, team.rate_limit.as_ref()));
        count = count.saturating_add(model_limits_of(&team.model_configs));
        count = count.saturating_add(per_value_limits_of(team.per_value.as_ref()));
    }
    for i in 0..document.virtual_keys.len() {
        let Some(key) = problems.take(document.virtual_keys.decode::<WireVirtualKey>(i, text))?
        else {
            continue;
        };
        count = count.saturating_add(limits_of(&key.budgets, key.rate_limit.as_ref()));
        count = count.saturating_add(model_limits_of(&key.model_configs));
        count = count.saturating_add(per_value_limits_of(key.per_value.as_ref()));
        for config in key.provider_configs.iter().flatten() {
            count = count.saturating_add(limits_of(&config.budgets, config.rate_limit.as_ref()));
        }
    }
    Ok(count)
}

/// Budgets plus one limit per kind of rate limit mentioned.
fn limits_of(budgets: &[WireBudget], rate_limit: Option<&WireRateLimit>) -> usize {
    let rates = rate_limit.map_or(0, |rate| {
        let requests = rate.request_max_limit.is_some() || rate.request_reset_duration.is_some();
        let tokens = rate.token_max_limit.is_some() || rate.token_reset_duration.is_some();
        usize::from(requests).saturating_add(usize::from(tokens))
    });
    budgets.len().saturating_add(rates)
}

/// The limits of an owner's `model_configs` entries.
fn model_limits_of(configs: &[WireModelConfig]) -> usize {
    configs.iter().fold(0usize, |count, config| {
        count.saturating_add(limits_of(&config.budgets, config.rate_limit.as_ref()))
    })
}

/// The template limits of a `per_value` table.
fn per_value_limits_of(per_value: Option<&WirePerValue>) -> usize {
    per_value.map_or(0, |wire| limits_of(&wire.budgets, wire.rate_limit.as_ref()))
}

fn compile_reservation(wire: Option<&WireReservation>) -> Result<Reservation> {
    let Some(wire) = wire else {
        return Ok(Reservation::default());
    };
    if wire.default_max_output_tokens == 0 {
        return Err(ConfigError::new(
            "reservation.default_max_output_tokens",
            "must be > 0",
        ));
    }
    if wire.prompt_bytes_per_token == 0 {
        return Err(ConfigError::new(
            "reservation.prompt_bytes_per_token",
            "must be > 0",
        ));
    }
    if wire.clamp_output && !wire.enabled {
        return Err(ConfigError::new(
            "reservation.clamp_output",
            "needs reservation.enabled: the room left is what requests in flight hold",
        ));
    }
    Ok(Reservation {
        enabled: wire.enabled,
        default_max_output_tokens: wire.default_max_output_tokens,
        prompt_bytes_per_token: wire.prompt_bytes_per_token,
        clamp_output: wire.clamp_output,
    })
}

/// SHA-256 of the key's secret, from `value` or `value_sha256` (exactly one).
fn key_secret(key: &WireVirtualKey, path: &str) -> Result<[u8; 32]> {
    match (&key.value, &key.value_sha256) {
        (Some(value), None) => {
            if value.is_empty() {
                return Err(ConfigError::new(
                    format!("{path}.value"),
                    "must not be empty",
                ));
            }
            Ok(sha256(value.as_bytes()))
        }
        (None, Some(hex)) => parse_sha256_hex(hex, &format!("{path}.value_sha256")),
        (Some(_), Some(_)) => Err(ConfigError::new(
            path,
            "has both `value` and `value_sha256`; give exactly one",
        )),
        (None, None) => Err(ConfigError::new(path, "needs `value` or `value_sha256`")),
    }
}

#[allow(
    clippy::too_many_arguments,
    reason = "one call site; the arguments are the tables built so far"
)]
fn compile_key<const C: bool>(
    key: &WireVirtualKey,
    secret_sha256: [u8; 32],
    path: &str,
    global: &Inherited,
    team_index: &HashMap<String, usize>,
    teams: &[Team],
    customer_index: &HashMap<String, usize>,
    builder: &mut Builder,
    providers: &mut BTreeSet<String>,
    problems: &mut Problems<C>,
) -> Result<VirtualKey> {
    if key.team_id.is_some() && key.customer_id.is_some() {
        problems.note(ConfigError::new(
            path,
            "names both `team_id` and `customer_id`; give at most one",
        ))?;
    }
    let team = resolve(team_index, key.team_id.as_deref(), path, "team_id", "team");
    let team = problems.take(team)?.flatten();
    let own_customer = resolve(
        customer_index,
        key.customer_id.as_deref(),
        path,
        "customer_id",
        "customer",
    );
    let own_customer = problems.take(own_customer)?.flatten();
    let customer =
        own_customer.or_else(|| team.and_then(|t| teams.get(t)).and_then(|t| t.customer));
    let expires_at = match key.expires_at.as_deref() {
        Some(text) => problems.take(parse_rfc3339(text, &format!("{path}.expires_at")))?,
        None => None,
    };
    let allowed_models = key.allowed_models.as_deref().map(ModelSet::new);
    let inherited = owner_defaults(
        global,
        key.calendar_aligned,
        key.timezone.as_deref(),
        path,
        problems,
    )?;
    let limits = builder.owner_limits(
        OwnerKind::VirtualKey,
        &key.id,
        None,
        &key.budgets,
        key.rate_limit.as_ref(),
        &inherited,
        path,
        problems,
    )?;
    let in_flight = builder.owner_in_flight(
        OwnerKind::VirtualKey,
        &key.id,
        key.rate_limit.as_ref(),
        path,
        problems,
    )?;
    let model_configs = builder.model_configs(
        OwnerKind::VirtualKey,
        &key.id,
        &key.model_configs,
        &inherited,
        path,
        problems,
    )?;
    let per_value = match &key.per_value {
        Some(wire) => builder.per_value(
            OwnerKind::VirtualKey,
            &key.id,
            wire,
            &inherited,
            path,
            problems,
        )?,
        None => None,
    };
    let provider_configs = key
        .provider_configs
        .as_ref()
        .map(|configs| {
            compile_provider_configs(key, configs, path, &inherited, builder, providers, problems)
        })
        .transpose()?;
    Ok(VirtualKey {
        owner: Owner {
            id: key.id.clone(),
            limits,
            in_flight,
            model_configs,
            per_value,
        },
        secret_sha256,
        active: key.is_active,
        expires_at,
        team,
        customer,
        allowed_models,
        provider_configs,
    })
}

fn compile_provider_configs<const C: bool>(
    key: &WireVirtualKey,
    configs: &[WireProviderConfig],
    key_path: &str,
    inherited: &Inherited,
    builder: &mut Builder,
    providers: &mut BTreeSet<String>,
    problems: &mut Problems<C>,
) -> Result<Vec<ProviderConfig>> {
    let mut seen = HashSet::new();
    let mut compiled = Vec::with_capacity(configs.len());
    for (j, config) in configs.iter().enumerate() {
        let path = format!("{key_path}.provider_configs[{j}]");
        if config.provider.is_empty() || config.provider.contains('/') {
            problems.note(ConfigError::new(
                format!("{path}.provider"),
                "must be a non-empty provider name without '/'",
            ))?;
            continue;
        }
        if !seen.insert(config.provider.clone()) {
            problems.note(ConfigError::new(
                format!("{path}.provider"),
                format!(
                    "provider {:?} is listed twice for this key",
                    config.provider
                ),
            ))?;
            continue;
        }
        providers.insert(config.provider.clone());
        let owner_id = format!("{}/{}", key.id, config.provider);
        let limits = builder.owner_limits(
            OwnerKind::ProviderConfig,
            &owner_id,
            None,
            &config.budgets,
            config.rate_limit.as_ref(),
            inherited,
            &path,
            problems,
        )?;
        let in_flight = builder.owner_in_flight(
            OwnerKind::ProviderConfig,
            &owner_id,
            config.rate_limit.as_ref(),
            &path,
            problems,
        )?;
        compiled.push(ProviderConfig {
            provider: config.provider.clone(),
            allowed_models: config.allowed_models.as_deref().map(ModelSet::new),
            owner: Owner {
                in_flight,
                ..Owner::new(owner_id, limits)
            },
        });
    }
    Ok(compiled)
}

/// Accumulates limits and gives each its shared-data key.
struct Builder {
    namespace: String,
    limits: Vec<Limit>,
    in_flight: Vec<crate::in_flight::InFlightCap>,
    per_values: Vec<PerValue>,
    /// While a `per_value` template is compiled: its table's index and header.
    per_value_scope: Option<(u32, String)>,
}

impl Builder {
    /// The owner's `rate_limit.max_in_flight` (and `in_flight_timeout`), if it has one.
    fn owner_in_flight<const C: bool>(
        &mut self,
        owner_kind: OwnerKind,
        owner_id: &str,
        rate_limit: Option<&WireRateLimit>,
        path: &str,
        problems: &mut Problems<C>,
    ) -> Result<Option<usize>> {
        let Some(rate) = rate_limit else {
            return Ok(None);
        };
        let cap = super::in_flight::compile_cap(
            &self.namespace,
            owner_kind,
            owner_id,
            rate,
            &format!("{path}.rate_limit"),
        );
        let Some(cap) = problems.take(cap)?.flatten() else {
            return Ok(None);
        };
        self.in_flight.push(cap);
        Ok(Some(self.in_flight.len().saturating_sub(1)))
    }

    #[allow(
        clippy::too_many_arguments,
        reason = "an owner's limits, where they are, and where problems go"
    )]
    fn owner_limits<const C: bool>(
        &mut self,
        owner_kind: OwnerKind,
        owner_id: &str,
        model: Option<&str>,
        budgets: &[WireBudget],
        rate_limit: Option<&WireRateLimit>,
        inherited: &Inherited,
        path: &str,
        problems: &mut Problems<C>,
    ) -> Result<Vec<LimitId>> {
        let mut ids = Vec::with_capacity(limits_of(budgets, rate_limit));
        let mut budget_durations = HashSet::new();
        for (i, budget) in budgets.iter().enumerate() {
            let budget_path = format!("{path}.budgets[{i}]");
            let max = Money::from_usd(budget.max_limit)
                .filter(|m| *m > Money::ZERO)
                .ok_or_else(|| {
                    ConfigError::new(
                        format!("{budget_path}.max_limit"),
                        format!("{} is not a USD amount > 0 and <= 1e12", budget.max_limit),
                    )
                });
            let max = problems.take(max)?;
            if !budget_durations.insert(budget.reset_duration.clone()) {
                problems.note(ConfigError::new(
                    format!("{budget_path}.reset_duration"),
                    format!(
                        "{:?} is used by another budget of this owner",
                        budget.reset_duration
                    ),
                ))?;
                continue;
            }
            if budget.calendar_aligned == Some(true) && budget.reset_duration == "never" {
                problems.note(never_aligned(&budget_path))?;
            }
            let defaults = window_defaults(
                inherited,
                budget.calendar_aligned,
                budget.timezone.as_deref(),
                &budget_path,
            );
            let defaults = problems
                .take(defaults)?
                .unwrap_or_else(|| inherited.clone());
            let limit = self.push(
                owner_kind,
                owner_id,
                model,
                LimitKind::Budget,
                max.unwrap_or(Money::ZERO).femto(),
                &budget.reset_duration,
                &defaults,
                &format!("{budget_path}.reset_duration"),
            );
            ids.extend(problems.take(limit)?);
        }
        if let Some(rate) = rate_limit {
            let rate_path = format!("{path}.rate_limit");
            let durations = [&rate.request_reset_duration, &rate.token_reset_duration];
            let only_never = durations.iter().any(|d| d.is_some())
                && durations
                    .iter()
                    .all(|d| d.as_deref().is_none_or(|d| d == "never"));
            if rate.calendar_aligned == Some(true) && only_never {
                problems.note(never_aligned(&rate_path))?;
            }
            let defaults = window_defaults(
                inherited,
                rate.calendar_aligned,
                rate.timezone.as_deref(),
                &rate_path,
            );
            let defaults = problems
                .take(defaults)?
                .unwrap_or_else(|| inherited.clone());
            let pairs = [
                (
                    LimitKind::Requests,
                    rate.request_max_limit,
                    &rate.request_reset_duration,
                    "request",
                ),
                (
                    LimitKind::Tokens,
                    rate.token_max_limit,
                    &rate.token_reset_duration,
                    "token",
                ),
            ];
            for (kind, max, duration, word) in pairs {
                match (max, duration) {
                    (None, None) => {}
                    (Some(_), None) => problems.note(ConfigError::new(
                        format!("{rate_path}.{word}_reset_duration"),
                        format!("is required with {word}_max_limit"),
                    ))?,
                    (None, Some(_)) => problems.note(ConfigError::new(
                        format!("{rate_path}.{word}_max_limit"),
                        format!("is required with {word}_reset_duration"),
                    ))?,
                    (Some(0), Some(_)) => problems.note(ConfigError::new(
                        format!("{rate_path}.{word}_max_limit"),
                        "must be > 0",
                    ))?,
                    (Some(max), Some(duration)) => {
                        let limit = self.push(
                            owner_kind,
                            owner_id,
                            model,
                            kind,
                            u128::from(max),
                            duration,
                            &defaults,
                            &format!("{rate_path}.{word}_reset_duration"),
                        );
                        ids.extend(problems.take(limit)?);
                    }
                }
            }
        }
        Ok(ids)
    }

    /// An owner's `per_value` table: its header checked, `max_values` bounded, and its
    /// template limits compiled like the owner's own (with the owner's defaults). `None`
    /// when a problem was noted (problems collected).
    #[allow(
        clippy::too_many_arguments,
        reason = "an owner's table, where it is, and where problems go"
    )]
    fn per_value<const C: bool>(
        &mut self,
        owner_kind: OwnerKind,
        owner_id: &str,
        wire: &WirePerValue,
        inherited: &Inherited,
        path: &str,
        problems: &mut Problems<C>,
    ) -> Result<Option<u32>> {
        let path = format!("{path}.per_value");
        let header = wire.header.to_ascii_lowercase();
        if let Err(problem) = header_names(
            std::slice::from_ref(&header),
            &mut super::problems::StopAtFirst::new(),
        ) {
            problems.note(ConfigError::new(
                format!("{path}.header"),
                problem.message.replace("virtual_key_headers[0]: ", ""),
            ))?;
            return Ok(None);
        }
        let max_values = match u32::try_from(wire.max_values) {
            Ok(n) if (1..=MAX_VALUES_LIMIT).contains(&n) => n,
            _ => {
                problems.note(ConfigError::new(
                    format!("{path}.max_values"),
                    format!(
                        "{} is not between 1 and {MAX_VALUES_LIMIT}",
                        wire.max_values
                    ),
                ))?;
                return Ok(None);
            }
        };
        if wire.budgets.is_empty() && wire.rate_limit.is_none() {
            problems.note(ConfigError::new(
                path.as_str(),
                "needs `budgets` or a `rate_limit`: the limits each value gets",
            ))?;
            return Ok(None);
        }
        let Ok(index) = u32::try_from(self.per_values.len()) else {
            return Ok(None);
        };
        self.per_value_scope = Some((index, header.clone()));
        let limits = self.owner_limits(
            owner_kind,
            owner_id,
            None,
            &wire.budgets,
            wire.rate_limit.as_ref(),
            inherited,
            &path,
            problems,
        );
        self.per_value_scope = None;
        let limits = limits?;
        let claim_prefix = format!(
            "{}:per_value:{}:{}:{header}#claim@",
            self.namespace,
            owner_kind.as_str(),
            owner_id
        );
        self.per_values.push(PerValue {
            header,
            max_values,
            limits,
            owner_label: format!("{} '{owner_id}'", owner_kind.label()),
            claim_prefix: claim_prefix.into_bytes().into_boxed_slice(),
        });
        Ok(Some(index))
    }

    /// An owner's `model_configs`: each entry's model checked (a pattern, named once per
    /// owner) and its limits compiled like the owner's own, with the owner's defaults.
    fn model_configs<const C: bool>(
        &mut self,
        owner_kind: OwnerKind,
        owner_id: &str,
        configs: &[WireModelConfig],
        inherited: &Inherited,
        path: &str,
        problems: &mut Problems<C>,
    ) -> Result<Vec<ModelConfig>> {
        let mut seen = HashSet::new();
        let mut compiled = Vec::with_capacity(configs.len());
        for (j, config) in configs.iter().enumerate() {
            let config_path = format!("{path}.model_configs[{j}]");
            if let Some(problem) = super::model_configs::pattern_problem(&config.model) {
                problems.note(ConfigError::new(format!("{config_path}.model"), problem))?;
                continue;
            }
            if !seen.insert(config.model.as_str()) {
                problems.note(ConfigError::new(
                    format!("{config_path}.model"),
                    format!("{:?} is listed twice for this owner", config.model),
                ))?;
                continue;
            }
            let limits = self.owner_limits(
                owner_kind,
                owner_id,
                Some(&config.model),
                &config.budgets,
                config.rate_limit.as_ref(),
                inherited,
                &config_path,
                problems,
            )?;
            compiled.push(ModelConfig {
                model: config.model.as_str().into(),
                limits,
            });
        }
        Ok(compiled)
    }

    #[allow(
        clippy::too_many_arguments,
        reason = "a limit is defined by all of these"
    )]
    fn push(
        &mut self,
        owner_kind: OwnerKind,
        owner_id: &str,
        model: Option<&str>,
        kind: LimitKind,
        max: u128,
        duration_text: &str,
        defaults: &Inherited,
        duration_path: &str,
    ) -> Result<LimitId> {
        let duration = LimitDuration::parse(duration_text)
            .map_err(|err| ConfigError::new(duration_path, err.to_string()))?;
        let zone = parse_zone(&defaults.zone_text, duration_path)?;
        // A window that never ends has no calendar: an alignment or zone handed down by the
        // owner does not apply, and changing them keeps the counter (the same identity).
        let never_defaults;
        let defaults = if duration.is_never() {
            never_defaults = Inherited {
                calendar_aligned: false,
                zone_text: "UTC".to_string(),
            };
            &never_defaults
        } else {
            defaults
        };
        let rule = WindowRule::new(duration, defaults.calendar_aligned, zone)
            .map_err(|err| ConfigError::new(duration_path, err.to_string()))?;
        let per_value = self.per_value_scope.as_ref();
        let scope = match (model, per_value) {
            (Some(model), _) => Some(format!("model={model}")),
            (None, Some((_, header))) => Some(format!("per_value={header}")),
            (None, None) => None,
        };
        let storage_key = storage_key(
            &self.namespace,
            owner_kind,
            owner_id,
            scope.as_deref(),
            kind,
            &rule,
            defaults,
        );
        let id = self.limits.len();
        self.limits.push(Limit {
            owner_kind,
            owner_id: owner_id.to_string(),
            kind,
            max,
            rule,
            duration_text: duration_text.into(),
            calendar_aligned: defaults.calendar_aligned,
            model: model.map(Box::from),
            per_value: per_value.map(|(index, _)| *index),
            storage_key,
        });
        Ok(id)
    }
}

/// `<namespace>:<owner kind>:<owner id>:<kind>:<duration>:<a|r>:<zone>#<hash>`. The
/// readable part helps whoever inspects shared data; the hash of the length-prefixed
/// identity keeps two identities apart even when ids contain ':'.
#[allow(
    clippy::too_many_arguments,
    reason = "a counter's identity is all of these"
)]
fn storage_key(
    namespace: &str,
    owner_kind: OwnerKind,
    owner_id: &str,
    scope: Option<&str>,
    kind: LimitKind,
    rule: &WindowRule,
    defaults: &Inherited,
) -> Box<[u8]> {
    let duration = rule.duration().to_string();
    let alignment = if defaults.calendar_aligned { "a" } else { "r" };
    // A model config's limit adds `model=<model>` after the owner, a per-value template
    // `per_value=<header>`; the owner's own limits keep the keys they always had.
    let mut parts = Vec::with_capacity(8);
    parts.extend([namespace, owner_kind.as_str(), owner_id]);
    parts.extend(scope);
    parts.extend([
        kind.as_str(),
        duration.as_str(),
        alignment,
        defaults.zone_text.as_str(),
    ]);
    key_of_parts(&parts)
}

/// The parts joined by ':', then `#` and 16 hex digits of the SHA-256 of the
/// length-prefixed parts.
pub(super) fn key_of_parts(parts: &[&str]) -> Box<[u8]> {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    let digest = hasher.finalize();
    // Allocated at its final size: 20,000 limits keep 20,000 of these.
    let text_len = parts.iter().map(|part| part.len()).sum::<usize>();
    // The parts, a ':' between each two and '#' after them, 16 hex digits.
    let len = text_len.saturating_add(parts.len()).saturating_add(16);
    let mut key = Vec::with_capacity(len);
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            key.push(b':');
        }
        key.extend_from_slice(part.as_bytes());
    }
    key.push(b'#');
    for byte in digest.iter().take(8) {
        for nibble in [byte >> 4, byte & 0x0f] {
            let digit = char::from_digit(u32::from(nibble), 16).unwrap_or('0');
            key.push(u8::try_from(digit).unwrap_or(b'0'));
        }
    }
    key.into_boxed_slice()
}

/// An owner's window defaults; when its zone is invalid (and problems are collected), its
/// parent's zone stands in, so its limits are still checked.
fn owner_defaults<const C: bool>(
    global: &Inherited,
    aligned: Option<bool>,
    zone: Option<&str>,
    path: &str,
    problems: &mut Problems<C>,
) -> Result<Inherited> {
    let defaults = problems.take(window_defaults(global, aligned, zone, path))?;
    Ok(defaults.unwrap_or_else(|| Inherited {
        calendar_aligned: aligned.unwrap_or(global.calendar_aligned),
        zone_text: global.zone_text.clone(),
    }))
}

fn window_defaults(
    parent: &Inherited,
    aligned: Option<bool>,
    zone: Option<&str>,
    path: &str,
) -> Result<Inherited> {
    if let Some(zone) = zone {
        parse_zone(zone, &format!("{path}.timezone"))?;
    }
    Ok(Inherited {
        calendar_aligned: aligned.unwrap_or(parent.calendar_aligned),
        zone_text: zone
            .map(str::to_string)
            .unwrap_or_else(|| parent.zone_text.clone()),
    })
}

fn parse_zone(text: &str, path: &str) -> Result<Zone> {
    Zone::parse(text).map_err(|err| ConfigError::new(path, err.to_string()))
}

fn header_names<const C: bool>(
    names: &[String],
    problems: &mut Problems<C>,
) -> Result<Vec<String>> {
    if names.is_empty() {
        problems.note(ConfigError::new(
            "virtual_key_headers",
            "must name at least one header",
        ))?;
    }
    let mut lowered = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if valid {
            lowered.push(name.to_ascii_lowercase());
        } else {
            problems.note(ConfigError::new(
                format!("virtual_key_headers[{i}]"),
                format!("{name:?} is not an HTTP header name"),
            ))?;
        }
    }
    Ok(lowered)
}

fn compile_usage_endpoint(wire: &super::wire::WireUsageEndpoint) -> Result<UsageEndpoint> {
    if !wire.path.starts_with('/') {
        return Err(ConfigError::new(
            "usage_endpoint.path",
            format!("{:?} must start with '/'", wire.path),
        ));
    }
    let admin_key_sha256 = wire
        .admin_key_sha256
        .as_deref()
        .map(|hex| parse_sha256_hex(hex, "usage_endpoint.admin_key_sha256"))
        .transpose()?;
    Ok(UsageEndpoint {
        path: wire.path.clone(),
        admin_key_sha256,
    })
}

/// `calendar_aligned: true` written on a limit whose windows never end.
fn never_aligned(path: &str) -> ConfigError {
    ConfigError::new(
        format!("{path}.calendar_aligned"),
        "a limit whose reset_duration is \"never\" has no calendar windows; remove \
         calendar_aligned",
    )
}

fn check_id(id: &str, path: &str) -> Result<()> {
    if id.is_empty() {
        return Err(ConfigError::new(format!("{path}.id"), "must not be empty"));
    }
    Ok(())
}

fn duplicate_id(path: &str, id: &str) -> ConfigError {
    ConfigError::new(format!("{path}.id"), format!("{id:?} is used twice"))
}

fn resolve(
    index: &HashMap<String, usize>,
    reference: Option<&str>,
    path: &str,
    field: &str,
    what: &str,
) -> Result<Option<usize>> {
    match reference {
        None => Ok(None),
        Some(id) => index.get(id).copied().map(Some).ok_or_else(|| {
            ConfigError::new(
                format!("{path}.{field}"),
                format!("no {what} has id {id:?}"),
            )
        }),
    }
}

pub(crate) fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn parse_sha256_hex(hex: &str, path: &str) -> Result<[u8; 32]> {
    let error = || ConfigError::new(path, "must be 64 hexadecimal characters (a SHA-256)");
    if hex.len() != 64 {
        return Err(error());
    }
    let mut out = [0u8; 32];
    for (slot, pair) in out.iter_mut().zip(hex.as_bytes().chunks(2)) {
        let text = std::str::from_utf8(pair).map_err(|_| error())?;
        *slot = u8::from_str_radix(text, 16).map_err(|_| error())?;
    }
    Ok(out)
}

fn parse_rfc3339(text: &str, path: &str) -> Result<i64> {
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .and_then(|t| t.timestamp_nanos_opt())
        .ok_or_else(|| ConfigError::new(path, format!("{text:?} is not an RFC 3339 time")))
}
