//! The probe's callout and queue commands, through the SDK as a filter uses them: a stream
//! dispatches calls and waits for all answers (paused at its headers or at its last body
//! frame), then resumes or answers itself; `on_log` hands an item to a shared queue whose
//! `on_queue_ready` wakes the root context, which may send it on with a callout of its own.
//!
//! Stream commands (`x-probe`): `dispatch=<cluster>` (repeatable), `timeout=<ms>` (default
//! 1000), `dispatch-without=<header>`, `dispatch-at-last-body`, `on-answer=reply` (answer the
//! client with the last answer's status and body instead of resuming), `on-answer=close`
//! (reset the stream instead), `enqueue=<queue>`,
//! `late-callout-read`. Root configuration: `queue=<name>`, `charge-to=<cluster>`.

use super::{log, Probe, Root};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use std::time::Duration;

extern "C" {
    fn proxy_get_status(code: *mut u32, mp: *mut *mut u8, ml: *mut usize) -> u32;
}

/// `proxy_get_status` as (code, message).
fn status() -> (u32, String) {
    let (mut code, mut p, mut l) = (0u32, std::ptr::null_mut::<u8>(), 0usize);
    // SAFETY: valid out-pointers; the host hands over an allocation of `l` bytes.
    let s = unsafe { proxy_get_status(&mut code, &mut p, &mut l) };
    let msg = if s == 0 && !p.is_null() && l > 0 {
        // SAFETY: allocated by the host through our allocator, `l` bytes.
        let v = unsafe { Vec::from_raw_parts(p, l, l) };
        String::from_utf8_lossy(&v).into_owned()
    } else {
        String::new()
    };
    (code, msg)
}

/// One answer as seen through the SDK (`num_headers == 0` means the call failed).
fn log_answer<C: Context + ?Sized>(
    c: &C,
    who: &str,
    token: u32,
    nh: usize,
    bl: usize,
    nt: usize,
) -> (u32, Vec<u8>) {
    let (code, msg) = status();
    if nh == 0 {
        log(&format!(
            "{who} token={token} failed get_status={code}:{msg}"
        ));
        return (0, Vec::new());
    }
    let answer_status = c
        .get_http_call_response_header(":status")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = c.get_http_call_response_body(0, bl).unwrap_or_default();
    let trailers = c.get_http_call_response_trailers();
    log(&format!(
        "{who} token={token} status={answer_status} headers={nh} body={} trailers={nt}:{trailers:?} get_status={code}:{msg}",
        String::from_utf8_lossy(&body)
    ));
    (answer_status, body)
}

impl Probe {
    /// Dispatches every `dispatch=` call; returns how many the host accepted.
    pub(crate) fn dispatch_all(&self) -> u32 {
        let timeout = self
            .arg("timeout")
            .and_then(|t| t.parse().ok())
            .unwrap_or(1000);
        let omitted = self.args("dispatch-without");
        let mut accepted = 0;
        for cluster in self.args("dispatch") {
            let headers: Vec<(&str, &str)> = [
                (":method", "POST"),
                (":path", "/check"),
                (":authority", "limitador"),
                ("Content-Type", "application/json"),
            ]
            .into_iter()
            .filter(|(k, _)| !omitted.contains(k))
            .collect();
            let body = format!("{{\"ctx\":{}}}", self.id);
            let res = self.dispatch_http_call(
                cluster,
                headers,
                Some(body.as_bytes()),
                vec![("x-trailer", "t")],
                Duration::from_millis(timeout),
            );
            log(&format!("dispatch {cluster} -> {res:?}"));
            if res.is_ok() {
                accepted += 1;
            }
        }
        accepted
    }

    /// Dispatches from the request headers unless the calls wait for the last body frame.
    pub(crate) fn dispatch_from_headers(&mut self) -> bool {
        if self.has("dispatch-at-last-body") {
            return false;
        }
        self.pending = self.dispatch_all();
        self.held = self.pending > 0;
        self.held
    }

    /// Body frame: hold while answers are missing; dispatch at the last frame if asked.
    pub(crate) fn hold_body(&mut self, eos: bool) -> bool {
        if self.held {
            return true;
        }
        if eos && self.has("dispatch-at-last-body") {
            self.pending = self.dispatch_all();
            self.held = self.pending > 0;
        }
        self.held
    }

    pub(crate) fn answer(&mut self, token: u32, nh: usize, bl: usize, nt: usize) {
        let (answer_status, body) = log_answer(self, "answer", token, nh, bl, nt);
        self.pending = self.pending.saturating_sub(1);
        if self.pending > 0 {
            return;
        }
        if self.has("on-answer=close") {
            self.reset_http_request();
        } else if self.has("on-answer=reply") {
            let code = if answer_status == 0 {
                503
            } else {
                answer_status
            };
            self.send_http_response(code, vec![("x-from", "callout")], Some(&body));
        } else if self.held {
            self.held = false;
            self.resume_http_request();
        }
    }

    pub(crate) fn enqueue_from_log(&self) {
        for name in self.args("enqueue") {
            let id = hostcalls::resolve_shared_queue("", name).ok().flatten();
            let res = id.map(|id| {
                hostcalls::enqueue_shared_queue(
                    id,
                    Some(format!("charge ctx={}", self.id).as_bytes()),
                )
            });
            log(&format!("enqueue {name} id={id:?} -> {res:?}"));
        }
    }

    pub(crate) fn late_callout_read(&self) {
        if self.has("late-callout-read") {
            let (s, _) = super::raw_get_value(6, ":status");
            log(&format!("late-callout-read status={s}"));
        }
    }
}

impl Root {
    pub(crate) fn register_queue(&mut self) {
        if let Some(name) = self.value("queue").map(str::to_string) {
            let res = hostcalls::register_shared_queue(&name);
            log(&format!("register {name} root={} -> {res:?}", self.id));
        }
    }

    /// Drains the queue; with `charge-to=<cluster>` sends each item on from the root.
    pub(crate) fn queue_ready(&mut self, queue: u32) {
        log(&format!("queue-ready root={} queue={queue}", self.id));
        while let Ok(Some(item)) = hostcalls::dequeue_shared_queue(queue) {
            log(&format!("dequeued {}", String::from_utf8_lossy(&item)));
            if let Some(cluster) = self.value("charge-to").map(str::to_string) {
                let res = self.dispatch_http_call(
                    &cluster,
                    vec![
                        (":method", "POST"),
                        (":path", "/report"),
                        (":authority", "limitador"),
                    ],
                    Some(&item),
                    vec![],
                    Duration::from_millis(1000),
                );
                log(&format!("root-dispatch {cluster} -> {res:?}"));
            }
        }
    }

    pub(crate) fn answer(&mut self, token: u32, nh: usize, bl: usize, nt: usize) {
        log_answer(self, "root-answer", token, nh, bl, nt);
    }
}
