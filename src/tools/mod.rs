//! The operators' verbs over the policy core, shared by the command-line tool (`crate::cli`)
//! and the JavaScript package (`crate::js`): each takes text (a configuration, a request, a
//! trace of requests) and answers JSON, the same through both. They read configurations
//! with the filter's own code and decide requests with the filter's own flow, run over the
//! in-memory store that keeps Envoy's shared-data rules, so they cannot disagree with it
//! (docs/tools.md).
//!
//! - [`check`]: every problem of a configuration with its JSON path;
//! - [`describe`]: the hierarchy of customers, teams and keys, each limit's window at a time;
//! - [`explain`]: what the filter would do with one request at a time, and why;
//! - [`simulate`]: a trace of requests replayed: admissions, refusals, spend, exhaustion;
//! - [`limitador`]: Limitador's limits file for fleet mode.

mod check;
mod describe;
mod explain;
mod limitador;
mod replay;
mod report;
mod request;
mod simulate;

pub use check::check;
pub use describe::describe;
pub use explain::explain;
pub use limitador::limitador;
pub use request::{format_time, parse_time};
pub use simulate::simulate;

use serde::Serialize;
use serde_json::Value;

use crate::config::{self, ConfigError, Policy};

/// A verb's answer: its JSON result, or why there is none.
pub type Answer = Result<Value, Failure>;

/// Why a verb could not answer: a one-line message and, when the configuration is the
/// reason, every problem it has.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Failure {
    pub error: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<Problem>,
}

impl Failure {
    pub fn new(error: impl Into<String>) -> Self {
        Self {
            error: error.into(),
            problems: Vec::new(),
        }
    }

    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// A configuration problem, as every verb reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The JSON path (`virtual_keys[2].budgets[0].reset_duration`); empty for the document.
    pub path: String,
    pub message: String,
}

impl From<&ConfigError> for Problem {
    fn from(err: &ConfigError) -> Self {
        Self {
            path: err.path.clone(),
            message: err.message.clone(),
        }
    }
}

/// Sets `field` of a JSON object (anything else is left as it is).
fn set(object: &mut Value, field: &str, value: Value) {
    if let Value::Object(fields) = object {
        fields.insert(field.to_string(), value);
    }
}

/// The policy of a valid configuration, or a failure listing every problem it has.
fn policy_of(text: &str) -> Result<Policy, Failure> {
    config::parse(text).map_err(|first| Failure {
        error: format!("invalid configuration: {first}"),
        problems: config::problems(text).iter().map(Problem::from).collect(),
    })
}

#[cfg(test)]
mod tests;
