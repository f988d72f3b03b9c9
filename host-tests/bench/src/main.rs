//! `bench`: performance figures of governance.wasm, one per line, and their budgets.
//!
//! ```text
//! cargo run --release -p bench -- [--quick] [--no-envoy] [--wasm PATH]
//! ```
//! Exit status: 1 if a budget fails (in `--quick` mode only when `BENCH_ENFORCE=1`), 2 on a
//! usage error. See docs/performance.md.

mod envoy;
mod fleet;
mod profile;
mod report;
mod wasm;
mod workload;

use report::{thousands, Report};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// Module size budget (at opt-level 3; 400 KiB would need configuration code cut or a
/// slower build, see docs/performance.md).
const MAX_MODULE_BYTES: u64 = 600 * 1024;

/// The flags rustc enabled for wasm32-wasip1 (SIMD from `.cargo/config.toml`); wasm-opt
/// refuses the module without them.
const WASM_OPT_FEATURES: [&str; 5] = [
    "--enable-bulk-memory",
    "--enable-sign-ext",
    "--enable-nontrapping-float-to-int",
    "--enable-mutable-globals",
    "--enable-simd",
];

struct Args {
    quick: bool,
    envoy: bool,
    envoy_only: bool,
    wasm: Option<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        quick: false,
        envoy: true,
        envoy_only: false,
        wasm: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" => args.quick = true,
            "--no-envoy" => args.envoy = false,
            "--envoy-only" => args.envoy_only = true,
            "--wasm" => args.wasm = Some(PathBuf::from(it.next().ok_or("--wasm needs a path")?)),
            "-h" | "--help" => {
                return Err(
                    "usage: bench [--quick] [--no-envoy | --envoy-only] [--wasm PATH]".to_string(),
                )
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

/// The module to measure: `--wasm`, else the release artifact `make wasm` builds when it is
/// at least as new as the copy the build script compiled from the current sources, else
/// that copy (`host_tests::GOVERNANCE_WASM`).
fn pick_module(explicit: Option<PathBuf>) -> (PathBuf, String) {
    if let Some(p) = explicit {
        return (p, "given with --wasm".to_string());
    }
    let built = PathBuf::from(host_tests::GOVERNANCE_WASM);
    let release =
        envoy_harness::runner::repo_root().join("target/wasm32-wasip1/release/governance.wasm");
    let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    match (mtime(&release), mtime(&built)) {
        (Some(r), Some(b)) if r >= b => (
            release,
            "release artifact of `make wasm`, not older than the build script's copy".to_string(),
        ),
        (Some(_), _) => (
            built,
            "build script's copy from current sources (the release artifact is older)".to_string(),
        ),
        _ => (
            built,
            "build script's copy from current sources (no release artifact)".to_string(),
        ),
    }
}

/// Sizes of the code and data sections of a wasm binary.
fn sections(bytes: &[u8]) -> (u64, u64, u64) {
    let (mut code, mut data, mut custom) = (0u64, 0u64, 0u64);
    let mut i = 8usize;
    let leb = |i: &mut usize| -> Option<u64> {
        let mut v = 0u64;
        let mut shift = 0;
        loop {
            let b = *bytes.get(*i)?;
            *i += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(v);
            }
            shift += 7;
        }
    };
    while let Some(&id) = bytes.get(i) {
        i += 1;
        let Some(size) = leb(&mut i) else { break };
        match id {
            10 => code += size,
            11 => data += size,
            0 => custom += size,
            _ => {}
        }
        i += size as usize;
    }
    (code, data, custom)
}

/// The initial value of the module's first global, rustc's `__stack_pointer`: the top of the
/// shadow stack, which grows down towards address 0 below the data.
fn stack_top(bytes: &[u8]) -> Option<u64> {
    let mut i = 8usize;
    let leb = |i: &mut usize| -> Option<u64> {
        let mut v = 0u64;
        let mut shift = 0;
        loop {
            let b = *bytes.get(*i)?;
            *i += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(v);
            }
            shift += 7;
        }
    };
    while let Some(&id) = bytes.get(i) {
        i += 1;
        let size = leb(&mut i)?;
        if id == 6 {
            let mut at = i;
            let _count = leb(&mut at)?;
            // value type i32 (0x7f), mutable (1), then `i32.const` (0x41) and its LEB value
            // (positive here, so the unsigned reading is right).
            if bytes.get(at..at + 3)? != [0x7f, 0x01, 0x41] {
                return None;
            }
            at += 3;
            return leb(&mut at);
        }
        i += size as usize;
    }
    None
}

fn size_figures(wasm: &Path, report: &mut Report) -> Option<PathBuf> {
    let bytes = match std::fs::read(wasm) {
        Ok(b) => b,
        Err(e) => panic!("cannot read {}: {e}", wasm.display()),
    };
    let size = bytes.len() as u64;
    let (code, data, custom) = sections(&bytes);
    report.figure(
        "module_bytes",
        thousands(size),
        &format!(
            "{:.0} KiB; code section {} KiB, data section {} KiB, custom {} KiB",
            size as f64 / 1024.0,
            code / 1024,
            data / 1024,
            custom / 1024
        ),
    );
    report.budget(
        "module <= 600 KiB",
        size <= MAX_MODULE_BYTES,
        format!("{:.0} KiB", size as f64 / 1024.0),
    );
    let out = std::env::temp_dir().join(format!("governance-bench-{}.wasm", std::process::id()));
    let status = Command::new("wasm-opt")
        .arg("-Oz")
        .args(WASM_OPT_FEATURES)
        .arg(wasm)
        .arg("-o")
        .arg(&out)
        .output();
    match status {
        Ok(o) if o.status.success() => {
            let opt = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
            report.figure(
                "module_bytes_wasm_opt_oz",
                thousands(opt),
                &format!(
                    "{:.0} KiB, {:.1}% smaller; wasm-opt -Oz with rustc's feature flags (not shipped)",
                    opt as f64 / 1024.0,
                    100.0 * (1.0 - opt as f64 / size as f64)
                ),
            );
            Some(out)
        }
        Ok(o) => {
            println!(
                "module_bytes_wasm_opt_oz: n/a (wasm-opt failed: {})",
                String::from_utf8_lossy(&o.stderr)
                    .lines()
                    .next()
                    .unwrap_or("")
            );
            None
        }
        Err(_) => {
            println!(
                "module_bytes_wasm_opt_oz: n/a (wasm-opt not installed: apt-get install binaryen)"
            );
            None
        }
    }
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let (wasm, why) = pick_module(args.wasm);
    println!(
        "bench{}: module {} ({why})",
        if args.quick { " --quick" } else { "" },
        wasm.display()
    );
    let mut report = Report::default();
    if args.envoy_only {
        envoy::run(args.quick, &wasm, &mut report);
        fleet::envoy(args.quick, &wasm, &report);
        return ExitCode::SUCCESS;
    }
    let optimized = size_figures(&wasm, &mut report);
    let stack_top = std::fs::read(&wasm).ok().and_then(|b| stack_top(&b));
    wasm::run(
        &wasm::Opts {
            quick: args.quick,
            wasm: wasm.clone(),
            stack_top,
        },
        &mut report,
    );
    fleet::fuel(&wasm, &report);
    profile::run(&wasm);
    if let Some(opt) = &optimized {
        let fuel = wasm::typical_fuel(opt);
        report.figure(
            "typical_request_fuel_wasm_opt_oz",
            thousands(fuel),
            "same request through the wasm-opt -Oz module (information, not a budget)",
        );
        let _ = std::fs::remove_file(opt);
    }
    if args.envoy {
        envoy::run(args.quick, &wasm, &mut report);
        fleet::envoy(args.quick, &wasm, &report);
    } else {
        println!("envoy: skipped (--no-envoy)");
    }
    let failures = report.summary();
    let enforce = !args.quick || std::env::var("BENCH_ENFORCE").is_ok_and(|v| v == "1");
    if failures == 0 {
        println!("all {} budgets pass", report.budgets.len());
        return ExitCode::SUCCESS;
    }
    if enforce {
        println!("{failures} of {} budgets FAIL", report.budgets.len());
        ExitCode::from(1)
    } else {
        println!(
            "{failures} of {} budgets FAIL (quick mode reports only; exit status 0 unless BENCH_ENFORCE=1)",
            report.budgets.len()
        );
        ExitCode::SUCCESS
    }
}
