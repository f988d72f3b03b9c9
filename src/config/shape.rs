//! Where the configuration must hold JSON objects. serde's derived structs also accept an
//! array of their fields in order (`["x","shadow"]` would read as a namespace and a mode),
//! which an operator never means; this walk refuses that before serde sees the value.

use serde_json::Value;

use super::ConfigError;

/// Fails on the first place where an object is required and something else stands, outside
/// the owners' entries (see [`require_owner_objects`]).
pub fn require_objects(root: &Value) -> Result<(), ConfigError> {
    object(root, "")?;
    for field in ["usage_endpoint", "reservation"] {
        if let Some(value) = root.get(field).filter(|v| !v.is_null()) {
            object(value, field)?;
        }
    }
    if let Some(Value::Object(prices)) = root.get("pricing") {
        for (name, entry) in prices {
            object(entry, &super::prices::entry_path(name))?;
        }
    }
    Ok(())
}

/// One entry of `customers`, `teams` or `virtual_keys` (at `path`), its limits and its
/// provider configs.
pub fn require_owner_objects(owner: &Value, path: &str) -> Result<(), ConfigError> {
    owned_limits(owner, path)?;
    for (j, config) in items(owner.get("provider_configs")) {
        owned_limits(config, &format!("{path}.provider_configs[{j}]"))?;
    }
    for (j, config) in items(owner.get("model_configs")) {
        owned_limits(config, &format!("{path}.model_configs[{j}]"))?;
    }
    if let Some(per_value) = owner.get("per_value").filter(|v| !v.is_null()) {
        owned_limits(per_value, &format!("{path}.per_value"))?;
    }
    Ok(())
}

/// An owner (or provider config) and its `budgets` and `rate_limit`.
fn owned_limits(owner: &Value, path: &str) -> Result<(), ConfigError> {
    object(owner, path)?;
    for (i, budget) in items(owner.get("budgets")) {
        object(budget, &format!("{path}.budgets[{i}]"))?;
    }
    if let Some(rate) = owner.get("rate_limit").filter(|v| !v.is_null()) {
        object(rate, &format!("{path}.rate_limit"))?;
    }
    Ok(())
}

fn items(value: Option<&Value>) -> impl Iterator<Item = (usize, &Value)> {
    value
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
}

fn object(value: &Value, path: &str) -> Result<(), ConfigError> {
    if value.is_object() {
        Ok(())
    } else {
        let what = if path.is_empty() {
            "the configuration"
        } else {
            "it"
        };
        Err(ConfigError::new(
            path,
            format!("{what} must be a JSON object"),
        ))
    }
}
