//! A deployment made ready to run: [`Job::prepare`] builds it once from the service's config
//! and the deployment row, [`Job::run`] hands it to its executor.
//!
//! Everything an executor may need is decided here, in one place and before anything runs:
//! the log, the payload file, the environment (checked), the version to deploy, the settings
//! of the executor the service configures ([`Work`]) and the [`Stop`] the lanes registered.
//! A problem found while preparing is an [`Error`] and nothing runs.

use std::path::{Path, PathBuf};

use super::checkout::{self, CheckoutError, CheckoutJob, Target};
use super::command::{self, CommandError, CommandSpec};
use super::compose::{self, ComposeError, ComposeJob};
use super::docker::{self, DockerError, DockerJob};
use super::env::{Env, Payload};
use super::steps::{self, Steps};
use super::swarm::{self, SwarmError, SwarmJob};
use super::{Outcome, Stop};
use crate::config::{Config, Executor, Service};
use crate::deploylog::{self, LogWriter};
use crate::sources::values::ValueError;
use crate::states::StepName;
use crate::store::{AlertRow, Deployment, Store};

/// One deployment, ready to run.
#[derive(Debug)]
pub(crate) struct Job {
    /// The deployment's log (`DATA_DIR/logs/ID.log`): executors write their notes and the
    /// command's output here.
    pub(crate) log: LogWriter,
    /// How a cancel through the API, or ferry's shutdown, reaches the run.
    pub(crate) stop: Stop,
    /// Where the executor records the steps of the run.
    pub(crate) steps: Steps,
    /// What runs, and how.
    pub(crate) work: Work,
    /// Kept while the job lives: a command reads it through `FERRY_PAYLOAD`.
    _payload: Payload,
}

/// The executor a service configures, with all it needs; one variant per executor.
#[derive(Debug, Clone)]
pub(crate) enum Work {
    Command(CommandSpec),
    /// A command that runs in a git checkout of the deployment's commit.
    Checkout(CheckoutJob),
    Docker(DockerJob),
    /// An alert rule's `restart` of a docker service: its containers restarted in place.
    Restart(crate::config::DockerSpec),
    Compose(ComposeJob),
    Swarm(SwarmJob),
}

/// The version of an image to deploy: the repository as configured, and the tag and digest
/// the deployment names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Image {
    /// E.g. `registry.example.com/acme/api`.
    pub(crate) repository: String,
    pub(crate) tag: Option<String>,
    pub(crate) digest: Option<String>,
}

impl Image {
    /// The image a deployment names; an image executor has nothing to do without one.
    fn of(d: &Deployment) -> Result<Image, Error> {
        Ok(Image {
            repository: d.image.clone().ok_or(Error::NoImage)?,
            tag: d.image_tag.clone(),
            digest: d.image_digest.clone(),
        })
    }

    /// The reference to pull or run: by digest when known, else by tag (else `latest`).
    pub(crate) fn reference(&self) -> String {
        let repository = &self.repository;
        match (&self.digest, &self.tag) {
            (Some(d), _) => format!("{repository}@{d}"),
            (None, Some(t)) => format!("{repository}:{t}"),
            (None, None) => format!("{repository}:latest"),
        }
    }
}

/// How a job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ran {
    pub(crate) outcome: Outcome,
    /// The digest the registry served for a deployment that named only a tag (docker), to
    /// be recorded with the deployment.
    pub(crate) resolved_digest: Option<String>,
    /// The commit a checkout went to for a deployment that named none, to be recorded with
    /// the deployment (so the next redeploy goes back to it).
    pub(crate) resolved_commit: Option<String>,
}

impl From<Outcome> for Ran {
    fn from(outcome: Outcome) -> Ran {
        Ran {
            outcome,
            resolved_digest: None,
            resolved_commit: None,
        }
    }
}

/// Why a deployment could not be carried out. Its message is the deployment's reason (and
/// the last line of its log). How a run that did happen ended is an [`Outcome`].
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error("service {app}/{service} is no longer configured")]
    NotConfigured { app: String, service: String },
    #[error("cannot create log {}: {source}", path.display())]
    Log {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write payload file {}: {source}", path.display())]
    Payload {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A `FERRY_*` value failed the last check; nothing ran.
    #[error("refusing to run: {0}")]
    Refused(#[from] ValueError),
    #[error("this deployment names no image to deploy")]
    NoImage,
    #[error("cannot read the service's last deployed commit: {0}")]
    LastCommit(#[source] crate::store::StoreError),
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error(transparent)]
    Checkout(#[from] CheckoutError),
    #[error(transparent)]
    Docker(#[from] DockerError),
    #[error(transparent)]
    Compose(#[from] ComposeError),
    #[error(transparent)]
    Swarm(#[from] SwarmError),
}

impl Job {
    /// Prepares deployment `d` of the service `config` has for it: creates the log, writes
    /// `payload` (the delivery's body) to the payload file, builds and checks the environment
    /// and the executor's work. The run's steps go to `steps`; on a shared `store` (replicas)
    /// the log is copied there too, so every replica serves it. `alert` is the alert an alert
    /// rule's action acts on (its `FERRY_ALERT_*`; a `restart` action restarts in place); the
    /// service may then be a rule's command pseudo-service (`App::runnable`).
    pub(crate) async fn prepare(
        config: &Config,
        d: &Deployment,
        (payload, alert): (&[u8], Option<&AlertRow>),
        stop: Stop,
        steps: Steps,
        store: Option<&Store>,
    ) -> Result<Job, Error> {
        // An alert rule's command: the firing or the resolution's, by the alert's status.
        let resolved = alert.is_some_and(|a| a.status == "resolved");
        let service = config
            .apps
            .get(&d.app)
            .and_then(|a| match alert {
                Some(_) if d.service.starts_with(crate::states::ALERT_SERVICE_PREFIX) => {
                    a.alert_command(&d.service, resolved)
                }
                _ => a.runnable(&d.service),
            })
            .ok_or_else(|| Error::NotConfigured {
                app: d.app.clone(),
                service: d.service.clone(),
            })?;
        let data_dir = &config.server.data_dir;
        let path = deploylog::log_path(data_dir, d.id);
        let log = match store {
            Some(store) => {
                let to = deploylog::CopyTo {
                    store,
                    deployment: d.id,
                    node: &config.server.node,
                };
                LogWriter::create_copied(&path, to).await
            }
            None => LogWriter::create(&path).await,
        };
        let log = match log {
            Ok(log) => log,
            Err(source) => return Err(Error::Log { path, source }),
        };
        let last = last_commit(service, d, store).await?;
        let payload = Payload::write(data_dir, d.id, payload).await?;
        let checkout = match &service.executor {
            Executor::Command { checkout, .. } => checkout.as_ref().map(|c| c.path.as_path()),
            _ => None,
        };
        let env = Env::new(
            d,
            payload.path(),
            (checkout, alert),
            &service.env,
            &config.secret_env_vars,
        )?;
        let restart = alert.is_some_and(|a| {
            a.action
                .as_deref()
                .is_some_and(|x| x.starts_with("restart "))
        });
        let work = match (&service.executor, restart) {
            (Executor::Docker(spec), true) => Work::Restart(spec.clone()),
            _ => Work::new(service, d, env, data_dir, last)?,
        };
        Ok(Job {
            log,
            stop,
            steps,
            work,
            _payload: payload,
        })
    }

    /// Runs the job to its end. A step the executor left open (it stopped on an error) is
    /// recorded failed with why the run ended. Returns once the log's copy in the store (if
    /// any) holds the whole log: the lanes record the end after this, so a replica that sees
    /// the deployment ended finds its log complete.
    pub(crate) async fn run(&self) -> Result<Ran, Error> {
        let ran = self.run_work().await;
        let why = match &ran {
            Ok(ran) => steps::describe(&ran.outcome).unwrap_or_else(|| "ended".into()),
            Err(e) => e.to_string(),
        };
        self.steps.close_open(&why).await;
        self.log.settle().await;
        ran
    }

    async fn run_work(&self) -> Result<Ran, Error> {
        let (log, stop, steps) = (&self.log, &self.stop, &self.steps);
        Ok(match &self.work {
            Work::Command(spec) => {
                let step = steps.begin(StepName::Run, None).await;
                let outcome = command::run(spec, log, stop).await?;
                steps.end_with(step, &outcome).await;
                outcome.into()
            }
            Work::Checkout(job) => {
                let checked = checkout::run(job, log, stop, steps).await?;
                Ran {
                    outcome: checked.outcome,
                    resolved_digest: None,
                    resolved_commit: checked.commit.filter(|_| job.record_commit),
                }
            }
            // Not cut off by the service's timeout: stopping half-way could leave the old
            // container renamed aside. Each step is bounded instead (health by its timeout).
            Work::Docker(job) => {
                let result = docker::run(job, log, stop, steps).await?;
                Ran {
                    outcome: result.outcome,
                    resolved_digest: result.digest.filter(|_| job.image.digest.is_none()),
                    resolved_commit: None,
                }
            }
            Work::Restart(spec) => docker::restart(spec, log, stop, steps).await?.into(),
            Work::Compose(job) => compose::run(job, log, stop, steps).await?.into(),
            Work::Swarm(job) => swarm::run(job, log, stop, steps).await?.into(),
        })
    }
}

/// For a checkout deployment that names no commit: the service's last successful deployment
/// that had one (its id and commit). Without a store (unit tests) there is none.
async fn last_commit(
    service: &Service,
    d: &Deployment,
    store: Option<&Store>,
) -> Result<Option<(i64, String)>, Error> {
    let checkout = matches!(
        &service.executor,
        Executor::Command {
            checkout: Some(_),
            ..
        }
    );
    match store {
        Some(store) if checkout && d.git_commit.is_none() => store
            .last_commit_of(&d.app, &d.service)
            .await
            .map_err(Error::LastCommit),
        _ => Ok(None),
    }
}

impl Work {
    fn new(
        service: &Service,
        d: &Deployment,
        env: Env,
        data_dir: &Path,
        last: Option<(i64, String)>,
    ) -> Result<Work, Error> {
        let pid_file = command::pid_file(data_dir, d.id);
        Ok(match &service.executor {
            Executor::Command {
                argv,
                workdir,
                checkout,
            } => {
                let spec = CommandSpec {
                    argv: argv.clone(),
                    workdir: workdir.clone(),
                    env: env.set,
                    env_remove: env.remove,
                    timeout: service.timeout,
                    pid_file: Some(pid_file),
                };
                match checkout {
                    None => Work::Command(spec),
                    Some(c) => Work::Checkout(CheckoutJob {
                        spec: c.clone(),
                        target: Target::of(d, service.git.as_ref(), last)?,
                        refspecs: checkout::refspecs(service.git.as_ref(), d),
                        command: spec,
                        key_file: checkout::keys_dir(data_dir)
                            .join(format!("deployment-{}.key", d.id)),
                        record_commit: d.git_commit.is_none(),
                    }),
                }
            }
            Executor::Docker(spec) => Work::Docker(DockerJob {
                spec: spec.clone(),
                image: Image::of(d)?,
                deployment_id: d.id,
            }),
            Executor::Compose(spec) => {
                Work::Compose(ComposeJob::new(spec, env, service.timeout, pid_file))
            }
            Executor::Swarm(spec) => Work::Swarm(SwarmJob {
                spec: spec.clone(),
                image: Image::of(d)?,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_image_is_referenced_by_digest_else_tag_else_latest() {
        let mut image = Image {
            repository: "r.example/acme/api".into(),
            tag: Some("1.2.0".into()),
            digest: Some("sha256:ab".into()),
        };
        assert_eq!(image.reference(), "r.example/acme/api@sha256:ab");
        image.digest = None;
        assert_eq!(image.reference(), "r.example/acme/api:1.2.0");
        image.tag = None;
        assert_eq!(image.reference(), "r.example/acme/api:latest");
    }

    /// A config in a temporary directory (its data dir inside it): a command service `web`
    /// that prints its payload and one variable, and a docker service `api`.
    fn config(dir: &Path) -> Config {
        let text = "[apps.shop]\ntoken = \"tok-0123456789abcdef\"\n\
            [apps.shop.services.web]\n\
            command = [\"/bin/sh\", \"-c\", \"cat \\\"$FERRY_PAYLOAD\\\"; echo \\\" $FERRY_GIT_BRANCH\\\"\"]\n\
            [apps.shop.services.api]\n\
            image = { repository = \"r.example/acme/api\" }\ndocker = { container = \"api\" }\n";
        crate::config::parse(text, &dir.join("ferry.toml"), &|_| None).expect("config")
    }

    fn deployment(service: &str) -> Deployment {
        Deployment {
            id: 7,
            app: "shop".into(),
            service: service.into(),
            delivery_id: 3,
            state: crate::store::DeploymentState::Running,
            reason: None,
            source: "github".into(),
            event: "push".into(),
            git_repo: None,
            git_branch: Some("main".into()),
            git_ref: None,
            git_commit: None,
            event_time: None,
            profile: None,
            image: None,
            image_tag: None,
            image_digest: None,
            attempt: 1,
            retry_of: None,
            exit_code: None,
            created_at: 0,
            started_at: None,
            finished_at: None,
            node: None,
        }
    }

    #[tokio::test]
    async fn a_command_job_gets_its_payload_and_environment_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path());
        let data = &config.server.data_dir;
        let job = Job::prepare(
            &config,
            &deployment("web"),
            (b"{\"hello\":1}", None),
            Stop::default(),
            Steps::default(),
            None,
        )
        .await
        .unwrap();
        let Work::Command(spec) = &job.work else {
            panic!("{:?}", job.work)
        };
        assert_eq!(spec.pid_file, Some(command::pid_file(data, 7)));
        assert!(spec.env_remove.iter().any(|n| n == "FERRY_IMAGE_DIGEST"));
        let payload = data.join("payloads/deployment-7.body");
        assert!(payload.exists());
        assert_eq!(job.run().await.unwrap(), Ran::from(Outcome::Succeeded));
        drop(job);
        assert!(!payload.exists(), "the payload file outlived its job");
        let log = std::fs::read_to_string(deploylog::log_path(data, 7)).unwrap();
        assert!(log.contains("stdout | {\"hello\":1} main"), "{log}");
    }

    #[tokio::test]
    async fn a_checkout_service_runs_in_its_checkout_at_the_deployments_commit() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "[apps.shop]\ntoken = \"tok-0123456789abcdef\"\n[apps.shop.services.web]\n\
             git = {{ repo = \"acme/shop\" }}\ncommand = [\"./deploy.sh\"]\n\
             checkout = {{ url = \"https://git.example.com/acme/shop.git\", path = \"{}/site\" }}\n",
            dir.path().display()
        );
        let config =
            crate::config::parse(&text, &dir.path().join("ferry.toml"), &|_| None).unwrap();
        let mut d = deployment("web");
        d.git_commit = Some("a".repeat(40));
        let prepare = async |d: &Deployment| {
            Job::prepare(
                &config,
                d,
                (b"{}", None),
                Stop::default(),
                Steps::default(),
                None,
            )
            .await
            .unwrap()
        };
        let job = prepare(&d).await;
        let Work::Checkout(c) = &job.work else {
            panic!("{:?}", job.work)
        };
        let site = dir.path().join("site");
        assert_eq!(c.target, Target::Commit("a".repeat(40)));
        assert_eq!(c.command.workdir, site);
        assert!(
            c.command
                .env
                .contains(&("FERRY_CHECKOUT".into(), site.display().to_string()))
        );
        assert_eq!(c.refspecs, ["+refs/heads/main:refs/remotes/origin/main"]);
        assert_eq!(
            c.key_file,
            config
                .server
                .data_dir
                .join("checkout-keys/deployment-7.key")
        );
        assert!(!c.record_commit, "a named commit is recorded already");

        // A redeploy (no store here: nothing deployed before) goes to the branch's tip, and
        // the commit it finds is to be recorded.
        d.git_commit = None;
        let job = prepare(&d).await;
        let Work::Checkout(c) = &job.work else {
            panic!("{:?}", job.work)
        };
        assert_eq!(c.target, Target::Tip("refs/heads/main".into()));
        assert!(c.record_commit);
    }

    #[tokio::test]
    async fn problems_found_while_preparing_are_typed_and_leave_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path());
        let payload = config.server.data_dir.join("payloads/deployment-7.body");
        let prepare = async |d: Deployment| {
            Job::prepare(
                &config,
                &d,
                (b"{}", None),
                Stop::default(),
                Steps::default(),
                None,
            )
            .await
            .unwrap_err()
        };

        let e = prepare(deployment("gone")).await;
        assert!(matches!(e, Error::NotConfigured { .. }), "{e:?}");
        assert_eq!(e.to_string(), "service shop/gone is no longer configured");

        let e = prepare(deployment("api")).await;
        assert!(matches!(e, Error::NoImage), "{e:?}");
        assert_eq!(e.to_string(), "this deployment names no image to deploy");
        assert!(!payload.exists());

        let mut bad = deployment("web");
        bad.git_branch = Some("main\u{7}".into());
        let e = prepare(bad).await;
        assert!(matches!(e, Error::Refused(_)), "{e:?}");
        assert!(e.to_string().starts_with("refusing to run: "), "{e}");
        assert!(!payload.exists());
    }
}
