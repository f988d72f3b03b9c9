//! The benchmark's floor: a proxy-wasm HTTP filter that makes the same kinds and numbers of
//! hostcalls as the governance filter on its typical request (header reads and writes, clock
//! reads, shared-data gets and CAS sets, counter increments, body reads) and decides nothing.
//! The difference between the two is the price of the policy itself.
//!
//! The plugin configuration says how many calls to make, as `name=value` words separated by
//! spaces (unknown words are ignored, missing ones are 0):
//! - `req_reads`, `req_updates`: shared-data gets, and get+CAS-set pairs, in request headers;
//! - `resp_reads`, `resp_updates`: the same in response headers;
//! - `end_reads`, `end_updates`: the same at the end of the response body;
//! - `log_reads`, `log_updates`: the same in on_log;
//! - `resp_headers`: response headers added; `strip`: request headers removed (the first
//!   non-pseudo ones: the bench sends the key header first);
//! - `metrics`: counters defined at configure time; `end_metrics`: increments at the end;
//! - `nothing=1`: no call at all, every callback returns at once: the cost of a proxy-wasm
//!   filter as such (the benchmark's do-nothing filter), whatever the other words say.

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MetricType, Status};
use std::rc::Rc;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(FloorRoot::default()) });
}}

/// How many calls of each kind to make (see the crate docs).
#[derive(Clone, Copy, Default)]
struct Plan {
    req: (u32, u32),
    resp: (u32, u32),
    end: (u32, u32),
    log: (u32, u32),
    resp_headers: u32,
    strip: u32,
    metrics: u32,
    end_metrics: u32,
    nothing: bool,
}

impl Plan {
    fn parse(text: &str) -> Plan {
        let mut plan = Plan::default();
        for word in text.split_whitespace() {
            let Some((name, value)) = word.split_once('=') else {
                continue;
            };
            let Ok(n) = value.parse::<u32>() else {
                continue;
            };
            match name {
                "req_reads" => plan.req.0 = n,
                "req_updates" => plan.req.1 = n,
                "resp_reads" => plan.resp.0 = n,
                "resp_updates" => plan.resp.1 = n,
                "end_reads" => plan.end.0 = n,
                "end_updates" => plan.end.1 = n,
                "log_reads" => plan.log.0 = n,
                "log_updates" => plan.log.1 = n,
                "resp_headers" => plan.resp_headers = n,
                "strip" => plan.strip = n,
                "metrics" => plan.metrics = n,
                "end_metrics" => plan.end_metrics = n,
                "nothing" => plan.nothing = n != 0,
                _ => {}
            }
        }
        plan
    }
}

#[derive(Default)]
struct FloorRoot {
    plan: Plan,
    metric_ids: Rc<Vec<u32>>,
}

impl Context for FloorRoot {}

impl RootContext for FloorRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let config = self.get_plugin_configuration().unwrap_or_default();
        self.plan = Plan::parse(&String::from_utf8_lossy(&config));
        let mut ids = Vec::new();
        for i in 0..self.plan.metrics {
            if let Ok(id) = hostcalls::define_metric(MetricType::Counter, &format!("floor.m{i}")) {
                ids.push(id);
            }
        }
        self.metric_ids = Rc::new(ids);
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(FloorStream {
            plan: self.plan,
            metric_ids: Rc::clone(&self.metric_ids),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct FloorStream {
    plan: Plan,
    metric_ids: Rc<Vec<u32>>,
}

/// A 72-byte record, the size of the filter's counter record.
const RECORD: [u8; 72] = [7; 72];

/// `reads` gets and `updates` get + CAS set (one retry on a conflict), on keys `floor/<i>`.
fn shared_calls((reads, updates): (u32, u32)) {
    for i in 0..reads {
        let _ = hostcalls::get_shared_data(&format!("floor/r{i}"));
    }
    for i in 0..updates {
        let key = format!("floor/u{i}");
        for _ in 0..2 {
            let cas = hostcalls::get_shared_data(&key).ok().and_then(|(_, cas)| cas);
            match hostcalls::set_shared_data(&key, Some(&RECORD), cas) {
                Err(Status::CasMismatch) => continue,
                _ => break,
            }
        }
    }
}

fn now() {
    let _ = hostcalls::get_current_time();
}

impl Context for FloorStream {}

impl HttpContext for FloorStream {
    fn on_http_request_headers(&mut self, _n: usize, _eos: bool) -> Action {
        if self.plan.nothing {
            return Action::Continue;
        }
        let headers = self.get_http_request_headers_bytes();
        now();
        shared_calls(self.plan.req);
        let names = headers.iter().map(|(name, _)| name.as_str());
        for name in names
            .filter(|name| !name.starts_with(':'))
            .take(self.plan.strip as usize)
        {
            self.set_http_request_header(name, None);
        }
        Action::Continue
    }

    fn on_http_request_body(&mut self, size: usize, _eos: bool) -> Action {
        if self.plan.nothing {
            return Action::Continue;
        }
        let _ = self.get_http_request_body(0, size);
        now();
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _n: usize, _eos: bool) -> Action {
        if self.plan.nothing {
            return Action::Continue;
        }
        let _ = self.get_http_response_header_bytes("content-type");
        now();
        shared_calls(self.plan.resp);
        for i in 0..self.plan.resp_headers {
            self.set_http_response_header(&format!("x-floor-{i}"), Some("1000"));
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, size: usize, eos: bool) -> Action {
        if self.plan.nothing {
            return Action::Continue;
        }
        let _ = self.get_http_response_body(0, size);
        now();
        if eos {
            shared_calls(self.plan.end);
            for id in self.metric_ids.iter().take(self.plan.end_metrics as usize) {
                let _ = hostcalls::increment_metric(*id, 1);
            }
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        if self.plan.nothing {
            return;
        }
        now();
        shared_calls(self.plan.log);
    }
}
