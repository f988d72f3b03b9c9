//! `per_value` tables in a request's way (docs/configuration.md): at the request headers
//! each table of the key and of its team finds the slot of the request's header value
//! (claiming one if it has none) and adds its template limits to the request's, counted in
//! that slot. A value that finds no free slot is refused (429 `per_value_full`), or, with
//! `failure_mode: open`, goes on without its table's limits.

use super::{Env, Flow};
use crate::config::{FailureMode, LimitId, Policy, VirtualKey};
use crate::counter::Counters;
use crate::identity::RequestHeaders;
use crate::metrics::Metric;
use crate::per_value::ValueSlots;
use crate::per_value::{self, Claim};
use crate::rejection::{LocalReply, Rejection, RejectionKind};

impl Flow {
    /// The template limits of the key's and its team's `per_value` tables for this request's
    /// header values, their slots noted in `self.value_slots` (and in `counters`). `Err` is
    /// the reply when a value is refused.
    pub(super) fn claim_values(
        &mut self,
        policy: &Policy,
        key: &VirtualKey,
        headers: &dyn RequestHeaders,
        counters: &mut Counters<'_>,
        env: &mut Env<'_>,
    ) -> Result<Vec<LimitId>, LocalReply> {
        let mut limits = Vec::new();
        for table in tables(policy, key) {
            let Some(per_value) = policy.per_values.get(table as usize) else {
                continue;
            };
            let hash = per_value::value_hash(&headers.get(&per_value.header).unwrap_or_default());
            let claim = match per_value::claim(policy, per_value, counters, &hash, env.now) {
                Ok(claim) => claim,
                Err(err) => match self.store_failure(err, counters, env) {
                    Some(reply) => return Err(reply),
                    None => continue,
                },
            };
            match claim {
                Claim::Slot(slot) => {
                    self.value_slots.push(table, slot);
                    limits.extend_from_slice(&per_value.limits);
                }
                Claim::Full => {
                    let message = format!(
                        "{}: every one of its {} counters for values of '{}' is in use; a \
                         counter is free again once every window of its value has ended",
                        per_value.owner_label, per_value.max_values, per_value.header
                    );
                    if policy.failure_mode == FailureMode::Open {
                        log::warn!(
                            "#{} {message}; admitting (failure_mode open)",
                            self.context_id
                        );
                        env.metrics.add(Metric::StoreFailures, 1);
                        continue;
                    }
                    let rejection = Rejection::new(RejectionKind::PerValueFull, message);
                    if let Some(reply) = self.refuse(vec![rejection], counters, env) {
                        return Err(reply);
                    }
                }
            }
        }
        Ok(limits)
    }
}

/// Fleet mode: the request's value of each `per_value` table on `key`'s way, as the hex
/// SHA-256 that keys its counters in Limitador.
pub(super) fn fleet_values(
    policy: &Policy,
    key: &VirtualKey,
    headers: &dyn RequestHeaders,
) -> Vec<(u32, String)> {
    tables(policy, key)
        .filter_map(|table| {
            let per_value = policy.per_values.get(table as usize)?;
            let hash = per_value::value_hash(&headers.get(&per_value.header).unwrap_or_default());
            let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
            Some((table, hex))
        })
        .collect()
}

/// `counters`' store: the host's, or with `per_value` slots, the
/// [`crate::per_value::SlotStore`] made from it in `slot_store` (which the caller keeps).
#[inline]
pub(super) fn store_with_slots<'a>(
    store: &'a dyn crate::store::CasStore,
    policy: &'a Policy,
    slots: &ValueSlots,
    slot_store: &'a mut Option<crate::per_value::SlotStore<'a>>,
) -> &'a dyn crate::store::CasStore {
    if slots.is_empty() {
        return store;
    }
    slot_store.insert(crate::per_value::SlotStore::new(store, policy, slots))
}

/// The `per_value` tables on `key`'s way: its own, then its team's.
pub(super) fn tables(policy: &Policy, key: &VirtualKey) -> impl Iterator<Item = u32> {
    let team = key
        .team
        .and_then(|t| policy.teams.get(t))
        .and_then(|t| t.owner.per_value);
    key.owner.per_value.into_iter().chain(team)
}
