//! Fleet mode: one set of counters for many Envoys, kept in Limitador (Kuadrant's rate-limit
//! service) on Redis and reached over Limitador's HTTP API (docs/fleet.md).
//!
//! The key, provider and model checks stay local. The request's limits on every level are
//! then checked in one round of calls made in parallel ([`round`]); charges are queued and
//! sent from the root context after the response ([`charges`]). Counters that Limitador
//! refused are remembered until their window ends ([`memory`]), and an owner's limits are
//! compared with what Limitador holds before its counters are trusted ([`limits`]).

pub mod charges;
#[cfg(any(test, feature = "fake-limitador"))]
pub mod fake;
pub mod limits;
pub mod memory;
pub mod names;
pub mod protocol;
pub mod round;
pub mod usage;

use std::cell::RefCell;
use std::collections::HashMap;

use sha2::{Digest, Sha256};

use crate::config::{ConfigError, LimitId, Policy};
use limits::LimitadorLimit;

/// What happens while Limitador cannot be reached (unreachable, timed out, 5xx, or an owner's
/// limits not yet matching).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unavailable {
    /// 503 `governance_unavailable`.
    Closed,
    /// Admit and count.
    Open,
    /// Decide on this Envoy's own counters, as without fleet mode.
    #[default]
    Local,
}

/// The `fleet` block as the operator writes it.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireFleet {
    pub cluster: String,
    #[serde(default)]
    pub authority: Option<String>,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    #[serde(default)]
    pub namespace_prefix: Option<String>,
    #[serde(default)]
    pub unavailable: Unavailable,
}

fn default_timeout_ms() -> u64 {
    250
}

/// Longest call timeout accepted: a request waits this long at most for Limitador.
const MAX_TIMEOUT_MS: u64 = 60_000;

/// One configured limit as Limitador knows it.
#[derive(Debug, Clone)]
pub struct FleetLimit {
    pub namespace: String,
    /// The `limit` value of its calls.
    pub limit_id: String,
    /// Index in [`FleetPolicy::owners`].
    pub owner: usize,
}

/// An owner's namespace and what is known of the limits Limitador holds there.
#[derive(Debug)]
pub struct FleetOwner {
    pub namespace: String,
    pub limits: Vec<LimitId>,
    /// SHA-256 of the expected limits: a configuration that changes them checks again.
    pub fingerprint: [u8; 32],
}

/// Whether an owner's limits were found as expected in Limitador (per worker VM).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verified {
    /// Not asked yet.
    Unknown,
    /// As expected.
    Matching,
    /// Missing or different, seen at this time (asked again after [`RECHECK_NANOS`]).
    Mismatch { at: i64 },
}

/// How long an owner whose limits did not match is handled as unavailable before Limitador
/// is asked again (the operator fixes the limits file; Limitador reloads it).
pub const RECHECK_NANOS: i64 = 10_000_000_000;

/// The compiled `fleet` block.
#[derive(Debug)]
pub struct FleetPolicy {
    pub cluster: String,
    pub authority: String,
    pub timeout_ms: u32,
    pub prefix: String,
    pub unavailable: Unavailable,
    /// Per configured limit, same index as [`Policy::limits`].
    pub limits: Vec<FleetLimit>,
    pub owners: Vec<FleetOwner>,
    /// Per owner, whether its limits were checked (this VM's knowledge).
    verified: RefCell<Vec<Verified>>,
}

impl FleetPolicy {
    /// Compiles the `fleet` block for `policy`'s limits.
    pub fn compile(wire: &WireFleet, policy: &Policy) -> Result<Self, ConfigError> {
        if wire.cluster.trim().is_empty() {
            return Err(ConfigError::new("fleet.cluster", "must not be empty"));
        }
        let authority = wire
            .authority
            .clone()
            .unwrap_or_else(|| wire.cluster.clone());
        if authority.trim().is_empty() {
            return Err(ConfigError::new("fleet.authority", "must not be empty"));
        }
        if wire.timeout_ms == 0 || wire.timeout_ms > MAX_TIMEOUT_MS {
            return Err(ConfigError::new(
                "fleet.timeout_ms",
                format!(
                    "{} is out of range: 1 to {MAX_TIMEOUT_MS} milliseconds",
                    wire.timeout_ms
                ),
            ));
        }
        let prefix = wire
            .namespace_prefix
            .clone()
            .unwrap_or_else(|| policy.namespace.clone());
        if prefix.is_empty() {
            return Err(ConfigError::new(
                "fleet.namespace_prefix",
                "must not be empty",
            ));
        }
        let (limits, owners) = layout(policy, &prefix);
        Ok(Self {
            cluster: wire.cluster.clone(),
            authority,
            timeout_ms: u32::try_from(wire.timeout_ms).unwrap_or(u32::MAX),
            prefix,
            unavailable: wire.unavailable,
            verified: RefCell::new(vec![Verified::Unknown; owners.len()]),
            limits,
            owners,
        })
    }

    /// What this VM knows of `owner`'s limits in Limitador.
    pub fn verified(&self, owner: usize) -> Verified {
        self.verified
            .borrow()
            .get(owner)
            .copied()
            .unwrap_or(Verified::Unknown)
    }

    pub fn set_verified(&self, owner: usize, state: Verified) {
        if let Some(slot) = self.verified.borrow_mut().get_mut(owner) {
            *slot = state;
        }
    }
}

/// Namespaces and limit names of every limit of `policy`, and its owners in order.
fn layout(policy: &Policy, prefix: &str) -> (Vec<FleetLimit>, Vec<FleetOwner>) {
    let mut limits = Vec::with_capacity(policy.limits.len());
    let mut owners: Vec<FleetOwner> = Vec::new();
    let mut by_namespace: HashMap<String, usize> = HashMap::new();
    for (id, limit) in policy.limits.iter().enumerate() {
        let namespace = names::namespace(prefix, limit.owner_kind, &limit.owner_id);
        let owner = match by_namespace.get(&namespace) {
            Some(&owner) => {
                if let Some(known) = owners.get_mut(owner) {
                    known.limits.push(id);
                }
                owner
            }
            None => {
                let owner = owners.len();
                by_namespace.insert(namespace.clone(), owner);
                owners.push(FleetOwner {
                    namespace: namespace.clone(),
                    limits: vec![id],
                    fingerprint: [0; 32],
                });
                owner
            }
        };
        limits.push(FleetLimit {
            namespace,
            limit_id: names::limit_id(limit),
            owner,
        });
    }
    for owner in &mut owners {
        let expected = expected_of(policy, &owner.limits, &owner.namespace);
        let text = serde_json::to_vec(&expected).unwrap_or_default();
        owner.fingerprint = Sha256::digest(&text).into();
    }
    (limits, owners)
}

fn expected_of(policy: &Policy, ids: &[LimitId], namespace: &str) -> Vec<LimitadorLimit> {
    ids.iter()
        .filter_map(|id| policy.limits.get(*id))
        .map(|limit| limits::expected(limit, namespace))
        .collect()
}

/// Every Limitador limit `policy` expects, namespace by namespace: the content of
/// Limitador's limits file. `prefix` is the fleet's namespace prefix (the configuration's
/// `namespace` when it has no `fleet` block).
pub fn expected_limits(policy: &Policy, prefix: &str) -> Vec<LimitadorLimit> {
    let (_, owners) = layout(policy, prefix);
    owners
        .iter()
        .flat_map(|owner| expected_of(policy, &owner.limits, &owner.namespace))
        .collect()
}

/// The expected limits of one owner (for the comparison with `GET /limits/{namespace}`).
pub fn owner_expected(policy: &Policy, fleet: &FleetPolicy, owner: usize) -> Vec<LimitadorLimit> {
    fleet
        .owners
        .get(owner)
        .map(|o| expected_of(policy, &o.limits, &o.namespace))
        .unwrap_or_default()
}
