//! One request's way through the filter: the state machine the proxy-wasm glue drives.
//!
//! Each method is one proxy-wasm callback, with what the glue read from the host passed in
//! and what the glue must do returned. Checks run as soon as what they need is known: the
//! key and the key/team/customer limits at request headers; the provider and model rules,
//! pricing and provider-config limits once the model is known (Gemini path or request
//! body), or at the end of the request body. With reservations (docs/reservations.md) the
//! request's estimate is held on every token limit and budget at the end of its body, before
//! the last frame goes upstream. The response is scanned for usage as it passes, and settled once,
//! at its end or when the stream ends early.

use std::borrow::Cow;
use std::rc::Rc;

use crate::admission::{self, Admission, Evaluation};
use crate::config::{LimitId, LimitKind, Mode, Policy, VirtualKey};
use crate::counter::Counters;
use crate::estimate::Estimate;
use crate::filter_state::ChargeRecord;
use crate::fleet::protocol::Call;
use crate::identity::{identify, key_required_message, RequestHeaders};
use crate::metrics::{Metric, MetricsSink};
use crate::path_model::{path_model, PathModel};
use crate::per_value::ValueSlots;
use crate::rejection::{LocalReply, Rejection, RejectionKind};
use crate::request_body::{BodyModel, RequestSniffer};
use crate::response_headers::emit_quota_headers;
use crate::store::CasStore;
use crate::usage::{BodyFormat, Usage, UsageScanner};
use crate::usage_endpoint;

/// The reply header of a request whose output cap was lowered: the cap it went with.
pub const OUTPUT_CLAMPED_HEADER: &str = "x-governance-output-clamped";

/// What the host gives the core for one callback.
pub struct Env<'a> {
    pub store: &'a dyn CasStore,
    pub now: i64,
    pub metrics: &'a mut dyn MetricsSink,
    /// Where charges for Limitador go (fleet mode): the VM's root context sends them.
    pub outbox: &'a mut dyn Outbox,
}

/// Takes calls that must reach Limitador even if the stream is gone (fleet charges).
pub trait Outbox {
    fn send(&mut self, call: Call);

    /// A threshold alert's event, to be posted by the root context (`alerts.cluster`).
    fn alert(&mut self, _event: Vec<u8>) {}
}

/// An outbox that drops everything (no fleet mode).
pub struct NoOutbox;

impl Outbox for NoOutbox {
    fn send(&mut self, _call: Call) {}
}

/// The request as seen at its headers.
pub struct RequestHead<'a> {
    /// `:method`: only responses to `POST` are charged.
    pub method: &'a str,
    /// `:path`, query string included.
    pub path: &'a str,
    /// Looked up by lower-case name; raw values (not necessarily UTF-8).
    pub headers: &'a dyn RequestHeaders,
    /// True when the request has no body.
    pub end_of_stream: bool,
}

/// What the glue must do after a request callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestAction {
    /// Let the request go on, after removing these request headers (the key's carrier).
    Continue { remove_headers: Vec<String> },
    /// Answer locally; nothing (more) reaches upstream.
    Reply(LocalReply),
    /// Make these calls to Limitador (fleet mode) and hold the request, after removing these
    /// request headers, until every answer has been given to [`Flow::on_call_answer`].
    Call {
        remove_headers: Vec<String>,
        calls: Vec<Call>,
    },
}

#[derive(Debug)]
enum Stage {
    /// Before request headers.
    Start,
    /// Not governed (keyless and allowed, or shadow-admitted unknown key).
    Bypass,
    /// Answered locally; this filter's own response callbacks see the reply and ignore it.
    Replied,
    /// Key-level checks passed; the model is still to come in the body.
    AwaitingModel {
        key: usize,
        provider: Option<String>,
        judged: Judged,
    },
    /// Every rule and request limit passed; with reservations, the rest of the body is
    /// still to come for the estimate.
    AwaitingBody { model: Option<String> },
    /// Admitted; the response is charged to `admission.chargeable`.
    Admitted { model: Option<String> },
    /// Waiting for Limitador's answers (fleet mode).
    Calling { model: Option<String> },
    /// An admin request (`admin.rs`) whose body is still coming.
    Admin {
        action: crate::admin::Action,
        body: Vec<u8>,
        requester: crate::admin::Requester,
    },
}

/// What the request headers already judged of step 3 of the order of checks
/// (docs/clients.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Judged {
    Nothing,
    /// The provider (from the provider header); the model is still to come.
    Provider,
    /// Provider and model rules both.
    All,
}

/// Per-request state.
pub struct Flow {
    policy: Rc<Policy>,
    context_id: u32,
    stage: Stage,
    admission: Admission,
    sniffer: Option<RequestSniffer>,
    /// The request's `content-length`: when that many body bytes have come, the body is
    /// complete even if Envoy signals its end later, in an empty frame.
    content_length: Option<u64>,
    scanner: Option<UsageScanner>,
    /// What the request holds on its token limits and budgets (reservations only).
    estimate: Option<Estimate>,
    /// The response's `:status`, once its headers were seen.
    response_status: Option<u16>,
    charged: bool,
    /// The key and provider, once resolved (fleet mode checks every level at once).
    target: Option<(usize, Option<String>)>,
    /// The `per_value` slots of the request's header values.
    value_slots: ValueSlots,
    /// Fleet mode: the request's header values of the `per_value` tables, `(table, hex
    /// SHA-256)`.
    value_hashes: Vec<(u32, String)>,
    /// The limits of the `model_configs` entries that apply to the request's model, on
    /// every level (key, team, customer), once the model is known.
    model_limits: Vec<LimitId>,
    /// Fleet mode's part of the request.
    fleet: fleet::Progress,
    /// How the request is metered: its method, path and sizes.
    meter: Meter,
    /// Slots of `rate_limit.max_in_flight` the request holds (given back once).
    in_flight: Vec<crate::in_flight::Taken>,
    /// What the exchange was charged, until the glue writes it as filter state.
    /// Boxed: it is rare, and the flow stays small to create and move.
    charge_record: Option<Box<ChargeRecord>>,
}

/// What the charge at the end needs to know of the exchange besides its usage.
#[derive(Debug, Default)]
struct Meter {
    /// The request is a `POST`: only those responses are charged (a `GET` polling a
    /// background response carries its usage again).
    post: bool,
    /// The path is one of the operator's `free_paths`.
    free_path: bool,
    /// A Bedrock path: InvokeModel reports its usage in response headers.
    bedrock: bool,
    /// Usage read from the response headers.
    header_usage: Option<Usage>,
    /// The request body, once read whole: its size and output cap.
    request: Option<RequestSize>,
    /// Response body bytes seen.
    response_bytes: u64,
    /// The rewrite of the held request body (stream usage, output cap).
    rewrite: Rewrite,
    /// The held body may get `stream_options.include_usage` (a streaming completion).
    usage_rewrite: bool,
    /// With `reservation.clamp_output`: where the body's output cap is, when it may be
    /// lowered (the body is held then).
    clamp: Option<crate::clamp::CapField>,
    /// The output cap the request was lowered to (`x-governance-output-clamped`).
    clamped_output: Option<u64>,
}

/// A request body's size and the largest output cap it names.
#[derive(Debug, Clone, Copy, Default)]
struct RequestSize {
    bytes: u64,
    max_output_tokens: Option<u64>,
}

/// Where the request body stands with the stream-usage rewrite (`stream_usage.rs`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Rewrite {
    /// Not a candidate, or decided.
    #[default]
    Off,
    /// A completions request small enough so far: Envoy holds its body until it is whole.
    Holding,
    /// The whole held body is ready to be rewritten (by [`Flow::rewrite_request_body`]).
    Ready,
}

impl Flow {
    pub fn new(policy: Rc<Policy>, context_id: u32) -> Self {
        Self {
            policy,
            context_id,
            stage: Stage::Start,
            admission: Admission::default(),
            sniffer: None,
            content_length: None,
            scanner: None,
            estimate: None,
            response_status: None,
            charged: false,
            target: None,
            model_limits: Vec::new(),
            value_slots: ValueSlots::default(),
            value_hashes: Vec::new(),
            fleet: fleet::Progress::default(),
            meter: Meter::default(),
            in_flight: Vec::new(),
            charge_record: None,
        }
    }

    pub fn on_request_headers(
        &mut self,
        head: &RequestHead<'_>,
        env: &mut Env<'_>,
    ) -> RequestAction {
        let policy = Rc::clone(&self.policy);
        let mut counters = Counters::new(env.store, &policy.guard_key);
        if usage_endpoint::is_usage_request(&policy, head.method, head.path) {
            if policy.fleet.is_some() {
                return self.fleet_usage(head.headers, head.path, env);
            }
            self.stage = Stage::Replied;
            let mut slots = ValueSlots::default();
            if !policy.per_values.is_empty() {
                match usage_endpoint::value_slots(&policy, head.headers, &counters) {
                    Ok(found) => slots = found,
                    Err(err) => {
                        return RequestAction::Reply(self.unavailable(err, &mut counters, env))
                    }
                }
            }
            let mut slot_store = None;
            let store = per_value::store_with_slots(env.store, &policy, &slots, &mut slot_store);
            let mut counters = Counters::new(store, &policy.guard_key);
            let reply = usage_endpoint::reply(&policy, head.headers, &counters, &slots, env.now);
            return match reply {
                Ok(reply) => RequestAction::Reply(reply),
                // The endpoint is answered here whatever failure_mode says: there is nothing
                // upstream to forward it to.
                Err(err) => RequestAction::Reply(self.unavailable(err, &mut counters, env)),
            };
        }
        if let Some(action) = crate::admin::action(&policy, head.method, head.path) {
            return self.admin_headers(action, head);
        }

        self.meter.post = head.method == "POST";
        self.meter.free_path =
            !policy.metering.free_paths.is_empty() && policy.metering.is_free(head.path);

        let identified = identify(&policy, head.headers);
        let remove_headers = match (&identified, policy.strip_virtual_key) {
            (Some(found), true) => vec![found.header.to_string()],
            _ => Vec::new(),
        };
        let Some(identified) = identified else {
            if !policy.require_virtual_key {
                self.stage = Stage::Bypass;
                return RequestAction::Continue { remove_headers };
            }
            let rejection = Rejection::new(
                RejectionKind::VirtualKeyRequired,
                key_required_message(&policy),
            );
            return self.refuse_or_bypass(rejection, &mut counters, env, remove_headers);
        };
        let Some(key_index) = identified.key else {
            let rejection = Rejection::new(
                RejectionKind::VirtualKeyNotFound,
                "the virtual key is not known",
            );
            return self.refuse_or_bypass(rejection, &mut counters, env, remove_headers);
        };
        let Some(key) = policy.keys.get(key_index) else {
            return RequestAction::Continue { remove_headers };
        };
        if let Some(rejection) = key_state(key, env.now) {
            if let Some(reply) = self.refuse(vec![rejection], &mut counters, env) {
                return RequestAction::Reply(reply);
            }
        }

        // Within this callback the order is docs/clients.md's: what is known of the provider
        // and model (provider header, a model named by the path) first, then the limits of
        // every level. The provider header wins over the path's provider.
        let provider = header_text(head.headers, &policy.provider_header);
        let (provider, model) = match path_model(head.path, &policy.metering.deployments) {
            PathModel::Named {
                provider: implied,
                model,
                bedrock,
            } => {
                self.meter.bedrock = bedrock;
                (provider.or_else(|| Some(implied.to_string())), Some(model))
            }
            PathModel::Unreadable => {
                if let Some(reply) =
                    self.unreadable_model(key_index, ModelPlace::Path, &mut counters, env)
                {
                    return RequestAction::Reply(reply);
                }
                (provider, None)
            }
            PathModel::None => (provider, None),
        };
        if provider.is_some() || model.is_some() {
            if let Some(reply) = self.target_rules(
                key_index,
                provider.as_deref(),
                model.as_deref(),
                true,
                &mut counters,
                env,
            ) {
                return RequestAction::Reply(reply);
            }
        }
        let judged = match (&provider, &model) {
            (_, Some(_)) => Judged::All,
            (Some(_), None) => Judged::Provider,
            (None, None) => Judged::Nothing,
        };

        // One allocation: collecting the chained iterator costs several times more, on
        // every request.
        let mut levels = policy.hierarchy_levels(key).concat();
        if !policy.per_values.is_empty() {
            if policy.fleet.is_some() {
                self.value_hashes = per_value::fleet_values(&policy, key, head.headers);
            } else {
                match self.claim_values(&policy, key, head.headers, &mut counters, env) {
                    Ok(limits) => levels.extend(limits),
                    Err(reply) => return RequestAction::Reply(reply),
                }
            }
        }
        // From here on, the counters of the request's `per_value` slots.
        let mut slot_store = None;
        let mut counters = if self.value_slots.is_empty() {
            counters
        } else {
            self.flush_conflicts(&counters, env);
            let store =
                per_value::store_with_slots(env.store, &policy, &self.value_slots, &mut slot_store);
            Counters::new(store, &policy.guard_key)
        };
        if policy.fleet.is_some() {
            // Every level is asked in one round once the request is known; a counter
            // remembered exhausted refuses now, before anything goes upstream.
            if let Some(reply) = self.remembered_refusal(&levels, &mut counters, env) {
                return RequestAction::Reply(reply);
            }
        } else {
            let refusals = match admission::check(
                &policy,
                &mut counters,
                env.now,
                &levels,
                self.evaluation(),
                &mut self.admission,
            ) {
                Ok(refusals) => refusals,
                Err(err) => match self.store_failure(err, &mut counters, env) {
                    Some(reply) => return RequestAction::Reply(reply),
                    None => Vec::new(),
                },
            };
            if let Some(reply) = self.refuse(refusals, &mut counters, env) {
                return RequestAction::Reply(reply);
            }
        }
        if !policy.in_flight.is_empty() {
            let caps = in_flight::hierarchy_caps(&policy, key);
            if let Some(reply) = self.take_in_flight(&caps, &mut counters, env) {
                return RequestAction::Reply(reply);
            }
        }

        if !head.end_of_stream {
            // Read whole even when the path named the model: its size and output cap are
            // what a response without usage is charged on.
            self.sniffer = Some(RequestSniffer::default());
            // Parsed in place: `header_text` would copy the value into a new string first.
            self.content_length = head
                .headers
                .get("content-length")
                .and_then(|value| std::str::from_utf8(&value).ok()?.trim().parse::<u64>().ok());
        }
        if model.is_some() || head.end_of_stream {
            // Everything is known now; the rules ran above for what was known.
            let action = self.resolve_target(
                key_index,
                provider,
                model,
                judged,
                head.end_of_stream,
                &mut counters,
                env,
            );
            if matches!(action, RequestAction::Reply(_)) {
                return action;
            }
            if !head.end_of_stream {
                self.plan_rewrite(head.path, env);
            }
            return match action {
                RequestAction::Call { calls, .. } => RequestAction::Call {
                    remove_headers,
                    calls,
                },
                _ => RequestAction::Continue { remove_headers },
            };
        }
        self.stage = Stage::AwaitingModel {
            key: key_index,
            provider,
            judged,
        };
        self.plan_rewrite(head.path, env);
        self.flush_conflicts(&counters, env);
        RequestAction::Continue { remove_headers }
    }

    pub fn on_request_body(
        &mut self,
        chunk: &[u8],
        end_of_stream: bool,
        env: &mut Env<'_>,
    ) -> RequestAction {
        if self.is_admin_body() {
            return self.admin_body(chunk, end_of_stream, env);
        }
        let pass = RequestAction::Continue {
            remove_headers: Vec::new(),
        };
        if let Some(sniffer) = self.sniffer.as_mut() {
            sniffer.feed(chunk);
        }
        // Envoy may pass the last bytes with end_of_stream false and end the stream with an
        // empty frame; by then an upstream that reads `content-length` bytes has the whole
        // request. So the body counts as complete at its last byte.
        let body_complete = end_of_stream
            || self
                .content_length
                .zip(self.sniffer.as_ref().map(RequestSniffer::body_bytes))
                .is_some_and(|(expected, seen)| seen >= expected);
        let body_model = if body_complete {
            self.body_complete(env)
        } else {
            self.check_rewrite_bound(env);
            BodyModel::Absent
        };
        match &self.stage {
            Stage::AwaitingModel {
                key,
                provider,
                judged,
            } => {
                // The last top-level "model" counts, so the model is known at the body's end.
                if !body_complete {
                    return pass;
                }
                let (key, provider, judged) = (*key, provider.clone(), *judged);
                let policy = Rc::clone(&self.policy);
                let mut slot_store = None;
                let store = per_value::store_with_slots(
                    env.store,
                    &policy,
                    &self.value_slots,
                    &mut slot_store,
                );
                let mut counters = Counters::new(store, &policy.guard_key);
                let model = match body_model {
                    BodyModel::Named(model) => Some(model),
                    BodyModel::Absent => None,
                    BodyModel::Unreadable => {
                        if let Some(reply) =
                            self.unreadable_model(key, ModelPlace::Body, &mut counters, env)
                        {
                            return RequestAction::Reply(reply);
                        }
                        None
                    }
                };
                let (provider, model) = split_provider(&policy, provider, model);
                // A provider from the header was judged at request headers
                // (`Judged::Provider`); one named by the model's prefix is judged now.
                self.resolve_target(
                    key,
                    provider,
                    model,
                    judged,
                    body_complete,
                    &mut counters,
                    env,
                )
            }
            Stage::AwaitingBody { model } if body_complete => {
                let model = model.clone();
                let policy = Rc::clone(&self.policy);
                let mut slot_store = None;
                let store = per_value::store_with_slots(
                    env.store,
                    &policy,
                    &self.value_slots,
                    &mut slot_store,
                );
                let mut counters = Counters::new(store, &policy.guard_key);
                self.admit(model, true, &mut counters, env)
            }
            _ => pass,
        }
    }

    /// Response headers of an admitted request: start scanning for usage, and return the
    /// quota headers to add.
    pub fn on_response_headers(
        &mut self,
        status: Option<u16>,
        content_type: Option<&str>,
        env: &mut Env<'_>,
    ) -> Vec<(String, String)> {
        let mut headers = Vec::new();
        self.on_response_headers_with(status, content_type, env, &mut |name, value| {
            headers.push((
                name.to_string(),
                String::from_utf8_lossy(value).into_owned(),
            ));
        });
        headers
    }

    /// [`Flow::on_response_headers`], handing each quota header to `add` as it is written
    /// (ASCII value bytes) instead of collecting them (what the glue uses: no allocation per
    /// header).
    pub fn on_response_headers_with(
        &mut self,
        status: Option<u16>,
        content_type: Option<&str>,
        env: &mut Env<'_>,
        add: &mut dyn FnMut(&'static str, &[u8]),
    ) {
        if !matches!(self.stage, Stage::Admitted { .. }) {
            return;
        }
        self.response_status = status;
        let format = content_type.map_or(BodyFormat::Json, BodyFormat::from_content_type);
        self.scanner = Some(UsageScanner::new(format));
        if self.policy.response_headers {
            emit_quota_headers(&self.policy, &self.admission.seen, env.now, add);
        }
        if let Some(cap) = self.meter.clamped_output {
            let mut value = Vec::with_capacity(20);
            crate::decimal::push_u64(&mut value, cap);
            add(OUTPUT_CLAMPED_HEADER, &value);
        }
    }

    pub fn on_response_body(&mut self, chunk: &[u8], end_of_stream: bool, env: &mut Env<'_>) {
        self.feed_response_body(chunk);
        if end_of_stream {
            self.charge(env);
            self.end_in_flight(env);
        }
    }

    /// A response-body chunk that is not the last: scanned only. Same as
    /// [`Flow::on_response_body`] with `end_of_stream` false, which needs no [`Env`].
    pub fn feed_response_body(&mut self, chunk: &[u8]) {
        if let Some(scanner) = self.scanner.as_mut() {
            scanner.feed(chunk);
            let len = u64::try_from(chunk.len()).unwrap_or(u64::MAX);
            self.meter.response_bytes = self.meter.response_bytes.saturating_add(len);
        }
    }

    /// Response trailers: the body has ended.
    pub fn on_response_trailers(&mut self, env: &mut Env<'_>) {
        self.charge(env);
        self.end_in_flight(env);
    }

    /// The stream is over (Envoy's `on_log`): charge what was seen if the body never ended;
    /// in-flight slots still held (client or upstream reset) go back.
    pub fn on_stream_end(&mut self, env: &mut Env<'_>) {
        self.charge(env);
        self.end_in_flight(env);
    }

    /// What the exchange was charged, once, after the callback that charged it (only with
    /// `filter_state` on).
    pub fn take_charge_record(&mut self) -> Option<Box<ChargeRecord>> {
        self.charge_record.take()
    }

    /// The body's last top-level `"model"` (or the model's place in the path) cannot be read
    /// as a name. Where a rule depends on the model (an allow-list, a provider config, or a
    /// budget that needs a price) the request is refused, since the upstream would run a
    /// model nobody judged; otherwise it goes on as a request that names no model.
    fn unreadable_model(
        &mut self,
        key_index: usize,
        place: ModelPlace,
        counters: &mut Counters<'_>,
        env: &mut Env<'_>,
    ) -> Option<LocalReply> {
        let policy = Rc::clone(&self.policy);
        let key = policy.keys.get(key_index)?;
        let budget_applies = policy.require_pricing
            && policy
                .hierarchy_limits(key)
                .any(|id| is_budget(&policy, id));
        // Per-model limits would be sidestepped by a model nobody can read.
        if key.allowed_models.is_none()
            && key.provider_configs.is_none()
            && !budget_applies
            && !policy.key_has_model_configs(key)
        {
            return None;
        }
        let message = match place {
            ModelPlace::Body => format!(
                "the request's model cannot be read: the last top-level \"model\" must be a \
                 string of 1 to {} bytes (virtual key '{}')",
                crate::usage::MODEL_MAX_BYTES,
                key.owner.id
            ),
            ModelPlace::Path => format!(
                "the model named in the request path cannot be read: it must be non-empty \
                 UTF-8 once percent-decoded (virtual key '{}')",
                key.owner.id
            ),
        };
        let rejection = Rejection::new(RejectionKind::ModelBlocked, message);
        self.refuse(vec![rejection], counters, env)
    }

    /// Whether the request is held for Limitador's answers (fleet mode).
    pub fn is_calling(&self) -> bool {
        matches!(self.stage, Stage::Calling { .. })
    }

    /// The key (index in [`Policy::keys`]) and provider the request was resolved to, once
    /// its rules have run (what the operators' tools report of a request).
    pub fn target(&self) -> Option<(usize, Option<&str>)> {
        let (key, provider) = self.target.as_ref()?;
        Some((*key, provider.as_deref()))
    }

    fn evaluation(&self) -> Evaluation {
        match self.policy.mode {
            Mode::Enforce => Evaluation::StopAtFirst,
            Mode::Shadow => Evaluation::All,
        }
    }

    /// The provider and model rules and pricing (docs/clients.md, order of checks: step 3)
    /// for what is known: `Some(reply)` when the request is refused. `check_provider` is
    /// false when the provider was already judged at request headers.
    fn target_rules(
        &mut self,
        key_index: usize,
        provider: Option<&str>,
        model: Option<&str>,
        check_provider: bool,
        counters: &mut Counters<'_>,
        env: &mut Env<'_>,
    ) -> Option<LocalReply> {
        let policy = Rc::clone(&self.policy);
        let key = policy.keys.get(key_index)?;
        let config = provider.and_then(|p| key.provider_config(p));
        let mut refusals = Vec::new();
        if check_provider && key.provider_configs.is_some() {
            match provider {
                Some(provider) if config.is_none() => refusals.push(Rejection::new(
                    RejectionKind::ProviderBlocked,
                    format!(
                        "provider '{provider}' is not allowed for virtual key '{}'",
                        key.owner.id
                    ),
                )),
                // Per-provider limits would be sidestepped by not saying the provider.
                None if model.is_some() => refusals.push(Rejection::new(
                    RejectionKind::ProviderBlocked,
                    format!(
                        "the provider of this request could not be determined, and virtual key '{}' \
                         allows only its configured providers: send the '{}' header or name the \
                         model as '<provider>/<model>'",
                        key.owner.id, policy.provider_header
                    ),
                )),
                _ => {}
            }
        }
        if let Some(model) = model {
            let by_key = key
                .allowed_models
                .as_ref()
                .is_none_or(|set| set.allows(model));
            let by_provider = config
                .and_then(|c| c.allowed_models.as_ref())
                .is_none_or(|set| set.allows(model));
            if !by_key || !by_provider {
                refusals.push(Rejection::new(
                    RejectionKind::ModelBlocked,
                    format!(
                        "model '{model}' is not allowed for virtual key '{}'",
                        key.owner.id
                    ),
                ));
            }
            let config_limits = config
                .map(|c| c.owner.limits.as_slice())
                .unwrap_or_default();
            let budget_applies = policy
                .hierarchy_limits(key)
                .chain(config_limits.iter().copied())
                .any(|id| is_budget(&policy, id))
                || policy
                    .model_limits(key, model)
                    .into_iter()
                    .any(|id| is_budget(&policy, id));
            if budget_applies && policy.require_pricing && policy.pricing.lookup(model).is_none() {
                refusals.push(Rejection::new(
                    RejectionKind::ModelNotPriced,
                    format!("model '{model}' has no pricing entry, and a budget applies to this request"),
                ));
            }
        }
        self.refuse(refusals, counters, env)
    }

    /// Once the model (or the end of the request body) is known: the rules not judged yet
    /// (`judged`: what request headers already covered), then the provider config's
    /// limits; then admitted.
    #[allow(
        clippy::too_many_arguments,
        reason = "what the request has revealed so far, plus the callback's environment"
    )]
    fn resolve_target(
        &mut self,
        key_index: usize,
        provider: Option<String>,
        model: Option<String>,
        judged: Judged,
        body_complete: bool,
        counters: &mut Counters<'_>,
        env: &mut Env<'_>,
    ) -> RequestAction {
        if judged != Judged::All {
            let check_provider = judged == Judged::Nothing;
            if let Some(reply) = self.target_rules(
                key_index,
                provider.as_deref(),
                model.as_deref(),
                check_provider,
                counters,
                env,
            ) {
                return RequestAction::Reply(reply);
            }
        }
        let policy = Rc::clone(&self.policy);
        let config = policy
            .keys
            .get(key_index)
            .and_then(|key| key.provider_config(provider.as_deref()?));
        self.target = Some((key_index, provider.clone()));
        if policy.has_model_configs {
            if let (Some(key), Some(model)) = (policy.keys.get(key_index), model.as_deref()) {
                self.model_limits = policy.model_limits(key, model);
            }
        }
        let config_limits = config.map(|c| c.owner.limits.as_slice());
        // The provider config's limits and the model configs' are checked together, in the
        // order of checks (request slots of every level first).
        let limits = match (config_limits, self.model_limits.is_empty()) {
            (None, true) => None,
            (Some(own), true) => Some(Cow::Borrowed(own)),
            (own, false) => Some(Cow::Owned(
                [own.unwrap_or_default(), &self.model_limits].concat(),
            )),
        };
        if let Some(limits) = limits.filter(|_| policy.fleet.is_none()) {
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
        }
        if let Some(cap) = config.and_then(|c| c.owner.in_flight) {
            if let Some(reply) = self.take_in_flight(&[Some(cap)], counters, env) {
                return RequestAction::Reply(reply);
            }
        }
        self.admit(model, body_complete, counters, env)
    }

    /// The last step: without reservations, admitted. With them, once the body is complete,
    /// the estimate is held on every token limit and budget (or the request is refused);
    /// until then the request waits in [`Stage::AwaitingBody`] (its frames pass on, the
    /// last one only after this decision).
    fn admit(
        &mut self,
        model: Option<String>,
        body_complete: bool,
        counters: &mut Counters<'_>,
        env: &mut Env<'_>,
    ) -> RequestAction {
        if self.policy.reservation.enabled && !body_complete {
            self.stage = Stage::AwaitingBody { model };
            self.flush_conflicts(counters, env);
            return RequestAction::Continue {
                remove_headers: Vec::new(),
            };
        }
        if self.policy.fleet.is_some() {
            return self.fleet_round(model, counters, env);
        }
        if self.policy.reservation.enabled {
            if let Some(reply) = self.reserve(model.as_deref(), counters, env) {
                return RequestAction::Reply(reply);
            }
        }
        self.admitted(model, counters, env)
    }

    /// The request stands: windows of counters it found unused open now.
    fn admitted(
        &mut self,
        model: Option<String>,
        counters: &mut Counters<'_>,
        env: &mut Env<'_>,
    ) -> RequestAction {
        let unused = std::mem::take(&mut self.admission.unused);
        if let Err(err) = admission::start_unused(&self.policy, counters, &unused) {
            // The charge at the response's end starts the window then: not worth a refusal.
            log::warn!("#{} could not start a window: {err}", self.context_id);
            env.metrics.add(Metric::StoreFailures, 1);
        }
        self.stage = Stage::Admitted { model };
        env.metrics.add(Metric::Admitted, 1);
        self.flush_conflicts(counters, env);
        RequestAction::Continue {
            remove_headers: Vec::new(),
        }
    }

    /// docs/reservations.md: the estimate of a request whose body has been read, held on its
    /// token limits and budgets at every level (provider config first). A request without a body
    /// has nothing to estimate from and holds nothing. `Some(reply)` when refused.
    fn reserve(
        &mut self,
        model: Option<&str>,
        counters: &mut Counters<'_>,
        env: &mut Env<'_>,
    ) -> Option<LocalReply> {
        let estimate = self.estimate(model)?;
        let policy = Rc::clone(&self.policy);
        let mut limits = self.admission.chargeable.clone();
        // Level order, as docs/clients.md checks them: provider config, key, team, customer.
        limits.sort_by_key(|id| policy.limits.get(*id).map(|l| l.owner_kind));
        let mut refusals = match admission::reserve(
            &policy,
            counters,
            env.now,
            &limits,
            &estimate,
            self.evaluation(),
            &mut self.admission,
        ) {
            Ok(refusals) => refusals,
            Err(err) => return self.store_failure(err, counters, env),
        };
        if !refusals.is_empty() && self.meter.clamp.is_some() {
            let price = model.and_then(|m| policy.pricing.lookup(m));
            if self.clamp_to_room(price, &limits, &estimate, counters, env) {
                refusals.clear();
            }
        }
        self.refuse(refusals, counters, env)
    }

    /// The request's estimate, computed once from its body (which must have been read
    /// whole); `None` for a request without a body.
    fn estimate(&mut self, model: Option<&str>) -> Option<Estimate> {
        if self.estimate.is_none() {
            let size = self.meter.request?;
            let price = model.and_then(|m| self.policy.pricing.lookup(m));
            self.estimate = Some(Estimate::of_request(
                &self.policy.reservation,
                size.bytes,
                size.max_output_tokens,
                price,
            ));
        }
        self.estimate
    }

    fn flush_conflicts(&self, counters: &Counters<'_>, env: &mut Env<'_>) {
        let conflicts = counters.conflicts();
        if conflicts > 0 {
            env.metrics.add(Metric::CasConflicts, conflicts);
        }
    }
}

/// Where a request names its model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ModelPlace {
    Body,
    Path,
}

fn is_budget(policy: &Policy, id: LimitId) -> bool {
    policy
        .limits
        .get(id)
        .is_some_and(|l| l.kind == LimitKind::Budget)
}

fn key_state(key: &VirtualKey, now: i64) -> Option<Rejection> {
    if !key.active {
        return Some(Rejection::new(
            RejectionKind::VirtualKeyBlocked,
            format!("virtual key '{}' is blocked", key.owner.id),
        ));
    }
    if key.expires_at.is_some_and(|at| now >= at) {
        return Some(Rejection::new(
            RejectionKind::VirtualKeyExpired,
            format!("virtual key '{}' has expired", key.owner.id),
        ));
    }
    None
}

fn header_text(headers: &dyn RequestHeaders, name: &str) -> Option<String> {
    let value = headers.get(name)?;
    std::str::from_utf8(&value)
        .ok()
        .map(|text| text.trim().to_string())
        .filter(|text| !text.is_empty())
}

/// The provider and model of a whole request, read as the callbacks above read them: the
/// provider header, else the provider a path implies; the model a path names, else the
/// body's last top-level `"model"`; then a configured provider's prefix split off the model.
/// For the operators' `explain`, which shows them even for a request refused before the
/// flow got to them.
pub fn provider_and_model(
    policy: &Policy,
    head: &RequestHead<'_>,
    body: &[u8],
) -> (Option<String>, Option<String>) {
    let provider = header_text(head.headers, &policy.provider_header);
    let (provider, named) = match path_model(head.path, &policy.metering.deployments) {
        PathModel::Named {
            provider: implied,
            model,
            ..
        } => (provider.or_else(|| Some(implied.to_string())), Some(model)),
        PathModel::Unreadable | PathModel::None => (provider, None),
    };
    let model = named.or_else(|| {
        let mut sniffer = RequestSniffer::default();
        sniffer.feed(body);
        match sniffer.model() {
            BodyModel::Named(model) => Some(model),
            BodyModel::Absent | BodyModel::Unreadable => None,
        }
    });
    split_provider(policy, provider, model)
}

/// Splits `provider/model` when the prefix is a configured provider; the provider header,
/// when given, wins over the prefix.
fn split_provider(
    policy: &Policy,
    provider: Option<String>,
    model: Option<String>,
) -> (Option<String>, Option<String>) {
    let Some(model) = model else {
        return (provider, None);
    };
    // A byte loop rather than `split_once` (memchr): model names are short, and this runs
    // on every request that names one. `/` is ASCII, so both sides are whole characters.
    let slash = model.bytes().position(|b| b == b'/');
    if let Some((prefix, rest)) =
        slash.and_then(|at| Some((model.get(..at)?, model.get(at.checked_add(1)?..)?)))
    {
        if policy.providers.contains(prefix) && !rest.is_empty() {
            return (
                provider.or_else(|| Some(prefix.to_string())),
                Some(rest.to_string()),
            );
        }
    }
    (provider, Some(model))
}

mod admin;
mod clamp;
mod fleet;
mod in_flight;
mod metering;
mod per_value;
mod refusal;
mod settle;
#[cfg(test)]
mod tests;
