//! Lanes: one deployment at a time per service, the newest queued one next.
//!
//! The dispatcher wakes when the planner queued something or a deployment finished. For every
//! service with nothing running it starts the newest queued deployment; starting it supersedes
//! older queued ones of that service, so a burst of N pushes runs the current deployment plus
//! the newest one. Services deploy in parallel. Each run is a task that prepares the executor's
//! inputs (environment, payload file, log), runs it and records the outcome.
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
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, Executor};
use crate::deploylog::{self, LogWriter};
use crate::executors::{Outcome, Stop, command, compose, docker, swarm};
use crate::store::{Deployment, DeploymentState, Store};

/// Every FERRY_* variable ferry sets; inherited ones of these names are removed first so a
/// deploy command never sees a stale value.
const FERRY_VARS: &[&str] = &[
    "FERRY_APP",
    "FERRY_SERVICE",
    "FERRY_DEPLOYMENT_ID",
    "FERRY_DELIVERY_ID",
    "FERRY_SOURCE",
    "FERRY_EVENT",
    "FERRY_GIT_REPO",
    "FERRY_GIT_BRANCH",
    "FERRY_GIT_REF",
    "FERRY_GIT_COMMIT",
    "FERRY_IMAGE",
    "FERRY_IMAGE_TAG",
    "FERRY_IMAGE_DIGEST",
    "FERRY_PROFILE",
    "FERRY_PAYLOAD",
    "FERRY_ATTEMPT",
];

/// What running a deployment needs.
pub struct Context {
    pub config: Arc<Config>,
    pub store: Store,
    /// Queues reports to senders; never waits, so a slow callback holds no lane.
    pub notifier: crate::notify::Notifier,
    /// The runs in progress, shared with the API (cancel).
    pub running: Running,
}

/// The [`Stop`] of each running deployment, by id: how a cancel through the API reaches it.
#[derive(Clone, Default)]
pub struct Running(Arc<Mutex<HashMap<i64, Stop>>>);

impl Running {
    /// Stops a running deployment for `why`. False if no run of it is in progress here.
    pub fn stop(&self, deployment: i64, why: &str) -> bool {
        let stop = self.lock().get(&deployment).cloned();
        stop.map(|s| s.stop(why)).is_some()
    }

    fn insert(&self, deployment: i64, stop: Stop) {
        self.lock().insert(deployment, stop);
    }

    fn remove(&self, deployment: i64) {
        self.lock().remove(&deployment);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Stop>> {
        // The map stays consistent whatever panicked while holding it: one insert or remove.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

type Lane = (String, String);

pub async fn run(
    ctx: Arc<Context>,
    wake: Arc<Notify>,
    stop: CancellationToken,
    kill: CancellationToken,
) {
    let mut running: HashMap<tokio::task::Id, (Lane, i64)> = HashMap::new();
    let mut tasks: JoinSet<()> = JoinSet::new();
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

/// Starts the newest queued deployment of every idle service.
async fn dispatch(
    ctx: &Arc<Context>,
    running: &mut HashMap<tokio::task::Id, (Lane, i64)>,
    tasks: &mut JoinSet<()>,
    kill: &CancellationToken,
) -> Result<(), crate::store::StoreError> {
    let queued = ctx.store.queued().await?;
    let mut newest: HashMap<Lane, Deployment> = HashMap::new();
    for d in queued {
        // Oldest first, so the last one seen per lane is the newest.
        newest.insert((d.app.clone(), d.service.clone()), d);
    }
    let busy: HashSet<&Lane> = running.values().map(|(lane, _)| lane).collect();
    let idle: Vec<(Lane, Deployment)> = newest
        .into_iter()
        .filter(|(lane, _)| !busy.contains(lane))
        .collect();
    for (lane, d) in idle {
        // Registered before the store says `running`, so a cancel never finds it running
        // without a way to stop it.
        let stop = Stop::child_of(kill);
        ctx.running.insert(d.id, stop.clone());
        if !ctx
            .store
            .start(&d)
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

/// Runs one deployment and records how it ended. Never fails: every problem becomes a state.
async fn execute(ctx: &Context, d: &Deployment, stop: &Stop) {
    let data_dir = &ctx.config.server.data_dir;
    let log_path = deploylog::log_path(data_dir, d.id);
    let (final_state, reason, exit_code) = match run_executor(ctx, d, &log_path, stop).await {
        Ok(Outcome::Succeeded) => (DeploymentState::Succeeded, None, Some(0)),
        Ok(Outcome::RolledBack { reason }) => (DeploymentState::RolledBack, Some(reason), None),
        Ok(Outcome::Failed { exit_code, signal }) => {
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
        Ok(Outcome::TimedOut) => {
            let timeout = ctx
                .config
                .apps
                .get(&d.app)
                .and_then(|a| a.services.get(&d.service))
                .map(|s| humantime::format_duration(s.timeout).to_string())
                .unwrap_or_default();
            (
                DeploymentState::TimedOut,
                Some(format!("timed out after {timeout}; process group killed")),
                None,
            )
        }
        // Cancelled through the API: stopped like a timeout (process group killed, a container
        // replacement rolled back).
        Ok(Outcome::Cancelled) if stop.requested() => (
            DeploymentState::Cancelled,
            Some(crate::store::CANCELLED_WHILE_RUNNING.to_string()),
            None,
        ),
        Ok(Outcome::Cancelled) => {
            // ferry is shutting down: record it interrupted (and queued again, if allowed).
            match ctx
                .store
                .interrupt(d.id, ctx.config.server.retry_interrupted)
                .await
            {
                Ok(retry) => {
                    tracing::warn!(deployment = d.id, app = %d.app, service = %d.service, retry = ?retry, "deployment interrupted")
                }
                Err(e) => {
                    tracing::error!(deployment = d.id, error = %e, "cannot record interrupted deployment")
                }
            }
            return;
        }
        Err(message) => {
            if let Ok(log) = LogWriter::create(&log_path).await {
                let _ = log.ferry(&message).await;
            }
            (DeploymentState::Failed, Some(message), None)
        }
    };
    match ctx
        .store
        .finish(d.id, final_state, reason.as_deref(), exit_code)
        .await
    {
        Ok(()) => {
            ctx.notifier.deployment_ended(d, final_state);
            if final_state == DeploymentState::Succeeded {
                tracing::info!(deployment = d.id, app = %d.app, service = %d.service, commit = d.git_commit.as_deref().unwrap_or(""), "deployment succeeded");
            } else {
                tracing::warn!(deployment = d.id, app = %d.app, service = %d.service, state = final_state.as_str(), reason = reason.as_deref().unwrap_or(""), "deployment {final_state}");
            }
        }
        Err(e) => {
            tracing::error!(deployment = d.id, error = %e, "cannot record deployment outcome")
        }
    }
}

/// Prepares the executor's inputs and runs it. `Err` is a message for the log and the reason.
async fn run_executor(
    ctx: &Context,
    d: &Deployment,
    log_path: &std::path::Path,
    kill: &Stop,
) -> Result<Outcome, String> {
    let service = ctx
        .config
        .apps
        .get(&d.app)
        .and_then(|a| a.services.get(&d.service))
        .ok_or_else(|| format!("service {}/{} is no longer configured", d.app, d.service))?;
    let log = LogWriter::create(log_path)
        .await
        .map_err(|e| format!("cannot create log {}: {e}", log_path.display()))?;
    let payload = write_payload(ctx, d).await?;
    let mut env = vec![
        ("FERRY_APP".to_string(), d.app.clone()),
        ("FERRY_SERVICE".to_string(), d.service.clone()),
        ("FERRY_DEPLOYMENT_ID".to_string(), d.id.to_string()),
        ("FERRY_DELIVERY_ID".to_string(), d.delivery_id.to_string()),
        ("FERRY_SOURCE".to_string(), d.source.clone()),
        ("FERRY_EVENT".to_string(), d.event.clone()),
        ("FERRY_ATTEMPT".to_string(), d.attempt.to_string()),
        ("FERRY_PAYLOAD".to_string(), payload.display().to_string()),
    ];
    let optional = [
        ("FERRY_GIT_REPO", &d.git_repo),
        ("FERRY_GIT_BRANCH", &d.git_branch),
        ("FERRY_GIT_REF", &d.git_ref),
        ("FERRY_GIT_COMMIT", &d.git_commit),
        ("FERRY_IMAGE", &d.image),
        ("FERRY_IMAGE_TAG", &d.image_tag),
        ("FERRY_IMAGE_DIGEST", &d.image_digest),
        ("FERRY_PROFILE", &d.profile),
    ];
    for (k, v) in optional {
        if let Some(v) = v {
            env.push((k.to_string(), v.clone()));
        }
    }
    // The last line of defence: planning took only checked values (`sources::values`), but
    // whatever a deployment row holds is checked again before it becomes a variable.
    if let Err(e) = env
        .iter()
        .try_for_each(|(k, v)| crate::sources::values::env_value(k, v))
    {
        let _ = tokio::fs::remove_file(&payload).await;
        return Err(format!("refusing to run: {e}"));
    }
    env.extend(service.env.iter().cloned());
    let mut env_remove: Vec<String> = FERRY_VARS.iter().map(|s| s.to_string()).collect();
    env_remove.extend(ctx.config.secret_env_vars.iter().cloned());
    let result = match &service.executor {
        Executor::Command { argv, workdir } => {
            let spec = command::CommandSpec {
                argv: argv.clone(),
                workdir: workdir.clone(),
                env,
                env_remove,
                timeout: service.timeout,
                pid_file: Some(pid_file(&ctx.config.server.data_dir, d.id)),
            };
            command::run(&spec, &log, kill)
                .await
                .map_err(|e| e.to_string())
        }
        Executor::Swarm(spec) => {
            let Some(repository) = d.image.clone() else {
                return Err("this deployment names no image to deploy".into());
            };
            let job = swarm::SwarmJob {
                spec: spec.clone(),
                repository,
                tag: d.image_tag.clone(),
                digest: d.image_digest.clone(),
            };
            swarm::run(&job, &log, kill)
                .await
                .map_err(|e| e.to_string())
        }
        Executor::Compose(spec) => {
            let job = compose::ComposeJob {
                spec: spec.clone(),
                workdir: spec
                    .file
                    .parent()
                    .map(std::path::Path::to_path_buf)
                    .unwrap_or_default(),
                env,
                env_remove,
                timeout: service.timeout,
                pid_file: pid_file(&ctx.config.server.data_dir, d.id),
            };
            compose::run(&job, &log, kill)
                .await
                .map_err(|e| e.to_string())
        }
        Executor::Docker(spec) => {
            let Some(repository) = d.image.clone() else {
                return Err("this deployment names no image to deploy".into());
            };
            let job = docker::DockerJob {
                spec: spec.clone(),
                repository,
                tag: d.image_tag.clone(),
                digest: d.image_digest.clone(),
                deployment_id: d.id,
            };
            // Not cut off by the service's timeout: stopping half-way could leave the old
            // container renamed aside. Each step is bounded instead (health by its timeout).
            match docker::run(&job, &log, kill).await {
                Err(e) => Err(e.to_string()),
                Ok(result) => {
                    if d.image_digest.is_none()
                        && let Some(digest) = &result.digest
                        && let Err(e) = ctx.store.set_image_digest(d.id, digest).await
                    {
                        tracing::error!(deployment = d.id, error = %e, "cannot record the image digest");
                    }
                    Ok(result.outcome)
                }
            }
        }
    };
    let _ = tokio::fs::remove_file(&payload).await;
    result
}

/// Where running deploy commands note their process group (see `command::kill_orphans`).
pub fn running_dir(data_dir: &std::path::Path) -> PathBuf {
    data_dir.join("running")
}

fn pid_file(data_dir: &std::path::Path, deployment: i64) -> PathBuf {
    running_dir(data_dir).join(format!("deployment-{deployment}.pgid"))
}

/// Writes the delivery's raw body to a private file for `FERRY_PAYLOAD`.
async fn write_payload(ctx: &Context, d: &Deployment) -> Result<PathBuf, String> {
    let dir = ctx.config.server.data_dir.join("payloads");
    let path = dir.join(format!("deployment-{}.body", d.id));
    let body = match ctx.store.delivery(d.delivery_id).await {
        Ok(Some(full)) => full.body,
        Ok(None) => Vec::new(),
        Err(e) => return Err(format!("cannot read delivery {}: {e}", d.delivery_id)),
    };
    let write = async {
        crate::datadir::create_dir_async(&dir).await?;
        let mut opts = crate::datadir::file_options_async();
        opts.write(true).create(true).truncate(true);
        let mut f = opts.open(&path).await?;
        tokio::io::AsyncWriteExt::write_all(&mut f, &body).await?;
        tokio::io::AsyncWriteExt::flush(&mut f).await
    };
    write
        .await
        .map_err(|e| format!("cannot write payload file {}: {e}", path.display()))?;
    Ok(path)
}
