//! `alerts` (docs/operating.md, "Threshold alerts"): the fractions of a budget or token
//! limit whose first crossing in a window is announced, and where events are posted.

use super::wire::WireAlerts;
use super::ConfigError;

/// At most this many thresholds: each is one bit of a limit's alert record.
pub const MAX_THRESHOLDS: usize = 8;

/// How long one post may take unless `alerts.timeout_ms` says.
const DEFAULT_TIMEOUT_MS: u32 = 2000;

/// Parts per million of a limit's maximum (0.8 -> 800,000): thresholds compared exactly.
pub const PPM: u128 = 1_000_000;

/// The compiled `alerts` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alerts {
    /// Ascending, each in (0, 1] as parts per million of the limit's maximum.
    pub thresholds_ppm: Vec<u32>,
    /// Where events are posted; `None`: logged and counted only.
    pub post: Option<AlertPost>,
    /// For limit `id` and threshold `i`, at `id * thresholds + i`: the least amount used
    /// that reaches the threshold, `ceil(max × ppm / 1e6)`, computed once per
    /// configuration so a charge only compares.
    pub lines: Vec<u128>,
}

impl Alerts {
    /// Computes [`Alerts::lines`] for the policy's limits.
    pub fn set_lines(&mut self, limits: &[super::Limit]) {
        self.lines = limits
            .iter()
            .flat_map(|limit| {
                self.thresholds_ppm
                    .iter()
                    .map(move |&ppm| limit.max.saturating_mul(u128::from(ppm)).div_ceil(PPM))
            })
            .collect();
    }

    /// The lines of limit `id` (empty for an unknown one).
    pub fn lines_of(&self, id: usize) -> &[u128] {
        let n = self.thresholds_ppm.len();
        id.checked_mul(n)
            .and_then(|start| self.lines.get(start..start.checked_add(n)?))
            .unwrap_or(&[])
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertPost {
    /// An Envoy cluster name.
    pub cluster: String,
    /// The request path, starting with `/`.
    pub path: String,
    /// How long one post may take before it is retried.
    pub timeout_ms: u32,
}

pub fn compile_alerts(wire: &WireAlerts) -> Result<Alerts, ConfigError> {
    if wire.thresholds.is_empty() || wire.thresholds.len() > MAX_THRESHOLDS {
        return Err(ConfigError::new(
            "alerts.thresholds",
            format!("must list 1 to {MAX_THRESHOLDS} fractions"),
        ));
    }
    let mut thresholds_ppm = Vec::with_capacity(wire.thresholds.len());
    for (i, &fraction) in wire.thresholds.iter().enumerate() {
        if !(fraction > 0.0 && fraction <= 1.0) {
            return Err(ConfigError::new(
                format!("alerts.thresholds[{i}]"),
                "must be a fraction of the limit above 0 and at most 1 (0.8 is 80%)",
            ));
        }
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "fraction is in (0, 1], so the product is in (0, 1e6]"
        )]
        let ppm = (fraction * 1e6).round() as u32;
        if thresholds_ppm.last().is_some_and(|&last| last >= ppm) {
            return Err(ConfigError::new(
                format!("alerts.thresholds[{i}]"),
                "thresholds must be in ascending order, each different",
            ));
        }
        thresholds_ppm.push(ppm.max(1));
    }
    let post = match (&wire.cluster, &wire.path) {
        (None, None) if wire.timeout_ms.is_none() => None,
        (None, path) => {
            let field = if path.is_some() { "path" } else { "timeout_ms" };
            return Err(ConfigError::new(
                format!("alerts.{field}"),
                "needs alerts.cluster, the Envoy cluster to post events to",
            ));
        }
        (Some(cluster), path) => {
            if cluster.is_empty() {
                return Err(ConfigError::new("alerts.cluster", "must not be empty"));
            }
            let path = path.clone().unwrap_or_else(|| "/".to_string());
            if !path.starts_with('/') {
                return Err(ConfigError::new("alerts.path", "must start with '/'"));
            }
            let timeout_ms = wire.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS);
            if timeout_ms == 0 || timeout_ms > 60_000 {
                return Err(ConfigError::new(
                    "alerts.timeout_ms",
                    "must be 1 to 60000 milliseconds",
                ));
            }
            Some(AlertPost {
                cluster: cluster.clone(),
                path,
                timeout_ms,
            })
        }
    };
    Ok(Alerts {
        thresholds_ppm,
        post,
        lines: Vec::new(),
    })
}
