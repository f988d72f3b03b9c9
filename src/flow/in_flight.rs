//! The request's slots of `rate_limit.max_in_flight` (`in_flight.rs`): taken at admission,
//! given back once, whatever ends the exchange: the response's end, the stream's end
//! (client or upstream reset, Envoy's `on_log`), or a refusal after they were taken.

use std::rc::Rc;

use super::{Env, Flow};
use crate::config::{Policy, VirtualKey};
use crate::counter::{CounterError, Counters};
use crate::in_flight::{self, Acquired};
use crate::metrics::Metric;
use crate::rejection::LocalReply;

impl Flow {
    /// Takes a slot of each cap in `caps` (indices in `Policy::in_flight`, level order).
    /// `Some(reply)` when one is full (or the store fails, per `failure_mode`); a refusal
    /// gives back every slot the request took.
    pub(super) fn take_in_flight(
        &mut self,
        caps: &[Option<usize>],
        counters: &mut Counters<'_>,
        env: &mut Env<'_>,
    ) -> Option<LocalReply> {
        let policy = Rc::clone(&self.policy);
        for id in caps.iter().flatten().copied() {
            let Some(cap) = policy.in_flight.get(id) else {
                continue;
            };
            match in_flight::acquire(counters, cap, id, env.now) {
                Ok(Acquired::Taken(taken)) => self.in_flight.push(taken),
                Ok(Acquired::Full(in_flight)) => {
                    let rejection = in_flight::refusal(cap, in_flight);
                    if let Some(reply) = self.refuse(vec![rejection], counters, env) {
                        return Some(reply);
                    }
                }
                Err(err) => {
                    if let Some(reply) = self.store_failure(err, counters, env) {
                        return Some(reply);
                    }
                }
            }
        }
        None
    }

    /// Gives back every slot the request holds (each once: they leave the flow here).
    pub(super) fn release_in_flight(
        &mut self,
        counters: &mut Counters<'_>,
        now: i64,
    ) -> Result<(), CounterError> {
        let mut result = Ok(());
        for taken in std::mem::take(&mut self.in_flight) {
            let Some(cap) = self.policy.in_flight.get(taken.cap) else {
                continue;
            };
            if let Err(err) = in_flight::release(counters, cap, taken, now) {
                result = result.and(Err(err));
            }
        }
        result
    }

    /// The exchange has ended (response end, or the stream's end for any reason): its
    /// slots go back.
    pub(super) fn end_in_flight(&mut self, env: &mut Env<'_>) {
        if self.in_flight.is_empty() {
            return;
        }
        let policy = Rc::clone(&self.policy);
        let mut counters = Counters::new(env.store, &policy.guard_key);
        if let Err(err) = self.release_in_flight(&mut counters, env.now) {
            // The slot is reclaimed after in_flight_timeout.
            log::warn!(
                "#{} could not give back an in-flight slot: {err}",
                self.context_id
            );
            env.metrics.add(Metric::StoreFailures, 1);
        }
        self.flush_conflicts(&counters, env);
    }
}

/// The caps of a key, its team and its customer (level order).
pub(super) fn hierarchy_caps(policy: &Policy, key: &VirtualKey) -> [Option<usize>; 3] {
    let team = key.team.and_then(|t| policy.teams.get(t));
    let customer = key.customer.and_then(|c| policy.customers.get(c));
    [
        key.owner.in_flight,
        team.and_then(|t| t.owner.in_flight),
        customer.and_then(|c| c.in_flight),
    ]
}
