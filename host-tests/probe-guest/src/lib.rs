//! Probe guest for the host's own tests: exercises host paths the filter does not.
//!
//! Root behaviour comes from the plugin configuration (space-separated words: `reject`,
//! `tick=<ms>`, `tick-resume`, `seed=<key>`, `metrics`, `trap-tick`, `done-later`, and the
//! queue words of `callouts.rs`). HTTP behaviour comes from the request header `x-probe`
//! (comma-separated commands, see `Probe::request_headers_cmds` and `callouts.rs`). Init
//! behaviour comes from the environment variable `PROBE_INIT`. Raw `extern` imports are used
//! where the exact host status matters.

mod callouts;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MetricType, Status};
use std::cell::RefCell;
use std::time::{Duration, UNIX_EPOCH};

extern "C" {
    fn proxy_get_header_map_value(
        map: u32,
        kp: *const u8,
        kl: usize,
        rp: *mut *mut u8,
        rl: *mut usize,
    ) -> u32;
    fn proxy_get_header_map_pairs(map: u32, rp: *mut *mut u8, rl: *mut usize) -> u32;
    fn proxy_add_header_map_value(
        map: u32,
        kp: *const u8,
        kl: usize,
        vp: *const u8,
        vl: usize,
    ) -> u32;
    fn proxy_increment_metric(id: u32, delta: i64) -> u32;
    fn proxy_set_buffer_bytes(ty: u32, start: usize, size: usize, p: *const u8, l: usize) -> u32;
    fn proxy_get_property(pp: *const u8, pl: usize, rp: *mut *mut u8, rl: *mut usize) -> u32;
    fn proxy_continue_stream(ty: u32) -> u32;
    fn proxy_log(level: u32, p: *const u8, l: usize) -> u32;
}

thread_local! {
    static PAUSED: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
}

fn log(msg: &str) {
    let _ = hostcalls::log(LogLevel::Info, msg);
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

unsafe fn take(p: *mut u8, l: usize) -> Vec<u8> {
    if p.is_null() || l == 0 {
        Vec::new()
    } else {
        unsafe { Vec::from_raw_parts(p, l, l) }
    }
}

fn raw_get_value(map: u32, key: &str) -> (u32, String) {
    let (mut p, mut l) = (std::ptr::null_mut(), 0usize);
    let s = unsafe { proxy_get_header_map_value(map, key.as_ptr(), key.len(), &mut p, &mut l) };
    let v = unsafe { take(p, l) };
    (s, String::from_utf8_lossy(&v).into_owned())
}

fn raw_pairs(map: u32) -> (u32, usize) {
    let (mut p, mut l) = (std::ptr::null_mut(), 0usize);
    let s = unsafe { proxy_get_header_map_pairs(map, &mut p, &mut l) };
    let v = unsafe { take(p, l) };
    (s, v.len())
}

fn raw_add(map: u32, k: &str, v: &str) -> u32 {
    unsafe { proxy_add_header_map_value(map, k.as_ptr(), k.len(), v.as_ptr(), v.len()) }
}

fn raw_property(path: &str) -> (u32, Vec<u8>) {
    let joined = path.replace('.', "\0");
    let (mut p, mut l) = (std::ptr::null_mut(), 0usize);
    let s = unsafe { proxy_get_property(joined.as_ptr(), joined.len(), &mut p, &mut l) };
    (s, unsafe { take(p, l) })
}

proxy_wasm::main! {{
    if let Ok(init) = std::env::var("PROBE_INIT") {
        match init.as_str() {
            "log" => log("init log ok"),
            "stdout" => println!("init stdout ok"),
            "shared-get" => {
                let _ = hostcalls::get_shared_data("init");
            }
            "tick" => {
                let _ = hostcalls::set_tick_period(Duration::from_millis(10));
            }
            _ => {}
        }
    }
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|id| -> Box<dyn RootContext> { Box::new(Root { id, config: String::new() }) });
}}

struct Root {
    id: u32,
    config: String,
}

impl Root {
    fn has(&self, word: &str) -> bool {
        self.config.split_whitespace().any(|w| w == word)
    }
    fn value(&self, key: &str) -> Option<&str> {
        self.config
            .split_whitespace()
            .find_map(|w| w.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
    }
}

impl Context for Root {
    fn on_http_call_response(&mut self, token: u32, nh: usize, bl: usize, nt: usize) {
        self.answer(token, nh, bl, nt);
    }
    fn on_done(&mut self) -> bool {
        log(&format!("root on_done id={}", self.id));
        !self.has("done-later")
    }
}

impl RootContext for Root {
    fn on_vm_start(&mut self, size: usize) -> bool {
        log(&format!("vm_start root={} vm_config_size={size}", self.id));
        true
    }
    fn on_configure(&mut self, _size: usize) -> bool {
        self.config = self
            .get_plugin_configuration()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        log(&format!(
            "configured root={} config={}",
            self.id, self.config
        ));
        if let Some(ms) = self.value("tick").and_then(|v| v.parse().ok()) {
            self.set_tick_period(Duration::from_millis(ms));
        }
        if let Some(key) = self.value("seed") {
            if let (None, None) = self.get_shared_data(key) {
                let _ = self.set_shared_data(key, Some(b"0"), None);
            }
        }
        if self.has("metrics") {
            let _ = hostcalls::define_metric(MetricType::Counter, "probe.configured");
        }
        self.register_queue();
        !self.has("reject")
    }
    fn on_tick(&mut self) {
        log(&format!("tick root={}", self.id));
        if self.has("trap-tick") {
            panic!("trap in tick");
        }
        if self.has("tick-resume") {
            for ctx in PAUSED.with(|p| std::mem::take(&mut *p.borrow_mut())) {
                let _ = hostcalls::set_effective_context(ctx);
                let _ = hostcalls::resume_http_request();
            }
        }
        if self.has("done-later") {
            let _ = hostcalls::done();
        }
    }
    fn create_http_context(&self, id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Probe {
            id,
            cmds: Vec::new(),
            pending: 0,
            held: false,
        }))
    }
    fn on_queue_ready(&mut self, queue_id: u32) {
        self.queue_ready(queue_id);
    }
    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Probe {
    id: u32,
    cmds: Vec<String>,
    /// Callouts not answered yet.
    pending: u32,
    /// The request is paused until they are.
    held: bool,
}

impl Probe {
    fn has(&self, c: &str) -> bool {
        self.cmds.iter().any(|x| x == c)
    }
    fn arg(&self, c: &str) -> Option<&str> {
        self.cmds
            .iter()
            .find_map(|x| x.strip_prefix(c).and_then(|r| r.strip_prefix('=')))
    }
    fn args(&self, c: &str) -> Vec<&str> {
        self.cmds
            .iter()
            .filter_map(|x| x.strip_prefix(c).and_then(|r| r.strip_prefix('=')))
            .collect()
    }
    fn late_reads(&self, tag: &str) {
        let (s, v) = raw_get_value(0, "x-probe");
        log(&format!("{tag}-get status={s} value={v}"));
        let (s, n) = raw_pairs(0);
        log(&format!("{tag}-pairs status={s} len={n}"));
        log(&format!("{tag}-add status={}", raw_add(0, "x-late", "1")));
    }
    fn props(&self, key: &str) {
        for path in self.args(key) {
            let (s, v) = raw_property(path);
            log(&format!(
                "prop {path} status={s} value={} hex={}",
                String::from_utf8_lossy(&v),
                hex(&v)
            ));
        }
    }
    fn cas_incr(&self, key: &str) {
        let mut retries = 0;
        loop {
            let (v, cas) = self.get_shared_data(key);
            let n: u64 = v
                .and_then(|b| String::from_utf8(b).ok())
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            match self.set_shared_data(key, Some((n + 1).to_string().as_bytes()), cas) {
                Ok(()) => {
                    log(&format!("cas-incr retries={retries} value={}", n + 1));
                    return;
                }
                Err(Status::CasMismatch) => retries += 1,
                Err(e) => panic!("unexpected {e:?}"),
            }
        }
    }
    fn request_headers_cmds(&mut self) -> Action {
        if self.has("trap-req-headers") {
            panic!("probe trap in request headers");
        }
        if self.has("stdout") {
            println!("probe stdout line");
            eprintln!("probe stderr line");
        }
        if self.has("log-levels") {
            for (i, l) in [
                LogLevel::Trace,
                LogLevel::Debug,
                LogLevel::Info,
                LogLevel::Warn,
                LogLevel::Error,
                LogLevel::Critical,
            ]
            .into_iter()
            .enumerate()
            {
                let _ = hostcalls::log(l, &format!("level {i}"));
            }
            let bad = "bad level";
            log(&format!("log-level-6 status={}", unsafe {
                proxy_log(6, bad.as_ptr(), bad.len())
            }));
            log(&format!("get-log-level={:?}", hostcalls::get_log_level()));
        }
        if self.has("read-config-buffers") {
            let text = |b: Option<Vec<u8>>| b.map(|v| String::from_utf8_lossy(&v).into_owned());
            let p = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX).map(text);
            log(&format!("plugin-config={p:?}"));
            let v = hostcalls::get_buffer(BufferType::VmConfiguration, 0, usize::MAX).map(text);
            log(&format!("vm-config={v:?}"));
        }
        if self.has("wasi-time") {
            let wall = std::time::SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            log(&format!("wasi-now={wall}"));
        }
        if self.has("time") {
            let now = self
                .get_current_time()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            log(&format!("now={now}"));
        }
        if let Some(n) = self.arg("alloc").and_then(|v| v.parse::<usize>().ok()) {
            let v = vec![7u8; n];
            std::mem::forget(v);
        }
        if let Some(n) = self.arg("spin").and_then(|v| v.parse::<u64>().ok()) {
            let mut acc = 0u64;
            for i in 0..n {
                acc = std::hint::black_box(acc.wrapping_mul(31).wrapping_add(i));
            }
            log(&format!("spin done {}", acc % 2));
        }
        if let Some(delta) = self.arg("metric-inc").and_then(|v| v.parse::<i64>().ok()) {
            let c = hostcalls::define_metric(MetricType::Counter, "probe.counter").unwrap_or(0);
            let g = hostcalls::define_metric(MetricType::Gauge, "probe.gauge").unwrap_or(0);
            let h = hostcalls::define_metric(MetricType::Histogram, "probe.histogram").unwrap_or(0);
            log(&format!("metric-ids counter={c} gauge={g} histogram={h}"));
            log(&format!("inc counter status={}", unsafe {
                proxy_increment_metric(c, delta)
            }));
            log(&format!("inc gauge status={}", unsafe {
                proxy_increment_metric(g, delta)
            }));
            log(&format!("inc unknown status={}", unsafe {
                proxy_increment_metric(4000, 1)
            }));
            let _ = hostcalls::record_metric(h, 42);
            log(&format!("get counter={:?}", hostcalls::get_metric(c)));
        }
        if let Some(key) = self.arg("cas-incr") {
            self.cas_incr(key);
        }
        for kv in self.args("set-prop") {
            if let Some((k, v)) = kv.split_once(':') {
                self.set_property(vec![k], Some(v.as_bytes()));
                let (s, got) = raw_property(k);
                log(&format!(
                    "set-prop {k} readback status={s} value={}",
                    String::from_utf8_lossy(&got)
                ));
            }
        }
        self.props("prop");
        if self.has("upstream-continue") {
            log(&format!("continue-upstream status={}", unsafe {
                proxy_continue_stream(3)
            }));
            log(&format!("continue-bad status={}", unsafe {
                proxy_continue_stream(9)
            }));
        }
        if let Some(code) = self.arg("local-reply").and_then(|v| v.parse().ok()) {
            self.send_http_response(
                code,
                vec![("X-Local", "1"), ("x-dup", "a"), ("x-dup", "b")],
                Some(b"denied"),
            );
            return Action::Continue;
        }
        if let Some(code) = self.arg("local-reply-empty").and_then(|v| v.parse().ok()) {
            self.send_http_response(code, vec![("content-type", "application/json")], None);
            return Action::Continue;
        }
        if self.has("close") {
            let _ = hostcalls::reset_http_request();
        }
        if let Some(ms) = self.arg("tick-period").and_then(|v| v.parse().ok()) {
            let _ = hostcalls::set_tick_period(Duration::from_millis(ms));
        }
        if self.dispatch_from_headers() {
            return Action::Pause;
        }
        if self.has("pause-until-tick") {
            PAUSED.with(|p| p.borrow_mut().push(self.id));
            return Action::Pause;
        }
        if self.has("pause-req-headers") {
            return Action::Pause;
        }
        Action::Continue
    }
}

impl Context for Probe {
    fn on_http_call_response(&mut self, token: u32, nh: usize, bl: usize, nt: usize) {
        self.answer(token, nh, bl, nt);
    }
}

impl HttpContext for Probe {
    fn on_http_request_headers(&mut self, _n: usize, _eos: bool) -> Action {
        self.cmds = self
            .get_http_request_header("x-probe")
            .map(|v| v.split(',').map(|s| s.trim().to_string()).collect())
            .unwrap_or_default();
        self.request_headers_cmds()
    }

    fn on_http_request_body(&mut self, size: usize, eos: bool) -> Action {
        if self.has("trap-req-body") {
            panic!("probe trap in request body");
        }
        log(&format!("req-body size={size} eos={eos}"));
        if self.hold_body(eos) {
            return Action::Pause;
        }
        if self.has("read-req-header-in-body") {
            self.late_reads("body");
        }
        if self.has("set-buffer-mid") {
            let x = b"x";
            log(&format!("set-mid status={}", unsafe {
                proxy_set_buffer_bytes(0, 1, 0, x.as_ptr(), 1)
            }));
        }
        if self.has("get-buffer-clamp") {
            let got = hostcalls::get_buffer(BufferType::HttpRequestBody, 2, usize::MAX)
                .ok()
                .flatten()
                .unwrap_or_default();
            log(&format!("clamp={}", String::from_utf8_lossy(&got)));
        }
        if let (Some(p), true) = (self.arg("prepend"), size > 0) {
            self.set_http_request_body(0, 0, p.as_bytes());
        }
        if let (Some(a), true) = (self.arg("append"), size > 0) {
            self.set_http_request_body(size, 0, a.as_bytes());
        }
        let buffer = self.has("buffer-req") || self.has("buffer-req-forever");
        if self.has("buffer-req-forever") || (buffer && !eos) {
            return Action::Pause;
        }
        if eos {
            if buffer {
                let body = self.get_http_request_body(0, size).unwrap_or_default();
                log(&format!(
                    "req-body len={size} body={}",
                    String::from_utf8_lossy(&body)
                ));
            }
            if let Some(t) = self.arg("set-body") {
                self.set_http_request_body(0, size, t.as_bytes());
            }
            if self.has("trailer-in-body") {
                log(&format!(
                    "add-trailer status={}",
                    raw_add(1, "x-added-trailer", "1")
                ));
            }
            if let Some(code) = self.arg("local-reply-in-body").and_then(|v| v.parse().ok()) {
                self.send_http_response(code, vec![], Some(b"late"));
            }
        }
        Action::Continue
    }

    fn on_http_request_trailers(&mut self, n: usize) -> Action {
        log(&format!("req-trailers n={n}"));
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _n: usize, _eos: bool) -> Action {
        if self.has("trap-resp-headers") {
            panic!("probe trap in response headers");
        }
        self.late_callout_read();
        if self.has("sdk-late-read") {
            let _ = self.get_http_request_header("x-probe");
        }
        if self.has("read-req-header-in-response") {
            self.late_reads("resp");
        }
        for kv in self.args("resp-add") {
            if let Some((k, v)) = kv.split_once(':') {
                self.add_http_response_header(k, v);
            }
        }
        if self.has("resp-status-log") {
            log(&format!(
                "resp-status={:?}",
                self.get_http_response_header(":status")
            ));
        }
        self.props("prop-resp");
        if self.has("pause-resp-headers") {
            return Action::Pause;
        }
        if let Some(code) = self.arg("reply-in-resp").and_then(|v| v.parse().ok()) {
            self.send_http_response(code, vec![], Some(b"replaced"));
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, size: usize, eos: bool) -> Action {
        if self.has("resp-body-log") && eos {
            let body = self.get_http_response_body(0, size).unwrap_or_default();
            log(&format!("resp-body={}", String::from_utf8_lossy(&body)));
        }
        let buffer = self.has("buffer-resp") || self.has("buffer-resp-forever");
        if self.has("buffer-resp-forever") || (buffer && !eos) {
            return Action::Pause;
        }
        if buffer && eos {
            log(&format!("resp-body len={size}"));
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        if self.has("read-in-log") {
            let (s, v) = raw_get_value(0, "x-probe");
            log(&format!("log-get status={s} value={v}"));
            log(&format!("log-add status={}", raw_add(0, "x-late", "1")));
            let (s, _) = raw_get_value(1, "x-none");
            log(&format!("log-trailers status={s}"));
        }
        self.props("prop-log");
        self.enqueue_from_log();
    }
}
