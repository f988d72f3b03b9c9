//! Threshold alerts' delivery: streams hand each event to their VM's root context through
//! its own shared queue (an event outlives its stream), and the root posts it to
//! `alerts.cluster`, retrying failures on ticks with the backoff of fleet charges.

use std::collections::HashMap;
use std::time::Duration;

use proxy_wasm::hostcalls;

use crate::config::alerts::AlertPost;
use crate::fleet::charges::RetryQueue;
use crate::fleet::protocol::Answer;
use crate::metrics::{Metric, MetricsSink};

/// How often a root context with events waiting retries the due ones.
const RETRY_TICK: Duration = Duration::from_millis(100);

/// The root context's part: events in flight and waiting for a retry.
#[derive(Default)]
pub struct AlertSender {
    /// The VM's own alert queue (its name is unique to this root context).
    pub queue: Option<u32>,
    /// Events sent, by token: (body, attempts so far).
    in_flight: HashMap<u32, (Vec<u8>, u32)>,
    retries: RetryQueue,
}

impl AlertSender {
    /// Registers this root context's queue, named uniquely so `on_queue_ready` comes here.
    pub fn register(&mut self, namespace: &str, context_id: u32) {
        use std::hash::{BuildHasher, Hasher};
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u32(context_id);
        let name = format!("{namespace}:alerts:{:016x}", hasher.finish());
        match hostcalls::register_shared_queue(&name) {
            Ok(queue) => self.queue = Some(queue),
            Err(status) => log::error!("alerts: queue not registered: {status:?}"),
        }
    }

    /// Posts every event the streams queued.
    pub fn drain(&mut self, post: &AlertPost, metrics: &mut dyn MetricsSink, now: i64) {
        let Some(queue) = self.queue else {
            return;
        };
        while let Ok(Some(body)) = hostcalls::dequeue_shared_queue(queue) {
            self.send(post, body, 0, metrics, now);
        }
    }

    /// Posts the events whose retry is due.
    pub fn retry_due(&mut self, post: &AlertPost, metrics: &mut dyn MetricsSink, now: i64) {
        for pending in self.retries.take_due(now) {
            self.send(post, pending.body, pending.attempts, metrics, now);
        }
        self.update_ticks();
    }

    /// Ticks while events wait for a retry, none otherwise. (Fleet charges use the same
    /// tick; the two never run together: alerts are refused in fleet mode.)
    pub fn update_ticks(&self) {
        let period = if self.retries.is_empty() {
            Duration::ZERO
        } else {
            RETRY_TICK
        };
        let _ = hostcalls::set_tick_period(period);
    }

    /// The answer to a post; `false` when the token is not one of ours.
    pub fn answered(
        &mut self,
        token: u32,
        answer: &Answer,
        metrics: &mut dyn MetricsSink,
        now: i64,
    ) -> bool {
        let Some((body, attempts)) = self.in_flight.remove(&token) else {
            return false;
        };
        if !answer
            .status
            .is_some_and(|status| (200..300).contains(&status))
        {
            self.failed(body, attempts, answer.status, metrics, now);
        }
        true
    }

    fn send(
        &mut self,
        post: &AlertPost,
        body: Vec<u8>,
        attempts: u32,
        metrics: &mut dyn MetricsSink,
        now: i64,
    ) {
        let attempts = attempts.saturating_add(1);
        let headers = vec![
            (":method", "POST"),
            (":path", post.path.as_str()),
            (":authority", post.cluster.as_str()),
            ("content-type", "application/json"),
        ];
        match hostcalls::dispatch_http_call(
            &post.cluster,
            headers,
            Some(&body),
            Vec::new(),
            Duration::from_millis(u64::from(post.timeout_ms)),
        ) {
            Ok(token) => {
                self.in_flight.insert(token, (body, attempts));
            }
            Err(status) => {
                log::warn!(
                    "alerts: event not sent to cluster '{}': {status:?}",
                    post.cluster
                );
                self.failed(body, attempts, None, metrics, now);
            }
        }
    }

    fn failed(
        &mut self,
        body: Vec<u8>,
        attempts: u32,
        status: Option<u16>,
        metrics: &mut dyn MetricsSink,
        now: i64,
    ) {
        if let Some(body) = self.retries.failed(body, attempts, now) {
            metrics.add(Metric::AlertsFailed, 1);
            log::error!(
                "alerts: event undelivered after {attempts} attempts (last status {}): {}",
                status.map_or("none".to_string(), |s| s.to_string()),
                String::from_utf8_lossy(&body)
            );
        }
        self.update_ticks();
    }
}
