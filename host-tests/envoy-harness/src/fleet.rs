//! Fleet mode's real processes: Debian's `redis-server` and the Limitador stand-in
//! (`host-tests/limitador-standin`, built by `scripts/setup-fleet`), each on a free loopback
//! port, and a small client for Limitador's HTTP API.
//!
//! Both run like Envoy does in [`crate::runner`]: in a process group of their own, under
//! `timeout`, stopped on drop (SIGTERM to the group, then SIGKILL), with their files in a
//! temporary directory removed afterwards (kept with `ENVOY_HARNESS_KEEP=1`).
//!
//! Durability: Redis runs without persistence (`--save "" --appendonly no`), so its data
//! lives exactly as long as the process. [`Redis::restart`] therefore starts an empty
//! Redis (same port), while [`Limitador::restart`] keeps every counter, which lives in Redis.

use crate::client::{Client, Request, Response};
use crate::runner::{
    bounded_command, free_port, read_log, repo_root, Guard, HarnessError, TempDir,
};
use serde_json::{json, Value};
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::thread;
use std::time::{Duration, Instant};

/// Each process is killed by `timeout` after this long even if nobody stops it.
const MAX_LIFETIME: Duration = Duration::from_secs(900);
/// How long a start may take before it is given up (the stand-in connects to Redis and
/// reads its limits file first).
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a rewritten limits file may take to be applied (the stand-in polls it).
const RELOAD_TIMEOUT: Duration = Duration::from_secs(10);

fn err(msg: impl Into<String>) -> HarnessError {
    HarnessError(msg.into())
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Where `scripts/setup-fleet` puts the stand-in.
pub fn default_standin_bin() -> PathBuf {
    repo_root().join("host-tests/limitador-standin/target/release/limitador-standin")
}

/// The stand-in binary: `$LIMITADOR_STANDIN_BIN`, else [`default_standin_bin`]. The error
/// says to run `scripts/setup-fleet`.
pub fn standin_bin() -> Result<PathBuf, HarnessError> {
    let (path, origin) = match std::env::var_os("LIMITADOR_STANDIN_BIN") {
        Some(p) => (PathBuf::from(p), "LIMITADOR_STANDIN_BIN="),
        None => (default_standin_bin(), ""),
    };
    if path.is_file() {
        return Ok(path);
    }
    Err(err(format!(
        "the Limitador stand-in is not built ({origin}{} is not a file). Run scripts/setup-fleet \
         first (it installs redis-server, clang and libclang-dev and builds the stand-in), or \
         set LIMITADOR_STANDIN_BIN.",
        path.display()
    )))
}

/// Debian's `redis-server`: `$REDIS_SERVER_BIN`, else the first `redis-server` on `PATH`
/// (or in /usr/bin). The error says to run `scripts/setup-fleet`.
pub fn redis_server_bin() -> Result<PathBuf, HarnessError> {
    if let Some(p) = std::env::var_os("REDIS_SERVER_BIN") {
        let path = PathBuf::from(p);
        if path.is_file() {
            return Ok(path);
        }
        return Err(err(format!(
            "REDIS_SERVER_BIN={} is not a file; unset it or run scripts/setup-fleet",
            path.display()
        )));
    }
    let path_var = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path_var)
        .chain([PathBuf::from("/usr/bin")])
        .map(|dir| dir.join("redis-server"))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            err(
                "redis-server not found on PATH. Run scripts/setup-fleet first (it installs \
                 Debian's redis-server), or set REDIS_SERVER_BIN.",
            )
        })
}

/// One process with its port, its log file and a way to start it again the same way.
struct Process {
    guard: Guard,
    log_path: PathBuf,
}

impl Process {
    /// Spawns `bin args`, output to `log_path`, and polls `ready` until it holds; an exit or
    /// [`READY_TIMEOUT`] is an error carrying the log.
    fn spawn(
        what: &str,
        bin: &Path,
        args: &[String],
        log_path: &Path,
        ready: impl Fn() -> bool,
    ) -> Result<Process, HarnessError> {
        let log = fs::File::create(log_path)
            .map_err(|e| err(format!("create {}: {e}", log_path.display())))?;
        let log2 = log
            .try_clone()
            .map_err(|e| err(format!("dup log file: {e}")))?;
        let mut cmd = bounded_command(bin, MAX_LIFETIME);
        cmd.args(args)
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2));
        let child = cmd
            .spawn()
            .map_err(|e| err(format!("cannot start {}: {e}", bin.display())))?;
        let mut process = Process {
            guard: Guard { child: Some(child) },
            log_path: log_path.to_path_buf(),
        };
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = process.guard.try_wait() {
                process.guard.child = None;
                return Err(err(format!(
                    "{what} exited during startup ({status}); its log:\n{}",
                    process.log()
                )));
            }
            if ready() {
                return Ok(process);
            }
            if Instant::now() >= deadline {
                let status = process.guard.stop();
                return Err(err(format!(
                    "{what} not ready after {READY_TIMEOUT:?} (stopped, status {status:?}); its log:\n{}",
                    process.log()
                )));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn log(&self) -> String {
        read_log(&self.log_path)
    }

    fn is_running(&mut self) -> bool {
        self.guard.child.is_some() && self.guard.try_wait().is_none()
    }
}

/// Whether a start failed because the port was taken between probing and binding.
fn port_taken(e: &HarnessError) -> bool {
    e.0.contains("Address already in use") || e.0.contains("address already in use")
}

/// A `redis-server` on a free 127.0.0.1 port, without persistence, in its own temporary
/// directory. Dropping it stops it.
pub struct Redis {
    process: Option<Process>,
    port: u16,
    // Last field: removed after the process has stopped.
    dir: TempDir,
}

impl Redis {
    /// Starts Redis and waits until it answers `PING`.
    pub fn start() -> Result<Redis, HarnessError> {
        let bin = redis_server_bin()?;
        let dir = TempDir::new("fleet-redis")?;
        let mut last = None;
        for _ in 0..3 {
            let port = free_port()?;
            match Redis::spawn(&bin, dir.path(), port) {
                Ok(process) => {
                    return Ok(Redis {
                        process: Some(process),
                        port,
                        dir,
                    })
                }
                Err(e) if port_taken(&e) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| err("redis-server could not bind a port")))
    }

    fn spawn(bin: &Path, dir: &Path, port: u16) -> Result<Process, HarnessError> {
        let args: Vec<String> = [
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            &dir.to_string_lossy(),
            "--daemonize",
            "no",
            "--logfile",
            "",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        Process::spawn("redis-server", bin, &args, &dir.join("redis.log"), || {
            redis_ping(port)
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>`, what the stand-in is given.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Stops Redis (SIGTERM, then SIGKILL). Its data is gone.
    pub fn stop(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.guard.stop();
        }
    }

    /// Stops Redis and starts an empty one on the same port.
    pub fn restart(&mut self) -> Result<(), HarnessError> {
        self.stop();
        let bin = redis_server_bin()?;
        self.process = Some(Redis::spawn(&bin, self.dir.path(), self.port)?);
        Ok(())
    }

    pub fn is_running(&mut self) -> bool {
        self.process.as_mut().is_some_and(Process::is_running)
    }

    /// Redis's log so far.
    pub fn log(&self) -> String {
        read_log(&self.dir.path().join("redis.log"))
    }
}

/// True when a Redis on `port` answers `PING` with `+PONG`.
fn redis_ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&loopback(port), Duration::from_millis(200))
    else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut reply = [0u8; 7];
    stream.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
}

/// A Limitador stand-in on a free 127.0.0.1 port, counting in a [`Redis`], with its limits
/// file in its own temporary directory. Dropping it stops it.
pub struct Limitador {
    process: Option<Process>,
    port: u16,
    redis_url: String,
    limits_path: PathBuf,
    // Last field: removed after the process has stopped.
    dir: TempDir,
}

impl Limitador {
    /// Writes `limits_yaml` (limitador-server's limits file format) and starts the stand-in
    /// on `redis`; returns once `GET /status` answers 200.
    pub fn start(redis: &Redis, limits_yaml: &str) -> Result<Limitador, HarnessError> {
        Limitador::start_on(&redis.url(), limits_yaml)
    }

    /// Like [`Limitador::start`], for any Redis URL.
    pub fn start_on(redis_url: &str, limits_yaml: &str) -> Result<Limitador, HarnessError> {
        let bin = standin_bin()?;
        let dir = TempDir::new("fleet-limitador")?;
        let limits_path = dir.path().join("limits.yaml");
        write_atomically(&limits_path, limits_yaml)?;
        let mut last = None;
        for _ in 0..3 {
            let port = free_port()?;
            match Limitador::spawn(&bin, dir.path(), &limits_path, redis_url, port) {
                Ok(process) => {
                    return Ok(Limitador {
                        process: Some(process),
                        port,
                        redis_url: redis_url.to_string(),
                        limits_path,
                        dir,
                    })
                }
                Err(e) if port_taken(&e) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| err("the Limitador stand-in could not bind a port")))
    }

    fn spawn(
        bin: &Path,
        dir: &Path,
        limits_path: &Path,
        redis_url: &str,
        port: u16,
    ) -> Result<Process, HarnessError> {
        let args: Vec<String> = vec![
            limits_path.to_string_lossy().into_owned(),
            "redis".into(),
            redis_url.into(),
            "--http-ip".into(),
            "127.0.0.1".into(),
            "--http-port".into(),
            port.to_string(),
        ];
        let api = LimitadorApi::new(loopback(port)).with_timeout(Duration::from_secs(2));
        Process::spawn(
            "the Limitador stand-in",
            bin,
            &args,
            &dir.join("limitador.log"),
            || api.status().is_ok(),
        )
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn addr(&self) -> SocketAddr {
        loopback(self.port)
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// A client for its HTTP API.
    pub fn api(&self) -> LimitadorApi {
        LimitadorApi::new(self.addr())
    }

    pub fn limits_path(&self) -> &Path {
        &self.limits_path
    }

    /// Rewrites the limits file (atomically, by rename) and waits until the stand-in has
    /// applied it (`/status` `config_version` moves on). A file it refuses is an error
    /// carrying its log; the previous limits then stay in force.
    pub fn set_limits(&self, limits_yaml: &str) -> Result<(), HarnessError> {
        let api = self.api();
        let before = api.status()?;
        let version = |s: &Value| s.get("config_version").and_then(Value::as_u64);
        let errors = |s: &Value| s.get("config_err_since").and_then(Value::as_u64);
        write_atomically(&self.limits_path, limits_yaml)?;
        let deadline = Instant::now() + RELOAD_TIMEOUT;
        loop {
            let now = api.status()?;
            if version(&now) > version(&before) {
                return Ok(());
            }
            if errors(&now) > errors(&before) {
                return Err(err(format!(
                    "the stand-in refused the limits file; its log:\n{}",
                    self.log()
                )));
            }
            if Instant::now() >= deadline {
                return Err(err(format!(
                    "limits file not applied within {RELOAD_TIMEOUT:?}; its log:\n{}",
                    self.log()
                )));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the stand-in (SIGTERM, then SIGKILL). Counters stay in Redis.
    pub fn stop(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.guard.stop();
        }
    }

    /// Stops the stand-in and starts it again on the same port, limits file and Redis.
    pub fn restart(&mut self) -> Result<(), HarnessError> {
        self.stop();
        let bin = standin_bin()?;
        self.process = Some(Limitador::spawn(
            &bin,
            self.dir.path(),
            &self.limits_path,
            &self.redis_url,
            self.port,
        )?);
        Ok(())
    }

    pub fn is_running(&mut self) -> bool {
        self.process.as_mut().is_some_and(Process::is_running)
    }

    /// The stand-in's log so far (stdout and stderr).
    pub fn log(&self) -> String {
        read_log(&self.dir.path().join("limitador.log"))
    }
}

/// Runs `limitador-standin <file> --validate` on `limits_yaml`: `Ok(Ok(limits as YAML))`
/// when the file is accepted, `Ok(Err(message))` when it is refused (the parser is the
/// library's, as in limitador-server).
pub fn validate_limits(limits_yaml: &str) -> Result<Result<String, String>, HarnessError> {
    let bin = standin_bin()?;
    let dir = TempDir::new("fleet-validate")?;
    let path = dir.path().join("limits.yaml");
    write_atomically(&path, limits_yaml)?;
    let out = bounded_command(&bin, Duration::from_secs(60))
        .arg(&path)
        .arg("--validate")
        .output()
        .map_err(|e| err(format!("cannot run {}: {e}", bin.display())))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    Ok(if out.status.success() {
        Ok(stdout)
    } else {
        Err(stderr)
    })
}

fn write_atomically(path: &Path, text: &str) -> Result<(), HarnessError> {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, text).map_err(|e| err(format!("write {}: {e}", tmp.display())))?;
    fs::rename(&tmp, path).map_err(|e| {
        err(format!(
            "rename {} -> {}: {e}",
            tmp.display(),
            path.display()
        ))
    })
}

/// A client for Limitador's HTTP API (the stand-in's or the official server's): one
/// connection per call.
#[derive(Debug, Clone)]
pub struct LimitadorApi {
    client: Client,
}

impl LimitadorApi {
    /// A client with a 10 s timeout.
    pub fn new(addr: SocketAddr) -> LimitadorApi {
        LimitadorApi {
            client: Client::new(addr).with_timeout(Duration::from_secs(10)),
        }
    }

    pub fn with_timeout(mut self, timeout: Duration) -> LimitadorApi {
        self.client = self.client.with_timeout(timeout);
        self
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The JSON body of the three counting calls.
    pub fn body(namespace: &str, values: &[(&str, &str)], delta: u64) -> Value {
        let values: serde_json::Map<String, Value> = values
            .iter()
            .map(|(k, v)| (k.to_string(), Value::from(*v)))
            .collect();
        json!({ "namespace": namespace, "values": values, "delta": delta })
    }

    /// POSTs any JSON body to `path` and returns the whole response.
    pub fn post(&self, path: &str, body: &Value) -> Result<Response, HarnessError> {
        self.client
            .send(&Request::post(path).json(body))
            .map_err(|e| err(format!("POST {path}: {e}")))
    }

    /// GET `path`, the whole response.
    pub fn get(&self, path: &str) -> Result<Response, HarnessError> {
        self.client
            .get(path)
            .map_err(|e| err(format!("GET {path}: {e}")))
    }

    /// `POST /check`: the status (200 fits, 429 limited).
    pub fn check(
        &self,
        ns: &str,
        values: &[(&str, &str)],
        delta: u64,
    ) -> Result<u16, HarnessError> {
        Ok(self.post("/check", &Self::body(ns, values, delta))?.status)
    }

    /// `POST /report`: the status (200 unless the server fails).
    pub fn report(
        &self,
        ns: &str,
        values: &[(&str, &str)],
        delta: u64,
    ) -> Result<u16, HarnessError> {
        Ok(self.post("/report", &Self::body(ns, values, delta))?.status)
    }

    /// `POST /check_and_report`: the status (200 counted, 429 limited and not counted).
    pub fn check_and_report(
        &self,
        ns: &str,
        values: &[(&str, &str)],
        delta: u64,
    ) -> Result<u16, HarnessError> {
        Ok(self
            .post("/check_and_report", &Self::body(ns, values, delta))?
            .status)
    }

    /// `GET /limits/{namespace}` as JSON.
    pub fn limits(&self, namespace: &str) -> Result<Value, HarnessError> {
        self.get_json(&format!("/limits/{namespace}"))
    }

    /// `GET /counters/{namespace}` as JSON.
    pub fn counters(&self, namespace: &str) -> Result<Value, HarnessError> {
        self.get_json(&format!("/counters/{namespace}"))
    }

    /// `GET /status` as JSON.
    pub fn status(&self) -> Result<Value, HarnessError> {
        self.get_json("/status")
    }

    fn get_json(&self, path: &str) -> Result<Value, HarnessError> {
        let resp = self.get(path)?;
        if resp.status != 200 {
            return Err(err(format!(
                "GET {path} answered {}: {}",
                resp.status,
                resp.text()
            )));
        }
        resp.json()
            .ok_or_else(|| err(format!("GET {path}: not JSON: {}", resp.text())))
    }

    /// How much the counter of `namespace` whose variables are `set_variables` has left
    /// (`remaining` in `/counters`), `None` when there is no such counter.
    pub fn remaining(
        &self,
        namespace: &str,
        set_variables: &[(&str, &str)],
    ) -> Result<Option<u64>, HarnessError> {
        let counters = self.counters(namespace)?;
        let wanted: serde_json::Map<String, Value> = set_variables
            .iter()
            .map(|(k, v)| (k.to_string(), Value::from(*v)))
            .collect();
        Ok(counters.as_array().and_then(|list| {
            list.iter()
                .find(|c| c.get("set_variables").and_then(Value::as_object) == Some(&wanted))
                .and_then(|c| c.get("remaining"))
                .and_then(Value::as_u64)
        }))
    }
}
