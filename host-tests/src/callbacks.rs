//! The guest's exported callbacks, type-checked at load, and the one place that calls them
//! (tracing, fuel accounting, and turning a trap into "VM failed").

use crate::abi::log::{push, LogLevel};
use crate::error::HostError;
use crate::state::{CallRecord, VmState};
use wasmtime::{Instance, Store, TypedFunc, WasmParams, WasmResults};

type F<P, R> = Option<TypedFunc<P, R>>;

/// Every `proxy_on_*` export the host may call (missing ones are skipped, like Envoy).
#[derive(Clone)]
pub(crate) struct Exports {
    pub context_create: F<(i32, i32), ()>,
    pub vm_start: F<(i32, i32), i32>,
    pub configure: F<(i32, i32), i32>,
    pub tick: F<i32, ()>,
    pub queue_ready: F<(i32, i32), ()>,
    pub http_call_response: F<(i32, i32, i32, i32, i32), ()>,
    pub request_headers: F<(i32, i32, i32), i32>,
    pub request_body: F<(i32, i32, i32), i32>,
    pub request_trailers: F<(i32, i32), i32>,
    pub response_headers: F<(i32, i32, i32), i32>,
    pub response_body: F<(i32, i32, i32), i32>,
    pub response_trailers: F<(i32, i32), i32>,
    pub log: F<i32, ()>,
    pub done: F<i32, i32>,
    pub delete: F<i32, ()>,
}

fn typed<P: WasmParams, R: WasmResults>(
    store: &mut Store<VmState>,
    instance: &Instance,
    name: &str,
) -> Result<F<P, R>, HostError> {
    if instance.get_func(&mut *store, name).is_none() {
        return Ok(None);
    }
    instance
        .get_typed_func::<P, R>(&mut *store, name)
        .map(Some)
        .map_err(|e| HostError::Load(format!("export {name} has the wrong type: {e:#}")))
}

impl Exports {
    /// Looks up and type-checks every known export (a mismatch fails the load, as in cpp-host).
    pub(crate) fn resolve(
        store: &mut Store<VmState>,
        inst: &Instance,
    ) -> Result<Exports, HostError> {
        // Exports the host never calls here but cpp-host still type-checks.
        typed::<i32, i32>(store, inst, "proxy_on_new_connection")?;
        typed::<(i32, i32, i32), i32>(store, inst, "proxy_on_downstream_data")?;
        typed::<(i32, i32, i32), i32>(store, inst, "proxy_on_upstream_data")?;
        typed::<(i32, i32), ()>(store, inst, "proxy_on_downstream_connection_close")?;
        typed::<(i32, i32), ()>(store, inst, "proxy_on_upstream_connection_close")?;
        typed::<(i32, i32, i32), ()>(store, inst, "proxy_on_foreign_function")?;
        Ok(Exports {
            context_create: typed(store, inst, "proxy_on_context_create")?,
            vm_start: typed(store, inst, "proxy_on_vm_start")?,
            configure: typed(store, inst, "proxy_on_configure")?,
            tick: typed(store, inst, "proxy_on_tick")?,
            queue_ready: typed(store, inst, "proxy_on_queue_ready")?,
            http_call_response: typed(store, inst, "proxy_on_http_call_response")?,
            request_headers: typed(store, inst, "proxy_on_request_headers")?,
            request_body: typed(store, inst, "proxy_on_request_body")?,
            request_trailers: typed(store, inst, "proxy_on_request_trailers")?,
            response_headers: typed(store, inst, "proxy_on_response_headers")?,
            response_body: typed(store, inst, "proxy_on_response_body")?,
            response_trailers: typed(store, inst, "proxy_on_response_trailers")?,
            log: typed(store, inst, "proxy_on_log")?,
            done: typed(store, inst, "proxy_on_done")?,
            delete: typed(store, inst, "proxy_on_delete")?,
        })
    }
}

/// What happened when the host tried to run a callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome<R> {
    /// The VM had already failed: Envoy skips every callback.
    Skipped,
    /// The module does not export it (Envoy treats that as Continue / true).
    Missing,
    /// It returned.
    Done(R),
    /// It trapped; the VM is now failed.
    Trapped,
}

/// Runs one guest callback for context `ctx`.
#[expect(
    clippy::too_many_arguments,
    reason = "the macro in vm.rs splits borrows of Vm's fields"
)]
pub(crate) fn invoke<P: WasmParams, R: WasmResults>(
    store: &mut Store<VmState>,
    failed: &mut bool,
    fuel: &mut (u64, u64),
    name: &'static str,
    f: &F<P, R>,
    ctx: u32,
    params: P,
    args: Vec<i64>,
) -> Outcome<R> {
    if *failed {
        return Outcome::Skipped;
    }
    let Some(f) = f else {
        return Outcome::Missing;
    };
    let st = store.data_mut();
    st.trace.push(CallRecord { name, ctx, args });
    st.current_ctx = ctx;
    st.effective_ctx = ctx;
    let before = store.get_fuel().unwrap_or(0);
    let res = f.call(&mut *store, params);
    let after = store.get_fuel().unwrap_or(0);
    let spent = before.saturating_sub(after);
    fuel.0 = fuel.0.saturating_add(spent);
    fuel.1 = spent;
    let st = store.data_mut();
    let slot = st.fuel_by_callback.entry(name).or_insert((0, 0));
    slot.0 = slot.0.saturating_add(1);
    slot.1 = slot.1.saturating_add(spent);
    st.current_ctx = 0;
    st.effective_ctx = 0;
    match res {
        Ok(r) => Outcome::Done(r),
        Err(e) => {
            *failed = true;
            push(
                st,
                LogLevel::Critical,
                format!("Function: proxy_{name} failed: {e:#}"),
            );
            Outcome::Trapped
        }
    }
}
