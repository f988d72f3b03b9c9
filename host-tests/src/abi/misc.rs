//! The remaining `env` imports: callouts (no clusters exist here, so they fail like Envoy does
//! for an unknown cluster), shared queues, effective context, `proxy_done`, foreign functions,
//! ABI 0.1.0 leftovers and the emscripten helpers Envoy also provides.

use super::{guard, memory, HostResult, Status};
use crate::state::{Deferred, VmState};
use std::collections::{HashMap, VecDeque};
use wasmtime::{Caller, Linker};

/// Shared queues of one host: identity (vm_id, name), ids from a counter starting at 1.
#[derive(Debug, Default)]
pub(crate) struct Queues {
    ids: HashMap<(String, Vec<u8>), u32>,
    data: HashMap<u32, VecDeque<Vec<u8>>>,
    next: u32,
}

fn status(s: Status) -> HostResult {
    Ok(s.code())
}

fn with_queues<R>(c: &Caller<'_, VmState>, f: impl FnOnce(&mut Queues) -> R) -> R {
    let shared = c.data().shared.clone();
    let mut q = shared
        .queues
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    f(&mut q)
}

fn link_callouts(linker: &mut Linker<VmState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_http_call",
        |c: Caller<'_, VmState>,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32|
         -> HostResult {
            guard(&c, "proxy_http_call")?;
            // No upstream clusters exist in the test host: Envoy answers an unknown cluster so.
            status(Status::BadArgument)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_grpc_call",
        |c: Caller<'_, VmState>,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32|
         -> HostResult {
            guard(&c, "proxy_grpc_call")?;
            status(Status::ParseFailure)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_grpc_stream",
        |c: Caller<'_, VmState>,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32|
         -> HostResult {
            guard(&c, "proxy_grpc_stream")?;
            status(Status::ParseFailure)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_grpc_send",
        |c: Caller<'_, VmState>, _: i32, _: i32, _: i32, _: i32| -> HostResult {
            guard(&c, "proxy_grpc_send")?;
            status(Status::NotFound)
        },
    )?;
    for name in ["proxy_grpc_cancel", "proxy_grpc_close"] {
        linker.func_wrap(
            "env",
            name,
            move |c: Caller<'_, VmState>, _: i32| -> HostResult {
                guard(&c, name)?;
                status(Status::NotFound)
            },
        )?;
    }
    linker.func_wrap(
        "env",
        "proxy_get_status",
        |mut c: Caller<'_, VmState>, code: i32, mp: i32, ml: i32| -> HostResult {
            guard(&c, "proxy_get_status")?;
            if memory::write_u32(&mut c, code, 0).is_err() {
                return status(Status::InvalidMemoryAccess);
            }
            Ok(memory::copy_out(&mut c, &[], mp, ml)?.code())
        },
    )?;
    Ok(())
}

fn link_queues(linker: &mut Linker<VmState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_register_shared_queue",
        |mut c: Caller<'_, VmState>, np: i32, nl: i32, ret: i32| -> HostResult {
            guard(&c, "proxy_register_shared_queue")?;
            let Ok(name) = memory::read(&c, np, nl) else {
                return status(Status::InvalidMemoryAccess);
            };
            let vm_id = c.data().shared.settings.vm_id.clone();
            let id = with_queues(&c, |q| {
                if let Some(id) = q.ids.get(&(vm_id.clone(), name.clone())) {
                    return *id;
                }
                q.next = q.next.wrapping_add(1).max(1);
                let id = q.next;
                q.ids.insert((vm_id, name), id);
                q.data.insert(id, VecDeque::new());
                id
            });
            if memory::write_u32(&mut c, ret, id).is_err() {
                return status(Status::InvalidMemoryAccess);
            }
            status(Status::Ok)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_resolve_shared_queue",
        |mut c: Caller<'_, VmState>, vp: i32, vl: i32, np: i32, nl: i32, ret: i32| -> HostResult {
            guard(&c, "proxy_resolve_shared_queue")?;
            let (Ok(vm), Ok(name)) = (memory::read(&c, vp, vl), memory::read(&c, np, nl)) else {
                return status(Status::InvalidMemoryAccess);
            };
            let mut vm_id = String::from_utf8_lossy(&vm).into_owned();
            if vm_id.is_empty() {
                vm_id = c.data().shared.settings.vm_id.clone();
            }
            let Some(id) = with_queues(&c, |q| q.ids.get(&(vm_id, name)).copied()) else {
                return status(Status::NotFound);
            };
            if memory::write_u32(&mut c, ret, id).is_err() {
                return status(Status::InvalidMemoryAccess);
            }
            status(Status::Ok)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_enqueue_shared_queue",
        |c: Caller<'_, VmState>, id: i32, vp: i32, vl: i32| -> HostResult {
            guard(&c, "proxy_enqueue_shared_queue")?;
            let Ok(v) = memory::read(&c, vp, vl) else {
                return status(Status::InvalidMemoryAccess);
            };
            let ok = with_queues(&c, |q| {
                q.data
                    .get_mut(&(id as u32))
                    .map(|d| d.push_back(v))
                    .is_some()
            });
            status(if ok { Status::Ok } else { Status::NotFound })
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_dequeue_shared_queue",
        |mut c: Caller<'_, VmState>, id: i32, rp: i32, rl: i32| -> HostResult {
            guard(&c, "proxy_dequeue_shared_queue")?;
            let item = with_queues(&c, |q| {
                q.data.get_mut(&(id as u32)).map(VecDeque::pop_front)
            });
            match item {
                None => status(Status::NotFound),
                Some(None) => status(Status::Empty),
                Some(Some(v)) => Ok(memory::copy_out(&mut c, &v, rp, rl)?.code()),
            }
        },
    )?;
    Ok(())
}

fn link_contexts(linker: &mut Linker<VmState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_set_effective_context",
        |mut c: Caller<'_, VmState>, ctx: i32| -> HostResult {
            guard(&c, "proxy_set_effective_context")?;
            let st = c.data_mut();
            if st.root_of.contains_key(&(ctx as u32)) {
                st.effective_ctx = ctx as u32;
                status(Status::Ok)
            } else {
                status(Status::BadArgument)
            }
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_done",
        |mut c: Caller<'_, VmState>| -> HostResult {
            guard(&c, "proxy_done")?;
            let st = c.data_mut();
            let root = st.effective_root();
            match st.roots.get_mut(&root) {
                Some(r) if r.pending_done => {
                    r.pending_done = false;
                    st.deferred.push(Deferred::RootDone { root });
                    status(Status::Ok)
                }
                _ => status(Status::NotFound),
            }
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_call_foreign_function",
        |c: Caller<'_, VmState>, _: i32, _: i32, _: i32, _: i32, _: i32, _: i32| -> HostResult {
            guard(&c, "proxy_call_foreign_function")?;
            status(Status::NotFound)
        },
    )?;
    Ok(())
}

fn link_legacy(linker: &mut Linker<VmState>) -> wasmtime::Result<()> {
    for name in [
        "proxy_continue_request",
        "proxy_continue_response",
        "proxy_clear_route_cache",
    ] {
        linker.func_wrap("env", name, move |c: Caller<'_, VmState>| -> HostResult {
            guard(&c, name)?;
            status(Status::Ok)
        })?;
    }
    linker.func_wrap(
        "env",
        "proxy_get_configuration",
        |c: Caller<'_, VmState>, _: i32, _: i32| -> HostResult {
            guard(&c, "proxy_get_configuration")?;
            status(Status::NotFound)
        },
    )?;
    linker.func_wrap(
        "env",
        "pthread_equal",
        |_: Caller<'_, VmState>, a: i32, b: i32| -> i32 { i32::from(a == b) },
    )?;
    linker.func_wrap(
        "env",
        "emscripten_notify_memory_growth",
        |_: Caller<'_, VmState>, _: i32| {},
    )?;
    linker.func_wrap(
        "env",
        "envoy_resolve_dns",
        |c: Caller<'_, VmState>, _: i32, _: i32, _: i32| -> HostResult {
            guard(&c, "envoy_resolve_dns")?;
            status(Status::BadArgument)
        },
    )?;
    Ok(())
}

pub(crate) fn link(linker: &mut Linker<VmState>) -> wasmtime::Result<()> {
    link_callouts(linker)?;
    link_queues(linker)?;
    link_contexts(linker)?;
    link_legacy(linker)
}
