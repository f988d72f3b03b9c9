//! Settling an admitted request once its response has ended (or its stream was cut):
//! the usage it reported, or the estimate of an exchange that reported none, charged to
//! the limits that admitted it, and its holds given back.

use std::rc::Rc;

use super::{is_budget, split_provider, Env, Flow, Stage};
use crate::accounting;
use crate::counter::Counters;
use crate::estimate::Estimate;
use crate::metrics::Metric;
use crate::money::Money;
use crate::pricing::Price;
use crate::usage::Usage;

/// What an exchange is charged.
enum Charge {
    /// The usage its response (body or headers) reported.
    Usage(Usage),
    /// No usage was reported: the estimate of the exchange.
    Estimate(Estimate),
}

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
        let price = priced_model.and_then(|m| policy.pricing.lookup(m));
        let (usage, cost) = match self.usage_to_charge(scanned.usage, price, env) {
            Some(Charge::Usage(usage)) => (usage, None),
            // Unpriced, the estimate costs nothing: counted as `pricing_missing` below.
            Some(Charge::Estimate(estimate)) => (estimate.usage, price.map(|_| estimate.cost)),
            None => (Usage::default(), Some(Money::ZERO)),
        };
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
        let mut slot_store = None;
        let store = super::per_value::store_with_slots(
            env.store,
            &policy,
            &self.value_slots,
            &mut slot_store,
        );
        let mut counters = Counters::new(store, &policy.guard_key);
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

    /// What the exchange is charged, `None` for nothing:
    /// - only the response to a `POST` is charged: a `GET` that polls a stored or
    ///   background response carries usage already charged when it was created;
    /// - the usage the response reported, in its body, else in its headers (Bedrock
    ///   InvokeModel);
    /// - else the exchange's estimate ([`Estimate::of_exchange`]), counted as
    ///   `usage_missing`, unless the path is one of the operator's `free_paths`, or the
    ///   upstream answered with something other than a success (an error is not billed;
    ///   a response whose status never came, a stream cut before its headers, is
    ///   charged). A background request's creation answers without usage, so it is
    ///   charged its estimate then.
    fn usage_to_charge(
        &self,
        scanned: Option<Usage>,
        price: Option<&Price>,
        env: &mut Env<'_>,
    ) -> Option<Charge> {
        if !self.meter.post {
            return None;
        }
        if let Some(usage) = scanned.or(self.meter.header_usage) {
            return Some(Charge::Usage(usage));
        }
        if self.meter.free_path {
            return None;
        }
        env.metrics.add(Metric::UsageMissing, 1);
        let succeeded = self
            .response_status
            .is_none_or(|status| (200..300).contains(&status));
        if !succeeded {
            log::debug!(
                "#{} upstream error without usage; nothing charged",
                self.context_id
            );
            return None;
        }
        let size = self
            .meter
            .request
            .unwrap_or_else(|| self.request_size_so_far());
        log::debug!(
            "#{} response carried no usage; charging the exchange's estimate",
            self.context_id
        );
        Some(Charge::Estimate(Estimate::of_exchange(
            &self.policy.reservation,
            size.bytes,
            size.max_output_tokens,
            self.meter.response_bytes,
            price,
        )))
    }
}
