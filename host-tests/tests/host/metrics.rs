//! Metrics: ids, Envoy's increment rules, aggregation across VMs.

use crate::common::{get, line, probe, run};

#[test]
fn ids_carry_the_type_and_counter_deltas_must_be_positive() {
    let mut host = probe("").build().expect("build");
    let ex = run(host.vm(0), &get("metric-inc=2"));
    assert_eq!(
        line(&ex, "metric-ids"),
        "metric-ids counter=4 gauge=5 histogram=6"
    );
    assert_eq!(line(&ex, "inc counter"), "inc counter status=0");
    assert_eq!(line(&ex, "inc unknown"), "inc unknown status=1");
    assert_eq!(line(&ex, "get counter"), "get counter=Ok(2)");
    let ex = run(host.vm(0), &get("metric-inc=0"));
    assert_eq!(line(&ex, "inc counter"), "inc counter status=2");
    let ex = run(host.vm(0), &get("metric-inc=-3"));
    assert_eq!(line(&ex, "inc counter"), "inc counter status=2");
    assert_eq!(line(&ex, "inc gauge"), "inc gauge status=0");
    assert_eq!(host.metric("probe.counter"), Some(2));
    assert_eq!(host.metric("probe.gauge"), Some(-1));
}

#[test]
fn values_aggregate_across_vms_like_one_envoy_stat() {
    let mut host = probe("").workers(2).build().expect("build");
    run(host.vm(0), &get("metric-inc=2"));
    let ex = run(host.vm(1), &get("metric-inc=3"));
    assert_eq!(line(&ex, "get counter"), "get counter=Ok(5)");
    assert_eq!(host.metric("probe.counter"), Some(5));
    assert_eq!(host.metrics().samples("probe.histogram"), [42, 42]);
}
