//! The server: wires store, planner, lanes and HTTP together, and shuts them down in order.
//!
//! [`serve`] takes an already-bound listener and a shutdown future (as mini-redis does), so tests
//! and `main` start it the same way. Start-up recovers from a crash before taking requests:
//! deployments left `running` become `interrupted` (and are queued again), and the planner's
//! first pass plans deliveries that were acknowledged but not yet planned.
//!
//! Listeners: the main one (HTTPS with `server.tls`) and, with `server.admin_listen`, the admin
//! one; both run `crate::listener::serve` and share one connection cap. A SIGHUP reloads the
//! TLS files (`crate::tls`).
//!
//! Shutdown: stop accepting and answer the requests already read; stop starting deployments;
//! give running ones `server.shutdown_grace` to finish; then cancel the rest (recorded
//! `interrupted`); stop the notify worker (what it has not sent stays in the outbox) and
//! return.

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::IntoResponse;
use axum::routing::post;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::listener::ConnLimits;
use crate::metrics::Metrics;
use crate::shared::Shared;
use crate::store::{Intake, Store};
use crate::tls::Tls;
use crate::{api, ingress, lanes, listener, notify, planner, retention};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("HTTP server failed: {0}")]
    Http(#[from] std::io::Error),
    #[error("server.tls: {0}")]
    Tls(#[from] crate::tls::TlsError),
    #[error("cannot listen on {addr} (server.admin_listen): {source}")]
    AdminBind {
        addr: String,
        source: std::io::Error,
    },
}

/// The hook route, behind the per-client limits of `crate::edges::guard`.
fn hook_route(shared: &Arc<Shared>) -> axum::routing::MethodRouter<Arc<Shared>> {
    post(ingress::hook).route_layer(axum::middleware::from_fn_with_state(
        shared.clone(),
        |State(shared): State<Arc<Shared>>, req: Request, next: Next| async move {
            crate::edges::guard(&shared.edges, &shared.metrics, req, next).await
        },
    ))
}

/// The HTTP routes, for a given shared state.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/hooks/{app}/{token}", hook_route(&shared))
        // Let `to_bytes` in the handler enforce `body_limit` (with a clear 413 message).
        .layer(axum::extract::DefaultBodyLimit::disable())
        .merge(api::router(shared.clone()))
        .with_state(shared)
}

/// The routers of the main listener and, with `server.admin_listen`, of the admin listener:
/// then the API and `/metrics` live only there, and the main listener keeps hooks and health
/// checks (anything else is a 404).
pub fn routers(shared: Arc<Shared>) -> (Router, Option<Router>) {
    if shared.config.server.admin_listen.is_none() {
        return (router(shared), None);
    }
    let public = Router::new()
        .route("/hooks/{app}/{token}", hook_route(&shared))
        .layer(axum::extract::DefaultBodyLimit::disable())
        .merge(api::health_router())
        .with_state(shared.clone());
    let admin = api::admin_router(shared.clone())
        .merge(api::health_router())
        .with_state(shared);
    (public, Some(admin))
}

/// A listener and how it serves: the main one (TLS when configured) and the admin one.
struct Endpoint {
    listener: TcpListener,
    tls: Option<Arc<Tls>>,
}

/// Opens the store. While it cannot be opened (a read-only or full data dir, a missing mount),
/// ferry still listens and answers every request 503 with the reason, so senders retry and
/// load balancers see `/readyz` fail; it retries every two seconds. Returns `None` if asked to
/// stop first.
async fn open_store(
    endpoints: &[Endpoint],
    limits: &ConnLimits,
    data_dir: &std::path::Path,
    stopping: &CancellationToken,
) -> Result<Option<(Store, Intake)>, ServerError> {
    let first = match Store::open(data_dir).await {
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
    let unavailable = {
        let reason = reason.clone();
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
    };
    // A second handle on each socket serves 503s meanwhile (over TLS where the listener has
    // it); the real server takes over the original once the store opens, and connections wait
    // in the backlog in between.
    let mut servers = Vec::new();
    for e in endpoints {
        let degraded = TcpListener::from_std(listener_clone(&e.listener)?)?;
        servers.push(tokio::spawn(listener::serve(
            degraded,
            unavailable.clone(),
            limits.clone(),
            e.tls.clone(),
            opened_or_stopping.clone().cancelled_owned(),
        )));
    }
    let opened = loop {
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(2)) => {}
            _ = stopping.cancelled() => break None,
        }
        match Store::open(data_dir).await {
            Ok(opened) => {
                tracing::info!("store opened; leaving degraded mode");
                break Some(opened);
            }
            Err(e) => tracing::debug!(error = %e, "store still unavailable"),
        }
    };
    opened_or_stopping.cancel();
    for server in servers {
        let _ = server.await;
    }
    Ok(opened)
}

fn listener_clone(listener: &TcpListener) -> std::io::Result<std::net::TcpListener> {
    use std::os::fd::{AsFd, OwnedFd};
    let fd: OwnedFd = listener.as_fd().try_clone_to_owned()?;
    let std_listener = std::net::TcpListener::from(fd);
    std_listener.set_nonblocking(true)?;
    Ok(std_listener)
}

pub async fn serve(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let config = Arc::new(config);
    let data_dir = &config.server.data_dir;
    // One token for both phases below: the shutdown future can only be awaited once.
    let stopping = CancellationToken::new();
    {
        let stopping = stopping.clone();
        tokio::spawn(async move {
            shutdown.await;
            stopping.cancel();
        });
    }
    let endpoints = endpoints(listener, &config).await?;
    tokio::spawn(crate::tls::reload_on_sighup(
        endpoints[0].tls.clone(),
        stopping.clone(),
    ));
    let limits = ConnLimits::for_server(&config.server);
    let Some((store, intake)) = open_store(&endpoints, &limits, data_dir, &stopping).await? else {
        tracing::info!("stopped before the store could be opened");
        return Ok(());
    };
    // A deploy command that outlived a crash of ferry still runs in its own process group:
    // stop it before its deployment is recorded interrupted and perhaps run again.
    let orphans = crate::lanes::running_dir(data_dir);
    for pgid in
        tokio::task::spawn_blocking(move || crate::executors::command::kill_orphans(&orphans))
            .await
            .unwrap_or_default()
    {
        tracing::warn!(
            process_group = pgid,
            "killed a deploy command left running by a previous ferry"
        );
    }
    match store
        .recover_interrupted(config.server.retry_interrupted)
        .await
    {
        Ok(list) => {
            for (id, retry) in list {
                tracing::warn!(deployment = id, retry = ?retry, "deployment interrupted by a previous stop");
            }
        }
        Err(e) => tracing::error!(error = %e, "cannot recover interrupted deployments"),
    }

    let lanes_wake = Arc::new(Notify::new());
    let planner_stop = CancellationToken::new();
    let lanes_stop = CancellationToken::new();
    let lanes_kill = CancellationToken::new();
    let planner = tokio::spawn(planner::run(
        config.clone(),
        store.clone(),
        intake.committed.clone(),
        lanes_wake.clone(),
        planner_stop.clone(),
    ));
    // Notifications: the outbox's worker (it never holds anything the lanes wait for).
    let notify_stop = CancellationToken::new();
    let notifications = notify::spawn(config.clone(), store.clone(), notify_stop.clone());
    // Queued deployments left from before a restart start at once.
    lanes_wake.notify_one();
    let running = lanes::Running::default();
    let mut lanes = tokio::spawn(lanes::run(
        Arc::new(lanes::Context {
            config: config.clone(),
            store: store.clone(),
            running: running.clone(),
        }),
        lanes_wake,
        lanes_stop.clone(),
        lanes_kill.clone(),
    ));

    let retention = config.server.keep.map(|keep| {
        tokio::spawn(retention::run(
            store.clone(),
            config.server.data_dir.clone(),
            keep,
            planner_stop.clone(),
        ))
    });

    let shared = Arc::new(Shared {
        config: config.clone(),
        store,
        intake,
        metrics: Metrics::default(),
        edges: crate::edges::Edges::new(&config),
        running,
    });
    serve_http(endpoints, routers(shared), limits, &stopping).await?;

    tracing::info!(grace = %humantime::format_duration(config.server.shutdown_grace), "shutting down: no new deployments; waiting for running ones");
    planner_stop.cancel();
    lanes_stop.cancel();
    let grace_over = tokio::time::Instant::now() + config.server.shutdown_grace;
    if tokio::time::timeout_at(grace_over, &mut lanes)
        .await
        .is_err()
    {
        tracing::warn!("grace period over: cancelling running deployments");
        lanes_kill.cancel();
        let _ = lanes.await;
    }
    // What is pending stays in the outbox, for the next start: no waiting for receivers.
    notify_stop.cancel();
    if let Some(n) = notifications {
        let _ = n.await;
    }
    let _ = planner.await;
    if let Some(r) = retention {
        let _ = r.await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// The main listener (with TLS when `server.tls` is set) and, with `server.admin_listen`, the
/// admin listener (plain HTTP: it is meant for loopback or a private network).
async fn endpoints(listener: TcpListener, config: &Config) -> Result<Vec<Endpoint>, ServerError> {
    let tls = match &config.server.tls {
        Some(settings) => Some(Tls::load(settings)?),
        None => None,
    };
    let mut endpoints = vec![Endpoint { listener, tls }];
    if let Some(addr) = &config.server.admin_listen {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::AdminBind {
                addr: addr.clone(),
                source,
            })?;
        // Not "listening": the test harness takes the first such line as the main address.
        tracing::info!(admin = %listener.local_addr()?, "admin listener: API and /metrics (plain HTTP)");
        endpoints.push(Endpoint {
            listener,
            tls: None,
        });
    }
    Ok(endpoints)
}

/// Serves the main and admin routers until `stopping`, then waits for both to drain.
async fn serve_http(
    endpoints: Vec<Endpoint>,
    (main, admin): (Router, Option<Router>),
    limits: ConnLimits,
    stopping: &CancellationToken,
) -> Result<(), ServerError> {
    let mut routers = std::iter::once(main).chain(admin);
    let mut servers = Vec::new();
    for e in endpoints {
        let Some(router) = routers.next() else { break };
        let addr = e.listener.local_addr()?;
        if servers.is_empty() {
            let scheme = if e.tls.is_some() { "https" } else { "http" };
            let max_connections = limits.max_connections;
            tracing::info!(%addr, %scheme, max_connections, "listening");
        }
        servers.push(tokio::spawn(listener::serve(
            e.listener,
            router,
            limits.clone(),
            e.tls,
            stopping.clone().cancelled_owned(),
        )));
    }
    for server in servers {
        match server.await {
            Ok(r) => r?,
            Err(e) => tracing::error!(error = %e, "HTTP server task failed"),
        }
    }
    Ok(())
}
