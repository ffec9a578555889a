//! What monitoring reads: `/metrics` (Prometheus) and `/readyz`.
//!
//! `/metrics` writes what ferry recorded since start (`crate::metrics::Metrics`: hook answers,
//! deliveries, latencies, deployment runs, group commits) and, read from the store at each
//! scrape, what the store holds: deployments by state, queued deployments per lane, the
//! outbox's backlog. Queue depth is read from the store rather than tracked by the lanes
//! because the store is where the queue is: the lanes keep no queue in memory (they read
//! `queued` deployments each time they wake), and deployments queued before a restart or by
//! crash recovery count as well. Prometheus' text format 0.0.4 by default; OpenMetrics when
//! the scraper asks for it (`Accept: application/openmetrics-text`, as Prometheus does).
//!
//! `/readyz` checks the store and, when a service deploys through Docker (the `docker`,
//! `compose` or `swarm` executors), the Docker Engine (a ping), each within 2 s and both at
//! once: 200 `ready`, or 503 with one line per failed check (`store: …`, `docker: …`).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::{ApiError, ApiResult};
use crate::shared::Shared;
use crate::states::{DeploymentState, NotificationState};
use crate::store::StoreError;

/// How long each `/readyz` check may take before it counts as failed.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LaneLabels {
    app: String,
    service: String,
}

/// `GET /metrics`.
pub(super) async fn metrics(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> ApiResult {
    let scraped = from_store(&shared).await?;
    let openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    let mut out = String::new();
    let content_type = shared
        .metrics
        .encode(&mut out, &scraped, openmetrics)
        .map_err(|e| {
            ApiError(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot encode metrics: {e}"),
            )
        })?;
    Ok(([(header::CONTENT_TYPE, content_type)], out).into_response())
}

/// The gauges read from the store, in a registry made for this scrape (so a series that is
/// gone from the store is gone from the answer).
async fn from_store(shared: &Shared) -> Result<Registry, StoreError> {
    let mut r = Registry::default();
    let set = |family: &Family<StateLabels, Gauge>, state: &str, n: i64| {
        let labels = StateLabels {
            state: state.to_string(),
        };
        family.get_or_create(&labels).set(n);
    };
    let deployments = Family::<StateLabels, Gauge>::default();
    for s in DeploymentState::ALL {
        set(&deployments, s.as_str(), 0);
    }
    for (state, n) in shared.store.count_by_state().await? {
        set(&deployments, &state, n);
    }
    r.register(
        "ferry_deployments",
        "Deployments in the store, by state (read at scrape time)",
        deployments,
    );
    r.register(
        "ferry_lane_queue_depth",
        "Deployments queued per lane (one app's service), read from the store at scrape time: usually 0, or 1 while a newer version waits for the running one (queueing a newer one supersedes the older)",
        queue_depth(shared).await?,
    );
    let events = Gauge::<i64>::default();
    events.set(shared.store.count_unfanned_events().await?);
    r.register(
        "ferry_outbox_unfanned_events",
        "Journal events (deployment state changes, refused deliveries, container events) the notify worker has not yet turned into notifications",
        events,
    );
    let notifications = Family::<StateLabels, Gauge>::default();
    let counts = shared.store.count_notifications().await?;
    for state in NotificationState::ALL {
        let n = counts.iter().find(|(s, _)| s == state).map_or(0, |c| c.1);
        set(&notifications, state.as_str(), n);
    }
    r.register(
        "ferry_notifications",
        "Outgoing notifications in the store, by state: pending (not sent yet, retrying), sent, dead (given up)",
        notifications,
    );
    Ok(r)
}

/// Queued deployments per lane: every configured service (0 when none waits), and lanes of
/// services no longer configured that still hold queued ones.
async fn queue_depth(shared: &Shared) -> Result<Family<LaneLabels, Gauge>, StoreError> {
    let depth = Family::<LaneLabels, Gauge>::default();
    for app in shared.config.apps.values() {
        for service in app.services.keys() {
            let labels = LaneLabels {
                app: app.name.clone(),
                service: service.clone(),
            };
            depth.get_or_create(&labels).set(0);
        }
    }
    for (app, service, n) in shared.store.count_queued_by_lane().await? {
        depth.get_or_create(&LaneLabels { app, service }).set(n);
    }
    Ok(depth)
}

/// `GET /readyz`: the store and (with Docker services) the Docker Engine, checked at once.
pub(super) async fn readyz(State(shared): State<Arc<Shared>>) -> Response {
    let uses_docker = shared.config.apps.values().any(|a| {
        a.services
            .values()
            .any(|s| matches!(s.executor.kind(), "docker" | "compose" | "swarm"))
    });
    let (store, docker) = tokio::join!(within(shared.store.ping()), async {
        if uses_docker {
            within(ping_docker()).await
        } else {
            Ok(())
        }
    });
    let failed: Vec<String> = [("store", store), ("docker", docker)]
        .into_iter()
        .filter_map(|(what, r)| r.err().map(|e| format!("{what}: {e}\n")))
        .collect();
    if failed.is_empty() {
        return "ready\n".into_response();
    }
    tracing::warn!(failed = %failed.concat().trim_end(), "not ready");
    (StatusCode::SERVICE_UNAVAILABLE, failed.concat()).into_response()
}

/// A check's outcome within [`CHECK_TIMEOUT`]: its error's message, or that it took too long.
async fn within<T, E: std::fmt::Display>(
    check: impl Future<Output = Result<T, E>>,
) -> Result<(), String> {
    match tokio::time::timeout(CHECK_TIMEOUT, check).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {} s", CHECK_TIMEOUT.as_secs())),
    }
}

/// Pings the Docker Engine (`DOCKER_HOST`, else the local socket) through the executors'
/// client; a failed ping makes them negotiate afresh next time.
async fn ping_docker() -> Result<(), crate::executors::docker::DockerError> {
    use crate::executors::docker;
    let pinged = match docker::connect().await {
        Ok(engine) => engine.ping().await.map_err(docker::DockerError::Connect),
        Err(e) => Err(e),
    };
    if pinged.is_err() {
        docker::forget();
    }
    pinged.map(drop)
}
