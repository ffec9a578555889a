//! Degraded mode: while the store cannot be opened (a read-only or full data dir, a missing
//! mount), ferry still listens and answers every request 503 with the reason, so senders
//! retry and load balancers see `/readyz` fail; it retries every two seconds. Once the store
//! opens, the real server takes over the same sockets.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::response::IntoResponse;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::listener::{self, ConnLimits};
use crate::metrics::Metrics;
use crate::store::{Intake, Store};

use super::{Endpoint, ServerError};

/// Opens the store, serving 503s on every endpoint until it can. Returns `None` if asked to
/// stop first.
pub(super) async fn open_store(
    endpoints: &[Endpoint],
    limits: &ConnLimits,
    data_dir: &Path,
    metrics: &Arc<Metrics>,
    stopping: &CancellationToken,
) -> Result<Option<(Store, Intake)>, ServerError> {
    let first = match Store::open_measured(data_dir, metrics.clone()).await {
        Ok(opened) => return Ok(Some(opened)),
        Err(e) => e,
    };
    let reason = format!(
        "the store in {} cannot be opened: {first}; retrying",
        data_dir.display()
    );
    let listener = &endpoints[0].listener;
    tracing::error!(addr = %listener.local_addr()?, "{reason}");
    tracing::info!(addr = %listener.local_addr()?, "listening (degraded: answering 503 until the store opens)");
    let opened_or_stopping = CancellationToken::new();
    let servers = serve_unavailable(endpoints, limits, unavailable(reason), &opened_or_stopping)?;
    let opened = retry_open(data_dir, metrics, stopping).await;
    opened_or_stopping.cancel();
    for server in servers {
        let _ = server.await;
    }
    Ok(opened)
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

/// A second handle on each socket serves 503s meanwhile (over TLS where the listener has
/// it); the real server takes over the original once the store opens, and connections wait
/// in the backlog in between.
fn serve_unavailable(
    endpoints: &[Endpoint],
    limits: &ConnLimits,
    router: Router,
    until: &CancellationToken,
) -> Result<Vec<JoinHandle<std::io::Result<()>>>, ServerError> {
    let mut servers = Vec::new();
    for e in endpoints {
        let degraded = TcpListener::from_std(listener_clone(&e.listener)?)?;
        servers.push(tokio::spawn(listener::serve(
            degraded,
            router.clone(),
            limits.clone(),
            e.tls.clone(),
            until.clone().cancelled_owned(),
        )));
    }
    Ok(servers)
}

/// Tries to open the store every two seconds until it opens, or `None` once `stopping`.
async fn retry_open(
    data_dir: &Path,
    metrics: &Arc<Metrics>,
    stopping: &CancellationToken,
) -> Option<(Store, Intake)> {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = stopping.cancelled() => return None,
        }
        match Store::open_measured(data_dir, metrics.clone()).await {
            Ok(opened) => {
                tracing::info!("store opened; leaving degraded mode");
                return Some(opened);
            }
            Err(e) => tracing::debug!(error = %e, "store still unavailable"),
        }
    }
}

fn listener_clone(listener: &TcpListener) -> std::io::Result<std::net::TcpListener> {
    use std::os::fd::{AsFd, OwnedFd};
    let fd: OwnedFd = listener.as_fd().try_clone_to_owned()?;
    let std_listener = std::net::TcpListener::from(fd);
    std_listener.set_nonblocking(true)?;
    Ok(std_listener)
}
