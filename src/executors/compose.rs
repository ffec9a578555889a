//! The compose executor: pull and recreate some services of a Compose project, through Compose.
//!
//! Runs `docker compose` (the v2 plugin) or, where only that exists, `docker-compose` (v1):
//! `pull SERVICES`, then `up -d --no-deps SERVICES`, each as a command (own process group,
//! output in the deployment log, the service's timeout). Going through Compose keeps its
//! labels and config hash on the containers, so a later `docker compose up` by hand does not
//! recreate them again. Then every container of those services must become healthy (the same
//! gate as the docker executor). Compose has no rollback of its own: a service that does not
//! become healthy is `failed`, with the reason.
//!
//! What runs is what the Compose file names (its tags, after the pull). The deploy gets the
//! `FERRY_*` environment, so a file may also pin `image: repo@${FERRY_IMAGE_DIGEST}`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use bollard::query_parameters::ListContainersOptions;

use super::command::{self, CommandSpec};
use super::docker;
use super::env::Env;
use super::health::{Health, secs, wait_healthy};
use super::{Outcome, Steps, Stop};
use crate::config::ComposeSpec;
use crate::deploylog::LogWriter;
use crate::states::StepName;

/// Everything one compose deployment needs.
#[derive(Debug, Clone)]
pub(crate) struct ComposeJob {
    pub(crate) spec: ComposeSpec,
    /// The Compose file's directory: the commands run there.
    pub(crate) workdir: PathBuf,
    pub(crate) env: Vec<(String, String)>,
    pub(crate) env_remove: Vec<String>,
    /// Of each Compose command.
    pub(crate) timeout: Duration,
    /// See [`CommandSpec::pid_file`].
    pub(crate) pid_file: PathBuf,
}

impl ComposeJob {
    pub(super) fn new(
        spec: &ComposeSpec,
        env: Env,
        timeout: Duration,
        pid_file: PathBuf,
    ) -> ComposeJob {
        ComposeJob {
            spec: spec.clone(),
            workdir: spec
                .file
                .parent()
                .map(std::path::Path::to_path_buf)
                .unwrap_or_default(),
            env: env.set,
            env_remove: env.remove,
            timeout,
            pid_file,
        }
    }
}

/// Why a compose deployment could not be carried out.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ComposeError {
    #[error("neither `docker compose` nor `docker-compose` is available")]
    NoCompose,
    #[error(transparent)]
    Command(#[from] command::CommandError),
    #[error(transparent)]
    Docker(#[from] docker::DockerError),
    #[error("docker: {0}")]
    Api(#[from] bollard::errors::Error),
    #[error("compose service {service}: {reason}")]
    Unhealthy { service: String, reason: String },
    #[error("compose service {0} has no container after `up`")]
    NoContainer(String),
    #[error("cannot write the deployment log: {0}")]
    Log(#[from] std::io::Error),
}

/// Runs one compose deployment. See the module documentation.
pub(crate) async fn run(
    job: &ComposeJob,
    log: &LogWriter,
    cancel: &Stop,
    steps: &Steps,
) -> Result<Outcome, ComposeError> {
    let program = program().await.ok_or(ComposeError::NoCompose)?;
    let outcome = pull_and_up(job, program, log, cancel, steps).await?;
    if outcome != Outcome::Succeeded {
        return Ok(outcome);
    }
    let engine = docker::connect().await?;
    for service in &job.spec.services {
        let step = steps.begin(StepName::Health, Some(service)).await;
        let outcome = wait_service_healthy(&engine, job, service, log, cancel).await?;
        steps.end_with(step, &outcome).await;
        if outcome != Outcome::Succeeded {
            return Ok(outcome);
        }
    }
    Ok(Outcome::Succeeded)
}

/// `compose pull SERVICES`, then `compose up -d --no-deps SERVICES`, each as a command.
async fn pull_and_up(
    job: &ComposeJob,
    program: Vec<String>,
    log: &LogWriter,
    cancel: &Stop,
    steps: &Steps,
) -> Result<Outcome, ComposeError> {
    let spec = &job.spec;
    let base: Vec<String> = program
        .into_iter()
        .chain([
            "-p".to_string(),
            spec.project.clone(),
            "-f".to_string(),
            spec.file.display().to_string(),
        ])
        .collect();
    let commands: [(StepName, &[&str]); 2] = [
        (StepName::Pull, &["pull"]),
        (StepName::Up, &["up", "-d", "--no-deps"]),
    ];
    for (name, step) in commands {
        let argv: Vec<String> = base
            .iter()
            .cloned()
            .chain(step.iter().map(|s| s.to_string()))
            .chain(spec.services.iter().cloned())
            .collect();
        log.ferry(&format!("running {}", argv.join(" "))).await?;
        let command = CommandSpec {
            argv,
            workdir: job.workdir.clone(),
            env: job.env.clone(),
            env_remove: job.env_remove.clone(),
            timeout: job.timeout,
            pid_file: Some(job.pid_file.clone()),
        };
        let begun = steps.begin(name, None).await;
        let outcome = command::run(&command, log, cancel).await?;
        steps.end_with(begun, &outcome).await;
        if outcome != Outcome::Succeeded {
            return Ok(outcome);
        }
    }
    Ok(Outcome::Succeeded)
}

/// Waits until every container of one Compose service is healthy (the docker health gate).
async fn wait_service_healthy(
    engine: &bollard::Docker,
    job: &ComposeJob,
    service: &str,
    log: &LogWriter,
    cancel: &Stop,
) -> Result<Outcome, ComposeError> {
    let filters = HashMap::from([(
        "label".to_string(),
        vec![
            format!("com.docker.compose.project={}", job.spec.project),
            format!("com.docker.compose.service={service}"),
        ],
    )]);
    let containers = engine
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        }))
        .await?;
    if containers.is_empty() {
        return Err(ComposeError::NoContainer(service.to_string()));
    }
    for c in containers {
        let id = c.id.unwrap_or_default();
        match wait_healthy(engine, &job.spec.health, log, cancel, &id).await {
            Health::Healthy(after) => {
                let short = docker::short(&id);
                log.ferry(&format!(
                    "{service}: container {short} healthy after {}",
                    secs(after)
                ))
                .await?;
            }
            Health::Cancelled(_) => return Ok(Outcome::Cancelled),
            Health::Failed(reason) => {
                return Err(ComposeError::Unhealthy {
                    service: service.to_string(),
                    reason,
                });
            }
        }
    }
    Ok(Outcome::Succeeded)
}

/// `docker compose` if the plugin answers, else `docker-compose` if it does.
pub(crate) async fn program() -> Option<Vec<String>> {
    let works = |argv: &'static [&'static str]| async move {
        tokio::process::Command::new(argv[0])
            .args(&argv[1..])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .await
            .is_ok_and(|s| s.success())
    };
    if works(&["docker", "compose", "version"]).await {
        return Some(vec!["docker".into(), "compose".into()]);
    }
    if works(&["docker-compose", "version"]).await {
        return Some(vec!["docker-compose".into()]);
    }
    None
}
