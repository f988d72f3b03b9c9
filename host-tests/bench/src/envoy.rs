//! The same typical request through a real Envoy on loopback, five ways side by side: no
//! HTTP filter, Envoy's native `local_ratelimit`, a proxy-wasm filter that does nothing (the
//! floor guest with `nothing=1`), the floor guest making governance's hostcalls with no
//! policy, and governance.wasm. The upstream is a
//! minimal keep-alive HTTP/1.1 server in this process that answers every request with the
//! 1.5 KB OpenAI JSON with usage (a direct response would not do: Envoy then never gives the
//! filter the request body, where the model is read and the request admitted). One Envoy
//! worker; the load generator is `wrk` when installed.

use crate::report::Report;
use crate::workload;
use envoy_harness::{Envoy, EnvoyConfig};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Connections the load generator keeps open (as in the reference anchor).
const CONNECTIONS: usize = 32;

/// The bootstrap: a direct response behind `FILTERS`. The runner requires every placeholder
/// to appear, so the ones a variant does not use sit in a comment.
const TEMPLATE: &str = r#"# governance bench bootstrap
admin:
  address:
    socket_address: { address: 127.0.0.1, port_value: {{ADMIN_PORT}} }
static_resources:
  listeners:
  - name: bench
    address:
      socket_address: { address: 127.0.0.1, port_value: {{LISTEN_PORT}} }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: bench
          codec_type: AUTO
          route_config:
            name: bench_routes
            virtual_hosts:
            - name: bench
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                route: { cluster: upstream, timeout: 30s }
          http_filters:
__FILTERS__
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
        - endpoint:
            address:
              socket_address: { address: 127.0.0.1, port_value: {{UPSTREAM_PORT}} }
"#;

const NO_FILTER: &str =
    "          # no filter: {{WASM_PATH}} {{PLUGIN_CONFIG}} {{VM_ID}} {{FAILURE_POLICY}}";

const LOCAL_RATELIMIT: &str = r#"          # local_ratelimit: {{WASM_PATH}} {{PLUGIN_CONFIG}} {{VM_ID}} {{FAILURE_POLICY}}
          - name: envoy.filters.http.local_ratelimit
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit
              stat_prefix: bench_rl
              token_bucket: { max_tokens: 1000000000, tokens_per_fill: 1000000000, fill_interval: 1s }
              filter_enabled:
                runtime_key: bench_rl_enabled
                default_value: { numerator: 100, denominator: HUNDRED }
              filter_enforced:
                runtime_key: bench_rl_enforced
                default_value: { numerator: 100, denominator: HUNDRED }"#;

/// A proxy-wasm filter (governance, or the floor guest with its plan as configuration).
const WASM_FILTER: &str = r#"          - name: envoy.filters.http.wasm
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                name: governance
                root_id: governance
                configuration:
                  "@type": type.googleapis.com/google.protobuf.StringValue
                  value: {{PLUGIN_CONFIG}}
                vm_config:
                  vm_id: {{VM_ID}}
                  runtime: envoy.wasm.runtime.v8
                  code:
                    local:
                      filename: {{WASM_PATH}}
                failure_policy: {{FAILURE_POLICY}}"#;

/// One load run's result.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Load {
    pub(crate) rps: f64,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) errors: u64,
}

/// One Envoy of the comparison.
struct Variant {
    name: &'static str,
    filters: &'static str,
    wasm: PathBuf,
    config: String,
}

fn template(filters: &str) -> String {
    TEMPLATE.replace("__FILTERS__", filters)
}

/// The upstream: answers every HTTP/1.1 request with the typical JSON response, keep-alive,
/// one thread per connection. Stops when dropped.
pub(crate) struct Upstream {
    pub(crate) port: u16,
    stop: Arc<AtomicBool>,
    accept: Option<std::thread::JoinHandle<()>>,
}

impl Upstream {
    pub(crate) fn start() -> std::io::Result<Upstream> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let stop = Arc::new(AtomicBool::new(false));
        let body = workload::response_json();
        let response = Arc::new(
            format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes(),
        );
        let flag = stop.clone();
        let accept = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if flag.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let response = response.clone();
                let flag = flag.clone();
                std::thread::spawn(move || serve(conn, &response, &flag));
            }
        });
        Ok(Upstream {
            port,
            stop,
            accept: Some(accept),
        })
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

fn serve(mut conn: TcpStream, response: &[u8], stop: &AtomicBool) {
    let _ = conn.set_nodelay(true);
    let _ = conn.set_read_timeout(Some(Duration::from_millis(500)));
    let mut buf: Vec<u8> = Vec::with_capacity(8192);
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        // One whole request (head + body framed by content-length or chunked) in buf?
        if let Some(head_end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head =
                String::from_utf8_lossy(buf.get(..head_end).unwrap_or(&[])).to_ascii_lowercase();
            let chunked = head
                .lines()
                .filter_map(|l| l.strip_prefix("transfer-encoding:"))
                .any(|v| v.contains("chunked"));
            let total = if chunked {
                chunked_end(&buf, head_end + 4)
            } else {
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                Some(head_end + 4 + len)
            };
            if let Some(total) = total.filter(|&total| buf.len() >= total) {
                buf.drain(..total);
                if conn.write_all(response).is_err() {
                    return;
                }
                continue;
            }
        }
        match conn.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => buf.extend_from_slice(chunk.get(..n).unwrap_or(&[])),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
            }
            Err(_) => return,
        }
    }
}

/// Where a chunked body that starts at `at` ends (after its last chunk and an empty trailer),
/// or None while it is incomplete. A request Envoy forwards without `content-length` (the
/// filter takes it off a body it may rewrite) comes chunked; answering at its head would
/// leave the chunks to be read as the next request.
fn chunked_end(buf: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let line_len = buf.get(at..)?.windows(2).position(|w| w == b"\r\n")?;
        let line = std::str::from_utf8(buf.get(at..at + line_len)?).ok()?;
        let size = usize::from_str_radix(line.split(';').next()?.trim(), 16).ok()?;
        at += line_len + 2;
        if size == 0 {
            // No trailers: the empty line ends the body.
            return (buf.get(at..at + 2)? == b"\r\n").then_some(at + 2);
        }
        at += size + 2;
        if at > buf.len() {
            return None;
        }
    }
}

pub(crate) fn have_wrk() -> bool {
    Command::new("wrk")
        .arg("--version")
        .output()
        .map(|o| !o.stdout.is_empty() || !o.stderr.is_empty())
        .unwrap_or(false)
}

/// Runs `wrk` for `secs` seconds over `connections` connections; None if it failed.
pub(crate) fn wrk(addr: SocketAddr, secs: u64, dir: &Path, connections: usize) -> Option<Load> {
    let script = dir.join("bench.lua");
    let lua = format!(
        "wrk.method = \"POST\"\nwrk.body = [[{}]]\nwrk.headers[\"Content-Type\"] = \"application/json\"\nwrk.headers[\"Authorization\"] = \"Bearer {}\"\n",
        workload::REQUEST_BODY,
        workload::KEY
    );
    std::fs::write(&script, lua).ok()?;
    let out = Command::new("wrk")
        .args([
            "-t1",
            &format!("-c{connections}"),
            &format!("-d{secs}s"),
            "--latency",
            "-s",
        ])
        .arg(&script)
        .arg(format!("http://{addr}/v1/chat/completions"))
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut load = Load {
        rps: 0.0,
        p50_ms: 0.0,
        p99_ms: 0.0,
        errors: 0,
    };
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["Requests/sec:", v] => load.rps = v.parse().unwrap_or(0.0),
            ["50%", v] => load.p50_ms = wrk_ms(v),
            ["99%", v] => load.p99_ms = wrk_ms(v),
            ["Non-2xx", "or", "3xx", "responses:", n] => load.errors += n.parse().unwrap_or(0),
            ["Socket", "errors:", rest @ ..] => {
                load.errors += rest
                    .iter()
                    .filter_map(|w| w.trim_end_matches(',').parse::<u64>().ok())
                    .sum::<u64>();
            }
            _ => {}
        }
    }
    (load.rps > 0.0).then_some(load)
}

/// "385.00us" / "1.23ms" / "2.00s" in milliseconds.
fn wrk_ms(v: &str) -> f64 {
    let (num, scale) = if let Some(n) = v.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = v.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1000.0)
    } else {
        (v, 1.0)
    };
    num.parse::<f64>().unwrap_or(0.0) * scale
}

/// Fallback load generator: `connections` keep-alive HTTP/1.1 connections, one thread each,
/// closed loop for `secs` seconds.
pub(crate) fn rust_load(addr: SocketAddr, secs: u64, connections: usize) -> Option<Load> {
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nAuthorization: Bearer {}\r\nContent-Length: {}\r\n\r\n{}",
        workload::KEY,
        workload::REQUEST_BODY.len(),
        workload::REQUEST_BODY
    );
    let deadline = Instant::now() + Duration::from_secs(secs);
    let results: Vec<(Vec<f64>, u64)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..connections)
            .map(|_| {
                let request = request.as_bytes();
                scope.spawn(move || one_connection(addr, request, deadline))
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    let mut latencies: Vec<f64> = results
        .iter()
        .flat_map(|(l, _)| l.iter().copied())
        .collect();
    let errors = results.iter().map(|(_, e)| e).sum();
    if latencies.is_empty() {
        return None;
    }
    latencies.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| {
        let i = ((latencies.len() as f64 - 1.0) * p).round() as usize;
        latencies.get(i).copied().unwrap_or(0.0)
    };
    Some(Load {
        rps: latencies.len() as f64 / secs as f64,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        errors,
    })
}

fn one_connection(addr: SocketAddr, request: &[u8], deadline: Instant) -> (Vec<f64>, u64) {
    let mut latencies = Vec::new();
    let mut errors = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    'reconnect: while Instant::now() < deadline {
        let Ok(mut conn) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
            errors += 1;
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        let _ = conn.set_nodelay(true);
        let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
        while Instant::now() < deadline {
            let start = Instant::now();
            if conn.write_all(request).is_err() {
                errors += 1;
                continue 'reconnect;
            }
            let mut have = 0usize;
            let complete = loop {
                let Some(space) = buf.get_mut(have..) else {
                    break false;
                };
                match conn.read(space) {
                    Ok(0) | Err(_) => break false,
                    Ok(n) => have += n,
                }
                if let Some(done) = response_complete(buf.get(..have).unwrap_or(&[])) {
                    break done;
                }
            };
            if !complete {
                errors += 1;
                continue 'reconnect;
            }
            latencies.push(start.elapsed().as_secs_f64() * 1000.0);
        }
    }
    (latencies, errors)
}

/// Some(true) once a whole response with a content-length is in `buf` (and it was 200).
fn response_complete(buf: &[u8]) -> Option<bool> {
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(buf.get(..head_end)?).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    (buf.len() >= head_end + len).then(|| head.starts_with("http/1.1 200"))
}

pub fn run(quick: bool, wasm: &Path, report: &mut Report) {
    if let Err(e) = envoy_harness::envoy_bin() {
        println!("envoy: SKIPPED ({e})");
        return;
    }
    // All the Envoys run at once and are loaded in turn, round after round, so that a
    // change in the machine's load hits every variant alike; each figure is the median.
    let (rounds, secs) = if quick { (2, 2) } else { (5, 4) };
    let upstream = match Upstream::start() {
        Ok(u) => u,
        Err(e) => {
            println!("envoy: SKIPPED (cannot start the upstream: {e})");
            return;
        }
    };
    let use_wrk = have_wrk();
    let generator = if use_wrk {
        format!("wrk -t1 -c{CONNECTIONS}")
    } else {
        format!("built-in Rust load generator, {CONNECTIONS} connections (wrk not installed)")
    };
    println!(
        "  envoy: 1 worker each, in-process keep-alive upstream answering the 1,536-byte JSON, POST with the typical body; {rounds} rounds of {secs}s per variant, interleaved, medians; {generator}"
    );
    let floor = PathBuf::from(host_tests::FLOOR_GUEST_WASM);
    let plan = crate::wasm::floor_plan(wasm);
    println!("  envoy floor plan (governance's hostcalls on this request): {plan}");
    let variant = |name, filters, wasm: &Path, config: String| Variant {
        name,
        filters,
        wasm: wasm.to_path_buf(),
        config,
    };
    let variants = [
        variant("no_filter", NO_FILTER, wasm, String::new()),
        variant("local_ratelimit", LOCAL_RATELIMIT, wasm, String::new()),
        variant("wasm_nothing", WASM_FILTER, &floor, "nothing=1".to_string()),
        variant("floor", WASM_FILTER, &floor, plan),
        variant("governance", WASM_FILTER, wasm, workload::config(5)),
    ];
    let mut envoys = Vec::new();
    for v in &variants {
        let name = v.name;
        let cfg = EnvoyConfig::new(upstream.port, v.config.clone())
            .wasm_path(&v.wasm)
            .template(template(v.filters))
            .concurrency(1)
            .component_log_level("wasm:warn")
            .extra_arg("-l")
            .extra_arg("warning")
            .max_lifetime(Duration::from_secs(300));
        match Envoy::start(&cfg) {
            Ok(e) => envoys.push((name, e)),
            Err(e) => {
                println!("envoy {name}: FAILED to start: {e}");
                return;
            }
        }
    }
    let dir = std::env::temp_dir();
    let load = |addr: SocketAddr, s: u64| {
        if use_wrk {
            wrk(addr, s, &dir, CONNECTIONS)
        } else {
            rust_load(addr, s, CONNECTIONS)
        }
    };
    for (_, envoy) in &envoys {
        let _ = load(envoy.listen_addr(), 1);
    }
    let mut samples: Vec<Vec<Load>> = vec![Vec::new(); envoys.len()];
    for _ in 0..rounds {
        for ((_, envoy), out) in envoys.iter().zip(samples.iter_mut()) {
            if let Some(l) = load(envoy.listen_addr(), secs) {
                out.push(l);
            }
        }
    }
    if let Some((_, envoy)) = envoys.iter().find(|(n, _)| *n == "governance") {
        let admitted = envoy.counter("governance.admitted").ok().flatten();
        let spend = envoy.counter("governance.spend_micro_usd").ok().flatten();
        let missing = envoy.counter("governance.usage_missing").ok().flatten();
        println!(
            "  envoy governance counters: admitted {admitted:?}, spend_micro_usd {spend:?}, usage_missing {missing:?} (streams cut when a load run stops)"
        );
    }
    drop(envoys);
    drop(upstream);
    let median = |v: &mut Vec<f64>| -> f64 {
        v.sort_by(|a, b| a.total_cmp(b));
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    };
    let mut results: Vec<(&str, Load)> = Vec::new();
    for (Variant { name, .. }, runs) in variants.iter().zip(samples.iter()) {
        if runs.is_empty() {
            println!("envoy {name}: the load generator produced no result");
            return;
        }
        let load = Load {
            rps: median(&mut runs.iter().map(|l| l.rps).collect()),
            p50_ms: median(&mut runs.iter().map(|l| l.p50_ms).collect()),
            p99_ms: median(&mut runs.iter().map(|l| l.p99_ms).collect()),
            errors: runs.iter().map(|l| l.errors).sum(),
        };
        let all: Vec<String> = runs.iter().map(|l| format!("{:.0}", l.rps)).collect();
        println!(
            "  envoy {name}: {:.0} req/s (rounds: {}), p50 {:.3} ms, p99 {:.3} ms, {} errors",
            load.rps,
            all.join(" "),
            load.p50_ms,
            load.p99_ms,
            load.errors
        );
        results.push((*name, load));
    }
    let Some((_, base)) = results.first().copied() else {
        return;
    };
    report.figure(
        "envoy_no_filter_rps",
        format!("{:.0}", base.rps),
        "machine-dependent absolute figure; the ratios below are what carries over",
    );
    for (name, load) in results.iter().skip(1) {
        ratios(report, name, load, &base, "to no filter", "");
    }
    let find = |wanted: &str| results.iter().find(|(n, _)| *n == wanted).map(|(_, l)| *l);
    let (Some(nothing), Some(floor), Some(ours)) =
        (find("wasm_nothing"), find("floor"), find("governance"))
    else {
        return;
    };
    ratios(
        report,
        "governance",
        &ours,
        &nothing,
        "to the do-nothing proxy-wasm filter",
        "_to_nothing",
    );
    ratios(
        report,
        "governance",
        &ours,
        &floor,
        "to the floor module (same hostcalls, no policy)",
        "_to_floor",
    );
    ratios(
        report,
        "floor",
        &floor,
        &nothing,
        "to the do-nothing proxy-wasm filter",
        "_to_nothing",
    );
    let rps = ours.rps / nothing.rps.max(1e-9);
    let p50 = ours.p50_ms / nothing.p50_ms.max(1e-9);
    println!(
        "  envoy goal (governance against the do-nothing filter: at least 0.90 of its requests/s, p50 at most 1.15 of its): {} ({rps:.2}, {p50:.2}; machine-dependent, not a budget)",
        if rps >= 0.9 && p50 <= 1.15 { "met" } else { "not met" }
    );
}

/// Prints `envoy_<name><suffix>_{rps,p50,p99}_ratio` of `load` against `base`.
fn ratios(report: &Report, name: &str, load: &Load, base: &Load, note: &str, suffix: &str) {
    report.figure(
        &format!("envoy_{name}{suffix}_rps_ratio"),
        format!("{:.2}", load.rps / base.rps.max(1e-9)),
        note,
    );
    report.figure(
        &format!("envoy_{name}{suffix}_p50_ratio"),
        format!("{:.2}", load.p50_ms / base.p50_ms.max(1e-9)),
        note,
    );
    report.figure(
        &format!("envoy_{name}{suffix}_p99_ratio"),
        format!("{:.2}", load.p99_ms / base.p99_ms.max(1e-9)),
        note,
    );
}
