//! `GET /deliveries` (filtered by app and status; keyset-paged), the inspector `GET
//! /deliveries/ID` (what was received, how it was judged, what it caused) and `POST
//! /deliveries/ID/replay` (through the API's replay).
//!
//! The inspector renders `crate::inspect::inspect` (the model the API and `ferry deliveries
//! ID` show too): method and masked path, headers as stored (secret ones redacted before
//! storage), the body pretty and raw, which scheme verified it or why it failed, what it was
//! parsed into, and per service the deployment it caused or why none.

use std::sync::Arc;

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::{
    Layout, PAGE, Viewer, When, after_action, blank, html, not_found, state_filter, store_error,
};
use crate::inspect::Inspection;
use crate::shared::Shared;
use crate::states::DeliveryStatus;
use crate::store::{Delivery, ListFilter, Page};

/// A delivery as a row or the inspector's header shows it.
struct Row {
    id: i64,
    app: String,
    source: String,
    event: String,
    status: &'static str,
    error: String,
    replay_of: Option<i64>,
    /// Which scheme verified it (`None`: nothing did).
    scheme: Option<String>,
    received: When,
    deployments: Vec<i64>,
}

impl Row {
    fn of(d: &Delivery, deployments: Vec<i64>) -> Row {
        Row {
            id: d.id,
            app: d.app.clone(),
            source: d.source.clone(),
            event: d.event.clone().unwrap_or_default(),
            status: d.status.as_str(),
            error: d.error.clone().unwrap_or_default(),
            replay_of: d.replay_of,
            scheme: d.scheme.clone(),
            received: When::at(d.received_at),
            deployments,
        }
    }
}

#[derive(Deserialize, Default)]
pub(crate) struct Filters {
    app: Option<String>,
    status: Option<String>,
    before: Option<i64>,
}

#[derive(Template)]
#[template(path = "deliveries.html")]
struct ListPage {
    l: Layout,
    apps: Vec<String>,
    statuses: Vec<&'static str>,
    app: String,
    status: String,
    rows: Vec<Row>,
    older: Option<String>,
}

async fn page_of(
    shared: &Shared,
    app: Option<&str>,
    status: Option<DeliveryStatus>,
    before: Option<i64>,
) -> Result<Page<Delivery>, crate::store::StoreError> {
    if let Some(status) = status {
        return shared
            .store
            .deliveries_with_status(app, status, before, PAGE)
            .await;
    }
    let f = ListFilter {
        app: app.map(str::to_string),
        before,
        limit: PAGE,
        ..ListFilter::default()
    };
    let rows = shared.store.deliveries(&f).await?;
    let next_before = (rows.len() as i64 == PAGE)
        .then(|| rows.last().map(|d| d.id))
        .flatten();
    Ok(Page { rows, next_before })
}

pub(crate) async fn list(
    State(shared): State<Arc<Shared>>,
    viewer: Viewer,
    Query(q): Query<Filters>,
) -> Response {
    let app = blank(q.app);
    let status = blank(q.status);
    let parsed = match state_filter::<DeliveryStatus>(status.as_deref(), "Unknown status") {
        Ok(s) => s,
        Err(page) => return *page,
    };
    let page = match page_of(&shared, app.as_deref(), parsed, q.before).await {
        Ok(p) => p,
        Err(e) => return store_error(e),
    };
    // One query for the page's deployment ids, as the API does.
    let ids = match (page.rows.last(), page.rows.first()) {
        (Some(lo), Some(hi)) => match shared.store.deployment_ids_between(lo.id, hi.id).await {
            Ok(ids) => ids,
            Err(e) => return store_error(e),
        },
        _ => Default::default(),
    };
    let older = page.next_before.map(|b| {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (k, v) in [("app", &app), ("status", &status)] {
            if let Some(v) = v {
                q.append_pair(k, v);
            }
        }
        q.append_pair("before", &b.to_string());
        format!("/deliveries?{}", q.finish())
    });
    let rows = page
        .rows
        .iter()
        .map(|d| Row::of(d, ids.get(&d.id).cloned().unwrap_or_default()))
        .collect();
    let page = ListPage {
        l: viewer.layout("Deliveries", "deliveries"),
        apps: shared.config.apps.keys().cloned().collect(),
        statuses: DeliveryStatus::ALL.iter().map(|s| s.as_str()).collect(),
        app: app.unwrap_or_default(),
        status: status.unwrap_or_default(),
        rows,
        older,
    };
    html(StatusCode::OK, &page)
}

#[derive(Template)]
#[template(path = "delivery.html")]
struct InspectorPage {
    l: Layout,
    i: Inspection,
    received: Option<When>,
    headers: Vec<(String, String)>,
    parsed: Option<String>,
    caused: Vec<Caused>,
    /// List every deployment too: there were retries, or no per-service view.
    show_all: bool,
}

/// A deployment the delivery caused, as the inspector's table shows it.
struct Caused {
    id: i64,
    service: String,
    state: &'static str,
    reason: String,
    version: String,
    attempt: i64,
}

/// The stored headers (a JSON object) as name/value pairs.
fn header_pairs(headers: &serde_json::Value) -> Vec<(String, String)> {
    headers
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_str().map_or_else(|| v.to_string(), str::to_string),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

pub(crate) async fn page(
    State(shared): State<Arc<Shared>>,
    viewer: Viewer,
    Path(id): Path<i64>,
) -> Response {
    let i = match crate::inspect::inspect(&shared, id).await {
        Ok(Some(i)) => i,
        Ok(None) => return not_found("delivery"),
        Err(e) => return store_error(e),
    };
    let caused: Vec<Caused> = i
        .outcomes
        .deployments
        .iter()
        .map(|d| Caused {
            id: d.id,
            service: d.service.clone(),
            state: d.state.as_str(),
            reason: d.reason.clone().unwrap_or_default(),
            version: d.version.clone().unwrap_or_default(),
            attempt: d.attempt,
        })
        .collect();
    // Deployments of services the per-service view does not list (an alert rule's command)
    // show only in the full list.
    let unlisted = caused
        .iter()
        .any(|c| !i.outcomes.services.iter().any(|s| s.service == c.service));
    let show_all = caused.iter().any(|c: &Caused| c.attempt > 1) || unlisted;
    let page = InspectorPage {
        show_all,
        l: viewer.layout(format!("Delivery {id}"), "deliveries"),
        received: When::rfc3339(&i.received_at),
        headers: header_pairs(&i.request.headers),
        parsed: i
            .parsed
            .event
            .as_ref()
            .and_then(|e| serde_json::to_string_pretty(e).ok()),
        caused,
        i,
    };
    html(StatusCode::OK, &page)
}

/// `POST /deliveries/ID/replay`: then the new delivery.
pub(crate) async fn replay(
    State(shared): State<Arc<Shared>>,
    viewer: Viewer,
    Path(id): Path<i64>,
    body: Bytes,
) -> Response {
    if let Err(refused) = viewer.form(&shared, &body) {
        return *refused;
    }
    let answer = crate::api::replay(State(shared), Path(id)).await;
    after_action(answer, |delivery| {
        delivery.map_or(format!("/deliveries/{id}"), |d| format!("/deliveries/{d}"))
    })
    .await
}
