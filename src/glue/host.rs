//! The core's seams backed by hostcalls: shared data as a [`CasStore`], the host clock, and
//! Envoy counters as a [`MetricsSink`].

use std::cell::Cell;
use std::rc::Rc;
use std::time::UNIX_EPOCH;

use proxy_wasm::hostcalls;
use proxy_wasm::types::{MetricType, Status};

use crate::metrics::{whole_micro_usd, Metric, MetricsSink};
use crate::money::Money;
use crate::store::{Cas, CasStore, SetOutcome, StoreError};

/// Envoy's shared data (process-wide, per `vm_id`).
pub struct SharedData;

impl CasStore for SharedData {
    fn get(&self, key: &[u8]) -> Result<Option<(Vec<u8>, Cas)>, StoreError> {
        let key =
            std::str::from_utf8(key).map_err(|_| StoreError::Host(Status::BadArgument as u32))?;
        match hostcalls::get_shared_data(key) {
            Ok((Some(value), Some(cas))) => Ok(Some((value, cas))),
            // A stored empty value comes back as (None, Some(cas)).
            Ok((None, Some(cas))) => Ok(Some((Vec::new(), cas))),
            Ok((_, None)) => Ok(None),
            Err(status) => Err(StoreError::Host(status as u32)),
        }
    }

    fn set(&self, key: &[u8], value: &[u8], cas: Cas) -> Result<SetOutcome, StoreError> {
        let key =
            std::str::from_utf8(key).map_err(|_| StoreError::Host(Status::BadArgument as u32))?;
        let cas = (cas != 0).then_some(cas);
        match hostcalls::set_shared_data(key, Some(value), cas) {
            Ok(()) => Ok(SetOutcome::Written),
            Err(Status::CasMismatch) => Ok(SetOutcome::CasMismatch),
            Err(status) => Err(StoreError::Host(status as u32)),
        }
    }
}

/// Nanoseconds since the Unix epoch, from the host (never from WASI or std: Envoy's clock is
/// the one tests can move).
pub fn now_nanos() -> i64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .and_then(|d| i64::try_from(d.as_nanos()).ok())
        .unwrap_or(0)
}

/// Counter ids, defined once per root context.
#[derive(Default)]
pub struct EnvoyMetrics {
    /// Envoy's id of each counter, by [`Metric::index`] (`None`: Envoy refused it).
    ids: Vec<Option<u32>>,
    /// Spend below one micro-dollar not yet reported (per VM), so small charges add up.
    spend_remainder: Cell<Money>,
}

impl EnvoyMetrics {
    /// Defines every counter as `<namespace>.<name>`. A counter Envoy refuses is skipped:
    /// metrics must never stop traffic.
    pub fn define(namespace: &str) -> Rc<EnvoyMetrics> {
        let ids = Metric::all()
            .into_iter()
            .map(|metric| {
                let name = format!("{namespace}.{}", metric.name());
                hostcalls::define_metric(MetricType::Counter, &name).ok()
            })
            .collect();
        Rc::new(EnvoyMetrics {
            ids,
            spend_remainder: Cell::new(Money::ZERO),
        })
    }
}

/// Sends increments to Envoy.
pub struct MetricsHandle(pub Rc<EnvoyMetrics>);

impl MetricsSink for MetricsHandle {
    fn add(&mut self, metric: Metric, delta: u64) {
        let Some(id) = self.0.ids.get(metric.index()).copied().flatten() else {
            return;
        };
        let delta = i64::try_from(delta).unwrap_or(i64::MAX);
        if delta > 0 {
            let _ = hostcalls::increment_metric(id, delta);
        }
    }

    fn add_spend(&mut self, cost: Money) {
        let (micro, remainder) = whole_micro_usd(self.0.spend_remainder.get(), cost);
        self.0.spend_remainder.set(remainder);
        if micro > 0 {
            self.add(Metric::SpendMicroUsd, micro);
        }
    }
}
