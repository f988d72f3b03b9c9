//! The root context: compiles the configuration once per `on_configure` and hands it to
//! every stream.

use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType, LogLevel};

use super::fleet::read_answer;
use super::host::{now_nanos, EnvoyMetrics, MetricsHandle, SharedData};
use super::poster::{update_ticks, Poster, Target};
use super::stream::GovernanceStream;
use crate::config::alerts::AlertPost;
use crate::config::{self, Policy};
use crate::counter::Counters;
use crate::fleet::FleetPolicy;
use crate::metrics::Metric;

pub struct GovernanceRoot {
    context_id: u32,
    policy: Option<Rc<Policy>>,
    metrics: Rc<EnvoyMetrics>,
    /// Fleet mode: sends the charges this VM's streams queue to Limitador, and retries them.
    charges: Poster,
    /// Threshold alerts: posts the events this VM's streams queue, and retries them.
    alerts: Poster,
}

impl GovernanceRoot {
    pub fn new(context_id: u32) -> Self {
        Self {
            context_id,
            policy: None,
            metrics: Rc::new(EnvoyMetrics::default()),
            charges: Poster::new("fleet: charge", Metric::FleetChargesFailed),
            alerts: Poster::new("alerts: event", Metric::AlertsFailed),
        }
    }

    /// Ticks while charges or events wait for a retry.
    fn update_ticks(&self) {
        update_ticks(&[&self.charges, &self.alerts]);
    }
}

/// Where fleet mode's charges go: Limitador's `POST /report`.
fn report_target(fleet: &FleetPolicy) -> Target<'_> {
    Target {
        cluster: &fleet.cluster,
        authority: &fleet.authority,
        path: "/report",
        timeout_ms: fleet.timeout_ms,
        attempt_metric: Some(Metric::FleetCalls),
    }
}

/// Where alert events go.
fn alert_target(post: &AlertPost) -> Target<'_> {
    Target {
        cluster: &post.cluster,
        authority: &post.cluster,
        path: &post.path,
        timeout_ms: post.timeout_ms,
        attempt_metric: None,
    }
}

impl Context for GovernanceRoot {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        let answer = read_answer(num_headers, body_size);
        let mut metrics = MetricsHandle(Rc::clone(&self.metrics));
        let now = now_nanos();
        if !self.charges.answered(token_id, &answer, &mut metrics, now) {
            self.alerts.answered(token_id, &answer, &mut metrics, now);
        }
        self.update_ticks();
    }
}

impl RootContext for GovernanceRoot {
    fn on_vm_start(&mut self, _vm_configuration_size: usize) -> bool {
        follow_envoy_log_level();
        true
    }

    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        follow_envoy_log_level();
        let bytes = self.get_plugin_configuration().unwrap_or_default();
        let parsed = match String::from_utf8(bytes) {
            // Entries are read back from Envoy as they are compiled, so the text is freed
            // before the policy grows (see config::parse_rereading).
            Ok(text) => config::parse_rereading(text, &read_plugin_configuration),
            Err(err) => config::parse(&String::from_utf8_lossy(err.as_bytes())),
        };
        let policy = match parsed {
            Ok(policy) => policy,
            Err(err) => {
                log::error!("#{} invalid configuration: {err}", self.context_id);
                return false;
            }
        };
        self.metrics = EnvoyMetrics::define(&policy.namespace);
        if policy.fleet.is_some() && self.charges.queue.is_none() {
            let prefix = format!("{}:fleet-charges", policy.namespace);
            self.charges.register(&prefix, self.context_id);
        }
        let posts_alerts = policy.alerts.as_ref().is_some_and(|a| a.post.is_some());
        if posts_alerts && self.alerts.queue.is_none() {
            let prefix = format!("{}:alerts", policy.namespace);
            self.alerts.register(&prefix, self.context_id);
        }
        let store = SharedData;
        let mut counters = Counters::new(&store, &policy.guard_key);
        for limit in &policy.limits {
            if let Err(err) = counters.ensure_exists(limit) {
                // Not fatal: the first request that touches the counter creates it, checking
                // that its write survived, and applies failure_mode if the value stays bad.
                log::warn!(
                    "#{} counter {} could not be created: {err}",
                    self.context_id,
                    String::from_utf8_lossy(&limit.storage_key)
                );
            }
        }
        log::info!(
            "#{} configuration applied: {} keys, {} teams, {} customers, {} limits, mode {:?}",
            self.context_id,
            policy.keys.len(),
            policy.teams.len(),
            policy.customers.len(),
            policy.limits.len(),
            policy.mode
        );
        self.policy = Some(Rc::new(policy));
        true
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        let policy = self.policy.as_ref()?;
        Some(Box::new(GovernanceStream::new(
            Rc::clone(policy),
            context_id,
            Rc::clone(&self.metrics),
            self.charges.queue,
            self.alerts.queue,
        )))
    }

    fn on_queue_ready(&mut self, queue_id: u32) {
        let Some(policy) = self.policy.as_ref() else {
            return;
        };
        let mut metrics = MetricsHandle(Rc::clone(&self.metrics));
        if self.alerts.queue == Some(queue_id) {
            if let Some(post) = policy.alerts.as_ref().and_then(|a| a.post.as_ref()) {
                self.alerts
                    .drain(&alert_target(post), &mut metrics, now_nanos());
            }
        } else if let Some(fleet) = policy.fleet.as_ref() {
            self.charges
                .drain(&report_target(fleet), &mut metrics, now_nanos());
        }
        self.update_ticks();
    }

    fn on_tick(&mut self) {
        let Some(policy) = self.policy.as_ref() else {
            return;
        };
        let mut metrics = MetricsHandle(Rc::clone(&self.metrics));
        if let Some(fleet) = policy.fleet.as_ref() {
            self.charges
                .retry_due(&report_target(fleet), &mut metrics, now_nanos());
        }
        if let Some(post) = policy.alerts.as_ref().and_then(|a| a.post.as_ref()) {
            self.alerts
                .retry_due(&alert_target(post), &mut metrics, now_nanos());
        }
        self.update_ticks();
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// Bytes `start..start + len` of the plugin configuration.
fn read_plugin_configuration(start: usize, len: usize) -> Option<Vec<u8>> {
    proxy_wasm::hostcalls::get_buffer(BufferType::PluginConfiguration, start, len)
        .ok()
        .flatten()
}

/// Envoy's `wasm` logger level, so `--component-log-level wasm:debug` shows our debug lines
/// without paying for them otherwise.
fn follow_envoy_log_level() {
    let level = match proxy_wasm::hostcalls::get_log_level() {
        Ok(LogLevel::Trace) => log::LevelFilter::Trace,
        Ok(LogLevel::Debug) => log::LevelFilter::Debug,
        Ok(LogLevel::Info) => log::LevelFilter::Info,
        Ok(LogLevel::Warn) => log::LevelFilter::Warn,
        Ok(LogLevel::Error) | Ok(LogLevel::Critical) => log::LevelFilter::Error,
        Err(_) => log::LevelFilter::Info,
    };
    log::set_max_level(level);
}
