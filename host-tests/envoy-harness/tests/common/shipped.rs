//! What the repository ships for operators (envoy/, examples/): finding the bootstraps, the
//! plugin configurations they embed or sit beside, the Kubernetes manifests, and rewriting a
//! bootstrap into one the harness can run on loopback against the mock upstream.

use envoy_harness::runner::repo_root;
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

pub fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The YAML documents of a file (manifests may hold several, separated by `---`).
pub fn yaml_documents(path: &Path) -> Vec<Yaml> {
    let text = read(path);
    serde_norway::Deserializer::from_str(&text)
        .map(|doc| {
            <Yaml as serde::Deserialize>::deserialize(doc)
                .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()))
        })
        .filter(|v| !v.is_null())
        .collect()
}

/// Envoy bootstraps: the shipped YAML files with `static_resources` at the top.
pub fn bootstraps() -> Vec<PathBuf> {
    yaml_files()
        .into_iter()
        .filter(|p| {
            yaml_documents(p)
                .iter()
                .any(|d| d.get("static_resources").is_some())
        })
        .collect()
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
pub fn embedded_plugin_configs(doc: &Yaml) -> Vec<String> {
    let mut out = Vec::new();
    walk_yaml(doc, &mut |v| {
        if v.get("@type").and_then(Yaml::as_str) == Some(WASM_FILTER_TYPE) {
            let value = v
                .get("config")
                .and_then(|c| c.get("configuration"))
                .and_then(|c| c.get("value"))
                .and_then(Yaml::as_str)
                .unwrap_or_else(|| panic!("a Wasm filter without config.configuration.value"));
            out.push(value.to_string());
        }
    });
    out
}

/// YAML (a manifest's `pluginConfig` / `config`) as JSON text, the way Istio and Envoy
/// Gateway hand it to the plugin.
pub fn yaml_to_json(v: &Yaml) -> String {
    let json: Json = serde_json::to_value(v).unwrap_or_else(|e| panic!("YAML -> JSON: {e}"));
    json.to_string()
}

/// Plugin configurations in Kubernetes manifests: Istio `WasmPlugin.spec.pluginConfig` and
/// Envoy Gateway `EnvoyExtensionPolicy.spec.wasm[].config`, as (label, JSON text).
pub fn manifest_plugin_configs() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for path in yaml_files() {
        for doc in yaml_documents(&path) {
            let kind = doc.get("kind").and_then(Yaml::as_str).unwrap_or("");
            let spec = doc.get("spec");
            match kind {
                "WasmPlugin" => {
                    let cfg = spec.and_then(|s| s.get("pluginConfig")).unwrap_or_else(|| {
                        panic!("{}: WasmPlugin without pluginConfig", path.display())
                    });
                    out.push((
                        format!("{} (WasmPlugin)", path.display()),
                        yaml_to_json(cfg),
                    ));
                }
                "EnvoyExtensionPolicy" => {
                    let wasm = spec
                        .and_then(|s| s.get("wasm"))
                        .and_then(Yaml::as_sequence)
                        .unwrap_or_else(|| {
                            panic!("{}: EnvoyExtensionPolicy without wasm", path.display())
                        });
                    for (i, w) in wasm.iter().enumerate() {
                        let cfg = w.get("config").unwrap_or_else(|| {
                            panic!("{}: wasm[{i}] without config", path.display())
                        });
                        out.push((
                            format!("{} (EnvoyExtensionPolicy wasm[{i}])", path.display()),
                            yaml_to_json(cfg),
                        ));
                    }
                }
                _ => {}
            }
        }
    }
    out
}

/// Every plugin configuration the repository ships, as (where, JSON text): the examples'
/// `config.json` files, those embedded in bootstraps, and those in manifests.
pub fn all_plugin_configs() -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = example_config_files()
        .into_iter()
        .map(|p| (p.display().to_string(), read(&p)))
        .collect();
    for path in bootstraps() {
        for doc in yaml_documents(&path) {
            for (i, cfg) in embedded_plugin_configs(&doc).into_iter().enumerate() {
                out.push((format!("{} (Wasm filter {i})", path.display()), cfg));
            }
        }
    }
    out.extend(manifest_plugin_configs());
    out
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

/// Rewrites a shipped bootstrap into a harness template that runs on loopback: admin and the
/// (single) listener on `{{ADMIN_PORT}}` / `{{LISTEN_PORT}}` at 127.0.0.1, every cluster a
/// STATIC plain-text cluster at 127.0.0.1:`{{UPSTREAM_PORT}}` (TLS and DNS dropped), and
/// the Wasm module at `wasm`. Routes, filters and the plugin configuration are kept as they
/// are, so what runs is what the operator would run.
pub fn loopback_template(doc: &Yaml, wasm: &Path) -> String {
    let mut doc = with_wasm_path(doc, wasm);
    let admin = doc
        .get_mut("admin")
        .and_then(Yaml::as_mapping_mut)
        .expect("bootstrap has admin");
    admin.insert("address".into(), socket("127.0.0.1", ADMIN_SENTINEL));
    let statics = doc
        .get_mut("static_resources")
        .and_then(Yaml::as_mapping_mut)
        .expect("static_resources");
    let listeners = statics
        .get_mut("listeners")
        .and_then(Yaml::as_sequence_mut)
        .expect("static listeners");
    assert_eq!(listeners.len(), 1, "one listener expected");
    for l in listeners.iter_mut() {
        l.as_mapping_mut()
            .expect("listener")
            .insert("address".into(), socket("127.0.0.1", LISTEN_SENTINEL));
    }
    if let Some(clusters) = statics.get_mut("clusters").and_then(Yaml::as_sequence_mut) {
        for c in clusters.iter_mut() {
            let c = c.as_mapping_mut().expect("cluster");
            let name = c.get("name").cloned().expect("cluster name");
            for k in [
                "transport_socket",
                "dns_lookup_family",
                "typed_extension_protocol_options",
            ] {
                c.remove(k);
            }
            c.insert("type".into(), "STATIC".into());
            let mut endpoint = Mapping::new();
            endpoint.insert("address".into(), socket("127.0.0.1", UPSTREAM_SENTINEL));
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
    let text = serde_norway::to_string(&doc).expect("serialize YAML");
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
    assert!(text.contains("{{LISTEN_PORT}}") && text.contains("{{UPSTREAM_PORT}}"));
    text
}

/// Starts the mock, then Envoy running `bootstrap` (a shipped file) rewritten by
/// [`loopback_template`].
pub fn run_shipped(bootstrap: &Path, workers: u32) -> envoy_harness::Stack {
    let doc = yaml_documents(bootstrap)
        .into_iter()
        .next()
        .expect("a bootstrap document");
    let template = loopback_template(&doc, &envoy_harness::runner::default_wasm());
    match envoy_harness::Stack::start_with("", |c| {
        c.bootstrap_template(template).concurrency(workers)
    }) {
        Ok(s) => s,
        Err(e) => panic!("{} did not start: {e}", bootstrap.display()),
    }
}

/// `repo_root()/rel`.
pub fn repo_path(rel: &str) -> PathBuf {
    repo_root().join(rel)
}
