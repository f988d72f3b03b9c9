//! CI checks on what the repository ships for operators (envoy/, examples/):
//! - every Envoy bootstrap passes `envoy --mode validate` (Wasm path pointed at the built
//!   module in a temp copy);
//! - every plugin configuration (examples' config.json, those embedded in bootstraps, those
//!   in the Istio / Envoy Gateway manifests) is accepted by the filter's own parser;
//! - each example's envoy.yaml embeds exactly its config.json;
//! - the manifests say what they must (FAIL_CLOSE, failOpen false);
//! - the fleet example's limits file is what `governance-cli limitador` writes from its
//!   configuration, and its Docker Compose and Kubernetes files run what the directory holds;
//! - the reference bootstrap runs for real: one request admitted, one rejected.

mod common;

use common::shipped::{
    all_plugin_configs, bootstraps, embedded_plugin_configs, manifest_plugin_configs, read,
    repo_path, run_shipped, with_wasm_path, yaml_documents,
};
use envoy_harness::runner::{default_wasm, TempDir};
use envoy_harness::{validate, Request};
use serde_json::{json, Value};

#[test]
fn every_shipped_bootstrap_passes_envoy_validate() {
    let found = bootstraps();
    let names: Vec<String> = found.iter().map(|p| p.display().to_string()).collect();
    for must in [
        "envoy/envoy.yaml",
        "examples/single-team-openai/envoy.yaml",
        "examples/multi-tenant/envoy.yaml",
        "envoy/envoy-mock.yaml",
        "examples/fleet/envoy.yaml",
    ] {
        assert!(
            names.iter().any(|n| n.ends_with(must)),
            "{must} not found among {names:?}"
        );
    }
    let dir = TempDir::new("shipped-validate").unwrap();
    for (i, path) in found.iter().enumerate() {
        let docs = yaml_documents(path);
        assert_eq!(docs.len(), 1, "{}: one document expected", path.display());
        let doc = with_wasm_path(&docs[0], &default_wasm());
        let copy = dir.path().join(format!("bootstrap-{i}.yaml"));
        std::fs::write(&copy, serde_norway::to_string(&doc).unwrap()).unwrap();
        let v = validate(&copy).unwrap();
        assert!(
            v.ok,
            "{} fails envoy --mode validate:\n{}",
            path.display(),
            v.output
        );
        assert!(
            !embedded_plugin_configs(&docs[0]).is_empty(),
            "{} loads no governance filter",
            path.display()
        );
    }
}

#[test]
fn every_shipped_plugin_configuration_is_accepted_by_the_filter_parser() {
    let all = all_plugin_configs();
    // 4 config.json (demo + 3 examples), 5 bootstraps, 2 manifests at least.
    assert!(all.len() >= 11, "found only {all:?}");
    for (where_, text) in &all {
        if let Err(e) = governance::config::parse(text) {
            panic!("{where_}: refused by the filter: {e}");
        }
    }
}

#[test]
fn examples_embed_exactly_their_config_json() {
    for ex in ["single-team-openai", "multi-tenant", "fleet"] {
        let dir = repo_path(&format!("examples/{ex}"));
        let file: Value = serde_json::from_str(&read(&dir.join("config.json"))).unwrap();
        let docs = yaml_documents(&dir.join("envoy.yaml"));
        let embedded = embedded_plugin_configs(&docs[0]);
        assert_eq!(embedded.len(), 1, "{ex}");
        let embedded: Value = serde_json::from_str(&embedded[0]).unwrap();
        assert_eq!(
            embedded, file,
            "examples/{ex}: envoy.yaml and config.json differ"
        );
    }
}

#[test]
fn manifests_fail_closed_and_carry_a_configuration() {
    let manifests = manifest_plugin_configs();
    assert!(
        manifests.iter().any(|(w, _)| w.contains("WasmPlugin"))
            && manifests
                .iter()
                .any(|(w, _)| w.contains("EnvoyExtensionPolicy")),
        "{manifests:?}"
    );
    let istio = yaml_documents(&repo_path("examples/istio/wasmplugin.yaml"));
    let spec = istio[0].get("spec").unwrap();
    assert_eq!(
        spec.get("failStrategy").and_then(|v| v.as_str()),
        Some("FAIL_CLOSE")
    );
    let eg = yaml_documents(&repo_path(
        "examples/envoy-gateway/envoyextensionpolicy.yaml",
    ));
    let policy = eg
        .iter()
        .find(|d| d.get("kind").and_then(|k| k.as_str()) == Some("EnvoyExtensionPolicy"))
        .unwrap();
    let wasm = &policy.get("spec").unwrap().get("wasm").unwrap()[0];
    assert_eq!(
        wasm.get("failOpen").and_then(|v| v.as_bool()),
        Some(false),
        "failOpen must be written out as false"
    );
}

/// The reference bootstrap, run for real: its routes, header_mutation filter and plugin
/// configuration as shipped; only addresses, TLS and the Wasm path changed.
#[test]
fn the_reference_bootstrap_runs_admits_and_rejects() {
    let s = run_shipped(&repo_path("envoy/envoy.yaml"), 2);
    let chat = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]});
    let ok = s
        .client()
        .send(
            &Request::post("/v1/chat/completions")
                .bearer("sk-vk-platform-app-example")
                .json(&chat),
        )
        .unwrap();
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert!(ok.header("x-ratelimit-remaining-requests").is_some());
    let upstream = &s.mock.requests()[0];
    // The virtual key was replaced by the route's provider credential, and the route named
    // the provider before the filter ran.
    let auth = upstream.header("authorization").unwrap_or("");
    assert!(
        auth.starts_with("Bearer ") && !auth.contains("sk-vk-platform-app-example"),
        "upstream saw authorization {auth:?}"
    );
    assert_eq!(upstream.header("x-bf-provider"), Some("openai"));

    // Anthropic route: key accepted, provider anthropic, model not allowed by the key.
    let msg = json!({"model": "claude-haiku-4-5", "max_tokens": 16,
        "messages": [{"role": "user", "content": "hi"}]});
    let rejected = s
        .client()
        .send(
            &Request::post("/v1/messages")
                .header("x-api-key", "sk-vk-platform-app-example")
                .json(&msg),
        )
        .unwrap();
    assert_eq!(rejected.status, 403, "{}", rejected.text());
    assert_eq!(rejected.error_type().as_deref(), Some("model_blocked"));
    let unknown = s
        .client()
        .send(
            &Request::post("/v1/chat/completions")
                .bearer("sk-not-a-key")
                .json(&chat),
        )
        .unwrap();
    assert_eq!(unknown.status, 401);
    assert_eq!(
        unknown.error_type().as_deref(),
        Some("virtual_key_not_found")
    );
    assert_eq!(s.mock.request_count(), 1, "rejections never reach upstream");
    // The usage endpoint with the admin key (its SHA-256 is in the inline configuration).
    let usage = s
        .client()
        .send(&Request::get("/governance/usage").bearer("governance-admin-example"))
        .unwrap();
    assert_eq!(usage.status, 200, "{}", usage.text());
    let counters = usage.json().unwrap()["counters"].clone();
    let requests = counters
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "vk-platform-app" && c["kind"] == "requests")
        .cloned()
        .unwrap_or_else(|| panic!("no request counter for the key: {counters}"));
    assert_eq!(requests["used"], json!(1), "{requests}");
    assert_eq!(s.envoy.counter("governance.admitted").unwrap(), Some(1));
    s.envoy.stop();
}

/// docker-compose runs envoy/envoy-mock.yaml: the reference with its clusters pointed at the
/// mock. Everything but the clusters must stay identical to envoy/envoy.yaml.
#[test]
fn the_compose_bootstrap_is_the_reference_but_for_its_clusters() {
    let strip = |rel: &str| {
        let mut doc = yaml_documents(&repo_path(rel)).remove(0);
        let statics = doc
            .get_mut("static_resources")
            .and_then(|s| s.as_mapping_mut())
            .unwrap();
        let clusters = statics.remove("clusters").unwrap();
        let names: Vec<String> = clusters
            .as_sequence()
            .unwrap()
            .iter()
            .map(|c| c.get("name").and_then(|n| n.as_str()).unwrap().to_string())
            .collect();
        (doc, names)
    };
    let (reference, ref_clusters) = strip("envoy/envoy.yaml");
    let (mock, mock_clusters) = strip("envoy/envoy-mock.yaml");
    assert_eq!(reference, mock, "envoy-mock.yaml drifted from envoy.yaml");
    assert_eq!(ref_clusters, mock_clusters);
    let compose = read(&repo_path("envoy/docker-compose.yaml"));
    assert!(compose.contains("/etc/envoy/envoy-mock.yaml"));
    let dockerfile = read(&repo_path("envoy/Dockerfile"));
    assert!(dockerfile.contains("COPY envoy/envoy-mock.yaml"));
}

/// The Istio and Envoy Gateway plugin configurations, as those control planes hand them to
/// the filter (YAML converted to a JSON string), are accepted by the built module in a real
/// Envoy (on_configure returns true, the listener comes up), not only by the native parser.
#[test]
fn manifest_configurations_load_in_real_envoy() {
    for (where_, json) in manifest_plugin_configs() {
        let s = envoy_harness::Stack::start_with(&json, |c| c.concurrency(1))
            .unwrap_or_else(|e| panic!("{where_}: Envoy refused it: {e}"));
        assert!(
            s.envoy
                .wait_for_log("configuration applied", std::time::Duration::from_secs(5)),
            "{where_}: no 'configuration applied' line:\n{}",
            s.envoy.log()
        );
        s.envoy.stop();
    }
}

/// examples/fleet: limits.yaml is exactly what `governance-cli limitador config.json` writes
/// (one configuration stays the source of truth), and the Compose and Kubernetes files run
/// this directory's files, with Limitador where the bootstrap's cluster looks for it.
#[test]
fn the_fleet_example_files_agree_with_each_other() {
    let dir = repo_path("examples/fleet");
    let config = read(&dir.join("config.json"));
    let generated = governance::tools::limitador(&config)
        .map_err(|failure| failure.error)
        .unwrap();
    assert_eq!(
        read(&dir.join("limits.yaml")),
        generated,
        "examples/fleet/limits.yaml is stale: run \
         `cargo run -q -p governance --bin governance-cli -- limitador examples/fleet/config.json \
         > examples/fleet/limits.yaml`"
    );

    // The bootstrap's cluster named by fleet.cluster: Limitador's HTTP API on port 8080.
    let plugin: Value = serde_json::from_str(&config).unwrap();
    let cluster = plugin["fleet"]["cluster"].as_str().unwrap();
    let bootstrap = &yaml_documents(&dir.join("envoy.yaml"))[0];
    let clusters = bootstrap["static_resources"]["clusters"]
        .as_sequence()
        .unwrap();
    let limitador = clusters
        .iter()
        .find(|c| c["name"].as_str() == Some(cluster))
        .unwrap_or_else(|| panic!("no cluster {cluster} in examples/fleet/envoy.yaml"));
    let endpoint = &limitador["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
        ["address"]["socket_address"];
    assert_eq!(endpoint["address"].as_str(), Some("limitador"));
    assert_eq!(endpoint["port_value"].as_u64(), Some(8080));
    assert!(
        limitador.get("transport_socket").is_none(),
        "Limitador's HTTP API is plain HTTP"
    );

    // Docker Compose: both Envoys run envoy.yaml; Limitador the limits file, on Redis with
    // an append-only file.
    let compose = &yaml_documents(&dir.join("docker-compose.yaml"))[0];
    let services = compose["services"].as_mapping().unwrap();
    for envoy in ["envoy-a", "envoy-b"] {
        let volumes = format!("{:?}", services[envoy]["volumes"]);
        assert!(
            volumes.contains("./envoy.yaml:/etc/envoy/envoy.yaml"),
            "{envoy}: {volumes}"
        );
        assert!(volumes.contains("governance.wasm:/etc/envoy/governance.wasm"));
    }
    let command: Vec<&str> = services["limitador"]["command"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        command,
        [
            "limitador-server",
            "/etc/limitador/limits.yaml",
            "redis",
            "redis://redis:6379"
        ]
    );
    assert!(format!("{:?}", services["limitador"]["volumes"])
        .contains("./limits.yaml:/etc/limitador/limits.yaml"));
    assert!(format!("{:?}", services["redis"]["command"]).contains("appendonly"));

    // Kubernetes: kustomize builds the ConfigMaps from this directory's files; the
    // Deployments mount them where their commands read them.
    let kustomization = &yaml_documents(&dir.join("kustomization.yaml"))[0];
    let generated_from: Vec<String> = kustomization["configMapGenerator"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|g| g["files"].as_sequence().unwrap().iter())
        .map(|f| f.as_str().unwrap().to_string())
        .collect();
    assert_eq!(generated_from, ["envoy.yaml", "limits.yaml"]);
    let manifests = yaml_documents(&dir.join("kubernetes.yaml"));
    let find = |kind: &str, name: &str| {
        manifests
            .iter()
            .find(|d| {
                d["kind"].as_str() == Some(kind) && d["metadata"]["name"].as_str() == Some(name)
            })
            .unwrap_or_else(|| panic!("no {kind} {name} in examples/fleet/kubernetes.yaml"))
    };
    let container =
        |name: &str| find("Deployment", name)["spec"]["template"]["spec"]["containers"][0].clone();
    let limitador = container("limitador");
    assert_eq!(
        limitador["image"]
            .as_str()
            .map(|i| i.starts_with("quay.io/kuadrant/limitador:")),
        Some(true)
    );
    assert_eq!(
        limitador["command"][1].as_str(),
        Some("/etc/limitador/limits.yaml")
    );
    assert_eq!(
        limitador["volumeMounts"][0]["mountPath"].as_str(),
        Some("/etc/limitador")
    );
    let service = find("Service", cluster);
    assert_eq!(service["spec"]["ports"][0]["port"].as_u64(), Some(8080));
    let envoy = container("envoy");
    assert_eq!(
        envoy["command"][2].as_str(),
        Some("/etc/envoy/fleet/envoy.yaml")
    );
    assert_eq!(
        envoy["volumeMounts"][0]["mountPath"].as_str(),
        Some("/etc/envoy/fleet")
    );
    let redis = find("StatefulSet", "redis");
    assert!(format!(
        "{:?}",
        redis["spec"]["template"]["spec"]["containers"][0]["command"]
    )
    .contains("appendonly"));
    assert!(redis["spec"]["volumeClaimTemplates"]
        .as_sequence()
        .is_some_and(|v| !v.is_empty()));
}
