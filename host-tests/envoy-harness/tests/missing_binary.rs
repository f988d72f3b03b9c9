//! Without an Envoy binary (or Redis, or the Limitador stand-in), the harness fails loudly
//! and says how to get one.
//! (Its own test binary: it changes ENVOY_BIN and the others for the whole process.)

use envoy_harness::{envoy_bin, Stack};

#[test]
fn missing_envoy_names_scripts_setup() {
    std::env::set_var("ENVOY_BIN", "/nonexistent/envoy");
    let e = envoy_bin().unwrap_err().to_string();
    assert!(e.contains("scripts/setup"), "{e}");
    let e = Stack::start("{}")
        .err()
        .expect("no Envoy, no stack")
        .to_string();
    assert!(e.contains("scripts/setup"), "{e}");
}

#[test]
fn missing_fleet_processes_name_scripts_setup_fleet() {
    use envoy_harness::fleet::{redis_server_bin, standin_bin};
    use envoy_harness::{Limitador, Redis};
    std::env::set_var("LIMITADOR_STANDIN_BIN", "/nonexistent/limitador-standin");
    std::env::set_var("REDIS_SERVER_BIN", "/nonexistent/redis-server");
    for e in [
        standin_bin().unwrap_err().to_string(),
        redis_server_bin().unwrap_err().to_string(),
        Limitador::start_on("redis://127.0.0.1:1", "[]")
            .err()
            .expect("no stand-in, no Limitador")
            .to_string(),
        Redis::start()
            .err()
            .expect("no redis-server, no Redis")
            .to_string(),
    ] {
        assert!(e.contains("scripts/setup-fleet"), "{e}");
    }
}
