//! Helpers shared by the filter tests: hosts, requests, responses, and two ways to read a
//! counter (its stored record in shared data, or the filter's usage endpoint).

use host_tests::{Exchange, Host, HostBuilder, Request, Response, SharedData, Vm, GOVERNANCE_WASM};
use std::sync::{Arc, Barrier};

/// vm_id of every host built here (the shared-data namespace of its VMs).
pub const VM_ID: &str = "governance-tests";
/// Path of the usage endpoint in configurations built by [`usage_endpoint_json`].
pub const USAGE_PATH: &str = "/governance/usage";
/// The admin key of the usage endpoint (its SHA-256 is in [`usage_endpoint_json`]).
pub const ADMIN_KEY: &str = "conc-admin";
/// Nanoseconds per second.
pub const SEC: i64 = 1_000_000_000;
/// Femto-USD per USD (the unit budgets are stored in).
pub const FEMTO: u128 = 1_000_000_000_000_000;

/// The `usage_endpoint` member for a configuration, with [`ADMIN_KEY`] as admin key.
pub fn usage_endpoint_json() -> String {
    format!(
        r#"{{"path":"{USAGE_PATH}","admin_key_sha256":"73fa456fbfa9d9e7e84eb637ccd4797595c80562a0c668e4867fe5f3540cfb8c"}}"#
    )
}

/// A host running governance.wasm with `config` and `workers` worker VMs.
pub fn gov_host(config: &str, workers: usize) -> Host {
    gov_builder(config, workers).build().expect("host builds")
}

/// The builder behind [`gov_host`], for extra settings (clock start...).
pub fn gov_builder(config: &str, workers: usize) -> HostBuilder {
    HostBuilder::new(GOVERNANCE_WASM)
        .plugin_config(config)
        .vm_id(VM_ID)
        .workers(workers)
}

/// `POST /v1/chat/completions` for `gpt-4o-mini`, the key in `x-bf-vk`.
pub fn chat_vk(secret: &str) -> Request {
    chat_request().header("x-bf-vk", secret)
}

/// `POST /v1/chat/completions` for `gpt-4o-mini`, the key as `authorization: Bearer`.
pub fn chat_bearer(secret: &str) -> Request {
    chat_request().header("authorization", &format!("Bearer {secret}"))
}

fn chat_request() -> Request {
    Request::post(
        "/v1/chat/completions",
        r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#,
    )
}

/// `GET /v1/models` with the key in `x-bf-vk` (no model, no body).
pub fn models_vk(secret: &str) -> Request {
    Request::get("/v1/models").header("x-bf-vk", secret)
}

/// An OpenAI chat completion carrying `usage` (`cached` of the prompt tokens cached).
pub fn usage_response(prompt: u64, completion: u64, cached: u64) -> Response {
    Response::ok(format!(
        r#"{{"id":"c1","object":"chat.completion","model":"gpt-4o-mini","choices":[{{"index":0,"message":{{"role":"assistant","content":"ok"}}}}],"usage":{{"prompt_tokens":{prompt},"completion_tokens":{completion},"total_tokens":{},"prompt_tokens_details":{{"cached_tokens":{cached}}}}}}}"#,
        prompt + completion
    ))
}

/// A plain 200 without usage.
pub fn plain_response() -> Response {
    Response::ok(r#"{"object":"list","data":[]}"#)
}

/// The `error.type` of a local reply body (empty if none).
pub fn error_type(ex: &Exchange) -> String {
    let body = String::from_utf8_lossy(&ex.client.body);
    json_field(&body, "type").unwrap_or_default()
}

/// A response header the client got.
pub fn client_header(ex: &Exchange, name: &str) -> Option<String> {
    ex.client
        .headers
        .as_ref()
        .and_then(|h| h.get(name))
        .map(str::to_string)
}

/// The value of `"name":` in a flat JSON object text (strings unquoted; no escapes handled:
/// the values the filter writes here have none).
pub fn json_field(obj: &str, name: &str) -> Option<String> {
    let pattern = format!("\"{name}\":");
    let start = obj.find(&pattern)? + pattern.len();
    let rest = obj.get(start..)?;
    if let Some(quoted) = rest.strip_prefix('"') {
        return quoted
            .find('"')
            .and_then(|end| quoted.get(..end))
            .map(str::to_string);
    }
    let end = rest.find([',', '}', ']']).unwrap_or(rest.len());
    rest.get(..end).map(|v| v.trim().to_string())
}

/// A counter's stored record (layout in `src/counter.rs`, version 2, 72 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredRecord {
    /// A window is open.
    pub started: bool,
    /// First use, ns.
    pub anchor: i64,
    /// Window start, ns.
    pub window_start: i64,
    /// Window end (exclusive), ns.
    pub window_end: i64,
    /// femto-USD for budgets, a count for requests and tokens.
    pub used: u128,
    /// Reserved amount.
    pub reserved: u128,
    /// Earliest use by another request than the anchor's, ns (0: none).
    pub second_use: i64,
}

/// Decodes a stored record; panics on anything but a version-2 record.
pub fn decode_record(bytes: &[u8]) -> StoredRecord {
    assert_eq!(bytes.len(), 72, "record length");
    assert_eq!(bytes.first(), Some(&2), "record version");
    let take = |at: usize, n: usize| bytes.get(at..at + n).expect("inside the record");
    let i64_at = |at: usize| i64::from_le_bytes(take(at, 8).try_into().expect("8 bytes"));
    let u128_at = |at: usize| u128::from_le_bytes(take(at, 16).try_into().expect("16 bytes"));
    StoredRecord {
        started: bytes.get(1).is_some_and(|flags| flags & 1 == 1),
        anchor: i64_at(8),
        window_start: i64_at(16),
        window_end: i64_at(24),
        used: u128_at(32),
        reserved: u128_at(48),
        second_use: i64_at(64),
    }
}

/// The shared-data key of the counter `<owner>:<id>:<kind>` (and `duration`, when given) in
/// the default namespace; panics unless exactly one key matches.
pub fn counter_key(sd: &SharedData, owner: &str, id: &str, kind: &str, duration: &str) -> Vec<u8> {
    let prefix = format!("governance:{owner}:{id}:{kind}:{duration}:");
    let keys: Vec<Vec<u8>> = sd
        .keys(VM_ID)
        .into_iter()
        .filter(|k| k.starts_with(prefix.as_bytes()))
        .collect();
    assert_eq!(
        keys.len(),
        1,
        "keys matching {prefix}: {:?}",
        keys.iter()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .collect::<Vec<_>>()
    );
    keys.into_iter().next().expect("one key")
}

/// The stored record of counter `<owner>:<id>:<kind>:<duration>`.
pub fn stored(sd: &SharedData, owner: &str, id: &str, kind: &str, duration: &str) -> StoredRecord {
    let key = counter_key(sd, owner, id, kind, duration);
    let (bytes, _) = sd.get(VM_ID, &key).expect("counter stored");
    decode_record(&bytes)
}

/// One counter as the usage endpoint reports it (strings as written in the JSON).
#[derive(Debug, Clone, PartialEq)]
pub struct UsageEntry {
    /// `customer`, `team`, `virtual_key`, `provider_config`.
    pub owner: String,
    /// Owner id.
    pub id: String,
    /// `budget`, `requests`, `tokens`.
    pub kind: String,
    /// As configured.
    pub reset_duration: String,
    /// JSON number text.
    pub limit: String,
    /// JSON number text.
    pub used: String,
    /// RFC 3339.
    pub window_start: String,
    /// RFC 3339.
    pub window_end: String,
}

/// Asks the usage endpoint (as admin) through `vm` and parses every counter.
pub fn usage_report(vm: &mut Vm) -> Vec<UsageEntry> {
    let req = Request::get(USAGE_PATH).header("authorization", &format!("Bearer {ADMIN_KEY}"));
    let ex = vm.exchange(&req, &plain_response());
    assert_eq!(ex.client.status, 200, "usage endpoint: {ex:?}");
    let body = String::from_utf8_lossy(&ex.client.body).into_owned();
    let inner = body
        .strip_prefix(r#"{"counters":["#)
        .and_then(|b| b.strip_suffix("]}"))
        .unwrap_or_else(|| panic!("usage body: {body}"));
    if inner.is_empty() {
        return Vec::new();
    }
    inner
        .split("},{")
        .map(|obj| {
            let f = |name: &str| {
                json_field(obj, name).unwrap_or_else(|| panic!("{name} missing in {obj}"))
            };
            UsageEntry {
                owner: f("owner"),
                id: f("id"),
                kind: f("kind"),
                reset_duration: f("reset_duration"),
                limit: f("limit"),
                used: f("used"),
                window_start: f("window_start"),
                window_end: f("window_end"),
            }
        })
        .collect()
}

/// The usage endpoint's entry for `<owner>:<id>:<kind>` (panics unless exactly one).
pub fn usage_entry(vm: &mut Vm, owner: &str, id: &str, kind: &str) -> UsageEntry {
    let all = usage_report(vm);
    let found: Vec<&UsageEntry> = all
        .iter()
        .filter(|e| e.owner == owner && e.id == id && e.kind == kind)
        .collect();
    match found.as_slice() {
        [one] => (*one).clone(),
        _ => panic!("{owner}/{id}/{kind} in {all:?}"),
    }
}

/// Unix nanoseconds of a UTC civil time.
pub fn utc(year: i64, month: i64, day: i64, hour: i64, min: i64, sec: i64) -> i64 {
    // Howard Hinnant's days_from_civil.
    let y = if month <= 2 { year - 1 } else { year };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    ((days * 24 + hour) * 60 + min) * 60 * SEC + sec * SEC
}

/// Runs `work(index, vm)` for every VM on its own OS thread, all released together by a
/// barrier; returns the VMs (in order) and each thread's result.
pub fn on_threads<T: Send + 'static>(
    vms: Vec<Vm>,
    work: impl Fn(usize, &mut Vm) -> T + Send + Sync + 'static,
) -> (Vec<Vm>, Vec<T>) {
    let work = Arc::new(work);
    let barrier = Arc::new(Barrier::new(vms.len()));
    let handles: Vec<_> = vms
        .into_iter()
        .enumerate()
        .map(|(i, mut vm)| {
            let work = Arc::clone(&work);
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                let out = work(i, &mut vm);
                (vm, out)
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().expect("worker thread"))
        .unzip()
}
