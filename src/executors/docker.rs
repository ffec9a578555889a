//! The docker executor: replace a service's containers with ones running a new image.
//!
//! Talks to the Docker Engine API through bollard (unix socket, `DOCKER_HOST` honoured). First
//! `restore_leftovers` undoes a replacement a crash cut off, then:
//!
//! 1. pull the image (`images.rs`) — by digest when the sender gave one, else by tag, and then
//!    read the digest the registry served, so a deployment always runs exactly one known image
//!    (and a pushed tag that does not exist in the registry fails here, before anything is
//!    touched).
//!
//! Then for each selected container, one at a time (`replace`):
//!
//! 2. rename the old container out of the way (`NAME-ferry-old-DEPLOYMENT`); stop it only if it
//!    publishes host ports (the new one needs them), so without ports there is no downtime
//!    (`move_aside`);
//! 3. create the new container with the old one's configuration (`recreate.rs`: what is
//!    copied and what is not), pinned to `repo@digest`, connect its networks with their
//!    aliases, start it (`start_new`);
//! 4. wait until it is healthy (`executors::health`): its Docker healthcheck, else the
//!    configured HTTP probe, else running without a restart for `stable_for`;
//! 5. healthy: remove the old container, its volumes stay (`remove_old`). Not healthy in
//!    time, exited, or the run stopped: remove the new one, give the old one its name back,
//!    start it again if it was stopped, and report `rolled_back` with the reason
//!    (`roll_back`).
//!
//! After the last one, old images of the repository are pruned if `keep_images` says so. The
//! old container is never removed before the new one is healthy.
//!
//! An alert rule's `restart` runs the restart mode instead (`restart.rs`): the same containers
//! restarted in place, then the same health gate, with no rollback.

mod images;
mod recreate;
mod restart;

pub(crate) use restart::restart;

use std::collections::HashMap;
use std::time::Instant;

use bollard::Docker;
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, EndpointSettings, ImageConfig,
    NetworkConnectRequest,
};
use bollard::query_parameters::{
    CreateContainerOptions, ListContainersOptions, RemoveContainerOptions, RenameContainerOptions,
    StopContainerOptions,
};
use futures_util::StreamExt;

use super::health::{Health, secs, wait_healthy};
use super::steps::StepId;
use super::{Image, Outcome, Steps, Stop};
use crate::config::{ContainerSelector, DockerSpec};
use crate::deploylog::LogWriter;
use crate::states::StepName;
use recreate::new_container;

/// What to deploy: the image and which containers get it.
#[derive(Debug, Clone)]
pub(crate) struct DockerJob {
    pub(crate) spec: DockerSpec,
    pub(crate) image: Image,
    /// Names the old container while it is moved aside (`NAME-ferry-old-DEPLOYMENT`).
    pub(crate) deployment_id: i64,
}

/// How a docker deployment ended, and the digest it ran (resolved from the tag if the sender
/// gave none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DockerResult {
    pub(crate) outcome: Outcome,
    pub(crate) digest: Option<String>,
}

/// Why a docker deployment could not be carried out. Nothing was replaced when these occur
/// (a failure after the old container was moved aside is a rollback, not an error).
#[derive(Debug, thiserror::Error)]
pub(crate) enum DockerError {
    #[error("cannot reach the Docker Engine: {0}")]
    Connect(#[source] bollard::errors::Error),
    #[error(
        "no container named {0}: create it once (docker run --name {0} …); ferry replaces it from then on"
    )]
    NoContainer(String),
    #[error("no container has the label {0}")]
    NoLabelled(String),
    #[error("pulling {reference} failed: {message}")]
    Pull { reference: String, message: String },
    #[error("pulled {0}, but the engine reports no digest for it from {1}")]
    NoDigest(String, String),
    #[error("docker: {0}")]
    Api(#[from] bollard::errors::Error),
    /// An alert's restart left a container unhealthy; a restart has nothing to roll back to.
    #[error(
        "container {container} is not healthy after its restart: {reason} (a restart cannot be rolled back: the container keeps running as it is)"
    )]
    RestartUnhealthy { container: String, reason: String },
    #[error("cannot write the deployment log: {0}")]
    Log(#[from] std::io::Error),
}

/// Runs one docker deployment. See the module documentation for the sequence.
pub(crate) async fn run(
    job: &DockerJob,
    log: &LogWriter,
    cancel: &Stop,
    steps: &Steps,
) -> Result<DockerResult, DockerError> {
    let docker = connect().await?;
    restore_leftovers(&docker, &job.spec.select, log).await?;
    let targets = select(&docker, &job.spec.select).await?;
    // A pull touches no container: a cancel (or shutdown) may simply abandon it.
    let pull = steps.begin(StepName::Pull, None).await;
    let digest = tokio::select! {
        digest = images::pull(&docker, job, log) => digest?,
        () = cancel.cancelled() => {
            log.ferry(&format!("cancelled while pulling: {}", cancel.why())).await?;
            steps.end_with(pull, &Outcome::Cancelled).await;
            return Ok(DockerResult { outcome: Outcome::Cancelled, digest: None });
        }
    };
    steps.end(pull, true, None).await;
    let run = Run {
        docker: &docker,
        job,
        log,
        cancel,
        steps,
    };
    let outcome = roll_out(&run, &targets, &digest).await?;
    Ok(DockerResult {
        outcome,
        digest: Some(digest),
    })
}

/// What replacing the containers needs: the engine, the job, and where its notes and steps go.
struct Run<'a> {
    docker: &'a Docker,
    job: &'a DockerJob,
    log: &'a LogWriter,
    cancel: &'a Stop,
    steps: &'a Steps,
}

/// Replaces the targets one at a time with the image at `digest`, then prunes old images.
async fn roll_out(run: &Run<'_>, targets: &[String], digest: &str) -> Result<Outcome, DockerError> {
    let Run {
        docker,
        job,
        log,
        cancel,
        ..
    } = *run;
    let repository = &job.image.repository;
    let image = format!("{repository}@{digest}");
    let new_image = docker.inspect_image(&image).await?;
    let new_id = new_image.id.clone().unwrap_or_default();
    // The images the replaced containers ran: what a rollback needs, so never pruned.
    let mut previous = Vec::new();
    for name in targets {
        if let Ok(c) = docker.inspect_container(name, None).await
            && let Some(image) = c.image
        {
            previous.push(image);
        }
        if cancel.is_cancelled() {
            // Nothing of this container has been touched yet: stop before renaming it aside.
            log.ferry(&format!(
                "cancelled before replacing {name}: {}",
                cancel.why()
            ))
            .await?;
            return Ok(Outcome::Cancelled);
        }
        let step = replace(run, name, &image, &new_id).await?;
        if step != Outcome::Succeeded {
            // Replicas are replaced one at a time; the first that fails stops the rollout, and
            // the ones already replaced keep the new version.
            return Ok(step);
        }
    }
    if let Some(keep) = job.spec.keep_images {
        previous.push(new_id);
        images::prune(docker, repository, &previous, keep, log).await?;
    }
    Ok(Outcome::Succeeded)
}

/// The engine's client once negotiated, shared by every deployment of this process.
static ENGINE: std::sync::Mutex<Option<Docker>> = std::sync::Mutex::new(None);

/// Connects to the engine (`DOCKER_HOST`, else the local socket) at the API version it speaks.
/// The version is asked once per process, not per deployment: dockerd answers `GET /version`
/// by running `runc --version` and `docker-init --version`, 8–19 ms of every deployment
/// (`bench/deploy`). The client's connection pool reconnects by itself after an engine
/// restart; [`forget`] makes the next call negotiate afresh (after a failed ping).
pub(crate) async fn connect() -> Result<Docker, DockerError> {
    if let Some(docker) = ENGINE.lock().ok().and_then(|e| e.clone()) {
        return Ok(docker);
    }
    let docker = Docker::connect_with_defaults()
        .map_err(DockerError::Connect)?
        .negotiate_version()
        .await
        .map_err(DockerError::Connect)?;
    if let Ok(mut engine) = ENGINE.lock() {
        *engine = Some(docker.clone());
    }
    Ok(docker)
}

/// Drops the shared client: the engine did not answer, and may come back another version.
pub(crate) fn forget() {
    if let Ok(mut engine) = ENGINE.lock() {
        *engine = None;
    }
}

/// The names of the containers to replace, in a stable order.
async fn select(docker: &Docker, select: &ContainerSelector) -> Result<Vec<String>, DockerError> {
    match select {
        ContainerSelector::Name(name) => match docker.inspect_container(name, None).await {
            Ok(_) => Ok(vec![name.clone()]),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Err(DockerError::NoContainer(name.clone())),
            Err(e) => Err(e.into()),
        },
        ContainerSelector::Label(label) => {
            let options = ListContainersOptions {
                all: true,
                filters: Some(HashMap::from([("label".into(), vec![label.clone()])])),
                ..Default::default()
            };
            let mut names: Vec<String> = docker
                .list_containers(Some(options))
                .await?
                .into_iter()
                .filter_map(|c| {
                    c.names?
                        .first()
                        .map(|n| n.trim_start_matches('/').to_string())
                })
                // A container left aside by an interrupted deployment is not a replica.
                .filter(|n| !n.contains(OLD_MARK))
                .collect();
            names.sort();
            if names.is_empty() {
                return Err(DockerError::NoLabelled(label.clone()));
            }
            Ok(names)
        }
    }
}

/// Undoes what an interrupted replacement (ferry killed half-way) left behind: an old container
/// still under its aside name gets its name back — the container that took the name, not yet
/// proven healthy, is removed — and is started again if it was stopped. The deployment then
/// replaces it from scratch.
async fn restore_leftovers(
    docker: &Docker,
    select: &ContainerSelector,
    log: &LogWriter,
) -> Result<(), DockerError> {
    let filter = match select {
        ContainerSelector::Name(name) => ("name".to_string(), format!("{name}{OLD_MARK}")),
        ContainerSelector::Label(label) => ("label".to_string(), label.clone()),
    };
    let options = ListContainersOptions {
        all: true,
        filters: Some(HashMap::from([(filter.0, vec![filter.1])])),
        ..Default::default()
    };
    for c in docker.list_containers(Some(options)).await? {
        let Some(aside) = c
            .names
            .and_then(|n| n.first().map(|n| n.trim_start_matches('/').to_string()))
        else {
            continue;
        };
        let Some(at) = aside.find(OLD_MARK) else {
            continue;
        };
        let original = aside[..at].to_string();
        if let ContainerSelector::Name(name) = select
            && *name != original
        {
            continue; // the name filter matches substrings: `api` also finds `api2-ferry-old-…`
        }
        let _ = docker.remove_container(&original, Some(force())).await;
        docker
            .rename_container(
                &aside,
                RenameContainerOptions {
                    name: original.clone(),
                },
            )
            .await?;
        let running = c.state.is_some_and(|s| s.to_string() == "running");
        if !running {
            docker.start_container(&original, None).await?;
        }
        log.ferry(&format!(
            "restored {original} from an interrupted deployment (it was {aside}{})",
            if running { "" } else { ", stopped" }
        ))
        .await?;
    }
    Ok(())
}

/// Marks the name of an old container moved aside during a replacement.
const OLD_MARK: &str = "-ferry-old-";

/// Whether `name` is an old container's name while a replacement is tried (or was cut off):
/// what happens to it is ferry's own doing (`crate::watch` reports none of it).
pub(crate) fn is_aside(name: &str) -> bool {
    name.contains(OLD_MARK)
}

/// The old container while its replacement is tried: renamed aside, stopped if need be.
struct Aside {
    /// The container's own name, which the new container takes.
    name: String,
    /// Its name meanwhile: `NAME-ferry-old-DEPLOYMENT`.
    aside: String,
    id: String,
    /// Stopped to free its published ports: a rollback starts it again.
    stopped: bool,
}

/// Replaces one container. `Ok(Succeeded)`, or `Ok(RolledBack)` with the old one restored.
/// Steps: `create` (moved aside, created), `start`, `health`, then `remove` or `rollback`.
async fn replace(
    run: &Run<'_>,
    name: &str,
    image: &str,
    new_image_id: &str,
) -> Result<Outcome, DockerError> {
    let Run {
        docker,
        job,
        log,
        cancel,
        steps,
    } = *run;
    let old = docker.inspect_container(name, None).await?;
    let running = old.state.as_ref().and_then(|s| s.running).unwrap_or(false);
    if old.image.as_deref() == Some(new_image_id) && running {
        // A redelivery, or a sender that gives no digest pushing the same image again.
        log.ferry(&format!(
            "container {name} already runs {image}; nothing to replace"
        ))
        .await?;
        return Ok(Outcome::Succeeded);
    }
    let old_image = match &old.image {
        Some(id) => docker
            .inspect_image(id)
            .await
            .ok()
            .and_then(|i| i.config)
            .unwrap_or_default(),
        None => ImageConfig::default(),
    };
    let (body, networks) = new_container(&old, &old_image, image);
    let create = steps.begin(StepName::Create, Some(name)).await;
    let aside = move_aside(docker, &old, name, job.deployment_id, log).await?;
    // From here on any failure restores the old container.
    let attempt = start_new(docker, name, image, body, &networks, log, (steps, create)).await;
    let health = match &attempt {
        Ok(id) => {
            let step = steps.begin(StepName::Health, Some(name)).await;
            let health = wait_healthy(docker, &job.spec.health, log, cancel, id).await;
            let failed = match &health {
                Health::Healthy(_) => None,
                Health::Failed(reason) | Health::Cancelled(reason) => Some(reason.as_str()),
            };
            steps.end(step, failed.is_none(), failed).await;
            health
        }
        Err(e) => Health::Failed(e.clone()),
    };
    match health {
        Health::Healthy(after) => {
            let remove = remove_old(docker, &aside, after, log);
            steps.run(StepName::Remove, Some(name), remove).await?;
            Ok(Outcome::Succeeded)
        }
        Health::Failed(reason) | Health::Cancelled(reason) => {
            let new = attempt.as_deref().ok();
            let step = steps.begin(StepName::Rollback, Some(name)).await;
            let outcome = roll_back(docker, &aside, new, reason, cancel, log).await?;
            // The rollback itself worked: the old container runs again.
            steps.end(step, true, None).await;
            Ok(outcome)
        }
    }
}

/// Renames the old container aside; stops it only if it publishes host ports (the new one
/// needs them), so without ports there is no downtime.
async fn move_aside(
    docker: &Docker,
    old: &ContainerInspectResponse,
    name: &str,
    deployment: i64,
    log: &LogWriter,
) -> Result<Aside, DockerError> {
    let id = old.id.clone().unwrap_or_default();
    let running = old.state.as_ref().and_then(|s| s.running).unwrap_or(false);
    let publishes = old
        .host_config
        .as_ref()
        .and_then(|h| h.port_bindings.as_ref())
        .is_some_and(|p| {
            p.values()
                .any(|b| b.as_ref().is_some_and(|b| !b.is_empty()))
        });
    let aside = format!("{name}{OLD_MARK}{deployment}");
    let rename = RenameContainerOptions {
        name: aside.clone(),
    };
    docker.rename_container(name, rename).await?;
    log.ferry(&format!(
        "container {name}: old one ({}) renamed to {aside}",
        short(&id)
    ))
    .await?;
    let mut stopped = false;
    if publishes && running {
        let t = Instant::now();
        let options = StopContainerOptions {
            t: Some(10),
            ..Default::default()
        };
        docker.stop_container(&aside, Some(options)).await?;
        stopped = true;
        log.ferry(&format!(
            "stopped the old one in {} (its published ports are needed)",
            secs(t.elapsed())
        ))
        .await?;
    }
    Ok(Aside {
        name: name.to_string(),
        aside,
        id,
        stopped,
    })
}

/// Creates the new container under `name`, connects its other networks and starts it; ends
/// the `create` step begun before the old one moved aside, and records `start`. `Err` is the
/// reason for the rollback.
async fn start_new(
    docker: &Docker,
    name: &str,
    image: &str,
    body: ContainerCreateBody,
    networks: &[(String, EndpointSettings)],
    log: &LogWriter,
    (steps, create): (&Steps, StepId),
) -> Result<String, String> {
    let created = create_new(docker, name, image, body, networks, log).await;
    steps
        .end(
            create,
            created.is_ok(),
            created.as_ref().err().map(String::as_str),
        )
        .await;
    let id = created?;
    // The call inside the step, so that the step's time is the engine's start.
    let start = async {
        docker
            .start_container(&id, None)
            .await
            .map_err(|e| format!("starting the new container failed: {e}"))
    };
    steps.run(StepName::Start, Some(name), start).await?;
    Ok(id)
}

/// Creates the new container under `name` and connects its other networks.
async fn create_new(
    docker: &Docker,
    name: &str,
    image: &str,
    body: ContainerCreateBody,
    networks: &[(String, EndpointSettings)],
    log: &LogWriter,
) -> Result<String, String> {
    let started = Instant::now();
    let options = CreateContainerOptions {
        name: Some(name.to_string()),
        ..Default::default()
    };
    let created = docker
        .create_container(Some(options), body)
        .await
        .map_err(|e| format!("creating the new container failed: {e}"))?;
    let id = created.id;
    log.ferry(&format!(
        "created {} from {image} in {}",
        short(&id),
        secs(started.elapsed())
    ))
    .await
    .map_err(|e| e.to_string())?;
    for (network, endpoint) in networks {
        let request = NetworkConnectRequest {
            container: id.clone(),
            endpoint_config: Some(endpoint.clone()),
        };
        docker
            .connect_network(network, request)
            .await
            .map_err(|e| format!("connecting to network {network} failed: {e}"))?;
    }
    Ok(id)
}

/// The new container is healthy: the old one goes (its volumes stay).
async fn remove_old(
    docker: &Docker,
    old: &Aside,
    after: std::time::Duration,
    log: &LogWriter,
) -> Result<(), DockerError> {
    log.ferry(&format!("healthy after {}", secs(after))).await?;
    docker.remove_container(&old.aside, Some(force())).await?;
    log.ferry(&format!("removed the old container ({})", short(&old.id)))
        .await?;
    Ok(())
}

/// The new container (`new`, if it was created) failed for `reason`: it goes, and the old
/// one gets its name back, restarted if it was stopped. A stopped run (cancel, shutdown)
/// ends `Cancelled`, any other `RolledBack`.
async fn roll_back(
    docker: &Docker,
    old: &Aside,
    new: Option<&str>,
    reason: String,
    cancel: &Stop,
    log: &LogWriter,
) -> Result<Outcome, DockerError> {
    let cancelled = cancel.is_cancelled();
    log.ferry(&format!("{reason}; rolling back")).await?;
    if let Some(id) = new
        && let Some(tail) = container_log_tail(docker, id).await
    {
        log.ferry(&format!("the new container's last output:\n{tail}"))
            .await?;
    }
    let name = &old.name;
    // Remove whatever holds the name: the new container, if it was created.
    let _ = docker.remove_container(name, Some(force())).await;
    let rename = RenameContainerOptions { name: name.clone() };
    docker.rename_container(&old.aside, rename).await?;
    if old.stopped {
        docker.start_container(name, None).await?;
    }
    log.ferry(&format!(
        "rolled back: {name} is the old container ({}) again{}",
        short(&old.id),
        if old.stopped { ", restarted" } else { "" }
    ))
    .await?;
    if cancelled {
        return Ok(Outcome::Cancelled);
    }
    Ok(Outcome::RolledBack { reason })
}

fn force() -> RemoveContainerOptions {
    RemoveContainerOptions {
        force: true,
        ..Default::default()
    }
}

/// The last lines the container wrote, for the deployment log of a failed replacement.
async fn container_log_tail(docker: &Docker, id: &str) -> Option<String> {
    let options = bollard::query_parameters::LogsOptions {
        stdout: true,
        stderr: true,
        tail: "10".into(),
        ..Default::default()
    };
    let mut out = String::new();
    let mut stream = docker.logs(id, Some(options));
    while let Some(Ok(chunk)) = stream.next().await {
        out.push_str(&chunk.to_string());
    }
    let out = out.trim_end().to_string();
    (!out.is_empty()).then_some(out)
}

/// A container or image id as `docker ps` shows it.
pub(crate) fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}
