//! Latency of one owner's `POST /check` on the Limitador stand-in (real Redis, loopback,
//! one keep-alive connection), with a limits file of a given number of owners, each in its
//! own namespace with three limits (requests per minute, tokens per day, USD per month), as
//! fleet mode lays them out. Used by `--bin fleet-latency` and the benchmark.

use crate::fleet::{Limitador, LimitadorApi, Redis};
use crate::runner::HarnessError;
use crate::Request;
use std::time::{Duration, Instant};

/// Calls made before any is measured.
const WARMUP: usize = 200;

/// What one measurement found.
#[derive(Debug, Clone)]
pub struct CheckLatency {
    pub owners: usize,
    /// Limits in the file (three per owner).
    pub limits: usize,
    pub file_bytes: usize,
    /// From the stand-in's start to its first `/status` answer.
    pub startup: Duration,
    pub calls: usize,
    pub p50: Duration,
    pub p90: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl std::fmt::Display for CheckLatency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:>6} owners ({:>6} limits, file {:>7} B, ready in {:>6.0} ms): /check p50 {:>4} us  \
             p90 {:>4} us  p99 {:>4} us  max {:>5} us  ({} calls, keep-alive)",
            self.owners,
            self.limits,
            self.file_bytes,
            self.startup.as_secs_f64() * 1000.0,
            self.p50.as_micros(),
            self.p90.as_micros(),
            self.p99.as_micros(),
            self.max.as_micros(),
            self.calls
        )
    }
}

fn owner_limits(out: &mut String, ns: &str) {
    for (kind, max, seconds) in [
        ("requests", 60, 60),
        ("tokens", 1_000_000, 26 * 3600),
        ("usd", 50_000_000, 32 * 24 * 3600),
    ] {
        out.push_str(&format!(
            "- namespace: \"{ns}\"\n  max_value: {max}\n  seconds: {seconds}\n  \
             conditions: [\"descriptors[0].kind == '{kind}'\"]\n  \
             variables: [\"descriptors[0].window\"]\n"
        ));
    }
}

/// The value at quantile `p` of sorted samples.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let last = sorted.len().saturating_sub(1);
    let at = ((last as f64) * p).round() as usize;
    sorted.get(at.min(last)).copied().unwrap_or_default()
}

/// Starts a stand-in on `redis` with `owners` owners configured and times `calls` checks of
/// one of them (after a warm-up); the stand-in is stopped afterwards.
pub fn measure_check(
    redis: &Redis,
    owners: usize,
    calls: usize,
) -> Result<CheckLatency, HarnessError> {
    let mut limits = String::new();
    for i in 0..owners {
        owner_limits(&mut limits, &format!("gov:vk:k{i}"));
    }
    let started = Instant::now();
    let limitador = Limitador::start(redis, &limits)?;
    let startup = started.elapsed();
    let body = LimitadorApi::body(
        "gov:vk:k0",
        &[("kind", "usd"), ("window", "M:2026-11@UTC")],
        1000,
    );
    let request = Request::post("/check").json(&body);
    let failed = |e: std::io::Error| HarnessError(format!("/check: {e}"));
    let mut conn = limitador.api().client().connect().map_err(failed)?;
    let mut times = Vec::with_capacity(calls);
    for i in 0..WARMUP + calls {
        let resp = conn.send(&request).map_err(failed)?;
        if resp.status != 200 {
            return Err(HarnessError(format!(
                "/check answered {}: {}",
                resp.status,
                resp.text()
            )));
        }
        if i >= WARMUP {
            times.push(resp.elapsed());
        }
    }
    times.sort();
    Ok(CheckLatency {
        owners,
        limits: owners * 3,
        file_bytes: limits.len(),
        startup,
        calls,
        p50: percentile(&times, 0.50),
        p90: percentile(&times, 0.90),
        p99: percentile(&times, 0.99),
        max: times.last().copied().unwrap_or_default(),
    })
}
