//! The HTTP API under `/api/v1` (JSON, `Authorization: Bearer ADMIN_TOKEN`) and the health
//! endpoints. The CLI's client commands are thin wrappers around it.
//!
//! Handlers read from the store and shape JSON; those that deploy (manual deploy, rollback,
//! replay) store a new delivery through the same group-commit path as hooks, so planning treats
//! them alike. Cancel changes the deployment in the store and stops its run through the lanes'
//! [`crate::lanes::Running`]. The outbox (`notifications.rs`) lists notifications and queues
//! a dead one again. `live.rs` serves the live API (Server-Sent Events): the events of the
//! live hub and a deployment's log as it grows. `metrics.rs` serves `/metrics` and `/readyz`.

mod alerts;
mod live;
mod metrics;
pub(crate) mod notifications;

use std::sync::Arc;

use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::deploylog;
use crate::plan::Modifiers;
use crate::shared::Shared;
use crate::store::{
    CancelOutcome, Delivery, DeliveryStatus, Deployment, Inserted, ListFilter, NewDelivery, now_ms,
};
use crate::timefmt::json_time;

/// The scheme recorded on deliveries the API stores (deploy, rollback): the admin token.
const ADMIN_SCHEME: &str = "admin_token";

const DEFAULT_LIMIT: i64 = 100;
const MAX_LIMIT: i64 = 10_000;

/// An API failure: a status code and a message for the caller.
pub(crate) struct ApiError(pub(crate) StatusCode, pub(crate) String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({"error": self.1}))).into_response()
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> ApiError {
        tracing::error!(error = %e, "store error in API call");
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "the store is unavailable".into(),
        )
    }
}

fn not_found(what: &str) -> ApiError {
    ApiError(StatusCode::NOT_FOUND, format!("{what} not found"))
}

type ApiResult = Result<Response, ApiError>;

/// Every route of this module (on the main listener when there is no `server.admin_listen`).
pub(crate) fn router(shared: Arc<Shared>) -> Router<Arc<Shared>> {
    admin_router(shared).merge(health_router())
}

/// `/healthz` and `/readyz`: on every listener.
pub(crate) fn health_router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(metrics::readyz))
}

/// The API and `/metrics`: on the admin listener when `server.admin_listen` is set.
pub(crate) fn admin_router(shared: Arc<Shared>) -> Router<Arc<Shared>> {
    let api = Router::new()
        .route("/alerts", get(alerts::list))
        .route("/apps", get(apps))
        .route("/apps/{app}/deploy", post(deploy))
        .route("/apps/{app}/services/{service}/rollback", post(rollback))
        .route("/status", get(status_of))
        .route("/deliveries", get(deliveries))
        .route("/deliveries/{id}", get(delivery))
        .route("/deliveries/{id}/replay", post(replay))
        .route("/deployments", get(deployments))
        .route("/deployments/{id}", get(deployment))
        .route("/deployments/{id}/logs", get(logs))
        .route("/deployments/{id}/cancel", post(cancel))
        .route("/events", get(live::events))
        .route("/notifications", get(notifications::list))
        .route("/notifications/{id}", get(notifications::one))
        .route("/notifications/{id}/retry", post(notifications::retry))
        .layer(middleware::from_fn_with_state(shared, require_admin));
    Router::new()
        .nest("/api/v1", api)
        .route("/metrics", get(metrics::metrics))
}

/// Refuses API calls without the admin bearer token (compared in constant time) — or, for
/// GET and HEAD only, the dashboard's session cookie (`crate::session`), so its pages can
/// follow events and logs. Never for POST: a cookie rides along on cross-site requests.
async fn require_admin(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let admin = shared.config.server.admin_token.as_ref();
    let reads = matches!(
        *req.method(),
        axum::http::Method::GET | axum::http::Method::HEAD
    );
    if reads && shared.sessions.check(admin, req.headers()).is_some() {
        return next.run(req).await;
    }
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let ok = match (&shared.config.server.admin_token, given) {
        (Some(expected), Some(given)) => expected.matches(given.as_bytes()),
        _ => false,
    };
    if !ok {
        let message = if shared.config.server.admin_token.is_none() {
            "the API is disabled: set server.admin_token in the config"
        } else {
            "missing or wrong admin token (Authorization: Bearer …)"
        };
        let mut r = ApiError(StatusCode::UNAUTHORIZED, message.into()).into_response();
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        return r;
    }
    next.run(req).await
}

async fn apps(State(shared): State<Arc<Shared>>) -> Json<Value> {
    let apps: Vec<Value> = shared
        .config
        .apps
        .values()
        .map(|a| {
            let services: Vec<Value> = a
                .services
                .values()
                .map(|s| {
                    json!({
                        "name": s.name,
                        "executor": s.executor.kind(),
                        "git": s.git.as_ref().map(|g| json!({"repo": g.repo, "branch": g.branch})),
                        "timeout_secs": s.timeout.as_secs(),
                    })
                })
                .collect();
            json!({"name": a.name, "services": services, "profiles": a.profiles.keys().collect::<Vec<_>>()})
        })
        .collect();
    Json(json!({ "apps": apps }))
}

#[derive(Deserialize)]
struct ListQuery {
    app: Option<String>,
    service: Option<String>,
    state: Option<String>,
    before: Option<i64>,
    limit: Option<i64>,
}

impl ListQuery {
    /// The store's filter; an unknown `state` is a 400 naming the known ones.
    fn filter(self) -> Result<ListFilter, ApiError> {
        let limit = self.limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                format!("limit must be between 1 and {MAX_LIMIT}"),
            ));
        }
        Ok(ListFilter {
            app: self.app,
            service: self.service,
            state: self.state.map(|s| s.parse()).transpose().map_err(
                |e: crate::states::UnknownState| ApiError(StatusCode::BAD_REQUEST, e.to_string()),
            )?,
            before: self.before,
            limit,
        })
    }
}

fn delivery_json(d: &Delivery, deployments: &[i64]) -> Value {
    json!({
        "id": d.id,
        "app": d.app,
        "source": d.source,
        "event": d.event,
        "source_delivery_id": d.source_delivery_id,
        "received_at": json_time(Some(d.received_at)),
        "verified": d.verified,
        "scheme": d.scheme,
        "status": d.status,
        "error": d.error,
        "query": d.query,
        "replay_of": d.replay_of,
        "note": d.note,
        "deployments": deployments,
    })
}

async fn deliveries(State(shared): State<Arc<Shared>>, Query(q): Query<ListQuery>) -> ApiResult {
    // `state` filters deployments; deliveries ignore it, as they always have.
    let f = ListQuery { state: None, ..q }.filter()?;
    let list = shared.store.deliveries(&f).await?;
    // One query for the whole page's deployment ids, not one per delivery.
    let ids = match (list.last(), list.first()) {
        (Some(lo), Some(hi)) => shared.store.deployment_ids_between(lo.id, hi.id).await?,
        _ => Default::default(),
    };
    let items: Vec<Value> = list
        .iter()
        .map(|d| delivery_json(d, ids.get(&d.id).map(Vec::as_slice).unwrap_or(&[])))
        .collect();
    let next = (list.len() as i64 == f.limit)
        .then(|| list.last().map(|d| d.id))
        .flatten();
    Ok(Json(json!({"deliveries": items, "next_before": next})).into_response())
}

/// One delivery: the inspection (`crate::inspect`: request, verification, parsed event,
/// outcomes, duplicates), plus the flat fields this route served before it, so older
/// clients read what they always did.
async fn delivery(State(shared): State<Arc<Shared>>, Path(id): Path<i64>) -> ApiResult {
    let i = crate::inspect::inspect(&shared, id)
        .await?
        .ok_or_else(|| not_found("delivery"))?;
    let deployments: Vec<i64> = i.outcomes.deployments.iter().map(|d| d.id).collect();
    let body = &i.request.body;
    let old = json!({
        "verified": i.verification.verified,
        "scheme": i.verification.scheme,
        "deployments": deployments,
        "headers": i.request.headers,
        "body": body.raw,
        // A refused delivery keeps only the start of its body: say so, and how large it was.
        "body_truncated": body.truncated,
        "body_size": body.size,
    });
    let mut v = serde_json::to_value(&i)
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    if let (Value::Object(out), Value::Object(old)) = (&mut v, old) {
        out.extend(old);
    }
    Ok(Json(v).into_response())
}

async fn deployments(State(shared): State<Arc<Shared>>, Query(q): Query<ListQuery>) -> ApiResult {
    let f = q.filter()?;
    let list = shared.store.deployments(&f).await?;
    let next = (list.len() as i64 == f.limit)
        .then(|| list.last().map(|d| d.id))
        .flatten();
    let items: Vec<Value> = list.iter().map(Deployment::json).collect();
    Ok(Json(json!({"deployments": items, "next_before": next})).into_response())
}

async fn deployment(State(shared): State<Arc<Shared>>, Path(id): Path<i64>) -> ApiResult {
    let d = shared
        .store
        .deployment(id)
        .await?
        .ok_or_else(|| not_found("deployment"))?;
    let mut v = d.json();
    let steps = shared.store.steps_of(id).await?;
    v["steps"] = steps.iter().map(crate::store::Step::json).collect();
    Ok(Json(v).into_response())
}

#[derive(Deserialize)]
struct LogQuery {
    offset: Option<u64>,
}

/// The log as plain text. `?offset=N` returns what follows byte N; the `X-Ferry-Log-Offset` and
/// `X-Ferry-Deployment-State` headers let a client follow a running deployment. With
/// `Accept: text/event-stream`, the live log (`live::log_events`).
async fn logs(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<i64>,
    Query(q): Query<LogQuery>,
    headers: axum::http::HeaderMap,
) -> ApiResult {
    if live::wants_events(&headers) {
        return live::log_events(&shared, id, &headers, q.offset).await;
    }
    let d = shared
        .store
        .deployment(id)
        .await?
        .ok_or_else(|| not_found("deployment"))?;
    const MAX: usize = 16 * 1024 * 1024;
    let offset = q.offset.unwrap_or(0);
    // This replica's file; else (replicas: another one ran it) the store's copy.
    let read = match live::log_file(&shared, id).await {
        Some(path) => deploylog::read_from(&path, offset, MAX)
            .await
            .map_err(|e| e.to_string()),
        None => shared
            .store
            .read_log(id, offset, MAX)
            .await
            .map_err(|e| e.to_string()),
    };
    let (bytes, offset) = read.map_err(|e| {
        ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot read log: {e}"),
        )
    })?;
    Ok((
        [
            (
                header::CONTENT_TYPE,
                "text/plain; charset=utf-8".to_string(),
            ),
            (
                header::HeaderName::from_static("x-ferry-log-offset"),
                offset.to_string(),
            ),
            (
                header::HeaderName::from_static("x-ferry-deployment-state"),
                d.state.as_str().to_string(),
            ),
        ],
        bytes,
    )
        .into_response())
}

/// `POST /api/v1/deployments/ID/cancel`: a queued deployment is `cancelled` at once (200) and
/// never runs; a running one is stopped like a timeout — its process group killed, a container
/// replacement rolled back — and then recorded `cancelled` (202: the JSON still says
/// `running`). A deployment that has ended is a 409 naming its state.
pub(crate) async fn cancel(State(shared): State<Arc<Shared>>, Path(id): Path<i64>) -> ApiResult {
    let outcome = shared
        .store
        .cancel(id)
        .await?
        .ok_or_else(|| not_found("deployment"))?;
    match outcome {
        CancelOutcome::Dequeued(d) => {
            tracing::info!(deployment = id, app = %d.app, service = %d.service, "queued deployment cancelled");
            Ok(Json(d.json()).into_response())
        }
        CancelOutcome::Stopping(d) => {
            // Not found here only when the run has just ended: its outcome stands.
            let stopping = shared.running.stop(id, CANCEL_REQUESTED);
            tracing::info!(deployment = id, app = %d.app, service = %d.service, stopping, "cancelling running deployment");
            Ok((StatusCode::ACCEPTED, Json(d.json())).into_response())
        }
        CancelOutcome::AlreadyFinal(d) => Err(ApiError(
            StatusCode::CONFLICT,
            format!("deployment {id} has already ended: it is {}", d.state),
        )),
    }
}

/// Why a cancelled run stopped, as its log says.
const CANCEL_REQUESTED: &str = "requested through the API";

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DeployRequest {
    services: Option<Vec<String>>,
    profile: Option<String>,
    #[serde(rename = "ref")]
    git_ref: Option<String>,
}

pub(crate) async fn deploy(
    State(shared): State<Arc<Shared>>,
    Path(app_name): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult {
    let app = shared
        .config
        .apps
        .get(&app_name)
        .ok_or_else(|| not_found("app"))?;
    let req: DeployRequest = optional_json(&body, "deploy")?;
    let modifiers = Modifiers {
        services: req.services.filter(|s| !s.is_empty()),
        profile: req.profile,
        git_ref: req.git_ref,
    };
    modifiers
        .validate(app)
        .map_err(|m| ApiError(StatusCode::BAD_REQUEST, m))?;
    let manual = crate::sources::Source::Manual.as_str();
    let delivery = NewDelivery {
        scheme: Some(ADMIN_SCHEME.into()),
        query: Some(modifiers.to_query()).filter(|q| !q.is_empty()),
        ..NewDelivery::internal(&app.name, manual, "manual", body)
    };
    store_new(&shared, delivery).await
}

/// A request body that may be empty (all defaults) or JSON; anything else is a 400 naming
/// `what` and the JSON error.
fn optional_json<T: serde::de::DeserializeOwned + Default>(
    body: &[u8],
    what: &str,
) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("invalid {what} request: {e}"),
        )
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RollbackBody {
    /// Go back to this deployment's version instead of the previous successful one.
    to: Option<i64>,
}

/// `POST /api/v1/apps/APP/services/SERVICE/rollback`: stores a rollback request like a hook
/// delivery; the planner resolves the version to go back to (the previous success, or `to`).
pub(crate) async fn rollback(
    State(shared): State<Arc<Shared>>,
    Path((app_name, service)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> ApiResult {
    let app = shared
        .config
        .apps
        .get(&app_name)
        .ok_or_else(|| not_found("app"))?;
    if !app.services.contains_key(&service) {
        return Err(not_found("service"));
    }
    let req: RollbackBody = optional_json(&body, "rollback")?;
    let stored = crate::sources::RollbackRequest {
        service,
        to: req.to,
    };
    let body = serde_json::to_vec(&stored)
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let manual = crate::sources::Source::Manual.as_str();
    let event = crate::sources::ROLLBACK_EVENT;
    let delivery = NewDelivery {
        scheme: Some(ADMIN_SCHEME.into()),
        ..NewDelivery::internal(&app.name, manual, event, body.into())
    };
    store_new(&shared, delivery).await
}

pub(crate) async fn replay(State(shared): State<Arc<Shared>>, Path(id): Path<i64>) -> ApiResult {
    let original = shared
        .store
        .delivery(id)
        .await?
        .ok_or_else(|| not_found("delivery"))?;
    let d = &original.delivery;
    if let Some(e) = &original.unreadable {
        return Err(ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("delivery {id}'s stored body cannot be read ({e}); it cannot be replayed"),
        ));
    }
    if d.status == DeliveryStatus::Rejected {
        return Err(ApiError(
            StatusCode::CONFLICT,
            format!(
                "delivery {id} was rejected ({}); it cannot be replayed",
                d.error.clone().unwrap_or_default()
            ),
        ));
    }
    let delivery = NewDelivery {
        app: d.app.clone(),
        source: d.source.clone(),
        event: d.event.clone(),
        source_delivery_id: d.source_delivery_id.clone(),
        dedupe_key: None,
        received_at: now_ms(),
        verified: d.verified,
        // What verified the original: a replay is the same request again, stored by the API.
        scheme: d.scheme.clone(),
        status: DeliveryStatus::Received,
        error: None,
        query: d.query.clone(),
        headers: original.headers.clone(),
        body: original.body.into(),
        replay_of: Some(id),
        refused_with: None,
    };
    store_new(&shared, delivery).await
}

async fn store_new(shared: &Shared, delivery: NewDelivery) -> ApiResult {
    let app = delivery.app.clone();
    let source = delivery.source.clone();
    match shared.intake.insert(delivery).await? {
        Inserted::New(id) | Inserted::Duplicate(id) => {
            tracing::info!(delivery = id, %app, %source, "delivery accepted");
            Ok(crate::ingress::accepted(
                &shared.config.server.public_url,
                id,
            ))
        }
    }
}

#[derive(Deserialize)]
struct StatusQuery {
    app: Option<String>,
}

/// A service's `reconcile` schedule: its interval and when it is next due as things stand
/// (`null`: never succeeded, nothing to reconcile; a time just past: due, being stored or
/// planned).
async fn reconcile_json(
    shared: &Shared,
    app: &str,
    service: &str,
    every: std::time::Duration,
) -> Result<Value, ApiError> {
    let clock = shared.store.reconcile_clock(app, service).await?;
    Ok(json!({
        "every": humantime::format_duration(every).to_string(),
        "next_at": json_time(crate::reconcile::next_due(&clock, every)),
    }))
}

/// Every configured service with its current version (newest success), newest deployment and,
/// with `reconcile`, its schedule.
async fn status_of(State(shared): State<Arc<Shared>>, Query(q): Query<StatusQuery>) -> ApiResult {
    if let Some(a) = &q.app
        && !shared.config.apps.contains_key(a)
    {
        return Err(not_found("app"));
    }
    // Two indexed lookups per configured service: flat however long the history is.
    let mut services = Vec::new();
    for app in shared.config.apps.values() {
        if q.app.as_ref().is_some_and(|a| *a != app.name) {
            continue;
        }
        for (s, svc) in &app.services {
            let current = shared.store.current_of(&app.name, s).await?;
            let latest = shared.store.latest_of(&app.name, s).await?;
            let reconcile = match svc.reconcile {
                Some(every) => Some(reconcile_json(&shared, &app.name, s, every).await?),
                None => None,
            };
            services.push(json!({
                "app": app.name,
                "service": s,
                "current": current.as_ref().map(Deployment::json),
                "latest": latest.as_ref().map(Deployment::json),
                "reconcile": reconcile,
            }));
        }
    }
    Ok(Json(json!({ "services": services })).into_response())
}
