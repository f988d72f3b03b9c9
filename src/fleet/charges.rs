//! Charges after the response: what is reported to Limitador, and how a worker's root
//! context retries what did not arrive.
//!
//! A stream hands its reports to its VM's root context (through a shared queue, so a charge
//! survives the stream: a client that abandons a stream is still charged). The root sends
//! each one and retries failures with exponential backoff; a report still undelivered after
//! [`MAX_ATTEMPTS`] is logged with its namespace, limit, window and amount, and counted.
//! Reports are never refused by Limitador, so a failure is only ever the network or the
//! server.

use super::names;
use super::protocol::{self, Call, Operation};
use super::FleetPolicy;
use crate::config::{LimitId, Policy};
use crate::window::WindowError;

/// Attempts of one report before it is given up (about two and a half minutes in all).
pub const MAX_ATTEMPTS: u32 = 12;
/// The first retry's delay; each next one doubles, up to [`MAX_BACKOFF_NANOS`].
const FIRST_BACKOFF_NANOS: i64 = 200_000_000;
const MAX_BACKOFF_NANOS: i64 = 30_000_000_000;
/// Reports a worker keeps waiting for a retry; beyond, new failures are given up at once.
pub const MAX_PENDING: usize = 10_000;

/// The report of `amount` (the filter's units) on `limit`, in the window of `now`.
pub fn report(
    policy: &Policy,
    fleet: &FleetPolicy,
    limit: LimitId,
    value: Option<&str>,
    units: u64,
    now: i64,
) -> Result<Option<Call>, WindowError> {
    let (Some(config), Some(named)) = (policy.limits.get(limit), fleet.limits.get(limit)) else {
        return Ok(None);
    };
    if units == 0 {
        return Ok(None);
    }
    let (label, _) = names::window_label(config, now)?;
    Ok(Some(protocol::counter_call(
        Operation::Report,
        &named.namespace,
        &named.limit_id,
        &label,
        value,
        units,
    )))
}

/// A report waiting in a root context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// The `/report` body.
    pub body: Vec<u8>,
    /// Attempts made so far.
    pub attempts: u32,
    /// When to send it next (nanoseconds).
    pub due: i64,
}

/// What to do after an attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterFailure {
    RetryAt(i64),
    GiveUp,
}

/// The retry schedule: after attempt `attempts` failed at `now`.
pub fn after_failure(attempts: u32, now: i64) -> AfterFailure {
    if attempts >= MAX_ATTEMPTS {
        return AfterFailure::GiveUp;
    }
    let doublings = attempts.saturating_sub(1).min(20);
    let delay = FIRST_BACKOFF_NANOS
        .saturating_mul(1i64 << doublings)
        .min(MAX_BACKOFF_NANOS);
    AfterFailure::RetryAt(now.saturating_add(delay))
}

/// The reports of a root context still waiting for a retry.
#[derive(Debug, Default)]
pub struct RetryQueue {
    pending: Vec<Pending>,
}

impl RetryQueue {
    /// Schedules a failed report again, or says it is given up (attempts exhausted, or the
    /// queue full).
    pub fn failed(&mut self, body: Vec<u8>, attempts: u32, now: i64) -> Option<Vec<u8>> {
        match after_failure(attempts, now) {
            AfterFailure::RetryAt(due) if self.pending.len() < MAX_PENDING => {
                self.pending.push(Pending {
                    body,
                    attempts,
                    due,
                });
                None
            }
            _ => Some(body),
        }
    }

    /// The reports due at `now`, taken out of the queue (with their attempts so far).
    pub fn take_due(&mut self, now: i64) -> Vec<Pending> {
        let (due, waiting): (Vec<Pending>, Vec<Pending>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|p| p.due <= now);
        self.pending = waiting;
        due
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_a_cap_then_gives_up() {
        let now = 1_000;
        assert_eq!(
            after_failure(1, now),
            AfterFailure::RetryAt(now + 200_000_000)
        );
        assert_eq!(
            after_failure(2, now),
            AfterFailure::RetryAt(now + 400_000_000)
        );
        assert_eq!(
            after_failure(9, now),
            AfterFailure::RetryAt(now + 30_000_000_000)
        );
        assert_eq!(after_failure(MAX_ATTEMPTS, now), AfterFailure::GiveUp);
    }

    #[test]
    fn due_reports_leave_the_queue_and_the_rest_wait() {
        let mut queue = RetryQueue::default();
        assert_eq!(queue.failed(b"a".to_vec(), 1, 0), None);
        assert_eq!(queue.failed(b"b".to_vec(), 5, 0), None);
        let due = queue.take_due(300_000_000);
        assert_eq!(
            due.iter().map(|p| p.body.clone()).collect::<Vec<_>>(),
            vec![b"a".to_vec()]
        );
        assert_eq!(queue.len(), 1);
        assert_eq!(
            queue.failed(b"c".to_vec(), MAX_ATTEMPTS, 0),
            Some(b"c".to_vec())
        );
    }
}
