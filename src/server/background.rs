//! The background tasks around the HTTP server: crash recovery before they start, then the
//! planner, the lanes, the notify worker, the container watcher, retention and the reconcile
//! schedule, and their
//! shutdown in order (no new deployments, no more container events; running deployments get
//! the grace period, then are cancelled; then the notify worker stops: what it has not sent
//! stays pending in the outbox, for the next start).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::store::{Intake, Store};
use crate::{lanes, notify, planner, reconcile, retention, watch};

/// Recovers from a crash, before the lanes start: kills deploy commands the dead ferry left
/// running, then records their deployments (and any other left `running`) interrupted,
/// queueing retries while attempts remain.
pub(super) async fn recover(config: &Config, store: &Store) {
    // A deploy command that outlived a crash of ferry still runs in its own process group:
    // stop it before its deployment is recorded interrupted and perhaps run again.
    let orphans = crate::lanes::running_dir(&config.server.data_dir);
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
    // An ssh key a checkout wrote is removed when it ends; a crash skips that.
    crate::executors::checkout::remove_leftover_keys(&config.server.data_dir);
    match store
        .recover_interrupted(config.server.retry_interrupted, &config.server.node)
        .await
    {
        Ok(list) => {
            for (id, retry) in list {
                tracing::warn!(deployment = id, retry = ?retry, "deployment interrupted by a previous stop");
            }
        }
        Err(e) => tracing::error!(error = %e, "cannot recover interrupted deployments"),
    }
}

/// The running background tasks, and the tokens that stop each.
pub(super) struct Background {
    /// The lanes' runs in progress, shared with the API (cancel).
    pub(super) running: lanes::Running,
    planner: JoinHandle<()>,
    /// Stops the planner, the container watcher, retention and the reconcile schedule.
    planner_stop: CancellationToken,
    lanes: JoinHandle<()>,
    /// The lease keeper (replicas only), and what stops it (after the lanes).
    leases: Option<JoinHandle<()>>,
    leases_stop: CancellationToken,
    /// No new deployments; running ones go on.
    lanes_stop: CancellationToken,
    /// Cancels running deployments (the grace period is over).
    lanes_kill: CancellationToken,
    /// The notify worker (`None` if it could not start: its notifications wait in the store).
    notifications: Option<JoinHandle<()>>,
    /// Stops the notify worker.
    notify_stop: CancellationToken,
    retention: Option<JoinHandle<()>>,
    /// The reconcile schedule (`None` without services that set `reconcile`).
    reconcile: Option<JoinHandle<()>>,
    /// The container watcher (`None` without `docker` or `compose` services).
    watch: Option<JoinHandle<()>>,
}

impl Background {
    /// Spawns planner, notify worker, lanes, the container watcher (with `docker` or `compose`
    /// services) and (with `server.keep`) retention.
    pub(super) fn spawn(
        config: &Arc<Config>,
        store: &Store,
        intake: &Intake,
        metrics: &Arc<Metrics>,
    ) -> Background {
        let lanes_wake = Arc::new(Notify::new());
        let planner_stop = CancellationToken::new();
        let lanes_stop = CancellationToken::new();
        let lanes_kill = CancellationToken::new();
        let leases_stop = CancellationToken::new();
        let planner = tokio::spawn(planner::run(
            config.clone(),
            store.clone(),
            intake.committed.clone(),
            lanes_wake.clone(),
            planner_stop.clone(),
        ));
        // The outbox's worker: it never holds anything the lanes wait for.
        let notify_stop = CancellationToken::new();
        let notifications = notify::spawn(config.clone(), store.clone(), notify_stop.clone());
        // Queued deployments left from before a restart start at once.
        lanes_wake.notify_one();
        let running = lanes::Running::default();
        let lanes_ctx = Arc::new(lanes::Context {
            config: config.clone(),
            store: store.clone(),
            running: running.clone(),
            metrics: metrics.clone(),
        });
        // Replicas: leases on what runs here, and the takeover of what a dead one ran. Until
        // the lanes stop: a run in its grace period keeps its lease.
        let leases = store.shared().then(|| {
            tokio::spawn(lanes::keep_leases(
                lanes_ctx.clone(),
                lanes_wake.clone(),
                leases_stop.clone(),
            ))
        });
        let lanes = tokio::spawn(lanes::run(
            lanes_ctx,
            lanes_wake,
            lanes_stop.clone(),
            lanes_kill.clone(),
        ));
        // Its own connections to Docker; it writes container events to the journal and waits
        // for nothing the lanes or intake hold.
        let watch = watch::spawn(config, store, planner_stop.clone());
        // With replicas, one prunes.
        let retention = config.server.keep.map(|keep| {
            let store = store.clone();
            let data_dir = config.server.data_dir.clone();
            let stop = planner_stop.clone();
            tokio::spawn(async move {
                store
                    .lead(crate::store::Role::Retention, stop, |lost| {
                        retention::run(store.clone(), data_dir.clone(), keep, lost)
                    })
                    .await
            })
        });
        let reconcile = spawn_reconcile(config, store, intake, &planner_stop);
        Background {
            running,
            planner,
            planner_stop,
            lanes,
            leases,
            leases_stop,
            lanes_stop,
            lanes_kill,
            notifications,
            notify_stop,
            retention,
            reconcile,
            watch,
        }
    }

    /// Stops everything in order, within `grace`: planning and new deployments at once;
    /// running deployments get the grace period, then are cancelled; then the notify worker
    /// stops (after the lanes, so the ends they record are in the outbox first).
    pub(super) async fn stop(mut self, grace: Duration) {
        tracing::info!(grace = %humantime::format_duration(grace), "shutting down: no new deployments; waiting for running ones");
        self.planner_stop.cancel();
        self.lanes_stop.cancel();
        let grace_over = tokio::time::Instant::now() + grace;
        if tokio::time::timeout_at(grace_over, &mut self.lanes)
            .await
            .is_err()
        {
            tracing::warn!("grace period over: cancelling running deployments");
            self.lanes_kill.cancel();
            let _ = self.lanes.await;
        }
        self.leases_stop.cancel();
        if let Some(l) = self.leases {
            let _ = l.await;
        }
        // No waiting for receivers: what is pending stays in the outbox for the next start.
        self.notify_stop.cancel();
        if let Some(n) = self.notifications {
            let _ = n.await;
        }
        let _ = self.planner.await;
        if let Some(r) = self.retention {
            let _ = r.await;
        }
        if let Some(r) = self.reconcile {
            let _ = r.await;
        }
        if let Some(w) = self.watch {
            let _ = w.await;
        }
    }
}

/// The reconcile schedule, with services that set `reconcile`: with replicas, on the one that
/// leads `Role::Reconcile`. It stores deliveries, so it stops with the planner.
fn spawn_reconcile(
    config: &Arc<Config>,
    store: &Store,
    intake: &Intake,
    stop: &CancellationToken,
) -> Option<JoinHandle<()>> {
    let any = config
        .apps
        .values()
        .flat_map(|a| a.services.values())
        .any(|s| s.reconcile.is_some());
    if !any {
        return None;
    }
    let (config, store, intake, stop) =
        (config.clone(), store.clone(), intake.clone(), stop.clone());
    Some(tokio::spawn(async move {
        store
            .lead(crate::store::Role::Reconcile, stop, |lost| {
                reconcile::run(config.clone(), store.clone(), intake.clone(), lost)
            })
            .await
    }))
}
