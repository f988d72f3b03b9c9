//! `limitador`: Limitador's limits file (YAML) for fleet mode (docs/fleet.md), written
//! from the filter's configuration so that one configuration stays the source of truth.

use super::{policy_of, Failure};
use crate::fleet;

/// The limits file of a configuration: every limit of every owner, in the namespaces,
/// windows and units the filter uses.
pub fn limitador(config_text: &str) -> Result<String, Failure> {
    let policy = policy_of(config_text)?;
    let prefix = policy
        .fleet
        .as_ref()
        .map_or_else(|| policy.namespace.clone(), |f| f.prefix.clone());
    let limits = fleet::expected_limits(&policy, &prefix);
    let yaml = serde_norway::to_string(&limits)
        .map_err(|err| Failure::new(format!("cannot write YAML: {err}")))?;
    Ok(format!(
        "# Limitador limits for fleet mode, written by governance-cli from the filter's\n\
         # configuration: regenerate it whenever that configuration changes.\n{yaml}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limits_file_holds_every_limit_in_the_filters_names() {
        let config = r#"{"namespace":"gw","fleet":{"cluster":"limitador"},
            "customers":[{"id":"acme","budgets":[{"max_limit":2000,"reset_duration":"1M",
                "calendar_aligned":true,"timezone":"America/New_York"}]}],
            "virtual_keys":[{"id":"k1","value":"s","customer_id":"acme",
                "rate_limit":{"request_max_limit":60,"request_reset_duration":"1m"},
                "provider_configs":[{"provider":"openai","rate_limit":{"token_max_limit":1000,"token_reset_duration":"1h"}}]}]}"#;
        let yaml = limitador(config).unwrap();
        let limits: Vec<fleet::limits::LimitadorLimit> =
            serde_norway::from_str(yaml.split_once('\n').unwrap().1).unwrap();
        let summary: Vec<(String, u64, u64, Vec<String>)> = limits
            .iter()
            .map(|l| {
                (
                    l.namespace.clone(),
                    l.max_value,
                    l.seconds,
                    l.conditions.clone(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                (
                    "gw:customer:acme".to_string(),
                    2_000_000_000_000,
                    (31 * 24 + 24) * 3600,
                    vec!["descriptors[0].limit == 'budget:1M:cal@America/New_York'".to_string()]
                ),
                (
                    "gw:vk:k1".to_string(),
                    60,
                    60,
                    vec!["descriptors[0].limit == 'requests:1m:rolling'".to_string()]
                ),
                (
                    "gw:provider:k1:openai".to_string(),
                    1000,
                    3600,
                    vec!["descriptors[0].limit == 'tokens:1h:rolling'".to_string()]
                ),
            ]
        );
        assert!(limits
            .iter()
            .all(|l| l.variables == ["descriptors[0].window"]));
    }

    #[test]
    fn a_bad_configuration_names_its_path() {
        let err = limitador(r#"{"virtual_keys":[{"id":"k","value":"s","budgets":[{"max_limit":1,"reset_duration":"5x"}]}]}"#)
            .unwrap_err();
        assert!(
            err.error
                .contains("virtual_keys[0].budgets[0].reset_duration"),
            "{err:?}"
        );
        assert_eq!(
            err.problems[0].path,
            "virtual_keys[0].budgets[0].reset_duration"
        );
    }
}
