//! `GET /deployments` (filtered by app, service and state; keyset-paged), `GET
//! /deployments/ID` (fields, cause, steps, the live log, buttons) and the buttons: `POST
//! /deploy` (a manual deploy of one service), `POST /deployments/ID/cancel`, `POST
//! /deployments/ID/rollback` (back to this deployment's version) — each through the API's
//! own handler.

use std::sync::Arc;

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::view::{duration, short_version};
use super::{
    Layout, PAGE, Viewer, When, after_action, blank, html, not_found, state_filter, store_error,
};
use crate::shared::Shared;
use crate::states::DeploymentState;
use crate::store::{Deployment, ListFilter, Page};

/// A deployment as a table row or a page shows it.
pub(crate) struct Item {
    pub(crate) id: i64,
    pub(crate) app: String,
    pub(crate) service: String,
    pub(crate) state: &'static str,
    pub(crate) reason: String,
    pub(crate) version: String,
    pub(crate) version_full: String,
    pub(crate) delivery_id: i64,
    pub(crate) sender: String,
    pub(crate) event: String,
    pub(crate) created: When,
    pub(crate) ran_for: Option<String>,
}

impl Item {
    pub(crate) fn of(d: &Deployment) -> Item {
        let version = d.version().unwrap_or_default();
        Item {
            id: d.id,
            app: d.app.clone(),
            service: d.service.clone(),
            state: d.state.as_str(),
            reason: d.reason.clone().unwrap_or_default(),
            version: short_version(&version),
            version_full: version,
            delivery_id: d.delivery_id,
            sender: d.source.clone(),
            event: d.event.clone(),
            created: When::at(d.created_at),
            ran_for: d
                .started_at
                .zip(d.finished_at)
                .map(|(s, f)| duration(f - s)),
        }
    }
}

#[derive(Deserialize, Default)]
pub(crate) struct Filters {
    app: Option<String>,
    service: Option<String>,
    state: Option<String>,
    before: Option<i64>,
}

#[derive(Template)]
#[template(path = "deployments.html")]
struct ListPage {
    l: Layout,
    apps: Vec<String>,
    services: Vec<String>,
    states: Vec<&'static str>,
    app: String,
    service: String,
    state: String,
    items: Vec<Item>,
    older: Option<String>,
}

pub(crate) async fn list(
    State(shared): State<Arc<Shared>>,
    viewer: Viewer,
    Query(q): Query<Filters>,
) -> Response {
    let (app, service, state) = (blank(q.app), blank(q.service), blank(q.state));
    let parsed = match state_filter::<DeploymentState>(state.as_deref(), "Unknown state") {
        Ok(s) => s,
        Err(page) => return *page,
    };
    let f = ListFilter {
        app: app.clone(),
        service: service.clone(),
        state: parsed,
        before: q.before,
        limit: PAGE,
    };
    // Every filter walks an index from `before` (a state its own, migration 0012).
    let page = shared.store.deployments(&f).await.map(|rows| Page {
        next_before: (rows.len() as i64 == PAGE)
            .then(|| rows.last().map(|d| d.id))
            .flatten(),
        rows,
    });
    let page = match page {
        Ok(p) => p,
        Err(e) => return store_error(e),
    };
    let older = page.next_before.map(|b| {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (k, v) in [("app", &app), ("service", &service), ("state", &state)] {
            if let Some(v) = v {
                q.append_pair(k, v);
            }
        }
        q.append_pair("before", &b.to_string());
        format!("/deployments?{}", q.finish())
    });
    let mut services: Vec<String> = shared
        .config
        .apps
        .values()
        .flat_map(|a| a.services.keys().cloned())
        .collect();
    services.sort();
    services.dedup();
    let page = ListPage {
        l: viewer.layout("Deployments", "deployments"),
        apps: shared.config.apps.keys().cloned().collect(),
        services,
        states: DeploymentState::ALL.iter().map(|s| s.as_str()).collect(),
        app: app.unwrap_or_default(),
        service: service.unwrap_or_default(),
        state: state.unwrap_or_default(),
        items: page.rows.iter().map(Item::of).collect(),
        older,
    };
    html(StatusCode::OK, &page)
}

/// A step as the page's table shows it.
pub(crate) struct StepRow {
    name: String,
    started: When,
    took: String,
    outcome: String,
    detail: String,
}

/// The deployment's steps (`Store::steps_of`), as the page's table shows them.
async fn steps(shared: &Shared, id: i64) -> Result<Vec<StepRow>, crate::store::StoreError> {
    let now = crate::store::now_ms();
    Ok(shared
        .store
        .steps_of(id)
        .await?
        .iter()
        .map(|s| StepRow {
            name: s.name.as_str().to_string(),
            started: When::at(s.started_at),
            // A step still going shows how long it has taken so far.
            took: duration(s.ended_at.unwrap_or(now) - s.started_at),
            outcome: s.outcome.map_or("running", |o| o.as_str()).to_string(),
            detail: s.detail.clone().unwrap_or_default(),
        })
        .collect())
}

#[derive(Template)]
#[template(path = "deployment.html")]
struct DeploymentPage {
    l: Layout,
    d: Item,
    reason: String,
    exit_code: Option<i64>,
    attempt: i64,
    retry_of: Option<i64>,
    started: Option<When>,
    finished: Option<When>,
    git: String,
    image: String,
    steps: Vec<StepRow>,
    open: bool,
    succeeded: bool,
}

pub(crate) async fn page(
    State(shared): State<Arc<Shared>>,
    viewer: Viewer,
    Path(id): Path<i64>,
) -> Response {
    let d = match shared.store.deployment(id).await {
        Ok(Some(d)) => d,
        Ok(None) => return not_found("deployment"),
        Err(e) => return store_error(e),
    };
    let steps = match steps(&shared, id).await {
        Ok(s) => s,
        Err(e) => return store_error(e),
    };
    let git = [&d.git_repo, &d.git_ref]
        .iter()
        .filter_map(|v| v.as_deref())
        .collect::<Vec<_>>()
        .join(" ");
    let page = DeploymentPage {
        l: viewer.layout(format!("Deployment {id}"), "deployments"),
        reason: d.reason.clone().unwrap_or_default(),
        exit_code: d.exit_code,
        attempt: d.attempt,
        retry_of: d.retry_of,
        started: When::opt(d.started_at),
        finished: When::opt(d.finished_at),
        git,
        image: d.image.clone().unwrap_or_default(),
        steps,
        open: !d.state.is_final(),
        succeeded: d.state == DeploymentState::Succeeded,
        d: Item::of(&d),
    };
    html(StatusCode::OK, &page)
}

/// `POST /deploy` (`app`, `service`): a manual deploy of one service, as `ferry deploy APP
/// --services SERVICE`; then the delivery it stored.
pub(crate) async fn deploy(
    State(shared): State<Arc<Shared>>,
    viewer: Viewer,
    body: Bytes,
) -> Response {
    let form = match viewer.form(&shared, &body) {
        Ok(f) => f,
        Err(refused) => return *refused,
    };
    let app = form.get("app").cloned().unwrap_or_default();
    let service = form.get("service").cloned().unwrap_or_default();
    let request = serde_json::json!({ "services": [service] }).to_string();
    let answer = crate::api::deploy(State(shared), Path(app), Bytes::from(request)).await;
    after_action(answer, |delivery| {
        delivery.map_or("/deliveries".into(), |d| format!("/deliveries/{d}"))
    })
    .await
}

/// `POST /deployments/ID/cancel`: then back to the deployment.
pub(crate) async fn cancel(
    State(shared): State<Arc<Shared>>,
    viewer: Viewer,
    Path(id): Path<i64>,
    body: Bytes,
) -> Response {
    if let Err(refused) = viewer.form(&shared, &body) {
        return *refused;
    }
    let answer = crate::api::cancel(State(shared), Path(id)).await;
    after_action(answer, |_| format!("/deployments/{id}")).await
}

/// `POST /deployments/ID/rollback`: the service back to this deployment's version (the API's
/// rollback with `to`); then the delivery it stored.
pub(crate) async fn rollback(
    State(shared): State<Arc<Shared>>,
    viewer: Viewer,
    Path(id): Path<i64>,
    body: Bytes,
) -> Response {
    if let Err(refused) = viewer.form(&shared, &body) {
        return *refused;
    }
    let d = match shared.store.deployment(id).await {
        Ok(Some(d)) => d,
        Ok(None) => return not_found("deployment"),
        Err(e) => return store_error(e),
    };
    let request = serde_json::json!({ "to": id }).to_string();
    let answer = crate::api::rollback(
        State(shared),
        Path((d.app, d.service)),
        Bytes::from(request),
    )
    .await;
    after_action(answer, |delivery| {
        delivery.map_or("/deliveries".into(), |d| format!("/deliveries/{d}"))
    })
    .await
}
