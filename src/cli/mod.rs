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

/// A command line, understood.
enum Command {
    Check {
        config: String,
    },
    Describe {
        config: String,
        at: Option<String>,
    },
    Explain {
        config: String,
        request: String,
        trace: Option<String>,
    },
    Simulate {
        config: String,
        trace: String,
    },
    Limitador {
        config: String,
    },
    Help,
}

/// Runs the tool on `args` (without the program name); `now` is the clock's time in
/// nanoseconds since the epoch (the default of `--at`).
pub fn run(args: &[String], now: i64) -> Outcome {
    match command(args) {
        Ok(command) => execute(command, now).unwrap_or_else(|failure| Outcome::failure(&failure)),
        Err(message) => Outcome::usage(&message),
    }
}

/// The command `args` give, or what is wrong with them.
fn command(args: &[String]) -> Result<Command, String> {
    let mut positional = Vec::new();
    let mut options: Vec<(&str, String)> = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            name @ ("--at" | "--trace") => {
                let value = args.next().ok_or_else(|| format!("{name} needs a value"))?;
                options.push((name, value.clone()));
            }
            other if other.starts_with("--") => return Err(format!("unknown option {other}")),
            _ => positional.push(arg.clone()),
        }
    }
    let mut option = |name: &str| {
        let at = options.iter().position(|(n, _)| *n == name)?;
        Some(options.remove(at).1)
    };
    let command = match positional.as_slice() {
        [verb, config] if verb == "check" => Command::Check {
            config: config.clone(),
        },
        [verb, config] if verb == "describe" => Command::Describe {
            config: config.clone(),
            at: option("--at"),
        },
        [verb, config, request] if verb == "explain" => Command::Explain {
            config: config.clone(),
            request: request.clone(),
            trace: option("--trace"),
        },
        [verb, config, trace] if verb == "simulate" => Command::Simulate {
            config: config.clone(),
            trace: trace.clone(),
        },
        [verb, config] if verb == "limitador" => Command::Limitador {
            config: config.clone(),
        },
        _ => return Err("unknown verb or wrong arguments".to_string()),
    };
    match options.first() {
        Some((name, _)) => Err(format!("{name} is not an option of this verb")),
        None => Ok(command),
    }
}

/// Reads the command's files and runs its verb.
fn execute(command: Command, now: i64) -> Result<Outcome, Failure> {
    let read = |path: &str| read(path).map_err(Failure::new);
    Ok(match command {
        Command::Check { config } => {
            let answer = tools::check(&read(&config)?);
            let valid = answer.get("valid").and_then(Value::as_bool) == Some(true);
            Outcome::json(&answer, if valid { 0 } else { 1 })
        }
        Command::Describe { config, at } => {
            let at = match at.as_deref().map(tools::parse_time).transpose() {
                Ok(at) => at.unwrap_or(now),
                Err(err) => return Ok(Outcome::usage(&format!("--at: {err}"))),
            };
            Outcome::answer(tools::describe(&read(&config)?, at))
        }
        Command::Explain {
            config,
            request,
            trace,
        } => {
            let trace = trace.as_deref().map(read).transpose()?;
            let answer = tools::explain(&read(&config)?, &read(&request)?, trace.as_deref());
            Outcome::answer(answer)
        }
        Command::Simulate { config, trace } => {
            Outcome::answer(tools::simulate(&read(&config)?, &read(&trace)?))
        }
        Command::Limitador { config } => Outcome {
            stdout: tools::limitador(&read(&config)?)?,
            stderr: String::new(),
            status: 0,
        },
        Command::Help => Outcome {
            stdout: format!("{USAGE}\n"),
            stderr: String::new(),
            status: 0,
        },
    })
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
