//! Bodies that must arrive, posted from the root context: the streams queue them (fleet
//! charges for Limitador, threshold alert events), the root context posts each as an HTTP
//! call and retries it with backoff until a 2xx answer says it arrived. One given up on
//! (attempts exhausted, retry queue full) is logged with its body and counted.

use std::collections::HashMap;
use std::time::Duration;

use proxy_wasm::hostcalls;

use crate::fleet::charges::RetryQueue;
use crate::fleet::protocol::Answer;
use crate::metrics::{Metric, MetricsSink};

/// How often a root context with posts waiting retries the due ones.
const RETRY_TICK: Duration = Duration::from_millis(100);

/// Where the posts of a [`Poster`] go.
pub struct Target<'a> {
    pub cluster: &'a str,
    pub authority: &'a str,
    pub path: &'a str,
    pub timeout_ms: u32,
    /// Counted at every attempt, if set (fleet mode counts its calls).
    pub attempt_metric: Option<Metric>,
}

/// One kind of post: the root context's queue the streams fill, the posts in flight and
/// those waiting for a retry.
pub struct Poster {
    /// The VM's own queue (its name is unique to this root context).
    pub queue: Option<u32>,
    /// Posts sent, by token: (body, attempts so far).
    in_flight: HashMap<u32, (Vec<u8>, u32)>,
    retries: RetryQueue,
    /// What a post is, for log lines (`fleet: charge`, `alerts: event`).
    what: &'static str,
    /// Counted when a post is given up on.
    undelivered: Metric,
}

impl Poster {
    pub fn new(what: &'static str, undelivered: Metric) -> Self {
        Self {
            queue: None,
            in_flight: HashMap::new(),
            retries: RetryQueue::default(),
            what,
            undelivered,
        }
    }

    /// Registers this root context's queue as `<prefix>:<random>`: unique, so that
    /// `on_queue_ready` comes to this context and no other.
    pub fn register(&mut self, prefix: &str, context_id: u32) {
        use std::hash::{BuildHasher, Hasher};
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u32(context_id);
        let name = format!("{prefix}:{:016x}", hasher.finish());
        match hostcalls::register_shared_queue(&name) {
            Ok(queue) => self.queue = Some(queue),
            Err(status) => log::error!("{}: queue not registered: {status:?}", self.what),
        }
    }

    /// Posts every body the streams queued.
    pub fn drain(&mut self, target: &Target<'_>, metrics: &mut dyn MetricsSink, now: i64) {
        let Some(queue) = self.queue else {
            return;
        };
        while let Ok(Some(body)) = hostcalls::dequeue_shared_queue(queue) {
            self.send(target, body, 0, metrics, now);
        }
    }

    /// Posts the bodies whose retry is due.
    pub fn retry_due(&mut self, target: &Target<'_>, metrics: &mut dyn MetricsSink, now: i64) {
        for pending in self.retries.take_due(now) {
            self.send(target, pending.body, pending.attempts, metrics, now);
        }
    }

    /// The answer to a post; `false` when the token is not one of this poster's.
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

    /// Whether posts wait for a retry (the root context ticks while any does).
    pub fn waiting(&self) -> bool {
        !self.retries.is_empty()
    }

    fn send(
        &mut self,
        target: &Target<'_>,
        body: Vec<u8>,
        attempts: u32,
        metrics: &mut dyn MetricsSink,
        now: i64,
    ) {
        let attempts = attempts.saturating_add(1);
        if let Some(metric) = target.attempt_metric {
            metrics.add(metric, 1);
        }
        let headers = vec![
            (":method", "POST"),
            (":path", target.path),
            (":authority", target.authority),
            ("content-type", "application/json"),
        ];
        match hostcalls::dispatch_http_call(
            target.cluster,
            headers,
            Some(&body),
            Vec::new(),
            Duration::from_millis(u64::from(target.timeout_ms)),
        ) {
            Ok(token) => {
                self.in_flight.insert(token, (body, attempts));
            }
            Err(status) => {
                log::warn!(
                    "{}: POST {} to cluster '{}' not sent: {status:?}",
                    self.what,
                    target.path,
                    target.cluster
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
            metrics.add(self.undelivered, 1);
            log::error!(
                "{} undelivered after {attempts} attempts (last status {}): {}",
                self.what,
                status.map_or("none".to_string(), |s| s.to_string()),
                String::from_utf8_lossy(&body)
            );
        }
    }
}

/// Ticks while any of `posters` has posts waiting for a retry, none otherwise.
pub fn update_ticks(posters: &[&Poster]) {
    let period = if posters.iter().any(|poster| poster.waiting()) {
        RETRY_TICK
    } else {
        Duration::ZERO
    };
    let _ = hostcalls::set_tick_period(period);
}
