//! The docker executor: replace a service's containers with ones running a new image.
//!
//! Talks to the Docker Engine API through bollard (unix socket, `DOCKER_HOST` honoured). For
//! each selected container, one at a time:
//!
//! 1. pull the image — by digest when the sender gave one, else by tag, and then read the digest
//!    the registry served, so a deployment always runs exactly one known image (and a pushed
//!    tag that does not exist in the registry fails here, before anything is touched);
//! 2. rename the old container out of the way (`NAME-ferry-old-DEPLOYMENT`); stop it only if it
//!    publishes host ports (the new one needs them), so without ports there is no downtime;
//! 3. create the new container with the old one's configuration, pinned to `repo@digest`,
//!    connect its networks with their aliases, start it;
//! 4. wait until it is healthy: its Docker healthcheck, else the configured HTTP probe, else
//!    running without a restart for `stable_for`;
//! 5. healthy: remove the old container (its volumes stay). Not healthy in time, or exited:
//!    remove the new one, give the old one its name back, start it again if it was stopped,
//!    and report `rolled_back` with the reason.
//!
//! What is copied, and what is not: everything a user set on the old container (environment,
//! binds, mounts and volumes, networks with aliases, published ports, labels, restart policy,
//! command, entrypoint, user, resources, healthcheck) — but not the values that came from the
//! old *image* (its env, cmd, entrypoint, healthcheck, labels, working dir, user), which the new
//! image supplies itself, nor the generated hostname or the short-id network alias (both name
//! the old container). The old container is never removed before the new one is healthy.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::auth::DockerCredentials;
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, EndpointSettings, HealthStatusEnum, ImageConfig,
    NetworkConnectRequest, NetworkingConfig,
};
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, ListContainersOptions, RemoveContainerOptions,
    RenameContainerOptions, StopContainerOptions,
};
use futures_util::StreamExt;

use super::Outcome;
use crate::config::{ContainerSelector, DockerSpec, HealthGate};
use crate::deploylog::LogWriter;
use crate::image_ref::{DOCKER_HUB_ALIASES, registry_host};

/// What to deploy: the image and which containers get it.
#[derive(Debug, Clone)]
pub struct DockerJob {
    pub spec: DockerSpec,
    /// Repository as configured, e.g. `registry.example.com/acme/api`.
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
    pub deployment_id: i64,
}

/// How a docker deployment ended, and the digest it ran (resolved from the tag if the sender
/// gave none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerResult {
    pub outcome: Outcome,
    pub digest: Option<String>,
}

/// Why a docker deployment could not be carried out. Nothing was replaced when these occur
/// (a failure after the old container was moved aside is a rollback, not an error).
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
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
    #[error("cannot write the deployment log: {0}")]
    Log(#[from] std::io::Error),
}

/// Runs one docker deployment. See the module documentation for the sequence.
pub async fn run(
    job: &DockerJob,
    log: &LogWriter,
    cancel: &super::Stop,
) -> Result<DockerResult, DockerError> {
    let docker = connect().await?;
    restore_leftovers(&docker, &job.spec.select, log).await?;
    let targets = select(&docker, &job.spec.select).await?;
    // A pull touches no container: a cancel (or shutdown) may simply abandon it.
    let digest = tokio::select! {
        digest = pull(&docker, job, log) => digest?,
        () = cancel.cancelled() => {
            log.ferry(&format!("cancelled while pulling: {}", cancel.why())).await?;
            return Ok(DockerResult { outcome: Outcome::Cancelled, digest: None });
        }
    };
    let image = format!("{}@{digest}", job.repository);
    let new_image = docker.inspect_image(&image).await?;
    let new_id = new_image.id.clone().unwrap_or_default();
    // The images the replaced containers ran: what a rollback needs, so never pruned.
    let mut previous = Vec::new();
    for name in &targets {
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
            return Ok(DockerResult {
                outcome: Outcome::Cancelled,
                digest: Some(digest),
            });
        }
        let step = replace(&docker, job, log, cancel, name, &image, &new_id).await?;
        if step != Outcome::Succeeded {
            // Replicas are replaced one at a time; the first that fails stops the rollout, and
            // the ones already replaced keep the new version.
            return Ok(DockerResult {
                outcome: step,
                digest: Some(digest),
            });
        }
    }
    if let Some(keep) = job.spec.keep_images {
        previous.push(new_id);
        prune_images(&docker, &job.repository, &previous, keep, log).await?;
    }
    Ok(DockerResult {
        outcome: Outcome::Succeeded,
        digest: Some(digest),
    })
}

/// Removes old images of the repository, keeping the newest `keep` besides those in `needed`
/// (the one now running and the one a rollback needs). An image still used by some container
/// is left alone (the engine refuses, and that is fine).
async fn prune_images(
    docker: &Docker,
    repository: &str,
    needed: &[String],
    keep: usize,
    log: &LogWriter,
) -> Result<(), DockerError> {
    let ours = |refs: &[String]| {
        refs.iter().any(|r| {
            r.strip_prefix(repository)
                .is_some_and(|rest| rest.starts_with('@') || rest.starts_with(':'))
        })
    };
    let mut images: Vec<_> = docker
        .list_images(Some(bollard::query_parameters::ListImagesOptions {
            all: false,
            ..Default::default()
        }))
        .await?
        .into_iter()
        .filter(|i| ours(&i.repo_tags) || ours(&i.repo_digests))
        .filter(|i| !needed.contains(&i.id))
        .collect();
    images.sort_by_key(|i| std::cmp::Reverse(i.created));
    let mut needed = needed.to_vec();
    needed.sort();
    needed.dedup();
    let extra = keep.saturating_sub(needed.len());
    let mut removed = 0;
    for image in images.iter().skip(extra) {
        // By reference, not id: an image with several tags is only removed with all of them.
        let refs = image
            .repo_tags
            .iter()
            .chain(&image.repo_digests)
            .filter(|r| ours(std::slice::from_ref(r)));
        let mut gone = true;
        for r in refs {
            if let Err(e) = docker
                .remove_image(
                    r,
                    None::<bollard::query_parameters::RemoveImageOptions>,
                    None,
                )
                .await
            {
                log.ferry(&format!("kept image {r}: {e}")).await?;
                gone = false;
                break;
            }
        }
        if gone {
            removed += 1;
        }
    }
    if removed > 0 {
        log.ferry(&format!(
            "removed {removed} old image(s) of {repository} (keep_images = {keep})"
        ))
        .await?;
    }
    Ok(())
}

/// Connects to the engine (`DOCKER_HOST`, else the local socket) at the API version it speaks.
pub(crate) async fn connect() -> Result<Docker, DockerError> {
    Docker::connect_with_defaults()
        .map_err(DockerError::Connect)?
        .negotiate_version()
        .await
        .map_err(DockerError::Connect)
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
        let _ = docker
            .remove_container(
                &original,
                Some(RemoveContainerOptions {
                    force: true,
                    ..Default::default()
                }),
            )
            .await;
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

/// Pulls the image and returns its digest.
async fn pull(docker: &Docker, job: &DockerJob, log: &LogWriter) -> Result<String, DockerError> {
    let reference = reference(&job.repository, job.tag.as_deref(), job.digest.as_deref());
    log.ferry(&format!("pulling {reference}")).await?;
    let started = Instant::now();
    let options = CreateImageOptions {
        from_image: Some(reference.clone()),
        ..Default::default()
    };
    let credentials = credentials(&job.spec, &job.repository);
    let mut stream = docker.create_image(Some(options), None, credentials);
    while let Some(item) = stream.next().await {
        let info = item.map_err(|e| DockerError::Pull {
            reference: reference.clone(),
            message: e.to_string(),
        })?;
        if let Some(detail) = info.error_detail.and_then(|d| d.message) {
            return Err(DockerError::Pull {
                reference,
                message: detail,
            });
        }
    }
    let digest = match &job.digest {
        Some(d) => d.clone(),
        None => {
            let inspect = docker.inspect_image(&reference).await?;
            let prefix = format!("{}@", job.repository);
            inspect
                .repo_digests
                .unwrap_or_default()
                .iter()
                .find_map(|d| d.strip_prefix(&prefix).map(str::to_string))
                .ok_or_else(|| DockerError::NoDigest(reference.clone(), job.repository.clone()))?
        }
    };
    log.ferry(&format!(
        "pulled in {}; digest {digest}",
        secs(started.elapsed())
    ))
    .await?;
    Ok(digest)
}

/// The image reference to pull or run: by digest when known, else by tag.
pub(crate) fn reference(repository: &str, tag: Option<&str>, digest: Option<&str>) -> String {
    match (digest, tag) {
        (Some(d), _) => format!("{repository}@{d}"),
        (None, Some(t)) => format!("{repository}:{t}"),
        (None, None) => format!("{repository}:latest"),
    }
}

/// Credentials for the image's registry: from config, else from the user's Docker config.
fn credentials(spec: &DockerSpec, repository: &str) -> Option<DockerCredentials> {
    let host = registry_host(repository);
    if let Some((user, password)) = &spec.auth {
        return Some(DockerCredentials {
            username: Some(user.clone()),
            password: Some(password.expose().to_string()),
            serveraddress: Some(host),
            ..Default::default()
        });
    }
    let dir = std::env::var_os("DOCKER_CONFIG")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".docker")))?;
    let text = std::fs::read_to_string(dir.join("config.json")).ok()?;
    let config: serde_json::Value = serde_json::from_str(&text).ok()?;
    let auths = config.get("auths")?.as_object()?;
    let entry = auths.iter().find_map(|(k, v)| {
        let k = k
            .trim_start_matches("https://")
            .trim_start_matches("http://");
        let k = k.split('/').next().unwrap_or(k);
        let matches = k == host || (host == "docker.io" && DOCKER_HUB_ALIASES.contains(&k));
        matches.then_some(v)
    })?;
    // `auth` is base64 of `user:password`; the engine wants them apart (it does not decode
    // `auth` itself). Credential helpers (`credsStore`) are not consulted.
    use base64::Engine as _;
    let auth = entry.get("auth")?.as_str()?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(auth)
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some(DockerCredentials {
        username: Some(user.to_string()),
        password: Some(password.to_string()),
        serveraddress: Some(host),
        ..Default::default()
    })
}

/// Replaces one container. `Ok(Succeeded)`, or `Ok(RolledBack)` with the old one restored.
async fn replace(
    docker: &Docker,
    job: &DockerJob,
    log: &LogWriter,
    cancel: &super::Stop,
    name: &str,
    image: &str,
    new_image_id: &str,
) -> Result<Outcome, DockerError> {
    let old = docker.inspect_container(name, None).await?;
    let old_id = old.id.clone().unwrap_or_default();
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
    let was_running = old.state.as_ref().and_then(|s| s.running).unwrap_or(false);
    let (body, extra_networks) = new_container(&old, &old_image, image);
    let publishes = old
        .host_config
        .as_ref()
        .and_then(|h| h.port_bindings.as_ref())
        .is_some_and(|p| {
            p.values()
                .any(|b| b.as_ref().is_some_and(|b| !b.is_empty()))
        });

    let aside = format!("{name}{OLD_MARK}{}", job.deployment_id);
    docker
        .rename_container(
            name,
            RenameContainerOptions {
                name: aside.clone(),
            },
        )
        .await?;
    log.ferry(&format!(
        "container {name}: old one ({}) renamed to {aside}",
        short(&old_id)
    ))
    .await?;
    let mut stopped = false;
    if publishes && was_running {
        let t = Instant::now();
        docker
            .stop_container(
                &aside,
                Some(StopContainerOptions {
                    t: Some(10),
                    ..Default::default()
                }),
            )
            .await?;
        stopped = true;
        log.ferry(&format!(
            "stopped the old one in {} (its published ports are needed)",
            secs(t.elapsed())
        ))
        .await?;
    }

    // From here on any failure restores the old container.
    let started = Instant::now();
    let attempt = async {
        let created = docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(name.to_string()),
                    ..Default::default()
                }),
                body,
            )
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
        for (network, endpoint) in &extra_networks {
            docker
                .connect_network(
                    network,
                    NetworkConnectRequest {
                        container: id.clone(),
                        endpoint_config: Some(endpoint.clone()),
                    },
                )
                .await
                .map_err(|e| format!("connecting to network {network} failed: {e}"))?;
        }
        docker
            .start_container(&id, None)
            .await
            .map_err(|e| format!("starting the new container failed: {e}"))?;
        Ok::<String, String>(id)
    }
    .await;
    let health = match &attempt {
        Ok(id) => wait_healthy(docker, &job.spec.health, log, cancel, id).await,
        Err(e) => Health::Failed(e.clone()),
    };
    match health {
        Health::Healthy(after) => {
            log.ferry(&format!("healthy after {}", secs(after))).await?;
            docker
                .remove_container(
                    &aside,
                    Some(RemoveContainerOptions {
                        force: true,
                        ..Default::default()
                    }),
                )
                .await?;
            log.ferry(&format!("removed the old container ({})", short(&old_id)))
                .await?;
            Ok(Outcome::Succeeded)
        }
        Health::Failed(reason) | Health::Cancelled(reason) => {
            let cancelled = cancel.is_cancelled();
            log.ferry(&format!("{reason}; rolling back")).await?;
            if let Ok(id) = &attempt {
                if let Some(tail) = container_log_tail(docker, id).await {
                    log.ferry(&format!("the new container's last output:\n{tail}"))
                        .await?;
                }
            }
            // Remove whatever holds the name: the new container, if it was created.
            let _ = docker
                .remove_container(
                    name,
                    Some(RemoveContainerOptions {
                        force: true,
                        ..Default::default()
                    }),
                )
                .await;
            docker
                .rename_container(
                    &aside,
                    RenameContainerOptions {
                        name: name.to_string(),
                    },
                )
                .await?;
            if stopped {
                docker.start_container(name, None).await?;
            }
            log.ferry(&format!(
                "rolled back: {name} is the old container ({}) again{}",
                short(&old_id),
                if stopped { ", restarted" } else { "" }
            ))
            .await?;
            if cancelled {
                return Ok(Outcome::Cancelled);
            }
            Ok(Outcome::RolledBack { reason })
        }
    }
}

/// How the wait for a new container ended.
pub(crate) enum Health {
    Healthy(Duration),
    Failed(String),
    Cancelled(String),
}

/// Waits until a new container is healthy (see [`HealthGate`]), or fails, or the time is up.
pub(crate) async fn wait_healthy(
    docker: &Docker,
    spec: &HealthGate,
    log: &LogWriter,
    cancel: &super::Stop,
    id: &str,
) -> Health {
    let started = Instant::now();
    let deadline = started + spec.timeout;
    let http = crate::outgoing::builder(Duration::from_secs(2))
        .build()
        .ok();
    let mut announced = false;
    let mut running_since: Option<Instant> = None;
    let mut restarts: Option<i64> = None;
    loop {
        let c = match docker.inspect_container(id, None).await {
            Ok(c) => c,
            Err(e) => return Health::Failed(format!("cannot inspect the new container: {e}")),
        };
        let state = c.state.clone().unwrap_or_default();
        if !state.running.unwrap_or(false) && !state.restarting.unwrap_or(false) {
            return Health::Failed(format!(
                "the new container exited (code {}){}",
                state.exit_code.unwrap_or(-1),
                state
                    .error
                    .filter(|e| !e.is_empty())
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            ));
        }
        let has_check = c
            .config
            .as_ref()
            .and_then(|c| c.healthcheck.as_ref())
            .and_then(|h| h.test.as_ref())
            .is_some_and(|t| t.first().is_some_and(|x| x != "NONE"));
        let how = if has_check {
            "its healthcheck"
        } else if spec.probe.is_some() {
            "the HTTP probe"
        } else {
            "it to keep running"
        };
        if !announced {
            let _ = log
                .ferry(&format!(
                    "started; waiting for {how} (at most {})",
                    secs(spec.timeout)
                ))
                .await;
            announced = true;
        }
        let health = state.health.clone().unwrap_or_default();
        if has_check {
            match health.status {
                Some(HealthStatusEnum::HEALTHY) => return Health::Healthy(started.elapsed()),
                Some(HealthStatusEnum::UNHEALTHY) => {
                    let output = health
                        .log
                        .and_then(|l| l.last().and_then(|r| r.output.clone()))
                        .map(|o| o.trim().to_string())
                        .filter(|o| !o.is_empty())
                        .map(|o| format!(" (last check: {o})"))
                        .unwrap_or_default();
                    return Health::Failed(format!("the new container is unhealthy{output}"));
                }
                _ => {}
            }
        } else if let (Some(url), Some(http)) = (&spec.probe, &http) {
            if let Ok(r) = http.get(url).send().await
                && r.status().is_success()
            {
                return Health::Healthy(started.elapsed());
            }
        } else {
            let count = c.restart_count.unwrap_or(0);
            if restarts != Some(count) {
                restarts = Some(count);
                running_since = Some(Instant::now());
            }
            if running_since.is_some_and(|t| t.elapsed() >= spec.stable_for) {
                return Health::Healthy(started.elapsed());
            }
        }
        if Instant::now() >= deadline {
            let status = health
                .status
                .map(|s| s.to_string())
                .unwrap_or_else(|| "running".into());
            return Health::Failed(format!(
                "the new container was not healthy after {} (waited for {how}; status {status})",
                secs(spec.timeout)
            ));
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = cancel.cancelled() => return Health::Cancelled(cancel.why().to_string()),
        }
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

/// The create request for the new container: the old one's settings, minus what came from the
/// old image or names the old container, on the new image. Returns it and the networks to
/// connect after creating (the API takes only one at create time before v1.44).
fn new_container(
    old: &ContainerInspectResponse,
    old_image: &ImageConfig,
    image: &str,
) -> (ContainerCreateBody, Vec<(String, EndpointSettings)>) {
    let config = old.config.clone().unwrap_or_default();
    let old_id = old.id.clone().unwrap_or_default();
    let short_id = short(&old_id).to_string();
    // Values equal to the old image's defaults were not set by the user: leave them unset so
    // the new image's own defaults apply.
    let unless_default = |value: Option<Vec<String>>, default: &Option<Vec<String>>| {
        value.filter(|v| Some(v) != default.as_ref())
    };
    let image_env: Vec<&String> = old_image.env.iter().flatten().collect();
    let env: Vec<String> = config
        .env
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|e| !image_env.contains(&e))
        .collect();
    let labels: HashMap<String, String> = config
        .labels
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, v)| old_image.labels.as_ref().and_then(|l| l.get(k)) != Some(v))
        .collect();
    let healthcheck = config
        .healthcheck
        .clone()
        .filter(|h| Some(h) != old_image.healthcheck.as_ref());
    // Docker sets the hostname to the short id unless the user gave one.
    let hostname = config.hostname.clone().filter(|h| *h != short_id);
    let working_dir = config
        .working_dir
        .clone()
        .filter(|w| Some(w) != old_image.working_dir.as_ref() && !w.is_empty());
    let user = config
        .user
        .clone()
        .filter(|u| Some(u) != old_image.user.as_ref() && !u.is_empty());
    let stop_signal = config
        .stop_signal
        .clone()
        .filter(|s| Some(s) != old_image.stop_signal.as_ref());
    let exposed_ports = config.exposed_ports.clone().map(|ports| {
        ports
            .into_iter()
            .filter(|p| !old_image.exposed_ports.iter().flatten().any(|x| x == p))
            .collect::<Vec<_>>()
    });

    let mut host_config = old.host_config.clone().unwrap_or_default();
    // Anonymous volumes of the old container (from the image's VOLUME) carry its data: mount
    // them by name, so the new container sees the same data.
    let mut binds = host_config.binds.clone().unwrap_or_default();
    let named: Vec<String> = host_config
        .mounts
        .iter()
        .flatten()
        .filter_map(|m| m.target.clone())
        .collect();
    for m in old.mounts.iter().flatten() {
        let (Some(name), Some(dest)) = (&m.name, &m.destination) else {
            continue;
        };
        let is_volume = m.typ.as_deref() == Some("volume");
        let declared = binds
            .iter()
            .any(|b| b.split(':').nth(1) == Some(dest.as_str()))
            || named.contains(dest);
        if is_volume && !declared {
            binds.push(format!("{name}:{dest}"));
        }
    }
    host_config.binds = (!binds.is_empty()).then_some(binds);

    // Networks: the primary one at create, the others connected before start. Aliases keep
    // what the user gave, without the old container's short id (Docker adds the new one's).
    let networks = old
        .network_settings
        .as_ref()
        .and_then(|n| n.networks.clone())
        .unwrap_or_default();
    let endpoint = |settings: &EndpointSettings| EndpointSettings {
        aliases: settings.aliases.clone().map(|a| {
            a.into_iter()
                .filter(|x| *x != short_id && *x != old_id)
                .collect()
        }),
        links: settings.links.clone(),
        driver_opts: settings.driver_opts.clone(),
        // A fixed address (set by the user) moves with the container; a dynamic one does not.
        ipam_config: settings.ipam_config.clone(),
        ..Default::default()
    };
    let primary = host_config.network_mode.clone().unwrap_or_default();
    let mut first = HashMap::new();
    let mut extra = Vec::new();
    let mut names: Vec<&String> = networks.keys().collect();
    names.sort();
    for net in names {
        let settings = endpoint(&networks[net]);
        if *net == primary || (primary == "default" && net == "bridge") {
            first.insert(net.clone(), settings);
        } else {
            extra.push((net.clone(), settings));
        }
    }

    let body = ContainerCreateBody {
        hostname,
        domainname: config.domainname.clone(),
        user,
        exposed_ports,
        tty: config.tty,
        open_stdin: config.open_stdin,
        stdin_once: config.stdin_once,
        attach_stdin: config.attach_stdin,
        attach_stdout: config.attach_stdout,
        attach_stderr: config.attach_stderr,
        env: Some(env),
        cmd: unless_default(config.cmd.clone(), &old_image.cmd),
        entrypoint: unless_default(config.entrypoint.clone(), &old_image.entrypoint),
        healthcheck,
        image: Some(image.to_string()),
        working_dir,
        labels: Some(labels),
        stop_signal,
        stop_timeout: config.stop_timeout,
        volumes: None,
        host_config: Some(host_config),
        networking_config: Some(NetworkingConfig {
            endpoints_config: Some(first),
        }),
        ..Default::default()
    };
    (body, extra)
}

fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_defaults_are_not_copied_but_user_settings_are() {
        let old_image = ImageConfig {
            env: Some(vec!["PATH=/bin".into(), "VERSION=1.0.0".into()]),
            cmd: Some(vec!["serve".into()]),
            labels: Some(HashMap::from([("org.version".into(), "1.0.0".into())])),
            ..Default::default()
        };
        let old = ContainerInspectResponse {
            id: Some("0123456789abcdef".into()),
            config: Some(bollard::models::ContainerConfig {
                hostname: Some("0123456789ab".into()),
                env: Some(vec![
                    "PATH=/bin".into(),
                    "VERSION=1.0.0".into(),
                    "GREETING=hello".into(),
                ]),
                cmd: Some(vec!["serve".into()]),
                labels: Some(HashMap::from([
                    ("org.version".into(), "1.0.0".into()),
                    ("ferry.service".into(), "api".into()),
                ])),
                ..Default::default()
            }),
            ..Default::default()
        };
        let (body, extra) = new_container(&old, &old_image, "r/x@sha256:1");
        assert_eq!(body.env, Some(vec!["GREETING=hello".to_string()]));
        assert_eq!(body.cmd, None, "the new image's own CMD applies");
        assert_eq!(
            body.hostname, None,
            "the generated hostname names the old container"
        );
        assert_eq!(
            body.labels,
            Some(HashMap::from([(
                "ferry.service".to_string(),
                "api".to_string()
            )]))
        );
        assert_eq!(body.image.as_deref(), Some("r/x@sha256:1"));
        assert!(extra.is_empty());
    }
}
