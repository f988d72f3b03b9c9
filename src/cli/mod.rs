//! The operators' command-line tool, `governance-cli`: the verbs of `crate::tools` (the
//! policy core outside Envoy, reading configurations with the filter's own code) on files
//! or standard input, JSON on standard output (docs/tools.md). The limits file of fleet mode
//! (docs/fleet.md) is YAML, as Limitador reads it.

use std::io::Write;

use serde_json::Value;

use crate::tools::{self, Failure};

const USAGE: &str = "\
usage: governance-cli <verb> <arguments>   (a file may be `-` for standard input)
  check <config.json>                          every problem with its JSON path; exit 1 when invalid
  describe <config.json> [--at <time>]         owners, limits and the window each is in (default: now)
  explain <config.json> <request.json> [--trace <trace.jsonl>]
                                               what the filter would do with the request, and why
  simulate <config.json> <trace.jsonl>         replays requests: admissions, refusals, spend, exhaustion
  limitador <config.json>                      Limitador's limits file (YAML) for fleet mode
times are RFC 3339 (2026-03-02T09:30:00Z)";

/// What the tool prints and its exit status: 0 done, 1 the input is invalid (the answer
/// says why), 2 the command line is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub stdout: String,
    pub stderr: String,
    pub status: u8,
}

impl Outcome {
    fn json(value: &Value, status: u8) -> Self {
        let text = serde_json::to_string_pretty(value).unwrap_or_default();
        Self {
            stdout: format!("{text}\n"),
            stderr: String::new(),
            status,
        }
    }

    fn answer(answer: tools::Answer) -> Self {
        match answer {
            Ok(value) => Self::json(&value, 0),
            Err(failure) => Self::failure(&failure),
        }
    }

    fn failure(failure: &Failure) -> Self {
        let mut outcome = Self::json(&failure.to_json(), 1);
        outcome.stderr = format!("{}\n", failure.error);
        outcome
    }

    fn usage(message: &str) -> Self {
        Self {
            stdout: String::new(),
            stderr: format!("{message}\n{USAGE}\n"),
            status: 2,
        }
    }
}

/// Runs the tool on `args` (without the program name); `now` is the clock's time in
/// nanoseconds since the epoch (the default of `--at`).
pub fn run(args: &[String], now: i64) -> Outcome {
    let (positional, options) = match split_options(args) {
        Ok(split) => split,
        Err(message) => return Outcome::usage(&message),
    };
    let option = |name: &str| {
        options
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    let known = |allowed: &[&str]| options.iter().all(|(n, _)| allowed.contains(&n.as_str()));
    let inputs = |paths: &[&String]| -> Result<Vec<String>, Outcome> {
        paths
            .iter()
            .map(|path| read(path))
            .collect::<Result<_, _>>()
            .map_err(|err| Outcome::failure(&Failure::new(err)))
    };
    let positional: Vec<&String> = positional.iter().collect();
    match positional.as_slice() {
        [verb, config] if verb.as_str() == "check" && known(&[]) => match inputs(&[config]) {
            Ok(texts) => {
                let answer = tools::check(texts.first().map_or("", String::as_str));
                let valid = answer.get("valid").and_then(Value::as_bool) == Some(true);
                Outcome::json(&answer, if valid { 0 } else { 1 })
            }
            Err(outcome) => outcome,
        },
        [verb, config] if verb.as_str() == "describe" && known(&["--at"]) => {
            let at = match option("--at").map(tools::parse_time).transpose() {
                Ok(at) => at.unwrap_or(now),
                Err(err) => return Outcome::usage(&format!("--at: {err}")),
            };
            match inputs(&[config]) {
                Ok(texts) => Outcome::answer(tools::describe(first(&texts), at)),
                Err(outcome) => outcome,
            }
        }
        [verb, config, request] if verb.as_str() == "explain" && known(&["--trace"]) => {
            let trace = match option("--trace").map(read).transpose() {
                Ok(trace) => trace,
                Err(err) => return Outcome::failure(&Failure::new(err)),
            };
            match inputs(&[config, request]) {
                Ok(texts) => Outcome::answer(tools::explain(
                    first(&texts),
                    texts.get(1).map_or("", String::as_str),
                    trace.as_deref(),
                )),
                Err(outcome) => outcome,
            }
        }
        [verb, config, trace] if verb.as_str() == "simulate" && known(&[]) => {
            match inputs(&[config, trace]) {
                Ok(texts) => Outcome::answer(tools::simulate(
                    first(&texts),
                    texts.get(1).map_or("", String::as_str),
                )),
                Err(outcome) => outcome,
            }
        }
        [verb, config] if verb.as_str() == "limitador" && known(&[]) => match inputs(&[config]) {
            Ok(texts) => match tools::limitador(first(&texts)) {
                Ok(yaml) => Outcome {
                    stdout: yaml,
                    stderr: String::new(),
                    status: 0,
                },
                Err(failure) => Outcome::failure(&failure),
            },
            Err(outcome) => outcome,
        },
        [flag] if flag.as_str() == "-h" || flag.as_str() == "--help" => Outcome {
            stdout: format!("{USAGE}\n"),
            stderr: String::new(),
            status: 0,
        },
        _ => Outcome::usage("unknown verb or wrong arguments"),
    }
}

fn first(texts: &[String]) -> &str {
    texts.first().map_or("", String::as_str)
}

/// `--name value` pairs.
type Options = Vec<(String, String)>;

/// Positional arguments, and `--name value` options.
fn split_options(args: &[String]) -> Result<(Vec<String>, Options), String> {
    let mut positional = Vec::new();
    let mut options = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        if arg.starts_with("--") && arg != "--help" {
            let value = args.next().ok_or_else(|| format!("{arg} needs a value"))?;
            options.push((arg.clone(), value.clone()));
        } else {
            positional.push(arg.clone());
        }
    }
    Ok((positional, options))
}

fn read(path: &str) -> Result<String, String> {
    if path == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
            .map_err(|err| format!("cannot read standard input: {err}"))?;
        return Ok(text);
    }
    std::fs::read_to_string(path).map_err(|err| format!("cannot read {path}: {err}"))
}

/// The process: prints the outcome, exits with its status.
pub fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .and_then(|since| i64::try_from(since.as_nanos()).ok())
        .unwrap_or(0);
    let outcome = run(&args, now);
    let _ = std::io::stdout().write_all(outcome.stdout.as_bytes());
    let _ = std::io::stderr().write_all(outcome.stderr.as_bytes());
    std::process::ExitCode::from(outcome.status)
}
#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|arg| arg.to_string()).collect()
    }

    fn write(name: &str, text: &str) -> String {
        let dir = std::env::temp_dir().join(format!("governance-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path.to_string_lossy().into_owned()
    }

    #[test]
    fn the_exit_status_says_whether_the_input_was_valid() {
        let good = write("good.json", r#"{"virtual_keys":[{"id":"k","value":"s"}]}"#);
        let bad = write("bad.json", r#"{"virtual_keys":[{"id":"k"}]}"#);
        let checked = run(&args(&["check", &good]), 0);
        assert_eq!(checked.status, 0);
        let answer: Value = serde_json::from_str(&checked.stdout).unwrap();
        assert_eq!(answer["valid"], true);
        let checked = run(&args(&["check", &bad]), 0);
        assert_eq!(checked.status, 1);
        let answer: Value = serde_json::from_str(&checked.stdout).unwrap();
        assert_eq!(answer["problems"][0]["path"], "virtual_keys[0]");
        // Another verb on an invalid configuration: the failure as JSON, its line on stderr.
        let failed = run(&args(&["describe", &bad]), 0);
        assert_eq!(failed.status, 1);
        assert_eq!(
            failed.stderr,
            "invalid configuration: virtual_keys[0]: needs `value` or `value_sha256`\n"
        );
        let missing = run(&args(&["check", "/nonexistent/config.json"]), 0);
        assert_eq!(missing.status, 1);
        assert!(missing
            .stderr
            .starts_with("cannot read /nonexistent/config.json"));
    }

    #[test]
    fn describe_defaults_to_the_clock_and_takes_another_time() {
        let config = write(
            "describe.json",
            r#"{"virtual_keys":[{"id":"k","value":"s"}]}"#,
        );
        let now = tools::parse_time("2026-03-02T09:30:00Z").unwrap();
        let at_now: Value =
            serde_json::from_str(&run(&args(&["describe", &config]), now).stdout).unwrap();
        assert_eq!(at_now["at"], "2026-03-02T09:30:00Z");
        let later = run(
            &args(&["describe", &config, "--at", "2026-12-24T18:00:00+01:00"]),
            now,
        );
        let later: Value = serde_json::from_str(&later.stdout).unwrap();
        assert_eq!(later["at"], "2026-12-24T17:00:00Z");
    }

    #[test]
    fn a_wrong_command_line_is_status_2_with_the_usage() {
        for wrong in [
            &["frobnicate"][..],
            &["check"],
            &["check", "a", "b"],
            &["describe", "c", "--at"],
            &["check", "c", "--trace", "t"],
        ] {
            let outcome = run(&args(wrong), 0);
            assert_eq!(outcome.status, 2, "{wrong:?}");
            assert!(
                outcome.stderr.contains("usage: governance-cli"),
                "{wrong:?}"
            );
        }
        let help = run(&args(&["--help"]), 0);
        assert_eq!((help.status, help.stdout.contains("simulate")), (0, true));
    }
}
