//! `reservation.clamp_output` in the request's way (docs/reservations.md, "Clamping the
//! output"): when a request's estimate does not fit, the output the room left affords;
//! its body is rewritten with that cap by [`Flow::rewrite_request_body`].

use std::rc::Rc;

use super::{Env, Flow, Rewrite};
use crate::admission::{self, committed, Evaluation};
use crate::clamp::affordable_output;
use crate::config::{LimitId, LimitKind, Mode};
use crate::counter::Counters;
use crate::estimate::Estimate;
use crate::metrics::Metric;
use crate::money::Money;
use crate::pricing::Price;

impl Flow {
    /// After `estimate` was refused on `limits`: holds instead the estimate of the same
    /// request with its output lowered to what the room left in every token limit and
    /// budget affords, and `true`, when the prompt fits, some output does, and the body is
    /// held to be rewritten. The room is read, then held by the same compare-and-swap as
    /// any reservation: a request in flight that takes it first makes this one refused
    /// after all, so the bound of reservations holds.
    pub(super) fn clamp_to_room(
        &mut self,
        price: Option<&Price>,
        limits: &[LimitId],
        estimate: &Estimate,
        counters: &mut Counters<'_>,
        env: &mut Env<'_>,
    ) -> bool {
        let policy = Rc::clone(&self.policy);
        // Shadow mode changes nothing of a request.
        if policy.mode != Mode::Enforce || self.meter.rewrite != Rewrite::Ready {
            return false;
        }
        let mut token_room: Option<u128> = None;
        let mut money_room: Option<u128> = None;
        for limit in limits.iter().filter_map(|&id| policy.limits.get(id)) {
            let room = match counters.read(limit, env.now) {
                Ok(record) => limit.max.saturating_sub(committed(&record)),
                Err(_) => return false,
            };
            let slot = match limit.kind {
                LimitKind::Tokens => &mut token_room,
                LimitKind::Budget => &mut money_room,
                LimitKind::Requests => continue,
            };
            *slot = Some(slot.map_or(room, |other| other.min(room)));
        }
        let money = money_room
            .zip(price)
            .map(|(room, p)| (Money::from_femto(room), p));
        let (prompt, wanted) = (estimate.usage.input_uncached, estimate.usage.output);
        let Some(cap) = affordable_output(prompt, wanted, token_room, money) else {
            return false;
        };
        if cap >= wanted {
            return false;
        }
        let Some(size) = self.meter.request.as_mut() else {
            return false;
        };
        let clamped = Estimate::of_request(&policy.reservation, size.bytes, Some(cap), price);
        let held = admission::reserve(
            &policy,
            counters,
            env.now,
            limits,
            &clamped,
            Evaluation::StopAtFirst,
            &mut self.admission,
        );
        if !matches!(held, Ok(ref refusals) if refusals.is_empty()) {
            return false;
        }
        // A response without usage is charged with the cap the request went with.
        size.max_output_tokens = Some(cap);
        self.estimate = Some(clamped);
        self.meter.clamped_output = Some(cap);
        env.metrics.add(Metric::OutputClamped, 1);
        log::info!(
            "#{} output cap lowered from {wanted} to {cap} tokens to fit the room left",
            self.context_id
        );
        true
    }
}
