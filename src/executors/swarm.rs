//! The swarm executor: point a Swarm service at a new image and let Swarm roll it out.
//!
//! Through the Engine API (bollard): read the service, set its task template's image to
//! `repo@digest` (or `repo:tag` when the sender gave no digest), and update it at the version
//! read, so a concurrent change is refused rather than overwritten. Swarm then replaces the
//! tasks with the service's own `update_config` (parallelism, order, monitor) and, if its
//! `failure_action` is `rollback`, rolls back by itself. ferry waits for the update's end state:
//! `completed` is `succeeded`, `rollback_completed` is `rolled_back` (with Swarm's message),
//! `paused` is `failed`.

use std::time::{Duration, Instant};

use bollard::models::ServiceUpdateStatusStateEnum as State;
use bollard::query_parameters::UpdateServiceOptions;

use super::docker::{self, DockerError};
use super::{Image, Outcome, Steps, Stop};
use crate::config::SwarmSpec;
use crate::deploylog::LogWriter;
use crate::states::StepName;

/// One swarm deployment: which service gets which image.
#[derive(Debug, Clone)]
pub(crate) struct SwarmJob {
    pub(crate) spec: SwarmSpec,
    pub(crate) image: Image,
}

/// Why a swarm deployment could not be carried out.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SwarmError {
    #[error(transparent)]
    Connect(#[from] DockerError),
    #[error("no Swarm service named {0} (is this engine a Swarm manager?)")]
    NoService(String),
    #[error("docker: {0}")]
    Api(#[from] bollard::errors::Error),
    #[error("Swarm did not finish updating {0} within {1:?}")]
    Timeout(String, Duration),
    #[error("cannot write the deployment log: {0}")]
    Log(#[from] std::io::Error),
}

/// Runs one swarm deployment. See the module documentation.
pub(crate) async fn run(
    job: &SwarmJob,
    log: &LogWriter,
    cancel: &Stop,
    steps: &Steps,
) -> Result<Outcome, SwarmError> {
    let docker = docker::connect().await?;
    let name = &job.spec.service;
    let update = steps
        .run(StepName::Update, Some(name), update(&docker, job, log))
        .await?;
    let step = steps.begin(StepName::Rollout, Some(name)).await;
    let outcome = rollout(&docker, job, log, cancel, &update).await?;
    steps.end_with(step, &outcome).await;
    Ok(outcome)
}

/// Waits for Swarm's rollout of `update` to end, within the service's timeout.
async fn rollout(
    docker: &bollard::Docker,
    job: &SwarmJob,
    log: &LogWriter,
    cancel: &Stop,
    update: &Update,
) -> Result<Outcome, SwarmError> {
    let name = &job.spec.service;
    let deadline = update.started + job.spec.timeout;
    loop {
        let s = docker.inspect_service(name, None).await?;
        if let Some(u) = s.update_status
            && u.started_at.is_some()
            && u.started_at != update.previous
            && let Some(outcome) = end_state(u, update.started, log).await?
        {
            return Ok(outcome);
        }
        if Instant::now() >= deadline {
            return Err(SwarmError::Timeout(name.clone(), job.spec.timeout));
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = cancel.cancelled() => return Ok(Outcome::Cancelled),
        }
    }
}

/// An update asked of Swarm.
struct Update {
    /// When the service's previous update started: a newer start time is ours.
    previous: Option<String>,
    started: Instant,
}

/// Points the service at the job's image, at the version read, so a concurrent change is
/// refused rather than overwritten.
async fn update(
    docker: &bollard::Docker,
    job: &SwarmJob,
    log: &LogWriter,
) -> Result<Update, SwarmError> {
    let name = &job.spec.service;
    let service = match docker.inspect_service(name, None).await {
        Ok(s) => s,
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404 | 503,
            ..
        }) => return Err(SwarmError::NoService(name.clone())),
        Err(e) => return Err(e.into()),
    };
    let version = service.version.and_then(|v| v.index).unwrap_or_default();
    let previous = service.update_status.and_then(|u| u.started_at);
    let mut spec = service.spec.unwrap_or_default();
    let image = job.image.reference();
    let task = spec.task_template.get_or_insert_default();
    let container = task.container_spec.get_or_insert_default();
    if container.image.as_deref() == Some(image.as_str()) {
        // The same image again (a redeploy): force new tasks, as `docker service update --force`.
        task.force_update = Some(task.force_update.unwrap_or(0) + 1);
    } else {
        container.image = Some(image.clone());
    }
    let started = Instant::now();
    log.ferry(&format!("updating Swarm service {name} to {image}"))
        .await?;
    let options = UpdateServiceOptions {
        version: i32::try_from(version).unwrap_or(i32::MAX),
        ..Default::default()
    };
    let answer = docker.update_service(name, spec, options, None).await?;
    for warning in answer.warnings.into_iter().flatten() {
        log.ferry(&format!("Swarm: {warning}")).await?;
    }
    Ok(Update { previous, started })
}

/// What an update's state means, once it is one Swarm is done with.
async fn end_state(
    u: bollard::models::ServiceUpdateStatus,
    started: Instant,
    log: &LogWriter,
) -> Result<Option<Outcome>, SwarmError> {
    let message = u.message.unwrap_or_default();
    Ok(Some(match u.state {
        Some(State::COMPLETED) => {
            log.ferry(&format!(
                "update completed in {:.1}s: {message}",
                started.elapsed().as_secs_f64()
            ))
            .await?;
            Outcome::Succeeded
        }
        Some(State::ROLLBACK_COMPLETED) => {
            log.ferry(&format!("Swarm rolled back: {message}")).await?;
            Outcome::RolledBack {
                reason: format!("Swarm rolled the update back: {message}"),
            }
        }
        Some(State::PAUSED | State::ROLLBACK_PAUSED) => {
            log.ferry(&format!("update paused: {message}")).await?;
            Outcome::RolledBack {
                reason: format!("Swarm paused the update: {message}"),
            }
        }
        _ => return Ok(None),
    }))
}
