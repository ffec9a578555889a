//! The configuration file (`ferry.toml`): parsing, `${VAR}` expansion and validation.
//!
//! Two layers, as in ripgrep's low/high args: `raw` mirrors the TOML exactly (with spans, so every
//! error can name its line), and [`Config`] is what the rest of ferry uses: durations parsed,
//! secrets resolved, every service resolved to an executor. Nothing outside this module sees raw
//! TOML. All problems are collected, so `ferry check` reports every error at once.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::secret::Secret;
use crate::tls::TlsSettings;

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from; relative paths inside are relative to its directory.
    pub path: PathBuf,
    pub server: Server,
    pub apps: BTreeMap<String, App>,
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
pub const DOCKERHUB_CALLBACK_PREFIX: &str = "https://registry.hub.docker.com/";

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
    /// Names of the configured schemes, for messages and `ferry hooks`.
    pub fn schemes(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        for (name, list) in [
            ("github", &self.github),
            ("gitlab", &self.gitlab),
            ("bitbucket", &self.bitbucket),
            ("gitea", &self.gitea),
            ("standard", &self.standard),
            ("bearer", &self.bearer),
            ("basic", &self.basic),
        ] {
            if !list.is_empty() {
                out.push(name);
            }
        }
        if self.hmac.is_some() {
            out.push("hmac");
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
}

#[derive(Debug, Clone)]
pub struct GitSpec {
    /// `owner/name` as the forge spells it; compared case-insensitively.
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
pub fn tag_version(tag: &str) -> Option<semver::Version> {
    semver::Version::parse(tag.strip_prefix('v').unwrap_or(tag)).ok()
}

#[derive(Debug, Clone)]
pub enum Executor {
    Command {
        argv: Vec<String>,
        workdir: PathBuf,
    },
    /// Pull the new image and replace the selected containers, health-gated, with rollback.
    Docker(DockerSpec),
    /// `compose pull` + `compose up -d --no-deps` of some services, then a health wait.
    Compose(ComposeSpec),
    /// Update a Swarm service's image; Swarm rolls it out (and back) by its own settings.
    Swarm(SwarmSpec),
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
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
pub const DEFAULT_STANDARD_TOLERANCE: Duration = Duration::from_secs(300);
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
pub const DEFAULT_RATE_PER_CLIENT: crate::ratelimit::Rate = crate::ratelimit::Rate {
    count: 600,
    period: Duration::from_secs(60),
};
pub const DEFAULT_FAILURES_PER_CLIENT: crate::ratelimit::Rate = crate::ratelimit::Rate {
    count: 20,
    period: Duration::from_secs(60),
};
const MIN_TOKEN_LEN: usize = 12;

/// Reads and validates a config file, with `${VAR}` taken from the process environment.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
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
    let mut v = Validator {
        text,
        file: path.display().to_string(),
        config_dir: dir.clone(),
        env,
        diags: Vec::new(),
        secret_env_vars: Vec::new(),
        secret_files: Vec::new(),
        client_cert_apps: Vec::new(),
    };
    let raw: raw::File = match toml::from_str(text) {
        Ok(raw) => raw,
        Err(e) => {
            let line = e.span().map(|s| v.line_of(s.start));
            // toml's message may not name the key ("duplicate key"): name what the span covers.
            let mut message = e.message().trim_end().to_string();
            if let Some(span) = e.span()
                && let Some(snippet) = text.get(span.clone())
            {
                let snippet = snippet.lines().next().unwrap_or("").trim();
                if !snippet.is_empty() && !message.contains(snippet) && snippet.len() <= 80 {
                    message = format!("{message}: `{snippet}`");
                }
            }
            v.diags.push(Diagnostic {
                file: v.file.clone(),
                line,
                key: String::new(),
                message,
            });
            return Err(ConfigError::Invalid(v.diags));
        }
    };
    let config = v.validate(raw, path, &dir);
    if v.diags.is_empty() {
        Ok(config)
    } else {
        Err(ConfigError::Invalid(v.diags))
    }
}

/// The TOML exactly as written. Every struct denies unknown keys so a typo is an error, not a
/// silently ignored setting.
mod raw {
    use std::collections::BTreeMap;

    use serde::Deserialize;
    use toml::Spanned;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct File {
        #[serde(default)]
        pub server: Option<Spanned<Server>>,
        #[serde(default)]
        pub apps: BTreeMap<Spanned<String>, Spanned<App>>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Server {
        pub listen: Option<Spanned<String>>,
        pub public_url: Option<Spanned<String>>,
        pub data_dir: Option<Spanned<String>>,
        pub admin_token: Option<Spanned<SecretValue>>,
        pub body_limit: Option<Spanned<super::Size>>,
        pub shutdown_grace: Option<Spanned<String>>,
        pub retry_interrupted: Option<Spanned<i64>>,
        pub keep: Option<Spanned<String>>,
        pub header_timeout: Option<Spanned<String>>,
        pub body_timeout: Option<Spanned<String>>,
        pub max_connections: Option<Spanned<i64>>,
        pub trusted_proxies: Option<Spanned<Vec<Spanned<String>>>>,
        pub rate_per_client: Option<Spanned<String>>,
        pub failures_per_client: Option<Spanned<String>>,
        pub tls: Option<Spanned<Tls>>,
        pub client_ca: Option<Spanned<String>>,
        pub admin_listen: Option<Spanned<String>>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Tls {
        pub cert: Spanned<String>,
        pub key: Spanned<String>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct App {
        pub token: Option<Spanned<SecretValue>>,
        #[serde(default)]
        pub verify: Option<Spanned<Verify>>,
        #[serde(default)]
        pub services: BTreeMap<Spanned<String>, Spanned<Service>>,
        #[serde(default)]
        pub profiles: BTreeMap<Spanned<String>, Spanned<Profile>>,
        pub dockerhub_callback: Option<Spanned<Callback>>,
        pub modifiers: Option<Spanned<Vec<Spanned<String>>>>,
        pub limits: Option<Spanned<Limits>>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Limits {
        pub rate: Option<Spanned<String>>,
    }

    /// `true` (Docker Hub's own callback URLs) or a URL prefix.
    #[derive(Deserialize)]
    #[serde(untagged)]
    pub enum Callback {
        On(bool),
        Prefix(String),
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Verify {
        pub github: Option<Spanned<Secrets>>,
        pub gitlab: Option<Spanned<Secrets>>,
        pub bitbucket: Option<Spanned<Secrets>>,
        pub gitea: Option<Spanned<Secrets>>,
        pub standard: Option<Spanned<Secrets>>,
        pub standard_tolerance: Option<Spanned<String>>,
        pub hmac: Option<Spanned<Hmac>>,
        pub bearer: Option<Spanned<Secrets>>,
        pub basic: Option<Spanned<Secrets>>,
        pub require: Option<Spanned<bool>>,
        pub allow_unsigned: Option<Spanned<bool>>,
        pub allow_ips: Option<Spanned<Vec<Spanned<String>>>>,
        pub client_cert: Option<Spanned<bool>>,
    }

    /// One secret, or several accepted at once during a rotation.
    #[derive(Deserialize, Clone)]
    #[serde(untagged)]
    pub enum Secrets {
        One(SecretValue),
        Many(Vec<SecretValue>),
    }

    /// A secret written in the config (`${VAR}` allowed), or `{ file = "…" }`: read from a
    /// file (Docker and Kubernetes secrets).
    #[derive(Deserialize, Clone)]
    #[serde(untagged)]
    pub enum SecretValue {
        Text(String),
        File(SecretFile),
    }

    #[derive(Deserialize, Clone)]
    #[serde(deny_unknown_fields)]
    pub struct SecretFile {
        pub file: String,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Hmac {
        pub header: Spanned<String>,
        pub algorithm: Option<Spanned<String>>,
        pub encoding: Option<Spanned<String>>,
        pub prefix: Option<Spanned<String>>,
        pub secret: Spanned<Secrets>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Service {
        pub git: Option<Spanned<Git>>,
        pub command: Option<Spanned<Vec<Spanned<String>>>>,
        pub workdir: Option<Spanned<String>>,
        pub timeout: Option<Spanned<String>>,
        #[serde(default)]
        pub env: BTreeMap<Spanned<String>, Spanned<String>>,
        pub image: Option<Spanned<Image>>,
        pub docker: Option<Spanned<Docker>>,
        pub compose: Option<Spanned<Compose>>,
        pub swarm: Option<Spanned<Swarm>>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Swarm {
        pub service: Spanned<String>,
        pub timeout: Option<Spanned<String>>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Compose {
        pub project: Spanned<String>,
        pub file: Option<Spanned<String>>,
        pub services: Option<Spanned<Vec<Spanned<String>>>>,
        pub health_timeout: Option<Spanned<String>>,
        pub probe: Option<Spanned<String>>,
        pub stable_for: Option<Spanned<String>>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Image {
        pub repository: Spanned<String>,
        pub tags: Option<Spanned<String>>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Docker {
        pub container: Option<Spanned<String>>,
        pub label: Option<Spanned<String>>,
        pub health_timeout: Option<Spanned<String>>,
        pub probe: Option<Spanned<String>>,
        pub stable_for: Option<Spanned<String>>,
        pub username: Option<Spanned<String>>,
        pub password: Option<Spanned<String>>,
        pub keep_images: Option<Spanned<i64>>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Git {
        pub repo: Spanned<String>,
        pub branch: Option<Spanned<String>>,
        pub tags: Option<Spanned<String>>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Profile {
        pub services: Spanned<Vec<Spanned<String>>>,
    }
}

/// A byte size: an integer, or a string such as `"512KiB"`, `"1MiB"`, `"10MB"`.
#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum Size {
    Bytes(i64),
    Text(String),
}

struct Validator<'a> {
    text: &'a str,
    file: String,
    /// The config file's directory: relative secret files are read from there.
    config_dir: PathBuf,
    env: &'a dyn Fn(&str) -> Option<String>,
    diags: Vec<Diagnostic>,
    secret_env_vars: Vec<String>,
    secret_files: Vec<(String, PathBuf)>,
    /// `apps.X.verify.client_cert = true` settings (key, span), checked against
    /// `server.client_ca` once every app is read.
    client_cert_apps: Vec<(String, std::ops::Range<usize>)>,
}

impl Validator<'_> {
    fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    fn error(&mut self, span: Option<std::ops::Range<usize>>, key: &str, message: String) {
        let line = span.map(|s| self.line_of(s.start));
        self.diags.push(Diagnostic {
            file: self.file.clone(),
            line,
            key: key.to_string(),
            message,
        });
    }

    /// Replaces `${VAR}` with the variable's value. `$$` is a literal `$`.
    fn expand(&mut self, value: &Spanned<String>, key: &str, secret: bool) -> Option<String> {
        let s = value.get_ref();
        let mut out = String::with_capacity(s.len());
        let mut rest = s.as_str();
        let mut ok = true;
        while let Some(pos) = rest.find('$') {
            out.push_str(&rest[..pos]);
            let after = &rest[pos + 1..];
            if let Some(tail) = after.strip_prefix('$') {
                out.push('$');
                rest = tail;
            } else if let Some(inner) = after.strip_prefix('{') {
                let Some(close) = inner.find('}') else {
                    self.error(Some(value.span()), key, "unclosed `${` in value".into());
                    return None;
                };
                let name = &inner[..close];
                let valid = !name.is_empty()
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    && !name.starts_with(|c: char| c.is_ascii_digit());
                if !valid {
                    self.error(
                        Some(value.span()),
                        key,
                        format!("`${{{name}}}` is not a valid environment variable name"),
                    );
                    ok = false;
                } else {
                    match (self.env)(name) {
                        Some(v) => {
                            out.push_str(&v);
                            if secret {
                                self.secret_env_vars.push(name.to_string());
                            }
                        }
                        None => {
                            self.error(
                                Some(value.span()),
                                key,
                                format!("environment variable {name} is not set"),
                            );
                            ok = false;
                        }
                    }
                }
                rest = &inner[close + 1..];
            } else {
                out.push('$');
                rest = after;
            }
        }
        out.push_str(rest);
        ok.then_some(out)
    }

    fn duration(&mut self, value: &Spanned<String>, key: &str) -> Option<Duration> {
        let text = self.expand(value, key, false)?;
        match humantime::parse_duration(text.trim()) {
            Ok(d) if !d.is_zero() => Some(d),
            Ok(_) => {
                self.error(
                    Some(value.span()),
                    key,
                    "duration must be above zero".into(),
                );
                None
            }
            Err(_) => {
                self.error(
                    Some(value.span()),
                    key,
                    format!("invalid duration {text:?} (examples: \"90s\", \"10m\", \"1h 30m\")"),
                );
                None
            }
        }
    }

    fn validate(&mut self, raw: raw::File, path: &Path, dir: &Path) -> Config {
        let server = self.server(raw.server, dir);
        let mut apps = BTreeMap::new();
        for (name, app) in raw.apps {
            let key = format!("apps.{}", name.get_ref());
            if !is_url_safe_name(name.get_ref()) {
                self.error(
                    Some(name.span()),
                    &key,
                    "app names may use only letters, digits, '-' and '_'".into(),
                );
            }
            if let Some(app) = self.app(name.get_ref(), app, &key, dir) {
                apps.insert(name.into_inner(), app);
            }
        }
        // Two apps with one token would make hook URLs guessable from each other.
        let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
        let mut dups = Vec::new();
        for app in apps.values() {
            if let Some(other) = seen.insert(app.token.expose(), &app.name) {
                dups.push(format!(
                    "apps.{} and apps.{other} have the same token; every app needs its own",
                    app.name
                ));
            }
        }
        for d in dups {
            self.error(None, "token", d);
        }
        self.check_client_cert_apps(&server);
        Config {
            path: path.to_path_buf(),
            server,
            apps,
            secret_env_vars: std::mem::take(&mut self.secret_env_vars),
            secret_files: std::mem::take(&mut self.secret_files),
        }
    }

    fn server(&mut self, raw: Option<Spanned<raw::Server>>, dir: &Path) -> Server {
        let mut server = Server {
            listen: DEFAULT_LISTEN.to_string(),
            public_url: String::new(),
            data_dir: dir.join("ferry-data"),
            admin_token: None,
            body_limit: DEFAULT_BODY_LIMIT,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            retry_interrupted: 1,
            keep: None,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            trusted_proxies: Vec::new(),
            rate_per_client: Some(DEFAULT_RATE_PER_CLIENT),
            failures_per_client: Some(DEFAULT_FAILURES_PER_CLIENT),
            tls: None,
            admin_listen: None,
        };
        let Some(raw) = raw.map(Spanned::into_inner) else {
            server.public_url = format!("http://{}", server.listen);
            return server;
        };
        if let Some(v) = &raw.listen
            && let Some(s) = self.expand(v, "server.listen", false)
        {
            server.listen = s;
        }
        server.public_url = match &raw.public_url {
            Some(v) => match self.expand(v, "server.public_url", false) {
                Some(s) if s.starts_with("http://") || s.starts_with("https://") => {
                    s.trim_end_matches('/').to_string()
                }
                Some(s) => {
                    self.error(
                        Some(v.span()),
                        "server.public_url",
                        format!("{s:?} must start with http:// or https://"),
                    );
                    String::new()
                }
                None => String::new(),
            },
            None => format!("http://{}", server.listen),
        };
        if let Some(v) = &raw.data_dir
            && let Some(s) = self.expand(v, "server.data_dir", false)
        {
            server.data_dir = dir.join(s);
        }
        if let Some(v) = &raw.admin_token
            && let Some(s) = self.secret_value(v, "server.admin_token")
        {
            if s.len() < MIN_TOKEN_LEN {
                self.error(
                    Some(v.span()),
                    "server.admin_token",
                    format!("must be at least {MIN_TOKEN_LEN} characters long"),
                );
            }
            server.admin_token = Some(Secret::new(s));
        }
        if let Some(v) = &raw.body_limit {
            match parse_size(v.get_ref()) {
                Some(n) if n > 0 => server.body_limit = n,
                _ => self.error(
                    Some(v.span()),
                    "server.body_limit",
                    "invalid size (examples: 1048576, \"512KiB\", \"10MiB\")".into(),
                ),
            }
        }
        if let Some(v) = &raw.shutdown_grace
            && let Some(d) = self.duration(v, "server.shutdown_grace")
        {
            server.shutdown_grace = d;
        }
        if let Some(v) = &raw.keep {
            server.keep = self.duration(v, "server.keep");
        }
        if let Some(v) = &raw.retry_interrupted {
            match u32::try_from(*v.get_ref()) {
                Ok(n) => server.retry_interrupted = n,
                Err(_) => self.error(
                    Some(v.span()),
                    "server.retry_interrupted",
                    "must be 0 or a positive number".into(),
                ),
            }
        }
        self.server_edges(&raw, &mut server);
        self.transport(&raw, &mut server, dir);
        server
    }

    /// `server.tls`, `server.client_ca` and `server.admin_listen`. The TLS files are read and
    /// checked here, so `ferry check` finds a bad certificate before `ferry serve` does.
    fn transport(&mut self, raw: &raw::Server, server: &mut Server, dir: &Path) {
        if let Some(v) = &raw.admin_listen
            && let Some(s) = self.expand(v, "server.admin_listen", false)
        {
            if s.trim().is_empty() {
                self.error(Some(v.span()), "server.admin_listen", "is empty".into());
            } else if s == server.listen && !s.ends_with(":0") {
                self.error(
                    Some(v.span()),
                    "server.admin_listen",
                    format!(
                        "{s:?} is also server.listen; the admin listener needs its own address"
                    ),
                );
            } else {
                server.admin_listen = Some(s);
            }
        }
        let Some(tls) = &raw.tls else {
            if let Some(ca) = &raw.client_ca {
                self.error(
                    Some(ca.span()),
                    "server.client_ca",
                    "needs server.tls: client certificates are only seen over HTTPS".into(),
                );
            }
            return;
        };
        let tls_span = tls.span();
        let tls = tls.get_ref();
        let cert = self.expand(&tls.cert, "server.tls.cert", false);
        let key = self.expand(&tls.key, "server.tls.key", false);
        let client_ca = match &raw.client_ca {
            Some(v) => match self.expand(v, "server.client_ca", false) {
                Some(s) => Some(dir.join(s)),
                None => return,
            },
            None => None,
        };
        let (Some(cert), Some(key)) = (cert, key) else {
            return;
        };
        let settings = TlsSettings {
            cert: dir.join(cert),
            key: dir.join(key),
            client_ca,
        };
        if let Err(e) = crate::tls::server_config(&settings) {
            let (key, span) = if matches!(e, crate::tls::TlsError::CertKey { .. }) {
                ("server.tls", tls_span)
            } else if e.path() == settings.cert {
                ("server.tls.cert", tls.cert.span())
            } else if e.path() == settings.key {
                ("server.tls.key", tls.key.span())
            } else {
                let span = raw.client_ca.as_ref().map_or(tls_span, |c| c.span());
                ("server.client_ca", span)
            };
            self.error(Some(span), key, e.to_string());
        }
        // Links and the CLI's default server use the scheme the listener speaks.
        if raw.public_url.is_none()
            && let Some(rest) = server.public_url.strip_prefix("http://")
        {
            server.public_url = format!("https://{rest}");
        }
        server.tls = Some(settings);
    }

    /// `verify.client_cert = true` is meaningless without a CA to verify certificates against.
    fn check_client_cert_apps(&mut self, server: &Server) {
        let has_ca = server.tls.as_ref().is_some_and(|t| t.client_ca.is_some());
        for (key, span) in std::mem::take(&mut self.client_cert_apps) {
            if !has_ca {
                self.error(
                    Some(span),
                    &key,
                    "needs server.client_ca (and server.tls): there is no CA to verify client certificates against".into(),
                );
            }
        }
    }

    fn app(&mut self, name: &str, raw: Spanned<raw::App>, key: &str, dir: &Path) -> Option<App> {
        let span = raw.span();
        let raw = raw.into_inner();
        let token = match &raw.token {
            None => {
                self.error(
                    Some(span.clone()),
                    &format!("{key}.token"),
                    "missing: every app needs a secret token for its hook URL".into(),
                );
                None
            }
            Some(v) => 'token: {
                let k = format!("{key}.token");
                // Unreadable: reported; the rest of the app is still checked.
                let Some(t) = self.secret_value(v, &k) else {
                    break 'token None;
                };
                if t.len() < MIN_TOKEN_LEN {
                    self.error(
                        Some(v.span()),
                        &k,
                        format!(
                            "must be at least {MIN_TOKEN_LEN} characters long (it is the hook URL's secret)"
                        ),
                    );
                } else if !is_url_safe_token(&t) {
                    self.error(
                        Some(v.span()),
                        &k,
                        "may use only letters, digits and '-', '_', '.', '~' (it is part of a URL)"
                            .into(),
                    );
                }
                Some(Secret::new(t))
            }
        };
        let verify = match &raw.verify {
            Some(v) => self.verify(v.get_ref(), &format!("{key}.verify")),
            None => Verify {
                standard_tolerance: DEFAULT_STANDARD_TOLERANCE,
                ..Verify::default()
            },
        };
        let mut services = BTreeMap::new();
        let declared_services = raw.services.len();
        for (sname, svc) in raw.services {
            let skey = format!("{key}.services.{}", sname.get_ref());
            if !is_url_safe_name(sname.get_ref()) {
                self.error(
                    Some(sname.span()),
                    &skey,
                    "service names may use only letters, digits, '-' and '_'".into(),
                );
            }
            if let Some(s) = self.service(sname.get_ref(), svc, &skey, dir) {
                services.insert(sname.into_inner(), s);
            }
        }
        if declared_services == 0 {
            self.error(
                Some(span.clone()),
                key,
                "has no services: add at least one [apps.NAME.services.SERVICE]".into(),
            );
        }
        let mut profiles = BTreeMap::new();
        for (pname, profile) in raw.profiles {
            let pkey = format!("{key}.profiles.{}", pname.get_ref());
            let mut list = Vec::new();
            for s in profile.into_inner().services.into_inner() {
                if !services.contains_key(s.get_ref()) {
                    self.error(
                        Some(s.span()),
                        &format!("{pkey}.services"),
                        format!(
                            "names service {:?}, which app {name} does not have",
                            s.get_ref()
                        ),
                    );
                } else if list.contains(s.get_ref()) {
                    self.error(
                        Some(s.span()),
                        &format!("{pkey}.services"),
                        format!("names service {:?} twice", s.get_ref()),
                    );
                } else {
                    list.push(s.into_inner());
                }
            }
            profiles.insert(pname.into_inner(), Profile { services: list });
        }
        let dockerhub_callback = match &raw.dockerhub_callback {
            None => None,
            Some(c) => match c.get_ref() {
                raw::Callback::On(false) => None,
                raw::Callback::On(true) => Some(DOCKERHUB_CALLBACK_PREFIX.to_string()),
                raw::Callback::Prefix(p) => {
                    let ckey = format!("{key}.dockerhub_callback");
                    let p = self.expand(&Spanned::new(c.span(), p.clone()), &ckey, false)?;
                    if !(p.starts_with("https://") || p.starts_with("http://"))
                        || !p.get(8..).is_some_and(|rest| rest.contains('/'))
                    {
                        self.error(
                            Some(c.span()),
                            &ckey,
                            format!("{p:?} is not true, false or a URL prefix ending in a path (https://host/)"),
                        );
                        return None;
                    }
                    Some(p)
                }
            },
        };
        let modifiers = self.modifiers(&raw.modifiers, &format!("{key}.modifiers"));
        let limits = self.limits(&raw.limits, &format!("{key}.limits"));
        Some(App {
            name: name.to_string(),
            token: token?,
            verify,
            services,
            profiles,
            dockerhub_callback,
            modifiers,
            limits,
        })
    }

    fn secrets(&mut self, raw: &Option<Spanned<raw::Secrets>>, key: &str) -> Vec<Secret> {
        let Some(raw) = raw else {
            return Vec::new();
        };
        // Untagged enums lose inner spans, so every entry reports the whole value's line.
        let list: Vec<Spanned<raw::SecretValue>> = match raw.get_ref() {
            raw::Secrets::One(s) => vec![Spanned::new(raw.span(), s.clone())],
            raw::Secrets::Many(v) => v
                .iter()
                .map(|s| Spanned::new(raw.span(), s.clone()))
                .collect(),
        };
        if list.is_empty() {
            self.error(Some(raw.span()), key, "lists no secret".into());
        }
        let mut out = Vec::new();
        for s in &list {
            if let Some(v) = self.secret_value(s, key) {
                if v.is_empty() {
                    self.error(Some(s.span()), key, "secret is empty".into());
                } else {
                    out.push(Secret::new(v));
                }
            }
        }
        out
    }

    /// A secret's value: the text (with `${VAR}` expanded) or the content of its file.
    fn secret_value(&mut self, value: &Spanned<raw::SecretValue>, key: &str) -> Option<String> {
        match value.get_ref() {
            raw::SecretValue::Text(s) => {
                self.expand(&Spanned::new(value.span(), s.clone()), key, true)
            }
            raw::SecretValue::File(f) => {
                let name = Spanned::new(value.span(), f.file.clone());
                let file = self.expand(&name, key, false)?;
                let path = self.config_dir.join(file);
                match read_secret_file(&path) {
                    Ok(s) => {
                        self.secret_files.push((key.to_string(), path));
                        Some(s)
                    }
                    Err(message) => {
                        self.error(Some(value.span()), key, message);
                        None
                    }
                }
            }
        }
    }

    fn verify(&mut self, raw: &raw::Verify, key: &str) -> Verify {
        let mut v = Verify {
            github: self.secrets(&raw.github, &format!("{key}.github")),
            gitlab: self.secrets(&raw.gitlab, &format!("{key}.gitlab")),
            bitbucket: self.secrets(&raw.bitbucket, &format!("{key}.bitbucket")),
            gitea: self.secrets(&raw.gitea, &format!("{key}.gitea")),
            standard: self.secrets(&raw.standard, &format!("{key}.standard")),
            standard_tolerance: DEFAULT_STANDARD_TOLERANCE,
            hmac: None,
            bearer: self.secrets(&raw.bearer, &format!("{key}.bearer")),
            basic: self.secrets(&raw.basic, &format!("{key}.basic")),
            require: false,
            allow_unsigned: false,
            allow_ips: self.cidrs(&raw.allow_ips, &format!("{key}.allow_ips")),
            client_cert: false,
        };
        if let Some(c) = &raw.client_cert
            && *c.get_ref()
        {
            v.client_cert = true;
            self.client_cert_apps
                .push((format!("{key}.client_cert"), c.span()));
        }
        if let Some(t) = &raw.standard_tolerance
            && let Some(d) = self.duration(t, &format!("{key}.standard_tolerance"))
        {
            v.standard_tolerance = d;
        }
        for s in &v.standard {
            if crate::secret::decode_secret(s.expose()).is_none() {
                self.error(
                    raw.standard.as_ref().map(|r| r.span()),
                    &format!("{key}.standard"),
                    "is not a Standard Webhooks secret (expected whsec_ followed by base64)".into(),
                );
            }
        }
        for s in &v.basic {
            if !s.expose().contains(':') {
                self.error(
                    raw.basic.as_ref().map(|r| r.span()),
                    &format!("{key}.basic"),
                    "must be \"user:password\"".into(),
                );
            }
        }
        if let Some(h) = &raw.hmac {
            let h = h.get_ref();
            let hkey = format!("{key}.hmac");
            let header = h.header.get_ref().trim().to_string();
            if http::HeaderName::from_bytes(header.as_bytes()).is_err() {
                self.error(
                    Some(h.header.span()),
                    &format!("{hkey}.header"),
                    format!("{header:?} is not a valid header name"),
                );
            }
            let algorithm = match h.algorithm.as_ref().map(|a| a.get_ref().as_str()) {
                None | Some("sha256") => HmacAlgorithm::Sha256,
                Some("sha1") => HmacAlgorithm::Sha1,
                Some("sha512") => HmacAlgorithm::Sha512,
                Some(other) => {
                    self.error(
                        h.algorithm.as_ref().map(|a| a.span()),
                        &format!("{hkey}.algorithm"),
                        format!("unknown algorithm {other:?} (sha1, sha256 or sha512)"),
                    );
                    HmacAlgorithm::Sha256
                }
            };
            let encoding = match h.encoding.as_ref().map(|a| a.get_ref().as_str()) {
                None | Some("hex") => Encoding::Hex,
                Some("base64") => Encoding::Base64,
                Some(other) => {
                    self.error(
                        h.encoding.as_ref().map(|a| a.span()),
                        &format!("{hkey}.encoding"),
                        format!("unknown encoding {other:?} (hex or base64)"),
                    );
                    Encoding::Hex
                }
            };
            let prefix = match &h.prefix {
                Some(p) => self
                    .expand(p, &format!("{hkey}.prefix"), false)
                    .unwrap_or_default(),
                None => String::new(),
            };
            let secret = Some(h.secret.clone());
            let secrets = self.secrets(&secret, &format!("{hkey}.secret"));
            v.hmac = Some(HmacScheme {
                header,
                algorithm,
                encoding,
                prefix,
                secrets,
            });
        }
        self.require(raw, key, &mut v);
        v
    }

    /// `require` and `allow_unsigned`. With any scheme configured every delivery must be
    /// verified by one of them, so `require` defaults to true there, and `require = false`
    /// (which used to let unsigned deliveries through with their git information) is an error
    /// that points to `allow_unsigned`, whose unsigned deliveries carry no version.
    fn require(&mut self, raw: &raw::Verify, key: &str, v: &mut Verify) {
        let configured = v.configured();
        v.require = configured;
        v.allow_unsigned = raw.allow_unsigned.as_ref().is_some_and(|a| *a.get_ref());
        match raw.require.as_ref().map(|r| (r.span(), *r.get_ref())) {
            Some((span, false)) if configured => self.error(
                Some(span),
                &format!("{key}.require"),
                format!(
                    "cannot be false while a scheme is configured ({}): every delivery of this app must be verified; to also take unsigned token-only redeploys (which never carry a branch, commit or image), set `allow_unsigned = true` instead",
                    v.schemes().join(", ")
                ),
            ),
            Some((span, true)) if !configured => self.error(
                Some(span),
                &format!("{key}.require"),
                "is true but no scheme is configured, so every delivery would be refused: add one (github, gitlab, bitbucket, gitea, standard, hmac, bearer or basic)".into(),
            ),
            _ => {}
        }
    }

    /// `[apps.X] modifiers`: which hook URL modifiers the app honours.
    fn modifiers(
        &mut self,
        raw: &Option<Spanned<Vec<Spanned<String>>>>,
        key: &str,
    ) -> Vec<Modifier> {
        let Some(raw) = raw else {
            return Modifier::DEFAULT.to_vec();
        };
        let mut out = Vec::new();
        for m in raw.get_ref() {
            match Modifier::ALL
                .into_iter()
                .find(|x| x.as_str() == m.get_ref())
            {
                Some(x) if out.contains(&x) => self.error(
                    Some(m.span()),
                    key,
                    format!("names {:?} twice", m.get_ref()),
                ),
                Some(x) => out.push(x),
                None => self.error(
                    Some(m.span()),
                    key,
                    format!(
                        "unknown modifier {:?} (one of: {})",
                        m.get_ref(),
                        Modifier::ALL.map(Modifier::as_str).join(", ")
                    ),
                ),
            }
        }
        out
    }

    /// `[server]` keys of the connection and request limits (see `listener` and `edges`).
    fn server_edges(&mut self, raw: &raw::Server, server: &mut Server) {
        if let Some(v) = &raw.header_timeout
            && let Some(d) = self.duration(v, "server.header_timeout")
        {
            server.header_timeout = d;
        }
        if let Some(v) = &raw.body_timeout
            && let Some(d) = self.duration(v, "server.body_timeout")
        {
            server.body_timeout = d;
        }
        if let Some(v) = &raw.max_connections {
            match usize::try_from(*v.get_ref()) {
                Ok(n) if n > 0 => server.max_connections = n,
                _ => self.error(
                    Some(v.span()),
                    "server.max_connections",
                    "must be a positive number".into(),
                ),
            }
        }
        server.trusted_proxies = self.cidrs(&raw.trusted_proxies, "server.trusted_proxies");
        if let Some(v) = &raw.rate_per_client {
            server.rate_per_client = self.rate(v, "server.rate_per_client", true);
        }
        if let Some(v) = &raw.failures_per_client {
            server.failures_per_client = self.rate(v, "server.failures_per_client", true);
        }
    }

    /// `[apps.X.limits]`.
    fn limits(&mut self, raw: &Option<Spanned<raw::Limits>>, key: &str) -> Limits {
        let mut limits = Limits::default();
        if let Some(rate) = raw.as_ref().and_then(|l| l.get_ref().rate.as_ref()) {
            limits.rate = self.rate(rate, &format!("{key}.rate"), false);
        }
        limits
    }

    /// A rate such as `"120/min"`; `"off"` (where allowed) turns the limit off.
    fn rate(
        &mut self,
        value: &Spanned<String>,
        key: &str,
        may_be_off: bool,
    ) -> Option<crate::ratelimit::Rate> {
        let text = self.expand(value, key, false)?;
        if may_be_off && text.trim() == "off" {
            return None;
        }
        match crate::ratelimit::Rate::parse(&text) {
            Ok(r) => Some(r),
            Err(e) => {
                let e = if may_be_off {
                    format!("{e}, or \"off\"")
                } else {
                    e
                };
                self.error(Some(value.span()), key, e);
                None
            }
        }
    }

    /// A list of CIDRs (`"10.0.0.0/8"`) or single addresses (`"::1"`).
    fn cidrs(
        &mut self,
        raw: &Option<Spanned<Vec<Spanned<String>>>>,
        key: &str,
    ) -> Vec<ipnet::IpNet> {
        let mut out = Vec::new();
        for entry in raw.iter().flat_map(|list| list.get_ref()) {
            let Some(text) = self.expand(entry, key, false) else {
                continue;
            };
            let text = text.trim();
            let net = match text.parse::<ipnet::IpNet>() {
                Ok(net) => net,
                Err(_) => match text.parse::<std::net::IpAddr>() {
                    Ok(ip) => ipnet::IpNet::from(ip),
                    Err(_) => {
                        self.error(
                            Some(entry.span()),
                            key,
                            format!("{text:?} is not an address or CIDR (examples: \"192.30.252.0/22\", \"10.0.0.1\", \"::1\")"),
                        );
                        continue;
                    }
                },
            };
            // "192.30.252.1/22" is usually a typo for the network; say so rather than guess.
            if net.trunc() != net {
                self.error(
                    Some(entry.span()),
                    key,
                    format!(
                        "{text:?} has bits set after the prefix; did you mean \"{}\"?",
                        net.trunc()
                    ),
                );
                continue;
            }
            out.push(net);
        }
        out
    }

    fn image(&mut self, raw: &Spanned<raw::Image>, key: &str) -> Option<ImageSpec> {
        let i = raw.get_ref();
        let rkey = format!("{key}.image.repository");
        let repository = self.expand(&i.repository, &rkey, false)?;
        if crate::image_ref::image_repository(&repository).as_deref() != Some(repository.as_str()) {
            self.error(
                Some(i.repository.span()),
                &rkey,
                format!("{repository:?} is not an image repository (no tag or digest): e.g. registry.example.com/acme/api"),
            );
            return None;
        }
        let tags = match &i.tags {
            Some(t) => {
                let tkey = format!("{key}.image.tags");
                let text = self.expand(t, &tkey, false)?;
                match TagPolicy::parse(&text) {
                    Ok(p) => p,
                    Err(e) => {
                        self.error(Some(t.span()), &tkey, e);
                        return None;
                    }
                }
            }
            None => TagPolicy::Exact("latest".into()),
        };
        Some(ImageSpec { repository, tags })
    }

    fn docker(&mut self, raw: &Spanned<raw::Docker>, key: &str) -> Option<DockerSpec> {
        let d = raw.get_ref();
        let select = match (&d.container, &d.label) {
            (Some(c), None) => ContainerSelector::Name(self.expand(
                c,
                &format!("{key}.docker.container"),
                false,
            )?),
            (None, Some(l)) => {
                let lkey = format!("{key}.docker.label");
                let label = self.expand(l, &lkey, false)?;
                if !label.contains('=') || label.starts_with('=') {
                    self.error(
                        Some(l.span()),
                        &lkey,
                        format!("{label:?} is not key=value, e.g. \"ferry.service=api\""),
                    );
                    return None;
                }
                ContainerSelector::Label(label)
            }
            _ => {
                self.error(
                    Some(raw.span()),
                    &format!("{key}.docker"),
                    "needs exactly one of `container = \"name\"` or `label = \"key=value\"`".into(),
                );
                return None;
            }
        };
        let health = self.health(
            &d.health_timeout,
            &d.probe,
            &d.stable_for,
            &format!("{key}.docker"),
        )?;
        let auth = match (&d.username, &d.password) {
            (Some(u), Some(p)) => Some((
                self.expand(u, &format!("{key}.docker.username"), false)?,
                Secret::new(self.expand(p, &format!("{key}.docker.password"), true)?),
            )),
            (None, None) => None,
            (Some(u), None) => {
                self.error(
                    Some(u.span()),
                    &format!("{key}.docker.password"),
                    "is required with `username`".into(),
                );
                return None;
            }
            (None, Some(p)) => {
                self.error(
                    Some(p.span()),
                    &format!("{key}.docker.username"),
                    "is required with `password`".into(),
                );
                return None;
            }
        };
        let keep_images = match &d.keep_images {
            Some(n) if *n.get_ref() >= 1 => usize::try_from(*n.get_ref()).ok(),
            Some(n) => {
                self.error(
                    Some(n.span()),
                    &format!("{key}.docker.keep_images"),
                    "must be at least 1 (the rollback image is always kept)".into(),
                );
                return None;
            }
            None => None,
        };
        Some(DockerSpec {
            select,
            health,
            auth,
            keep_images,
        })
    }

    fn health(
        &mut self,
        timeout: &Option<Spanned<String>>,
        probe: &Option<Spanned<String>>,
        stable_for: &Option<Spanned<String>>,
        key: &str,
    ) -> Option<HealthGate> {
        let timeout = match timeout {
            Some(v) => self.duration(v, &format!("{key}.health_timeout"))?,
            None => Duration::from_secs(60),
        };
        let stable_for = match stable_for {
            Some(v) => self.duration(v, &format!("{key}.stable_for"))?,
            None => Duration::from_secs(5),
        };
        let probe = match probe {
            Some(v) => {
                let pkey = format!("{key}.probe");
                let url = self.expand(v, &pkey, false)?;
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    self.error(
                        Some(v.span()),
                        &pkey,
                        format!("{url:?} is not an http:// or https:// URL"),
                    );
                    return None;
                }
                Some(url)
            }
            None => None,
        };
        Some(HealthGate {
            timeout,
            probe,
            stable_for,
        })
    }

    fn compose(
        &mut self,
        raw: &Spanned<raw::Compose>,
        key: &str,
        service: &str,
        dir: &Path,
    ) -> Option<ComposeSpec> {
        let c = raw.get_ref();
        let ckey = format!("{key}.compose");
        let project = self.expand(&c.project, &format!("{ckey}.project"), false)?;
        if project.is_empty()
            || !project
                .chars()
                .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || "-_".contains(ch))
        {
            self.error(
                Some(c.project.span()),
                &format!("{ckey}.project"),
                format!("{project:?} is not a Compose project name (lower-case letters, digits, - and _)"),
            );
            return None;
        }
        let file = match &c.file {
            Some(f) => dir.join(self.expand(f, &format!("{ckey}.file"), false)?),
            None => dir.join("compose.yaml"),
        };
        let services = match &c.services {
            Some(list) => {
                let mut out = Vec::new();
                for s in list.get_ref() {
                    out.push(self.expand(s, &format!("{ckey}.services"), false)?);
                }
                if out.is_empty() || out.iter().any(|s| s.is_empty() || s.starts_with('-')) {
                    self.error(
                        Some(list.span()),
                        &format!("{ckey}.services"),
                        "must name Compose services: services = [\"api\"]".into(),
                    );
                    return None;
                }
                out
            }
            None => vec![service.to_string()],
        };
        let health = self.health(&c.health_timeout, &c.probe, &c.stable_for, &ckey)?;
        Some(ComposeSpec {
            project,
            file,
            services,
            health,
        })
    }

    fn service(
        &mut self,
        name: &str,
        raw: Spanned<raw::Service>,
        key: &str,
        dir: &Path,
    ) -> Option<Service> {
        let span = raw.span();
        let raw = raw.into_inner();
        let image = raw.image.as_ref().and_then(|i| self.image(i, key));
        if let (Some(g), Some(_)) = (&raw.git, &image) {
            self.error(
                Some(g.span()),
                &format!("{key}.git"),
                "a service follows a git repository or an image, not both".into(),
            );
        }
        let git = raw.git.as_ref().and_then(|g| {
            let span = g.span();
            let g = g.get_ref();
            let repo = self.expand(&g.repo, &format!("{key}.git.repo"), false)?;
            let repo = repo.trim_matches('/').to_string();
            if repo.is_empty() {
                self.error(
                    Some(g.repo.span()),
                    &format!("{key}.git.repo"),
                    "is empty".into(),
                );
            }
            let tags = match &g.tags {
                Some(t) => {
                    let tkey = format!("{key}.git.tags");
                    let pattern = self.expand(t, &tkey, false)?;
                    match globset::Glob::new(&pattern) {
                        Ok(glob) => Some(TagPattern {
                            pattern,
                            matcher: glob.compile_matcher(),
                        }),
                        Err(e) => {
                            self.error(Some(t.span()), &tkey, format!("invalid glob: {e}"));
                            return None;
                        }
                    }
                }
                None => None,
            };
            let branch = match &g.branch {
                Some(b) => Some(self.expand(b, &format!("{key}.git.branch"), false)?),
                // Following tags only is explicit; otherwise the default branch is main.
                None if tags.is_some() => None,
                None => Some("main".to_string()),
            };
            let branch = branch.map(|b| b.strip_prefix("refs/heads/").unwrap_or(&b).to_string());
            if branch.as_deref() == Some("") {
                self.error(Some(span), &format!("{key}.git.branch"), "is empty".into());
            }
            Some(GitSpec { repo, branch, tags })
        });
        let timeout = match &raw.timeout {
            Some(v) => self.duration(v, &format!("{key}.timeout"))?,
            None => DEFAULT_TIMEOUT,
        };
        let mut env = Vec::new();
        for (k, v) in &raw.env {
            let ekey = format!("{key}.env.{}", k.get_ref());
            if k.get_ref().is_empty() || k.get_ref().contains('=') || k.get_ref().contains('\0') {
                self.error(Some(k.span()), &ekey, "is not a valid variable name".into());
                continue;
            }
            if k.get_ref().starts_with("FERRY_") {
                self.error(
                    Some(k.span()),
                    &ekey,
                    "FERRY_* variables are set by ferry itself".into(),
                );
                continue;
            }
            if let Some(val) = self.expand(v, &ekey, false) {
                env.push((k.get_ref().clone(), val));
            }
        }
        let workdir = match &raw.workdir {
            Some(v) => dir.join(self.expand(v, &format!("{key}.workdir"), false)?),
            None => dir.to_path_buf(),
        };
        let executors = [
            raw.command.as_ref().map(|c| ("command", c.span())),
            raw.docker.as_ref().map(|c| ("docker", c.span())),
            raw.compose.as_ref().map(|c| ("compose", c.span())),
            raw.swarm.as_ref().map(|c| ("swarm", c.span())),
        ];
        let set: Vec<_> = executors.iter().flatten().collect();
        if set.len() > 1 {
            self.error(
                Some(set[1].1.clone()),
                &format!("{key}.{}", set[1].0),
                format!(
                    "a service has one executor: {} are both set",
                    set.iter()
                        .map(|(k, _)| format!("`{k}`"))
                        .collect::<Vec<_>>()
                        .join(" and ")
                ),
            );
            return None;
        }
        if let Some(sw) = &raw.swarm {
            let skey = format!("{key}.swarm");
            let service = self.expand(&sw.get_ref().service, &format!("{skey}.service"), false)?;
            let wait = match &sw.get_ref().timeout {
                Some(v) => self.duration(v, &format!("{skey}.timeout"))?,
                None => Duration::from_secs(300),
            };
            if raw.image.is_none() {
                self.error(
                    Some(sw.span()),
                    &format!("{key}.image"),
                    "is required with `swarm`: image = { repository = \"registry.example.com/acme/api\", tags = \"semver:^1\" }".into(),
                );
                return None;
            }
            return Some(Service {
                name: name.to_string(),
                git,
                image,
                executor: Executor::Swarm(SwarmSpec {
                    service,
                    timeout: wait,
                }),
                timeout,
                env,
            });
        }
        if let Some(c) = &raw.compose {
            let spec = self.compose(c, key, name, dir)?;
            return Some(Service {
                name: name.to_string(),
                git,
                image,
                executor: Executor::Compose(spec),
                timeout,
                env,
            });
        }
        let executor = match (&raw.command, &raw.docker) {
            (Some(_), Some(_)) => unreachable!("refused above"),
            (None, Some(d)) => {
                let spec = self.docker(d, key)?;
                if raw.image.is_none() {
                    self.error(
                        Some(d.span()),
                        &format!("{key}.image"),
                        "is required with `docker`: image = { repository = \"registry.example.com/acme/api\", tags = \"semver:^1\" }".into(),
                    );
                    return None;
                }
                Executor::Docker(spec)
            }
            (Some(cmd), None) => {
                let ckey = format!("{key}.command");
                let mut argv = Vec::new();
                for a in cmd.get_ref() {
                    argv.push(self.expand(a, &ckey, false)?);
                }
                if argv.first().is_none_or(|p| p.is_empty()) {
                    self.error(
                        Some(cmd.span()),
                        &ckey,
                        "must name a program: command = [\"./deploy.sh\", \"arg\"]".into(),
                    );
                    return None;
                }
                Executor::Command { argv, workdir }
            }
            (None, None) => {
                self.error(
                    Some(span),
                    key,
                    "has no executor: set `command = [\"program\", \"arg\", …]`, `docker = { container = \"name\" }` or `compose = { project = \"name\" }`".into(),
                );
                return None;
            }
        };
        Some(Service {
            name: name.to_string(),
            git,
            image,
            executor,
            timeout,
            env,
        })
    }
}

fn parse_size(size: &Size) -> Option<usize> {
    match size {
        Size::Bytes(n) => usize::try_from(*n).ok(),
        Size::Text(s) => {
            let s = s.trim();
            let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
            let (num, unit) = s.split_at(split);
            let n: usize = num.parse().ok()?;
            let mult = match unit.trim() {
                "" | "B" => 1,
                "KB" | "kB" => 1000,
                "KiB" => 1024,
                "MB" => 1000 * 1000,
                "MiB" => 1024 * 1024,
                "GB" => 1000 * 1000 * 1000,
                "GiB" => 1024 * 1024 * 1024,
                _ => return None,
            };
            n.checked_mul(mult)
        }
    }
}

fn is_url_safe_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Reads a secret from a file (`{ file = "…" }`): UTF-8 text, one trailing newline (`\n` or
/// `\r\n`) dropped, as `echo` and editors leave it. The message names the file.
fn read_secret_file(path: &Path) -> Result<String, String> {
    use std::io::Read;
    /// A secret is a few dozen bytes; more means the wrong file (or `/dev/zero`).
    const LIMIT: u64 = 64 * 1024;
    let shown = path.display();
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(LIMIT + 1).read_to_end(&mut bytes))
        .map_err(|e| format!("cannot read secret file {shown}: {e}"))?;
    if bytes.len() as u64 > LIMIT {
        return Err(format!(
            "secret file {shown} is larger than {} KiB; is it the right file?",
            LIMIT / 1024
        ));
    }
    let mut text =
        String::from_utf8(bytes).map_err(|_| format!("secret file {shown} is not UTF-8 text"))?;
    if text.ends_with("\r\n") {
        text.truncate(text.len() - 2);
    } else if text.ends_with('\n') {
        text.truncate(text.len() - 1);
    }
    if text.is_empty() {
        return Err(format!("secret file {shown} is empty"));
    }
    Ok(text)
}

fn is_url_safe_token(s: &str) -> bool {
    s.chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Result<Config, Vec<String>> {
        let env = |name: &str| match name {
            "TOKEN" => Some("tok-0123456789abcdef".to_string()),
            "SECRET" => Some("gh-secret".to_string()),
            _ => None,
        };
        parse(text, Path::new("/etc/ferry/ferry.toml"), &env).map_err(|e| match e {
            ConfigError::Invalid(d) => d.iter().map(|d| d.to_string()).collect(),
            other => vec![other.to_string()],
        })
    }

    fn errors(text: &str) -> Vec<String> {
        match check(text) {
            Ok(_) => panic!("config should be invalid:\n{text}"),
            Err(e) => e,
        }
    }

    /// `server.tls` reads the files at check time; `public_url` then defaults to https; and
    /// `admin_listen` must differ from `listen`.
    #[test]
    fn transport_settings() {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        let cert = params.self_signed(&key).unwrap();
        std::fs::write(dir.path().join("cert.pem"), cert.pem()).unwrap();
        std::fs::write(dir.path().join("key.pem"), key.serialize_pem()).unwrap();
        let d = dir.path().display();
        let tls = format!(
            "[server]\nlisten = \"127.0.0.1:9000\"\nadmin_listen = \"127.0.0.1:9001\"\ntls = {{ cert = \"{d}/cert.pem\", key = \"{d}/key.pem\" }}\n"
        );
        let text = GOOD.replace("[server]\nlisten = \"127.0.0.1:9000\"\n", &tls);
        let c = check(&text).unwrap();
        assert_eq!(c.server.public_url, "https://127.0.0.1:9000");
        assert_eq!(c.server.admin_listen.as_deref(), Some("127.0.0.1:9001"));
        assert!(c.server.tls.is_some_and(|t| t.client_ca.is_none()));

        let same = text.replace("127.0.0.1:9001", "127.0.0.1:9000");
        let e = errors(&same);
        assert!(e[0].contains(":4: server.admin_listen:"), "{e:?}");
    }

    const GOOD: &str = r#"
[server]
listen = "127.0.0.1:9000"
admin_token = "${TOKEN}"

[apps.shop]
token = "${TOKEN}"
verify = { github = "${SECRET}" }

[apps.shop.services.web]
git = { repo = "acme/shop", branch = "main" }
command = ["./deploy/web.sh", "--fast"]
timeout = "2m"
env = { RAILS_ENV = "production" }

[apps.shop.services.worker]
command = ["make", "deploy"]

[apps.shop.profiles.hotfix]
services = ["web"]
"#;

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
        let Executor::Command { argv, workdir } = &web.executor else {
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
    fn secrets_do_not_show_in_debug() {
        let c = check(GOOD).unwrap();
        let dump = format!("{c:?}");
        assert!(!dump.contains("tok-0123456789abcdef"));
        assert!(!dump.contains("gh-secret"));
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let e = errors(
            "[apps.shop]\ntoken = \"${TOKEN}\"\n[apps.shop.services.web]\ncomand = [\"x\"]\n",
        );
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].starts_with("/etc/ferry/ferry.toml:4: "), "{e:?}");
        assert!(e[0].contains("comand"), "{e:?}");
    }

    #[test]
    fn missing_variable_names_variable_key_and_line() {
        let e = errors(
            "[apps.shop]\n\ntoken = \"${NOPE}\"\n[apps.shop.services.web]\ncommand = [\"x\"]\n",
        );
        assert_eq!(
            e,
            ["/etc/ferry/ferry.toml:3: apps.shop.token: environment variable NOPE is not set"]
        );
    }

    #[test]
    fn bad_duration() {
        let e = errors(
            "[apps.shop]\ntoken = \"${TOKEN}\"\n[apps.shop.services.web]\ncommand = [\"x\"]\ntimeout = \"10 parsecs\"\n",
        );
        assert_eq!(e.len(), 1);
        assert!(
            e[0].starts_with(
                "/etc/ferry/ferry.toml:5: apps.shop.services.web.timeout: invalid duration \"10 parsecs\""
            ),
            "{e:?}"
        );
    }

    #[test]
    fn service_without_executor() {
        let e = errors(
            "[apps.shop]\ntoken = \"${TOKEN}\"\n[apps.shop.services.web]\ngit = { repo = \"a/b\" }\n",
        );
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].contains("apps.shop.services.web: has no executor"),
            "{e:?}"
        );
        assert!(e[0].starts_with("/etc/ferry/ferry.toml:3:"), "{e:?}");
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
    fn profile_with_unknown_service() {
        let e = errors(
            "[apps.shop]\ntoken = \"${TOKEN}\"\n[apps.shop.services.web]\ncommand = [\"x\"]\n[apps.shop.profiles.p]\nservices = [\"web\", \"api\"]\n",
        );
        assert_eq!(
            e,
            [
                "/etc/ferry/ferry.toml:6: apps.shop.profiles.p.services: names service \"api\", which app shop does not have"
            ]
        );
    }

    #[test]
    fn every_error_is_reported_at_once() {
        let e = errors(
            "[server]\nshutdown_grace = \"soon\"\n[apps.shop]\ntoken = \"short\"\n[apps.shop.services.web]\ncommand = [\"x\"]\ntimeout = \"0s\"\n",
        );
        assert_eq!(e.len(), 3, "{e:?}");
    }

    #[test]
    fn env_values_cannot_inject_toml() {
        let env = |_: &str| Some("x\"\n[apps.evil]\ntoken = \"y".to_string());
        let c = parse(
            "[apps.shop]\ntoken = \"tok-0123456789abcdef\"\n[apps.shop.services.web]\ncommand = [\"${X}\"]\n",
            Path::new("f.toml"),
            &env,
        )
        .unwrap();
        assert_eq!(c.apps.len(), 1);
    }

    #[test]
    fn dollar_escapes_and_sizes() {
        let c = check(
            "[server]\nbody_limit = \"2MiB\"\n[apps.shop]\ntoken = \"${TOKEN}\"\n[apps.shop.services.web]\ncommand = [\"echo\", \"$$HOME\", \"a$b\"]\n",
        )
        .unwrap();
        assert_eq!(c.server.body_limit, 2 * 1024 * 1024);
        let Executor::Command { argv, .. } = &c.apps["shop"].services["web"].executor else {
            panic!("command executor expected")
        };
        assert_eq!(argv, &["echo", "$HOME", "a$b"]);
    }

    #[test]
    fn docker_executor_needs_an_image() {
        let e = errors(
            "[apps.shop]\ntoken = \"${TOKEN}\"\n[apps.shop.services.api]\ndocker = { container = \"api\" }\n",
        );
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].contains("apps.shop.services.api.image: is required with `docker`"),
            "{e:?}"
        );
    }

    #[test]
    fn image_services_and_their_errors() {
        let base = "[apps.shop]\ntoken = \"${TOKEN}\"\n[apps.shop.services.api]\n";
        let e = errors(&format!(
            "{base}image = {{ repository = \"r.example/acme/api:1\", tags = \"semver:^1\" }}\ndocker = {{ container = \"api\" }}\n"
        ));
        assert!(
            e.len() == 1
                && e[0].contains("image.repository")
                && e[0].contains("not an image repository"),
            "{e:?}"
        );
        let e = errors(&format!(
            "{base}image = {{ repository = \"r.example/acme/api\", tags = \"semver:^^1\" }}\ndocker = {{ container = \"api\" }}\n"
        ));
        assert!(
            e.len() == 1 && e[0].contains("image.tags: invalid semver range"),
            "{e:?}"
        );
        let e = errors(&format!(
            "{base}image = {{ repository = \"r.example/acme/api\" }}\ndocker = {{ container = \"api\", label = \"a=b\" }}\n"
        ));
        assert!(
            e.len() == 1 && e[0].contains("needs exactly one of"),
            "{e:?}"
        );
        let e = errors(&format!(
            "{base}image = {{ repository = \"r.example/acme/api\" }}\ndocker = {{ label = \"nolabel\" }}\n"
        ));
        assert!(
            e.len() == 1 && e[0].contains("docker.label") && e[0].contains("not key=value"),
            "{e:?}"
        );
        let e = errors(&format!(
            "{base}image = {{ repository = \"r.example/acme/api\" }}\ndocker = {{ container = \"api\", probe = \"localhost:8080\" }}\n"
        ));
        assert!(e.len() == 1 && e[0].contains("docker.probe"), "{e:?}");
        let e = errors(&format!(
            "{base}image = {{ repository = \"r.example/acme/api\" }}\ndocker = {{ container = \"api\" }}\ncommand = [\"x\"]\n"
        ));
        assert!(e.len() == 1 && e[0].contains("one executor"), "{e:?}");
    }

    #[test]
    fn compose_services() {
        let base = "[apps.shop]\ntoken = \"${TOKEN}\"\n[apps.shop.services.api]\n";
        let c = check(&format!(
            "{base}compose = {{ project = \"shop\", file = \"deploy/compose.yml\" }}\n"
        ))
        .unwrap();
        let Executor::Compose(spec) = &c.apps["shop"].services["api"].executor else {
            panic!("compose executor expected")
        };
        assert_eq!(spec.file, Path::new("/etc/ferry/deploy/compose.yml"));
        assert_eq!(spec.services, ["api"]);
        let e = errors(&format!("{base}compose = {{ project = \"Shop App\" }}\n"));
        assert!(e.len() == 1 && e[0].contains("compose.project"), "{e:?}");
        let e = errors(&format!(
            "{base}compose = {{ project = \"shop\" }}\ncommand = [\"x\"]\n"
        ));
        assert!(e.len() == 1 && e[0].contains("one executor"), "{e:?}");
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

    #[test]
    fn edge_limits_have_defaults_and_parse() {
        let c = check(GOOD).unwrap();
        assert_eq!(c.server.header_timeout, Duration::from_secs(10));
        assert_eq!(c.server.body_timeout, Duration::from_secs(30));
        assert_eq!(c.server.max_connections, 1024);
        assert_eq!(c.server.rate_per_client, Some(DEFAULT_RATE_PER_CLIENT));
        assert!(c.server.trusted_proxies.is_empty());
        assert!(c.apps["shop"].limits.rate.is_none());
        assert!(c.apps["shop"].verify.allow_ips.is_empty());
        let text = GOOD.replace(
            "admin_token = \"${TOKEN}\"\n",
            "admin_token = \"${TOKEN}\"\nheader_timeout = \"5s\"\nbody_timeout = \"1m\"\nmax_connections = 10\ntrusted_proxies = [\"10.0.0.0/8\", \"::1\"]\nrate_per_client = \"off\"\nfailures_per_client = \"5/min\"\n",
        ) + "[apps.shop.limits]\nrate = \"120/min\"\n";
        let text = text.replace(
            "verify = { github = \"${SECRET}\" }",
            "verify = { github = \"${SECRET}\", allow_ips = [\"192.30.252.0/22\", \"127.0.0.2\"] }",
        );
        let c = check(&text).unwrap();
        assert_eq!(c.server.header_timeout, Duration::from_secs(5));
        assert_eq!(c.server.body_timeout, Duration::from_secs(60));
        assert_eq!(c.server.max_connections, 10);
        assert_eq!(c.server.trusted_proxies.len(), 2);
        assert_eq!(c.server.rate_per_client, None);
        assert_eq!(c.server.failures_per_client.unwrap().to_string(), "5/min");
        assert_eq!(c.apps["shop"].limits.rate.unwrap().to_string(), "120/min");
        let allow: Vec<String> = c.apps["shop"]
            .verify
            .allow_ips
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(allow, ["192.30.252.0/22", "127.0.0.2/32"]);
    }

    #[test]
    fn edge_limit_errors_name_key_and_line() {
        let e = errors(
            "[server]\nmax_connections = 0\ntrusted_proxies = [\"10.0.0.1/8\", \"proxy.local\"]\nrate_per_client = \"lots\"\nheader_timeout = \"soon\"\n[apps.shop]\ntoken = \"${TOKEN}\"\nverify = { allow_ips = [\"1.2.3.4/33\"] }\nlimits = { rate = \"off\" }\n[apps.shop.services.web]\ncommand = [\"x\"]\n",
        );
        let expect = [
            "ferry.toml:2: server.max_connections: must be a positive number",
            "ferry.toml:3: server.trusted_proxies: \"10.0.0.1/8\" has bits set after the prefix; did you mean \"10.0.0.0/8\"?",
            "ferry.toml:3: server.trusted_proxies: \"proxy.local\" is not an address or CIDR",
            "ferry.toml:4: server.rate_per_client: invalid rate \"lots\"",
            "ferry.toml:5: server.header_timeout: invalid duration \"soon\"",
            "ferry.toml:8: apps.shop.verify.allow_ips: \"1.2.3.4/33\" is not an address or CIDR",
            "ferry.toml:9: apps.shop.limits.rate: invalid rate \"off\"",
        ];
        for x in expect {
            assert!(e.iter().any(|l| l.contains(x)), "missing {x:?} in {e:#?}");
        }
        assert_eq!(e.len(), expect.len(), "{e:#?}");
    }

    /// `text` as `ferry.toml` in a temp dir holding `files` (name, bytes).
    fn with_files(
        text: &str,
        files: &[(&str, &[u8])],
    ) -> (tempfile::TempDir, Result<Config, ConfigError>) {
        let dir = tempfile::tempdir().unwrap();
        for (name, bytes) in files {
            std::fs::write(dir.path().join(name), bytes).unwrap();
        }
        let text = text.replace("{dir}", dir.path().to_str().unwrap());
        let result = parse(&text, &dir.path().join("ferry.toml"), &|_| None);
        (dir, result)
    }

    const FROM_FILES: &str = r#"
[server]
admin_token = { file = "admin" }

[apps.shop]
token = { file = "{dir}/token" }
verify = { github = { file = "gh" }, gitlab = [{ file = "gl" }, "inline-secret"], hmac = { header = "X-Sig", secret = { file = "hm" } } }

[apps.shop.services.web]
command = ["true"]
"#;

    #[test]
    fn secrets_from_files() {
        let (_dir, result) = with_files(
            FROM_FILES,
            &[
                ("admin", b"admin-token-0123\n"),
                ("token", b"hook-token-0123456\r\n"),
                ("gh", b"gh secret\n\n"),
                ("gl", b"gl-secret"),
                ("hm", b"hm-secret\n"),
            ],
        );
        let c = result.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.server.admin_token.unwrap().expose(), "admin-token-0123");
        let app = &c.apps["shop"];
        assert_eq!(app.token.expose(), "hook-token-0123456");
        // Only one trailing newline is dropped.
        assert_eq!(app.verify.github[0].expose(), "gh secret\n");
        let gitlab: Vec<&str> = app.verify.gitlab.iter().map(|s| s.expose()).collect();
        assert_eq!(gitlab, ["gl-secret", "inline-secret"]);
        assert_eq!(
            app.verify.hmac.as_ref().unwrap().secrets[0].expose(),
            "hm-secret"
        );
    }

    #[test]
    fn secret_file_errors_name_key_line_and_file() {
        let (dir, result) = with_files(
            FROM_FILES,
            &[
                ("admin", b"\n"),
                ("token", b"\xff\xfe"),
                ("hm", b"hm-secret"),
            ],
        );
        let Err(ConfigError::Invalid(diags)) = result else {
            panic!("should be invalid");
        };
        let all: Vec<String> = diags.iter().map(|d| d.to_string()).collect();
        let find = |key: &str| {
            diags
                .iter()
                .find(|d| d.key == key)
                .unwrap_or_else(|| panic!("no error for {key}: {all:#?}"))
        };
        let d = find("server.admin_token");
        assert_eq!(d.line, Some(3));
        assert!(
            d.message.contains("is empty") && d.message.contains("admin"),
            "{d}"
        );
        let d = find("apps.shop.token");
        assert_eq!(d.line, Some(6));
        assert!(d.message.contains("not UTF-8"), "{d}");
        let d = find("apps.shop.verify.github");
        assert_eq!(d.line, Some(7));
        let gh = dir.path().join("gh");
        assert!(
            d.message
                .contains(&format!("cannot read secret file {}", gh.display())),
            "{d}"
        );
    }

    #[test]
    fn schemes_make_verification_required() {
        let shop = check(GOOD).unwrap().apps.remove("shop").unwrap();
        assert!(shop.verify.require && !shop.verify.allow_unsigned);
        assert_eq!(shop.modifiers, Modifier::DEFAULT);
        let open = check(
            "[apps.shop]\ntoken = \"${TOKEN}\"\n[apps.shop.services.web]\ncommand = [\"x\"]\n",
        )
        .unwrap()
        .apps
        .remove("shop")
        .unwrap();
        assert!(!open.verify.require && !open.verify.configured());
        let lax = check(&GOOD.replace(
            "verify = { github = \"${SECRET}\" }",
            "verify = { github = \"${SECRET}\", allow_unsigned = true }",
        ))
        .unwrap()
        .apps
        .remove("shop")
        .unwrap();
        assert!(lax.verify.require && lax.verify.allow_unsigned);
    }

    #[test]
    fn require_false_with_a_scheme_points_to_allow_unsigned() {
        let e = errors(&GOOD.replace(
            "verify = { github = \"${SECRET}\" }",
            "\n[apps.shop.verify]\ngithub = \"${SECRET}\"\nrequire = false",
        ));
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with("/etc/ferry/ferry.toml:11: apps.shop.verify.require: cannot be false"),
            "{e:?}"
        );
        assert!(e[0].contains("allow_unsigned = true"), "{e:?}");
        let e = errors(
            "[apps.shop]\ntoken = \"${TOKEN}\"\nverify = { require = true }\n[apps.shop.services.web]\ncommand = [\"x\"]\n",
        );
        assert!(
            e[0].starts_with(
                "/etc/ferry/ferry.toml:3: apps.shop.verify.require: is true but no scheme"
            ),
            "{e:?}"
        );
    }

    #[test]
    fn modifiers_are_checked_with_their_line() {
        let c = check(&GOOD.replace(
            "verify = { github",
            "modifiers = [\"git_ref\", \"services\"]\nverify = { github",
        ))
        .unwrap();
        assert_eq!(
            c.apps["shop"].modifiers,
            [Modifier::GitRef, Modifier::Services]
        );
        let e = errors(&GOOD.replace(
            "verify = { github",
            "modifiers = [\n  \"services\",\n  \"git-ref\",\n  \"services\",\n]\nverify = { github",
        ));
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(
            e[0].starts_with("/etc/ferry/ferry.toml:10: apps.shop.modifiers: unknown modifier \"git-ref\" (one of: services, deployment_profile, git_ref)"),
            "{e:?}"
        );
        assert!(
            e[1].starts_with(
                "/etc/ferry/ferry.toml:11: apps.shop.modifiers: names \"services\" twice"
            ),
            "{e:?}"
        );
        let none =
            check(&GOOD.replace("verify = { github", "modifiers = []\nverify = { github")).unwrap();
        assert!(none.apps["shop"].modifiers.is_empty());
    }
}
