//! What reaches a VM between two of the test's calls: callout answers (now, later, or the
//! call's timeout) and shared-queue notifications. Envoy delivers these as separate events on
//! the worker's dispatcher, never inside the guest callback that caused them; this host does
//! the same deterministically, on no thread of its own:
//!
//! - at the end of every call that drives a VM (a stream event, [`Vm::fire_due_ticks`], a
//!   configuration change, [`Vm::answer_callout`]) the VM delivers everything due at the
//!   current host clock, each followed by the deferred actions it queued, until nothing is due;
//! - an answer "after a delay" or a call's timeout becomes due when the host clock reaches it:
//!   advance the clock and call [`Vm::run_due`] (or [`crate::Host::advance`]);
//! - a notification posted to another VM waits until that VM is driven.

use crate::abi::headers::Headers;
use crate::callouts::{Callout, CalloutAnswer, CalloutResponse};
use crate::vm::{call, Vm};
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

/// Deliveries one `run_due` may make before the host calls it a livelock (a guest that answers
/// every callout with a new one that is answered at once never lets the dispatcher rest).
const MAX_DELIVERIES: usize = 100_000;

/// How a call ends, once decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// The upstream's response (Envoy's router adds `x-envoy-upstream-service-time`).
    Upstream(CalloutResponse),
    /// A response Envoy generated itself (timeout, connection failure).
    Envoy(CalloutResponse),
    /// The stream broke after the response started.
    Reset,
}

/// A call waiting for its answer.
#[derive(Debug, Clone)]
pub(crate) struct PendingCall {
    pub root: u32,
    /// Host monotonic clock at dispatch.
    pub dispatched_mono: i64,
    /// When the call's timeout fires, if it has one.
    pub timeout_at: Option<i64>,
    /// The answer and when it arrives; `None` = not given yet, or never.
    pub answer: Option<(i64, Delivery)>,
}

impl PendingCall {
    /// What ends this call and when: the answer, unless the timeout fires first.
    pub(crate) fn due(&self) -> Option<(i64, Delivery)> {
        match (&self.answer, self.timeout_at) {
            (Some((at, d)), Some(timeout)) if *at < timeout => Some((*at, d.clone())),
            (_, Some(timeout)) => {
                Some((timeout, Delivery::Envoy(CalloutResponse::envoy_timeout())))
            }
            (Some((at, d)), None) => Some((*at, d.clone())),
            (None, None) => None,
        }
    }
}

/// `answer` given at monotonic time `at`, as a due time and delivery (`None` = never).
pub(crate) fn resolve(answer: CalloutAnswer, at: i64) -> Option<(i64, Delivery)> {
    match answer {
        CalloutAnswer::Respond(r) => Some((at, Delivery::Upstream(r))),
        CalloutAnswer::Reset => Some((at, Delivery::Reset)),
        CalloutAnswer::ConnectionRefused => Some((
            at,
            Delivery::Envoy(CalloutResponse::envoy_connection_refused()),
        )),
        CalloutAnswer::Never => None,
        CalloutAnswer::After(delay, inner) => {
            let nanos = i64::try_from(delay.as_nanos()).unwrap_or(i64::MAX);
            resolve(*inner, at.saturating_add(nanos))
        }
    }
}

/// The callouts of one VM: token numbering, history, and calls still waiting.
#[derive(Debug, Default)]
pub(crate) struct CalloutBook {
    /// Last token handed out (Envoy starts at 0 and adds 4 per call).
    pub last_token: u32,
    pub history: Vec<Callout>,
    pub pending: BTreeMap<u32, PendingCall>,
}

impl CalloutBook {
    pub(crate) fn next_token(&mut self) -> u32 {
        self.last_token = self.last_token.wrapping_add(4);
        self.last_token
    }
}

/// An event posted to a VM from outside its current callback (possibly from another VM).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Posted {
    /// `proxy_on_queue_ready(root, queue)`.
    QueueReady { root: u32, queue: u32 },
}

/// A VM's inbox for posted events; other VMs hold it weakly (a dropped VM gets nothing).
pub(crate) type Mailbox = Arc<Mutex<VecDeque<Posted>>>;

/// The callout answer the guest may read while `proxy_on_http_call_response` runs.
#[derive(Debug, Clone)]
pub(crate) struct AnswerInView {
    /// Root context the answer belongs to (maps are reachable from its contexts only).
    pub root: u32,
    /// `None` after a reset: the maps and body are unavailable.
    pub response: Option<CalloutResponse>,
}

impl Vm {
    fn monotonic(&self) -> i64 {
        self.store.data().shared.clock.monotonic_nanos()
    }

    /// Delivers every callout answer, timeout and queue notification due at the current host
    /// clock, each followed by the actions its callback deferred (resume, local reply, ...),
    /// until nothing more is due. Returns how many were delivered.
    pub fn run_due(&mut self) -> usize {
        let mut delivered = 0;
        while delivered < MAX_DELIVERIES {
            let posted = self
                .store
                .data()
                .mailbox
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .pop_front();
            if let Some(p) = posted {
                self.deliver_posted(p);
                delivered += 1;
                continue;
            }
            let now = self.monotonic();
            let next = self
                .store
                .data()
                .callouts
                .pending
                .iter()
                .filter_map(|(token, p)| p.due().map(|(at, d)| (at, *token, d)))
                .filter(|(at, _, _)| *at <= now)
                .min_by_key(|(at, token, _)| (*at, *token));
            let Some((_, token, delivery)) = next else {
                return delivered;
            };
            if let Some(call) = self.store.data_mut().callouts.pending.remove(&token) {
                self.deliver_answer(token, &call, delivery);
            }
            delivered += 1;
        }
        panic!("events never settle: {MAX_DELIVERIES} deliveries in one run_due");
    }

    /// Monotonic host time of the next answer or timeout waiting in this VM, if any.
    pub fn next_due_nanos(&self) -> Option<i64> {
        self.store
            .data()
            .callouts
            .pending
            .values()
            .filter_map(|p| p.due().map(|(at, _)| at))
            .min()
    }

    /// True if a posted notification or a callout answer is due now.
    pub(crate) fn has_due(&self) -> bool {
        let posted = !self
            .store
            .data()
            .mailbox
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_empty();
        posted
            || self
                .next_due_nanos()
                .is_some_and(|at| at <= self.monotonic())
    }

    /// Every callout this VM dispatched, oldest first.
    pub fn callouts(&self) -> &[Callout] {
        &self.store.data().callouts.history
    }

    /// Callouts still waiting for their answer (answered later, never, or by hand).
    pub fn pending_callouts(&self) -> Vec<Callout> {
        let st = self.store.data();
        st.callouts
            .history
            .iter()
            .filter(|c| st.callouts.pending.contains_key(&c.token))
            .cloned()
            .collect()
    }

    /// Answers pending callout `token` (panics if there is none): the answer replaces any
    /// earlier one, counts from now, and is delivered at once if it is due now.
    pub fn answer_callout(&mut self, token: u32, answer: CalloutAnswer) {
        let now = self.monotonic();
        let Some(call) = self.store.data_mut().callouts.pending.get_mut(&token) else {
            panic!("no pending callout with token {token}");
        };
        call.answer = resolve(answer, now);
        self.run_due();
    }

    fn deliver_answer(&mut self, token: u32, call: &PendingCall, delivery: Delivery) {
        let root = call.root;
        if !self.store.data().roots.contains_key(&root) {
            // Envoy cancels a root context's calls when the root goes away.
            return;
        }
        let response = match delivery {
            Delivery::Upstream(mut r) => {
                let elapsed_ms = self.monotonic().saturating_sub(call.dispatched_mono) / 1_000_000;
                r.headers
                    .add("x-envoy-upstream-service-time", &elapsed_ms.to_string());
                Some(r)
            }
            Delivery::Envoy(r) => Some(r),
            Delivery::Reset => None,
        };
        let (n_headers, body_len, n_trailers) = match &response {
            Some(r) => (
                r.headers.len(),
                r.body.len(),
                r.trailers.as_ref().map_or(0, Headers::len),
            ),
            None => (0, 0, 0),
        };
        let reset = response.is_none();
        {
            let st = self.store.data_mut();
            if reset {
                if let Some(r) = st.roots.get_mut(&root) {
                    r.status = (11, "reset".to_string());
                }
            }
            st.answering = Some(AnswerInView { root, response });
        }
        let (nh, bl, nt) = (n_headers as i32, body_len as i32, n_trailers as i32);
        call!(
            self,
            http_call_response,
            "on_http_call_response",
            root,
            (root as i32, token as i32, nh, bl, nt),
            vec![
                i64::from(token),
                i64::from(nh),
                i64::from(bl),
                i64::from(nt)
            ]
        );
        let st = self.store.data_mut();
        st.answering = None;
        if reset {
            // Envoy clears the message after the callback; the code stays until the next failure.
            if let Some(r) = st.roots.get_mut(&root) {
                r.status.1.clear();
            }
        }
        self.run_deferred();
    }

    fn deliver_posted(&mut self, posted: Posted) {
        match posted {
            Posted::QueueReady { root, queue } => {
                // Envoy looks the registrant's context up when the event runs; gone = dropped.
                if !self.store.data().roots.contains_key(&root) {
                    return;
                }
                call!(
                    self,
                    queue_ready,
                    "on_queue_ready",
                    root,
                    (root as i32, queue as i32),
                    vec![i64::from(queue)]
                );
                self.run_deferred();
            }
        }
    }
}
