//! The WASI preview1 functions Envoy registers (under both `wasi_snapshot_preview1` and
//! `wasi_unstable`). Like Envoy's, most are stubs; the few with behaviour: `fd_write` to
//! stdout/stderr becomes an info/error log, clocks read the host clock, environment comes from
//! the VM configuration, `proc_exit` only logs, `poll_oneoff` reports no events.

use super::log::{push, LogLevel};
use super::{guard, memory};
use crate::state::VmState;
use wasmtime::{Caller, FuncType, Linker, Val, ValType};

const ERRNO_BADF: i32 = 8;
const ERRNO_INVAL: i32 = 28;
const ERRNO_NOENT: i32 = 44;
const ERRNO_NOSYS: i32 = 52;
const ERRNO_NOTSUP: i32 = 58;

/// Stubs: name, parameter types (`i` = i32, `I` = i64), errno returned.
const STUBS: &[(&str, &str, i32)] = &[
    ("fd_read", "iiii", ERRNO_NOSYS),
    ("fd_seek", "iIii", ERRNO_NOSYS),
    ("fd_close", "i", ERRNO_NOSYS),
    ("fd_fdstat_get", "ii", ERRNO_NOSYS),
    ("fd_fdstat_set_flags", "ii", ERRNO_NOSYS),
    ("fd_fdstat_set_rights", "iII", ERRNO_NOSYS),
    ("fd_prestat_get", "ii", ERRNO_BADF),
    ("fd_prestat_dir_name", "iii", ERRNO_NOSYS),
    ("fd_advise", "iIIi", ERRNO_NOSYS),
    ("fd_allocate", "iII", ERRNO_NOSYS),
    ("fd_datasync", "i", ERRNO_NOSYS),
    ("fd_filestat_get", "ii", ERRNO_NOSYS),
    ("fd_filestat_set_size", "iI", ERRNO_NOSYS),
    ("fd_filestat_set_times", "iIIi", ERRNO_NOSYS),
    ("fd_pread", "iiiIi", ERRNO_NOSYS),
    ("fd_pwrite", "iiiIi", ERRNO_NOSYS),
    ("fd_readdir", "iiiIi", ERRNO_NOSYS),
    ("fd_renumber", "ii", ERRNO_NOSYS),
    ("fd_sync", "i", ERRNO_NOSYS),
    ("fd_tell", "ii", ERRNO_NOSYS),
    ("path_create_directory", "iii", ERRNO_NOSYS),
    ("path_filestat_get", "iiiii", ERRNO_NOSYS),
    ("path_filestat_set_times", "iiiiIIi", ERRNO_NOSYS),
    ("path_link", "iiiiiii", ERRNO_NOSYS),
    ("path_open", "iiiiiIIii", ERRNO_NOENT),
    ("path_readlink", "iiiiii", ERRNO_NOSYS),
    ("path_remove_directory", "iii", ERRNO_NOSYS),
    ("path_rename", "iiiiii", ERRNO_NOSYS),
    ("path_symlink", "iiiii", ERRNO_NOSYS),
    ("path_unlink_file", "iii", ERRNO_NOSYS),
    ("proc_raise", "i", ERRNO_NOSYS),
    ("sched_yield", "", 0),
    ("sock_accept", "iii", ERRNO_NOSYS),
    ("sock_recv", "iiiiii", ERRNO_NOSYS),
    ("sock_send", "iiiii", ERRNO_NOSYS),
    ("sock_shutdown", "ii", ERRNO_NOSYS),
];

fn env_pairs(c: &Caller<'_, VmState>) -> Vec<Vec<u8>> {
    c.data()
        .shared
        .settings
        .env
        .iter()
        .map(|(k, v)| {
            let mut b = format!("{k}={v}").into_bytes();
            b.push(0);
            b
        })
        .collect()
}

fn errno(r: Result<(), memory::BadMemory>) -> i32 {
    if r.is_ok() {
        0
    } else {
        ERRNO_INVAL
    }
}

fn fd_write(
    c: &mut Caller<'_, VmState>,
    fd: i32,
    iovs: i32,
    n: i32,
    ret: i32,
) -> wasmtime::Result<i32> {
    guard(c, "fd_write")?;
    let level = match fd {
        1 => LogLevel::Info,
        2 => LogLevel::Error,
        _ => return Ok(ERRNO_BADF),
    };
    let mut out = Vec::new();
    for i in 0..n.max(0) {
        let base = iovs.wrapping_add(i.wrapping_mul(8));
        let (Ok(p), Ok(l)) = (
            memory::read_u32(c, base),
            memory::read_u32(c, base.wrapping_add(4)),
        ) else {
            return Ok(ERRNO_INVAL);
        };
        let Ok(bytes) = memory::read(c, p as i32, l as i32) else {
            return Ok(ERRNO_INVAL);
        };
        out.extend_from_slice(&bytes);
    }
    let written = out.len() as u32;
    if out.last() == Some(&b'\n') {
        out.pop();
    }
    push(
        c.data_mut(),
        level,
        String::from_utf8_lossy(&out).into_owned(),
    );
    Ok(errno(memory::write_u32(c, ret, written)))
}

fn link_real(linker: &mut Linker<VmState>, m: &str) -> wasmtime::Result<()> {
    linker.func_wrap(
        m,
        "fd_write",
        |mut c: Caller<'_, VmState>, fd: i32, iovs: i32, n: i32, ret: i32| {
            fd_write(&mut c, fd, iovs, n, ret)
        },
    )?;
    linker.func_wrap(
        m,
        "clock_time_get",
        |mut c: Caller<'_, VmState>, id: i32, _prec: i64, ret: i32| {
            guard(&c, "clock_time_get")?;
            let clock = &c.data().shared.clock;
            let now = match id {
                0 => clock.now_nanos(),
                1 => clock.monotonic_nanos(),
                _ => return Ok(ERRNO_NOTSUP),
            };
            wasmtime::Result::Ok(errno(memory::write_u64(&mut c, ret, now as u64)))
        },
    )?;
    linker.func_wrap(
        m,
        "clock_res_get",
        |mut c: Caller<'_, VmState>, _id: i32, ret: i32| {
            guard(&c, "clock_res_get")?;
            wasmtime::Result::Ok(errno(memory::write_u64(&mut c, ret, 1)))
        },
    )?;
    linker.func_wrap(
        m,
        "random_get",
        |mut c: Caller<'_, VmState>, p: i32, l: i32| {
            guard(&c, "random_get")?;
            if l as u32 > 65536 {
                return Ok(ERRNO_INVAL);
            }
            // Deterministic bytes: tests must be reproducible.
            let mut x: u32 = 0x9E37_79B9 ^ (l as u32);
            let bytes: Vec<u8> = (0..l as u32)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x.to_le_bytes().first().copied().unwrap_or(0)
                })
                .collect();
            wasmtime::Result::Ok(errno(memory::write(&mut c, p, &bytes)))
        },
    )?;
    linker.func_wrap(
        m,
        "environ_sizes_get",
        |mut c: Caller<'_, VmState>, cp: i32, sp: i32| {
            guard(&c, "environ_sizes_get")?;
            let pairs = env_pairs(&c);
            let size: usize = pairs.iter().map(Vec::len).sum();
            let r = memory::write_u32(&mut c, cp, pairs.len() as u32)
                .and_then(|()| memory::write_u32(&mut c, sp, size as u32));
            wasmtime::Result::Ok(errno(r))
        },
    )?;
    linker.func_wrap(
        m,
        "environ_get",
        |mut c: Caller<'_, VmState>, ptrs: i32, buf: i32| {
            guard(&c, "environ_get")?;
            let mut at = buf;
            for (i, pair) in env_pairs(&c).iter().enumerate() {
                let slot = ptrs.wrapping_add((i as i32).wrapping_mul(4));
                let r = memory::write_u32(&mut c, slot, at as u32)
                    .and_then(|()| memory::write(&mut c, at, pair));
                if r.is_err() {
                    return Ok(ERRNO_INVAL);
                }
                at = at.wrapping_add(pair.len() as i32);
            }
            wasmtime::Result::Ok(0)
        },
    )?;
    linker.func_wrap(
        m,
        "args_sizes_get",
        |mut c: Caller<'_, VmState>, cp: i32, sp: i32| {
            guard(&c, "args_sizes_get")?;
            let r =
                memory::write_u32(&mut c, cp, 0).and_then(|()| memory::write_u32(&mut c, sp, 0));
            wasmtime::Result::Ok(errno(r))
        },
    )?;
    linker.func_wrap(m, "args_get", |c: Caller<'_, VmState>, _: i32, _: i32| {
        guard(&c, "args_get")?;
        wasmtime::Result::Ok(0)
    })?;
    linker.func_wrap(m, "proc_exit", |mut c: Caller<'_, VmState>, code: i32| {
        guard(&c, "proc_exit")?;
        push(
            c.data_mut(),
            LogLevel::Error,
            format!("wasi proc_exit({code}) ignored"),
        );
        wasmtime::Result::Ok(())
    })?;
    linker.func_wrap(
        m,
        "poll_oneoff",
        |mut c: Caller<'_, VmState>, _: i32, _: i32, _: i32, ret: i32| {
            guard(&c, "poll_oneoff")?;
            wasmtime::Result::Ok(errno(memory::write_u32(&mut c, ret, 0)))
        },
    )?;
    Ok(())
}

pub(crate) fn link(linker: &mut Linker<VmState>, m: &str) -> wasmtime::Result<()> {
    link_real(linker, m)?;
    let engine = linker.engine().clone();
    for &(name, params, errno) in STUBS {
        let params = params.chars().map(|ch| {
            if ch == 'I' {
                ValType::I64
            } else {
                ValType::I32
            }
        });
        let ty = FuncType::new(&engine, params, [ValType::I32]);
        linker.func_new(
            m,
            name,
            ty,
            move |c: Caller<'_, VmState>, _args: &[Val], results: &mut [Val]| {
                guard(&c, name)?;
                if let Some(r) = results.first_mut() {
                    *r = Val::I32(errno);
                }
                Ok(())
            },
        )?;
    }
    Ok(())
}
