//! Latency of one owner's `POST /check` on the Limitador stand-in (real Redis, loopback),
//! with a limits file of 5 owners and one of 10,000 owners, each owner in its own namespace
//! with three limits (requests per minute, tokens per day, USD per month).
//!
//! `cargo run --release -p envoy-harness --bin fleet-latency [-- CALLS]` (after
//! `scripts/setup-fleet`). Prints figures; asserts nothing.

use envoy_harness::fleet::LimitadorApi;
use envoy_harness::{Limitador, Redis, Request};
use std::time::{Duration, Instant};

const WARMUP: usize = 200;

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

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let last = sorted.len().saturating_sub(1);
    let at = ((last as f64) * p).round() as usize;
    sorted.get(at.min(last)).copied().unwrap_or_default()
}

fn measure(redis: &Redis, owners: usize, calls: usize) -> Result<(), Box<dyn std::error::Error>> {
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
    let mut conn = limitador.api().client().connect()?;
    let mut times = Vec::with_capacity(calls);
    for i in 0..WARMUP + calls {
        let resp = conn.send(&request)?;
        if resp.status != 200 {
            return Err(format!("/check answered {}: {}", resp.status, resp.text()).into());
        }
        if i >= WARMUP {
            times.push(resp.elapsed());
        }
    }
    times.sort();
    println!(
        "{owners:>6} owners ({:>6} limits, file {:>7} B, ready in {:>6.0} ms): \
         /check p50 {:>4} us  p90 {:>4} us  p99 {:>4} us  max {:>5} us  ({calls} calls, keep-alive)",
        owners * 3,
        limits.len(),
        startup.as_secs_f64() * 1000.0,
        percentile(&times, 0.50).as_micros(),
        percentile(&times, 0.90).as_micros(),
        percentile(&times, 0.99).as_micros(),
        times.last().copied().unwrap_or_default().as_micros(),
    );
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let calls: usize = match std::env::args().nth(1) {
        Some(n) => n.parse()?,
        None => 5000,
    };
    let redis = Redis::start()?;
    for owners in [5, 10_000, 5, 10_000] {
        measure(&redis, owners, calls)?;
    }
    Ok(())
}
