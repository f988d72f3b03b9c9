//! Requests run through the filter's own flow, callback by callback as Envoy calls it, over
//! the in-memory store that keeps Envoy's shared-data rules, with a clock the caller moves.
//! Fleet mode is replayed on these local counters: the rules and windows are the same, only
//! where the counters live differs.

use std::rc::Rc;

use crate::config::{Limit, Policy};
use crate::counter::{CounterError, Counters, Record};
use crate::flow::{Env, Flow, NoOutbox, RequestAction, RequestHead};
use crate::metrics::{Metric, MetricsSink};
use crate::money::Money;
use crate::rejection::LocalReply;
use crate::store::MemoryStore;

/// One request as the filter sees it, and (to be charged) its response.
pub struct Exchange {
    pub method: String,
    pub path: String,
    /// Lower-case names.
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
    pub response: Option<Response>,
}

/// A JSON response, read for usage as the filter reads it.
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

/// What became of one exchange.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The filter's own answer, when it refused the request.
    pub reply: Option<LocalReply>,
    /// Request headers the filter removed before forwarding (the key's carrier).
    pub removed: Vec<String>,
    /// Quota headers added to the response.
    pub response_headers: Vec<(String, String)>,
    /// The key (index in the policy) and provider the request was resolved to.
    pub target: Option<(usize, Option<String>)>,
    /// What was charged to the request's budgets and token limits.
    pub spend: Money,
    pub tokens: u64,
    /// Shadow mode: the refusal the filter only logged.
    pub shadow_refused: bool,
}

/// The counters of one simulated Envoy, and the policy they follow.
pub struct Replay {
    pub policy: Rc<Policy>,
    store: MemoryStore,
    next_context: u32,
}

impl Replay {
    pub fn new(mut policy: Policy) -> Self {
        policy.fleet = None;
        Self {
            policy: Rc::new(policy),
            store: MemoryStore::new(),
            next_context: 2,
        }
    }

    /// Runs `exchange` at `now`: request headers, body, and with a response its headers and
    /// body, then the stream's end. Without a response the request is decided and left there
    /// (nothing is charged).
    pub fn run(&mut self, exchange: &Exchange, now: i64) -> Outcome {
        let context = self.next_context;
        self.next_context = self.next_context.wrapping_add(1);
        let mut flow = Flow::new(Rc::clone(&self.policy), context);
        let mut tally = Tally::default();
        let mut outbox = NoOutbox;
        let mut env = Env {
            store: &self.store,
            now,
            metrics: &mut tally,
            outbox: &mut outbox,
        };
        let head = RequestHead {
            method: &exchange.method,
            path: &exchange.path,
            headers: &exchange.headers,
            end_of_stream: exchange.body.is_empty(),
        };
        let mut outcome = Outcome::default();
        let mut action = flow.on_request_headers(&head, &mut env);
        if let RequestAction::Continue { remove_headers } = &action {
            outcome.removed.clone_from(remove_headers);
            if !exchange.body.is_empty() {
                action = flow.on_request_body(&exchange.body, true, &mut env);
            }
        }
        match action {
            RequestAction::Reply(reply) => {
                outcome.reply = Some(reply);
                flow.on_stream_end(&mut env);
            }
            // Fleet mode is off in a replay: no calls are ever asked for.
            RequestAction::Call { .. } => flow.on_stream_end(&mut env),
            RequestAction::Continue { .. } => {
                let status = exchange.response.as_ref().map_or(200, |r| r.status);
                outcome.response_headers =
                    flow.on_response_headers(Some(status), Some("application/json"), &mut env);
                if let Some(response) = &exchange.response {
                    flow.on_response_body(&response.body, true, &mut env);
                    flow.on_stream_end(&mut env);
                }
            }
        }
        outcome.target = flow
            .target()
            .map(|(key, provider)| (key, provider.map(str::to_string)));
        outcome.spend = tally.spend;
        outcome.tokens = tally.tokens;
        outcome.shadow_refused = tally.shadow_refused;
        outcome
    }

    /// A counter as of `now` (an ended window reads as empty), and whether it was ever used
    /// (one never used reads as the window that would open at `now`).
    pub fn counter(&self, limit: &Limit, now: i64) -> Result<(Record, bool), CounterError> {
        Counters::new(&self.store, &self.policy.guard_key).peek(limit, now)
    }
}

/// What the flow reported of one request through the metrics seam.
#[derive(Default)]
struct Tally {
    spend: Money,
    tokens: u64,
    shadow_refused: bool,
}

impl MetricsSink for Tally {
    fn add(&mut self, metric: Metric, delta: u64) {
        match metric {
            Metric::TokensCharged => self.tokens = self.tokens.saturating_add(delta),
            Metric::ShadowRejected => self.shadow_refused = true,
            _ => {}
        }
    }

    fn add_spend(&mut self, cost: Money) {
        self.spend = self.spend.saturating_add(cost);
    }
}
