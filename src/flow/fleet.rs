//! Fleet mode in a request's way (docs/fleet.md): once the key, provider and model checks
//! have passed, every level's limits are asked of Limitador in one round of parallel calls
//! while the request waits; the answers admit or refuse it. After the response, the charges
//! go to the VM's outbox, from which the root context sends them to Limitador.

use std::rc::Rc;

use super::{Env, Flow, RequestAction, Stage};
use crate::admission;
use crate::config::{LimitId, LimitKind};
use crate::counter::Counters;
use crate::fleet::protocol::{self, Answer};
use crate::fleet::round::{Admitted, Decision, Round};
use crate::fleet::{charges, memory, names, usage, Unavailable};
use crate::metrics::Metric;
use crate::money::Money;
use crate::rejection::{LocalReply, Rejection, RejectionKind};
use crate::response_headers::{limit_headers, Quota};
use crate::usage_endpoint::{self, Viewer};

/// What fleet mode keeps of one request.
#[derive(Debug, Default)]
pub(super) struct Progress {
    round: Option<Round>,
    /// A refusal waiting for Limitador's counters to tell when its window ends.
    lookup: Option<PendingRefusal>,
    /// What the fleet admitted, to be charged at the end.
    admitted: Option<Admitted>,
    /// Admitted on this Envoy's own counters (`unavailable: local`): settled there too.
    pub(super) local: bool,
    /// A usage-endpoint request reading Limitador's counters.
    usage: Option<UsageQuery>,
}

#[derive(Debug)]
struct UsageQuery {
    limits: Vec<LimitId>,
    namespaces: Vec<String>,
    answers: Vec<Option<Answer>>,
}

#[derive(Debug, Clone)]
struct PendingRefusal {
    limit: LimitId,
    exhausted: bool,
    estimate: Option<u128>,
    /// What is charged if the request goes on anyway (shadow mode).
    admitted: Admitted,
    /// Left in the refusing counter, in Limitador's units, when known.
    remaining: Option<u64>,
}

impl Flow {
    /// The request's limits in level order: provider config, key, team, customer; then
    /// those of the model configs that apply.
    fn fleet_limits(&self) -> Vec<LimitId> {
        let Some((key_index, provider)) = &self.target else {
            return Vec::new();
        };
        let Some(key) = self.policy.keys.get(*key_index) else {
            return Vec::new();
        };
        let mut limits: Vec<LimitId> = provider
            .as_deref()
            .and_then(|p| key.provider_config(p))
            .map(|c| c.owner.limits.clone())
            .unwrap_or_default();
        limits.extend(self.policy.hierarchy_limits(key));
        limits.extend_from_slice(&self.model_limits);
        // The `per_value` templates of the values the request carries (Limitador keys
        // their counters by value).
        for (table, _) in &self.value_hashes {
            if let Some(per_value) = self.policy.per_values.get(*table as usize) {
                limits.extend_from_slice(&per_value.limits);
            }
        }
        limits
    }

    /// The value (hex SHA-256) the request carries for `limit`, a `per_value` template.
    fn value_of(&self, policy: &crate::config::Policy, limit: LimitId) -> Option<&str> {
        let table = policy.limits.get(limit)?.per_value?;
        self.value_hashes
            .iter()
            .find(|(t, _)| *t == table)
            .map(|(_, value)| value.as_str())
    }

    /// A refusal for the first of `limits` this Envoy remembers Limitador refused, whose
    /// window has not ended: no call is made for an owner already refused.
    pub(super) fn remembered_refusal(
        &mut self,
        limits: &[LimitId],
        counters: &mut Counters<'_>,
        env: &mut Env<'_>,
    ) -> Option<LocalReply> {
        let policy = Rc::clone(&self.policy);
        if policy.mode == crate::config::Mode::Shadow {
            // Shadow mode asks Limitador every time: it refuses nothing to remember.
            return None;
        }
        for kind in [LimitKind::Requests, LimitKind::Tokens, LimitKind::Budget] {
            for &id in limits {
                let Some(limit) = policy.limits.get(id).filter(|l| l.kind == kind) else {
                    continue;
                };
                let max = names::max_value(limit);
                if let Some(until) = memory::exhausted_until(env.store, limit, max, env.now) {
                    let retry = admission::seconds_until(env.now, until);
                    let rejection = fleet_rejection(
                        limit,
                        retry,
                        env.now,
                        None,
                        Some(0),
                        policy.response_headers,
                    );
                    env.metrics.add(Metric::FleetRefused, 1);
                    return self.refuse(vec![rejection], counters, env);
                }
            }
        }
        None
    }

    /// The last step of admission in fleet mode: the round of calls (or, when Limitador is
    /// known to be down or an owner's limits not to match, the `unavailable` handling).
    pub(super) fn fleet_round(
        &mut self,
        model: Option<String>,
        counters: &mut Counters<'_>,
        env: &mut Env<'_>,
    ) -> RequestAction {
        let policy = Rc::clone(&self.policy);
        let Some(fleet) = policy.fleet.as_ref() else {
            return self.admitted(model, counters, env);
        };
        let limits = self.fleet_limits();
        if let Some(reply) = self.remembered_refusal(&limits, counters, env) {
            return RequestAction::Reply(reply);
        }
        let estimate = if policy.reservation.enabled {
            self.estimate(model.as_deref())
        } else {
            None
        };
        let round = match Round::plan(
            &policy,
            fleet,
            &limits,
            &self.value_hashes,
            estimate.as_ref(),
            env.now,
        ) {
            Ok(round) => round,
            Err(err) => {
                log::error!("#{} fleet: window: {err}", self.context_id);
                return self.fleet_unavailable(Admitted::default(), model, counters, env);
            }
        };
        if round.mismatched() || memory::is_down(env.store, &policy, env.now) {
            return self.fleet_unavailable(Admitted::default(), model, counters, env);
        }
        if round.planned.is_empty() {
            self.fleet.admitted = Some(Admitted::default());
            return self.admitted(model, counters, env);
        }
        let calls: Vec<_> = round.calls().cloned().collect();
        env.metrics.add(Metric::FleetCalls, calls.len() as u64);
        self.fleet.round = Some(round);
        self.stage = Stage::Calling { model };
        RequestAction::Call {
            remove_headers: Vec::new(),
            calls,
        }
    }

    /// Limitador's answer to call `index` of the calls last asked for. Once every answer is
    /// in, what to do with the request: go on, answer it, or make more calls.
    pub fn on_call_answer(
        &mut self,
        index: usize,
        answer: Answer,
        env: &mut Env<'_>,
    ) -> Option<RequestAction> {
        let Stage::Calling { model } = &self.stage else {
            return None;
        };
        let model = model.clone();
        let policy = Rc::clone(&self.policy);
        let mut counters = Counters::new(env.store, &policy.guard_key);
        if self.fleet.usage.is_some() {
            return self.usage_answer(index, answer, env);
        }
        if let Some(pending) = self.fleet.lookup.take() {
            // The answer of the counters lookup a refusal was waiting for.
            let value = self.value_of(&policy, pending.limit);
            let retry = reset_from_counters(&policy, pending.limit, value, &answer);
            return Some(self.fleet_refuse(pending, retry, model, &mut counters, env));
        }
        let round = self.fleet.round.as_mut()?;
        if !round.answer(index, answer) {
            return None;
        }
        let round = self.fleet.round.take()?;
        let fleet = policy.fleet.as_ref()?;
        let mut mismatches = 0;
        let verified = round.verify_owners(&policy, fleet, env.now, &mut mismatches);
        if mismatches > 0 {
            env.metrics.add(Metric::FleetLimitsMismatch, mismatches);
        }
        let action = match round.decide(&policy, verified, env.now) {
            Decision::Admitted(admitted) => {
                self.admission.seen = admitted.seen.clone();
                self.fleet.admitted = Some(admitted);
                self.admitted(model, &mut counters, env)
            }
            Decision::Refused {
                limit,
                retry_after_secs,
                exhausted,
                estimate,
                admitted,
                remaining,
            } => {
                let pending = PendingRefusal {
                    limit,
                    exhausted,
                    estimate,
                    admitted,
                    remaining,
                };
                match retry_after_secs {
                    Some(retry) => self.fleet_refuse(pending, retry, model, &mut counters, env),
                    None => self.lookup_reset(pending, model, env),
                }
            }
            Decision::Unavailable {
                admitted,
                unreachable,
            } => {
                if unreachable {
                    memory::mark_down(env.store, &policy, env.now);
                }
                self.fleet_unavailable(admitted, model, &mut counters, env)
            }
        };
        Some(action)
    }

    /// The usage endpoint in fleet mode: the caller's counters, read from Limitador.
    pub(super) fn fleet_usage(
        &mut self,
        headers: &dyn crate::identity::RequestHeaders,
        path: &str,
        env: &mut Env<'_>,
    ) -> RequestAction {
        self.stage = Stage::Replied;
        let policy = Rc::clone(&self.policy);
        let Some(fleet) = policy.fleet.as_ref() else {
            return RequestAction::Reply(usage_endpoint::unauthorized());
        };
        let mut limits = match usage_endpoint::viewer(&policy, headers) {
            None => return RequestAction::Reply(usage_endpoint::unauthorized()),
            Some(Viewer::Key(limits)) => limits,
            Some(Viewer::Admin) => match usage::admin_limits(&policy, path) {
                Ok(limits) => limits,
                Err(message) => {
                    return RequestAction::Reply(usage_endpoint::json_reply(
                        400,
                        serde_json::json!({"error": {"message": message,
                            "type": "invalid_request_error", "code": "owner_required", "param": "owner"}}),
                    ))
                }
            },
        };
        // Limitador's counters of `per_value` templates are one per value: not shown here.
        limits.retain(|id| {
            policy
                .limits
                .get(*id)
                .is_some_and(|l| l.per_value.is_none())
        });
        let (namespaces, calls) = usage::calls(fleet, &limits);
        if calls.is_empty() {
            return RequestAction::Reply(usage_endpoint::json_reply(
                200,
                serde_json::json!({"source": "fleet", "counters": []}),
            ));
        }
        env.metrics.add(Metric::FleetCalls, calls.len() as u64);
        self.fleet.usage = Some(UsageQuery {
            limits,
            answers: vec![None; namespaces.len()],
            namespaces,
        });
        self.stage = Stage::Calling { model: None };
        RequestAction::Call {
            remove_headers: Vec::new(),
            calls,
        }
    }

    fn usage_answer(
        &mut self,
        index: usize,
        answer: Answer,
        env: &mut Env<'_>,
    ) -> Option<RequestAction> {
        let query = self.fleet.usage.as_mut()?;
        if let Some(slot) = query.answers.get_mut(index) {
            *slot = Some(answer);
        }
        if query.answers.iter().any(Option::is_none) {
            return None;
        }
        let query = self.fleet.usage.take()?;
        self.stage = Stage::Replied;
        let policy = Rc::clone(&self.policy);
        let fleet = policy.fleet.as_ref()?;
        let answers: Vec<Answer> = query.answers.into_iter().flatten().collect();
        let body = usage::reply_body(
            &policy,
            fleet,
            &query.limits,
            &query.namespaces,
            &answers,
            env.now,
        );
        Some(RequestAction::Reply(match body {
            Some(body) => usage_endpoint::json_reply(200, body),
            None => {
                env.metrics.add(Metric::FleetUnavailable, 1);
                Rejection::new(
                    RejectionKind::GovernanceUnavailable,
                    "the fleet's counters (Limitador) cannot be read; try again shortly",
                )
                .reply()
            }
        }))
    }

    /// A rolling window's end is Limitador's: its counters say it.
    fn lookup_reset(
        &mut self,
        pending: PendingRefusal,
        model: Option<String>,
        env: &mut Env<'_>,
    ) -> RequestAction {
        let namespace = self
            .policy
            .fleet
            .as_ref()
            .and_then(|f| f.limits.get(pending.limit))
            .map(|l| l.namespace.clone())
            .unwrap_or_default();
        self.fleet.lookup = Some(pending);
        self.stage = Stage::Calling { model };
        env.metrics.add(Metric::FleetCalls, 1);
        RequestAction::Call {
            remove_headers: Vec::new(),
            calls: vec![protocol::counters_call(&namespace)],
        }
    }

    /// Refuses for `pending.limit`, remembering an exhausted counter until its window ends
    /// (in shadow mode, logs the would-be refusal and admits).
    fn fleet_refuse(
        &mut self,
        pending: PendingRefusal,
        retry_after_secs: u64,
        model: Option<String>,
        counters: &mut Counters<'_>,
        env: &mut Env<'_>,
    ) -> RequestAction {
        let policy = Rc::clone(&self.policy);
        let Some(limit) = policy.limits.get(pending.limit) else {
            return self.admitted(model, counters, env);
        };
        env.metrics.add(Metric::FleetRefused, 1);
        // One value's exhausted counter is not its table's: it is not remembered.
        if pending.exhausted && limit.per_value.is_none() {
            let secs = i64::try_from(retry_after_secs).unwrap_or(i64::MAX);
            let until = env.now.saturating_add(secs.saturating_mul(1_000_000_000));
            memory::remember_exhausted(env.store, limit, names::max_value(limit), until);
        }
        let rejection = fleet_rejection(
            limit,
            retry_after_secs,
            env.now,
            pending.estimate,
            pending.remaining,
            policy.response_headers,
        );
        match self.refuse(vec![rejection], counters, env) {
            Some(reply) => RequestAction::Reply(reply),
            None => {
                // Shadow: charged like any admitted request.
                self.fleet.admitted = Some(pending.admitted);
                self.admitted(model, counters, env)
            }
        }
    }

    /// Limitador could not be asked (or an owner's limits do not match): `unavailable`
    /// decides.
    fn fleet_unavailable(
        &mut self,
        admitted: Admitted,
        model: Option<String>,
        counters: &mut Counters<'_>,
        env: &mut Env<'_>,
    ) -> RequestAction {
        let policy = Rc::clone(&self.policy);
        let mode = policy
            .fleet
            .as_ref()
            .map_or(Unavailable::Closed, |f| f.unavailable);
        env.metrics.add(Metric::FleetUnavailable, 1);
        // Whatever is decided now is reported to Limitador when it answers again.
        let mut admitted = admitted;
        if admitted == Admitted::default() {
            admitted = self.uncounted(&self.fleet_limits());
        }
        match mode {
            Unavailable::Closed => {
                let rejection = Rejection::new(
                    RejectionKind::GovernanceUnavailable,
                    "the fleet's counters (Limitador) cannot be reached; try again shortly",
                );
                log::warn!(
                    "#{} fleet: Limitador unavailable; rejecting (unavailable: closed)",
                    self.context_id
                );
                match self.refuse(vec![rejection], counters, env) {
                    Some(reply) => RequestAction::Reply(reply),
                    None => {
                        self.fleet.admitted = Some(admitted);
                        self.admitted(model, counters, env)
                    }
                }
            }
            Unavailable::Open => {
                log::warn!(
                    "#{} fleet: Limitador unavailable; admitting (unavailable: open)",
                    self.context_id
                );
                self.fleet.admitted = Some(admitted);
                self.admitted(model, counters, env)
            }
            Unavailable::Local => {
                log::info!(
                    "#{} fleet: Limitador unavailable; deciding on this Envoy's counters",
                    self.context_id
                );
                self.fleet.admitted = Some(admitted);
                self.fleet.local = true;
                self.local_admission(model, counters, env)
            }
        }
    }

    /// What Limitador did not count of a request admitted without it: every request slot,
    /// and every token limit and budget to charge.
    fn uncounted(&self, limits: &[LimitId]) -> Admitted {
        let mut admitted = Admitted::default();
        for &id in limits {
            match self.policy.limits.get(id).map(|l| l.kind) {
                Some(LimitKind::Requests) => admitted.uncounted_slots.push(id),
                Some(LimitKind::Tokens | LimitKind::Budget) => admitted.chargeable.push(id),
                None => {}
            }
        }
        admitted
    }

    /// Admission on this Envoy's own counters, every level at once (as without fleet mode).
    fn local_admission(
        &mut self,
        model: Option<String>,
        counters: &mut Counters<'_>,
        env: &mut Env<'_>,
    ) -> RequestAction {
        let policy = Rc::clone(&self.policy);
        let mut limits = self.fleet_limits();
        // This Envoy has no slots for the values: their limits wait for Limitador.
        limits.retain(|id| {
            policy
                .limits
                .get(*id)
                .is_some_and(|l| l.per_value.is_none())
        });
        let refusals = match admission::check(
            &policy,
            counters,
            env.now,
            &limits,
            self.evaluation(),
            &mut self.admission,
        ) {
            Ok(refusals) => refusals,
            Err(err) => match self.store_failure(err, counters, env) {
                Some(reply) => return RequestAction::Reply(reply),
                None => Vec::new(),
            },
        };
        if let Some(reply) = self.refuse(refusals, counters, env) {
            return RequestAction::Reply(reply);
        }
        if policy.reservation.enabled {
            if let Some(reply) = self.reserve(model.as_deref(), counters, env) {
                return RequestAction::Reply(reply);
            }
        }
        self.admitted(model, counters, env)
    }

    /// The token limits and budgets the fleet admitted the request on.
    pub(super) fn fleet_chargeable(&self) -> impl Iterator<Item = &LimitId> {
        self.fleet
            .admitted
            .iter()
            .flat_map(|admitted| admitted.chargeable.iter())
    }

    /// The charges of an exchange admitted through the fleet, handed to the outbox: the
    /// usage on every token limit and budget (less what was reported at admission), and the
    /// slots Limitador did not count.
    pub(super) fn fleet_charges(&mut self, tokens: u128, cost: Money, env: &mut Env<'_>) {
        let policy = Rc::clone(&self.policy);
        let (Some(fleet), Some(admitted)) = (policy.fleet.as_ref(), self.fleet.admitted.take())
        else {
            return;
        };
        let mut reports = Vec::new();
        for &id in &admitted.chargeable {
            let Some(limit) = policy.limits.get(id) else {
                continue;
            };
            let amount = match limit.kind {
                LimitKind::Tokens => tokens,
                LimitKind::Budget => cost.femto(),
                LimitKind::Requests => continue,
            };
            let held = admitted
                .held
                .iter()
                .find(|(held_id, _)| *held_id == id)
                .map_or(0, |(_, units)| *units);
            let units = names::units(limit.kind, amount).saturating_sub(held);
            reports.push((id, units));
        }
        reports.extend(admitted.uncounted_slots.iter().map(|&id| (id, 1)));
        for (id, units) in reports {
            let value = self.value_of(&policy, id);
            match charges::report(&policy, fleet, id, value, units, env.now) {
                Ok(Some(call)) => env.outbox.send(call),
                Ok(None) => {}
                Err(err) => log::error!("#{} fleet: charge not sent: {err}", self.context_id),
            }
        }
    }
}

/// The refusal of a limit Limitador (or this Envoy's memory of it) refused; its quota
/// headers (with `headers`: the configuration's `response_headers`) say what Limitador said
/// is left, and are left out when it did not say.
fn fleet_rejection(
    limit: &crate::config::Limit,
    retry_after_secs: u64,
    now: i64,
    estimate: Option<u128>,
    remaining: Option<u64>,
    headers: bool,
) -> Rejection {
    let (kind, what) = match limit.kind {
        LimitKind::Requests => (RejectionKind::RequestLimited, "request limit"),
        LimitKind::Tokens => (RejectionKind::TokenLimited, "token limit"),
        LimitKind::Budget => (RejectionKind::BudgetExceeded, "budget"),
    };
    let in_units = |amount: u128| match limit.kind {
        LimitKind::Budget => format!("{} USD", Money::from_femto(amount).four_decimals()),
        LimitKind::Requests => format!("{amount} requests"),
        LimitKind::Tokens => format!("{amount} tokens"),
    };
    let mut message = format!(
        "{} {what} exceeded across the fleet: {} allowed",
        admission::owner_label(limit),
        in_units(limit.max)
    );
    if let Some(estimate) = estimate {
        message.push_str(&format!(
            ", this request's estimate {} does not fit",
            in_units(estimate)
        ));
    }
    let secs = i64::try_from(retry_after_secs).unwrap_or(i64::MAX);
    let end = now.saturating_add(secs.saturating_mul(1_000_000_000));
    message.push_str(&format!(", {}", admission::reset_text(limit, end)));
    let remaining = remaining.filter(|_| headers);
    let quota_headers = remaining.map_or_else(Vec::new, |units| {
        let quota = Quota {
            remaining: names::from_units(limit.kind, units).min(limit.max),
            reserved: None,
            resets_in: secs.saturating_mul(1_000_000_000),
        };
        limit_headers(limit, &quota)
    });
    Rejection {
        kind,
        message,
        retry_after_secs: admission::retry_after(limit, now, end),
        quota_headers,
    }
}

/// Seconds until the rolling window of `limit` ends, from a `GET /counters` answer; the
/// limit's whole length when the answer does not tell.
fn reset_from_counters(
    policy: &crate::config::Policy,
    limit: LimitId,
    value: Option<&str>,
    answer: &Answer,
) -> u64 {
    let (Some(config), Some(named)) = (
        policy.limits.get(limit),
        policy.fleet.as_ref().and_then(|f| f.limits.get(limit)),
    ) else {
        return 0;
    };
    protocol::parse_counters(answer)
        .and_then(|counters| {
            counters
                .into_iter()
                .find(|c| c.is(&named.limit_id, names::ROLLING, value))
                .and_then(|c| c.expires_in_seconds)
        })
        .unwrap_or_else(|| names::seconds(config))
}
