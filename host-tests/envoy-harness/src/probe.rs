//! Runs the raw-ABI probe guest ([`crate::ABI_PROBE_GUEST_WASM`]) in a real Envoy with clusters
//! a callout can reach: `limitador` (the mock upstream, which answers 200 or, with
//! `x-mock-status`, any status with a JSON body), `silent` (accepts connections, never
//! answers), `cut` (answers a head, then closes the connection mid-body), `refused` (a loopback port nobody listens on) and `empty` (no endpoints).
//! [`ProbeStack::lines`] reads back what the guest logged, with the Envoy thread that ran it.

use crate::mock::MockUpstream;
use crate::runner::{Envoy, EnvoyConfig, HarnessError};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// The bootstrap: the harness placeholders, plus `@SILENT_PORT@`, `@CUT_PORT@` and `@REFUSED_PORT@`
/// filled in before the harness renders it.
const TEMPLATE: &str = r#"
admin:
  address:
    socket_address: { address: 127.0.0.1, port_value: {{ADMIN_PORT}} }
static_resources:
  listeners:
  - name: probe_ingress
    address:
      socket_address: { address: 127.0.0.1, port_value: {{LISTEN_PORT}} }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: probe_ingress
          codec_type: AUTO
          route_config:
            name: probe_routes
            virtual_hosts:
            - name: probe
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                route: { cluster: upstream, timeout: 60s }
          http_filters:
          - name: envoy.filters.http.wasm
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                name: probe
                root_id: probe
                configuration:
                  "@type": type.googleapis.com/google.protobuf.StringValue
                  value: {{PLUGIN_CONFIG}}
                vm_config:
                  vm_id: {{VM_ID}}
                  runtime: envoy.wasm.runtime.v8
                  code:
                    local:
                      filename: {{WASM_PATH}}
                failure_policy: {{FAILURE_POLICY}}
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: upstream
    type: STATIC
    connect_timeout: 2s
    load_assignment:
      cluster_name: upstream
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: {{UPSTREAM_PORT}} } } }
  - name: limitador
    type: STATIC
    connect_timeout: 2s
    load_assignment:
      cluster_name: limitador
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: {{UPSTREAM_PORT}} } } }
  - name: silent
    type: STATIC
    connect_timeout: 2s
    load_assignment:
      cluster_name: silent
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: @SILENT_PORT@ } } }
  - name: cut
    type: STATIC
    connect_timeout: 2s
    load_assignment:
      cluster_name: cut
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: @CUT_PORT@ } } }
  - name: refused
    type: STATIC
    connect_timeout: 2s
    load_assignment:
      cluster_name: refused
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: @REFUSED_PORT@ } } }
  - name: empty
    type: STATIC
    connect_timeout: 2s
    load_assignment:
      cluster_name: empty
"#;

/// How a [`StubServer`] treats each connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stub {
    /// Reads whatever comes and never answers.
    Silent,
    /// Answers a response head promising 100 bytes, sends 7, and closes the connection.
    CutMidResponse,
}

/// A loopback server for callouts that do not get a normal answer.
pub struct StubServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    acceptor: Option<JoinHandle<()>>,
}

impl StubServer {
    /// Listens on a free loopback port.
    pub fn start(kind: Stub) -> std::io::Result<StubServer> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let conns = Arc::new(Mutex::new(Vec::new()));
        let (stop2, conns2) = (stop.clone(), conns.clone());
        let acceptor = thread::Builder::new()
            .name("stub-accept".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if stop2.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = conn else { continue };
                    if let Ok(clone) = stream.try_clone() {
                        conns2.lock().unwrap_or_else(|p| p.into_inner()).push(clone);
                    }
                    let _ = thread::Builder::new()
                        .name("stub-conn".into())
                        .spawn(move || serve(stream, kind));
                }
            })?;
        Ok(StubServer {
            addr,
            stop,
            conns,
            acceptor: Some(acceptor),
        })
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

fn serve(mut stream: TcpStream, kind: Stub) {
    let mut buf = [0u8; 4096];
    let mut seen = Vec::new();
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            return;
        }
        seen.extend_from_slice(buf.get(..n).unwrap_or_default());
        let head_done = seen.windows(4).any(|w| w == b"\r\n\r\n");
        if kind == Stub::CutMidResponse && head_done {
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial");
            let _ = stream.flush();
            let _ = stream.shutdown(Shutdown::Both);
            return;
        }
    }
}

impl Drop for StubServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(h) = self.acceptor.take() {
            let _ = h.join();
        }
        for c in self
            .conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            let _ = c.shutdown(Shutdown::Both);
        }
    }
}

/// A loopback port that refuses connections: bound once to find it free, then released.
fn refused_port() -> Result<u16, HarnessError> {
    let l = TcpListener::bind("127.0.0.1:0")
        .map_err(|e| HarnessError(format!("bind 127.0.0.1:0: {e}")))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| HarnessError(format!("local_addr: {e}")))
}

/// One line the probe guest logged: the Envoy thread that ran it and the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeLine {
    pub thread: String,
    pub message: String,
}

/// Envoy (with the probe guest) in front of the mock, with the callout clusters. Fields drop
/// in order: Envoy first.
pub struct ProbeStack {
    pub envoy: Envoy,
    pub mock: MockUpstream,
    pub silent: StubServer,
    pub cut: StubServer,
}

impl ProbeStack {
    /// Starts the mock, the silent server and Envoy with `plugin_config` and `concurrency`
    /// workers.
    pub fn start(plugin_config: &str, concurrency: u32) -> Result<ProbeStack, HarnessError> {
        let mock = MockUpstream::start()
            .map_err(|e| HarnessError(format!("cannot start the mock upstream: {e}")))?;
        let stub = |kind| {
            StubServer::start(kind)
                .map_err(|e| HarnessError(format!("cannot start a stub server: {e}")))
        };
        let (silent, cut) = (stub(Stub::Silent)?, stub(Stub::CutMidResponse)?);
        let template = TEMPLATE
            .replace("@SILENT_PORT@", &silent.port().to_string())
            .replace("@CUT_PORT@", &cut.port().to_string())
            .replace("@REFUSED_PORT@", &refused_port()?.to_string());
        let cfg = EnvoyConfig::new(mock.port(), plugin_config)
            .bootstrap_template(template)
            .wasm_path(crate::ABI_PROBE_GUEST_WASM)
            .vm_id("probe")
            .concurrency(concurrency)
            .component_log_level("wasm:info");
        let envoy = Envoy::start(&cfg)?;
        Ok(ProbeStack {
            envoy,
            mock,
            silent,
            cut,
        })
    }

    /// Every line the guest logged so far, in log order.
    pub fn lines(&self) -> Vec<ProbeLine> {
        parse_lines(&self.envoy.log())
    }

    /// Waits until some logged line starts with `prefix`; returns the lines (all of them).
    pub fn wait_for(
        &self,
        prefix: &str,
        timeout: Duration,
    ) -> Result<Vec<ProbeLine>, HarnessError> {
        self.wait_for_after(0, prefix, timeout)
            .map(|_| self.lines())
    }

    /// Waits until a line after the first `from` starts with `prefix`; returns the lines
    /// after `from`.
    pub fn wait_for_after(
        &self,
        from: usize,
        prefix: &str,
        timeout: Duration,
    ) -> Result<Vec<ProbeLine>, HarnessError> {
        let deadline = Instant::now() + timeout;
        loop {
            let lines: Vec<ProbeLine> = self.lines().into_iter().skip(from).collect();
            if lines.iter().any(|l| l.message.starts_with(prefix)) {
                return Ok(lines);
            }
            if Instant::now() >= deadline {
                return Err(HarnessError(format!(
                    "no probe line starting with {prefix:?} after {timeout:?}; Envoy's log:\n{}",
                    self.envoy.log()
                )));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Extracts the guest's lines from Envoy's log. A line looks like
/// `[date][thread][info][wasm] [file:line] wasm log probe probe probe: <message>`.
pub fn parse_lines(log: &str) -> Vec<ProbeLine> {
    log.lines()
        .filter_map(|l| {
            let thread = l.split(']').nth(1)?.trim_start_matches('[').to_string();
            let (_, rest) = l.split_once(" wasm log ")?;
            let (_, message) = rest.split_once(": ")?;
            Some(ProbeLine {
                thread,
                message: message.to_string(),
            })
        })
        .collect()
}
