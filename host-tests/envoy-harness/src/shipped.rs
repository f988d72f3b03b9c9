//! What the repository ships for operators (`envoy/`, `examples/`): finding the bootstraps,
//! the plugin configurations they embed or sit beside, the Kubernetes manifests, and turning
//! a shipped bootstrap into one that runs on loopback in front of the mock upstream.
//!
//! The shipped files stay as an operator runs them (TLS to the providers, the module at
//! `/etc/envoy/governance.wasm`); [`loopback_template`] changes only what cannot work on a
//! developer's machine, so `make try` and the shipped-files tests run everything else as is.

use crate::runner::{repo_root, HarnessError};
use serde_json::Value as Json;
use serde_norway::{Mapping, Value as Yaml};
use std::fs;
use std::path::{Path, PathBuf};

/// The `@type` of the Wasm HTTP filter's typed config.
pub const WASM_FILTER_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";

/// Placeholder ports written into a rewritten bootstrap, then turned into `{{...}}`.
const LISTEN_SENTINEL: u64 = 64_001;
const ADMIN_SENTINEL: u64 = 64_002;
const UPSTREAM_SENTINEL: u64 = 64_003;

fn err(msg: impl Into<String>) -> HarnessError {
    HarnessError(msg.into())
}

/// `repo_root()/rel`.
pub fn repo_path(rel: &str) -> PathBuf {
    repo_root().join(rel)
}

/// `path` relative to the repository, for messages.
pub fn shown(path: &Path) -> String {
    let root = repo_root();
    path.strip_prefix(&root)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// Every `*.yaml` / `*.yml` file under `envoy/` and `examples/`, sorted.
pub fn yaml_files() -> Vec<PathBuf> {
    let root = repo_root();
    let mut out = Vec::new();
    for dir in ["envoy", "examples"] {
        walk(&root.join(dir), &mut out);
    }
    out.retain(|p| {
        matches!(
            p.extension().and_then(|e| e.to_str()),
            Some("yaml") | Some("yml")
        )
    });
    out.sort();
    out
}

/// Every file named `config.json` under `examples/` (the demo's included).
pub fn example_config_files() -> Vec<PathBuf> {
    let mut out = Vec::new();
    walk(&repo_root().join("examples"), &mut out);
    out.retain(|p| p.file_name().and_then(|n| n.to_str()) == Some("config.json"));
    out.sort();
    out
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        if path.is_dir() {
            walk(&path, out);
        } else {
            out.push(path);
        }
    }
}

pub fn read(path: &Path) -> Result<String, HarnessError> {
    fs::read_to_string(path).map_err(|e| err(format!("cannot read {}: {e}", shown(path))))
}

/// The YAML documents of a file (manifests may hold several, separated by `---`).
pub fn yaml_documents(path: &Path) -> Result<Vec<Yaml>, HarnessError> {
    let text = read(path)?;
    let mut docs = Vec::new();
    for doc in serde_norway::Deserializer::from_str(&text) {
        let value = <Yaml as serde::Deserialize>::deserialize(doc)
            .map_err(|e| err(format!("{} is not valid YAML: {e}", shown(path))))?;
        if !value.is_null() {
            docs.push(value);
        }
    }
    Ok(docs)
}

/// Envoy bootstraps: the shipped YAML files with `static_resources` at the top.
pub fn bootstraps() -> Result<Vec<PathBuf>, HarnessError> {
    let mut out = Vec::new();
    for path in yaml_files() {
        if yaml_documents(&path)?
            .iter()
            .any(|d| d.get("static_resources").is_some())
        {
            out.push(path);
        }
    }
    Ok(out)
}

fn walk_yaml<'a>(v: &'a Yaml, f: &mut dyn FnMut(&'a Yaml)) {
    f(v);
    match v {
        Yaml::Mapping(m) => m.values().for_each(|c| walk_yaml(c, f)),
        Yaml::Sequence(s) => s.iter().for_each(|c| walk_yaml(c, f)),
        Yaml::Tagged(t) => walk_yaml(&t.value, f),
        _ => {}
    }
}

fn walk_yaml_mut(v: &mut Yaml, f: &mut dyn FnMut(&mut Yaml)) {
    f(v);
    match v {
        Yaml::Mapping(m) => m.values_mut().for_each(|c| walk_yaml_mut(c, f)),
        Yaml::Sequence(s) => s.iter_mut().for_each(|c| walk_yaml_mut(c, f)),
        Yaml::Tagged(t) => walk_yaml_mut(&mut t.value, f),
        _ => {}
    }
}

/// The plugin configuration strings of every Wasm filter in a bootstrap (or listener file).
pub fn embedded_plugin_configs(doc: &Yaml) -> Result<Vec<String>, HarnessError> {
    let mut out = Vec::new();
    let mut missing = false;
    walk_yaml(doc, &mut |v| {
        if v.get("@type").and_then(Yaml::as_str) == Some(WASM_FILTER_TYPE) {
            match v
                .get("config")
                .and_then(|c| c.get("configuration"))
                .and_then(|c| c.get("value"))
                .and_then(Yaml::as_str)
            {
                Some(value) => out.push(value.to_string()),
                None => missing = true,
            }
        }
    });
    if missing {
        return Err(err("a Wasm filter without config.configuration.value"));
    }
    Ok(out)
}

/// YAML (a manifest's `pluginConfig` / `config`) as JSON text, the way Istio and Envoy
/// Gateway hand it to the plugin.
pub fn yaml_to_json(v: &Yaml) -> Result<String, HarnessError> {
    let json: Json = serde_json::to_value(v).map_err(|e| err(format!("YAML -> JSON: {e}")))?;
    Ok(json.to_string())
}

/// Plugin configurations in one file's Kubernetes manifests: Istio
/// `WasmPlugin.spec.pluginConfig` and Envoy Gateway `EnvoyExtensionPolicy.spec.wasm[].config`,
/// as (label, JSON text).
pub fn manifest_plugin_configs_in(path: &Path) -> Result<Vec<(String, String)>, HarnessError> {
    let mut out = Vec::new();
    for doc in yaml_documents(path)? {
        let kind = doc.get("kind").and_then(Yaml::as_str).unwrap_or("");
        let spec = doc.get("spec");
        match kind {
            "WasmPlugin" => {
                let cfg = spec.and_then(|s| s.get("pluginConfig")).ok_or_else(|| {
                    err(format!("{}: WasmPlugin without pluginConfig", shown(path)))
                })?;
                out.push((
                    format!("{} (WasmPlugin)", path.display()),
                    yaml_to_json(cfg)?,
                ));
            }
            "EnvoyExtensionPolicy" => {
                let wasm = spec
                    .and_then(|s| s.get("wasm"))
                    .and_then(Yaml::as_sequence)
                    .ok_or_else(|| {
                        err(format!(
                            "{}: EnvoyExtensionPolicy without wasm",
                            shown(path)
                        ))
                    })?;
                for (i, w) in wasm.iter().enumerate() {
                    let cfg = w
                        .get("config")
                        .ok_or_else(|| err(format!("{}: wasm[{i}] without config", shown(path))))?;
                    out.push((
                        format!("{} (EnvoyExtensionPolicy wasm[{i}])", path.display()),
                        yaml_to_json(cfg)?,
                    ));
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

/// [`manifest_plugin_configs_in`] over every shipped YAML file.
pub fn manifest_plugin_configs() -> Result<Vec<(String, String)>, HarnessError> {
    let mut out = Vec::new();
    for path in yaml_files() {
        out.extend(manifest_plugin_configs_in(&path)?);
    }
    Ok(out)
}

/// Every plugin configuration the repository ships, as (where, JSON text): the examples'
/// `config.json` files, those embedded in bootstraps, and those in manifests.
pub fn all_plugin_configs() -> Result<Vec<(String, String)>, HarnessError> {
    let mut out = Vec::new();
    for path in example_config_files() {
        out.push((path.display().to_string(), read(&path)?));
    }
    for path in bootstraps()? {
        for doc in yaml_documents(&path)? {
            for (i, cfg) in embedded_plugin_configs(&doc)?.into_iter().enumerate() {
                out.push((format!("{} (Wasm filter {i})", path.display()), cfg));
            }
        }
    }
    out.extend(manifest_plugin_configs()?);
    Ok(out)
}

/// The bootstrap with only its Wasm module path replaced (for `envoy --mode validate`).
pub fn with_wasm_path(doc: &Yaml, wasm: &Path) -> Yaml {
    let mut doc = doc.clone();
    let wasm = wasm.to_string_lossy().into_owned();
    walk_yaml_mut(&mut doc, &mut |v| {
        if let Some(local) = v.get_mut("local") {
            if let Some(m) = local.as_mapping_mut() {
                if m.contains_key("filename") {
                    m.insert("filename".into(), Yaml::String(wasm.clone()));
                }
            }
        }
    });
    doc
}

fn socket(address: &str, port: u64) -> Yaml {
    let mut m = Mapping::new();
    m.insert("address".into(), address.into());
    m.insert("port_value".into(), port.into());
    let mut s = Mapping::new();
    s.insert("socket_address".into(), Yaml::Mapping(m));
    Yaml::Mapping(s)
}

/// The names of a bootstrap's static clusters, in order.
pub fn cluster_names(doc: &Yaml) -> Vec<String> {
    doc.get("static_resources")
        .and_then(|s| s.get("clusters"))
        .and_then(Yaml::as_sequence)
        .map(|clusters| {
            clusters
                .iter()
                .filter_map(|c| c.get("name").and_then(Yaml::as_str).map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Rewrites a shipped bootstrap into a harness template that runs on loopback: admin and the
/// (single) listener on `{{ADMIN_PORT}}` / `{{LISTEN_PORT}}` at 127.0.0.1, every cluster a
/// STATIC plain-text cluster at 127.0.0.1 (TLS and DNS dropped): those named in `fixed` at
/// their port, the others at `{{UPSTREAM_PORT}}` (the mock upstream), and the Wasm module at
/// `wasm`. Routes, filters and the plugin configuration are kept as they are, so what runs
/// is what the operator would run.
pub fn loopback_template(
    doc: &Yaml,
    wasm: &Path,
    fixed: &[(&str, u16)],
) -> Result<String, HarnessError> {
    let mut doc = with_wasm_path(doc, wasm);
    doc.get_mut("admin")
        .and_then(Yaml::as_mapping_mut)
        .ok_or_else(|| err("the bootstrap has no admin section"))?
        .insert("address".into(), socket("127.0.0.1", ADMIN_SENTINEL));
    let statics = doc
        .get_mut("static_resources")
        .and_then(Yaml::as_mapping_mut)
        .ok_or_else(|| err("the bootstrap has no static_resources"))?;
    let listeners = statics
        .get_mut("listeners")
        .and_then(Yaml::as_sequence_mut)
        .ok_or_else(|| err("the bootstrap has no static listeners"))?;
    if listeners.len() != 1 {
        return Err(err(format!(
            "one listener expected, found {}",
            listeners.len()
        )));
    }
    for l in listeners.iter_mut() {
        l.as_mapping_mut()
            .ok_or_else(|| err("a listener is not a mapping"))?
            .insert("address".into(), socket("127.0.0.1", LISTEN_SENTINEL));
    }
    if let Some(clusters) = statics.get_mut("clusters").and_then(Yaml::as_sequence_mut) {
        for c in clusters.iter_mut() {
            let c = c
                .as_mapping_mut()
                .ok_or_else(|| err("a cluster is not a mapping"))?;
            let name = c
                .get("name")
                .cloned()
                .ok_or_else(|| err("a cluster without a name"))?;
            let port = fixed
                .iter()
                .find(|(fixed_name, _)| name.as_str() == Some(*fixed_name))
                .map_or(UPSTREAM_SENTINEL, |(_, port)| u64::from(*port));
            for k in [
                "transport_socket",
                "dns_lookup_family",
                "typed_extension_protocol_options",
            ] {
                c.remove(k);
            }
            c.insert("type".into(), "STATIC".into());
            let mut endpoint = Mapping::new();
            endpoint.insert("address".into(), socket("127.0.0.1", port));
            let mut lb = Mapping::new();
            lb.insert("endpoint".into(), Yaml::Mapping(endpoint));
            let mut eps = Mapping::new();
            eps.insert(
                "lb_endpoints".into(),
                Yaml::Sequence(vec![Yaml::Mapping(lb)]),
            );
            let mut la = Mapping::new();
            la.insert("cluster_name".into(), name);
            la.insert("endpoints".into(), Yaml::Sequence(vec![Yaml::Mapping(eps)]));
            c.insert("load_assignment".into(), Yaml::Mapping(la));
        }
    }
    let text = serde_norway::to_string(&doc).map_err(|e| err(format!("cannot write YAML: {e}")))?;
    let text = text
        .replace(
            &format!("port_value: {LISTEN_SENTINEL}"),
            "port_value: {{LISTEN_PORT}}",
        )
        .replace(
            &format!("port_value: {ADMIN_SENTINEL}"),
            "port_value: {{ADMIN_PORT}}",
        )
        .replace(
            &format!("port_value: {UPSTREAM_SENTINEL}"),
            "port_value: {{UPSTREAM_PORT}}",
        );
    Ok(text)
}
