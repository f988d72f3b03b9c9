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
