//! `GET /alerts[?outcome=&before=]`: the Alertmanager alerts received, newest first, with the
//! rule that matched each, its outcome and reason, and the deployment it made (issue 15).
//! The same rows as `GET /api/v1/alerts` (`store::alerts`).

use std::sync::Arc;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::{Layout, PAGE, Viewer, When, blank, html, older_link, state_filter, store_error};
use crate::shared::Shared;
use crate::states::AlertOutcome;
use crate::store::{AlertFilter, AlertRow};

struct Row {
    id: i64,
    app: String,
    alertname: String,
    status: String,
    fingerprint: String,
    rule: Option<String>,
    action: Option<String>,
    outcome: &'static str,
    reason: String,
    deployment_id: Option<i64>,
    delivery_id: i64,
    received: When,
}

impl Row {
    fn of(a: &AlertRow) -> Row {
        Row {
            id: a.id,
            app: a.app.clone(),
            alertname: a.alertname.clone(),
            status: a.status.clone(),
            fingerprint: a.fingerprint.clone(),
            rule: a.rule.clone(),
            action: a.action.clone(),
            outcome: a.outcome.as_str(),
            reason: a.reason.clone().unwrap_or_default(),
            deployment_id: a.deployment_id,
            delivery_id: a.delivery_id,
            received: When::at(a.created_at),
        }
    }
}

#[derive(Deserialize, Default)]
pub(crate) struct Filters {
    outcome: Option<String>,
    before: Option<i64>,
}

#[derive(Template)]
#[template(path = "alerts.html")]
struct ListPage {
    l: Layout,
    outcomes: Vec<&'static str>,
    outcome: String,
    rows: Vec<Row>,
    older: Option<String>,
}

pub(crate) async fn list(
    State(shared): State<Arc<Shared>>,
    viewer: Viewer,
    Query(q): Query<Filters>,
) -> Response {
    let outcome = blank(q.outcome);
    let parsed = match state_filter::<AlertOutcome>(outcome.as_deref(), "Unknown outcome") {
        Ok(s) => s,
        Err(page) => return *page,
    };
    let f = AlertFilter {
        app: None,
        outcome: parsed,
        before: q.before,
        limit: PAGE,
    };
    let list = match shared.store.alerts(&f).await {
        Ok(l) => l,
        Err(e) => return store_error(e),
    };
    let older = older_link(
        "/alerts",
        outcome.as_deref().map(|v| ("outcome", v)),
        list.len(),
        list.last().map(|a| a.id),
    );
    let page = ListPage {
        l: viewer.layout("Alerts", "alerts"),
        outcomes: AlertOutcome::ALL.iter().map(|o| o.as_str()).collect(),
        outcome: outcome.unwrap_or_default(),
        rows: list.iter().map(Row::of).collect(),
        older,
    };
    html(StatusCode::OK, &page)
}
