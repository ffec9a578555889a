//! Degraded mode: while the store cannot be opened (a read-only or full data dir, a missing
//! mount), ferry still listens and answers every request 503 with the reason, so senders
//! retry and load balancers see `/readyz` fail; it retries every two seconds. Once the store
//! opens, the real server takes over the same sockets.

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::response::IntoResponse;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::listener::{self, ConnLimits, Routes};
use crate::metrics::Metrics;
use crate::store::{Intake, Store};

use super::{Endpoint, ServerError};

/// A running listener task.
pub(super) type ServerTask = JoinHandle<std::io::Result<()>>;

/// The listeners once the store is open: not yet served (it opened at once), or already
/// serving 503s and waiting for the real routers.
pub(super) enum Listeners {
    Idle(Vec<Endpoint>),
    Degraded(Handover),
}

/// Listeners serving the degraded router until [`Handover::complete`] gives them the real ones.
pub(super) struct Handover {
    ready: Vec<Arc<OnceLock<Router>>>,
    servers: Vec<ServerTask>,
}

impl Handover {
    /// From now on every request (on new and open connections alike) goes to the real
    /// routers, in the order of the endpoints; returns the listener tasks.
    pub(super) fn complete(self, routers: impl IntoIterator<Item = Router>) -> Vec<ServerTask> {
        for (ready, router) in self.ready.iter().zip(routers) {
            // Only ever set here, once.
            let _ = ready.set(router);
        }
        self.servers
    }
}

/// Opens the store, serving 503s on every endpoint until it can. Returns `None` if asked to
/// stop first.
pub(super) async fn open_store(
    endpoints: Vec<Endpoint>,
    limits: &ConnLimits,
    data_dir: &Path,
    database: Option<&str>,
    metrics: &Arc<Metrics>,
    stopping: &CancellationToken,
) -> Result<Option<(Store, Intake, Listeners)>, ServerError> {
    let first = match Store::open_measured(data_dir, database, metrics.clone()).await {
        Ok((store, intake)) => return Ok(Some((store, intake, Listeners::Idle(endpoints)))),
        Err(e) => e,
    };
    // Never the URL: it may hold a password.
    let reason = match database {
        Some(_) => {
            format!("the PostgreSQL database (server.database) cannot be opened: {first}; retrying")
        }
        None => format!(
            "the store in {} cannot be opened: {first}; retrying",
            data_dir.display()
        ),
    };
    let addr = endpoints[0].listener.local_addr()?;
    tracing::error!(%addr, "{reason}");
    tracing::info!(%addr, "listening (degraded: answering 503 until the store opens)");
    let handover = serve_unavailable(endpoints, limits, unavailable(reason), stopping);
    match retry_open(data_dir, database, metrics, stopping).await {
        Some((store, intake)) => Ok(Some((store, intake, Listeners::Degraded(handover)))),
        None => {
            for server in handover.servers {
                let _ = server.await;
            }
            Ok(None)
        }
    }
}

/// The degraded router: `/healthz` answers (the process is alive), everything else is a 503
/// with the reason and `Retry-After`.
fn unavailable(reason: String) -> Router {
    Router::new()
        .route("/healthz", axum::routing::get(|| async { "ok\n" }))
        .fallback(move || {
            let reason = reason.clone();
            async move {
                let mut r = (
                    http::StatusCode::SERVICE_UNAVAILABLE,
                    axum::Json(serde_json::json!({ "error": reason })),
                )
                    .into_response();
                r.headers_mut().insert(
                    http::header::RETRY_AFTER,
                    http::HeaderValue::from_static("5"),
                );
                r
            }
        })
}

/// Serves `router` on every endpoint (over TLS where the listener has it) until `stopping`,
/// or until the handover replaces it; the same listener tasks then serve the real routers.
fn serve_unavailable(
    endpoints: Vec<Endpoint>,
    limits: &ConnLimits,
    router: Router,
    stopping: &CancellationToken,
) -> Handover {
    let mut handover = Handover {
        ready: Vec::new(),
        servers: Vec::new(),
    };
    for e in endpoints {
        let ready = Arc::new(OnceLock::new());
        let routes = Routes::Handover {
            ready: ready.clone(),
            meanwhile: router.clone(),
        };
        handover.ready.push(ready);
        handover.servers.push(tokio::spawn(listener::serve(
            e.listener,
            routes,
            limits.clone(),
            e.tls,
            stopping.clone().cancelled_owned(),
        )));
    }
    handover
}

/// Tries to open the store every two seconds until it opens, or `None` once `stopping`.
async fn retry_open(
    data_dir: &Path,
    database: Option<&str>,
    metrics: &Arc<Metrics>,
    stopping: &CancellationToken,
) -> Option<(Store, Intake)> {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = stopping.cancelled() => return None,
        }
        match Store::open_measured(data_dir, database, metrics.clone()).await {
            Ok(opened) => {
                tracing::info!("store opened; leaving degraded mode");
                return Some(opened);
            }
            Err(e) => tracing::debug!(error = %e, "store still unavailable"),
        }
    }
}
