//! Settling an admitted request once its response has ended (or its stream was cut):
//! the usage it reported, or with reservations its estimate, charged to the limits that
//! admitted it, and its holds given back.

use std::rc::Rc;

use super::{is_budget, split_provider, Env, Flow, Stage};
use crate::accounting;
use crate::counter::Counters;
use crate::metrics::Metric;
use crate::money::Money;

impl Flow {
    /// Settles the response once: at the end of its body, or when the stream ended early.
    pub(super) fn charge(&mut self, env: &mut Env<'_>) {
        let Stage::Admitted { model } = &self.stage else {
            return;
        };
        if self.charged {
            return;
        }
        self.charged = true;
        let scanned = self
            .scanner
            .as_ref()
            .map(|s| s.result())
            .unwrap_or_default();
        let policy = Rc::clone(&self.policy);
        let from_response;
        let priced_model = match model {
            Some(model) => Some(model.as_str()),
            None => {
                from_response = split_provider(&policy, None, scanned.model.clone()).1;
                from_response.as_deref()
            }
        };
        let (usage, cost) = match (scanned.usage, self.estimate) {
            (Some(usage), _) => (usage, None),
            (None, estimate) => {
                env.metrics.add(Metric::UsageMissing, 1);
                // An upstream error is not billed by providers; any other response without
                // usage (a stream cut short, usage not requested) may have produced output,
                // so with reservations it is charged its estimate.
                let failed = self.response_status.is_some_and(|status| status >= 400);
                match estimate.filter(|_| !failed) {
                    Some(estimate) => {
                        log::debug!(
                            "#{} response carried no usage; charging its estimate",
                            self.context_id
                        );
                        (estimate.usage, Some(estimate.cost))
                    }
                    None => {
                        log::debug!(
                            "#{} response carried no usage; nothing charged",
                            self.context_id
                        );
                        (crate::usage::Usage::default(), Some(Money::ZERO))
                    }
                }
            }
        };
        let price = priced_model.and_then(|m| policy.pricing.lookup(m));
        let cost = match (cost, price) {
            (Some(cost), _) => cost,
            (None, Some(price)) => price.cost(&usage),
            (None, None) => {
                if self
                    .admission
                    .chargeable
                    .iter()
                    .chain(self.fleet_chargeable())
                    .any(|id| is_budget(&policy, *id))
                {
                    env.metrics.add(Metric::PricingMissing, 1);
                }
                Money::ZERO
            }
        };
        let mut counters = Counters::new(env.store, &policy.guard_key);
        let chargeable = &self.admission.chargeable;
        let held = std::mem::take(&mut self.admission.held);
        let tokens = u128::from(usage.total_tokens());
        if let Err(err) = accounting::settle(
            &policy,
            &mut counters,
            env.now,
            chargeable,
            &held,
            tokens,
            cost,
        ) {
            log::error!("#{} could not charge usage: {err}", self.context_id);
            env.metrics.add(Metric::StoreFailures, 1);
        }
        let limit_tokens = tokens;
        let tokens = usage.prompt_tokens().saturating_add(usage.output);
        if tokens > 0 {
            env.metrics.add(Metric::TokensCharged, tokens);
        }
        if cost > Money::ZERO {
            env.metrics.add_spend(cost);
        }
        self.flush_conflicts(&counters, env);
        log::debug!(
            "#{} charged {tokens} tokens and {} USD (model {})",
            self.context_id,
            cost,
            priced_model.unwrap_or("unknown")
        );
        self.fleet_charges(limit_tokens, cost, env);
    }
}
