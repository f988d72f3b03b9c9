//! Used from `build.rs` files: compiles a guest crate to `wasm32-wasip1` in release mode and
//! returns the path of the `.wasm` it produced.
//!
//! The build runs in its own target directory (`target/guest`), never the one the calling
//! cargo holds locked, so a `cargo test` that triggers it cannot deadlock on its own lock.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Where guest builds go: beside the workspace's own `target/`, in a directory of their own.
pub fn guest_target_dir(workspace_root: &Path) -> PathBuf {
    workspace_root.join("target").join("guest")
}

/// Compiles `manifest` (a crate's `Cargo.toml`) for wasm32-wasip1 and returns the path of
/// `<lib_name>.wasm`. Panics with a readable message on failure: this runs in a build script,
/// where a panic is how a build error is reported.
pub fn build_guest(workspace_root: &Path, manifest: &Path, lib_name: &str) -> PathBuf {
    let target_dir = guest_target_dir(workspace_root);
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let mut cmd = Command::new(cargo);
    // Guests are libraries (cdylib); a crate's binaries (the operators' command-line tool)
    // are not built for wasm.
    cmd.arg("build")
        .arg("--lib")
        .arg("--release")
        .arg("--target")
        .arg("wasm32-wasip1")
        .arg("--manifest-path")
        .arg(manifest)
        .arg("--target-dir")
        .arg(&target_dir);
    // Variables set for the outer build script must not leak into the guest build: they
    // describe the host target and would, for instance, make it link with the wrong flags.
    for (key, _) in std::env::vars() {
        if (key.starts_with("CARGO_") && key != "CARGO_HOME") || key == "RUSTFLAGS" {
            cmd.env_remove(&key);
        }
    }
    cmd.env_remove("CARGO_ENCODED_RUSTFLAGS");
    cmd.env_remove("RUSTC_WORKSPACE_WRAPPER");
    let status = match cmd.status() {
        Ok(status) => status,
        Err(err) => panic!("could not run cargo to build the guest {manifest:?}: {err}"),
    };
    if !status.success() {
        panic!(
            "building the guest {manifest:?} for wasm32-wasip1 failed; is the target installed? \
             (`rustup target add wasm32-wasip1`, done by scripts/setup)"
        );
    }
    target_dir
        .join("wasm32-wasip1")
        .join("release")
        .join(format!("{lib_name}.wasm"))
}

/// Tells cargo to rerun the build script when anything under `dir` changes.
pub fn rerun_if_tree_changed(dir: &Path) {
    println!("cargo:rerun-if-changed={}", dir.display());
}

/// Builds the guest crate in `crate_dir` (its `Cargo.toml` and `src/`), exports the `.wasm`
/// path to the crate being built as the compile-time variable `env_var`, and asks cargo to
/// rerun the build script when the guest's sources change.
pub fn build_and_export(workspace_root: &Path, crate_dir: &Path, lib_name: &str, env_var: &str) {
    let manifest = crate_dir.join("Cargo.toml");
    let wasm = build_guest(workspace_root, &manifest, lib_name);
    println!("cargo:rustc-env={env_var}={}", wasm.display());
    rerun_if_tree_changed(&crate_dir.join("src"));
    println!("cargo:rerun-if-changed={}", manifest.display());
}
