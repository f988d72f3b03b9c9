//! The remaining `env` imports: gRPC callouts (no gRPC services exist here, so they fail like
//! Envoy does for an unknown cluster), effective context, `proxy_done`, foreign functions,
//! ABI 0.1.0 leftovers and the emscripten helpers Envoy also provides.

use super::{guard, HostResult, Status};
use crate::state::{Deferred, VmState};
use wasmtime::{Caller, Linker};

fn status(s: Status) -> HostResult {
    Ok(s.code())
}

fn link_grpc(linker: &mut Linker<VmState>) -> wasmtime::Result<()> {
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
    Ok(())
}

fn link_contexts(linker: &mut Linker<VmState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_set_effective_context",
        |mut c: Caller<'_, VmState>, ctx: i32| -> HostResult {
            guard(&c, "proxy_set_effective_context")?;
            let st = c.data_mut();
            let ctx = ctx as u32;
            if ctx == 0 {
                // Id 0 is the VM's own context, which always exists; cpp-host reads an
                // effective id of 0 as "the context whose callback is running".
                st.effective_ctx = st.current_ctx;
                status(Status::Ok)
            } else if st.root_of.contains_key(&ctx) {
                st.effective_ctx = ctx;
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
    link_grpc(linker)?;
    link_contexts(linker)?;
    link_legacy(linker)
}
