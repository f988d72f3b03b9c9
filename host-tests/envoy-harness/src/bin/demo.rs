//! Demo: the governance filter in a real Envoy (4 workers) in front of the mock LLM, driven
//! by bursts of concurrent requests over several virtual keys, then the usage table.
//!
//! Usage: `cargo run -p envoy-harness --bin demo [-- --config PATH] [--workers N]`
//! (default config: `examples/demo/config.json`; needs `scripts/setup` once).
//! It prints one line per decision and is robust to whatever the filter answers.

use envoy_harness::runner::{repo_root, Stack};
use envoy_harness::{Client, MockUpstream, Request, Response};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

/// The admin secret whose SHA-256 is `usage_endpoint.admin_key_sha256` in the demo config.
const ADMIN_SECRET: &str = "demo-admin-secret-not-for-production";

/// One request the demo sends.
#[derive(Clone)]
struct Call {
    key_id: &'static str,
    /// How the key is sent: "x-bf-vk", "authorization" (Bearer) or "x-api-key".
    key_header: &'static str,
    kind: Kind,
    model: &'static str,
    stream: bool,
    /// `x-mock-usage` for the response.
    usage: &'static str,
    provider: Option<&'static str>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    OpenAi,
    Anthropic,
    Gemini,
}

struct Demo<'a> {
    client: Client,
    mock: &'a MockUpstream,
    secrets: BTreeMap<String, String>,
    started: Instant,
    tally: Mutex<BTreeMap<(String, u16), usize>>,
}

fn main() {
    let mut config_path = repo_root().join("examples/demo/config.json");
    let mut workers: u32 = 4;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--config" => config_path = args.next().map(PathBuf::from).unwrap_or(config_path),
            "--workers" => workers = args.next().and_then(|v| v.parse().ok()).unwrap_or(4),
            other => {
                eprintln!("demo: unknown argument {other:?} (use --config PATH, --workers N)");
                std::process::exit(2);
            }
        }
    }
    if let Err(e) = run(&config_path, workers) {
        eprintln!("demo failed: {e}");
        std::process::exit(1);
    }
}

fn run(config_path: &PathBuf, workers: u32) -> Result<(), String> {
    let text = std::fs::read_to_string(config_path)
        .map_err(|e| format!("cannot read {}: {e}", config_path.display()))?;
    let config: Value = serde_json::from_str(&text)
        .map_err(|e| format!("{} is not JSON: {e}", config_path.display()))?;
    let secrets: BTreeMap<String, String> = config
        .get("virtual_keys")
        .and_then(Value::as_array)
        .map(|keys| {
            keys.iter()
                .filter_map(|k| {
                    Some((
                        k.get("id")?.as_str()?.to_string(),
                        k.get("value")?.as_str()?.to_string(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    let usage_path = config
        .get("usage_endpoint")
        .and_then(|u| u.get("path"))
        .and_then(Value::as_str)
        .unwrap_or("/governance/usage")
        .to_string();

    println!(
        "config: {} ({} keys with secrets)",
        config_path.display(),
        secrets.len()
    );
    let t0 = Instant::now();
    let stack = Stack::start_with(&text, |c| c.concurrency(workers)).map_err(|e| e.to_string())?;
    println!(
        "envoy ready in {:?}: listener {}  admin {}  mock upstream {}  ({workers} workers)",
        t0.elapsed(),
        stack.envoy.base_url(),
        stack.envoy.admin_url(),
        stack.mock.url()
    );
    let demo = Demo {
        client: stack.client().with_timeout(Duration::from_secs(20)),
        mock: &stack.mock,
        secrets,
        started: Instant::now(),
        tally: Mutex::new(BTreeMap::new()),
    };

    let chat = |stream, usage| Call {
        key_id: "vk-ml-chat",
        key_header: "authorization",
        kind: Kind::OpenAi,
        model: "gpt-4o-mini",
        stream,
        usage,
        provider: Some("openai"),
    };
    let claude = |key_id, stream, usage| Call {
        key_id,
        key_header: "x-api-key",
        kind: Kind::Anthropic,
        model: "claude-sonnet-4-5",
        stream,
        usage,
        provider: Some("anthropic"),
    };

    // A: a burst on a key limited to 5 requests per 10 s.
    header("A. burst of 12 concurrent requests on vk-ml-chat (5 requests / 10s)");
    let window_start = Instant::now();
    let burst: Vec<Call> = (0..12)
        .map(|i| match i % 4 {
            0 => chat(false, "prompt=400,completion=100"),
            1 => chat(true, "prompt=400,completion=100"),
            2 => claude("vk-ml-chat", false, "prompt=300,completion=80"),
            _ => claude("vk-ml-chat", true, "prompt=300,completion=80,cached=100"),
        })
        .collect();
    demo.concurrent("A", &burst);

    // B: a small budget spent by streamed Anthropic calls ($0.0105 each against $0.02).
    header("B. vk-ml-batch: streamed claude calls against a $0.02 budget");
    for _ in 0..4 {
        demo.one(
            "B",
            &claude("vk-ml-batch", true, "prompt=1000,completion=500"),
        );
    }
    demo.one(
        "B",
        &Call {
            key_id: "vk-ml-batch",
            key_header: "x-bf-vk",
            kind: Kind::Gemini,
            model: "gemini-2.5-flash",
            stream: false,
            usage: "prompt=100,completion=10",
            provider: None,
        },
    );

    // C: policy: team budget, providers, models, unknown and missing keys.
    header("C. vk-apps (team apps, $0.02/h, openai only, gpt-4o-mini only) and bad keys");
    // Provider and model rules first (403), while the team budget still has room: once it
    // is spent, the 402 comes first, because budgets are checked at request headers and the
    // model only once the body has been read.
    demo.one("C", &claude("vk-apps", false, "prompt=10,completion=5"));
    demo.one(
        "C",
        &Call {
            key_id: "vk-apps",
            key_header: "x-bf-vk",
            kind: Kind::OpenAi,
            model: "gpt-4o",
            stream: false,
            usage: "prompt=10,completion=5",
            provider: Some("openai"),
        },
    );
    for _ in 0..4 {
        demo.one(
            "C",
            &Call {
                key_id: "vk-apps",
                key_header: "x-bf-vk",
                kind: Kind::OpenAi,
                model: "gpt-4o-mini",
                stream: false,
                usage: "prompt=20000,completion=10000",
                provider: Some("openai"),
            },
        );
    }
    demo.one(
        "C",
        &Call {
            key_id: "unknown",
            ..chat(false, "prompt=1,completion=1")
        },
    );
    demo.one(
        "C",
        &Call {
            key_id: "none",
            ..chat(false, "prompt=1,completion=1")
        },
    );

    // D: wait for vk-ml-chat's window to end, then burst again.
    let boundary = window_start + Duration::from_millis(10_500);
    let wait = boundary.saturating_duration_since(Instant::now());
    header(&format!(
        "D. waiting {:.1}s for vk-ml-chat's 10s window to roll over, then 8 concurrent requests",
        wait.as_secs_f64()
    ));
    thread::sleep(wait);
    let burst2: Vec<Call> = (0..8)
        .map(|i| chat(i % 2 == 1, "prompt=200,completion=50"))
        .collect();
    demo.concurrent("D", &burst2);

    // E: a sustained 2 requests/s for 25 s: about 5 admitted per 10 s window.
    header("E. vk-ml-chat sustained at 2 requests/s for 25s (expect ~5 admitted per window)");
    let sustained_start = Instant::now();
    for i in 0..50u32 {
        let due = sustained_start + Duration::from_millis(500) * i;
        thread::sleep(due.saturating_duration_since(Instant::now()));
        demo.one("E", &chat(i % 3 == 0, "prompt=100,completion=20"));
    }

    // Usage table and counters.
    header(&format!("usage: GET {usage_path} with the admin key"));
    let usage = demo
        .client
        .send(&Request::get(&usage_path).bearer(ADMIN_SECRET))
        .map_err(|e| format!("GET {usage_path}: {e}"));
    match usage {
        Ok(resp) => print_usage(&resp),
        Err(e) => println!("  {e}"),
    }
    if let Some(secret) = demo.secrets.get("vk-ml-chat") {
        if let Ok(resp) = demo.client.send(&Request::get(&usage_path).bearer(secret)) {
            let n = resp
                .json()
                .and_then(|v| v.get("counters").and_then(Value::as_array).map(Vec::len));
            println!(
                "  same endpoint with vk-ml-chat's own key: {} ({} counters)",
                resp.status,
                n.map_or("no".to_string(), |n| n.to_string())
            );
        }
    }

    let namespace = config
        .get("namespace")
        .and_then(Value::as_str)
        .unwrap_or("governance");
    header(&format!(
        "envoy counters (wasmcustom.{namespace}.*, and Envoy's own Wasm VM counters)"
    ));
    match stack.envoy.stats() {
        Ok(stats) => {
            let prefix = format!("wasmcustom.{namespace}.");
            let mut lines: Vec<(&str, &str)> = stats
                .iter()
                .filter(|(k, _)| k.starts_with(&prefix))
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            if lines.is_empty() {
                println!("  (the filter defined no custom metrics)");
            }
            for k in [
                "wasm.envoy.wasm.runtime.v8.active",
                "wasm.governance.vm_reload",
            ] {
                if let Some(v) = stats.get(k) {
                    lines.push((k, v.as_str()));
                }
            }
            let width = lines.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
            for (k, v) in lines {
                println!("  {k:<width$}  {v}");
            }
        }
        Err(e) => println!("  {e}"),
    }

    header("decisions per phase");
    let tally = demo.tally.lock().map_err(|_| "tally poisoned")?;
    for ((phase, status), n) in tally.iter() {
        println!("  {phase}  {status:>3}  x{n}");
    }
    println!(
        "upstream received {} requests; demo ran {:.1}s",
        stack.mock.request_count(),
        demo.started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn header(text: &str) {
    println!("\n== {text}");
}

impl Demo<'_> {
    fn request(&self, call: &Call) -> Request {
        let (path, body) = match call.kind {
            Kind::OpenAi => (
                "/v1/chat/completions".to_string(),
                json!({"model": call.model, "stream": call.stream,
                    "stream_options": {"include_usage": true},
                    "messages": [{"role": "user", "content": "Say hi"}]}),
            ),
            Kind::Anthropic => (
                "/v1/messages".to_string(),
                json!({"model": call.model, "stream": call.stream, "max_tokens": 256,
                    "messages": [{"role": "user", "content": "Say hi"}]}),
            ),
            Kind::Gemini => (
                format!(
                    "/v1beta/models/{}:{}",
                    call.model,
                    if call.stream {
                        "streamGenerateContent?alt=sse"
                    } else {
                        "generateContent"
                    }
                ),
                json!({"contents": [{"role": "user", "parts": [{"text": "Say hi"}]}]}),
            ),
        };
        let mut req = Request::post(&path)
            .json(&body)
            .header("x-mock-usage", call.usage);
        if let Some(p) = call.provider {
            req = req.header("x-bf-provider", p);
        }
        let secret = match call.key_id {
            "none" => None,
            "unknown" => Some("sk-demo-not-a-key-00000000".to_string()),
            id => self.secrets.get(id).cloned(),
        };
        if let Some(secret) = secret {
            req = match call.key_header {
                "authorization" => req.bearer(&secret),
                h => req.header(h, &secret),
            };
        }
        req
    }

    fn one(&self, phase: &str, call: &Call) {
        let req = self.request(call);
        let result = self.client.send(&req);
        self.report(phase, call, result);
    }

    fn concurrent(&self, phase: &str, calls: &[Call]) {
        thread::scope(|s| {
            for call in calls {
                s.spawn(move || self.one(phase, call));
            }
        });
    }

    fn report(&self, phase: &str, call: &Call, result: std::io::Result<Response>) {
        let t = self.started.elapsed().as_secs_f64();
        let what = format!(
            "{}{}",
            match call.kind {
                Kind::OpenAi => "openai",
                Kind::Anthropic => "anthropic",
                Kind::Gemini => "gemini",
            },
            if call.stream { "/sse " } else { "/json" }
        );
        let model = call.model;
        match result {
            Err(e) => {
                println!(
                    "{t:6.2}s {phase} {:<12} {what:<14} {model:<18} -> error: {e}",
                    call.key_id
                );
                self.count(phase, 0);
            }
            Ok(resp) => {
                let error = resp.error_type().unwrap_or_else(|| "-".into());
                let mut extras = Vec::new();
                for (name, short) in [
                    ("x-ratelimit-remaining-requests", "rem-req"),
                    ("x-ratelimit-remaining-tokens", "rem-tok"),
                    ("x-budget-remaining-usd", "budget-rem"),
                    ("x-ratelimit-reset-requests", "reset-req"),
                    ("retry-after", "retry-after"),
                ] {
                    if let Some(v) = resp.header(name) {
                        extras.push(format!("{short}={v}"));
                    }
                }
                // Where the answer came from, and whether the key reached the provider.
                let upstream = match resp
                    .header("x-mock-request-id")
                    .and_then(|id| id.parse::<usize>().ok())
                    .and_then(|id| self.mock.request(id))
                {
                    None => "local",
                    Some(seen) if seen.has_header(call.key_header) && call.key_id != "none" => {
                        "upstream(key NOT stripped)"
                    }
                    Some(_) => "upstream",
                };
                println!(
                    "{t:6.2}s {phase} {:<12} {what:<14} {model:<18} -> {} {error:<22} {upstream:<8} {}",
                    call.key_id,
                    resp.status,
                    extras.join(" ")
                );
                self.count(phase, resp.status);
            }
        }
    }

    fn count(&self, phase: &str, status: u16) {
        if let Ok(mut tally) = self.tally.lock() {
            *tally.entry((phase.to_string(), status)).or_insert(0) += 1;
        }
    }
}

fn print_usage(resp: &Response) {
    let counters = resp
        .json()
        .and_then(|v| v.get("counters").and_then(Value::as_array).cloned());
    let Some(counters) = counters else {
        let text = resp.text();
        let snippet: String = text.chars().take(200).collect();
        println!(
            "  status {} and no usage table in the body: {snippet}",
            resp.status
        );
        return;
    };
    let s = |c: &Value, k: &str| match c.get(k) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => "-".into(),
        Some(v) => v.to_string(),
    };
    // Spend past the limit is what check-then-charge allows (see the note below the table).
    let over = |c: &Value| {
        let number = |k: &str| c.get(k).and_then(Value::as_f64).unwrap_or(0.0);
        number("used") > number("limit")
    };
    let heading = [
        "owner",
        "id",
        "kind",
        "window",
        "limit",
        "used",
        "remaining",
        "window end",
    ];
    let rows: Vec<[String; 8]> = counters
        .iter()
        .map(|c| {
            [
                s(c, "owner"),
                s(c, "id"),
                s(c, "kind"),
                s(c, "reset_duration"),
                s(c, "limit"),
                s(c, "used"),
                s(c, "remaining"),
                s(c, "window_end"),
            ]
        })
        .collect();
    let mut widths = heading.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let line = |cells: [&str; 8], marked: bool| {
        let mut text = String::from(" ");
        for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
            // Names left, numbers right.
            if (4..7).contains(&i) {
                text.push_str(&format!(" {cell:>width$}"));
            } else {
                text.push_str(&format!(" {cell:<width$}"));
            }
        }
        if marked {
            text.push_str("  *");
        }
        println!("{}", text.trim_end());
    };
    line(heading, false);
    for (row, c) in rows.iter().zip(&counters) {
        line(row.each_ref().map(String::as_str), over(c));
    }
    if counters.iter().any(over) {
        for note in [
            "* spent past the limit, as expected without reservations: a request is admitted",
            "  while spend is below the limit and charged after its response, so the last one",
            "  admitted (and any in flight with it) can take spend past the limit. With",
            "  \"reservation\": {\"enabled\": true} each request's estimate is held before it is",
            "  admitted, which bounds this (docs/reservations.md).",
        ] {
            println!("  {note}");
        }
    }
    println!("  ({} counters, status {})", counters.len(), resp.status);
}
