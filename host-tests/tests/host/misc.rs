//! Fuel, memory, logs and WASI output.

use crate::common::{get, probe, run};
use host_tests::LogLevel;

#[test]
fn fuel_is_deterministic_and_grows_with_work() {
    let mut host = probe("").workers(2).build().expect("build");
    let small = run(host.vm(0), &get("spin=100")).fuel;
    let small_again = run(host.vm(1), &get("spin=100")).fuel;
    let big = run(host.vm(0), &get("spin=100000")).fuel;
    assert!(small > 0);
    assert_eq!(small, small_again, "same work, same fuel on a fresh-ish VM");
    assert!(big > small + 100_000, "big={big} small={small}");
    assert!(host.vm(0).last_callback_fuel() > 0);
}

#[test]
fn memory_pages_grow_with_guest_allocations() {
    let mut host = probe("").build().expect("build");
    let before = host.vm(0).memory_pages();
    assert!(before > 0);
    run(host.vm(0), &get("alloc=2097152"));
    let after = host.vm(0).memory_pages();
    assert!(after >= before + 32, "before={before} after={after}");
}

#[test]
fn memory_is_capped_at_one_gib_like_v8() {
    let mut host = probe("").build().expect("build");
    run(host.vm(0), &get("alloc=536870912"));
    assert!(!host.vm(0).is_failed());
    assert!(host.vm(0).memory_pages() > 8192);
    let ex = run(host.vm(0), &get("alloc=700000000"));
    assert!(host.vm(0).is_failed());
    assert_eq!(ex.client.status, 503);
    assert!(host.vm(0).memory_pages() <= 16384);
}

#[test]
fn logs_keep_levels_and_reject_bad_ones() {
    let mut host = probe("").build().expect("build");
    let ex = run(host.vm(0), &get("log-levels"));
    let levels: Vec<LogLevel> = ex
        .logs
        .iter()
        .filter(|l| l.message.starts_with("level "))
        .map(|l| l.level)
        .collect();
    assert_eq!(
        levels,
        [
            LogLevel::Trace,
            LogLevel::Debug,
            LogLevel::Info,
            LogLevel::Warn,
            LogLevel::Error,
            LogLevel::Critical
        ]
    );
    assert!(ex.has_log("log-level-6 status=2"));
    assert!(ex.has_log("get-log-level=Ok(Info)"));
}

#[test]
fn stdout_and_stderr_become_logs() {
    let mut host = probe("").build().expect("build");
    let ex = run(host.vm(0), &get("stdout"));
    let find = |m: &str| ex.logs.iter().find(|l| l.message == m).map(|l| l.level);
    assert_eq!(find("probe stdout line"), Some(LogLevel::Info));
    assert_eq!(find("probe stderr line"), Some(LogLevel::Error));
}

#[test]
fn plugin_configuration_is_readable_only_in_on_configure() {
    let mut host = probe("some config")
        .vm_config("vm-cfg")
        .build()
        .expect("build");
    let ex = run(host.vm(0), &get("read-config-buffers"));
    assert!(ex.has_log("plugin-config=Ok(None)"), "{:?}", ex.logs);
    assert!(
        ex.has_log("vm-config=Ok(Some(\"vm-cfg\"))"),
        "{:?}",
        ex.logs
    );
    assert!(host.vm(0).has_log("configured root=1 config=some config"));
    assert!(host.vm(0).has_log("vm_start root=1 vm_config_size=6"));
}
