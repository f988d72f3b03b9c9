//! Fleet mode's hostcalls: calls to Limitador made for a stream (the request waits for
//! them), and the root context's charge sender, which takes the reports streams hand it
//! through the VM's own shared queue and sends them, retrying failures on ticks.

use std::collections::HashMap;
use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, MapType};

use crate::fleet::charges::RetryQueue;
use crate::fleet::protocol::{Answer, Call};
use crate::fleet::FleetPolicy;
use crate::flow::Outbox;
use crate::metrics::{Metric, MetricsSink};

/// How often a root context with reports waiting retries the due ones.
const RETRY_TICK: Duration = Duration::from_millis(100);

/// Sends `call` to the fleet's cluster; the token the answer will carry.
pub fn dispatch(fleet: &FleetPolicy, call: &Call) -> Option<u32> {
    let headers = vec![
        (":method", call.method),
        (":path", call.path.as_str()),
        (":authority", fleet.authority.as_str()),
        ("content-type", "application/json"),
    ];
    let body = (!call.body.is_empty()).then_some(call.body.as_slice());
    match hostcalls::dispatch_http_call(
        &fleet.cluster,
        headers,
        body,
        Vec::new(),
        Duration::from_millis(u64::from(fleet.timeout_ms)),
    ) {
        Ok(token) => Some(token),
        Err(status) => {
            log::warn!(
                "fleet: call {} {} to cluster '{}' not sent: {status:?}",
                call.method,
                call.path,
                fleet.cluster
            );
            None
        }
    }
}

/// The answer of the call whose response callback is running (`num_headers` 0: the
/// connection broke, and the answer's maps must not be read).
pub fn read_answer(num_headers: usize, body_size: usize) -> Answer {
    if num_headers == 0 {
        return Answer::failed();
    }
    let header = |name: &str| {
        hostcalls::get_map_value_bytes(MapType::HttpCallResponseHeaders, name)
            .ok()
            .flatten()
            .and_then(|value| String::from_utf8(value).ok())
    };
    let number = |name: &str| header(name).and_then(|v| v.trim().parse::<u64>().ok());
    Answer {
        status: header(":status").and_then(|s| s.trim().parse().ok()),
        remaining: number("x-ratelimit-remaining"),
        reset_secs: number("x-ratelimit-reset"),
        body: hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size)
            .ok()
            .flatten()
            .unwrap_or_default(),
    }
}

/// A stream's reports (and threshold alerts' events) for the root context, through the
/// VM's own queues.
pub struct QueueOutbox {
    pub queue: Option<u32>,
    pub alerts: Option<u32>,
}

impl Outbox for QueueOutbox {
    fn send(&mut self, call: Call) {
        let Some(queue) = self.queue else {
            log::error!(
                "fleet: no charge queue; report lost: {}",
                call_text(&call.body)
            );
            return;
        };
        if let Err(status) = hostcalls::enqueue_shared_queue(queue, Some(&call.body)) {
            log::error!(
                "fleet: charge not queued ({status:?}); report lost: {}",
                call_text(&call.body)
            );
        }
    }

    fn alert(&mut self, event: Vec<u8>) {
        self.queue_alert(event);
    }
}

impl QueueOutbox {
    fn queue_alert(&mut self, event: Vec<u8>) {
        let queued = match self.alerts {
            Some(queue) => hostcalls::enqueue_shared_queue(queue, Some(&event)).is_ok(),
            None => false,
        };
        if !queued {
            log::error!("alerts: event not queued; lost: {}", call_text(&event));
        }
    }
}

fn call_text(body: &[u8]) -> String {
    String::from_utf8_lossy(body).into_owned()
}

/// The root context's part: reports in flight and waiting for a retry.
#[derive(Default)]
pub struct ChargeSender {
    /// The VM's own queue (its name is unique to this root context).
    pub queue: Option<u32>,
    /// Reports sent, by token: (body, attempts so far).
    in_flight: HashMap<u32, (Vec<u8>, u32)>,
    retries: RetryQueue,
}

impl ChargeSender {
    /// Registers this root context's queue, named uniquely so `on_queue_ready` comes here.
    pub fn register(&mut self, namespace: &str, context_id: u32) {
        use std::hash::{BuildHasher, Hasher};
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u32(context_id);
        let name = format!("{namespace}:fleet-charges:{:016x}", hasher.finish());
        match hostcalls::register_shared_queue(&name) {
            Ok(queue) => self.queue = Some(queue),
            Err(status) => log::error!("fleet: charge queue not registered: {status:?}"),
        }
    }

    /// Sends every report the streams queued.
    pub fn drain(&mut self, fleet: &FleetPolicy, metrics: &mut dyn MetricsSink, now: i64) {
        let Some(queue) = self.queue else {
            return;
        };
        while let Ok(Some(body)) = hostcalls::dequeue_shared_queue(queue) {
            self.send(fleet, body, 0, metrics, now);
        }
    }

    /// Sends the reports whose retry is due; stops the ticks when none wait.
    pub fn retry_due(&mut self, fleet: &FleetPolicy, metrics: &mut dyn MetricsSink, now: i64) {
        for pending in self.retries.take_due(now) {
            self.send(fleet, pending.body, pending.attempts, metrics, now);
        }
        self.update_ticks();
    }

    /// The answer to a report.
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
        if answer.status != Some(200) {
            self.failed(body, attempts, answer.status, metrics, now);
        }
        true
    }

    fn send(
        &mut self,
        fleet: &FleetPolicy,
        body: Vec<u8>,
        attempts: u32,
        metrics: &mut dyn MetricsSink,
        now: i64,
    ) {
        let call = Call {
            method: "POST",
            path: "/report".to_string(),
            body,
        };
        let attempts = attempts.saturating_add(1);
        metrics.add(Metric::FleetCalls, 1);
        match dispatch(fleet, &call) {
            Some(token) => {
                self.in_flight.insert(token, (call.body, attempts));
            }
            None => self.failed(call.body, attempts, None, metrics, now),
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
            metrics.add(Metric::FleetChargesFailed, 1);
            log::error!(
                "fleet: charge undelivered after {attempts} attempts (last status {}): POST /report {}",
                status.map_or("none".to_string(), |s| s.to_string()),
                call_text(&body)
            );
        }
        self.update_ticks();
    }

    fn update_ticks(&self) {
        let period = if self.retries.is_empty() {
            Duration::ZERO
        } else {
            RETRY_TICK
        };
        let _ = hostcalls::set_tick_period(period);
    }
}
