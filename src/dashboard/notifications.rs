//! `GET /notifications[?state=&before=]`: the outbox's pending and dead notifications (or any
//! state), keyset-paged over the `notifications_state` index, and `POST
//! /notifications/ID/retry` (through the API's retry). No URL or secret is shown: a
//! notification names its receiver by `scheme://host[:port]`.

use std::sync::Arc;

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::{
    Layout, PAGE, Viewer, When, after_action, blank, html, older_link, state_filter, store_error,
};
use crate::shared::Shared;
use crate::states::NotificationState;
use crate::store::{Notification, NotificationFilter};

struct Row {
    id: i64,
    event: &'static str,
    app: String,
    service: String,
    deployment_id: Option<i64>,
    delivery_id: Option<i64>,
    kind: String,
    receiver: String,
    state: &'static str,
    attempts: i64,
    created: When,
    next: Option<When>,
    last_error: String,
    retryable: bool,
}

impl Row {
    fn of(n: &Notification) -> Row {
        let pending = n.state == NotificationState::Pending;
        Row {
            id: n.id,
            event: n.event.as_str(),
            app: n.app.clone(),
            service: n.service.clone().unwrap_or_default(),
            deployment_id: n.deployment_id,
            delivery_id: n.delivery_id,
            kind: n.kind.clone(),
            receiver: n.receiver.clone(),
            state: n.state.as_str(),
            attempts: n.attempts,
            created: When::at(n.created_at),
            next: pending.then(|| When::at(n.next_at)),
            last_error: n.last_error.clone().unwrap_or_default(),
            retryable: !pending,
        }
    }
}

#[derive(Deserialize, Default)]
pub(crate) struct Filters {
    state: Option<String>,
    before: Option<i64>,
}

#[derive(Template)]
#[template(path = "notifications.html")]
struct ListPage {
    l: Layout,
    states: Vec<&'static str>,
    state: String,
    rows: Vec<Row>,
    older: Option<String>,
}

pub(crate) async fn list(
    State(shared): State<Arc<Shared>>,
    viewer: Viewer,
    Query(q): Query<Filters>,
) -> Response {
    let state = blank(q.state);
    let parsed = match state_filter::<NotificationState>(state.as_deref(), "Unknown state") {
        Ok(s) => s,
        Err(page) => return *page,
    };
    let f = NotificationFilter {
        state: parsed,
        app: None,
        before: q.before,
        limit: PAGE,
    };
    let list = match shared.store.notifications(&f).await {
        Ok(l) => l,
        Err(e) => return store_error(e),
    };
    let older = older_link(
        "/notifications",
        state.as_deref().map(|v| ("state", v)),
        list.len(),
        list.last().map(|n| n.id),
    );
    let page = ListPage {
        l: viewer.layout("Notifications", "notifications"),
        states: NotificationState::ALL.iter().map(|s| s.as_str()).collect(),
        state: state.unwrap_or_default(),
        rows: list.iter().map(Row::of).collect(),
        older,
    };
    html(StatusCode::OK, &page)
}

/// `POST /notifications/ID/retry`: pending again at once; then back to the list.
pub(crate) async fn retry(
    State(shared): State<Arc<Shared>>,
    viewer: Viewer,
    Path(id): Path<i64>,
    body: Bytes,
) -> Response {
    if let Err(refused) = viewer.form(&shared, &body) {
        return *refused;
    }
    let answer = crate::api::notifications::retry(State(shared), Path(id)).await;
    after_action(answer, |_| "/notifications?state=pending".into()).await
}
