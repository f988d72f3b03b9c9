//! `check`: a configuration's every problem, each with its JSON path.

use serde_json::{json, Value};

use super::{set, Problem};
use crate::config::{self, Mode};

/// `{"valid": bool, "problems": [{"path", "message"}...]}` in the order the filter meets
/// them (the first is the line the filter logs when it refuses the configuration); a valid
/// configuration also gets a `summary` of what it defines.
pub fn check(config_text: &str) -> Value {
    let problems = config::problems(config_text);
    let listed: Vec<Problem> = problems.iter().map(Problem::from).collect();
    let mut answer = json!({ "valid": problems.is_empty(), "problems": listed });
    if let (true, Ok(policy)) = (problems.is_empty(), config::parse(config_text)) {
        set(
            &mut answer,
            "summary",
            json!({
            "namespace": policy.namespace,
            "mode": match policy.mode { Mode::Enforce => "enforce", Mode::Shadow => "shadow" },
            "fleet": policy.fleet.is_some(),
            "customers": policy.customers.len(),
            "teams": policy.teams.len(),
            "virtual_keys": policy.keys.len(),
            "limits": policy.limits.len(),
            }),
        );
    }
    answer
}
