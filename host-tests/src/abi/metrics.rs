//! Metrics: ids per VM with the type in the low 2 bits, values aggregated by name across all
//! VMs of a host (one Envoy stat), and Envoy's rules (a counter delta must be > 0).

use super::{guard, memory, HostResult, Status};
use crate::state::VmState;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use wasmtime::{Caller, Linker};

/// proxy-wasm `MetricType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// 0: monotonically increasing.
    Counter,
    /// 1: settable, may go down.
    Gauge,
    /// 2: recorded values.
    Histogram,
}

#[derive(Debug, Clone)]
struct Value {
    kind: MetricKind,
    value: i64,
    samples: Vec<u64>,
}

/// The host's stats store, shared by all its VMs. Cloning shares it.
#[derive(Debug, Clone, Default)]
pub struct Metrics(Arc<Mutex<BTreeMap<String, Value>>>);

impl Metrics {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Value>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
    /// Current value of a counter or gauge, `None` if never defined.
    pub fn value(&self, name: &str) -> Option<i64> {
        self.lock().get(name).map(|v| v.value)
    }
    /// Kind of a defined metric.
    pub fn kind(&self, name: &str) -> Option<MetricKind> {
        self.lock().get(name).map(|v| v.kind)
    }
    /// Values recorded into a histogram.
    pub fn samples(&self, name: &str) -> Vec<u64> {
        self.lock()
            .get(name)
            .map(|v| v.samples.clone())
            .unwrap_or_default()
    }
    /// Every defined metric name.
    pub fn names(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }
    fn define(&self, name: &str, kind: MetricKind) {
        self.lock().entry(name.to_string()).or_insert(Value {
            kind,
            value: 0,
            samples: Vec::new(),
        });
    }
    fn update(&self, name: &str, f: impl FnOnce(&mut Value) -> Status) -> Status {
        match self.lock().get_mut(name) {
            Some(v) => f(v),
            None => Status::NotFound,
        }
    }
}

fn name_of(c: &Caller<'_, VmState>, id: i32) -> Option<(MetricKind, String)> {
    c.data().metric_ids.get(&(id as u32)).cloned()
}

pub(crate) fn link(linker: &mut Linker<VmState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_define_metric",
        |mut c: Caller<'_, VmState>, kind: i32, np: i32, nl: i32, ret: i32| -> HostResult {
            guard(&c, "proxy_define_metric")?;
            let kind_ = match kind {
                0 => MetricKind::Counter,
                1 => MetricKind::Gauge,
                2 => MetricKind::Histogram,
                _ => return Ok(Status::BadArgument.code()),
            };
            let Ok(name) = memory::read(&c, np, nl) else {
                return Ok(Status::InvalidMemoryAccess.code());
            };
            let name = String::from_utf8_lossy(&name).into_owned();
            let st = c.data_mut();
            let slot = st
                .next_metric_id
                .get_mut(kind as usize)
                .ok_or_else(|| wasmtime::Error::msg("metric kind"))?;
            let id = *slot;
            *slot = slot.wrapping_add(4);
            st.metric_ids.insert(id, (kind_, name.clone()));
            st.shared.metrics.define(&name, kind_);
            if memory::write_u32(&mut c, ret, id).is_err() {
                return Ok(Status::InvalidMemoryAccess.code());
            }
            Ok(Status::Ok.code())
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_increment_metric",
        |c: Caller<'_, VmState>, id: i32, delta: i64| -> HostResult {
            guard(&c, "proxy_increment_metric")?;
            let Some((kind, name)) = name_of(&c, id) else {
                return Ok(Status::NotFound.code());
            };
            let status = c.data().shared.metrics.update(&name, |v| match kind {
                MetricKind::Counter if delta > 0 => {
                    v.value = v.value.saturating_add(delta);
                    Status::Ok
                }
                MetricKind::Gauge => {
                    v.value = v.value.saturating_add(delta);
                    Status::Ok
                }
                _ => Status::BadArgument,
            });
            Ok(status.code())
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_record_metric",
        |c: Caller<'_, VmState>, id: i32, value: i64| -> HostResult {
            guard(&c, "proxy_record_metric")?;
            let Some((kind, name)) = name_of(&c, id) else {
                return Ok(Status::NotFound.code());
            };
            let status = c.data().shared.metrics.update(&name, |v| {
                match kind {
                    MetricKind::Counter => v.value = v.value.saturating_add(value),
                    MetricKind::Gauge => v.value = value,
                    MetricKind::Histogram => v.samples.push(value as u64),
                }
                Status::Ok
            });
            Ok(status.code())
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_metric",
        |mut c: Caller<'_, VmState>, id: i32, ret: i32| -> HostResult {
            guard(&c, "proxy_get_metric")?;
            let Some((kind, name)) = name_of(&c, id) else {
                return Ok(Status::NotFound.code());
            };
            if kind == MetricKind::Histogram {
                return Ok(Status::BadArgument.code());
            }
            let Some(value) = c.data().shared.metrics.value(&name) else {
                return Ok(Status::NotFound.code());
            };
            if memory::write_u64(&mut c, ret, value as u64).is_err() {
                return Ok(Status::InvalidMemoryAccess.code());
            }
            Ok(Status::Ok.code())
        },
    )?;
    Ok(())
}
