//! A fleet on loopback: several Envoys running the governance filter in fleet mode, sharing
//! one Limitador stand-in and one Redis, in front of one mock LLM upstream.
//!
//! Each Envoy is rendered from `envoy/bootstrap-fleet.yaml.tmpl` (the mock as upstream and a
//! `limitador` cluster at the stand-in's port) and runs its own workers, so its shared data
//! is its own: only Limitador's counters are common to the fleet. Everything is stopped on
//! drop, Envoys first, then the mock, the stand-in and Redis.

use crate::client::Client;
use crate::fleet::{Limitador, LimitadorApi, Redis};
use crate::mock::MockUpstream;
use crate::runner::{Envoy, EnvoyConfig, HarnessError};
use std::thread;

/// The bootstrap template of a fleet-mode Envoy.
pub const FLEET_BOOTSTRAP_TEMPLATE: &str = include_str!("../../../envoy/bootstrap-fleet.yaml.tmpl");

/// The cluster of [`FLEET_BOOTSTRAP_TEMPLATE`] in front of Limitador (the `fleet.cluster` of
/// the plugin configuration).
pub const LIMITADOR_CLUSTER: &str = "limitador";

/// An Envoy configuration for fleet mode: `plugin_config` in front of the upstream on
/// `upstream_port`, with the `limitador` cluster at `limitador_port` (both on 127.0.0.1).
pub fn fleet_envoy_config(
    upstream_port: u16,
    limitador_port: u16,
    plugin_config: &str,
) -> EnvoyConfig {
    EnvoyConfig::new(upstream_port, plugin_config)
        .template(FLEET_BOOTSTRAP_TEMPLATE)
        .placeholder("LIMITADOR_PORT", limitador_port)
}

/// Several fleet-mode Envoys, one mock upstream, one Limitador stand-in, one Redis. Fields
/// drop in order: the Envoys stop before what they call.
pub struct FleetStack {
    pub envoys: Vec<Envoy>,
    pub mock: MockUpstream,
    pub limitador: Limitador,
    pub redis: Redis,
    configs: Vec<EnvoyConfig>,
}

impl FleetStack {
    /// Starts Redis, the stand-in with `limits_yaml` (the file `governance-cli limitador`
    /// writes), the mock, then one Envoy per entry of `plugin_configs`, each with `workers`
    /// worker threads.
    pub fn start(
        limits_yaml: &str,
        plugin_configs: &[String],
        workers: u32,
    ) -> Result<FleetStack, HarnessError> {
        FleetStack::start_with(limits_yaml, plugin_configs, |_, cfg| {
            cfg.concurrency(workers)
        })
    }

    /// Like [`FleetStack::start`], with a chance to adjust each Envoy's configuration
    /// (`adjust(index, config)`).
    pub fn start_with(
        limits_yaml: &str,
        plugin_configs: &[String],
        adjust: impl Fn(usize, EnvoyConfig) -> EnvoyConfig,
    ) -> Result<FleetStack, HarnessError> {
        let redis = Redis::start()?;
        let limitador = Limitador::start(&redis, limits_yaml)?;
        let mock = MockUpstream::start()
            .map_err(|e| HarnessError(format!("cannot start the mock upstream: {e}")))?;
        let configs: Vec<EnvoyConfig> = plugin_configs
            .iter()
            .enumerate()
            .map(|(i, plugin)| {
                adjust(
                    i,
                    fleet_envoy_config(mock.port(), limitador.port(), plugin)
                        .component_log_level("wasm:info"),
                )
            })
            .collect();
        let envoys = start_all(&configs)?;
        Ok(FleetStack {
            envoys,
            mock,
            limitador,
            redis,
            configs,
        })
    }

    /// Envoy `i`.
    pub fn envoy(&self, i: usize) -> &Envoy {
        match self.envoys.get(i) {
            Some(envoy) => envoy,
            None => panic!("the fleet has {} Envoys, not {}", self.envoys.len(), i + 1),
        }
    }

    /// A client for Envoy `i`'s listener.
    pub fn client(&self, i: usize) -> Client {
        self.envoy(i).client()
    }

    /// A client for the stand-in's HTTP API.
    pub fn api(&self) -> LimitadorApi {
        self.limitador.api()
    }

    /// Stops every Envoy, then starts them again with the same configurations (new
    /// processes on new ports: their shared data starts empty).
    pub fn restart_envoys(&mut self) -> Result<(), HarnessError> {
        for envoy in self.envoys.drain(..) {
            envoy.stop();
        }
        self.envoys = start_all(&self.configs)?;
        Ok(())
    }
}

/// Starts one Envoy per configuration, all at once (each compiles the module for its
/// workers); the first failure is the error, and whatever started is stopped.
fn start_all(configs: &[EnvoyConfig]) -> Result<Vec<Envoy>, HarnessError> {
    let started: Vec<Result<Envoy, HarnessError>> = thread::scope(|scope| {
        let handles: Vec<_> = configs
            .iter()
            .map(|cfg| scope.spawn(move || Envoy::start(cfg)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(HarnessError("an Envoy start panicked".into())))
            })
            .collect()
    });
    started.into_iter().collect()
}
