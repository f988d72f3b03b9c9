//! `rate_limit.max_in_flight` and `in_flight_timeout` (docs/configuration.md): checked and
//! given their shared-data key.

use super::compile::key_of_parts;
use super::wire::WireRateLimit;
use super::{ConfigError, OwnerKind};
use crate::duration::LimitDuration;
use crate::in_flight::InFlightCap;

/// How long a slot is kept when its request never ends, unless configured.
pub const DEFAULT_IN_FLIGHT_TIMEOUT: &str = "10m";

/// The owner's cap, `None` when its rate limit has none. `path` is the rate limit's.
pub fn compile_cap(
    namespace: &str,
    owner_kind: OwnerKind,
    owner_id: &str,
    rate: &WireRateLimit,
    path: &str,
) -> Result<Option<InFlightCap>, ConfigError> {
    let max = match (rate.max_in_flight, &rate.in_flight_timeout) {
        (None, None) => return Ok(None),
        (None, Some(_)) => {
            return Err(ConfigError::new(
                format!("{path}.in_flight_timeout"),
                "is only meaningful with max_in_flight",
            ))
        }
        (Some(0), _) => {
            return Err(ConfigError::new(
                format!("{path}.max_in_flight"),
                "must be > 0",
            ))
        }
        (Some(max), _) => max,
    };
    let timeout_text = rate
        .in_flight_timeout
        .as_deref()
        .unwrap_or(DEFAULT_IN_FLIGHT_TIMEOUT);
    let timeout_path = format!("{path}.in_flight_timeout");
    let timeout = LimitDuration::parse(timeout_text)
        .map_err(|err| ConfigError::new(&timeout_path, err.to_string()))?;
    let Some(timeout_nanos) = timeout.fixed_nanos() else {
        return Err(ConfigError::new(
            timeout_path,
            format!("{timeout_text:?} is not a fixed length: use s, m, h, d or w"),
        ));
    };
    let timeout_key = timeout.to_string();
    let storage_key = key_of_parts(&[
        namespace,
        owner_kind.as_str(),
        owner_id,
        "in_flight",
        timeout_key.as_str(),
    ]);
    Ok(Some(InFlightCap {
        owner_kind,
        owner_id: owner_id.to_string(),
        max,
        timeout_nanos,
        timeout_text: timeout_text.into(),
        storage_key,
    }))
}

#[cfg(test)]
mod tests {
    use crate::config::parse;

    fn error(config: &str) -> String {
        parse(config)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn problems_name_their_path() {
        assert_eq!(
            error(r#"{"virtual_keys":[{"id":"k","value":"s","rate_limit":{"max_in_flight":0}}]}"#),
            "virtual_keys[0].rate_limit.max_in_flight: must be > 0"
        );
        assert_eq!(
            error(
                r#"{"teams":[{"id":"t","rate_limit":{"max_in_flight":1,"in_flight_timeout":"1M"}}]}"#
            ),
            r#"teams[0].rate_limit.in_flight_timeout: "1M" is not a fixed length: use s, m, h, d or w"#
        );
        assert_eq!(
            error(
                r#"{"virtual_keys":[{"id":"k","value":"s","provider_configs":[{"provider":"openai",
                    "rate_limit":{"in_flight_timeout":"1m"}}]}]}"#
            ),
            "virtual_keys[0].provider_configs[0].rate_limit.in_flight_timeout: is only meaningful \
             with max_in_flight"
        );
    }

    #[test]
    fn the_timeout_defaults_to_ten_minutes_and_names_the_counter() {
        let policy = parse(
            r#"{"customers":[{"id":"c","rate_limit":{"max_in_flight":3}}],
                "teams":[{"id":"t","rate_limit":{"max_in_flight":3,"in_flight_timeout":"20m"}}]}"#,
        )
        .unwrap();
        let [customer, team] = [&policy.in_flight[0], &policy.in_flight[1]];
        assert_eq!(customer.timeout_nanos, 600 * 1_000_000_000);
        assert_eq!(&*customer.timeout_text, "10m");
        assert_eq!(policy.customers[0].in_flight, Some(0));
        assert_eq!(policy.teams[0].owner.in_flight, Some(1));
        assert!(team
            .storage_key
            .starts_with(b"governance:team:t:in_flight:20m#"));
    }
}
