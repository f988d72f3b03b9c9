//! One request's round of calls to Limitador, made in parallel, and the decision taken once
//! every answer is in.
//!
//! For each of the request's limits, in level order (provider config, key, team, customer):
//! - a request limit takes a slot: `check_and_report`, delta 1;
//! - a token limit or budget must still have room: `check`, delta 1 (used < max), or, with
//!   reservations, the request's estimate is reported if it fits: `check_and_report`, delta
//!   the estimate (only the difference is reported at settlement);
//! - an owner whose limits this worker has not compared with Limitador's yet adds a
//!   `GET /limits/{namespace}`.
//!
//! The first refusal in the order of the local checks decides (requests, then tokens, then
//! budgets; within each, level order). Limitador cannot take back what it counted: a slot
//! taken at one level stays counted when another level refuses.

use super::limits::{self, LimitadorLimit};
use super::names;
use super::protocol::{self, Answer, Call, Operation, Verdict};
use super::{FleetPolicy, Verified, RECHECK_NANOS};
use crate::admission::Seen;
use crate::config::{LimitId, LimitKind, Policy};
use crate::counter::Record;
use crate::estimate::Estimate;
use crate::window::WindowError;

const NANOS_PER_SEC: i64 = 1_000_000_000;

/// Why a call is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A request slot (`check_and_report`, delta 1).
    Slot(LimitId),
    /// Room left on a token limit or budget (`check`, delta 1).
    Room(LimitId),
    /// An estimate reported on a token limit or budget (`check_and_report`, delta `units`).
    Hold { limit: LimitId, units: u64 },
    /// Compare an owner's limits with Limitador's (`GET /limits/{namespace}`).
    Verify { owner: usize },
}

/// A call of the round, with what the filter knows of the window it counts in.
#[derive(Debug, Clone)]
pub struct Planned {
    pub purpose: Purpose,
    pub call: Call,
    /// The end of the window (calendar limits), as computed here.
    pub window_end: Option<i64>,
}

/// What the round decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Every limit fits.
    Admitted(Admitted),
    /// `limit` refused; `retry_after_secs` when known (the window's end), else Limitador's
    /// counters must be asked for it.
    Refused {
        limit: LimitId,
        retry_after_secs: Option<u64>,
        /// The refusal shows the limit has no room at all left (worth remembering).
        exhausted: bool,
        /// The estimate that did not fit, in the filter's units (reservations).
        estimate: Option<u128>,
        /// What an admission would charge (shadow mode admits refused requests): the
        /// refused limits included, as slots to report and limits to charge.
        admitted: Admitted,
        /// What Limitador said is left, in its units (`None`: it did not say).
        remaining: Option<u64>,
    },
    /// Limitador could not be asked (`unreachable`: a call found no answer) or an owner's
    /// limits do not match: handled as the `unavailable` setting says.
    Unavailable {
        admitted: Admitted,
        unreachable: bool,
    },
}

/// What an admission through the fleet leaves to the rest of the request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Admitted {
    /// Token limits and budgets to charge at the end.
    pub chargeable: Vec<LimitId>,
    /// Estimates reported at admission, in Limitador's units, per limit.
    pub held: Vec<(LimitId, u64)>,
    /// Request limits whose slot Limitador did not count (to report later, when admitted
    /// without it).
    pub uncounted_slots: Vec<LimitId>,
    /// Counters as Limitador described them, for the quota headers.
    pub seen: Vec<Seen>,
}

/// A round in progress.
#[derive(Debug, Clone, Default)]
pub struct Round {
    pub planned: Vec<Planned>,
    answers: Vec<Option<Answer>>,
    /// Owners handled as unavailable without asking (limits known not to match).
    mismatched: bool,
}

impl Round {
    /// The calls for `limits` (level order) at `now`; `estimate` with reservations.
    pub fn plan(
        policy: &Policy,
        fleet: &FleetPolicy,
        limits: &[LimitId],
        values: &[(u32, String)],
        estimate: Option<&Estimate>,
        now: i64,
    ) -> Result<Round, WindowError> {
        let mut round = Round::default();
        let mut owners: Vec<usize> = Vec::new();
        for kind in [LimitKind::Requests, LimitKind::Tokens, LimitKind::Budget] {
            for &id in limits {
                let (Some(limit), Some(named)) = (policy.limits.get(id), fleet.limits.get(id))
                else {
                    continue;
                };
                if limit.kind != kind {
                    continue;
                }
                let value = match limit.per_value {
                    Some(table) => match values.iter().find(|(t, _)| *t == table) {
                        Some((_, value)) => Some(value.as_str()),
                        None => continue,
                    },
                    None => None,
                };
                if !owners.contains(&named.owner) {
                    owners.push(named.owner);
                }
                let (label, window_end) = names::window_label(limit, now)?;
                let (purpose, operation, delta) = match (kind, estimate) {
                    (LimitKind::Requests, _) => (Purpose::Slot(id), Operation::CheckAndReport, 1),
                    (_, Some(estimate)) => {
                        let units = names::units(kind, estimate.amount(kind));
                        if units == 0 {
                            (Purpose::Room(id), Operation::Check, 1)
                        } else {
                            (
                                Purpose::Hold { limit: id, units },
                                Operation::CheckAndReport,
                                units,
                            )
                        }
                    }
                    (_, None) => (Purpose::Room(id), Operation::Check, 1),
                };
                round.planned.push(Planned {
                    purpose,
                    call: protocol::counter_call(
                        operation,
                        &named.namespace,
                        &named.limit_id,
                        &label,
                        value,
                        delta,
                    ),
                    window_end,
                });
            }
        }
        for owner in owners {
            match fleet.verified(owner) {
                Verified::Matching => {}
                Verified::Mismatch { at } if now.saturating_sub(at) < RECHECK_NANOS => {
                    round.mismatched = true;
                }
                Verified::Mismatch { .. } | Verified::Unknown => {
                    if let Some(o) = fleet.owners.get(owner) {
                        round.planned.push(Planned {
                            purpose: Purpose::Verify { owner },
                            call: protocol::limits_call(&o.namespace),
                            window_end: None,
                        });
                    }
                }
            }
        }
        round.answers = vec![None; round.planned.len()];
        Ok(round)
    }

    /// Whether an owner of the round is known not to match: no call is worth making.
    pub fn mismatched(&self) -> bool {
        self.mismatched
    }

    pub fn calls(&self) -> impl Iterator<Item = &Call> {
        self.planned.iter().map(|p| &p.call)
    }

    /// Records the answer to call `index`; true once every call has one.
    pub fn answer(&mut self, index: usize, answer: Answer) -> bool {
        if let Some(slot) = self.answers.get_mut(index) {
            *slot = Some(answer);
        }
        self.complete()
    }

    pub fn complete(&self) -> bool {
        self.answers.iter().all(Option::is_some)
    }

    /// Compares the owners' limits that were asked for; a mismatch is logged, counted in
    /// `mismatches` and remembered. False if any owner's limits do not match (or could not be
    /// read).
    pub fn verify_owners(
        &self,
        policy: &Policy,
        fleet: &FleetPolicy,
        now: i64,
        mismatches: &mut u64,
    ) -> bool {
        let mut all_match = !self.mismatched;
        for (planned, answer) in self.planned.iter().zip(&self.answers) {
            let (Purpose::Verify { owner }, Some(answer)) = (planned.purpose, answer) else {
                continue;
            };
            let Some(held) = protocol::parse_limits(answer) else {
                // Not read: asked again by the next request.
                all_match = false;
                continue;
            };
            let differences = differences(&super::owner_expected(policy, fleet, owner), &held);
            if differences.is_empty() {
                fleet.set_verified(owner, Verified::Matching);
            } else {
                for (expected, difference) in &differences {
                    log::warn!(
                        "fleet: Limitador's limit {:?} of namespace {} is {difference}; \
                         requests of this owner are handled as 'unavailable' says until it matches",
                        expected
                            .conditions
                            .first()
                            .map(String::as_str)
                            .unwrap_or(""),
                        expected.namespace
                    );
                }
                *mismatches = mismatches.saturating_add(differences.len() as u64);
                fleet.set_verified(owner, Verified::Mismatch { at: now });
                all_match = false;
            }
        }
        all_match
    }

    /// The decision, once every answer is in (`verified`: what [`Round::verify_owners`]
    /// said).
    pub fn decide(&self, policy: &Policy, verified: bool, now: i64) -> Decision {
        let mut admitted = Admitted::default();
        let mut unreachable = false;
        let mut refusal: Option<FirstRefusal> = None;
        for (planned, answer) in self.planned.iter().zip(&self.answers) {
            let answer = answer.clone().unwrap_or_default();
            let verdict = answer.verdict();
            let limit_id = match planned.purpose {
                Purpose::Slot(id) | Purpose::Room(id) | Purpose::Hold { limit: id, .. } => id,
                Purpose::Verify { .. } => {
                    unreachable |= answer.status.is_none_or(|s| s >= 500);
                    continue;
                }
            };
            let Some(limit) = policy.limits.get(limit_id) else {
                continue;
            };
            match verdict {
                Verdict::Unavailable => {
                    unreachable = true;
                    if let Purpose::Slot(id) = planned.purpose {
                        admitted.uncounted_slots.push(id);
                    }
                }
                Verdict::Limited => {
                    if refusal.is_none() {
                        let retry_after_secs = planned
                            .window_end
                            .map(|end| crate::admission::seconds_until(now, end))
                            .or(answer.reset_secs);
                        let (exhausted, estimate, remaining) = match planned.purpose {
                            Purpose::Hold { units, .. } => (
                                answer.remaining == Some(0),
                                Some(names::from_units(limit.kind, units)),
                                answer.remaining,
                            ),
                            _ => (true, None, Some(0)),
                        };
                        refusal = Some(FirstRefusal {
                            limit: limit_id,
                            retry_after_secs,
                            exhausted,
                            estimate,
                            remaining,
                        });
                    }
                    // Counted nothing: a request admitted anyway (shadow) reports its slot.
                    if let Purpose::Slot(id) = planned.purpose {
                        admitted.uncounted_slots.push(id);
                    }
                }
                Verdict::Fits => {}
            }
            match planned.purpose {
                Purpose::Room(id) => admitted.chargeable.push(id),
                Purpose::Hold { limit, units } => {
                    admitted.chargeable.push(limit);
                    if verdict == Verdict::Fits {
                        admitted.held.push((limit, units));
                    }
                }
                Purpose::Slot(_) | Purpose::Verify { .. } => {}
            }
            if verdict == Verdict::Fits {
                if let Some(record) = seen_record(limit, planned, &answer, now) {
                    admitted.seen.push(Seen {
                        limit: limit_id,
                        record,
                    });
                }
            }
        }
        if let Some(first) = refusal {
            return Decision::Refused {
                limit: first.limit,
                retry_after_secs: first.retry_after_secs,
                exhausted: first.exhausted,
                estimate: first.estimate,
                remaining: first.remaining,
                admitted,
            };
        }
        if unreachable || !verified {
            return Decision::Unavailable {
                admitted,
                unreachable,
            };
        }
        Decision::Admitted(admitted)
    }
}

/// The first limit Limitador refused, as [`Decision::Refused`] reports it.
struct FirstRefusal {
    limit: LimitId,
    retry_after_secs: Option<u64>,
    exhausted: bool,
    estimate: Option<u128>,
    remaining: Option<u64>,
}

/// The counter as Limitador described it in a `check_and_report` answer (remaining and
/// reset), for the quota headers; `None` when it said nothing (a `check`).
fn seen_record(
    limit: &crate::config::Limit,
    planned: &Planned,
    answer: &Answer,
    now: i64,
) -> Option<Record> {
    let remaining = names::from_units(limit.kind, answer.remaining?);
    let end = planned.window_end.or_else(|| {
        let secs = i64::try_from(answer.reset_secs?).ok()?;
        now.checked_add(secs.checked_mul(NANOS_PER_SEC)?)
    })?;
    let held = match planned.purpose {
        Purpose::Hold { units, .. } => names::from_units(limit.kind, units),
        _ => 0,
    };
    let committed = limit.max.saturating_sub(remaining);
    Some(Record {
        started: true,
        anchor: now,
        window_start: now,
        window_end: end,
        used: committed.saturating_sub(held),
        reserved: held,
        second_use: 0,
    })
}

/// Every expected limit Limitador does not hold as expected, with how it differs.
fn differences(
    expected: &[LimitadorLimit],
    held: &[LimitadorLimit],
) -> Vec<(LimitadorLimit, String)> {
    expected
        .iter()
        .filter_map(|e| limits::difference(e, held).map(|d| (e.clone(), d)))
        .collect()
}
