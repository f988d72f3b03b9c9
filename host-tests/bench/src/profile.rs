//! Where the fuel goes: each callback of the typical request measured alone, and the same
//! request varied one factor at a time (limits on the key, response size, key header, stream
//! framing and content), so each difference is a measured cost.

use crate::report::thousands;
use crate::workload;
use host_tests::{Headers, HostBuilder, Request, Vm};
use std::path::Path;

/// Fuel per step of one exchange: (step label, fuel).
fn steps(
    vm: &mut Vm,
    req: &Request,
    resp_headers: &Headers,
    resp_body: &[u8],
) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let s = vm.open_stream();
    let mut step = |vm: &mut Vm, label: &str, f: &dyn Fn(&mut Vm)| {
        vm.reset_fuel_by_callback();
        f(vm);
        for (name, _, fuel) in vm.fuel_by_callback() {
            let name = name.trim_start_matches("on_");
            out.push((format!("{label}/{name}"), fuel));
        }
    };
    step(vm, "req_headers", &|vm| {
        vm.send_request_headers(s, &req.headers, false)
    });
    step(vm, "req_data", &|vm| {
        vm.send_request_body(s, &req.body, false)
    });
    step(vm, "req_eos", &|vm| vm.send_request_body(s, b"", true));
    step(vm, "resp_headers", &|vm| {
        vm.send_response_headers(s, resp_headers, false)
    });
    step(vm, "resp_data", &|vm| {
        vm.send_response_body(s, resp_body, false)
    });
    step(vm, "resp_eos", &|vm| vm.send_response_body(s, b"", true));
    let view = vm.stream(s);
    if view.client.status != 200 {
        panic!("profile request answered {}", view.client.status);
    }
    vm.forget_stream(s);
    vm.clear_trace();
    vm.take_logs();
    out
}

fn get(rows: &[(String, u64)], label: &str) -> u64 {
    rows.iter()
        .filter(|(l, _)| l == label)
        .map(|(_, f)| *f)
        .sum()
}

fn total(rows: &[(String, u64)]) -> u64 {
    rows.iter().map(|(_, f)| *f).sum()
}

/// A configuration with one key of each shape (see `run`).
fn shapes_config() -> String {
    let req_limit =
        r#""rate_limit":{"request_max_limit":1000000000,"request_reset_duration":"1m"}"#;
    let budget = r#""budgets":[{"max_limit":1000.0,"reset_duration":"1h"}]"#;
    format!(
        r#"{{"namespace":"governance","timezone":"UTC","pricing":{{"gpt-4o-mini*":{{"input_cost_per_token":1.5e-7,"output_cost_per_token":6e-7,"cache_read_input_token_cost":7.5e-8}}}},
        "customers":[{{"id":"c0",{budget}}}],
        "teams":[{{"id":"t0","customer_id":"c0",{budget}}},{{"id":"tsolo",{budget}}}],
        "virtual_keys":[
          {{"id":"bare","value":"sk-shape-bare"}},
          {{"id":"req","value":"sk-shape-req",{req_limit}}},
          {{"id":"budget","value":"sk-shape-budget",{budget}}},
          {{"id":"team","value":"sk-shape-team","team_id":"tsolo"}},
          {{"id":"full","value":"{}","team_id":"t0",{budget},{req_limit}}}
        ]}}"#,
        workload::KEY
    )
}

pub fn run(wasm: &Path) {
    let mut host = match HostBuilder::new(wasm)
        .plugin_config(shapes_config())
        .vm_id("governance")
        .build()
    {
        Ok(h) => h,
        Err(e) => panic!("profile host: {e:?}"),
    };
    let vm = host.vm(0);
    let resp = workload::response();
    let typical = workload::request(workload::REQUEST_BODY);
    for _ in 0..300 {
        steps(vm, &typical, &resp.headers, &resp.body);
    }

    println!("  profile: the typical request, step by step (fuel):");
    let rows = steps(vm, &typical, &resp.headers, &resp.body);
    for (label, fuel) in &rows {
        println!("    {label:<34} {:>8}", thousands(*fuel));
    }
    println!("    {:<34} {:>8}", "total", thousands(total(&rows)));

    println!("  profile: limits on the key (same request; fuel of request headers / response end / whole):");
    let shapes = [
        ("key only, no limits", "sk-shape-bare"),
        ("+ key request limit", "sk-shape-req"),
        ("key budget only", "sk-shape-budget"),
        ("key in a team with a budget", "sk-shape-team"),
        ("typical (3 budgets + request limit)", workload::KEY),
    ];
    for (label, key) in shapes {
        let req = Request::post(
            "/v1/chat/completions",
            workload::REQUEST_BODY.as_bytes().to_vec(),
        )
        .header("authorization", &format!("Bearer {key}"));
        steps(vm, &req, &resp.headers, &resp.body);
        let rows = steps(vm, &req, &resp.headers, &resp.body);
        println!(
            "    {label:<38} {:>8} / {:>8} / {:>8}",
            thousands(get(&rows, "req_headers/request_headers")),
            thousands(get(&rows, "resp_eos/response_body") + get(&rows, "resp_eos/log")),
            thousands(total(&rows))
        );
    }

    let xkey = Request::post(
        "/v1/chat/completions",
        workload::REQUEST_BODY.as_bytes().to_vec(),
    )
    .header("x-bf-vk", workload::KEY);
    steps(vm, &xkey, &resp.headers, &resp.body);
    let rows = steps(vm, &xkey, &resp.headers, &resp.body);
    println!(
        "  profile: key in x-bf-vk instead of Authorization: request headers {} fuel",
        thousands(get(&rows, "req_headers/request_headers"))
    );

    println!(
        "  profile: request body (fuel of the data frame, which admits; end-of-stream frame):"
    );
    let bodies = [
        (
            "typical body, chat completions",
            "/v1/chat/completions",
            workload::REQUEST_BODY,
        ),
        (
            "model only, chat completions",
            "/v1/chat/completions",
            r#"{"model":"gpt-4o-mini"}"#,
        ),
        (
            "typical body, /v1/responses (no rewrite)",
            "/v1/responses",
            workload::REQUEST_BODY,
        ),
    ];
    for (label, path, body) in bodies {
        let req = Request::post(path, body.as_bytes().to_vec())
            .header("authorization", &format!("Bearer {}", workload::KEY));
        steps(vm, &req, &resp.headers, &resp.body);
        let rows = steps(vm, &req, &resp.headers, &resp.body);
        println!(
            "    {label:<42} {:>8} / {:>6}",
            thousands(get(&rows, "req_data/request_body")),
            thousands(get(&rows, "req_eos/request_body"))
        );
    }

    println!(
        "  profile: JSON response size (fuel of the data frame; per byte; end-of-stream frame):"
    );
    for size in [1024usize, 1536, 6144, 24576] {
        let r = workload::response_json_of(size).into_bytes();
        let mut h = resp.headers.clone();
        h.replace("content-length", &r.len().to_string());
        steps(vm, &typical, &h, &r);
        let rows = steps(vm, &typical, &h, &r);
        let data = get(&rows, "resp_data/response_body");
        println!(
            "    {:>6} bytes: {:>9}  {:>5.1}/byte  eos {:>7}",
            r.len(),
            thousands(data),
            data as f64 / r.len() as f64,
            thousands(get(&rows, "resp_eos/response_body"))
        );
    }

    println!("  profile: SSE stream of 2 MiB (fuel per byte of the data frames):");
    let sreq = workload::request(workload::STREAM_REQUEST_BODY);
    let sse_headers =
        Headers::from_pairs([(":status", "200"), ("content-type", "text/event-stream")]);
    let cases: [(&str, usize, usize); 5] = [
        ("chat chunks, 1 KiB frames", 1, 1024),
        ("chat chunks, 16 KiB frames", 1, 16 * 1024),
        ("chat chunks, 64 KiB frames", 1, 64 * 1024),
        ("chat chunks, 1 MiB frames", 1, 1024 * 1024),
        ("40x longer content per event, 16 KiB", 40, 16 * 1024),
    ];
    for (label, repeat, frame) in cases {
        let body = workload::sse_stream_with(2 * 1024 * 1024, repeat);
        let s = vm.open_stream();
        vm.send_request_headers(s, &sreq.headers, false);
        vm.send_request_body(s, &sreq.body, false);
        vm.send_request_body(s, b"", true);
        vm.send_response_headers(s, &sse_headers, false);
        vm.reset_fuel_by_callback();
        for part in body.chunks(frame) {
            vm.send_response_body(s, part, false);
        }
        let fuel: u64 = vm.fuel_by_callback().iter().map(|(_, _, f)| *f).sum();
        vm.send_response_body(s, b"", true);
        vm.forget_stream(s);
        vm.clear_trace();
        vm.take_logs();
        println!(
            "    {label:<40} {:>6.2}/byte",
            fuel as f64 / body.len() as f64
        );
    }
}
