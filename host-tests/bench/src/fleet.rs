//! Fleet mode's figures (information, not budgets):
//! - the fuel of the typical request in fleet mode in the wasmtime host, with the filter's
//!   in-memory Limitador answering the calls (the round, the charges and their answers);
//! - the latency fleet mode adds in a real Envoy (1 worker) against local mode, both on the
//!   same bootstrap, with the Limitador stand-in and Redis started here;
//! - the stand-in's `/check` latency with 10,000 owners configured next to 5.
//!
//! The real-process part needs `scripts/setup` and `scripts/setup-fleet`; without them it
//! is skipped with a message, and quick mode skips it.

use crate::envoy::{have_wrk, rust_load, wrk, Load, Upstream};
use crate::report::{thousands, Report};
use crate::workload;
use envoy_harness::fleet::{redis_server_bin, standin_bin};
use envoy_harness::fleet_latency::measure_check;
use envoy_harness::{fleet_envoy_config, Envoy, Limitador, Redis};
use governance::fleet::fake::FakeLimitador;
use governance::fleet::protocol::{Answer, Call};
use host_tests::{Callout, CalloutAnswer, CalloutResponse, HostBuilder, Vm};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const WARMUP: usize = 1_000;
const MEASURED: usize = 100;

/// `config` with fleet mode on (cluster `limitador`, every other setting at its default).
pub fn with_fleet(config: &str) -> String {
    config.replacen('{', r#"{"fleet":{"cluster":"limitador"},"#, 1)
}

/// How the in-memory Limitador answers one callout (its clock: the dispatch time).
fn answer(limitador: &Mutex<FakeLimitador>, callout: &Callout) -> CalloutAnswer {
    let call = Call {
        method: if callout.header(":method") == Some("GET") {
            "GET"
        } else {
            "POST"
        },
        path: callout.header(":path").unwrap_or_default().to_string(),
        body: callout.body.clone(),
    };
    let Answer {
        status,
        remaining,
        reset_secs,
        body,
    } = match limitador.lock() {
        Ok(mut fake) => fake.answer(&call, callout.dispatched_at_nanos),
        Err(_) => return CalloutAnswer::Reset,
    };
    let Some(status) = status else {
        return CalloutAnswer::Reset;
    };
    let mut response = CalloutResponse::json(u32::from(status), body);
    if let Some(remaining) = remaining {
        response = response.header("x-ratelimit-remaining", &remaining.to_string());
    }
    if let Some(reset) = reset_secs {
        response = response.header("x-ratelimit-reset", &reset.to_string());
    }
    CalloutAnswer::respond(response)
}

/// One whole exchange and everything it leaves to the root context (the charges and their
/// answers); its fuel.
fn exchange(vm: &mut Vm, req: &host_tests::Request, resp: &host_tests::Response) -> u64 {
    let before = vm.fuel_consumed();
    let ex = vm.exchange(req, resp);
    vm.run_due();
    if ex.client.status != 200 || ex.stalled {
        let logs: Vec<String> = vm.logs().iter().map(|l| l.message.clone()).collect();
        panic!(
            "the fleet-mode request was not admitted (status {}, stalled {}); logs: {logs:#?}",
            ex.client.status, ex.stalled
        );
    }
    vm.forget_stream(ex.stream);
    vm.clear_trace();
    vm.take_logs();
    vm.fuel_consumed() - before
}

/// The typical request's fuel in fleet mode, and the Limitador calls it makes.
pub fn fuel(wasm: &Path, report: &Report) {
    let config = with_fleet(&workload::config(5));
    let policy = match governance::config::parse(&config) {
        Ok(p) => p,
        Err(e) => panic!("the fleet configuration is refused: {e}"),
    };
    let prefix = policy
        .fleet
        .as_ref()
        .map_or_else(|| policy.namespace.clone(), |f| f.prefix.clone());
    let limitador = Arc::new(Mutex::new(FakeLimitador::new(
        governance::fleet::expected_limits(&policy, &prefix),
    )));
    let responder = Arc::clone(&limitador);
    let mut host = match HostBuilder::new(wasm)
        .plugin_config(&config)
        .vm_id("governance")
        .workers(1)
        .cluster_responding("limitador", move |callout| answer(&responder, callout))
        .build()
    {
        Ok(host) => host,
        Err(e) => panic!("cannot start {}: {e:?}", wasm.display()),
    };
    let req = workload::request(workload::REQUEST_BODY);
    let resp = workload::response();
    let vm = host.vm(0);
    for _ in 0..WARMUP {
        exchange(vm, &req, &resp);
    }
    let calls_before = limitador.lock().map(|l| l.log.len()).unwrap_or(0);
    vm.reset_fuel_by_callback();
    let mut total = 0u64;
    for _ in 0..MEASURED {
        total += exchange(vm, &req, &resp);
    }
    let calls = limitador.lock().map(|l| l.log.len()).unwrap_or(0) - calls_before;
    let profile = vm.fuel_by_callback();
    let unavailable = host.metric("governance.fleet.unavailable").unwrap_or(0);
    let admitted = host.metric("governance.admitted").unwrap_or(0);
    if unavailable != 0 || admitted < (WARMUP + MEASURED) as i64 {
        panic!("fleet mode fell back (unavailable {unavailable}, admitted {admitted})");
    }
    report.figure(
        "typical_request_fuel_fleet",
        thousands(total / MEASURED as u64),
        &format!(
            "the typical request in fleet mode, its round of calls and charges answered by an \
             in-memory Limitador, root callbacks included; {} calls per request \
             (information, not a budget)",
            calls / MEASURED
        ),
    );
    println!("  fleet mode, fuel per request by callback (mean over {MEASURED}):");
    for (name, calls, fuel) in profile {
        println!(
            "    {name:<24} {:>8}   ({:.1} calls/request)",
            thousands(fuel / MEASURED as u64),
            calls as f64 / MEASURED as f64
        );
    }
}

/// Local mode and fleet mode side by side in real Envoys, and the stand-in's `/check`.
pub fn envoy(quick: bool, wasm: &Path, report: &Report) {
    if quick {
        println!("fleet envoy: skipped in quick mode (full mode measures it)");
        return;
    }
    let missing = envoy_harness::envoy_bin()
        .and_then(|_| standin_bin())
        .and_then(|_| redis_server_bin());
    if let Err(e) = missing {
        println!("fleet envoy: SKIPPED ({e})");
        return;
    }
    if let Err(e) = latency(wasm, report) {
        println!("fleet envoy: FAILED: {e}");
    }
    if let Err(e) = check_latency(report) {
        println!("fleet /check latency: FAILED: {e}");
    }
}

/// Loads the two Envoys in turn, round after round (a change in the machine's load hits
/// both alike), at one connection (the round trip alone) and at eight; medians.
fn latency(wasm: &Path, report: &Report) -> Result<(), Box<dyn std::error::Error>> {
    const ROUNDS: usize = 3;
    const SECS: u64 = 3;
    let local_config = workload::config(5);
    let fleet_config = with_fleet(&local_config);
    let limits = governance::tools::limitador(&fleet_config).map_err(|failure| failure.error)?;
    let redis = Redis::start()?;
    let limitador = Limitador::start(&redis, &limits)?;
    let upstream = Upstream::start()?;
    let start = |plugin: &str| {
        Envoy::start(
            &fleet_envoy_config(upstream.port, limitador.port(), plugin)
                .wasm_path(wasm)
                .concurrency(1)
                .component_log_level("wasm:warn")
                .extra_arg("-l")
                .extra_arg("warning")
                .max_lifetime(Duration::from_secs(300)),
        )
    };
    let envoys = [
        ("local", start(&local_config)?),
        ("fleet", start(&fleet_config)?),
    ];
    let use_wrk = have_wrk();
    let dir = std::env::temp_dir();
    let load = |addr: SocketAddr, secs: u64, connections: usize| {
        if use_wrk {
            wrk(addr, secs, &dir, connections)
        } else {
            rust_load(addr, secs, connections)
        }
    };
    println!(
        "  fleet envoy: local vs fleet mode, 1 worker each, same bootstrap, Limitador stand-in \
         on Redis (loopback); {ROUNDS} rounds of {SECS}s, interleaved, medians; {}",
        if use_wrk {
            "wrk -t1"
        } else {
            "built-in load generator"
        }
    );
    for (_, envoy) in &envoys {
        let _ = load(envoy.listen_addr(), 1, 8);
    }
    for connections in [1usize, 8] {
        let mut samples: [Vec<Load>; 2] = [Vec::new(), Vec::new()];
        for _ in 0..ROUNDS {
            for ((_, envoy), out) in envoys.iter().zip(samples.iter_mut()) {
                if let Some(l) = load(envoy.listen_addr(), SECS, connections) {
                    out.push(l);
                }
            }
        }
        let [local, fleet] = samples.map(|runs| median_load(&runs));
        let (Some(local), Some(fleet)) = (local, fleet) else {
            println!("  fleet envoy: the load generator produced no result");
            continue;
        };
        for (name, l) in [("local", local), ("fleet", fleet)] {
            println!(
                "  envoy {name} mode, {connections} connection(s): {:.0} req/s, p50 {:.3} ms, \
                 p99 {:.3} ms, {} errors",
                l.rps, l.p50_ms, l.p99_ms, l.errors
            );
        }
        report.figure(
            &format!("fleet_added_p50_ms_c{connections}"),
            format!("{:.3}", fleet.p50_ms - local.p50_ms),
            &format!("fleet mode minus local mode, {connections} connection(s), real Envoy"),
        );
        report.figure(
            &format!("fleet_added_p99_ms_c{connections}"),
            format!("{:.3}", fleet.p99_ms - local.p99_ms),
            &format!("fleet mode minus local mode, {connections} connection(s), real Envoy"),
        );
        report.figure(
            &format!("fleet_rps_ratio_c{connections}"),
            format!("{:.2}", fleet.rps / local.rps.max(1e-9)),
            "fleet mode to local mode",
        );
    }
    let fleet = &envoys[1].1;
    let counter = |name: &str| fleet.counter(name).ok().flatten().unwrap_or(0);
    println!(
        "  envoy fleet mode counters: admitted {}, fleet.calls {}, fleet.unavailable {}, \
         fleet.charges_failed {} (non-zero unavailable: some requests were decided locally)",
        counter("governance.admitted"),
        counter("governance.fleet.calls"),
        counter("governance.fleet.unavailable"),
        counter("governance.fleet.charges_failed")
    );
    Ok(())
}

/// The median of each figure over the runs.
fn median_load(runs: &[Load]) -> Option<Load> {
    let median = |pick: fn(&Load) -> f64| {
        let mut v: Vec<f64> = runs.iter().map(pick).collect();
        v.sort_by(|a, b| a.total_cmp(b));
        v.get(v.len() / 2).copied()
    };
    Some(Load {
        rps: median(|l| l.rps)?,
        p50_ms: median(|l| l.p50_ms)?,
        p99_ms: median(|l| l.p99_ms)?,
        errors: runs.iter().map(|l| l.errors).sum(),
    })
}

/// The stand-in's `/check` of one owner with 5 and with 10,000 owners configured.
fn check_latency(report: &Report) -> Result<(), Box<dyn std::error::Error>> {
    let redis = Redis::start()?;
    for owners in [5usize, 10_000] {
        let m = measure_check(&redis, owners, 5_000)?;
        println!("  limitador stand-in {m}");
        report.figure(
            &format!("limitador_check_p50_us_{owners}_owners"),
            m.p50.as_micros(),
            &format!(
                "p99 {} us; stand-in on Redis, loopback, keep-alive",
                m.p99.as_micros()
            ),
        );
    }
    Ok(())
}
