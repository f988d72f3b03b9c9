//! The Envoy counters the filter keeps (docs/operating.md), named once here.

use crate::money::Money;
use crate::rejection::RejectionKind;

/// One counter. The glue defines each as `<namespace>.<name>` (`governance.admitted` by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    Admitted,
    Rejected,
    RejectedBy(RejectionKind),
    ShadowRejected,
    CasConflicts,
    StoreFailures,
    UsageMissing,
    PricingMissing,
    TokensCharged,
    SpendMicroUsd,
    /// Calls made to Limitador (fleet mode).
    FleetCalls,
    /// Requests Limitador's counters refused.
    FleetRefused,
    /// Requests decided while Limitador could not be asked.
    FleetUnavailable,
    /// Charges still undelivered to Limitador after their retries.
    FleetChargesFailed,
    /// Expected limits found missing or different in Limitador.
    FleetLimitsMismatch,
    /// Streaming completions requests given `stream_options.include_usage`.
    StreamUsageInjected,
    /// Completions requests whose body was larger than `max_rewrite_body_bytes`: passed on
    /// unread, so a stream among them carries usage only if the client asked for it.
    StreamUsageUnchecked,
    /// Thresholds of a limit crossed (threshold alerts), each once per window.
    ThresholdCrossed,
    /// Alert events still undelivered after their retries.
    AlertsFailed,
    /// Requests whose output cap was lowered to fit the room left (`clamp_output`).
    OutputClamped,
}

impl Metric {
    /// Every counter, in a fixed order (the glue defines them all in `on_configure`).
    pub fn all() -> Vec<Metric> {
        let mut all = vec![
            Metric::Admitted,
            Metric::Rejected,
            Metric::ShadowRejected,
            Metric::CasConflicts,
            Metric::StoreFailures,
            Metric::UsageMissing,
            Metric::PricingMissing,
            Metric::TokensCharged,
            Metric::SpendMicroUsd,
            Metric::FleetCalls,
            Metric::FleetRefused,
            Metric::FleetUnavailable,
            Metric::FleetChargesFailed,
            Metric::FleetLimitsMismatch,
            Metric::StreamUsageInjected,
            Metric::StreamUsageUnchecked,
            Metric::ThresholdCrossed,
            Metric::AlertsFailed,
            Metric::OutputClamped,
        ];
        all.extend(
            RejectionKind::ALL
                .iter()
                .map(|kind| Metric::RejectedBy(*kind)),
        );
        all
    }

    /// This counter's position in [`Metric::all`], so sinks can keep ids in a plain table.
    pub fn index(self) -> usize {
        match self {
            Metric::Admitted => 0,
            Metric::Rejected => 1,
            Metric::ShadowRejected => 2,
            Metric::CasConflicts => 3,
            Metric::StoreFailures => 4,
            Metric::UsageMissing => 5,
            Metric::PricingMissing => 6,
            Metric::TokensCharged => 7,
            Metric::SpendMicroUsd => 8,
            Metric::FleetCalls => 9,
            Metric::FleetRefused => 10,
            Metric::FleetUnavailable => 11,
            Metric::FleetChargesFailed => 12,
            Metric::FleetLimitsMismatch => 13,
            Metric::StreamUsageInjected => 14,
            Metric::StreamUsageUnchecked => 15,
            Metric::ThresholdCrossed => 16,
            Metric::AlertsFailed => 17,
            Metric::OutputClamped => 18,
            Metric::RejectedBy(kind) => RejectionKind::ALL
                .iter()
                .position(|k| *k == kind)
                .unwrap_or(0)
                .saturating_add(19),
        }
    }

    /// The name after the namespace prefix.
    pub fn name(self) -> String {
        match self {
            Metric::Admitted => "admitted".to_string(),
            Metric::Rejected => "rejected".to_string(),
            Metric::RejectedBy(kind) => format!("rejected.{}", kind.as_str()),
            Metric::ShadowRejected => "shadow_rejected".to_string(),
            Metric::CasConflicts => "cas_conflicts".to_string(),
            Metric::StoreFailures => "store_failures".to_string(),
            Metric::UsageMissing => "usage_missing".to_string(),
            Metric::PricingMissing => "pricing_missing".to_string(),
            Metric::TokensCharged => "tokens_charged".to_string(),
            Metric::SpendMicroUsd => "spend_micro_usd".to_string(),
            Metric::FleetCalls => "fleet.calls".to_string(),
            Metric::FleetRefused => "fleet.refused".to_string(),
            Metric::FleetUnavailable => "fleet.unavailable".to_string(),
            Metric::FleetChargesFailed => "fleet.charges_failed".to_string(),
            Metric::FleetLimitsMismatch => "fleet.limits_mismatch".to_string(),
            Metric::StreamUsageInjected => "stream_usage_injected".to_string(),
            Metric::StreamUsageUnchecked => "stream_usage_unchecked".to_string(),
            Metric::ThresholdCrossed => "threshold_crossed".to_string(),
            Metric::AlertsFailed => "alerts_failed".to_string(),
            Metric::OutputClamped => "output_clamped".to_string(),
        }
    }
}

/// Where the core reports counter increments. Deltas of 0 are never sent: Envoy refuses a
/// counter increment that is not positive.
pub trait MetricsSink {
    fn add(&mut self, metric: Metric, delta: u64);

    /// Spend, in exact money. Sinks turn it into whole micro-dollars for the
    /// `spend_micro_usd` counter, carrying the remainder so many small charges still add up.
    fn add_spend(&mut self, cost: Money);
}

/// Splits `carried + cost` into whole micro-dollars and the femto-dollar remainder.
pub fn whole_micro_usd(carried: Money, cost: Money) -> (u64, Money) {
    let total = carried.saturating_add(cost);
    if let Ok(femto) = u64::try_from(total.femto()) {
        // The usual case (below $18,446): u64 division instead of u128.
        let remainder = Money::from_femto(u128::from(femto % 1_000_000_000));
        return (femto / 1_000_000_000, remainder);
    }
    let micro = total.micro_usd();
    let remainder = Money::from_femto(total.femto() % 1_000_000_000);
    (u64::try_from(micro).unwrap_or(u64::MAX), remainder)
}

/// Collects increments in memory (native tests).
#[derive(Debug, Default)]
pub struct MemoryMetrics {
    pub values: std::collections::HashMap<String, u64>,
    spend_remainder: Money,
}

impl MetricsSink for MemoryMetrics {
    fn add(&mut self, metric: Metric, delta: u64) {
        let slot = self.values.entry(metric.name()).or_insert(0);
        *slot = slot.saturating_add(delta);
    }

    fn add_spend(&mut self, cost: Money) {
        let (micro, remainder) = whole_micro_usd(self.spend_remainder, cost);
        self.spend_remainder = remainder;
        if micro > 0 {
            self.add(Metric::SpendMicroUsd, micro);
        }
    }
}

impl MemoryMetrics {
    pub fn get(&self, name: &str) -> u64 {
        self.values.get(name).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_micro_usd_is_exact_on_both_sides_of_u64() {
        let micro = 1_000_000_000u128;
        for (carried, cost) in [
            (0u128, 0u128),
            (999_999_999, 1),
            (123, 4_567_890_123),
            (u128::from(u64::MAX) - 5, 3),
            (u128::from(u64::MAX), 1),
            (u128::from(u64::MAX) * 7 + 11, micro * 3 + 2),
        ] {
            let (whole, rest) =
                whole_micro_usd(Money::from_femto(carried), Money::from_femto(cost));
            let total = carried + cost;
            assert_eq!(u128::from(whole), total / micro, "{carried} + {cost}");
            assert_eq!(rest.femto(), total % micro, "{carried} + {cost}");
        }
    }

    #[test]
    fn index_is_the_position_in_all() {
        for (i, metric) in Metric::all().into_iter().enumerate() {
            assert_eq!(metric.index(), i, "{metric:?}");
        }
    }
}
