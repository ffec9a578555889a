//! `GET /`: every configured app and service with its current version (its newest success),
//! the state of its newest deployment, and that deployment's cause and age. Two indexed
//! lookups per service, however long the history (as `GET /api/v1/status`).

use std::sync::Arc;

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;

use super::view::short_version;
use super::{Layout, Viewer, When, html, store_error};
use crate::shared::Shared;
use crate::store::Deployment;

/// One service's row.
struct Row {
    app: String,
    service: String,
    executor: &'static str,
    version: Option<String>,
    version_full: String,
    current_id: Option<i64>,
    latest: Option<Latest>,
}

/// The newest deployment of a service, as its row shows it.
struct Latest {
    id: i64,
    state: String,
    delivery_id: i64,
    sender: String,
    event: String,
    when: When,
}

impl Latest {
    fn of(d: &Deployment) -> Latest {
        Latest {
            id: d.id,
            state: d.state.as_str().to_string(),
            delivery_id: d.delivery_id,
            sender: d.source.clone(),
            event: d.event.clone(),
            when: When::at(d.finished_at.or(d.started_at).unwrap_or(d.created_at)),
        }
    }
}

#[derive(Template)]
#[template(path = "overview.html")]
struct Overview {
    l: Layout,
    rows: Vec<Row>,
}

pub(crate) async fn page(State(shared): State<Arc<Shared>>, viewer: Viewer) -> Response {
    let mut rows = Vec::new();
    for app in shared.config.apps.values() {
        for (name, service) in &app.services {
            let current = match shared.store.current_of(&app.name, name).await {
                Ok(c) => c,
                Err(e) => return store_error(e),
            };
            let latest = match shared.store.latest_of(&app.name, name).await {
                Ok(l) => l,
                Err(e) => return store_error(e),
            };
            let version = current.as_ref().and_then(Deployment::version);
            rows.push(Row {
                app: app.name.clone(),
                service: name.clone(),
                executor: service.executor.kind(),
                version_full: version.clone().unwrap_or_default(),
                version: version.as_deref().map(short_version),
                current_id: current.as_ref().map(|d| d.id),
                latest: latest.as_ref().map(Latest::of),
            });
        }
    }
    let page = Overview {
        l: viewer.layout("Overview", "overview"),
        rows,
    };
    html(StatusCode::OK, &page)
}
