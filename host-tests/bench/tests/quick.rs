//! Runs `bench --quick` as part of `cargo test`, so the benchmark command cannot rot: the
//! test checks that it runs to the end and prints its figures and its budget summary.
//!
//! Whether the budgets hold is the benchmark's own verdict (`make bench`, which exits
//! non-zero when one fails; docs/performance.md), not this test's: a passing test run says
//! nothing about budgets, so the bench's output is kept out of the test run's output and
//! shown only when the bench itself fails. `BENCH_ENFORCE=1` makes a failed budget fail the
//! bench, and so this test.

use std::process::{Command, Stdio};

#[test]
fn quick_bench_runs_and_reports() {
    let output = Command::new(env!("CARGO_BIN_EXE_bench"))
        .arg("--quick")
        .stdin(Stdio::null())
        .output();
    let output = match output {
        Ok(output) => output,
        Err(e) => panic!("cannot run the bench binary: {e}"),
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let shown = || {
        format!(
            "--- bench stdout\n{stdout}--- bench stderr\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    };
    assert!(
        output.status.success(),
        "bench --quick failed ({}); with BENCH_ENFORCE=1 a failed budget fails it\n{}",
        output.status,
        shown()
    );
    for figure in [
        "module_bytes:",
        "typical_request_fuel:",
        "stream_fuel_per_byte:",
    ] {
        assert!(
            stdout.lines().any(|l| l.starts_with(figure)),
            "no {figure} line\n{}",
            shown()
        );
    }
    assert!(
        stdout.lines().any(|l| l.contains(" budgets ")),
        "no budget summary\n{}",
        shown()
    );
}
