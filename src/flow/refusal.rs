//! How a request is turned away: a local reply (enforce) or a logged would-be refusal
//! (shadow), after giving back what the request took; and what `failure_mode` makes of a
//! counter that cannot be read or written.

use super::{Env, Flow, RequestAction, Stage};
use crate::accounting;
use crate::admission;
use crate::config::{FailureMode, Mode};
use crate::counter::{CounterError, Counters};
use crate::metrics::Metric;
use crate::rejection::{LocalReply, Rejection, RejectionKind};

impl Flow {
    /// Refuses the request (enforce: returns the reply, after giving back the request's
    /// slots), or logs and counts the would-be refusal (shadow: returns `None`, and the
    /// request goes on as if admitted).
    pub(super) fn refuse(
        &mut self,
        rejections: Vec<Rejection>,
        counters: &mut Counters<'_>,
        env: &mut Env<'_>,
    ) -> Option<LocalReply> {
        let first = rejections.into_iter().next()?;
        if self.policy.mode == Mode::Shadow {
            log::info!(
                "#{} shadow: would reject with {} {}: {}",
                self.context_id,
                first.kind.status(),
                first.kind.as_str(),
                first.message
            );
            env.metrics.add(Metric::ShadowRejected, 1);
            return None;
        }
        if let Err(err) = self.give_back(counters, env) {
            log::warn!(
                "#{} could not give back request slots or reservations: {err}",
                self.context_id
            );
            env.metrics.add(Metric::StoreFailures, 1);
        }
        log::info!(
            "#{} rejected {} {}: {}",
            self.context_id,
            first.kind.status(),
            first.kind.as_str(),
            first.message
        );
        env.metrics.add(Metric::Rejected, 1);
        env.metrics.add(Metric::RejectedBy(first.kind), 1);
        self.flush_conflicts(counters, env);
        self.stage = Stage::Replied;
        Some(first.reply())
    }

    /// An unidentified request: refused, or (shadow) let through ungoverned.
    pub(super) fn refuse_or_bypass(
        &mut self,
        rejection: Rejection,
        counters: &mut Counters<'_>,
        env: &mut Env<'_>,
        remove_headers: Vec<String>,
    ) -> RequestAction {
        match self.refuse(vec![rejection], counters, env) {
            Some(reply) => RequestAction::Reply(reply),
            None => {
                self.stage = Stage::Bypass;
                RequestAction::Continue { remove_headers }
            }
        }
    }

    /// A counter could not be read or written: `failure_mode` decides. Open: count it and
    /// go on as if that check had passed (`None`; later checks still run). Closed: the reply,
    /// except in shadow mode, which never refuses: there the would-be 503 is logged and
    /// counted as a shadow rejection.
    pub(super) fn store_failure(
        &mut self,
        err: CounterError,
        counters: &mut Counters<'_>,
        env: &mut Env<'_>,
    ) -> Option<LocalReply> {
        if self.policy.mode == Mode::Shadow {
            env.metrics.add(Metric::StoreFailures, 1);
            if self.policy.failure_mode == FailureMode::Closed {
                env.metrics.add(Metric::ShadowRejected, 1);
                log::warn!(
                    "#{} shadow: would reject with 503 governance_unavailable: counter unavailable ({err})",
                    self.context_id
                );
            } else {
                log::warn!(
                    "#{} counter unavailable ({err}); admitting (failure_mode open)",
                    self.context_id
                );
            }
            return None;
        }
        match self.policy.failure_mode {
            FailureMode::Open => {
                env.metrics.add(Metric::StoreFailures, 1);
                log::warn!(
                    "#{} counter unavailable ({err}); admitting (failure_mode open)",
                    self.context_id
                );
                None
            }
            FailureMode::Closed => Some(self.unavailable(err, counters, env)),
        }
    }

    /// Refuses with 503 `governance_unavailable`, giving back the request's slots.
    pub(super) fn unavailable(
        &mut self,
        err: CounterError,
        counters: &mut Counters<'_>,
        env: &mut Env<'_>,
    ) -> LocalReply {
        env.metrics.add(Metric::StoreFailures, 1);
        log::error!(
            "#{} counter unavailable ({err}); rejecting",
            self.context_id
        );
        let rejection = Rejection::new(
            RejectionKind::GovernanceUnavailable,
            "governance counters are unavailable; try again shortly",
        );
        // Give back what was taken; a failing store may refuse this too.
        let _ = self.give_back(counters, env);
        env.metrics.add(Metric::Rejected, 1);
        env.metrics
            .add(Metric::RejectedBy(RejectionKind::GovernanceUnavailable), 1);
        self.flush_conflicts(counters, env);
        self.stage = Stage::Replied;
        rejection.reply()
    }

    /// Gives back the request slots, in-flight slots and reservations a refused request
    /// took.
    pub(super) fn give_back(
        &mut self,
        counters: &mut Counters<'_>,
        env: &mut Env<'_>,
    ) -> Result<(), CounterError> {
        let slots = std::mem::take(&mut self.admission.slots);
        let held = std::mem::take(&mut self.admission.held);
        let slots_result = admission::release(&self.policy, counters, env.now, &slots);
        let in_flight_result = self.release_in_flight(counters, env.now);
        accounting::give_back(&self.policy, counters, env.now, &held)?;
        slots_result.and(in_flight_result)
    }
}
