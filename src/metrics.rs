//! The Envoy counters the filter keeps (SPEC.md §9), named once here.

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
        ];
        all.extend(
            RejectionKind::ALL
                .iter()
                .map(|kind| Metric::RejectedBy(*kind)),
        );
        all
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
        }
    }
}

/// Where the core reports counter increments. Deltas of 0 are never sent: Envoy refuses a
/// counter increment that is not positive.
pub trait MetricsSink {
    fn add(&mut self, metric: Metric, delta: u64);
}

/// Collects increments in memory (native tests).
#[derive(Debug, Default)]
pub struct MemoryMetrics {
    pub values: std::collections::HashMap<String, u64>,
}

impl MetricsSink for MemoryMetrics {
    fn add(&mut self, metric: Metric, delta: u64) {
        let slot = self.values.entry(metric.name()).or_insert(0);
        *slot = slot.saturating_add(delta);
    }
}

impl MemoryMetrics {
    pub fn get(&self, name: &str) -> u64 {
        self.values.get(name).copied().unwrap_or(0)
    }
}
