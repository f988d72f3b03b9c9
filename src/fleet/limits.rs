//! The Limitador limits a configuration expects: what the project's limits-file command
//! writes, and what the filter compares with `GET /limits/{namespace}` before it trusts an
//! owner's counters (a call that matches no limit is answered 200, so a limit Limitador does
//! not hold would be an open door).

use serde::{Deserialize, Serialize};

use super::names;
use crate::config::{Limit, LimitKind};

/// One limit as Limitador's limits file and `GET /limits/{namespace}` write it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitadorLimit {
    pub namespace: String,
    pub max_value: u64,
    pub seconds: u64,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub conditions: Vec<String>,
    #[serde(default)]
    pub variables: Vec<String>,
}

/// The condition that selects a limit by the `limit` value of a call.
pub fn condition(limit_id: &str) -> String {
    format!("descriptors[0].limit == '{limit_id}'")
}

/// The variable that keys a limit's counters by window.
pub const WINDOW_VARIABLE: &str = "descriptors[0].window";

/// The variable that keys a `per_value` template's counters by value (its hex SHA-256):
/// unbounded in Limitador, where the filter's table of slots is not needed.
pub const VALUE_VARIABLE: &str = "descriptors[0].value";

/// The Limitador limit for `limit`, in namespace `namespace`.
pub fn expected(limit: &Limit, namespace: &str) -> LimitadorLimit {
    let what = match limit.kind {
        LimitKind::Budget => "budget (nano-USD)",
        LimitKind::Requests => "requests",
        LimitKind::Tokens => "tokens",
    };
    let alignment = if limit.rule.calendar_aligned() {
        format!(
            "calendar {} in {}",
            limit.rule.duration(),
            limit.rule.zone()
        )
    } else {
        format!("rolling {}", limit.rule.duration())
    };
    LimitadorLimit {
        namespace: namespace.to_string(),
        max_value: names::max_value(limit),
        seconds: names::seconds(limit),
        name: Some(format!(
            "{} {what}, {alignment}",
            crate::admission::owner_label(limit)
        )),
        conditions: vec![condition(&names::limit_id(limit))],
        variables: if limit.per_value.is_some() {
            vec![WINDOW_VARIABLE.to_string(), VALUE_VARIABLE.to_string()]
        } else {
            vec![WINDOW_VARIABLE.to_string()]
        },
    }
}

/// How a limit Limitador holds differs from the expected one (`None`: it matches). Limits
/// are matched by their conditions; the name is only a label and is not compared.
pub fn difference(expected: &LimitadorLimit, held: &[LimitadorLimit]) -> Option<String> {
    let mut wanted = expected.conditions.clone();
    wanted.sort();
    let Some(found) = held.iter().find(|l| {
        let mut conditions = l.conditions.clone();
        conditions.sort();
        conditions == wanted
    }) else {
        return Some("missing".to_string());
    };
    let mut differences = Vec::new();
    if found.max_value != expected.max_value {
        differences.push(format!(
            "max_value {} (expected {})",
            found.max_value, expected.max_value
        ));
    }
    if found.seconds != expected.seconds {
        differences.push(format!(
            "seconds {} (expected {})",
            found.seconds, expected.seconds
        ));
    }
    if found.variables != expected.variables {
        differences.push(format!(
            "variables {:?} (expected {:?})",
            found.variables, expected.variables
        ));
    }
    (!differences.is_empty()).then(|| differences.join(", "))
}
