//! `make try EXAMPLE=<name>`: a shipped example run on this machine, in front of the mock
//! LLM upstream, with the requests its `try.json` lists, each printed with its answer.
//!
//! What runs is the shipped file itself: a bootstrap rewritten only where it cannot work
//! here ([`crate::shipped::loopback_template`]: loopback addresses, the providers' clusters
//! at the mock without TLS, the module built from this tree), or a manifest's plugin
//! configuration in the harness's own bootstrap. An example in fleet mode also gets Redis
//! and the Limitador stand-in, loaded with its limits file. The tests run every example
//! the same way and hold its answers to its `try.json`.

use crate::client::{Request, Response};
use crate::fleet::{Limitador, Redis};
use crate::mock::MockUpstream;
use crate::runner::{repo_root, validate, Envoy, EnvoyConfig, HarnessError, TempDir};
use crate::shipped::{self, shown};
use serde::Deserialize;
use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

/// The script of an example, in its directory.
pub const SCRIPT: &str = "try.json";

/// How long a charge may take to show in the usage endpoint (fleet mode sends it to
/// Limitador after the response).
const CHARGE_TIMEOUT: Duration = Duration::from_secs(10);

fn err(msg: impl Into<String>) -> HarnessError {
    HarnessError(msg.into())
}

/// An example's `try.json`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Script {
    /// One line: what the example shows.
    pub about: String,
    /// The file that runs, in the example's directory: an Envoy bootstrap, a Kubernetes
    /// manifest carrying the plugin configuration, or a plugin configuration (JSON).
    pub runs: String,
    /// Fleet mode: Limitador's limits file, in the example's directory.
    #[serde(default)]
    pub limits: Option<String>,
    /// Envoy's worker threads.
    #[serde(default = "two")]
    pub workers: u32,
    pub steps: Vec<Step>,
}

/// One request of a script (sent `times` times, each expected to get `expect`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// What the step shows, printed above it.
    pub say: String,
    #[serde(default = "post")]
    pub method: String,
    pub path: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The request body, sent as `application/json`.
    #[serde(default)]
    pub json: Option<Json>,
    #[serde(default = "one")]
    pub times: u32,
    /// The status every one of them must get.
    pub expect: u16,
    /// The name under which the example's README quotes the (last) reply
    /// (`<!-- envoy-reply: NAME -->`).
    #[serde(default)]
    pub reply: Option<String>,
    /// Wait until the response's charge shows in the usage endpoint before going on (fleet
    /// mode charges Limitador after the response, while the next request may already run).
    #[serde(default)]
    pub charged: bool,
}

fn two() -> u32 {
    2
}

fn one() -> u32 {
    1
}

fn post() -> String {
    "POST".to_string()
}

/// A shipped example that has a script.
#[derive(Debug, Clone)]
pub struct Example {
    pub name: String,
    pub dir: PathBuf,
    pub script: Script,
}

/// The directory of example `name`: `envoy` is the reference bootstrap's, any other name
/// one of `examples/`.
fn dir_of(name: &str) -> PathBuf {
    if name == "envoy" {
        repo_root().join("envoy")
    } else {
        repo_root().join("examples").join(name)
    }
}

/// The names of every example with a script, sorted (`envoy` first).
pub fn names() -> Vec<String> {
    let mut names = Vec::new();
    if dir_of("envoy").join(SCRIPT).is_file() {
        names.push("envoy".to_string());
    }
    let mut found: Vec<String> = std::fs::read_dir(repo_root().join("examples"))
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.path().join(SCRIPT).is_file())
                .filter_map(|e| e.file_name().to_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    names.extend(found);
    names
}

/// Reads example `name`'s script.
pub fn load(name: &str) -> Result<Example, HarnessError> {
    let dir = dir_of(name);
    let path = dir.join(SCRIPT);
    if !path.is_file() {
        return Err(err(format!(
            "no example {name:?} (no {}); examples: {}",
            shown(&path),
            names().join(", ")
        )));
    }
    let text = shipped::read(&path)?;
    let script: Script =
        serde_json::from_str(&text).map_err(|e| err(format!("{}: {e}", shown(&path))))?;
    Ok(Example {
        name: name.to_string(),
        dir,
        script,
    })
}

/// What an example runs: a whole bootstrap, or a plugin configuration for the harness's.
enum Runs {
    Bootstrap(serde_norway::Value),
    Plugin(String),
}

fn what_runs(example: &Example) -> Result<(Runs, String), HarnessError> {
    let path = example.dir.join(&example.script.runs);
    if path.extension().and_then(|e| e.to_str()) == Some("json") {
        let text = shipped::read(&path)?;
        return Ok((Runs::Plugin(text.clone()), text));
    }
    let docs = shipped::yaml_documents(&path)?;
    if let Some(doc) = docs.iter().find(|d| d.get("static_resources").is_some()) {
        let plugin = shipped::embedded_plugin_configs(doc)?
            .into_iter()
            .next()
            .ok_or_else(|| err(format!("{} loads no governance filter", shown(&path))))?;
        return Ok((Runs::Bootstrap(doc.clone()), plugin));
    }
    let (_, plugin) = shipped::manifest_plugin_configs_in(&path)?
        .into_iter()
        .next()
        .ok_or_else(|| {
            err(format!(
                "{} is neither a bootstrap nor a manifest with the filter's configuration",
                shown(&path)
            ))
        })?;
    Ok((Runs::Plugin(plugin.clone()), plugin))
}

/// An example running: Envoy, the mock upstream and, in fleet mode, Limitador and Redis
/// (stopped in that order when dropped).
pub struct Running {
    pub example: Example,
    pub envoy: Envoy,
    pub mock: MockUpstream,
    pub limitador: Option<Limitador>,
    pub redis: Option<Redis>,
    /// The plugin configuration, as the filter reads it.
    plugin: Json,
}

/// Starts `example` with the module at `wasm`, and prints what runs and what was changed
/// for this machine.
pub fn start(example: Example, wasm: &Path, out: &mut dyn Write) -> Result<Running, HarnessError> {
    let (runs, plugin_text) = what_runs(&example)?;
    let plugin: Json = serde_json::from_str(&plugin_text)
        .map_err(|e| err(format!("the plugin configuration is not JSON: {e}")))?;
    let runs_path = example.dir.join(&example.script.runs);
    say(out, &format!("{}: {}", example.name, example.script.about));

    let fleet_cluster = plugin
        .pointer("/fleet/cluster")
        .and_then(Json::as_str)
        .map(str::to_string);
    let (redis, limitador) = match (&fleet_cluster, &example.script.limits) {
        (None, _) => (None, None),
        (Some(_), None) => {
            return Err(err(format!(
                "{}: the configuration has a fleet block but try.json names no limits file",
                example.name
            )))
        }
        (Some(_), Some(limits)) => {
            let limits_path = example.dir.join(limits);
            let yaml = shipped::read(&limits_path)?;
            let redis = Redis::start()?;
            let limitador = Limitador::start(&redis, &yaml)?;
            say(
                out,
                &format!(
                    "  Redis on {} and the Limitador stand-in on {}, loaded with {}",
                    redis.url(),
                    limitador.base_url(),
                    shown(&limits_path)
                ),
            );
            (Some(redis), Some(limitador))
        }
    };

    let mock =
        MockUpstream::start().map_err(|e| err(format!("cannot start the mock upstream: {e}")))?;
    let config = match runs {
        Runs::Bootstrap(doc) => {
            let dir = TempDir::new("try-validate")?;
            let copy = dir.path().join("bootstrap.yaml");
            let with_module = shipped::with_wasm_path(&doc, wasm);
            let text = serde_norway::to_string(&with_module)
                .map_err(|e| err(format!("cannot write YAML: {e}")))?;
            std::fs::write(&copy, text).map_err(|e| err(format!("cannot write: {e}")))?;
            let validation = validate(&copy)?;
            if !validation.ok {
                return Err(err(format!(
                    "{} fails envoy --mode validate:\n{}",
                    shown(&runs_path),
                    validation.output
                )));
            }
            let fixed: Vec<(&str, u16)> = match (&fleet_cluster, &limitador) {
                (Some(cluster), Some(l)) => vec![(cluster.as_str(), l.port())],
                _ => Vec::new(),
            };
            let template = shipped::loopback_template(&doc, wasm, &fixed)?;
            let clusters: Vec<String> = shipped::cluster_names(&doc)
                .into_iter()
                .map(|name| match &fleet_cluster {
                    Some(fleet) if *fleet == name => format!("{name} -> the Limitador stand-in"),
                    _ => format!("{name} -> the mock LLM upstream"),
                })
                .collect();
            say(
                out,
                &format!(
                    "  runs {} as shipped (envoy --mode validate: ok), except: listener and admin \
                     on 127.0.0.1, clusters {} over plain HTTP, the module built from this tree",
                    shown(&runs_path),
                    clusters.join(", ")
                ),
            );
            EnvoyConfig::new(mock.port(), "").bootstrap_template(template)
        }
        Runs::Plugin(text) => {
            say(
                out,
                &format!(
                    "  runs the plugin configuration of {} in the harness's Envoy bootstrap \
                     (envoy/bootstrap.yaml.tmpl: every route to the mock LLM upstream)",
                    shown(&runs_path)
                ),
            );
            EnvoyConfig::new(mock.port(), text)
        }
    };
    let config = config
        .wasm_path(wasm)
        .concurrency(example.script.workers)
        .component_log_level("wasm:info");
    let envoy = Envoy::start(&config)?;
    say(
        out,
        &format!(
            "  Envoy 1.40 with {} workers: listener {}  admin {}  mock upstream {}",
            example.script.workers,
            envoy.base_url(),
            envoy.admin_url(),
            mock.url()
        ),
    );
    say(out, &format!("  module {}", wasm.display()));
    Ok(Running {
        example,
        envoy,
        mock,
        limitador,
        redis,
        plugin,
    })
}

/// One request sent and its answer.
#[derive(Debug, Clone)]
pub struct Exchange {
    /// Index of the step in the script.
    pub step: usize,
    pub expected: u16,
    /// The README's name for this reply, on the last request of its step.
    pub reply: Option<String>,
    pub response: Response,
}

impl Exchange {
    pub fn as_expected(&self) -> bool {
        self.response.status == self.expected
    }
}

impl Running {
    /// Sends every step's requests in order, printing each with its answer.
    pub fn play(&self, out: &mut dyn Write) -> Result<Vec<Exchange>, HarnessError> {
        let client = self.envoy.client().with_timeout(Duration::from_secs(20));
        let mut exchanges = Vec::new();
        for (index, step) in self.example.script.steps.iter().enumerate() {
            say(out, "");
            say(out, &format!("{}. {}", index + 1, step.say));
            say(out, &format!("   {}", request_line(step)));
            for n in 0..step.times {
                let before = if step.charged {
                    Some(self.charged_so_far(step)?)
                } else {
                    None
                };
                let response = client
                    .send(&request(step))
                    .map_err(|e| err(format!("step {}: {e}", index + 1)))?;
                say(out, &answer_lines(&response, step.expect));
                if let Some(before) = before {
                    self.wait_for_charge(step, before)?;
                }
                let last = n + 1 == step.times;
                exchanges.push(Exchange {
                    step: index,
                    expected: step.expect,
                    reply: if last { step.reply.clone() } else { None },
                    response,
                });
            }
        }
        let differ = exchanges.iter().filter(|e| !e.as_expected()).count();
        say(out, "");
        say(
            out,
            &format!(
                "{} requests, {} reached the upstream (a head at least: docs/clients.md says \
                 when a refused request's head goes upstream); {}",
                exchanges.len(),
                self.mock.request_count(),
                if differ == 0 {
                    "every answer as try.json expects".to_string()
                } else {
                    format!(
                        "{differ} of {} answers differ from try.json (marked !!)",
                        exchanges.len()
                    )
                }
            ),
        );
        Ok(exchanges)
    }

    fn usage_path(&self) -> Result<String, HarnessError> {
        self.plugin
            .pointer("/usage_endpoint/path")
            .and_then(Json::as_str)
            .map(str::to_string)
            .ok_or_else(|| {
                err("a step waits for its charge, but the configuration has no usage endpoint")
            })
    }

    /// What the step's key has been charged so far (tokens plus USD, summed over every
    /// counter the usage endpoint shows it): only compared with itself.
    fn charged_so_far(&self, step: &Step) -> Result<f64, HarnessError> {
        let mut req = Request::get(&self.usage_path()?);
        for (name, value) in &step.headers {
            req = req.header(name, value);
        }
        let response = self
            .envoy
            .client()
            .send(&req)
            .map_err(|e| err(format!("usage endpoint: {e}")))?;
        let counters = response
            .json()
            .and_then(|v| v.get("counters").and_then(Json::as_array).cloned())
            .ok_or_else(|| {
                err(format!(
                    "usage endpoint answered {}: {}",
                    response.status,
                    response.text()
                ))
            })?;
        Ok(counters
            .iter()
            .filter(|c| c.get("kind").and_then(Json::as_str) != Some("requests"))
            .filter_map(|c| c.get("used").and_then(Json::as_f64))
            .sum())
    }

    fn wait_for_charge(&self, step: &Step, before: f64) -> Result<(), HarnessError> {
        let deadline = Instant::now() + CHARGE_TIMEOUT;
        while Instant::now() < deadline {
            if self.charged_so_far(step)? > before {
                return Ok(());
            }
            thread::sleep(Duration::from_millis(50));
        }
        Err(err(format!(
            "the charge of {:?} did not show in the usage endpoint within {CHARGE_TIMEOUT:?}",
            step.say
        )))
    }
}

fn request(step: &Step) -> Request {
    let mut req = Request::new(&step.method, &step.path);
    for (name, value) in &step.headers {
        req = req.header(name, value);
    }
    if let Some(body) = &step.json {
        req = req.json(body);
    }
    req
}

fn request_line(step: &Step) -> String {
    let mut line = format!("{} {}", step.method, step.path);
    for (name, value) in &step.headers {
        line.push_str(&format!("  {name}: {value}"));
    }
    if let Some(body) = &step.json {
        line.push_str(&format!("  {body}"));
    }
    if step.times > 1 {
        line.push_str(&format!("  (x{})", step.times));
    }
    line
}

/// The headers worth showing: retry-after and the quota headers.
fn quota_headers(response: &Response) -> String {
    response
        .headers
        .iter()
        .filter(|(k, _)| {
            k == "retry-after" || k.starts_with("x-ratelimit-") || k.starts_with("x-budget-")
        })
        .map(|(k, v)| format!("{k}: {v}"))
        .collect::<Vec<_>>()
        .join("  ")
}

/// How an answer is printed: status, who answered, the error or the usage table, quota
/// headers; `!!` when the status is not the expected one.
fn answer_lines(response: &Response, expected: u16) -> String {
    let from = if response.header("x-mock-request-id").is_some() {
        "from the upstream"
    } else {
        "answered by the filter"
    };
    let mut lines = match response.error_type() {
        Some(kind) => format!(
            "   -> {} {kind} ({from}): {}",
            response.status,
            response.error_message().unwrap_or_default()
        ),
        None => format!("   -> {} ({from})", response.status),
    };
    if let Some(counters) = response
        .json()
        .and_then(|v| v.get("counters").and_then(Json::as_array).cloned())
    {
        for c in &counters {
            let field = |name: &str| match c.get(name) {
                Some(Json::String(s)) => s.clone(),
                Some(Json::Null) | None => "-".to_string(),
                Some(v) => v.to_string(),
            };
            lines.push_str(&format!(
                "\n      {} {} {} {}: used {} of {}, window ends {}",
                field("owner"),
                field("id"),
                field("kind"),
                field("reset_duration"),
                field("used"),
                field("limit"),
                field("window_end")
            ));
        }
    }
    let quota = quota_headers(response);
    if !quota.is_empty() {
        lines.push_str(&format!("\n      {quota}"));
    }
    if response.status != expected {
        lines.push_str(&format!("\n   !! try.json expects {expected}"));
    }
    lines
}

fn say(out: &mut dyn Write, line: &str) {
    // The output is a terminal or a test's buffer; nothing to do if it is gone.
    let _ = writeln!(out, "{line}");
}
