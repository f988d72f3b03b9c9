//! Threshold alerts (docs/operating.md, "Threshold alerts"): the charge that first takes a
//! budget or token limit past a configured fraction of its maximum in a window is
//! announced once per Envoy: a warning, the `threshold_crossed` counter, and with a
//! cluster one JSON event posted by the VM's root context.
//!
//! Which charge crossed is known from the counter's own CAS (what it used before and
//! after). "Once" is kept by a second record beside the counter, its alert record: the
//! window it speaks of and a bit per threshold announced in it. A crossing sets its bits by
//! CAS; only the writer that set a bit announces it, so concurrent charges on several
//! workers (or the same threshold crossed again after the counter was lowered) never
//! announce twice in one window.

use serde_json::json;

use crate::admission::rfc3339;
use crate::config::alerts::Alerts;
use crate::config::{Limit, LimitId, LimitKind};
use crate::counter::{CounterError, Counters, Record, MAX_ATTEMPTS};
use crate::money::Money;
use crate::store::SetOutcome;

/// The thresholds (bit `i` for `thresholds_ppm[i]`) of limit `id` that a charge taking
/// its use from `before` to `after` crossed.
pub fn crossed(alerts: &Alerts, id: LimitId, before: u128, after: u128) -> u8 {
    let mut mask = 0u8;
    for (bit, &line) in alerts.lines_of(id).iter().enumerate() {
        if before < line && after >= line {
            mask |= 1u8
                .checked_shl(u32::try_from(bit).unwrap_or(u32::MAX))
                .unwrap_or(0);
        }
    }
    mask
}

/// The alert record's key: the counter's, with a suffix.
pub fn record_key(limit: &Limit) -> Vec<u8> {
    let mut key = Vec::with_capacity(limit.storage_key.len().saturating_add(7));
    key.extend_from_slice(&limit.storage_key);
    key.extend_from_slice(b":alerts");
    key
}

/// An alert record: the window (by its start) and the thresholds announced in it.
fn encode(window_start: i64, announced: u8) -> [u8; 9] {
    let mut out = [0u8; 9];
    let (start, mask) = out.split_at_mut(8);
    start.copy_from_slice(&window_start.to_le_bytes());
    if let Some(byte) = mask.first_mut() {
        *byte = announced;
    }
    out
}

/// What a record announced in the window starting at `window_start` (nothing when it
/// speaks of another window, or cannot be read).
fn announced_in(bytes: &[u8], window_start: i64) -> u8 {
    let Some((start, rest)) = bytes.split_first_chunk::<8>() else {
        return 0;
    };
    match rest {
        [mask] if i64::from_le_bytes(*start) == window_start => *mask,
        _ => 0,
    }
}

/// Marks thresholds `mask` announced for the window starting at `window_start`; returns
/// the ones this caller marked (the ones it must announce).
pub fn claim(
    counters: &mut Counters<'_>,
    key: &[u8],
    window_start: i64,
    mask: u8,
) -> Result<u8, CounterError> {
    for _ in 0..MAX_ATTEMPTS {
        let stored = counters.store().get(key)?;
        let announced = stored
            .as_ref()
            .map_or(0, |(bytes, _)| announced_in(bytes, window_start));
        let mine = mask & !announced;
        if mine == 0 {
            return Ok(0);
        }
        let record = encode(window_start, announced | mine);
        let written = match stored {
            Some((_, cas)) => counters.store().set(key, &record, cas)? == SetOutcome::Written,
            None => counters.create_key(key, &record)?,
        };
        if written {
            return Ok(mine);
        }
        counters.note_conflict();
    }
    Err(CounterError::Contended)
}

/// The event posted for threshold `ppm` of `limit`, whose counter reads `record`.
pub fn event(limit: &Limit, record: &Record, ppm: u32) -> Vec<u8> {
    let amount = |value: u128| match limit.kind {
        LimitKind::Budget => json!(Money::from_femto(value).as_usd_f64()),
        LimitKind::Tokens | LimitKind::Requests => json!(u64::try_from(value).unwrap_or(u64::MAX)),
    };
    let body = json!({
        "owner": limit.owner_kind.as_str(),
        "id": limit.owner_id,
        "limit": limit.kind.as_str(),
        "reset_duration": &*limit.duration_text,
        "threshold": f64::from(ppm) / 1e6,
        "max": amount(limit.max),
        "used": amount(record.used),
        "window_start": rfc3339(record.window_start),
        "window_end": rfc3339(record.window_end),
    });
    serde_json::to_vec(&body).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::alerts::Alerts;
    use crate::config::parse;
    use crate::store::{CasStore, MemoryStore};

    /// Thresholds 50%, 80%, 95% of one limit of maximum `max`.
    fn alerts(max: u128) -> Alerts {
        let mut alerts = Alerts {
            thresholds_ppm: vec![500_000, 800_000, 950_000],
            post: None,
            lines: Vec::new(),
        };
        let policy = parse(
            r#"{"virtual_keys":[{"id":"k","value":"sk",
                "rate_limit":{"token_max_limit":7,"token_reset_duration":"1d"}}]}"#,
        )
        .unwrap();
        let mut limits = policy.limits;
        if let Some(limit) = limits.first_mut() {
            limit.max = max;
        }
        alerts.set_lines(&limits);
        alerts
    }

    #[test]
    fn a_charge_crosses_the_thresholds_between_its_before_and_after() {
        let a = alerts(1000);
        assert_eq!(crossed(&a, 0, 0, 499), 0);
        assert_eq!(crossed(&a, 0, 499, 500), 0b001);
        assert_eq!(crossed(&a, 0, 500, 799), 0, "0.5 was crossed before");
        assert_eq!(
            crossed(&a, 0, 100, 2000),
            0b111,
            "one charge, three thresholds"
        );
        assert_eq!(crossed(&a, 0, 949, 950), 0b100);
        assert_eq!(
            crossed(&a, 1, 0, 2000),
            0,
            "an unknown limit crosses nothing"
        );
        // Exact on femto-dollars: $10 max, 80% is $8 to the femto-dollar.
        let max = 10 * 1_000_000_000_000_000u128;
        let eight = 8 * 1_000_000_000_000_000u128;
        let a = alerts(max);
        assert_eq!(crossed(&a, 0, eight - 1, eight), 0b010);
        assert_eq!(crossed(&a, 0, eight, eight + 1), 0);
        // A fraction of a unit rounds up: 50% of 7 is reached at 4.
        let a = alerts(7);
        assert_eq!(crossed(&a, 0, 3, 4), 0b001);
    }

    #[test]
    fn each_threshold_is_claimed_once_per_window() {
        let policy = parse(r#"{"pricing":{},"virtual_keys":[{"id":"k","value":"sk"}]}"#).unwrap();
        let store = MemoryStore::default();
        let mut counters = Counters::new(&store, &policy.guard_key);
        let key = b"governance:x:alerts".to_vec();
        assert_eq!(claim(&mut counters, &key, 100, 0b011).unwrap(), 0b011);
        assert_eq!(
            claim(&mut counters, &key, 100, 0b011).unwrap(),
            0,
            "already announced"
        );
        assert_eq!(claim(&mut counters, &key, 100, 0b110).unwrap(), 0b100);
        // A new window announces again.
        assert_eq!(claim(&mut counters, &key, 200, 0b001).unwrap(), 0b001);
        assert_eq!(claim(&mut counters, &key, 200, 0b001).unwrap(), 0);
        // A record that cannot be read is taken as nothing announced, and rewritten.
        store.set(&key, b"junk", 0).unwrap();
        assert_eq!(claim(&mut counters, &key, 200, 0b001).unwrap(), 0b001);
    }
}
