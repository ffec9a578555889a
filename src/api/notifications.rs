//! `/api/v1/notifications`: the outbox as users see it (what was sent, what waits, what is
//! dead) and the manual retry of a dead one. No URL or secret is served: a notification names
//! its receiver by `scheme://host[:port]` and its queue by `target`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, ApiResult, DEFAULT_LIMIT, MAX_LIMIT, not_found};
use crate::shared::Shared;
use crate::states::NotificationState;
use crate::store::{Notification, NotificationFilter, RetryOutcome, now_ms};
use crate::timefmt::json_time;

#[derive(Deserialize)]
pub(super) struct NotificationQuery {
    state: Option<String>,
    app: Option<String>,
    before: Option<i64>,
    limit: Option<i64>,
}

impl NotificationQuery {
    /// The store's filter; an unknown `state` is a 400 naming the known ones.
    fn filter(self) -> Result<NotificationFilter, ApiError> {
        let limit = self.limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                format!("limit must be between 1 and {MAX_LIMIT}"),
            ));
        }
        let state = self
            .state
            .map(|s| s.parse::<NotificationState>())
            .transpose()
            .map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.to_string()))?;
        Ok(NotificationFilter {
            state,
            app: self.app,
            before: self.before,
            limit,
        })
    }
}

/// A notification's JSON (`body` only when asked for one notification).
fn notification_json(n: &Notification) -> Value {
    json!({
        "id": n.id,
        "uid": n.uid,
        "event": n.event,
        "event_id": n.event_id,
        "app": n.app,
        "service": n.service,
        "deployment_id": n.deployment_id,
        "delivery_id": n.delivery_id,
        "kind": n.kind,
        "target": n.target,
        "receiver": n.receiver,
        "state": n.state,
        "attempts": n.attempts,
        "next_at": json_time(Some(n.next_at).filter(|_| n.state == NotificationState::Pending)),
        "created_at": json_time(Some(n.created_at)),
        "retried_at": json_time(n.retried_at),
        "sent_at": json_time(n.sent_at),
        "last_status": n.last_status,
        "last_error": n.last_error,
    })
}

/// `GET /api/v1/notifications[?state=pending|sent|dead][&app=][&limit=][&before=]`.
pub(super) async fn list(
    State(shared): State<Arc<Shared>>,
    Query(q): Query<NotificationQuery>,
) -> ApiResult {
    let f = q.filter()?;
    let list = shared.store.notifications(&f).await?;
    let next = (list.len() as i64 == f.limit)
        .then(|| list.last().map(|n| n.id))
        .flatten();
    let items: Vec<Value> = list.iter().map(notification_json).collect();
    Ok(Json(json!({"notifications": items, "next_before": next})).into_response())
}

/// `GET /api/v1/notifications/ID`: with the body sent (JSON).
pub(super) async fn one(State(shared): State<Arc<Shared>>, Path(id): Path<i64>) -> ApiResult {
    let n = shared
        .store
        .notification(id)
        .await?
        .ok_or_else(|| not_found("notification"))?;
    let mut v = notification_json(&n);
    v["body"] = serde_json::from_str(&n.body).unwrap_or(Value::String(n.body.clone()));
    Ok(Json(v).into_response())
}

/// `POST /api/v1/notifications/ID/retry`: a dead (or sent) notification is pending again at
/// once, its attempts reset and its retry window restarted; the worker sends it in its
/// target's order. 409 if it is pending already.
pub(crate) async fn retry(State(shared): State<Arc<Shared>>, Path(id): Path<i64>) -> ApiResult {
    match shared.store.retry_notification(id, now_ms()).await? {
        None => Err(not_found("notification")),
        Some(RetryOutcome::AlreadyPending) => Err(ApiError(
            StatusCode::CONFLICT,
            format!("notification {id} is pending already"),
        )),
        Some(RetryOutcome::Requeued(n)) => {
            tracing::info!(notification = id, event = n.event.as_str(), target = %n.target, "notification queued again through the API");
            Ok(Json(notification_json(&n)).into_response())
        }
    }
}
