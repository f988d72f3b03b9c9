//! Figures measured by running the real module in the wasmtime host (deterministic fuel).

use crate::report::{thousands, Report};
use crate::workload;
use host_tests::{
    Host, HostBuilder, Metrics, Request, Response, SharedDataEvent, SharedDataOp, Vm,
    FLOOR_GUEST_WASM,
};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Budgets (docs/performance.md).
pub const MAX_TYPICAL_FUEL: u64 = 40_000;
pub const MAX_FUEL_PER_STREAM_BYTE: f64 = 5.0;
pub const MAX_KEYS_RATIO: f64 = 1.1;
pub const MAX_STREAM_GROWTH_PAGES: u64 = 16;
/// Linear memory of a worker VM right after `on_configure` with the typical configuration.
pub const MAX_CONFIGURED_PAGES: u64 = 16;
/// Linear memory after configuring 10,000 keys, as a multiple of the configuration's JSON.
pub const MAX_CONFIG_MEMORY_RATIO: f64 = 4.0;
/// The deepest stack use seen, as a share of the module's stack.
pub const MAX_STACK_SHARE: f64 = 0.5;
const PAGE: u64 = 64 * 1024;

/// Requests run before anything is measured (counters created, allocator warm).
const WARMUP: usize = 1_000;
/// Requests averaged for a fuel figure (fuel is deterministic; this smooths window effects).
const MEASURED: usize = 100;
/// Data frame size for the long stream (Envoy hands bodies over in frames of this order).
const FRAME: usize = 16 * 1024;

pub struct Opts {
    pub quick: bool,
    pub wasm: std::path::PathBuf,
    /// Top of the module's shadow stack (its size: the stack sits below the data).
    pub stack_top: Option<u64>,
}

fn build(wasm: &Path, config: &str, workers: usize) -> Host {
    match HostBuilder::new(wasm)
        .plugin_config(config)
        .vm_id("governance")
        .workers(workers)
        .build()
    {
        Ok(host) => host,
        Err(e) => panic!("cannot start {}: {e:?}", wasm.display()),
    }
}

/// One whole exchange; the host then forgets the stream so long runs stay small.
fn exchange(vm: &mut Vm, req: &Request, resp: &Response) -> u64 {
    let ex = vm.exchange(req, resp);
    if ex.client.status != 200 || ex.stalled || ex.upstream.headers.is_none() {
        let logs: Vec<String> = vm.logs().iter().map(|l| l.message.clone()).collect();
        panic!(
            "the benchmark request was not admitted and answered (status {}, stalled {}); logs: {logs:#?}",
            ex.client.status, ex.stalled
        );
    }
    vm.forget_stream(ex.stream);
    vm.clear_trace();
    vm.take_logs();
    ex.fuel
}

fn average(vm: &mut Vm, req: &Request, resp: &Response, n: usize) -> u64 {
    let mut total = 0u64;
    for _ in 0..n {
        total += exchange(vm, req, resp);
    }
    total / n as u64
}

/// Shared-data and header calls of one typical request, per phase, for the floor module.
fn call_plan(vm: &mut Vm, metrics: &Metrics, req: &Request, resp: &Response) -> String {
    let ops: Arc<Mutex<Vec<SharedDataOp>>> = Arc::default();
    let sink = ops.clone();
    vm.on_shared_data(move |ev: &SharedDataEvent| {
        if let Ok(mut v) = sink.lock() {
            v.push(ev.op);
        }
    });
    let before: Vec<(String, Option<i64>)> = metrics
        .names()
        .into_iter()
        .map(|n| {
            let v = metrics.value(&n);
            (n, v)
        })
        .collect();
    let take = |ops: &Arc<Mutex<Vec<SharedDataOp>>>| -> (usize, usize) {
        let mut v = ops
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default();
        let sets = v.iter().filter(|o| **o == SharedDataOp::Set).count();
        let gets = v.len() - sets;
        v.clear();
        (gets.saturating_sub(sets), sets)
    };
    let s = vm.open_stream();
    vm.send_request_headers(s, &req.headers, false);
    let rq = take(&ops);
    vm.send_request_body(s, &req.body, false);
    vm.send_request_body(s, b"", true);
    let rb = take(&ops);
    vm.send_response_headers(s, &resp.headers, false);
    let rs = take(&ops);
    vm.send_response_body(s, &resp.body, false);
    vm.send_response_body(s, b"", true);
    let end = take(&ops);
    let view = vm.stream(s);
    vm.forget_stream(s);
    vm.clear_shared_data_hook();
    let added = view
        .client
        .headers
        .map(|h| h.len())
        .unwrap_or(0)
        .saturating_sub(resp.headers.len());
    let stripped = req
        .headers
        .len()
        .saturating_sub(view.upstream.headers.map(|h| h.len()).unwrap_or(0));
    let changed = before
        .iter()
        .filter(|(n, v)| n.starts_with("governance.") && metrics.value(n) != *v)
        .count();
    let defined = before
        .iter()
        .filter(|(n, _)| n.starts_with("governance."))
        .count();
    format!(
        "req_reads={} req_updates={} resp_reads={} resp_updates={} end_reads={} end_updates={} \
         resp_headers={added} strip={stripped} metrics={defined} end_metrics={changed}",
        rq.0 + rb.0,
        rq.1 + rb.1,
        rs.0,
        rs.1,
        end.0,
        end.1
    )
}

pub fn run(opts: &Opts, report: &mut Report) {
    let req = workload::request(workload::REQUEST_BODY);
    let resp = workload::response();
    let wasm = opts.wasm.as_path();

    // --- typical request -------------------------------------------------------------
    let t = Instant::now();
    let mut host = build(wasm, &workload::config(5), 1);
    let compile = t.elapsed();
    let vm = host.vm(0);
    let pages_configured = vm.memory_pages();
    report.figure(
        "memory_pages_configured",
        pages_configured,
        "a worker VM right after on_configure with the typical configuration (5 keys)",
    );
    report.budget(
        "freshly configured VM <= 16 pages",
        pages_configured <= MAX_CONFIGURED_PAGES,
        format!("{pages_configured} pages"),
    );
    for _ in 0..WARMUP {
        exchange(vm, &req, &resp);
    }
    let pages_warm = vm.memory_pages();
    vm.reset_fuel_by_callback();
    let typical = average(vm, &req, &resp, MEASURED);
    let profile = vm.fuel_by_callback();
    let admitted = host.metric("governance.admitted").unwrap_or(0);
    let spend = host.metric("governance.spend_micro_usd").unwrap_or(0);
    if admitted < (WARMUP + MEASURED) as i64 || spend <= 0 {
        panic!(
            "requests were not admitted and charged (admitted {admitted}, spend_micro_usd {spend})"
        );
    }
    report.figure(
        "typical_request_fuel",
        thousands(typical),
        "key in team in customer, 3 budgets + key request limit, 1,536-byte OpenAI JSON response; mean of 100 after 1,000 warm-up",
    );
    report.budget(
        "typical request <= 40,000 fuel",
        typical <= MAX_TYPICAL_FUEL,
        format!("{} fuel", thousands(typical)),
    );
    let reserving = reservation_fuel(&opts.wasm);
    report.figure(
        "typical_request_fuel_with_reservation",
        thousands(reserving),
        &format!(
            "the same request with reservation.enabled: {:+.0}% (information, not a budget)",
            (reserving as f64 / typical.max(1) as f64 - 1.0) * 100.0
        ),
    );
    let base = workload::config(5);
    let mut variants: Vec<(String, String, String)> = OPTIONAL_FEATURES
        .iter()
        .map(|(name, fields)| {
            (
                format!("typical_request_fuel_with_{name}"),
                workload::with_fields(&base, fields),
                fields.to_string(),
            )
        })
        .collect();
    for (every_level, name, what) in [
        (false, "in_flight_key", "max_in_flight on the key"),
        (
            true,
            "in_flight_all",
            "max_in_flight on key, team and customer",
        ),
    ] {
        variants.push((
            format!("typical_request_fuel_with_{name}"),
            workload::with_in_flight(&base, every_level),
            what.to_string(),
        ));
    }
    for (name, config, what) in [
        (
            "model_config",
            workload::with_model_config(&base),
            "a model_configs entry on the key matching the model (its budget and request limit beside the key's own)",
        ),
        (
            "per_value",
            workload::with_per_value(&base),
            "a per_value table on the key (the value's slot found, its budget and request limit beside the key's own)",
        ),
        (
            "never_budget",
            workload::with_never_budget(&base),
            "the key's budget with reset_duration \"never\"",
        ),
    ] {
        variants.push((
            format!("typical_request_fuel_with_{name}"),
            config,
            what.to_string(),
        ));
    }
    for (name, config, what) in variants {
        let fuel = variant_fuel(&opts.wasm, &config);
        report.figure(
            &name,
            thousands(fuel),
            &format!(
                "the same request with {what}: {:+.0}% (information, not a budget)",
                (fuel as f64 / typical.max(1) as f64 - 1.0) * 100.0
            ),
        );
    }
    let (large_body, large_fuel) = large_request_body_fuel(&opts.wasm);
    report.figure(
        "request_body_3mib_fuel",
        thousands(large_fuel),
        &format!(
            "request-body callbacks of a {}-byte chat request naming its model first, in 64 KiB frames: {:.2} fuel/byte (read whole: the last top-level model counts)",
            thousands(large_body as u64),
            large_fuel as f64 / large_body.max(1) as f64
        ),
    );
    println!(
        "  module compiled + started in {:.2}s (cranelift opt none)",
        compile.as_secs_f64()
    );
    // --- floor -----------------------------------------------------------------------
    let metrics = host.metrics();
    let plan = call_plan(host.vm(0), &metrics, &req, &resp);
    let mut floor = build(Path::new(FLOOR_GUEST_WASM), &plan, 1);
    let fvm = floor.vm(0);
    for _ in 0..200 {
        exchange(fvm, &req, &resp);
    }
    fvm.reset_fuel_by_callback();
    let floor_fuel = average(fvm, &req, &resp, MEASURED);
    let floor_profile = fvm.fuel_by_callback();
    println!(
        "  per-callback fuel of the typical request, ours vs the floor (mean over {MEASURED}):"
    );
    println!(
        "    {:<22} {:>8} {:>6} {:>8} {:>8}",
        "callback", "ours", "share", "floor", "ours-floor"
    );
    for (name, calls, fuel) in &profile {
        let per_req = fuel / MEASURED as u64;
        let floor_per_req = floor_profile
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, _, f)| f / MEASURED as u64)
            .unwrap_or(0);
        println!(
            "    {:<22} {:>8} {:>5.1}% {:>8} {:>8}   ({} calls/request)",
            name,
            thousands(per_req),
            100.0 * *fuel as f64 / (typical * MEASURED as u64).max(1) as f64,
            thousands(floor_per_req),
            thousands(per_req.saturating_sub(floor_per_req)),
            calls / MEASURED as u64
        );
    }
    report.figure(
        "floor_request_fuel",
        thousands(floor_fuel),
        &format!("floor guest, same calls: {plan}"),
    );
    report.figure(
        "typical_to_floor_ratio",
        format!("{:.1}", typical as f64 / floor_fuel.max(1) as f64),
        "ours / floor",
    );

    // --- memory over many requests -------------------------------------------------
    let n = if opts.quick { 20_000 } else { 1_000_000 };
    let vm = host.vm(0);
    let t = Instant::now();
    for _ in 0..n {
        exchange(vm, &req, &resp);
    }
    let elapsed = t.elapsed();
    let pages_after = vm.memory_pages();
    report.figure(
        "memory_pages_after_warmup",
        pages_warm,
        "after 1,000 requests",
    );
    report.figure(
        "memory_pages_after_requests",
        pages_after,
        &format!(
            "after {} more requests{}",
            thousands(n as u64),
            if opts.quick {
                ", quick mode (full: 1,000,000)"
            } else {
                ""
            }
        ),
    );
    println!(
        "  single VM in the test host: {:.0} requests/s (machine-dependent, metered, unoptimized cranelift)",
        n as f64 / elapsed.as_secs_f64()
    );
    report.budget(
        "no memory growth over requests after warm-up",
        pages_after == pages_warm,
        format!(
            "{pages_warm} -> {pages_after} pages over {} requests",
            thousands(n as u64)
        ),
    );

    // --- 20 MB stream ----------------------------------------------------------------
    let mut svm = match host.new_worker() {
        Ok(vm) => vm,
        Err(e) => panic!("cannot start a second worker: {e:?}"),
    };
    for _ in 0..WARMUP {
        exchange(&mut svm, &req, &resp);
    }
    let stream_bytes = 20 * 1024 * 1024;
    let body = workload::sse_stream(stream_bytes);
    let sreq = workload::request(workload::STREAM_REQUEST_BODY);
    let sresp_headers = host_tests::Headers::from_pairs([
        (":status", "200"),
        ("content-type", "text/event-stream; charset=utf-8"),
    ]);
    let pages_before = svm.memory_pages();
    let spend_before = host.metric("governance.spend_micro_usd").unwrap_or(0);
    let s = svm.open_stream();
    svm.send_request_headers(s, &sreq.headers, false);
    svm.send_request_body(s, &sreq.body, false);
    svm.send_request_body(s, b"", true);
    svm.send_response_headers(s, &sresp_headers, false);
    svm.reset_fuel_by_callback();
    let t = Instant::now();
    for frame in body.chunks(FRAME) {
        svm.send_response_body(s, frame, false);
    }
    let body_fuel: u64 = svm
        .fuel_by_callback()
        .iter()
        .filter(|(n, _, _)| *n == "on_response_body")
        .map(|(_, _, f)| *f)
        .sum();
    let stream_time = t.elapsed();
    svm.send_response_body(s, b"", true);
    let view = svm.stream(s);
    svm.forget_stream(s);
    let pages_stream = svm.memory_pages();
    let spend_after = host.metric("governance.spend_micro_usd").unwrap_or(0);
    if !view.finished || spend_after <= spend_before {
        println!("  WARNING: the stream did not finish or was not charged (spend {spend_before} -> {spend_after})");
    }
    let per_byte = body_fuel as f64 / body.len() as f64;
    report.figure(
        "stream_fuel_per_byte",
        format!("{per_byte:.2}"),
        &format!(
            "{} bytes of OpenAI chat SSE in {} KiB frames, {:.1}s in the test host",
            thousands(body.len() as u64),
            FRAME / 1024,
            stream_time.as_secs_f64()
        ),
    );
    report.budget(
        "<= 5 fuel per streamed byte",
        per_byte <= MAX_FUEL_PER_STREAM_BYTE,
        format!("{per_byte:.2} fuel/byte"),
    );
    report.figure(
        "stream_memory_growth_pages",
        pages_stream.saturating_sub(pages_before),
        &format!("{pages_before} -> {pages_stream} pages over one 20 MiB stream"),
    );
    report.budget(
        "<= 16 pages of growth over a 20 MB stream",
        pages_stream.saturating_sub(pages_before) <= MAX_STREAM_GROWTH_PAGES,
        format!("{} pages", pages_stream.saturating_sub(pages_before)),
    );
    amazon_stream(&mut svm, &host, stream_bytes, report);
    drop(svm);
    drop(floor);

    // --- 10,000 keys -------------------------------------------------------------------
    let big_config = workload::config(10_000);
    let t = Instant::now();
    let mut big = build(wasm, &big_config, 1);
    let build_time = t.elapsed();
    let bvm = big.vm(0);
    let configure_fuel = bvm.last_callback_fuel();
    let configured_pages = bvm.memory_pages();
    let memory_ratio = (configured_pages * PAGE) as f64 / big_config.len() as f64;
    report.figure(
        "configure_memory_10000_keys",
        format!("{memory_ratio:.2}"),
        &format!(
            "linear memory after on_configure / JSON size: {configured_pages} pages ({} bytes) for {} bytes",
            thousands(configured_pages * PAGE),
            thousands(big_config.len() as u64)
        ),
    );
    report.budget(
        "configuring 10,000 keys <= 4x the JSON in memory",
        memory_ratio <= MAX_CONFIG_MEMORY_RATIO,
        format!("{memory_ratio:.2}x ({configured_pages} pages)"),
    );
    if let Some(top) = opts.stack_top {
        // The configuration parse is the deepest path; the typical VM has served requests.
        let deepest = [
            bvm.lowest_written_address(top),
            host.vm(0).lowest_written_address(top),
        ]
        .into_iter()
        .map(|lowest| top - lowest)
        .max()
        .unwrap_or(0);
        let share = deepest as f64 / top.max(1) as f64;
        report.figure(
            "stack_bytes_used",
            thousands(deepest),
            &format!(
                "deepest stack use seen (configuring 10,000 keys, typical requests) of the {} KiB stack",
                top / 1024
            ),
        );
        report.budget(
            "stack use <= half the stack",
            share <= MAX_STACK_SHARE,
            format!("{:.0}% of {} KiB", share * 100.0, top / 1024),
        );
    }
    for _ in 0..200 {
        exchange(bvm, &req, &resp);
    }
    let big_fuel = average(bvm, &req, &resp, MEASURED);
    let big_pages = bvm.memory_pages();
    // The 5-key figure measured the same way (same number of warm-up requests).
    let mut small = build(wasm, &workload::config(5), 1);
    let small_configure = small.vm(0).last_callback_fuel();
    for _ in 0..200 {
        exchange(small.vm(0), &req, &resp);
    }
    let small_fuel = average(small.vm(0), &req, &resp, MEASURED);
    let ratio = big_fuel as f64 / small_fuel.max(1) as f64;
    report.figure(
        "keys_10000_request_fuel_ratio",
        format!("{ratio:.3}"),
        &format!(
            "{} fuel with 10,000 keys / {} with 5",
            thousands(big_fuel),
            thousands(small_fuel)
        ),
    );
    report.budget(
        "10,000 keys within 1.1x the cost of 5",
        ratio <= MAX_KEYS_RATIO,
        format!("{ratio:.3}x"),
    );
    report.figure(
        "configure_fuel_10000_keys",
        thousands(configure_fuel),
        &format!(
            "on_configure of a worker ({} bytes of JSON, 10,000 keys, 200 teams, 10 customers; 5 keys: {} fuel); host build incl. canary {:.1}s; {big_pages} pages after 300 requests",
            thousands(big_config.len() as u64),
            thousands(small_configure),
            build_time.as_secs_f64()
        ),
    );
    drop(big);
    drop(small);

    // --- contention: 4 VMs on 2 threads, one hot key -------------------------------------
    let per_thread = if opts.quick { 5_000 } else { 50_000 };
    let mut hot = build(wasm, &workload::config(5), 4);
    let mut vms = hot.take_vms();
    let admitted_before = hot.metric("governance.admitted").unwrap_or(0);
    let conflicts_before = hot.metric("governance.cas_conflicts").unwrap_or(0);
    let t = Instant::now();
    std::thread::scope(|scope| {
        let (a, b) = vms.split_at_mut(2);
        for pair in [a, b] {
            let req = req.clone();
            let resp = resp.clone();
            scope.spawn(move || {
                for i in 0..per_thread {
                    if let Some(vm) = pair.get_mut(i % 2) {
                        exchange(vm, &req, &resp);
                    }
                }
            });
        }
    });
    let wall = t.elapsed();
    let admitted = hot.metric("governance.admitted").unwrap_or(0) - admitted_before;
    let conflicts = hot.metric("governance.cas_conflicts").unwrap_or(0) - conflicts_before;
    report.figure(
        "cas_conflicts_per_admitted_request",
        format!("{:.4}", conflicts as f64 / admitted.max(1) as f64),
        &format!(
            "{} conflicts / {} admitted, 4 VMs on 2 threads, one key",
            thousands(conflicts.max(0) as u64),
            thousands(admitted.max(0) as u64)
        ),
    );
    report.figure(
        "host_requests_per_second_4vm_2threads",
        format!("{:.0}", (2 * per_thread) as f64 / wall.as_secs_f64()),
        "machine-dependent: wasmtime test host, metered, unoptimized cranelift",
    );
}

/// The long stream as Bedrock's ConverseStream sends it (Amazon's binary event stream, in
/// the same frames): fuel per byte of the response body, for information.
fn amazon_stream(svm: &mut Vm, host: &Host, bytes: usize, report: &mut Report) {
    let body = workload::amazon_event_stream(bytes);
    let req = workload::request(workload::STREAM_REQUEST_BODY);
    let headers = host_tests::Headers::from_pairs([
        (":status", "200"),
        ("content-type", "application/vnd.amazon.eventstream"),
    ]);
    let spend_before = host.metric("governance.spend_micro_usd").unwrap_or(0);
    let s = svm.open_stream();
    svm.send_request_headers(s, &req.headers, false);
    svm.send_request_body(s, &req.body, false);
    svm.send_request_body(s, b"", true);
    svm.send_response_headers(s, &headers, false);
    svm.reset_fuel_by_callback();
    for frame in body.chunks(FRAME) {
        svm.send_response_body(s, frame, false);
    }
    let body_fuel: u64 = svm
        .fuel_by_callback()
        .iter()
        .filter(|(n, _, _)| *n == "on_response_body")
        .map(|(_, _, f)| *f)
        .sum();
    svm.send_response_body(s, b"", true);
    let view = svm.stream(s);
    svm.forget_stream(s);
    let spend_after = host.metric("governance.spend_micro_usd").unwrap_or(0);
    if !view.finished || spend_after <= spend_before {
        println!("  WARNING: the Amazon event stream did not finish or was not charged (spend {spend_before} -> {spend_after})");
    }
    report.figure(
        "amazon_stream_fuel_per_byte",
        format!("{:.2}", body_fuel as f64 / body.len() as f64),
        &format!(
            "{} bytes of Bedrock ConverseStream (application/vnd.amazon.eventstream) in {} KiB frames; information, not a budget",
            thousands(body.len() as u64),
            FRAME / 1024
        ),
    );
}

/// Optional features measured on the typical request (name, top-level fields turning it on).
const OPTIONAL_FEATURES: [(&str, &str); 4] = [
    ("filter_state", r#""filter_state":true"#),
    ("alerts", r#""alerts":{"thresholds":[0.5,0.8,0.95]}"#),
    (
        "reservation_and_clamp_output",
        r#""reservation":{"enabled":true,"clamp_output":true}"#,
    ),
    (
        "all_three",
        r#""filter_state":true,"alerts":{"thresholds":[0.5,0.8,0.95]},"reservation":{"enabled":true,"clamp_output":true}"#,
    ),
];

/// The typical request's fuel under another configuration.
fn variant_fuel(wasm: &Path, config: &str) -> u64 {
    let req = workload::request(workload::REQUEST_BODY);
    let resp = workload::response();
    let mut host = build(wasm, config, 1);
    let vm = host.vm(0);
    for _ in 0..200 {
        exchange(vm, &req, &resp);
    }
    average(vm, &req, &resp, MEASURED)
}

/// Mean fuel of the typical request with reservations on (5 keys, after warm-up).
fn reservation_fuel(wasm: &Path) -> u64 {
    variant_fuel(wasm, &workload::with_reservation(&workload::config(5)))
}

/// Fuel of the request-body callbacks for a 3 MiB chat request whose model comes first
/// (its size and that fuel): the whole body is read, since a later model would count.
fn large_request_body_fuel(wasm: &Path) -> (usize, u64) {
    let filler = "lorem ipsum dolor sit amet ".repeat(3 * 1024 * 1024 / 27);
    let body = format!(
        r#"{{"model":"gpt-4o-mini","messages":[{{"role":"user","content":"{filler}"}}],"max_tokens":256}}"#
    );
    let req = workload::request(&body);
    let resp = workload::response();
    let mut host = build(wasm, &workload::config(5), 1);
    let vm = host.vm(0);
    exchange(vm, &req, &resp);
    vm.reset_fuel_by_callback();
    let ex = vm.exchange_chunked(&req, &resp, 64 * 1024);
    assert_eq!(ex.client.status, 200, "the 3 MiB request was not admitted");
    let fuel = vm
        .fuel_by_callback()
        .iter()
        .filter(|(name, _, _)| *name == "on_request_body")
        .map(|(_, _, fuel)| *fuel)
        .sum();
    (body.len(), fuel)
}

/// The floor guest's plan for the typical request (governance's hostcalls on it), measured
/// on `wasm` after a few warm-up requests.
pub fn floor_plan(wasm: &Path) -> String {
    let req = workload::request(workload::REQUEST_BODY);
    let resp = workload::response();
    let mut host = build(wasm, &workload::config(5), 1);
    let metrics = host.metrics();
    let vm = host.vm(0);
    for _ in 0..10 {
        exchange(vm, &req, &resp);
    }
    call_plan(vm, &metrics, &req, &resp)
}

/// Mean fuel of the typical request on `wasm` (5 keys, after warm-up).
pub fn typical_fuel(wasm: &Path) -> u64 {
    let req = workload::request(workload::REQUEST_BODY);
    let resp = workload::response();
    let mut host = build(wasm, &workload::config(5), 1);
    let vm = host.vm(0);
    for _ in 0..200 {
        exchange(vm, &req, &resp);
    }
    average(vm, &req, &resp, MEASURED)
}
