//! `governance-cli`: the filter's policy core for operators (see `governance::cli`).

#[cfg(not(target_arch = "wasm32"))]
fn main() -> std::process::ExitCode {
    governance::cli::main()
}

/// The tool runs natively; a wasm build of the package (the filter) has nothing to run here.
#[cfg(target_arch = "wasm32")]
fn main() {}
