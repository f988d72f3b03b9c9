//! The movable clock behind `proxy_get_current_time_nanoseconds` and WASI `clock_time_get`,
//! and `proxy_set_tick_period_milliseconds`.

use super::{guard, memory, HostResult, Status};
use crate::state::VmState;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use wasmtime::{Caller, Linker};

/// A clock shared by every VM of one host; tests set or advance it. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Clock {
    wall: Arc<AtomicI64>,
    mono: Arc<AtomicI64>,
}

impl Clock {
    /// A clock reading `start_nanos` (Unix epoch nanoseconds); monotonic time starts at 0.
    pub fn new(start_nanos: i64) -> Clock {
        Clock {
            wall: Arc::new(AtomicI64::new(start_nanos)),
            mono: Arc::new(AtomicI64::new(0)),
        }
    }
    /// Wall-clock nanoseconds since the Unix epoch.
    pub fn now_nanos(&self) -> i64 {
        self.wall.load(Ordering::SeqCst)
    }
    /// Monotonic nanoseconds (only moves forward, with `advance`).
    pub fn monotonic_nanos(&self) -> i64 {
        self.mono.load(Ordering::SeqCst)
    }
    /// Moves both clocks forward.
    pub fn advance(&self, by: Duration) {
        let n = i64::try_from(by.as_nanos()).unwrap_or(i64::MAX);
        self.wall.fetch_add(n, Ordering::SeqCst);
        self.mono.fetch_add(n, Ordering::SeqCst);
    }
    /// Sets the wall clock (it may jump backwards, like a real wall clock).
    pub fn set_nanos(&self, nanos: i64) {
        self.wall.store(nanos, Ordering::SeqCst);
    }
}

pub(crate) fn link(linker: &mut Linker<VmState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_get_current_time_nanoseconds",
        |mut c: Caller<'_, VmState>, ret: i32| -> HostResult {
            guard(&c, "proxy_get_current_time_nanoseconds")?;
            let now = c.data().shared.clock.now_nanos() as u64;
            if memory::write_u64(&mut c, ret, now).is_err() {
                return Ok(Status::InvalidMemoryAccess.code());
            }
            Ok(Status::Ok.code())
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_tick_period_milliseconds",
        |mut c: Caller<'_, VmState>, period: i32| -> HostResult {
            guard(&c, "proxy_set_tick_period_milliseconds")?;
            let now = c.data().shared.clock.now_nanos();
            let st = c.data_mut();
            let root = st.effective_root();
            let entry = st.roots.entry(root).or_default();
            entry.tick_period_ms = period as u32;
            let period_ns = i64::from(period as u32).saturating_mul(1_000_000);
            entry.next_tick_nanos = now.saturating_add(period_ns);
            Ok(Status::Ok.code())
        },
    )?;
    Ok(())
}
