//! `governance-cli`: the filter's policy core for operators (see `governance::cli`).

fn main() -> std::process::ExitCode {
    governance::cli::main()
}
