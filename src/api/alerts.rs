//! `GET /api/v1/alerts[?app=&outcome=&before=&limit=]`: every Alertmanager alert received,
//! newest first, with the rule that matched it (if any), its action, the outcome
//! (`acted`, `duplicate`, `cooldown`, `capped`, `unmatched`, `no_action`), the reason, and the
//! deployment and delivery ids. Written by the planner (`store::alerts`).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, ApiResult, DEFAULT_LIMIT, MAX_LIMIT};
use crate::shared::Shared;
use crate::states::AlertOutcome;
use crate::store::{AlertFilter, AlertRow};

#[derive(Deserialize)]
pub(super) struct AlertQuery {
    app: Option<String>,
    outcome: Option<String>,
    before: Option<i64>,
    limit: Option<i64>,
}

impl AlertQuery {
    /// The store's filter; an unknown `outcome` is a 400 naming the known ones.
    fn filter(self) -> Result<AlertFilter, ApiError> {
        let limit = self.limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                format!("limit must be between 1 and {MAX_LIMIT}"),
            ));
        }
        let outcome = self
            .outcome
            .map(|s| s.parse::<AlertOutcome>())
            .transpose()
            .map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.to_string()))?;
        Ok(AlertFilter {
            app: self.app,
            outcome,
            before: self.before,
            limit,
        })
    }
}

pub(super) async fn list(
    State(shared): State<Arc<Shared>>,
    Query(q): Query<AlertQuery>,
) -> ApiResult {
    let f = q.filter()?;
    let list = shared.store.alerts(&f).await?;
    let next = (list.len() as i64 == f.limit)
        .then(|| list.last().map(|a| a.id))
        .flatten();
    let items: Vec<Value> = list.iter().map(AlertRow::json).collect();
    Ok(Json(json!({"alerts": items, "next_before": next})).into_response())
}
