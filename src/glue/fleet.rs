//! Fleet mode's hostcalls: calls to Limitador made for a stream (the request waits for
//! them), and the outbox through which streams hand their charges to the VM's root
//! context, whose [`super::poster::Poster`] sends them and retries failures on ticks.

use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, MapType};

use crate::fleet::protocol::{Answer, Call};
use crate::fleet::FleetPolicy;
use crate::flow::Outbox;

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
