//! The mock LLM upstream as a standalone server on 127.0.0.1.
//!
//! Usage: `mock-llm [--port P] [--for-secs N]` (port 0 / absent: any free port; without
//! `--for-secs` it runs until killed). Prints `listening on http://127.0.0.1:<port>` and
//! one line per request received. The steering headers are documented in
//! `envoy_harness::mock`.

use envoy_harness::MockUpstream;
use std::time::{Duration, Instant};

fn main() {
    let mut port: u16 = 0;
    let mut for_secs: Option<u64> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--port" => port = args.next().and_then(|v| v.parse().ok()).unwrap_or(0),
            "--for-secs" => for_secs = args.next().and_then(|v| v.parse().ok()),
            "-h" | "--help" => {
                println!("usage: mock-llm [--port P] [--for-secs N]");
                return;
            }
            other => {
                eprintln!("mock-llm: unknown argument {other:?}");
                std::process::exit(2);
            }
        }
    }
    let mock = match MockUpstream::start_on(port) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("mock-llm: cannot listen on 127.0.0.1:{port}: {e}");
            std::process::exit(1);
        }
    };
    println!("listening on {}", mock.url());
    let started = Instant::now();
    let mut printed = 0usize;
    loop {
        if for_secs.is_some_and(|s| started.elapsed() >= Duration::from_secs(s)) {
            break;
        }
        mock.wait_for_requests(printed + 1, Duration::from_millis(200));
        let requests = mock.requests();
        for r in requests.iter().skip(printed) {
            println!(
                "{} {} {} ({} body bytes)",
                r.id, r.method, r.path, r.body_len
            );
        }
        printed = requests.len();
    }
}
