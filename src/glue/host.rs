//! The core's seams backed by hostcalls: shared data as a [`CasStore`], the host clock, and
//! Envoy counters as a [`MetricsSink`].

use std::cell::Cell;
use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::types::{MetricType, Status};

use crate::metrics::{whole_micro_usd, Metric, MetricsSink};
use crate::money::Money;
use crate::store::{Cas, CasStore, SetOutcome, StoreError};

/// Envoy's shared data (process-wide, per `vm_id`).
///
/// The two hostcalls are made directly (the same imports the SDK uses): the SDK takes keys
/// as `&str`, which would mean a UTF-8 check of every key on every call, and panics on a
/// status it does not expect, where this returns a [`StoreError`].
pub struct SharedData;

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_get_shared_data(
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
        return_cas: *mut u32,
    ) -> u32;
    fn proxy_set_shared_data(
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
        cas: u32,
    ) -> u32;
}

const STATUS_OK: u32 = Status::Ok as u32;
const STATUS_NOT_FOUND: u32 = Status::NotFound as u32;
const STATUS_CAS_MISMATCH: u32 = Status::CasMismatch as u32;

impl CasStore for SharedData {
    fn get(&self, key: &[u8]) -> Result<Option<(Vec<u8>, Cas)>, StoreError> {
        let mut data: *mut u8 = std::ptr::null_mut();
        let mut size: usize = 0;
        let mut cas: u32 = 0;
        // SAFETY: the key is a live slice; the three out-pointers are valid for the call.
        let status = unsafe {
            proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas)
        };
        let value = if data.is_null() {
            Vec::new()
        } else {
            // SAFETY: the host allocated `size` bytes with this module's allocator
            // (`proxy_on_memory_allocate`, a `Vec<u8>` of that capacity) and hands them
            // over; the SDK takes ownership the same way.
            unsafe { Vec::from_raw_parts(data, size, size) }
        };
        match status {
            // A stored empty value comes back with no data and its version.
            STATUS_OK if cas != 0 => Ok(Some((value, cas))),
            STATUS_OK | STATUS_NOT_FOUND => Ok(None),
            other => Err(StoreError::Host(other)),
        }
    }

    fn set(&self, key: &[u8], value: &[u8], cas: Cas) -> Result<SetOutcome, StoreError> {
        // SAFETY: both slices are live for the call; the host copies them.
        let status = unsafe {
            proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), cas)
        };
        match status {
            STATUS_OK => Ok(SetOutcome::Written),
            STATUS_CAS_MISMATCH => Ok(SetOutcome::CasMismatch),
            other => Err(StoreError::Host(other)),
        }
    }
}

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_set_property(
        path_data: *const u8,
        path_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
}

/// Writes filter state `wasm.<name>` of the current stream (a one-segment property path:
/// the name as it is, which the SDK would copy into a new buffer first). `Err` carries the
/// host's status.
pub fn set_filter_state(name: &str, value: &[u8]) -> Result<(), u32> {
    // SAFETY: both slices are live for the call; the host copies them.
    let status =
        unsafe { proxy_set_property(name.as_ptr(), name.len(), value.as_ptr(), value.len()) };
    match status {
        STATUS_OK => Ok(()),
        other => Err(other),
    }
}

#[link(wasm_import_module = "env")]
extern "C" {
    /// The same import the SDK's `get_current_time` uses (one `u64` written at the pointer).
    fn proxy_get_current_time_nanoseconds(return_time: *mut u64) -> u32;
}

/// Nanoseconds since the Unix epoch, from the host (never from WASI or std: Envoy's clock is
/// the one tests can move). Called directly rather than through the SDK, which builds a
/// `SystemTime` that would only be taken apart again (several hundred instructions per
/// callback); 0 if the host fails, where the SDK would panic.
pub fn now_nanos() -> i64 {
    let mut nanos: u64 = 0;
    // SAFETY: the host writes one u64 through the pointer, valid and aligned for the call.
    let status = unsafe { proxy_get_current_time_nanoseconds(&mut nanos) };
    if status != 0 {
        return 0;
    }
    i64::try_from(nanos).unwrap_or(0)
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
