//! [`HostBuilder`] and [`Host`]: one "Envoy process" with its worker VMs, canary, shared data,
//! stats and clock. Nothing is global: every test builds its own host.

use crate::abi::log::{LogEntry, LogLevel};
use crate::abi::metrics::Metrics;
use crate::abi::queues::Queues;
use crate::abi::shared_data::SharedData;
use crate::abi::time::Clock;
use crate::callouts::{Callout, CalloutAnswer, Clusters};
use crate::error::HostError;
use crate::state::VmState;
use crate::vm::Vm;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::{Arc, Mutex};
use wasmtime::{Config, Engine, Linker, Module};

/// Fixed settings of one plugin deployment (Envoy's `PluginConfig` + `VmConfig` + listener).
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub vm_id: String,
    pub plugin_name: String,
    pub root_id: String,
    pub vm_config: Vec<u8>,
    pub env: Vec<(String, String)>,
    pub log_level: LogLevel,
    pub fail_open: bool,
    pub buffer_limit: usize,
    pub allow_on_headers_stop_iteration: bool,
}

/// What every VM of a host shares (behind one `Arc`).
pub(crate) struct HostShared {
    pub engine: Engine,
    pub module: Module,
    pub linker: Linker<VmState>,
    pub settings: Settings,
    pub clock: Clock,
    pub shared_data: SharedData,
    pub metrics: Metrics,
    pub queues: Arc<Mutex<Queues>>,
    pub clusters: Clusters,
    /// (generation, plugin configuration bytes) currently accepted.
    pub plugin: Mutex<(u64, Vec<u8>)>,
}

impl HostShared {
    pub(crate) fn current_plugin(&self) -> (u64, Vec<u8>) {
        self.plugin
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// Builds a [`Host`]. Defaults: vm_id `""`, plugin name `"governance"`, root id `""`, one
/// worker, clock at 2026-01-01T00:00:00Z, fail-closed, 1 MiB buffer limit, log level Info,
/// `allow_on_headers_stop_iteration` off, empty plugin and VM configuration, no clusters.
pub struct HostBuilder {
    process: Option<Process>,
    clusters: Vec<ClusterSetup>,
    wasm: PathBuf,
    bytes: Option<Vec<u8>>,
    plugin_config: Vec<u8>,
    workers: usize,
    clock_start: i64,
    settings: Settings,
}

/// The process-wide parts of an Envoy: what two plugins in one Envoy share.
#[derive(Clone)]
struct Process {
    clock: Clock,
    shared_data: SharedData,
    metrics: Metrics,
    queues: Arc<Mutex<Queues>>,
    clusters: Clusters,
}

/// A cluster declared on the builder, applied to the process's clusters at build time.
enum ClusterSetup {
    Waiting(String),
    NoEndpoints(String),
    Responding(String, crate::callouts::Responder),
}

/// 2026-01-01T00:00:00Z in Unix nanoseconds, the default clock start.
pub const DEFAULT_CLOCK_START: i64 = 1_767_225_600_000_000_000;

impl HostBuilder {
    /// A builder for the module at `wasm` (a path, e.g. [`crate::GOVERNANCE_WASM`]).
    pub fn new(wasm: impl Into<PathBuf>) -> Self {
        HostBuilder {
            process: None,
            clusters: Vec::new(),
            wasm: wasm.into(),
            bytes: None,
            plugin_config: Vec::new(),
            workers: 1,
            clock_start: DEFAULT_CLOCK_START,
            settings: Settings {
                vm_id: String::new(),
                plugin_name: "governance".to_string(),
                root_id: String::new(),
                vm_config: Vec::new(),
                env: Vec::new(),
                log_level: LogLevel::Info,
                fail_open: false,
                buffer_limit: 1 << 20,
                allow_on_headers_stop_iteration: false,
            },
        }
    }
    /// A builder for an in-memory module (binary format), e.g. one a test assembled.
    pub fn from_bytes(bytes: impl Into<Vec<u8>>) -> Self {
        let mut b = HostBuilder::new("<memory>");
        b.bytes = Some(bytes.into());
        b
    }
    /// Runs this plugin in the same Envoy process as `other`: same shared-data store (still
    /// namespaced by vm_id), stats, clock and queues. The clock start setting is then ignored.
    pub fn same_process_as(mut self, other: &Host) -> Self {
        self.process = Some(Process {
            clock: other.shared.clock.clone(),
            shared_data: other.shared.shared_data.clone(),
            metrics: other.shared.metrics.clone(),
            queues: other.shared.queues.clone(),
            clusters: other.shared.clusters.clone(),
        });
        self
    }
    /// Declares an upstream cluster whose callouts wait until the test answers them
    /// ([`Vm::answer_callout`]). Calls to an undeclared cluster fail with BadArgument.
    pub fn cluster(mut self, name: &str) -> Self {
        self.clusters.push(ClusterSetup::Waiting(name.to_string()));
        self
    }
    /// Declares a cluster whose callouts `responder` answers (it sees each call's record).
    pub fn cluster_responding(
        mut self,
        name: &str,
        responder: impl FnMut(&Callout) -> CalloutAnswer + Send + 'static,
    ) -> Self {
        self.clusters.push(ClusterSetup::Responding(
            name.to_string(),
            Box::new(responder),
        ));
        self
    }
    /// Declares a cluster with no endpoints: `proxy_http_call` fails with InternalFailure.
    pub fn cluster_without_endpoints(mut self, name: &str) -> Self {
        self.clusters
            .push(ClusterSetup::NoEndpoints(name.to_string()));
        self
    }
    /// Plugin configuration (the `configuration` StringValue), given to `on_configure`.
    pub fn plugin_config(mut self, config: impl AsRef<[u8]>) -> Self {
        self.plugin_config = config.as_ref().to_vec();
        self
    }
    /// VM configuration bytes (`vm_config.configuration`), given to `on_vm_start`.
    pub fn vm_config(mut self, config: impl AsRef<[u8]>) -> Self {
        self.settings.vm_config = config.as_ref().to_vec();
        self
    }
    /// `vm_config.vm_id`: the shared-data namespace and `plugin_vm_id`.
    pub fn vm_id(mut self, vm_id: &str) -> Self {
        self.settings.vm_id = vm_id.to_string();
        self
    }
    /// `plugin_name` property.
    pub fn plugin_name(mut self, name: &str) -> Self {
        self.settings.plugin_name = name.to_string();
        self
    }
    /// `root_id` (`plugin_root_id` property).
    pub fn root_id(mut self, root_id: &str) -> Self {
        self.settings.root_id = root_id.to_string();
        self
    }
    /// Number of worker VMs (`--concurrency`).
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n;
        self
    }
    /// Clock start, Unix epoch nanoseconds.
    pub fn clock_start_nanos(mut self, nanos: i64) -> Self {
        self.clock_start = nanos;
        self
    }
    /// `fail_open`: after a VM failure the filter is bypassed instead of answering 503.
    pub fn fail_open(mut self, on: bool) -> Self {
        self.settings.fail_open = on;
        self
    }
    /// `per_connection_buffer_limit_bytes` (default 1 MiB).
    pub fn buffer_limit(mut self, bytes: usize) -> Self {
        self.settings.buffer_limit = bytes;
        self
    }
    /// `allow_on_headers_stop_iteration` (Envoy ≥ 1.35).
    pub fn allow_on_headers_stop_iteration(mut self, on: bool) -> Self {
        self.settings.allow_on_headers_stop_iteration = on;
        self
    }
    /// Level `proxy_get_log_level` reports (Envoy's `wasm` logger). All logs are captured anyway.
    pub fn log_level(mut self, level: LogLevel) -> Self {
        self.settings.log_level = level;
        self
    }
    /// An environment variable visible through WASI `environ_get` (`environment_variables`).
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.settings.env.push((key.to_string(), value.to_string()));
        self
    }

    /// Loads the module, runs the canary (start + configure, then dropped) and starts the
    /// workers. Fails like Envoy: load errors, `on_vm_start`/`on_configure` returning false.
    pub fn build(self) -> Result<Host, HostError> {
        let bytes = match self.bytes {
            Some(b) => b,
            None => std::fs::read(&self.wasm)
                .map_err(|e| HostError::Load(format!("{}: {e}", self.wasm.display())))?,
        };
        let (engine, module) = compiled(&bytes)?;
        check_exports(&module)?;
        let mut linker = Linker::new(&engine);
        crate::abi::link_all(&mut linker).map_err(|e| HostError::Load(format!("{e:#}")))?;
        let process = self.process.unwrap_or_else(|| Process {
            clock: Clock::new(self.clock_start),
            shared_data: SharedData::default(),
            metrics: Metrics::default(),
            queues: Arc::new(Mutex::new(Queues::default())),
            clusters: Clusters::default(),
        });
        for setup in self.clusters {
            match setup {
                ClusterSetup::Waiting(name) => process.clusters.declare(&name),
                ClusterSetup::NoEndpoints(name) => {
                    process.clusters.declare_without_endpoints(&name)
                }
                ClusterSetup::Responding(name, r) => process.clusters.set_responder(&name, r),
            }
        }
        let shared = Arc::new(HostShared {
            engine,
            module,
            linker,
            settings: self.settings,
            clock: process.clock,
            shared_data: process.shared_data,
            metrics: process.metrics,
            queues: process.queues,
            clusters: process.clusters,
            plugin: Mutex::new((1, self.plugin_config)),
        });
        let canary_logs = run_canary(&shared, &shared.current_plugin().1)?;
        let mut vms = Vec::new();
        for i in 0..self.workers {
            vms.push(Vm::start(shared.clone(), format!("worker {i}"))?);
        }
        Ok(Host {
            shared,
            vms,
            canary_logs,
        })
    }
}

/// The compiled module for `bytes`, compiled once per test process. Envoy too compiles a
/// module once and clones VMs from it; the cache holds only immutable compiled code, never
/// state a test could observe, so hosts stay independent.
fn compiled(bytes: &[u8]) -> Result<(Engine, Module), HostError> {
    type Cache = Mutex<HashMap<u64, (Engine, Module)>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut hasher);
    let key = hasher.finish();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    let mut cache = cache
        .lock()
        .map_err(|_| HostError::Load("module cache poisoned".into()))?;
    if let Some((engine, module)) = cache.get(&key) {
        return Ok((engine.clone(), module.clone()));
    }
    let mut config = Config::new();
    config.consume_fuel(true);
    let engine = Engine::new(&config).map_err(|e| HostError::Load(format!("{e:#}")))?;
    let module = Module::new(&engine, bytes).map_err(|e| HostError::Load(format!("{e:#}")))?;
    cache.insert(key, (engine.clone(), module.clone()));
    Ok((engine, module))
}

/// cpp-host refuses a module without an ABI marker or without an allocator.
fn check_exports(module: &Module) -> Result<(), HostError> {
    let names: Vec<&str> = module.exports().map(|e| e.name()).collect();
    let has = |n: &str| names.contains(&n);
    if !(has("proxy_abi_version_0_2_1") || has("proxy_abi_version_0_2_0")) {
        return Err(HostError::Load(
            "Missing or unknown Proxy-Wasm ABI version".to_string(),
        ));
    }
    if !(has("malloc") || has("proxy_on_memory_allocate")) {
        return Err(HostError::Load("missing malloc".to_string()));
    }
    Ok(())
}

/// Runs a canary VM for `config` and returns its logs; the canary is then dropped.
fn run_canary(shared: &Arc<HostShared>, config: &[u8]) -> Result<Vec<LogEntry>, HostError> {
    let mut canary = Vm::instantiate(shared.clone(), "canary".to_string())?;
    canary.create_root(config)?;
    Ok(canary.take_logs())
}

/// One Envoy process running the plugin: worker VMs plus what they share.
pub struct Host {
    shared: Arc<HostShared>,
    vms: Vec<Vm>,
    canary_logs: Vec<LogEntry>,
}

impl Host {
    /// Worker VM `i` (panics if out of range or taken).
    pub fn vm(&mut self, i: usize) -> &mut Vm {
        let n = self.vms.len();
        match self.vms.get_mut(i) {
            Some(vm) => vm,
            None => panic!("no worker VM {i} (have {n})"),
        }
    }
    /// All worker VMs still owned by the host.
    pub fn vms(&mut self) -> &mut [Vm] {
        &mut self.vms
    }
    /// Takes the worker VMs out (e.g. to move each to its own thread or into a hook closure).
    pub fn take_vms(&mut self) -> Vec<Vm> {
        std::mem::take(&mut self.vms)
    }
    /// Starts one more worker VM with the current plugin configuration (not owned by the host).
    pub fn new_worker(&self) -> Result<Vm, HostError> {
        Vm::start(self.shared.clone(), "extra worker".to_string())
    }
    /// Pushes a new plugin configuration: a canary validates it (Err = Envoy NACKs it, nothing
    /// changes); then every owned VM gets a new root context and the old root gets
    /// on_done/on_delete. VMs taken out pick it up with [`Vm::sync_config`].
    pub fn reconfigure(&mut self, config: impl AsRef<[u8]>) -> Result<(), HostError> {
        let config = config.as_ref().to_vec();
        self.canary_logs = run_canary(&self.shared, &config)?;
        {
            let mut plugin = self
                .shared
                .plugin
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            plugin.0 += 1;
            plugin.1 = config;
        }
        for vm in &mut self.vms {
            vm.sync_config()?;
        }
        Ok(())
    }
    /// The process-wide shared-data store.
    pub fn shared_data(&self) -> SharedData {
        self.shared.shared_data.clone()
    }
    /// The vm_id this host's VMs use as their shared-data namespace.
    pub fn vm_id(&self) -> &str {
        &self.shared.settings.vm_id
    }
    /// The clock all VMs read.
    pub fn clock(&self) -> Clock {
        self.shared.clock.clone()
    }
    /// The stats store (metrics aggregated across VMs by name).
    pub fn metrics(&self) -> Metrics {
        self.shared.metrics.clone()
    }
    /// Shortcut: the value of metric `name`.
    pub fn metric(&self, name: &str) -> Option<i64> {
        self.shared.metrics.value(name)
    }
    /// Logs of the last canary run (its on_configure side effects are real).
    pub fn canary_logs(&self) -> &[LogEntry] {
        &self.canary_logs
    }
    /// The upstream clusters (change responders while the host runs, e.g. to take the
    /// service behind a cluster down and bring it back).
    pub fn clusters(&self) -> Clusters {
        self.shared.clusters.clone()
    }
    /// Delivers everything due on every owned VM (callout answers and timeouts at the current
    /// clock, queue notifications), until none has anything left. Returns how many.
    pub fn run_due(&mut self) -> usize {
        let mut total = 0;
        loop {
            let delivered: usize = self.vms.iter_mut().map(Vm::run_due).sum();
            if delivered == 0 && !self.vms.iter().any(Vm::has_due) {
                return total;
            }
            total += delivered;
        }
    }
    /// Advances the clock by `by`, then [`Host::run_due`] (ticks are fired separately, with
    /// [`Vm::fire_due_ticks`]).
    pub fn advance(&mut self, by: std::time::Duration) -> usize {
        self.shared.clock.advance(by);
        self.run_due()
    }
    /// Every callout the owned VMs dispatched, VM by VM, oldest first.
    pub fn callouts(&self) -> Vec<Callout> {
        self.vms
            .iter()
            .flat_map(|vm| vm.callouts().iter().cloned())
            .collect()
    }
}
