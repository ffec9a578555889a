//! GitOps checkouts: before a git service's command runs, ferry makes `checkout.path` a clean
//! git work tree at exactly the deployment's commit, then runs the command there.
//!
//! The step `checkout` (recorded before `run`): the work tree is created on first use (`git
//! init`; its objects live in `path/.git`; a non-empty directory that is no work tree is
//! refused, as cleaning it would delete its files); the commit is fetched unless it is already
//! there (the service's branch, and tags, then the commit by id if it is on neither); checked
//! out detached and forced; `git clean -ffdx` removes whatever the commit does not hold;
//! submodules are updated when configured; `HEAD` must then be the commit. A deployment that
//! names no commit (a plain redeploy) goes back to what the service last deployed, else to the
//! tip of its branch ([`Target`], chosen by `Job::prepare`); the log says which.
//!
//! Credentials never reach argv or the deploy command: a token goes to git only through its
//! environment (`GIT_CONFIG_*`: an `http.<origin>.extraHeader`, so only the repository's host
//! gets it), an ssh key only through a `0600` file under the data dir that lives while the
//! step runs. Over ssh, host keys are trusted on first use (the ferry user's
//! `~/.ssh/known_hosts`) unless `checkout.known_hosts` pins them: then ssh trusts that file
//! alone, never writes to it, and an unknown or changed key fails the step before git
//! fetches. git never prompts, inherits no `GIT_*` variable, and its output reaches the log
//! with the token (and the header made from it) replaced by `[redacted]`. Each git command
//! runs in its own process group under what is left of the service's timeout, and is killed
//! on cancel (`command::GroupGuard`), like the deploy command after it.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};

use base64::Engine as _;
use tokio::io::AsyncReadExt;
use tokio::time::Instant;

use super::command::{self, CommandError, CommandSpec, GroupGuard};
use super::steps::Steps;
use super::{Outcome, Stop};
use crate::config::{CheckoutAuth, CheckoutSpec, GitSpec};
use crate::deploylog::{LogWriter, Stream};
use crate::states::StepName;
use crate::store::Deployment;

/// What git may print per stream and call that is kept for the log (the rest is dropped).
const OUTPUT_CAP: usize = 256 * 1024;
/// Where a checkout's fetched tip goes when the deployment names no commit.
const TIP_REF: &str = "refs/ferry/tip";

/// A checkout and the command that runs in it; built by `Job::prepare`.
#[derive(Debug, Clone)]
pub(crate) struct CheckoutJob {
    pub(crate) spec: CheckoutSpec,
    pub(crate) target: Target,
    /// What to fetch when the commit is not there yet: the service's branch, tags.
    pub(crate) refspecs: Vec<String>,
    /// The deploy command (its workdir is in or at the checkout).
    pub(crate) command: CommandSpec,
    /// Where an ssh key is written while git runs (`DATA_DIR/checkout-keys/`).
    pub(crate) key_file: PathBuf,
    /// The deployment names no commit: the one checked out is to be recorded with it.
    pub(crate) record_commit: bool,
}

/// The commit a deployment checks out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// The deployment's own commit.
    Commit(String),
    /// None named: the commit of the service's last successful deployment.
    LastDeployed { commit: String, deployment: i64 },
    /// None named and none deployed yet (or `?git_ref=` naming a ref): the ref's tip.
    Tip(String),
}

impl Target {
    /// The target of deployment `d` of a service following `git`; `last`: the commit of the
    /// service's last successful deployment that had one, and that deployment's id.
    pub(crate) fn of(
        d: &Deployment,
        git: Option<&GitSpec>,
        last: Option<(i64, String)>,
    ) -> Result<Target, CheckoutError> {
        if let Some(c) = &d.git_commit {
            return Ok(Target::Commit(c.clone()));
        }
        let branch = git.and_then(|g| g.branch.as_deref());
        // `?git_ref=` (or the API's `ref`) naming something other than the branch followed.
        if let Some(r) = d.git_ref.as_deref().filter(|r| Some(*r) != branch) {
            return Ok(match crate::sources::values::commit_id(r) {
                Ok(commit) => Target::Commit(commit),
                Err(_) => Target::Tip(r.to_string()),
            });
        }
        match (last, branch) {
            (Some((deployment, commit)), _) => Ok(Target::LastDeployed { commit, deployment }),
            (None, Some(b)) => Ok(Target::Tip(format!("refs/heads/{b}"))),
            (None, None) => Err(CheckoutError::NoTarget),
        }
    }
}

/// What to fetch for a service besides a commit: its branch, and tags when it follows tags
/// or the deployment names one.
pub(crate) fn refspecs(git: Option<&GitSpec>, d: &Deployment) -> Vec<String> {
    let mut specs = Vec::new();
    if let Some(b) = git.and_then(|g| g.branch.as_deref()) {
        specs.push(format!("+refs/heads/{b}:refs/remotes/origin/{b}"));
    }
    let tagged = d
        .git_ref
        .as_deref()
        .is_some_and(|r| r.starts_with("refs/tags/"));
    if tagged || git.is_some_and(|g| g.tags.is_some()) {
        specs.push("+refs/tags/*:refs/tags/*".to_string());
    }
    specs
}

/// Why a checkout could not be made. Its message is the deployment's reason.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CheckoutError {
    #[error(
        "no commit to check out: the deployment names none, the service has deployed none and follows no branch"
    )]
    NoTarget,
    #[error("cannot write the deployment log: {0}")]
    Log(#[source] std::io::Error),
    #[error(
        "checkout: {path} exists and is not a git work tree; ferry would delete its files: empty or remove it, or choose another checkout.path"
    )]
    NotAWorkTree { path: String },
    #[error("checkout: cannot use {path}: {source}")]
    Dir {
        path: String,
        source: std::io::Error,
    },
    #[error("checkout: cannot write the ssh key file: {0}")]
    KeyFile(#[source] std::io::Error),
    #[error("checkout: cannot start git: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("checkout: `git {command}` {status}{detail}")]
    Git {
        command: String,
        status: String,
        detail: String,
    },
    #[error("checkout: commit {commit} is not in {url} ({how})")]
    NotFound {
        commit: String,
        url: String,
        how: String,
    },
    #[error("checkout: HEAD is {head} after checking out {commit}")]
    Mismatch { head: String, commit: String },
    #[error(transparent)]
    Command(#[from] CommandError),
}

/// How a checkout run ended: the outcome, and the commit checked out (if it got that far).
#[derive(Debug)]
pub(crate) struct Checked {
    pub(crate) outcome: Outcome,
    pub(crate) commit: Option<String>,
}

/// Why the checkout step stopped short.
enum Stopped {
    TimedOut,
    Cancelled,
    Failed(CheckoutError),
}

impl From<CheckoutError> for Stopped {
    fn from(e: CheckoutError) -> Stopped {
        Stopped::Failed(e)
    }
}

/// Checks the commit out (step `checkout`), then runs the command there (step `run`), both
/// within the command's timeout.
pub(crate) async fn run(
    job: &CheckoutJob,
    log: &LogWriter,
    stop: &Stop,
    steps: &Steps,
) -> Result<Checked, CheckoutError> {
    let total = job.command.timeout;
    let deadline = Instant::now() + total;
    let path = job.spec.path.display().to_string();
    let step = steps.begin(StepName::Checkout, Some(&path)).await;
    let checked = {
        let key = KeyFile::write(&job.spec.auth, &job.key_file).await?;
        let git = Git::new(
            job,
            log,
            stop,
            deadline,
            key.as_ref().map(|k| k.0.as_path()),
        );
        check_out(job, &git).await
    };
    let commit = match checked {
        Ok(commit) => commit,
        Err(stopped) => {
            let outcome = match stopped {
                Stopped::Failed(e) => return Err(e),
                Stopped::TimedOut => {
                    let after = humantime::format_duration(total);
                    note(log, &format!("timed out after {after} while checking out")).await;
                    Outcome::TimedOut { after: total }
                }
                Stopped::Cancelled => {
                    note(log, &format!("cancelled: {}", stop.why())).await;
                    Outcome::Cancelled
                }
            };
            steps.end_with(step, &outcome).await;
            return Ok(Checked {
                outcome,
                commit: None,
            });
        }
    };
    steps.end(step, true, Some(&commit)).await;
    let outcome = run_command(job, &commit, deadline, log, stop, steps).await?;
    Ok(Checked {
        outcome,
        commit: Some(commit),
    })
}

/// The deploy command, in the checkout, with what is left of the timeout and
/// `FERRY_GIT_COMMIT` set to the commit checked out.
async fn run_command(
    job: &CheckoutJob,
    commit: &str,
    deadline: Instant,
    log: &LogWriter,
    stop: &Stop,
    steps: &Steps,
) -> Result<Outcome, CheckoutError> {
    let total = job.command.timeout;
    let mut spec = job.command.clone();
    spec.timeout = deadline.saturating_duration_since(Instant::now());
    if !spec.env.iter().any(|(k, _)| k == "FERRY_GIT_COMMIT") {
        spec.env
            .push(("FERRY_GIT_COMMIT".into(), commit.to_string()));
    }
    let step = steps.begin(StepName::Run, None).await;
    let outcome = match command::run(&spec, log, stop).await? {
        // The service's timeout covers the checkout and the command together.
        Outcome::TimedOut { .. } => Outcome::TimedOut { after: total },
        other => other,
    };
    steps.end_with(step, &outcome).await;
    Ok(outcome)
}

/// The checkout itself; returns the commit `HEAD` is at.
async fn check_out(job: &CheckoutJob, git: &Git<'_>) -> Result<String, Stopped> {
    let path = &job.spec.path;
    git.note(&format!(
        "checkout of {} in {}",
        job.spec.url,
        path.display()
    ))
    .await?;
    work_tree(path, git).await?;
    let commit = resolve(job, git).await?;
    if let Target::Commit(named) | Target::LastDeployed { commit: named, .. } = &job.target
        && *named != commit
    {
        git.note(&format!(
            "{named} is a tag: checking out its commit {commit}"
        ))
        .await?;
    }
    let short = commit.get(..12).unwrap_or(&commit);
    git.must(&[
        "checkout",
        "--force",
        "--detach",
        "--no-recurse-submodules",
        &commit,
        "--",
    ])
    .await?;
    git.must(&["clean", "-ffdx"]).await?;
    if job.spec.submodules {
        git.must(&["submodule", "sync", "--recursive"]).await?;
        git.must(&[
            "submodule",
            "update",
            "--init",
            "--recursive",
            "--force",
            "--checkout",
        ])
        .await?;
        git.must(&[
            "submodule",
            "foreach",
            "--quiet",
            "--recursive",
            "git clean -ffdx",
        ])
        .await?;
    }
    let head = git.peel("HEAD").await?;
    if head.as_deref() != Some(commit.as_str()) {
        return Err(CheckoutError::Mismatch {
            head: head.unwrap_or_else(|| "unreadable".into()),
            commit,
        }
        .into());
    }
    git.note(&format!("checked out {short} in {}", path.display()))
        .await?;
    Ok(commit)
}

/// Makes `path` a git work tree of its own if it is not one yet.
async fn work_tree(path: &Path, git: &Git<'_>) -> Result<(), Stopped> {
    let dir_error = |source| CheckoutError::Dir {
        path: path.display().to_string(),
        source,
    };
    // `path/.git` itself, not what git would find above it: a checkout inside another work
    // tree must not clean that one.
    match tokio::fs::symlink_metadata(path.join(".git")).await {
        Ok(_) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(dir_error(e).into()),
    }
    match tokio::fs::read_dir(path).await {
        Ok(mut entries) => {
            if entries.next_entry().await.map_err(dir_error)?.is_some() {
                return Err(CheckoutError::NotAWorkTree {
                    path: path.display().to_string(),
                }
                .into());
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tokio::fs::create_dir_all(path).await.map_err(dir_error)?;
        }
        Err(e) => return Err(dir_error(e).into()),
    }
    git.must(&["init", "--quiet"]).await.map(drop)
}

/// Fetches what the deployment's target needs and returns its commit.
async fn resolve(job: &CheckoutJob, git: &Git<'_>) -> Result<String, Stopped> {
    let commit = match &job.target {
        Target::Commit(c) => c,
        Target::LastDeployed { commit, deployment } => {
            git.note(&format!(
                "this deployment names no commit: checking out {commit}, what deployment {deployment} (the service's last successful one) deployed"
            ))
            .await?;
            commit
        }
        Target::Tip(r) => {
            git.note(&format!(
                "this deployment names no commit and the service has deployed none yet: checking out the tip of {r}"
            ))
            .await?;
            git.fetch(&[format!("+{r}:{TIP_REF}")]).await?;
            return match git.peel(TIP_REF).await? {
                Some(c) => Ok(c),
                None => Err(CheckoutError::NotFound {
                    commit: r.clone(),
                    url: job.spec.url.clone(),
                    how: "the ref names no commit".into(),
                }
                .into()),
            };
        }
    };
    if let Some(c) = git.peel(commit).await? {
        return Ok(c);
    }
    if !job.refspecs.is_empty() {
        git.fetch(&job.refspecs).await?;
        if let Some(c) = git.peel(commit).await? {
            return Ok(c);
        }
        git.note(&format!(
            "{commit} is not on the refs fetched: fetching it by id"
        ))
        .await?;
    }
    // Servers that refuse to serve a commit by id say so here.
    let by_id = git.fetch(std::slice::from_ref(commit)).await;
    match (by_id, git.peel(commit).await?) {
        (_, Some(c)) => Ok(c),
        (Err(Stopped::Failed(e)), None) => Err(CheckoutError::NotFound {
            commit: commit.clone(),
            url: job.spec.url.clone(),
            how: format!("fetching it by id failed: {e}"),
        }
        .into()),
        (Err(stopped), None) => Err(stopped),
        (Ok(()), None) => Err(CheckoutError::NotFound {
            commit: commit.clone(),
            url: job.spec.url.clone(),
            how: "fetched by id, yet not a commit".into(),
        }
        .into()),
    }
}

/// An ssh key in a private file while the checkout runs; removed when dropped.
struct KeyFile(PathBuf);

impl KeyFile {
    async fn write(auth: &CheckoutAuth, path: &Path) -> Result<Option<KeyFile>, CheckoutError> {
        let CheckoutAuth::Key(key) = auth else {
            return Ok(None);
        };
        let mut text = key.expose().to_string();
        // OpenSSH refuses a key whose last line has no newline; secret files lose theirs.
        if !text.ends_with('\n') {
            text.push('\n');
        }
        let write = async {
            if let Some(dir) = path.parent() {
                crate::datadir::create_dir_async(dir).await?;
            }
            let mut opts = crate::datadir::file_options_async();
            opts.write(true).create(true).truncate(true);
            let mut f = opts.open(path).await?;
            tokio::io::AsyncWriteExt::write_all(&mut f, text.as_bytes()).await?;
            tokio::io::AsyncWriteExt::flush(&mut f).await
        };
        let file = KeyFile(path.to_path_buf());
        write.await.map_err(CheckoutError::KeyFile)?;
        Ok(Some(file))
    }
}

impl Drop for KeyFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Where checkout key files live (`DATA_DIR/checkout-keys/`).
pub(crate) fn keys_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("checkout-keys")
}

/// Removes key files a previous ferry left behind (a crash during a fetch).
pub(crate) fn remove_leftover_keys(data_dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(keys_dir(data_dir)) {
        for entry in entries.flatten() {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// The version of the `git` on the PATH, for `ferry doctor`; an error if it does not run or is
/// older than 2.31 (which checkouts need: `GIT_CONFIG_COUNT`).
pub(crate) async fn git_version() -> Result<String, String> {
    let out = tokio::process::Command::new("git")
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| format!("`git --version` does not run: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text.trim().trim_start_matches("git version ").to_string();
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    if !out.status.success() || (major, minor) < (2, 31) {
        return Err(format!(
            "git {version} is older than 2.31, which checkouts need (GIT_CONFIG_COUNT)"
        ));
    }
    Ok(version)
}

/// A line from ferry once the outcome is known: a failing log must not hide it.
async fn note(log: &LogWriter, text: &str) {
    if let Err(e) = log.ferry(text).await {
        tracing::warn!(error = %e, "cannot write the deployment log");
    }
}

/// git as a checkout runs it: in the work tree, with the checkout's environment, under the
/// deadline and the stop, its output redacted into the log.
struct Git<'a> {
    dir: &'a Path,
    url: &'a str,
    env: Vec<(String, String)>,
    env_remove: Vec<String>,
    /// Values never to show: the token and the header made from it.
    secrets: Vec<String>,
    log: &'a LogWriter,
    stop: &'a Stop,
    deadline: Instant,
    pid_file: Option<&'a Path>,
    known_hosts: Option<&'a Path>,
}

/// What one git command printed, and how it ended.
struct GitOutput {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl<'a> Git<'a> {
    fn new(
        job: &'a CheckoutJob,
        log: &'a LogWriter,
        stop: &'a Stop,
        deadline: Instant,
        key_file: Option<&Path>,
    ) -> Git<'a> {
        let (env, secrets) = git_env(&job.spec, key_file);
        let mut env_remove = job.command.env_remove.clone();
        // Nothing of the user's git environment (GIT_DIR, GIT_TRACE*, GIT_SSH, …) applies.
        env_remove.extend(
            std::env::vars_os()
                .filter_map(|(k, _)| k.into_string().ok())
                .filter(|k| k.starts_with("GIT_") || k == "SSH_ASKPASS"),
        );
        Git {
            dir: &job.spec.path,
            url: &job.spec.url,
            env,
            env_remove,
            secrets,
            log,
            stop,
            deadline,
            pid_file: job.command.pid_file.as_deref(),
            known_hosts: job.spec.known_hosts.as_deref(),
        }
    }

    /// `text` with every secret replaced by `[redacted]`.
    fn redact(&self, text: &str) -> String {
        redact(text, &self.secrets)
    }

    async fn note(&self, text: &str) -> Result<(), Stopped> {
        self.log
            .ferry(&self.redact(text))
            .await
            .map_err(|e| Stopped::Failed(CheckoutError::Log(e)))
    }

    /// `git fetch` of `refspecs` from the checkout's URL, which must succeed.
    async fn fetch(&self, refspecs: &[String]) -> Result<(), Stopped> {
        let mut args = vec![
            "fetch",
            "--no-tags",
            "--force",
            "--no-write-fetch-head",
            "--no-recurse-submodules",
            "--",
            self.url,
        ];
        args.extend(refspecs.iter().map(String::as_str));
        self.must(&args).await.map(drop)
    }

    /// The commit `rev` names, if it names one here (nothing logged).
    async fn peel(&self, rev: &str) -> Result<Option<String>, Stopped> {
        let spec = format!("{rev}^{{commit}}");
        let out = self
            .call(
                &[
                    "rev-parse",
                    "--verify",
                    "--quiet",
                    "--end-of-options",
                    &spec,
                ],
                false,
            )
            .await?;
        let text = out.stdout.trim();
        Ok((out.status.success())
            .then(|| crate::sources::values::commit_id(text).ok())
            .flatten())
    }

    /// Runs git with `args` (logged, with its output) and fails unless it succeeds.
    async fn must(&self, args: &[&str]) -> Result<String, Stopped> {
        let out = self.call(args, true).await?;
        if out.status.success() {
            return Ok(out.stdout);
        }
        let last = cause(&out.stderr);
        let mut detail = if last.is_empty() {
            String::new()
        } else {
            format!(": {}", truncate(last, 400))
        };
        detail.push_str(&hint(
            &out.stderr,
            self.secrets.is_empty(),
            self.known_hosts,
        ));
        Err(CheckoutError::Git {
            command: args.first().copied().unwrap_or("").to_string(),
            status: describe(out.status),
            detail: self.redact(&detail),
        }
        .into())
    }

    /// Runs git with `args` in the work tree to its end, the deadline or the stop; with `loud`,
    /// logs the command and its output.
    async fn call(&self, args: &[&str], loud: bool) -> Result<GitOutput, Stopped> {
        if loud {
            self.note(&format!("git {}", args.join(" "))).await?;
        }
        if self.stop.is_cancelled() {
            return Err(Stopped::Cancelled);
        }
        let mut child = self.command(args).spawn().map_err(CheckoutError::Spawn)?;
        let mut group = GroupGuard::of(child.id());
        let _note = self.pid_file.and_then(|p| group.note(p));
        let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
        let finished = async {
            let (out, err, status) = tokio::join!(capped(stdout), capped(stderr), child.wait());
            (out, err, status)
        };
        // Dropping `finished` drops the child (killed on drop) and the guard kills its group.
        let (out, err, status) = tokio::select! {
            done = finished => done,
            () = tokio::time::sleep_until(self.deadline) => return Err(Stopped::TimedOut),
            () = self.stop.cancelled() => return Err(Stopped::Cancelled),
        };
        group.disarm();
        let status = status.map_err(CheckoutError::Spawn)?;
        let out = GitOutput {
            status,
            stdout: String::from_utf8_lossy(&out).into_owned(),
            stderr: String::from_utf8_lossy(&err).into_owned(),
        };
        if loud {
            self.log_output(&out).await;
        }
        Ok(out)
    }

    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new("git");
        // Settings for this run only: gc in the foreground (under the timeout, not left
        // running detached), no advice about detached HEADs.
        cmd.arg("-C")
            .arg(self.dir)
            .args([
                "-c",
                "gc.autoDetach=false",
                "-c",
                "advice.detachedHead=false",
            ])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        for name in &self.env_remove {
            cmd.env_remove(name);
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        command::die_with_ferry(&mut cmd);
        cmd
    }

    async fn log_output(&self, out: &GitOutput) {
        for (stream, text) in [(Stream::Stdout, &out.stdout), (Stream::Stderr, &out.stderr)] {
            if text.trim().is_empty() {
                continue;
            }
            // git draws progress with `\r`: keep the last state of each line.
            let text: Vec<&str> = text
                .lines()
                .map(|l| l.rsplit('\r').find(|p| !p.is_empty()).unwrap_or(""))
                .collect();
            if let Err(e) = self.log.line(stream, &self.redact(&text.join("\n"))).await {
                tracing::warn!(error = %e, "cannot write the deployment log");
            }
        }
    }
}

/// git's environment for a checkout, and the values to redact from what it prints.
fn git_env(spec: &CheckoutSpec, key_file: Option<&Path>) -> (Vec<(String, String)>, Vec<String>) {
    let mut env: Vec<(String, String)> = vec![
        // Never ask: a missing or refused credential is an error, at once.
        ("GIT_TERMINAL_PROMPT".into(), "0".into()),
        ("GIT_ASKPASS".into(), String::new()),
        // Messages in English, as the hints read them.
        ("LC_ALL".into(), "C".into()),
        // No remote helpers (`ext::`) for the repository or its submodules.
        (
            "GIT_ALLOW_PROTOCOL".into(),
            allowed_protocols(&spec.url).into(),
        ),
    ];
    if let Some(parent) = spec.path.parent() {
        // git never looks above the checkout for a repository.
        env.push((
            "GIT_CEILING_DIRECTORIES".into(),
            parent.display().to_string(),
        ));
    }
    let mut ssh = "ssh -o BatchMode=yes".to_string();
    match &spec.known_hosts {
        // Pinned: only that file's keys are trusted, and ssh never writes to it.
        Some(file) => ssh.push_str(&format!(
            " -o StrictHostKeyChecking=yes -o {} -o GlobalKnownHostsFile=/dev/null -o UpdateHostKeys=no",
            sh_quote(&format!("UserKnownHostsFile={}", file.display()))
        )),
        // Trust on first use, in the ferry user's ~/.ssh/known_hosts.
        None => ssh.push_str(" -o StrictHostKeyChecking=accept-new"),
    }
    if let Some(file) = key_file {
        ssh.push_str(&format!(
            " -o IdentitiesOnly=yes -i {}",
            sh_quote(&file.display().to_string())
        ));
    }
    env.push(("GIT_SSH_COMMAND".into(), ssh));
    env.push(("GIT_SSH_VARIANT".into(), "ssh".into()));
    let mut secrets = Vec::new();
    if let CheckoutAuth::Token { username, token } = &spec.auth {
        let basic = base64::engine::general_purpose::STANDARD
            .encode(format!("{username}:{}", token.expose()));
        env.extend([
            ("GIT_CONFIG_COUNT".into(), "1".into()),
            (
                "GIT_CONFIG_KEY_0".into(),
                format!("http.{}.extraHeader", origin(&spec.url)),
            ),
            (
                "GIT_CONFIG_VALUE_0".into(),
                format!("Authorization: Basic {basic}"),
            ),
        ]);
        secrets = vec![token.expose().to_string(), basic];
    } else {
        env.push(("GIT_CONFIG_COUNT".into(), "0".into()));
    }
    (env, secrets)
}

/// `scheme://host[:port]/` of an http(s) URL: where the token may go (this host only, not
/// another that a submodule or a redirect names).
fn origin(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("https", url));
    let authority = rest.split('/').next().unwrap_or("");
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    format!("{scheme}://{host}/")
}

/// `GIT_ALLOW_PROTOCOL`: the network protocols, and `file` only for a `file://` checkout
/// (git itself keeps submodules from using it otherwise).
fn allowed_protocols(url: &str) -> &'static str {
    if url.to_ascii_lowercase().starts_with("file://") {
        "https:http:ssh:git:file"
    } else {
        "https:http:ssh:git"
    }
}

fn redact(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_string();
    for s in secrets.iter().filter(|s| !s.is_empty()) {
        out = out.replace(s.as_str(), "[redacted]");
    }
    out
}

/// A word for `sh` (GIT_SSH_COMMAND is run by a shell): single-quoted.
fn sh_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', "'\\''"))
}

/// The line of git's stderr that says why it failed: ssh's own reason when it gave one (git
/// ends with "Could not read from remote repository", which does not say why), else the last.
fn cause(stderr: &str) -> &str {
    const SSH: [&str; 4] = [
        "Host key verification failed",
        "Permission denied (",
        "Connection refused",
        "Could not resolve hostname",
    ];
    let lines = || stderr.lines().map(str::trim).filter(|l| !l.is_empty());
    lines()
        .find(|l| SSH.iter().any(|s| l.contains(s)))
        .or_else(|| lines().next_back())
        .unwrap_or("")
}

/// What git's failure most likely means, when it is about credentials or host keys;
/// `known_hosts`: the checkout's pinned host keys, if any.
fn hint(stderr: &str, no_token: bool, known_hosts: Option<&Path>) -> String {
    if stderr.contains("Host key verification failed") {
        return match known_hosts {
            Some(file) => format!(
                " (the server's host key is not one checkout.known_hosts ({}) holds for it: if the server's key really changed, check the new key's fingerprint and update that file)",
                file.display()
            ),
            None => " (the server's host key differs from the one the ferry user's ~/.ssh/known_hosts holds for it: if it really changed, check the new key's fingerprint and update that file; checkout.known_hosts pins keys per checkout)".into(),
        };
    }
    credentials_hint(stderr, no_token).into()
}

/// What git's failure most likely means, when it is about credentials.
fn credentials_hint(stderr: &str, no_token: bool) -> &'static str {
    let auth = [
        "could not read Username",
        "Authentication failed",
        "403",
        "401",
    ]
    .iter()
    .any(|s| stderr.contains(s));
    let ssh = stderr.contains("Permission denied (publickey");
    match (auth || ssh, no_token) {
        (false, _) => "",
        (true, true) if ssh => {
            " (the server refused the ssh key: set checkout.key to a deploy key it accepts)"
        }
        (true, true) => {
            " (the repository needs credentials: set checkout.token for https or checkout.key for ssh)"
        }
        (true, false) => " (the server refused checkout.token)",
    }
}

fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        (None, None) => "failed".into(),
    }
}

fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((i, _)) => &text[..i],
        None => text,
    }
}

/// A pipe read to its end, keeping at most [`OUTPUT_CAP`] bytes.
async fn capped(pipe: Option<impl tokio::io::AsyncRead + Unpin>) -> Vec<u8> {
    let mut kept = Vec::new();
    let Some(mut pipe) = pipe else {
        return kept;
    };
    let mut chunk = vec![0u8; 8192];
    loop {
        match pipe.read(&mut chunk).await {
            Ok(0) => break,
            Ok(n) => {
                let room = OUTPUT_CAP.saturating_sub(kept.len());
                kept.extend_from_slice(&chunk[..n.min(room)]);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    kept
}

#[cfg(test)]
mod tests;
