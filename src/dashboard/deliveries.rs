//! `GET /deliveries` (filtered by app and status; keyset-paged), the inspector `GET
//! /deliveries/ID` (what was received, how it was judged, what it caused) and `POST
//! /deliveries/ID/replay` (through the API's replay).
//!
//! The inspector shows what `Store::delivery` holds: headers as stored (secret ones already
//! redacted by `crate::redact`), the body pretty-printed when it is JSON and raw, the
//! verification flag, the status with its reason, and the deployments it caused.

use std::sync::Arc;

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::deployments::Item;
use super::{Layout, PAGE, Viewer, When, after_action, error_page, html, not_found, store_error};
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
    note: String,
    query: String,
    verified: bool,
    replay_of: Option<i64>,
    sender_id: String,
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
            note: d.note.clone().unwrap_or_default(),
            query: d.query.clone().unwrap_or_default(),
            verified: d.verified,
            replay_of: d.replay_of,
            sender_id: d.source_delivery_id.clone().unwrap_or_default(),
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
    let app = q.app.filter(|s| !s.trim().is_empty());
    let status = q.status.filter(|s| !s.trim().is_empty());
    let parsed = match status
        .as_deref()
        .map(str::parse::<DeliveryStatus>)
        .transpose()
    {
        Ok(s) => s,
        Err(e) => return error_page(StatusCode::BAD_REQUEST, "Unknown status", &e.to_string()),
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
struct Inspector {
    l: Layout,
    d: Row,
    headers: Vec<(String, String)>,
    body_pretty: Option<String>,
    body_raw: String,
    body_note: String,
    caused: Vec<Item>,
}

/// The body pretty-printed when it is JSON (else `None`), and raw as text.
fn bodies(body: &[u8]) -> (Option<String>, String) {
    let pretty = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok());
    (pretty, String::from_utf8_lossy(body).into_owned())
}

pub(crate) async fn page(
    State(shared): State<Arc<Shared>>,
    viewer: Viewer,
    Path(id): Path<i64>,
) -> Response {
    let full = match shared.store.delivery(id).await {
        Ok(Some(d)) => d,
        Ok(None) => return not_found("delivery"),
        Err(e) => return store_error(e),
    };
    let ids = match shared.store.deployment_ids_of(id).await {
        Ok(ids) => ids,
        Err(e) => return store_error(e),
    };
    let mut caused = Vec::new();
    for dep in &ids {
        match shared.store.deployment(*dep).await {
            Ok(Some(d)) => caused.push(Item::of(&d)),
            Ok(None) => {}
            Err(e) => return store_error(e),
        }
    }
    let headers = serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&full.headers)
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.as_str().map_or_else(|| v.to_string(), str::to_string)))
        .collect();
    let (body_pretty, body_raw) = bodies(&full.body);
    let body_note = match full.body_size {
        Some(size) => format!(
            "Only the first {} of {size} bytes were kept.",
            full.body.len()
        ),
        None => format!("{} bytes", full.body.len()),
    };
    let page = Inspector {
        l: viewer.layout(format!("Delivery {id}"), "deliveries"),
        d: Row::of(&full.delivery, ids),
        headers,
        body_pretty,
        body_raw,
        body_note,
        caused,
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
