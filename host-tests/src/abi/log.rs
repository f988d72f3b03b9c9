//! `proxy_log` / `proxy_get_log_level`: guest logs are captured per VM with their level.

use super::{guard, memory, HostResult, Status};
use crate::state::VmState;
use wasmtime::{Caller, Linker};

/// Envoy / proxy-wasm log levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// 0
    Trace,
    /// 1
    Debug,
    /// 2
    Info,
    /// 3
    Warn,
    /// 4
    Error,
    /// 5
    Critical,
}

impl LogLevel {
    /// Level for a raw proxy-wasm value, `None` above 5.
    pub fn from_raw(v: i32) -> Option<LogLevel> {
        Some(match v {
            0 => LogLevel::Trace,
            1 => LogLevel::Debug,
            2 => LogLevel::Info,
            3 => LogLevel::Warn,
            4 => LogLevel::Error,
            5 => LogLevel::Critical,
            _ => return None,
        })
    }
}

/// One captured log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// Level the guest (or the host, for traps and stdout/stderr) logged at.
    pub level: LogLevel,
    /// The message, lossily decoded as UTF-8.
    pub message: String,
}

/// Appends a log entry to the VM's capture.
pub(crate) fn push(state: &mut VmState, level: LogLevel, message: String) {
    state.logs.push(LogEntry { level, message });
}

pub(crate) fn link(linker: &mut Linker<VmState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_log",
        |mut c: Caller<'_, VmState>, level: i32, ptr: i32, len: i32| -> HostResult {
            guard(&c, "proxy_log")?;
            let Some(level) = LogLevel::from_raw(level) else {
                return Ok(Status::BadArgument.code());
            };
            let Ok(msg) = memory::read(&c, ptr, len) else {
                return Ok(Status::InvalidMemoryAccess.code());
            };
            push(
                c.data_mut(),
                level,
                String::from_utf8_lossy(&msg).into_owned(),
            );
            Ok(Status::Ok.code())
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_log_level",
        |mut c: Caller<'_, VmState>, ret: i32| -> HostResult {
            guard(&c, "proxy_get_log_level")?;
            let level = c.data().shared.settings.log_level as u32;
            if memory::write_u32(&mut c, ret, level).is_err() {
                return Ok(Status::InvalidMemoryAccess.code());
            }
            Ok(Status::Ok.code())
        },
    )?;
    Ok(())
}
