//! The configuration file (`ferry.toml`): parsing, `${VAR}` expansion and validation.
//!
//! Two layers, as in ripgrep's low/high args: `raw` mirrors the TOML exactly (with spans, so every
//! error can name its line), and [`Config`] is what the rest of ferry uses: durations parsed,
//! secrets resolved, every service resolved to an executor. Nothing outside this module sees raw
//! TOML. All problems are collected, so `ferry check` reports every error at once.
//!
//! This file holds the validated types (the contract with the rest of ferry), the errors and
//! [`load`] / [`parse`]. The way from one to the other:
//! - `raw` — the TOML mirror (`deny_unknown_fields` everywhere);
//! - `validator` — the `Validator` that walks it and collects diagnostics;
//! - `server`, `apps`, `verify`, `services`, `executors`, `checkout`, `notify`, `github`,
//!   `statuses` — the checks of each section;
//! - `values` (`${VAR}`, durations, rates, addresses, sizes) and `secrets` (`{ file = … }`),
//!   the readers every section shares.

mod alerts;
mod apps;
mod checkout;
mod executors;
mod github;
mod notify;
mod raw;
mod secrets;
mod server;
mod services;
mod statuses;
#[cfg(test)]
mod testing;
mod validator;
mod values;
mod verify;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::secret::Secret;
use crate::tls::TlsSettings;
use validator::Validator;

pub(crate) use alerts::is_label_name;
pub(crate) use alerts::{AlertAction, AlertRule};
pub(crate) use github::Github;
pub(crate) use notify::{NotifyFormat, NotifyTarget, receiver_of};
pub(crate) use statuses::{CommitStatuses, StatusTargets};

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from; relative paths inside are relative to its directory.
    pub path: PathBuf,
    pub server: Server,
    pub apps: BTreeMap<String, App>,
    /// `[[notify]]`: outgoing webhooks, in the order written.
    pub(crate) notify: Vec<NotifyTarget>,
    /// Names of environment variables whose values became secrets. Deploy commands do not
    /// inherit them: a deploy script has no business knowing the hook token.
    pub secret_env_vars: Vec<String>,
    /// Files secrets were read from (`{ file = "…" }`), with the key that named each:
    /// `ferry check` warns about those others may read.
    pub secret_files: Vec<(String, PathBuf)>,
}

#[derive(Debug, Clone)]
pub struct Server {
    pub listen: String,
    /// Base of printed hook URLs and status links, without a trailing slash.
    pub public_url: String,
    pub data_dir: PathBuf,
    /// `postgres://…`: the PostgreSQL database replicas share (`server.database`, or
    /// `FERRY_DATABASE`); `None`: SQLite in `data_dir`. A secret: the URL may hold a password.
    pub database: Option<Secret>,
    /// This ferry's name among replicas (`server.node`; default: the host name): recorded
    /// with each deployment it runs and matched against services' `runs_on`.
    pub node: String,
    /// How long a replica's claim on a running deployment holds without its heartbeat
    /// (`server.lease`); renewed every third of it. Only replicas (PostgreSQL) use it.
    pub lease: Duration,
    /// Bearer token for `/api` and the CLI. Without one the API refuses every request.
    pub admin_token: Option<Secret>,
    /// Largest accepted hook body, in bytes (413 above it).
    pub body_limit: usize,
    /// How long SIGTERM waits for running deployments before killing them.
    pub shutdown_grace: Duration,
    /// How many times a deployment interrupted by a crash or shutdown is run again.
    pub retry_interrupted: u32,
    /// Deliveries (with their deployments and logs) older than this are pruned; `None` keeps
    /// everything. The current version of each service is always kept.
    pub keep: Option<Duration>,
    /// Time a client has to send a request's headers; also how long an idle keep-alive
    /// connection stays open.
    pub header_timeout: Duration,
    /// Time a client has to send a request's body once its headers arrived (408 after it).
    pub body_timeout: Duration,
    /// Open client connections at most (lowered at start when the open-file limit is lower).
    pub max_connections: usize,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Hook requests per client address (`None`: unlimited).
    pub rate_per_client: Option<crate::ratelimit::Rate>,
    /// Failed token or signature checks per client address and hook app, before that client
    /// gets 429 on that app (`None`: off).
    pub failures_per_client: Option<crate::ratelimit::Rate>,
    /// HTTPS on `listen` (`server.tls`, with `server.client_ca` for mTLS).
    pub tls: Option<TlsSettings>,
    /// A second, plain-HTTP listener for the API and `/metrics`; when set, the main listener
    /// serves only hooks and health checks.
    pub admin_listen: Option<String>,
    /// How long a failing notification is retried after it was created (or manually
    /// retried) before it is `dead`.
    pub(crate) notify_retry_for: Duration,
}

#[derive(Debug, Clone)]
pub struct App {
    pub name: String,
    pub token: Secret,
    pub verify: Verify,
    pub services: BTreeMap<String, Service>,
    pub profiles: BTreeMap<String, Profile>,
    /// Docker Hub webhook chains: once a deployment caused by a Docker Hub push ends, POST its
    /// state to the payload's `callback_url` — only if that URL starts with this prefix, so a
    /// forged payload cannot make ferry call anywhere else.
    pub dockerhub_callback: Option<String>,
    /// Which hook URL modifiers (`?services=`, `?deployment_profile=`, `?git_ref=`) this app
    /// honours (`[apps.X] modifiers`); a request with another one is refused.
    pub modifiers: Vec<Modifier>,
    /// `[apps.X.limits]`.
    pub limits: Limits,
    /// `[apps.X.github]`: report deployments to GitHub as GitHub Deployments, and take
    /// GitHub `deployment` events for its environment.
    pub(crate) github: Option<Github>,
    /// `[apps.X.gitlab]`, `[apps.X.gitea]`, `[apps.X.bitbucket]`: where the commit statuses of
    /// deployments caused by those hosts' pushes go.
    pub(crate) commit_statuses: StatusTargets,
    /// `[[apps.X.alerts]]`: what Alertmanager alerts do, in the order written.
    pub(crate) alerts: Vec<AlertRule>,
}

impl App {
    /// The service a deployment of this app runs: a configured one, or the pseudo-service
    /// `alert:RULE` of an alert rule's command (its firing command, else its `on_resolved`
    /// one; see `config::alerts`).
    pub(crate) fn runnable(&self, name: &str) -> Option<&Service> {
        if let Some(s) = self.services.get(name) {
            return Some(s);
        }
        self.alert_command(name, false)
            .or_else(|| self.alert_command(name, true))
    }

    /// The command an alert rule runs as the pseudo-service `name` (`alert:RULE`), for a
    /// firing alert or a resolved one.
    pub(crate) fn alert_command(&self, name: &str, resolved: bool) -> Option<&Service> {
        let rule = name.strip_prefix(crate::states::ALERT_SERVICE_PREFIX)?;
        self.alerts
            .iter()
            .find(|r| r.name == rule)?
            .command(resolved)
    }
}

/// `[apps.X.limits]`: how much one app's hook may be called.
#[derive(Debug, Clone, Default)]
pub struct Limits {
    /// Hook requests (with a valid token) per period; beyond: 429 with `Retry-After`.
    pub rate: Option<crate::ratelimit::Rate>,
}

/// A hook URL modifier an app may allow (`[apps.X] modifiers`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Modifier {
    Services,
    DeploymentProfile,
    GitRef,
}

impl Modifier {
    pub const ALL: [Modifier; 3] = [
        Modifier::Services,
        Modifier::DeploymentProfile,
        Modifier::GitRef,
    ];
    /// Allowed when `modifiers` is not set: selecting among the configured services never
    /// names a version; `git_ref` does, so it must be asked for.
    pub const DEFAULT: [Modifier; 2] = [Modifier::Services, Modifier::DeploymentProfile];

    /// The query parameter (and the value in `modifiers`).
    pub fn as_str(self) -> &'static str {
        match self {
            Modifier::Services => "services",
            Modifier::DeploymentProfile => "deployment_profile",
            Modifier::GitRef => "git_ref",
        }
    }
}

/// Where Docker Hub's callback URLs live.
pub(crate) const DOCKERHUB_CALLBACK_PREFIX: &str = "https://registry.hub.docker.com/";

/// How one app's deliveries are verified. Each list holds the accepted secrets (several during
/// a rotation); an empty list means the scheme is not configured.
#[derive(Debug, Clone, Default)]
pub struct Verify {
    /// `X-Hub-Signature-256` (HMAC-SHA256 of the raw body).
    pub github: Vec<Secret>,
    /// `X-Gitlab-Token` (the secret itself), or a `whsec_` signing token (Standard Webhooks).
    pub gitlab: Vec<Secret>,
    /// `X-Hub-Signature: sha256=…` (Bitbucket Cloud and Data Center).
    pub bitbucket: Vec<Secret>,
    /// `X-Gitea-Signature` / `X-Forgejo-Signature` (hex HMAC-SHA256 of the JSON).
    pub gitea: Vec<Secret>,
    /// Standard Webhooks `whsec_…` secrets.
    pub standard: Vec<Secret>,
    /// How far `webhook-timestamp` may be from now, either way.
    pub standard_tolerance: Duration,
    /// A signature header of the user's choosing, for senders ferry does not know.
    pub hmac: Option<HmacScheme>,
    /// `Authorization: Bearer <token>` (registries, Alertmanager).
    pub bearer: Vec<Secret>,
    /// `Authorization: Basic …`, as `user:password`.
    pub basic: Vec<Secret>,
    /// Refuse deliveries that no configured scheme verified (the URL token alone is not enough).
    /// On by default as soon as any scheme is configured (see [`Verify::configured`]).
    pub require: bool,
    /// Client addresses allowed to call the hook (empty: any). Not a verification scheme.
    pub allow_ips: Vec<ipnet::IpNet>,
    /// Refuse requests whose connection presented no client certificate verified against
    /// `server.client_ca` (mTLS).
    pub client_cert: bool,
    /// `verify.allow_unsigned`: an app with schemes still takes an unsigned, token-only request
    /// that claims no sender (curl, Cloud 66 style). Such a delivery carries no version: the
    /// planner redeploys what is configured and ignores the body and `?git_ref=`.
    pub allow_unsigned: bool,
}

impl Verify {
    /// Every configured secret with the key that holds it (`github`, …, `hmac.secret`), in
    /// scheme order.
    pub fn secrets(&self) -> Vec<(&'static str, &Secret)> {
        let lists = [
            ("github", &self.github),
            ("gitlab", &self.gitlab),
            ("bitbucket", &self.bitbucket),
            ("gitea", &self.gitea),
            ("standard", &self.standard),
            ("bearer", &self.bearer),
            ("basic", &self.basic),
        ];
        let hmac = self.hmac.iter().flat_map(|h| &h.secrets);
        lists
            .into_iter()
            .flat_map(|(name, list)| list.iter().map(move |s| (name, s)))
            .chain(hmac.map(|s| ("hmac.secret", s)))
            .collect()
    }

    /// Names of the configured schemes, for messages and `ferry hooks`.
    pub fn schemes(&self) -> Vec<&'static str> {
        let mut out: Vec<&'static str> = Vec::new();
        for (key, _) in self.secrets() {
            let name = key.trim_end_matches(".secret");
            if out.last() != Some(&name) {
                out.push(name);
            }
        }
        out
    }

    /// Whether any scheme is configured: then every delivery must be verified by one of them,
    /// and an unverified one (`allow_unsigned`) carries no version.
    pub fn configured(&self) -> bool {
        !self.schemes().is_empty()
    }
}

/// A configurable HMAC signature: `header: <prefix><encoding(HMAC-alg(secret, body))>`.
#[derive(Debug, Clone)]
pub struct HmacScheme {
    pub header: String,
    pub algorithm: HmacAlgorithm,
    pub encoding: Encoding,
    pub prefix: String,
    pub secrets: Vec<Secret>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HmacAlgorithm {
    Sha1,
    Sha256,
    Sha512,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Hex,
    Base64,
}

#[derive(Debug, Clone)]
pub struct Service {
    pub name: String,
    /// Set for git-based services: pushes deploy them only when repo and branch match.
    pub git: Option<GitSpec>,
    /// Set for image-based services: image pushes deploy them when the repository matches and
    /// the tag policy accepts the tag.
    pub image: Option<ImageSpec>,
    pub executor: Executor,
    pub timeout: Duration,
    /// Extra environment for the executor, from config (not from payloads).
    pub env: Vec<(String, String)>,
    /// The replicas (`server.node`) that may run it (`runs_on`); empty: any.
    pub runs_on: Vec<String>,
    /// `reconcile = "15m"`: re-run its last successful deployment once nothing has run for
    /// this long (see `crate::reconcile`); `None`: never.
    pub reconcile: Option<Duration>,
}

impl Service {
    /// Whether the ferry named `node` may run this service.
    pub fn runs_on(&self, node: &str) -> bool {
        self.runs_on.is_empty() || self.runs_on.iter().any(|n| n == node)
    }
}

#[derive(Debug, Clone)]
pub struct GitSpec {
    /// `owner/name` as the forge spells it; compared case-insensitively. `"*"` follows the
    /// branch or tags in any repository the app's senders push (an adnanh/webhook rule that
    /// matches the ref alone; `ferry import webhook` writes it).
    pub repo: String,
    /// The branch whose pushes deploy; `None` when the service follows only tags.
    pub branch: Option<String>,
    /// Tags whose pushes deploy (a glob such as `v*`), if any.
    pub tags: Option<TagPattern>,
}

/// A tag glob, kept with its source text for messages.
#[derive(Debug, Clone)]
pub struct TagPattern {
    pub pattern: String,
    pub matcher: globset::GlobMatcher,
}

impl TagPattern {
    pub fn matches(&self, tag: &str) -> bool {
        self.matcher.is_match(tag)
    }
}

impl GitSpec {
    /// The `repo` that follows every repository.
    pub const ANY_REPO: &'static str = "*";

    /// Whether the service follows any repository (`repo = "*"`).
    pub fn any_repo(&self) -> bool {
        self.repo == Self::ANY_REPO
    }

    /// Whether pushes to `repo` concern this service.
    pub fn follows_repo(&self, repo: &str) -> bool {
        self.any_repo() || self.repo.eq_ignore_ascii_case(repo)
    }

    /// How the service's ref policy reads in a message: "branch main", "tags v*", or both.
    pub fn follows(&self) -> String {
        match (&self.branch, &self.tags) {
            (Some(b), Some(t)) => format!("branch {b} and tags {}", t.pattern),
            (Some(b), None) => format!("branch {b}"),
            (None, Some(t)) => format!("tags {}", t.pattern),
            (None, None) => "no ref".into(),
        }
    }
}

/// An image service's repository and which of its tags deploy.
#[derive(Debug, Clone)]
pub struct ImageSpec {
    /// As written in config, e.g. `registry.example.com/acme/api`.
    pub repository: String,
    pub tags: TagPolicy,
}

/// Which pushed tags an image service deploys.
#[derive(Debug, Clone)]
pub enum TagPolicy {
    /// Exactly this tag (`latest` included).
    Exact(String),
    /// Versions in this range, only ever moving forward; pre-releases only when `pre`.
    Semver {
        text: String,
        range: semver::VersionReq,
        pre: bool,
    },
    /// Tags matching a glob such as `release-*`.
    Glob(TagPattern),
}

/// For other modules' unit tests: app `name` of a config text (no environment variables),
/// which must be valid.
#[cfg(test)]
pub(crate) fn test_app(text: &str, name: &str) -> App {
    parse(text, Path::new("f.toml"), &|_| None)
        .expect("valid config")
        .apps
        .remove(name)
        .expect("the app")
}

impl TagPolicy {
    /// Reads `latest`, `semver:^1` (`semver:^1 +pre` also takes pre-releases) or a glob.
    pub fn parse(text: &str) -> Result<TagPolicy, String> {
        let text = text.trim();
        if let Some(range) = text.strip_prefix("semver:") {
            let (range, pre) = match range.trim().strip_suffix("+pre") {
                Some(r) => (r.trim(), true),
                None => (range.trim(), false),
            };
            let req = semver::VersionReq::parse(range)
                .map_err(|e| format!("invalid semver range {range:?}: {e}"))?;
            return Ok(TagPolicy::Semver {
                text: text.to_string(),
                range: req,
                pre,
            });
        }
        if text.is_empty() {
            return Err(
                "is empty: use a tag (`latest`), `semver:^1` or a glob (`release-*`)".into(),
            );
        }
        if text.contains(['*', '?', '[', '{']) {
            let glob = globset::Glob::new(text).map_err(|e| format!("invalid glob: {e}"))?;
            return Ok(TagPolicy::Glob(TagPattern {
                pattern: text.to_string(),
                matcher: glob.compile_matcher(),
            }));
        }
        Ok(TagPolicy::Exact(text.to_string()))
    }

    pub fn text(&self) -> &str {
        match self {
            TagPolicy::Exact(t) => t,
            TagPolicy::Semver { text, .. } => text,
            TagPolicy::Glob(p) => &p.pattern,
        }
    }
}

/// Reads a tag as a version: `1.2.3`, `v1.2.3`, `1.2.3-rc.1`. Partial versions (`1.2`) are not
/// versions: they are moving tags that point at some `1.2.x`.
pub(crate) fn tag_version(tag: &str) -> Option<semver::Version> {
    semver::Version::parse(tag.strip_prefix('v').unwrap_or(tag)).ok()
}

#[derive(Debug, Clone)]
pub enum Executor {
    Command {
        argv: Vec<String>,
        workdir: PathBuf,
        /// `checkout = { … }` (git services only): the work tree ferry checks the deployment's
        /// commit out into before the command runs.
        checkout: Option<CheckoutSpec>,
    },
    /// Pull the new image and replace the selected containers, health-gated, with rollback.
    Docker(DockerSpec),
    /// `compose pull` + `compose up -d --no-deps` of some services, then a health wait.
    Compose(ComposeSpec),
    /// Update a Swarm service's image; Swarm rolls it out (and back) by its own settings.
    Swarm(SwarmSpec),
}

/// `checkout = { url, path, … }`: a git work tree at `path` that ferry keeps at exactly the
/// deployment's commit, fetched from `url`.
#[derive(Debug, Clone)]
pub struct CheckoutSpec {
    /// Where to fetch from: `https://`, `http://`, `ssh://`, `git://`, `file://` or scp-like
    /// `user@host:path`; never with credentials in it.
    pub url: String,
    /// The work tree (absolute); its objects live in `path/.git`.
    pub path: PathBuf,
    pub auth: CheckoutAuth,
    /// ssh only: the known_hosts file (absolute) that alone says which host keys to trust;
    /// `None`: trust on first use, in the ferry user's `~/.ssh/known_hosts`.
    pub known_hosts: Option<PathBuf>,
    /// `git submodule update --init --recursive` after the checkout.
    pub submodules: bool,
}

/// How a checkout authenticates to its repository.
#[derive(Debug, Clone)]
pub enum CheckoutAuth {
    /// Nothing of ferry's (a public repository, or what the ferry user's own ssh or git
    /// configuration provides).
    None,
    /// http(s): `Authorization: Basic base64(username:token)`.
    Token { username: String, token: Secret },
    /// ssh: a private key, written to a private file only while git runs.
    Key(Secret),
}

/// A Swarm service whose image a deployment updates.
#[derive(Debug, Clone)]
pub struct SwarmSpec {
    pub service: String,
    /// How long to wait for Swarm to finish the update (or its rollback).
    pub timeout: Duration,
}

impl Executor {
    pub fn kind(&self) -> &'static str {
        match self {
            Executor::Command { .. } => "command",
            Executor::Docker(_) => "docker",
            Executor::Compose(_) => "compose",
            Executor::Swarm(_) => "swarm",
        }
    }
}

/// Which containers a docker service replaces, and how a new one proves healthy.
#[derive(Debug, Clone)]
pub struct DockerSpec {
    pub select: ContainerSelector,
    pub health: HealthGate,
    /// Registry credentials; without them the user's Docker config (`~/.docker/config.json`)
    /// is read for the registry's host.
    pub auth: Option<(String, Secret)>,
    /// Keep this many images of the service (never fewer than the running one and the one a
    /// rollback needs); `None` removes nothing.
    pub keep_images: Option<usize>,
}

/// How a new container proves healthy: its Docker healthcheck if it has one, else the HTTP
/// probe if set, else running without a restart for `stable_for`.
#[derive(Debug, Clone)]
pub struct HealthGate {
    /// How long a new container has to become healthy.
    pub timeout: Duration,
    /// An HTTP URL that must answer 2xx (checked from ferry's host), if set.
    pub probe: Option<String>,
    pub stable_for: Duration,
}

/// A Compose project whose services are pulled and recreated through Compose itself.
#[derive(Debug, Clone)]
pub struct ComposeSpec {
    /// `-p`: the Compose project name.
    pub project: String,
    /// `-f`: the Compose file (relative paths from the config file's directory).
    pub file: PathBuf,
    /// The Compose services this ferry service deploys (default: its own name).
    pub services: Vec<String>,
    pub health: HealthGate,
}

#[derive(Debug, Clone)]
pub enum ContainerSelector {
    Name(String),
    /// `key=value`: every container with this label, replaced one at a time.
    Label(String),
}

#[derive(Debug, Clone)]
pub struct Profile {
    pub services: Vec<String>,
}

impl App {
    /// The hook URL for this app (contains the secret token: print it only on request).
    pub fn hook_url(&self, public_url: &str) -> String {
        format!("{public_url}/hooks/{}/{}", self.name, self.token.expose())
    }
}

/// One problem in a config file, located by line and key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: String,
    pub line: Option<usize>,
    pub key: String,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: ", self.file, line)?,
            None => write!(f, "{}: ", self.file)?,
        }
        if self.key.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.key, self.message)
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}", display_all(.0))]
    Invalid(Vec<Diagnostic>),
}

fn display_all(diags: &[Diagnostic]) -> String {
    let lines: Vec<String> = diags.iter().map(|d| d.to_string()).collect();
    lines.join("\n")
}

/// Defaults that the contract promises.
pub(crate) const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub(crate) const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);
pub(crate) const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// `server.lease`: a replica that has not renewed its claim for this long is taken for dead.
pub(crate) const DEFAULT_LEASE: Duration = Duration::from_secs(30);
pub(crate) const DEFAULT_NOTIFY_RETRY_FOR: Duration = Duration::from_secs(24 * 3600);
pub(crate) const DEFAULT_STANDARD_TOLERANCE: Duration = Duration::from_secs(300);
pub(crate) const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
pub(crate) const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);
pub(crate) const DEFAULT_MAX_CONNECTIONS: usize = 1024;
pub(crate) const DEFAULT_RATE_PER_CLIENT: crate::ratelimit::Rate = crate::ratelimit::Rate {
    count: 600,
    period: Duration::from_secs(60),
};
pub(crate) const DEFAULT_FAILURES_PER_CLIENT: crate::ratelimit::Rate = crate::ratelimit::Rate {
    count: 20,
    period: Duration::from_secs(60),
};
const MIN_TOKEN_LEN: usize = 12;

/// Reads and validates a config file, with `${VAR}` taken from the process environment.
pub(crate) fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    // Relative paths in the file are relative to its directory, which must be absolute: a deploy
    // command's workdir is also where a relative program path is resolved.
    let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    parse(&text, &path, &|name| std::env::var(name).ok())
}

/// Parses and validates config text. `env` resolves `${VAR}`; `path` names the file in messages
/// and anchors relative paths.
pub fn parse(
    text: &str,
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let mut v = Validator::new(text, path, dir.clone(), env);
    let config = match toml::from_str::<raw::File>(text) {
        Ok(raw) => v.validate(raw, path, &dir),
        Err(e) => {
            v.syntax_error(&e);
            return Err(ConfigError::Invalid(v.diags));
        }
    };
    if v.diags.is_empty() {
        Ok(config)
    } else {
        Err(ConfigError::Invalid(v.diags))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use super::testing::{GOOD, check, errors};
    use super::*;

    #[test]
    fn good_config_is_resolved() {
        let c = check(GOOD).unwrap();
        assert_eq!(c.server.public_url, "http://127.0.0.1:9000");
        assert_eq!(c.server.data_dir, Path::new("/etc/ferry/ferry-data"));
        let shop = &c.apps["shop"];
        assert_eq!(shop.token.expose(), "tok-0123456789abcdef");
        assert_eq!(shop.verify.github[0].expose(), "gh-secret");
        let web = &shop.services["web"];
        assert_eq!(web.timeout, Duration::from_secs(120));
        let git = web.git.as_ref().unwrap();
        assert_eq!(git.repo, "acme/shop");
        assert_eq!(git.branch.as_deref(), Some("main"));
        assert!(git.tags.is_none());
        let Executor::Command { argv, workdir, .. } = &web.executor else {
            panic!("command executor expected")
        };
        assert_eq!(argv, &["./deploy/web.sh", "--fast"]);
        assert_eq!(workdir, Path::new("/etc/ferry"));
        assert_eq!(shop.services["worker"].timeout, DEFAULT_TIMEOUT);
        assert_eq!(shop.profiles["hotfix"].services, ["web"]);
        assert!(c.secret_env_vars.contains(&"TOKEN".to_string()));
        assert!(c.secret_env_vars.contains(&"SECRET".to_string()));
        assert_eq!(
            shop.hook_url(&c.server.public_url),
            "http://127.0.0.1:9000/hooks/shop/tok-0123456789abcdef"
        );
    }

    #[test]
    fn duplicate_names_are_errors() {
        let e = errors(
            "[apps.shop]\ntoken = \"${TOKEN}\"\n[apps.shop.services.web]\ncommand = [\"x\"]\n[apps.shop.services.web]\ncommand = [\"y\"]\n",
        );
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].contains(":5:"), "{e:?}");
        assert!(e[0].contains("duplicate") || e[0].contains("web"), "{e:?}");
    }

    #[test]
    fn every_error_is_reported_at_once() {
        let e = errors(
            "[server]\nshutdown_grace = \"soon\"\n[apps.shop]\ntoken = \"short\"\n[apps.shop.services.web]\ncommand = [\"x\"]\ntimeout = \"0s\"\n",
        );
        assert_eq!(e.len(), 3, "{e:?}");
    }

    #[test]
    fn tag_policies() {
        let semver = TagPolicy::parse("semver:^1").unwrap();
        assert!(matches!(&semver, TagPolicy::Semver { pre: false, .. }));
        assert!(matches!(
            TagPolicy::parse("semver:>=1.2, <2 +pre").unwrap(),
            TagPolicy::Semver { pre: true, .. }
        ));
        assert!(matches!(
            TagPolicy::parse("release-*").unwrap(),
            TagPolicy::Glob(_)
        ));
        assert!(
            matches!(TagPolicy::parse("latest").unwrap(), TagPolicy::Exact(t) if t == "latest")
        );
        assert!(TagPolicy::parse("").is_err());
        assert_eq!(tag_version("v1.2.3"), Some(semver::Version::new(1, 2, 3)));
        assert_eq!(tag_version("1.2"), None);
    }
}
