//! Prints the rendered Envoy bootstrap (envoy/bootstrap.yaml.tmpl) for manual runs:
//! `render --config examples/demo/config.json --upstream-port 8090 [--listen-port 10000]
//! [--admin-port 9901] [--vm-id governance] [--failure-policy FAIL_CLOSED] [--wasm PATH]`.
//! Then: `$(scripts/envoy-path) -c rendered.yaml --concurrency 4`.

use envoy_harness::EnvoyConfig;

fn main() {
    let mut config_path: Option<String> = None;
    let (mut upstream, mut listen, mut admin) = (8090u16, 10000u16, 9901u16);
    let mut vm_id = "governance".to_string();
    let mut policy = "FAIL_CLOSED".to_string();
    let mut wasm: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().unwrap_or_default();
        let port = || value.parse::<u16>().unwrap_or(0);
        match arg.as_str() {
            "--config" => config_path = Some(value.clone()),
            "--upstream-port" => upstream = port(),
            "--listen-port" => listen = port(),
            "--admin-port" => admin = port(),
            "--vm-id" => vm_id = value.clone(),
            "--failure-policy" => policy = value.clone(),
            "--wasm" => wasm = Some(value.clone()),
            other => {
                eprintln!("render: unknown argument {other:?}");
                std::process::exit(2);
            }
        }
    }
    let plugin_config = match config_path {
        Some(p) => match std::fs::read_to_string(&p) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("render: cannot read {p}: {e}");
                std::process::exit(1);
            }
        },
        None => "{}".to_string(),
    };
    let mut cfg = EnvoyConfig::new(upstream, plugin_config)
        .vm_id(&vm_id)
        .failure_policy(&policy);
    if let Some(w) = wasm {
        cfg = cfg.wasm_path(w);
    }
    match cfg.render(listen, admin) {
        Ok(yaml) => print!("{yaml}"),
        Err(e) => {
            eprintln!("render: {e}");
            std::process::exit(1);
        }
    }
}
