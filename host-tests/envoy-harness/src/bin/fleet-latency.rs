//! Latency of one owner's `POST /check` on the Limitador stand-in (real Redis, loopback),
//! with a limits file of 5 owners and one of 10,000 owners, each owner in its own namespace
//! with three limits (requests per minute, tokens per day, USD per month).
//!
//! `cargo run --release -p envoy-harness --bin fleet-latency [-- CALLS]` (after
//! `scripts/setup-fleet`). Prints figures; asserts nothing. The benchmark
//! (`cargo run --release -p bench`) prints the same figures.

use envoy_harness::fleet_latency::measure_check;
use envoy_harness::Redis;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let calls: usize = match std::env::args().nth(1) {
        Some(n) => n.parse()?,
        None => 5000,
    };
    let redis = Redis::start()?;
    for owners in [5, 10_000, 5, 10_000] {
        println!("{}", measure_check(&redis, owners, calls)?);
    }
    Ok(())
}
