//! [`Vm`]: one worker VM (its own `Store` and instance), with root-context lifecycle, ticks,
//! fuel and memory introspection, logs, and shared-data hooks. HTTP streams are in `stream.rs`.

use crate::abi::log::LogEntry;
use crate::abi::shared_data::{SharedDataEvent, SharedDataOp};
use crate::callbacks::{Exports, Outcome};
use crate::error::HostError;
use crate::host::HostShared;
use crate::state::{CallRecord, Restriction, RootCtx, VmState};
use crate::stream::{StreamDriver, StreamId};
use std::collections::HashMap;
use std::sync::Arc;
use wasmtime::Store;

/// Fuel given to every VM: large enough never to run out; spending is measured as a difference.
const FUEL_BUDGET: u64 = u64::MAX / 4;

/// Calls export `$field` through [`crate::callbacks::invoke`].
macro_rules! call {
    ($vm:expr, $field:ident, $name:literal, $ctx:expr, $params:expr, $args:expr) => {
        $crate::callbacks::invoke(
            &mut $vm.store,
            &mut $vm.failed,
            &mut $vm.fuel,
            $name,
            &$vm.exports.$field,
            $ctx,
            $params,
            $args,
        )
    };
}
pub(crate) use call;

/// One Envoy worker VM. `Send`: move it to its own thread for real parallelism.
pub struct Vm {
    pub(crate) store: Store<VmState>,
    pub(crate) exports: Exports,
    pub(crate) failed: bool,
    /// (total fuel spent by callbacks, fuel spent by the last callback)
    pub(crate) fuel: (u64, u64),
    pub(crate) root: u32,
    generation: u64,
    next_ctx: u32,
    pub(crate) streams: HashMap<StreamId, StreamDriver>,
    pub(crate) next_stream: u64,
    /// While set, stream events do not deliver due callout answers and queue notifications
    /// (the exchange sends a whole request as one read, as it arrives in Envoy).
    pub(crate) batching: bool,
}

impl Vm {
    /// Instantiates the module and runs `_initialize` (+ `main`) with only the hostcalls
    /// Envoy allows there; any other `proxy_*` call traps and the load fails.
    pub(crate) fn instantiate(shared: Arc<HostShared>, label: String) -> Result<Vm, HostError> {
        let load = |e: wasmtime::Error| HostError::Load(format!("{e:#}"));
        let mut store = Store::new(&shared.engine, VmState::new(shared.clone(), label));
        store.set_fuel(FUEL_BUDGET).map_err(load)?;
        store.limiter(|st| &mut st.limits);
        let instance = shared
            .linker
            .instantiate(&mut store, &shared.module)
            .map_err(load)?;
        let memory = instance
            .get_memory(&mut store, "memory")
            .ok_or_else(|| HostError::Load("module exports no memory".to_string()))?;
        let alloc = match instance.get_func(&mut store, "malloc") {
            Some(_) => instance.get_typed_func::<i32, i32>(&mut store, "malloc"),
            None => instance.get_typed_func::<i32, i32>(&mut store, "proxy_on_memory_allocate"),
        }
        .map_err(|e| HostError::Load(format!("missing malloc: {e:#}")))?;
        store.data_mut().memory = Some(memory);
        store.data_mut().allocator = Some(alloc);
        let exports = Exports::resolve(&mut store, &instance)?;
        let init = |name: &str, store: &mut Store<VmState>| -> Result<(), HostError> {
            if instance.get_func(&mut *store, name).is_none() {
                return Ok(());
            }
            let f = instance
                .get_typed_func::<(), ()>(&mut *store, name)
                .map_err(load)?;
            f.call(&mut *store, ())
                .map_err(|e| HostError::Load(format!("{name} failed: {e:#}")))
        };
        if instance.get_func(&mut store, "_initialize").is_some() {
            init("_initialize", &mut store)?;
            if instance.get_func(&mut store, "main").is_some() {
                let f = instance
                    .get_typed_func::<(i32, i32), i32>(&mut store, "main")
                    .map_err(load)?;
                f.call(&mut store, (0, 0))
                    .map_err(|e| HostError::Load(format!("main failed: {e:#}")))?;
            }
        } else {
            init("_start", &mut store)?;
        }
        store.data_mut().restriction = Restriction::None;
        Ok(Vm {
            store,
            exports,
            failed: false,
            fuel: (0, 0),
            root: 0,
            generation: 0,
            next_ctx: 1,
            streams: HashMap::new(),
            next_stream: 1,
            batching: false,
        })
    }

    /// A worker: instantiate, then a root context with the host's current plugin config.
    pub(crate) fn start(shared: Arc<HostShared>, label: String) -> Result<Vm, HostError> {
        let mut vm = Vm::instantiate(shared, label)?;
        vm.sync_config()?;
        Ok(vm)
    }

    pub(crate) fn alloc_ctx(&mut self) -> u32 {
        let id = self.next_ctx;
        self.next_ctx += 1;
        id
    }

    fn last_log(&self) -> String {
        self.store
            .data()
            .logs
            .last()
            .map(|l| l.message.clone())
            .unwrap_or_default()
    }

    /// Creates a root context and runs on_context_create, on_vm_start, on_configure.
    pub(crate) fn create_root(&mut self, plugin_config: &[u8]) -> Result<u32, HostError> {
        let id = self.alloc_ctx();
        let st = self.store.data_mut();
        st.root_of.insert(id, id);
        st.roots.insert(id, RootCtx::default());
        let vm_cfg_len = st.shared.settings.vm_config.len() as i32;
        if let Outcome::Trapped | Outcome::Skipped = call!(
            self,
            context_create,
            "on_context_create",
            id,
            (id as i32, 0),
            vec![0]
        ) {
            return Err(HostError::VmStartFailed(self.last_log()));
        }
        match call!(
            self,
            vm_start,
            "on_vm_start",
            id,
            (id as i32, vm_cfg_len),
            vec![i64::from(vm_cfg_len)]
        ) {
            Outcome::Done(0) | Outcome::Trapped | Outcome::Skipped => {
                return Err(HostError::VmStartFailed(self.last_log()))
            }
            _ => {}
        }
        self.store.data_mut().plugin_config = Some(plugin_config.to_vec());
        let len = plugin_config.len() as i32;
        let res = call!(
            self,
            configure,
            "on_configure",
            id,
            (id as i32, len),
            vec![i64::from(len)]
        );
        self.store.data_mut().plugin_config = None;
        self.run_deferred();
        match res {
            Outcome::Done(0) | Outcome::Trapped | Outcome::Skipped => {
                Err(HostError::ConfigRejected(self.last_log()))
            }
            _ => {
                self.root = id;
                Ok(id)
            }
        }
    }

    /// on_done for a root being replaced; on_delete now, or when it calls `proxy_done`.
    fn retire_root(&mut self, root: u32) {
        if let Outcome::Done(0) = call!(self, done, "on_done", root, root as i32, vec![]) {
            if let Some(r) = self.store.data_mut().roots.get_mut(&root) {
                r.pending_done = true;
            }
            return;
        }
        self.delete_root(root);
    }

    pub(crate) fn delete_root(&mut self, root: u32) {
        call!(self, delete, "on_delete", root, root as i32, vec![]);
        self.store.data_mut().roots.remove(&root);
    }

    /// Applies the host's latest accepted plugin configuration to this VM if it is newer: a
    /// new root context (create, vm_start, configure), then the old root's on_done/on_delete.
    pub fn sync_config(&mut self) -> Result<(), HostError> {
        let (generation, config) = self.store.data().shared.current_plugin();
        if generation == self.generation {
            return Ok(());
        }
        let old = self.root;
        self.create_root(&config)?;
        self.generation = generation;
        if old != 0 {
            self.retire_root(old);
        }
        self.run_due();
        Ok(())
    }

    /// Fires `proxy_on_tick` for every root context whose timer is due at the current clock
    /// (at most once per root per call, like a re-armed Envoy timer). Returns ticks fired.
    pub fn fire_due_ticks(&mut self) -> usize {
        let mut fired = 0;
        let roots: Vec<(u32, RootCtx)> = self
            .store
            .data()
            .roots
            .iter()
            .map(|(k, v)| (*k, v.clone()))
            .collect();
        for (root, r) in roots {
            let now = self.store.data().shared.clock.now_nanos();
            if self.failed || r.tick_period_ms == 0 || r.next_tick_nanos > now {
                continue;
            }
            call!(self, tick, "on_tick", root, root as i32, vec![]);
            fired += 1;
            let now = self.store.data().shared.clock.now_nanos();
            if let Some(entry) = self.store.data_mut().roots.get_mut(&root) {
                let period = i64::from(entry.tick_period_ms).saturating_mul(1_000_000);
                entry.next_tick_nanos = now.saturating_add(period);
            }
            self.run_deferred();
        }
        self.run_due();
        fired
    }

    /// Id of the current root context.
    pub fn root_context_id(&self) -> u32 {
        self.root
    }
    /// Makes the next guest callback trap, as a bug in the module would: its fuel runs out
    /// at its first instruction, and the VM fails the way [`Vm::is_failed`] reports (Envoy
    /// delivers nothing more to a failed VM, so its streams never reach `on_log`).
    pub fn trap_next_callback(&mut self) {
        // Setting fuel only fails when metering is off, and this host always meters.
        let _ = self.store.set_fuel(0);
    }
    /// True once any callback trapped (Envoy's failed VM).
    pub fn is_failed(&self) -> bool {
        self.failed
    }
    /// Captured logs of this VM, oldest first.
    pub fn logs(&self) -> &[LogEntry] {
        &self.store.data().logs
    }
    /// True if any captured log message contains `needle`.
    pub fn has_log(&self, needle: &str) -> bool {
        self.logs().iter().any(|l| l.message.contains(needle))
    }
    /// Takes (and clears) the captured logs.
    pub fn take_logs(&mut self) -> Vec<LogEntry> {
        std::mem::take(&mut self.store.data_mut().logs)
    }
    /// Every callback invoked so far, in order.
    pub fn trace(&self) -> &[CallRecord] {
        &self.store.data().trace
    }
    /// Linear memory size in 64 KiB pages.
    pub fn memory_pages(&self) -> u64 {
        self.store
            .data()
            .memory
            .map(|m| m.size(&self.store))
            .unwrap_or(0)
    }
    /// The lowest address below `limit` that holds a non-zero byte, or `limit` if none. Linear
    /// memory starts zeroed, so for a module whose shadow stack sits below its data (rustc's
    /// layout) and grows down from `limit`, `limit - lowest` is the deepest the stack has
    /// reached so far (at least: bytes written as zero do not show).
    pub fn lowest_written_address(&self, limit: u64) -> u64 {
        let Some(memory) = self.store.data().memory else {
            return limit;
        };
        let data = memory.data(&self.store);
        let end = usize::try_from(limit).unwrap_or(usize::MAX).min(data.len());
        data.get(..end)
            .and_then(|below| below.iter().position(|&b| b != 0))
            .map_or(limit, |i| i as u64)
    }
    /// Fuel spent by all callbacks of this VM so far (guest allocator calls included).
    pub fn fuel_consumed(&self) -> u64 {
        self.fuel.0
    }
    /// Per callback export (name without `proxy_`): (calls, fuel spent), since the VM started
    /// or the last [`Vm::reset_fuel_by_callback`]. For profiles.
    pub fn fuel_by_callback(&self) -> Vec<(&'static str, u64, u64)> {
        self.store
            .data()
            .fuel_by_callback
            .iter()
            .map(|(name, (calls, fuel))| (*name, *calls, *fuel))
            .collect()
    }
    /// Restarts the per-callback fuel counts of [`Vm::fuel_by_callback`].
    pub fn reset_fuel_by_callback(&mut self) {
        self.store.data_mut().fuel_by_callback.clear();
    }
    /// Drops the recorded callback trace (long runs: it grows with every callback).
    pub fn clear_trace(&mut self) {
        self.store.data_mut().trace.clear();
    }
    /// Fuel spent by the most recent callback.
    pub fn last_callback_fuel(&self) -> u64 {
        self.fuel.1
    }
    /// The clock this VM reads (shared with the whole host).
    pub fn clock(&self) -> crate::Clock {
        self.store.data().shared.clock.clone()
    }
    /// The shared-data store this VM uses.
    pub fn shared_data(&self) -> crate::SharedData {
        self.store.data().shared.shared_data.clone()
    }
    /// The upstream clusters of this VM's process.
    pub fn clusters(&self) -> crate::Clusters {
        self.store.data().shared.clusters.clone()
    }
    /// This VM's label ("worker 0", "extra worker", ...), as in [`crate::Callout::vm`].
    pub fn label(&self) -> &str {
        &self.store.data().label
    }
    /// Installs a hook run after each shared-data hostcall of this VM (lock released), and
    /// restarts the per-op call counts. The hook may drive other VMs it owns.
    pub fn on_shared_data(&mut self, hook: impl FnMut(&SharedDataEvent) + Send + 'static) {
        let st = self.store.data_mut();
        st.shared_get_count = 0;
        st.shared_set_count = 0;
        st.shared_hook = Some(Box::new(hook));
    }
    /// Runs `f` once, right after this VM's `n`th `proxy_get_shared_data` (counted from now)
    /// and before the hostcall returns to the guest: i.e. between the guest's get and its set.
    pub fn after_nth_shared_get(&mut self, n: usize, f: impl FnOnce() + Send + 'static) {
        let mut f = Some(f);
        self.on_shared_data(move |ev| {
            if ev.op == SharedDataOp::Get && ev.nth == n {
                if let Some(f) = f.take() {
                    f();
                }
            }
        });
    }
    /// Removes the shared-data hook.
    pub fn clear_shared_data_hook(&mut self) {
        self.store.data_mut().shared_hook = None;
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let st = self.store.data();
            eprintln!("--- logs of {} ---", st.label);
            for l in &st.logs {
                eprintln!("[{:?}] {}", l.level, l.message);
            }
        }
    }
}
