//! limitador-server's HTTP API, with its request and response shapes:
//!
//! | route | answer |
//! |---|---|
//! | `GET /status` | 200, JSON `{started_at, config_applied_at, config_version, config_err_since}` |
//! | `GET /limits/{namespace}` | 200, JSON list of limits (`id, namespace, max_value, seconds, name, conditions, variables`) |
//! | `GET /counters/{namespace}` | 200, JSON list of `{limit, set_variables, remaining, expires_in_seconds}`; 500 `Internal server error` |
//! | `POST /check` | 200 `null` when `delta` fits every limit that applies; 429 `Too many requests` (text); 500 |
//! | `POST /report` | 200 `null` (never refused); 500 |
//! | `POST /check_and_report` | 200 / 429 with a JSON `null` body; the `X-RateLimit-*` headers when `response_headers` is `"DraftVersion03"`; 500 `null` |
//!
//! A body that is not the JSON `{namespace, values, delta, response_headers?}` (or lacks the
//! `application/json` content type) is refused with 400 by actix-web's JSON extractor, as in
//! limitador-server. Unknown paths and methods answer 404.

use actix_web::http::StatusCode;
use actix_web::web::{self, Data, Json};
use actix_web::{HttpResponse, HttpResponseBuilder, ResponseError};
use chrono::{NaiveDateTime, Utc};
use limitador::counter::Counter as LimitadorCounter;
use limitador::errors::LimitadorError;
use limitador::limit::{Context, Limit as LimitadorLimit, Namespace};
use limitador::{AsyncRateLimiter, CheckResult};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::future::Future;
use std::sync::{Arc, RwLock};
use tokio::runtime::Handle;

/// The body of `/check`, `/report` and `/check_and_report`.
#[derive(Debug, Deserialize)]
pub struct CheckAndReportInfo {
    pub namespace: String,
    /// Bound as `descriptors[0]` for the limits' conditions and variables.
    pub values: HashMap<String, String>,
    pub delta: u64,
    /// `"DraftVersion03"` asks `/check_and_report` for the rate-limit headers.
    pub response_headers: Option<String>,
}

/// A limit as the API shows it.
#[derive(Debug, Serialize)]
pub struct Limit {
    id: Option<String>,
    namespace: String,
    max_value: u64,
    seconds: u64,
    name: Option<String>,
    conditions: Vec<String>,
    variables: Vec<String>,
}

impl From<&LimitadorLimit> for Limit {
    fn from(limit: &LimitadorLimit) -> Self {
        Self {
            id: limit.id().map(str::to_string),
            namespace: limit.namespace().as_ref().to_string(),
            max_value: limit.max_value(),
            seconds: limit.seconds(),
            name: limit.name().map(str::to_string),
            conditions: limit.conditions().into_iter().collect(),
            variables: limit.variables().into_iter().collect(),
        }
    }
}

/// A counter as the API shows it.
#[derive(Debug, Serialize)]
pub struct Counter {
    limit: Limit,
    set_variables: BTreeMap<String, String>,
    remaining: Option<u64>,
    expires_in_seconds: Option<u64>,
}

impl From<&LimitadorCounter> for Counter {
    fn from(counter: &LimitadorCounter) -> Self {
        Self {
            limit: counter.limit().into(),
            set_variables: counter.set_variables().clone(),
            remaining: counter.remaining(),
            expires_in_seconds: counter.expires_in().map(|d| d.as_secs()),
        }
    }
}

/// What `/status` reports: when the server started, when the limits file was last applied,
/// how many times it was reloaded successfully, and how many reloads failed since.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Status {
    pub started_at: NaiveDateTime,
    pub config_applied_at: NaiveDateTime,
    pub config_version: u64,
    pub config_err_since: u64,
}

impl Status {
    pub fn config_success(&mut self) {
        self.config_applied_at = Utc::now().naive_utc();
        self.config_version = self.config_version.saturating_add(1);
        self.config_err_since = 0;
    }

    pub fn config_failure(&mut self) {
        self.config_err_since = self.config_err_since.saturating_add(1);
    }
}

impl Default for Status {
    fn default() -> Self {
        let now = Utc::now().naive_utc();
        Self {
            started_at: now,
            config_applied_at: now,
            config_version: 0,
            config_err_since: 0,
        }
    }
}

/// What every handler shares.
pub struct AppState {
    pub limiter: Arc<AsyncRateLimiter>,
    pub status: Arc<RwLock<Status>>,
    /// The runtime the limiter's Redis connection lives on; every library call runs there.
    pub storage: Handle,
}

impl AppState {
    /// Runs one library call on the storage runtime. Its error, or a panic inside the
    /// library, comes back as a message (the handler answers 500).
    async fn on_storage<T, F>(
        &self,
        call: impl FnOnce(Arc<AsyncRateLimiter>) -> F,
    ) -> Result<T, String>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, LimitadorError>> + Send + 'static,
    {
        let call = call(Arc::clone(&self.limiter));
        // The library's error is not `Send`: it becomes its message on the storage runtime.
        let task = self
            .storage
            .spawn(async move { call.await.map_err(|e| e.to_string()) });
        match task.await {
            Ok(outcome) => outcome,
            Err(e) => Err(format!("the limitador library failed: {e}")),
        }
    }
}

/// The refusals `/check`, `/report` and `/counters` answer with a plain-text body.
#[derive(Debug)]
enum ErrorResponse {
    TooManyRequests,
    InternalServerError,
}

impl fmt::Display for ErrorResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::TooManyRequests => "Too many requests",
            Self::InternalServerError => "Internal server error",
        })
    }
}

impl ResponseError for ErrorResponse {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            Self::InternalServerError => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// The request's values as the limits see them: `descriptors[0].<key>`.
fn context_of<'a>(values: HashMap<String, String>) -> Context<'a> {
    let mut ctx = Context::default();
    ctx.list_binding("descriptors".to_string(), vec![values]);
    ctx
}

async fn status(state: Data<AppState>) -> Json<Status> {
    let status = match state.status.read() {
        Ok(guard) => *guard,
        Err(poisoned) => *poisoned.into_inner(),
    };
    Json(status)
}

async fn get_limits(state: Data<AppState>, namespace: web::Path<String>) -> Json<Vec<Limit>> {
    let namespace: Namespace = namespace.into_inner().into();
    let limits = state.limiter.get_limits(&namespace);
    Json(limits.iter().map(Limit::from).collect())
}

async fn get_counters(
    state: Data<AppState>,
    namespace: web::Path<String>,
) -> Result<Json<Vec<Counter>>, ErrorResponse> {
    let namespace: Namespace = namespace.into_inner().into();
    let counters = state
        .on_storage(|limiter| async move { limiter.get_counters(&namespace).await })
        .await;
    match counters {
        Ok(counters) => Ok(Json(counters.iter().map(Counter::from).collect())),
        Err(e) => {
            eprintln!("GET /counters: {e}");
            Err(ErrorResponse::InternalServerError)
        }
    }
}

async fn check(
    state: Data<AppState>,
    request: Json<CheckAndReportInfo>,
) -> Result<Json<()>, ErrorResponse> {
    let CheckAndReportInfo {
        namespace,
        values,
        delta,
        response_headers: _,
    } = request.into_inner();
    let limited = state
        .on_storage(|limiter| async move {
            let ctx = context_of(values);
            let result = limiter
                .is_rate_limited(&namespace.into(), &ctx, delta)
                .await?;
            Ok(result.limited)
        })
        .await;
    match limited {
        Ok(true) => Err(ErrorResponse::TooManyRequests),
        Ok(false) => Ok(Json(())),
        Err(e) => {
            eprintln!("POST /check: {e}");
            Err(ErrorResponse::InternalServerError)
        }
    }
}

async fn report(
    state: Data<AppState>,
    request: Json<CheckAndReportInfo>,
) -> Result<Json<()>, ErrorResponse> {
    let CheckAndReportInfo {
        namespace,
        values,
        delta,
        response_headers: _,
    } = request.into_inner();
    let counted = state
        .on_storage(|limiter| async move {
            let ctx = context_of(values);
            limiter
                .update_counters(&namespace.into(), &ctx, delta)
                .await
        })
        .await;
    match counted {
        Ok(()) => Ok(Json(())),
        Err(e) => {
            eprintln!("POST /report: {e}");
            Err(ErrorResponse::InternalServerError)
        }
    }
}

async fn check_and_report(
    state: Data<AppState>,
    request: Json<CheckAndReportInfo>,
) -> HttpResponse {
    let CheckAndReportInfo {
        namespace,
        values,
        delta,
        response_headers,
    } = request.into_inner();
    let outcome = state
        .on_storage(|limiter| async move {
            let ctx = context_of(values);
            limiter
                .check_rate_limited_and_update(&namespace.into(), &ctx, delta)
                .await
        })
        .await;
    let mut result = match outcome {
        Ok(result) => result,
        Err(e) => {
            eprintln!("POST /check_and_report: {e}");
            return HttpResponse::InternalServerError().json(());
        }
    };
    let mut reply = if result.limited {
        HttpResponse::TooManyRequests()
    } else {
        HttpResponse::Ok()
    };
    if let Some(kind) = response_headers {
        add_rate_limit_headers(&mut reply, &kind, &mut result);
    }
    reply.json(())
}

/// `X-RateLimit-Limit`, `-Remaining` and `-Reset` of the most restrictive counter
/// (draft-polli-ratelimit-headers-03), only for `"DraftVersion03"`; any other value adds
/// nothing, as in limitador-server.
fn add_rate_limit_headers(reply: &mut HttpResponseBuilder, kind: &str, result: &mut CheckResult) {
    if kind != "DraftVersion03" {
        return;
    }
    let headers = result.response_header();
    if let Some(limit) = headers.get("X-RateLimit-Limit") {
        reply.insert_header(("X-RateLimit-Limit", limit.clone()));
    }
    if let Some(remaining) = headers.get("X-RateLimit-Remaining") {
        reply.insert_header(("X-RateLimit-Remaining", remaining.clone()));
        if let Some(reset) = headers.get("X-RateLimit-Reset") {
            reply.insert_header(("X-RateLimit-Reset", reset.clone()));
        }
    }
}

/// Registers the routes (limitador-server's, less `/metrics` and `/api/spec`).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/status", web::get().to(status))
        .route("/limits/{namespace}", web::get().to(get_limits))
        .route("/counters/{namespace}", web::get().to(get_counters))
        .route("/check_and_report", web::post().to(check_and_report))
        .route("/check", web::post().to(check))
        .route("/report", web::post().to(report));
}
