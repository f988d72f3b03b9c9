//! `try`: runs a shipped example on this machine in front of the mock LLM upstream and
//! prints the requests of its `try.json` with Envoy's answers (`make try EXAMPLE=<name>`).
//!
//! Usage: `try [<example> [--keep]]`; without an example, lists them. `--keep` leaves Envoy
//! running after the requests, for curl, until Enter is pressed. Exit status 1 when an
//! answer differs from the script (or the example cannot start), 2 on a usage error.

use envoy_harness::examples;
use envoy_harness::runner::default_wasm;
use std::io::{BufRead, Write};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let keep = args.iter().any(|a| a == "--keep");
    let names: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    if let Some(unknown) = args.iter().find(|a| a.starts_with("--") && *a != "--keep") {
        eprintln!("try: unknown option {unknown} (use --keep)");
        return ExitCode::from(2);
    }
    let Some(name) = names.first() else {
        list();
        return ExitCode::SUCCESS;
    };
    let mut out = std::io::stdout();
    let example = match examples::load(name) {
        Ok(example) => example,
        Err(e) => {
            eprintln!("try: {e}");
            return ExitCode::from(2);
        }
    };
    let running = match examples::start(example, &default_wasm(), &mut out) {
        Ok(running) => running,
        Err(e) => {
            eprintln!("try: {name} did not start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let exchanges = match running.play(&mut out) {
        Ok(exchanges) => exchanges,
        Err(e) => {
            eprintln!("try: {e}");
            return ExitCode::FAILURE;
        }
    };
    if keep {
        let _ = writeln!(
            out,
            "\nEnvoy keeps running: {} (admin {}). Press Enter to stop it.",
            running.envoy.base_url(),
            running.envoy.admin_url()
        );
        let _ = out.flush();
        let mut line = String::new();
        let _ = std::io::stdin().lock().read_line(&mut line);
    }
    drop(running);
    if exchanges.iter().all(|e| e.as_expected()) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn list() {
    println!("usage: make try EXAMPLE=<name>   (KEEP=1 leaves Envoy running for curl)\n");
    println!("examples:");
    for name in examples::names() {
        match examples::load(&name) {
            Ok(example) => println!("  {name:<20} {}", example.script.about),
            Err(e) => println!("  {name:<20} (unreadable: {e})"),
        }
    }
}
