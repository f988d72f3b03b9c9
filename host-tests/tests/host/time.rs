//! The movable clock and ticks.

use crate::common::{get, line, probe, run};
use std::time::Duration;

#[test]
fn guest_reads_the_host_clock() {
    let mut host = probe("")
        .clock_start_nanos(1_700_000_000_123_456_789)
        .build()
        .expect("build");
    let ex = run(host.vm(0), &get("time"));
    assert_eq!(line(&ex, "now="), "now=1700000000123456789");
    host.clock().advance(Duration::from_millis(1500));
    let ex = run(host.vm(0), &get("time"));
    assert_eq!(line(&ex, "now="), "now=1700000001623456789");
    host.clock().set_nanos(5);
    let ex = run(host.vm(0), &get("time"));
    assert_eq!(line(&ex, "now="), "now=5");
}

#[test]
fn wasi_clock_reads_the_same_clock() {
    let mut host = probe("")
        .clock_start_nanos(1_000_000_000_000_000_007)
        .build()
        .expect("build");
    host.clock().advance(Duration::from_nanos(3));
    let ex = run(host.vm(0), &get("wasi-time"));
    assert_eq!(line(&ex, "wasi-now="), "wasi-now=1000000000000000010");
}

#[test]
fn ticks_fire_one_period_after_the_call_once_per_fire() {
    let mut host = probe("tick=100").build().expect("build");
    let clock = host.clock();
    let vm = host.vm(0);
    assert_eq!(vm.fire_due_ticks(), 0);
    clock.advance(Duration::from_millis(99));
    assert_eq!(vm.fire_due_ticks(), 0);
    clock.advance(Duration::from_millis(1));
    assert_eq!(vm.fire_due_ticks(), 1);
    assert_eq!(vm.fire_due_ticks(), 0, "re-armed from the tick's end");
    clock.advance(Duration::from_millis(350));
    assert_eq!(vm.fire_due_ticks(), 1, "a late timer fires once");
    assert!(vm.has_log("tick root=1"));
}

#[test]
fn every_worker_has_its_own_tick_stream_and_the_canary_none() {
    let mut host = probe("tick=10").workers(3).build().expect("build");
    host.clock().advance(Duration::from_millis(10));
    let fired: usize = host.vms().iter_mut().map(|vm| vm.fire_due_ticks()).sum();
    assert_eq!(fired, 3);
    assert!(!host
        .canary_logs()
        .iter()
        .any(|l| l.message.starts_with("tick")));
}

#[test]
fn http_context_sets_its_roots_tick_period() {
    let mut host = probe("").build().expect("build");
    run(host.vm(0), &get("tick-period=20"));
    host.clock().advance(Duration::from_millis(20));
    assert_eq!(host.vm(0).fire_due_ticks(), 1);
    assert!(host.vm(0).has_log("tick root=1"));
}
