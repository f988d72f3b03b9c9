//! Properties: plugin attributes, request/response attributes and their availability.

use crate::common::{get, line, probe, run};

#[test]
fn plugin_attributes() {
    let mut host = probe("")
        .plugin_name("p1")
        .root_id("r1")
        .vm_id("v1")
        .build()
        .expect("build");
    let ex = run(
        host.vm(0),
        &get("prop=plugin_name,prop=plugin_root_id,prop=plugin_vm_id,prop=no.such"),
    );
    assert!(line(&ex, "prop plugin_name ").contains("status=0 value=p1 "));
    assert!(line(&ex, "prop plugin_root_id ").contains("status=0 value=r1 "));
    assert!(line(&ex, "prop plugin_vm_id ").contains("status=0 value=v1 "));
    assert!(line(&ex, "prop no.such ").contains("status=1"));
}

#[test]
fn request_attributes_exist_only_while_request_headers_do() {
    let start = 1_767_225_600_000_000_000i64;
    let mut host = probe("").clock_start_nanos(start).build().expect("build");
    let ex = run(
        host.vm(0),
        &get("prop=request.path,prop=request.url_path,prop=request.query,prop=request.method,prop-resp=request.path,prop-resp=request.time,prop-resp=response.code,prop-log=request.path,prop-log=response.code"),
    );
    // (path, status, hex) of every property log line, in order.
    let props: Vec<(String, String, String)> = ex
        .logs
        .iter()
        .filter_map(|l| l.message.strip_prefix("prop "))
        .map(|m| {
            let path = m.split(' ').next().unwrap_or("").to_string();
            let status = m
                .split(" status=")
                .nth(1)
                .and_then(|r| r.split(' ').next())
                .unwrap_or("")
                .to_string();
            let hex = m.rsplit(" hex=").next().unwrap_or("").to_string();
            (path, status, hex)
        })
        .collect();
    let hex = |b: &[u8]| -> String { b.iter().map(|x| format!("{x:02x}")).collect() };
    let want: Vec<(String, String, String)> = [
        ("request.path", "0", hex(b"/v1/models?x=1")),
        ("request.url_path", "0", hex(b"/v1/models")),
        ("request.query", "0", hex(b"x=1")),
        ("request.method", "0", hex(b"GET")),
        ("request.path", "1", String::new()),
        ("request.time", "0", hex(&start.to_le_bytes())),
        ("response.code", "0", hex(&200i64.to_le_bytes())),
        ("request.path", "0", hex(b"/v1/models?x=1")),
        ("response.code", "0", hex(&200i64.to_le_bytes())),
    ]
    .into_iter()
    .map(|(p, s, h)| (p.to_string(), s.to_string(), h))
    .collect();
    assert_eq!(props, want);
}

#[test]
fn set_property_round_trips_through_filter_state() {
    let mut host = probe("").build().expect("build");
    let ex = run(host.vm(0), &get("set-prop=my_key:my_value"));
    assert_eq!(
        line(&ex, "set-prop"),
        "set-prop my_key readback status=0 value=my_value"
    );
}
