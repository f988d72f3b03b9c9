//! wit/governance-host.wit declares the host surface governance.wasm depends on. This test
//! (a) parses the WIT, (b) reads the import section of the built module and checks that
//! every import is declared there with the same core signature, and (c) that Envoy provides
//! it (tests/data/envoy-imports.txt). A dependency that drags in an import Envoy lacks, e.g.
//! wasm-bindgen's `__wbindgen_*`, fails here instead of at load time in production.

mod common;

use common::shipped::{read, repo_path};
use std::collections::{BTreeMap, BTreeSet};
use wasmparser::{CompositeInnerType, Parser, Payload, TypeRef, ValType};
use wit_parser::{Resolve, Type};

/// Core import module -> WIT interface name.
fn interface_for(module: &str) -> String {
    module.replace('_', "-")
}

/// (core module, core name) -> (param types, result types) declared in the WIT.
fn declared() -> BTreeMap<(String, String), (Vec<ValType>, Vec<ValType>)> {
    let path = repo_path("wit/governance-host.wit");
    let mut resolve = Resolve::default();
    let pkg = resolve
        .push_str(&path, &read(&path))
        .unwrap_or_else(|e| panic!("{} does not parse: {e:#}", path.display()));
    assert_eq!(
        resolve
            .packages
            .get(pkg)
            .map(|p| p.name.to_string())
            .as_deref(),
        Some("governance:host@0.1.0")
    );
    let core = |t: &Type| match t {
        Type::U8 | Type::U16 | Type::U32 | Type::S8 | Type::S16 | Type::S32 | Type::Bool => {
            ValType::I32
        }
        Type::U64 | Type::S64 => ValType::I64,
        Type::F32 => ValType::F32,
        Type::F64 => ValType::F64,
        other => panic!("{other:?} has no single core type; use integers in the WIT"),
    };
    let mut out = BTreeMap::new();
    for (_, iface) in resolve.interfaces.iter() {
        let Some(name) = &iface.name else { continue };
        let module = match name.as_str() {
            "env" => "env",
            "wasi-snapshot-preview1" => "wasi_snapshot_preview1",
            other => panic!("unexpected interface {other}"),
        };
        for (fname, f) in &iface.functions {
            let params = f.params.iter().map(|p| core(&p.ty)).collect();
            let results = f.result.iter().map(core).collect();
            out.insert(
                (module.to_string(), fname.replace('-', "_")),
                (params, results),
            );
        }
    }
    out
}

/// (module, name) -> (params, results) of every function the built module imports.
fn module_imports() -> BTreeMap<(String, String), (Vec<ValType>, Vec<ValType>)> {
    let wasm = std::fs::read(envoy_harness::runner::default_wasm()).expect("built governance.wasm");
    let mut types = Vec::new();
    let mut out = BTreeMap::new();
    for payload in Parser::new(0).parse_all(&wasm) {
        match payload.expect("valid module") {
            Payload::TypeSection(reader) => {
                for group in reader {
                    for sub in group.expect("type").into_types() {
                        match &sub.composite_type.inner {
                            CompositeInnerType::Func(f) => {
                                types.push(Some((f.params().to_vec(), f.results().to_vec())))
                            }
                            _ => types.push(None),
                        }
                    }
                }
            }
            Payload::ImportSection(reader) => {
                for import in reader.into_imports() {
                    let import = import.expect("import");
                    let TypeRef::Func(idx) = import.ty else {
                        panic!(
                            "non-function import {}.{}: {:?}",
                            import.module, import.name, import.ty
                        );
                    };
                    let sig = types
                        .get(idx as usize)
                        .cloned()
                        .flatten()
                        .expect("function type");
                    out.insert((import.module.to_string(), import.name.to_string()), sig);
                }
            }
            _ => {}
        }
    }
    out
}

fn envoy_provided() -> BTreeSet<(String, String)> {
    read(&repo_path(
        "host-tests/envoy-harness/tests/data/envoy-imports.txt",
    ))
    .lines()
    .map(str::trim)
    .filter(|l| !l.is_empty() && !l.starts_with('#'))
    .map(|l| {
        let (m, n) = l.split_once(' ').expect("`module name`");
        (m.to_string(), n.trim().to_string())
    })
    .collect()
}

#[test]
fn the_wit_parses_and_declares_only_what_envoy_provides() {
    let provided = envoy_provided();
    let declared = declared();
    assert!(declared.len() > 30, "{declared:?}");
    for key in declared.keys() {
        assert!(
            provided.contains(key),
            "the WIT declares {}.{}, which Envoy does not provide",
            key.0,
            key.1
        );
    }
    assert_eq!(
        interface_for("wasi_snapshot_preview1"),
        "wasi-snapshot-preview1"
    );
}

#[test]
fn every_import_of_the_module_is_declared_and_provided_by_envoy() {
    let provided = envoy_provided();
    let declared = declared();
    let imports = module_imports();
    assert!(
        imports.contains_key(&("env".to_string(), "proxy_set_shared_data".to_string())),
        "{imports:?}"
    );
    let mut problems = Vec::new();
    for ((module, name), sig) in &imports {
        let key = (module.clone(), name.clone());
        if !provided.contains(&key) {
            problems.push(format!("{module}.{name}: not provided by Envoy"));
        }
        match declared.get(&key) {
            None => problems.push(format!(
                "{module}.{name}: not declared in wit/governance-host.wit (interface {})",
                interface_for(module)
            )),
            Some(d) if d != sig => problems.push(format!(
                "{module}.{name}: the module imports {sig:?}, the WIT declares {d:?}"
            )),
            Some(_) => {}
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn an_import_envoy_lacks_would_be_caught() {
    // What chrono's default features pull in on wasm32-unknown-unknown.
    let provided = envoy_provided();
    assert!(!provided.contains(&(
        "__wbindgen_placeholder__".to_string(),
        "__wbindgen_describe".to_string()
    )));
    assert!(!declared().contains_key(&(
        "wasi_snapshot_preview1".to_string(),
        "sock_accept".to_string()
    )));
}
