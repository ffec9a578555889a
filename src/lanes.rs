//! Lanes: one deployment at a time per service, the newest queued one next.
//!
//! The dispatcher wakes when the planner queued something or a deployment finished. For every
//! service with nothing running it starts the newest queued deployment; starting it supersedes
//! older queued ones of that service, so a burst of N pushes runs the current deployment plus
//! the newest one. Services deploy in parallel. Each run is a task that hands the deployment
//! to `executors::Job` (which prepares and runs it) and records the outcome; what a run needs
//! and how it goes is the executors' business, not the lanes'.
//!
//! Shutdown has two steps: `stop` ends dispatching (running deployments go on); `kill` cancels
//! running ones, which are then recorded `interrupted` and queued again for the next start.
//!
//! A cancel through the API reaches a running deployment through [`Running`]: each run has its
//! own [`Stop`] (a child of `kill`), registered before the deployment is marked `running`, so
//! the API finds every deployment the store calls running (or one that is about to end). The
//! request itself is in the store first (`cancel_requested_at`), so a restart that cuts the
//! stop short still records the deployment `cancelled`.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::deploylog::{self, LogWriter};
use crate::executors::{Job, Outcome, Ran, Steps, Stop};
use crate::metrics::Metrics;
use crate::sources::Source;
use crate::store::{Claim, Deployment, DeploymentState, Store, StoreError};

/// Where running deploy commands note their process group (see `command::kill_orphans`).
pub(crate) use crate::executors::command::running_dir;

/// What running a deployment needs.
pub(crate) struct Context {
    pub(crate) config: Arc<Config>,
    pub(crate) store: Store,
    /// The runs in progress, shared with the API (cancel).
    pub(crate) running: Running,
    /// Where each run's end is counted and timed (by executor and final state).
    pub(crate) metrics: Arc<Metrics>,
}

/// The [`Stop`] of each running deployment, by id: how a cancel through the API reaches it.
#[derive(Clone, Default)]
pub(crate) struct Running(Arc<Mutex<HashMap<i64, Stop>>>);

impl Running {
    /// Stops a running deployment for `why`. False if no run of it is in progress here.
    pub(crate) fn stop(&self, deployment: i64, why: &str) -> bool {
        let stop = self.lock().get(&deployment).cloned();
        stop.map(|s| s.stop(why)).is_some()
    }

    fn insert(&self, deployment: i64, stop: Stop) {
        self.lock().insert(deployment, stop);
    }

    fn remove(&self, deployment: i64) {
        self.lock().remove(&deployment);
    }

    /// The deployments running here.
    fn ids(&self) -> Vec<i64> {
        self.lock().keys().copied().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Stop>> {
        // The map stays consistent whatever panicked while holding it: one insert or remove.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

type Lane = (String, String);

/// How often the lanes of a replica look for work other replicas queued or freed.
const REPLICA_LOOK: std::time::Duration = std::time::Duration::from_secs(1);

pub(crate) async fn run(
    ctx: Arc<Context>,
    wake: Arc<Notify>,
    stop: CancellationToken,
    kill: CancellationToken,
) {
    let mut running: HashMap<tokio::task::Id, (Lane, i64)> = HashMap::new();
    let mut tasks: JoinSet<()> = JoinSet::new();
    // With replicas, work queued or freed by another replica wakes nobody here: look again
    // every second. (One ferry is woken by its own planner and its own runs' ends.)
    let mut look = tokio::time::interval(REPLICA_LOOK);
    look.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let shared = ctx.store.shared();
    loop {
        if !stop.is_cancelled() {
            if let Err(e) = dispatch(&ctx, &mut running, &mut tasks, &kill).await {
                tracing::error!(error = %e, "cannot read queued deployments; retrying");
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                continue;
            }
        } else if tasks.is_empty() {
            return;
        }
        tokio::select! {
            _ = wake.notified(), if !stop.is_cancelled() => {}
            _ = look.tick(), if shared && !stop.is_cancelled() => {}
            Some(done) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                let id = match &done { Ok((id, ())) => *id, Err(e) => e.id() };
                let ended = running.remove(&id);
                if let Some((_, deployment)) = ended {
                    ctx.running.remove(deployment);
                }
                if let Some((_, deployment)) = ended
                    && let Err(e) = done
                {
                    // A run that panicked must still end its deployment and free its lane.
                    tracing::error!(deployment, error = %e, "deployment task failed");
                    let reason = format!("internal error: {e}");
                    if let Err(e) = ctx.store.finish(deployment, DeploymentState::Failed, Some(&reason), None).await {
                        tracing::error!(deployment, error = %e, "cannot record deployment outcome");
                    }
                }
            }
            _ = stop.cancelled(), if !stop.is_cancelled() => {}
        }
    }
}

/// Starts the newest queued deployment of every idle service (the oldest, in an alert
/// command's lane).
async fn dispatch(
    ctx: &Arc<Context>,
    running: &mut HashMap<tokio::task::Id, (Lane, i64)>,
    tasks: &mut JoinSet<()>,
    kill: &CancellationToken,
) -> Result<(), crate::store::StoreError> {
    let queued = ctx.store.queued().await?;
    let mut newest: HashMap<Lane, Deployment> = HashMap::new();
    for d in queued {
        // Oldest first, so the last one seen per lane is the newest — except in an alert
        // command's lane, which runs every queued one, oldest first (`states::supersedes`).
        let lane = (d.app.clone(), d.service.clone());
        if crate::states::supersedes(&d.service) {
            newest.insert(lane, d);
        } else {
            newest.entry(lane).or_insert(d);
        }
    }
    let busy: HashSet<&Lane> = running.values().map(|(lane, _)| lane).collect();
    let node = &ctx.config.server.node;
    let idle: Vec<(Lane, Deployment)> = newest
        .into_iter()
        .filter(|(lane, _)| !busy.contains(lane) && may_run(&ctx.config, lane, node))
        .collect();
    for (lane, d) in idle {
        // Registered before the store says `running`, so a cancel never finds it running
        // without a way to stop it.
        let stop = Stop::child_of(kill);
        ctx.running.insert(d.id, stop.clone());
        let claim = Claim {
            node: &ctx.config.server.node,
            lease: ctx.config.server.lease,
        };
        if !ctx
            .store
            .start(&d, &claim)
            .await
            .inspect_err(|_| ctx.running.remove(d.id))?
        {
            ctx.running.remove(d.id);
            continue;
        }
        tracing::info!(deployment = d.id, app = %d.app, service = %d.service, commit = d.git_commit.as_deref().unwrap_or(""), "deployment running");
        let id = d.id;
        let ctx = ctx.clone();
        let handle = tasks.spawn(async move { execute(&ctx, &d, &stop).await });
        running.insert(handle.id(), (lane, id));
    }
    Ok(())
}

/// Whether this replica (`node`) may run the service of `lane` (`runs_on`). A service that
/// has left the config runs anywhere: its run fails with the reason.
fn may_run(config: &Config, (app, service): &Lane, node: &str) -> bool {
    config
        .apps
        .get(app)
        .and_then(|a| a.runnable(service))
        .is_none_or(|s| s.runs_on(node))
}

/// Keeps this replica's claims on its runs alive, and takes over the runs of replicas that
/// died (PostgreSQL only). Every third of `server.lease` it renews the leases of what runs
/// here; a run whose lease another replica took over in the meantime (this one was cut off
/// from the database for longer than the lease) is stopped at once, and so is every run here
/// when renewing has failed for two thirds of the lease: by the time the lease runs out for
/// the others, nothing of it still runs here (self-fencing). Then it records the runs whose
/// lease ran out `interrupted` (queueing their retries) and wakes the lanes.
pub(crate) async fn keep_leases(ctx: Arc<Context>, wake: Arc<Notify>, stop: CancellationToken) {
    let lease = ctx.config.server.lease;
    let claim = Claim {
        node: &ctx.config.server.node,
        lease,
    };
    let mut tick = tokio::time::interval(lease / 3);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut renewed_at = Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        // Which runs were here before the renewal: one that starts meanwhile is not lost.
        let here = ctx.running.ids();
        match ctx.store.renew_leases(&claim).await {
            Ok(renewed) => {
                renewed_at = Instant::now();
                // Not renewed: starting (not yet `running`), just ended, or taken over.
                let missing: Vec<i64> = here
                    .into_iter()
                    .filter(|id| !renewed.contains(id))
                    .collect();
                let lost = if missing.is_empty() {
                    Vec::new()
                } else {
                    ctx.store
                        .taken_over(&missing, claim.node)
                        .await
                        .unwrap_or_default()
                };
                for id in lost {
                    if ctx.running.stop(
                        id,
                        "another replica took it over: this one's lease had run out",
                    ) {
                        tracing::error!(deployment = id, "lease lost: deployment stopped here");
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot renew the leases of running deployments");
                if renewed_at.elapsed() >= lease * 2 / 3 {
                    for id in here {
                        if ctx
                            .running
                            .stop(id, "this replica could not renew its lease")
                        {
                            tracing::error!(
                                deployment = id,
                                "lease about to run out: deployment stopped"
                            );
                        }
                    }
                }
                continue;
            }
        }
        if take_over_expired(&ctx).await {
            wake.notify_one();
        }
    }
}

/// Records the runs whose lease ran out `interrupted`; returns whether a retry was queued.
async fn take_over_expired(ctx: &Context) -> bool {
    let expired = match ctx.store.expired_leases().await {
        Ok(ids) => ids,
        Err(e) => {
            tracing::error!(error = %e, "cannot look for expired leases");
            return false;
        }
    };
    let mut retried = false;
    for id in expired {
        match ctx
            .store
            .interrupt_expired(id, ctx.config.server.retry_interrupted)
            .await
        {
            Ok(Some(retry)) => {
                tracing::warn!(deployment = id, retry = ?retry, "deployment interrupted: its replica stopped renewing its lease");
                retried |= retry.is_some();
            }
            Ok(None) => {}
            Err(e) => {
                tracing::error!(deployment = id, error = %e, "cannot take over an expired deployment")
            }
        }
    }
    retried
}

/// Runs one deployment and records how it ended. Never fails: every problem becomes a state.
async fn execute(ctx: &Context, d: &Deployment, stop: &Stop) {
    let began = Instant::now();
    let (state, reason, exit_code) = match run_job(ctx, d, stop).await {
        Ok(ran) => {
            if let Some(digest) = &ran.resolved_digest
                && let Err(e) = ctx.store.set_image_digest(d.id, digest).await
            {
                tracing::error!(deployment = d.id, error = %e, "cannot record the image digest");
            }
            if let Some(commit) = &ran.resolved_commit
                && let Err(e) = ctx.store.set_git_commit(d.id, commit).await
            {
                tracing::error!(deployment = d.id, error = %e, "cannot record the commit checked out");
            }
            if ran.outcome == Outcome::Cancelled && !stop.requested() {
                // ferry is shutting down: record it interrupted (and queued again, if allowed).
                return interrupted(ctx, d, began).await;
            }
            ended(ran.outcome)
        }
        Err(e) => {
            let message = e.to_string();
            let log_path = deploylog::log_path(&ctx.config.server.data_dir, d.id);
            let to = deploylog::CopyTo {
                store: &ctx.store,
                deployment: d.id,
                node: &ctx.config.server.node,
            };
            if let Ok(log) = LogWriter::create_copied(&log_path, to).await {
                let _ = log.ferry(&message).await;
                // In the store's copy before the end is recorded (replicas read it there).
                log.settle().await;
            }
            (DeploymentState::Failed, Some(message), None)
        }
    };
    match ctx
        .store
        .finish(d.id, state, reason.as_deref(), exit_code)
        .await
    {
        Ok(()) => {
            let executor = executor_of(&ctx.config, d);
            ctx.metrics
                .run_ended(executor, state.as_str(), began.elapsed());
            if state == DeploymentState::Succeeded {
                tracing::info!(deployment = d.id, app = %d.app, service = %d.service, commit = d.git_commit.as_deref().unwrap_or(""), "deployment succeeded");
            } else {
                tracing::warn!(deployment = d.id, app = %d.app, service = %d.service, state = state.as_str(), reason = reason.as_deref().unwrap_or(""), "deployment {state}");
            }
        }
        Err(e) => {
            tracing::error!(deployment = d.id, error = %e, "cannot record deployment outcome")
        }
    }
}

/// Why a run did not get as far as an outcome.
#[derive(Debug, thiserror::Error)]
enum RunError {
    #[error("cannot read delivery {id}: {source}")]
    Delivery { id: i64, source: StoreError },
    #[error("cannot read the alert this deployment acts on: {0}")]
    Alert(StoreError),
    #[error(transparent)]
    Job(#[from] crate::executors::Error),
}

/// Prepares the deployment's job and runs it. The job (and its payload file) is gone when
/// this returns.
async fn run_job(ctx: &Context, d: &Deployment, stop: &Stop) -> Result<Ran, RunError> {
    let payload = match ctx.store.delivery(d.delivery_id).await {
        Ok(Some(full)) => full.body,
        Ok(None) => Vec::new(),
        Err(source) => {
            return Err(RunError::Delivery {
                id: d.delivery_id,
                source,
            });
        }
    };
    // An alert rule's action: the alert it acts on (its variables; restart or redeploy).
    let alert = if d.source == Source::Alertmanager.as_str() {
        ctx.store
            .alert_of_deployment(d.id)
            .await
            .map_err(RunError::Alert)?
    } else {
        None
    };
    let steps = Steps::new(ctx.store.clone(), d.id);
    let job = Job::prepare(
        &ctx.config,
        d,
        (&payload, alert.as_ref()),
        stop.clone(),
        steps,
        Some(&ctx.store),
    )
    .await?;
    Ok(job.run().await?)
}

/// The state, reason and exit code an outcome is recorded with. A `Cancelled` outcome here
/// was asked for through the API (shutdown goes to [`interrupted`]).
fn ended(outcome: Outcome) -> (DeploymentState, Option<String>, Option<i64>) {
    match outcome {
        Outcome::Succeeded => (DeploymentState::Succeeded, None, Some(0)),
        Outcome::RolledBack { reason } => (DeploymentState::RolledBack, Some(reason), None),
        Outcome::Failed { exit_code, signal } => {
            let reason = match (exit_code, signal) {
                (Some(c), _) => format!("command exited with status {c}"),
                (None, Some(s)) => format!("command was killed by signal {s}"),
                _ => "command failed".to_string(),
            };
            (
                DeploymentState::Failed,
                Some(reason),
                exit_code.map(i64::from),
            )
        }
        Outcome::TimedOut { after } => {
            let after = humantime::format_duration(after);
            let reason = format!("timed out after {after}; process group killed");
            (DeploymentState::TimedOut, Some(reason), None)
        }
        // Stopped like a timeout (process group killed, a container replacement rolled back).
        Outcome::Cancelled => (
            DeploymentState::Cancelled,
            Some(crate::store::CANCELLED_WHILE_RUNNING.to_string()),
            None,
        ),
    }
}

/// The executor a deployment's service runs with (`unknown` once the service has left the
/// config), for the metrics' labels.
fn executor_of(config: &Config, d: &Deployment) -> &'static str {
    config
        .apps
        .get(&d.app)
        .and_then(|a| a.runnable(&d.service))
        .map_or("unknown", |s| s.executor.kind())
}

/// Records a deployment that shutdown stopped as interrupted (and queued again, if allowed).
async fn interrupted(ctx: &Context, d: &Deployment, began: Instant) {
    match ctx
        .store
        .interrupt(d.id, ctx.config.server.retry_interrupted)
        .await
    {
        Ok(retry) => {
            let executor = executor_of(&ctx.config, d);
            let state = DeploymentState::Interrupted.as_str();
            ctx.metrics.run_ended(executor, state, began.elapsed());
            tracing::warn!(deployment = d.id, app = %d.app, service = %d.service, retry = ?retry, "deployment interrupted")
        }
        Err(e) => {
            tracing::error!(deployment = d.id, error = %e, "cannot record interrupted deployment")
        }
    }
}
