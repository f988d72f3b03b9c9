//! Settling an admitted request once its response has ended (or its stream was cut):
//! the usage it reported, or the estimate of an exchange that reported none, charged to
//! the limits that admitted it, and its holds given back.

use std::rc::Rc;

use super::{is_budget, split_provider, Env, Flow, Stage};
use crate::accounting;
use crate::alerts;
use crate::config::alerts::Alerts;
use crate::config::{LimitId, Policy};
use crate::counter::Counters;
use crate::counter::Record;
use crate::estimate::Estimate;
use crate::filter_state::ChargeRecord;
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
        // Two calls rather than one with an optional callback: without alerts the empty
        // closure compiles away, and the charge costs what it did before alerts existed.
        let settled = match policy.alerts.as_ref() {
            None => accounting::settle(
                &policy,
                &mut counters,
                env.now,
                chargeable,
                &held,
                tokens,
                cost,
                |_, _, _, _| {},
            ),
            Some(alerts) => accounting::settle(
                &policy,
                &mut counters,
                env.now,
                chargeable,
                &held,
                tokens,
                cost,
                |counters, id, before, record| {
                    announce_crossings(&policy, alerts, counters, id, before, record, env);
                },
            ),
        };
        if let Err(err) = settled {
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
        if policy.filter_state {
            if let Some((key, _)) = self.target {
                self.charge_record = Some(Box::new(ChargeRecord {
                    key,
                    model: priced_model.unwrap_or_default().to_string(),
                    prompt_tokens: usage.prompt_tokens(),
                    output_tokens: usage.output,
                    cost,
                }));
            }
        }
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

/// Announces the thresholds of limit `id` that a charge (from `before` to the `record` it
/// wrote) crossed, each once per window on this Envoy (`alerts.rs`).
fn announce_crossings(
    policy: &Policy,
    alerts: &Alerts,
    counters: &mut Counters<'_>,
    id: LimitId,
    before: u128,
    record: &Record,
    env: &mut Env<'_>,
) {
    let mask = alerts::crossed(alerts, id, before, record.used);
    if mask == 0 {
        return;
    }
    let Some(limit) = policy.limits.get(id) else {
        return;
    };
    let won = match alerts::claim(
        counters,
        &alerts::record_key(limit),
        record.window_start,
        mask,
    ) {
        Ok(won) => won,
        Err(err) => {
            log::error!("threshold alert not recorded: {err}");
            env.metrics.add(Metric::StoreFailures, 1);
            return;
        }
    };
    for (bit, &ppm) in alerts.thresholds_ppm.iter().enumerate() {
        if won
            & 1u8
                .checked_shl(u32::try_from(bit).unwrap_or(u32::MAX))
                .unwrap_or(0)
            == 0
        {
            continue;
        }
        env.metrics.add(Metric::ThresholdCrossed, 1);
        let event = alerts::event(limit, record, ppm);
        log::warn!("threshold crossed: {}", String::from_utf8_lossy(&event));
        if alerts.post.is_some() {
            env.outbox.alert(event);
        }
    }
}
