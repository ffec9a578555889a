//! The TOML exactly as written: what serde reads from `ferry.toml`, before any check.
//!
//! Every value the validator reports on is `Spanned`, so its message can name the line. Every
//! struct denies unknown keys, so a typo is an error, not a silently ignored setting. Nothing
//! outside `config` sees these types: the validator turns them into [`super::Config`].

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct File {
    #[serde(default)]
    pub(crate) server: Option<Spanned<Server>>,
    #[serde(default)]
    pub(crate) apps: BTreeMap<Spanned<String>, Spanned<App>>,
    #[serde(default)]
    pub(crate) notify: Vec<Spanned<Notify>>,
}

/// One `[[notify]]` entry.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Notify {
    /// A secret value: a Slack-style URL is the receiver's credential.
    pub(crate) url: Spanned<SecretValue>,
    pub(crate) secret: Option<Spanned<SecretValue>>,
    pub(crate) format: Option<Spanned<String>>,
    pub(crate) apps: Option<Spanned<Vec<Spanned<String>>>>,
    pub(crate) events: Option<Spanned<Vec<Spanned<String>>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Server {
    pub(crate) listen: Option<Spanned<String>>,
    pub(crate) public_url: Option<Spanned<String>>,
    pub(crate) data_dir: Option<Spanned<String>>,
    pub(crate) database: Option<Spanned<SecretValue>>,
    pub(crate) node: Option<Spanned<String>>,
    pub(crate) lease: Option<Spanned<String>>,
    pub(crate) admin_token: Option<Spanned<SecretValue>>,
    pub(crate) body_limit: Option<Spanned<Size>>,
    pub(crate) shutdown_grace: Option<Spanned<String>>,
    pub(crate) retry_interrupted: Option<Spanned<i64>>,
    pub(crate) keep: Option<Spanned<String>>,
    pub(crate) header_timeout: Option<Spanned<String>>,
    pub(crate) body_timeout: Option<Spanned<String>>,
    pub(crate) max_connections: Option<Spanned<i64>>,
    pub(crate) trusted_proxies: Option<Spanned<Vec<Spanned<String>>>>,
    pub(crate) rate_per_client: Option<Spanned<String>>,
    pub(crate) failures_per_client: Option<Spanned<String>>,
    pub(crate) tls: Option<Spanned<Tls>>,
    pub(crate) client_ca: Option<Spanned<String>>,
    pub(crate) admin_listen: Option<Spanned<String>>,
    pub(crate) notify_retry_for: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Tls {
    pub(crate) cert: Spanned<String>,
    pub(crate) key: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct App {
    pub(crate) token: Option<Spanned<SecretValue>>,
    #[serde(default)]
    pub(crate) verify: Option<Spanned<Verify>>,
    #[serde(default)]
    pub(crate) services: BTreeMap<Spanned<String>, Spanned<Service>>,
    #[serde(default)]
    pub(crate) profiles: BTreeMap<Spanned<String>, Spanned<Profile>>,
    pub(crate) dockerhub_callback: Option<Spanned<Callback>>,
    pub(crate) modifiers: Option<Spanned<Vec<Spanned<String>>>>,
    pub(crate) limits: Option<Spanned<Limits>>,
    pub(crate) github: Option<Spanned<Github>>,
    pub(crate) gitlab: Option<Spanned<CommitStatuses>>,
    pub(crate) gitea: Option<Spanned<CommitStatuses>>,
    pub(crate) bitbucket: Option<Spanned<CommitStatuses>>,
    #[serde(default)]
    pub(crate) alerts: Vec<Spanned<AlertRule>>,
}

/// One `[[apps.X.alerts]]` rule: which alerts it takes and what it does.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AlertRule {
    pub(crate) name: Option<Spanned<String>>,
    #[serde(rename = "match")]
    pub(crate) equal: Option<Spanned<BTreeMap<Spanned<String>, Spanned<String>>>>,
    pub(crate) match_re: Option<Spanned<BTreeMap<Spanned<String>, Spanned<String>>>>,
    pub(crate) redeploy: Option<Spanned<String>>,
    pub(crate) restart: Option<Spanned<String>>,
    pub(crate) command: Option<Spanned<Vec<Spanned<String>>>>,
    pub(crate) workdir: Option<Spanned<String>>,
    pub(crate) timeout: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) env: BTreeMap<Spanned<String>, Spanned<String>>,
    pub(crate) on_resolved: Option<Spanned<AlertAction>>,
    pub(crate) cooldown: Option<Spanned<String>>,
    pub(crate) max_per_hour: Option<Spanned<i64>>,
}

/// What an alert rule does: exactly one of `redeploy`, `restart`, `command` (with a command's
/// `workdir`, `timeout` and `env`). A rule's own action is written in the rule itself.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AlertAction {
    pub(crate) redeploy: Option<Spanned<String>>,
    pub(crate) restart: Option<Spanned<String>>,
    pub(crate) command: Option<Spanned<Vec<Spanned<String>>>>,
    pub(crate) workdir: Option<Spanned<String>>,
    pub(crate) timeout: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) env: BTreeMap<Spanned<String>, Spanned<String>>,
}

/// `[apps.X.github]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Github {
    pub(crate) token: Option<Spanned<SecretValue>>,
    pub(crate) environment: Option<Spanned<String>>,
    pub(crate) environment_url: Option<Spanned<String>>,
    pub(crate) api_url: Option<Spanned<String>>,
}

/// `[apps.X.gitlab]`, `[apps.X.gitea]`, `[apps.X.bitbucket]`: commit statuses.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CommitStatuses {
    pub(crate) token: Option<Spanned<SecretValue>>,
    pub(crate) api_url: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Limits {
    pub(crate) rate: Option<Spanned<String>>,
}

/// `true` (Docker Hub's own callback URLs) or a URL prefix.
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum Callback {
    On(bool),
    Prefix(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Verify {
    pub(crate) github: Option<Spanned<Secrets>>,
    pub(crate) gitlab: Option<Spanned<Secrets>>,
    pub(crate) bitbucket: Option<Spanned<Secrets>>,
    pub(crate) gitea: Option<Spanned<Secrets>>,
    pub(crate) standard: Option<Spanned<Secrets>>,
    pub(crate) standard_tolerance: Option<Spanned<String>>,
    pub(crate) hmac: Option<Spanned<Hmac>>,
    pub(crate) bearer: Option<Spanned<Secrets>>,
    pub(crate) basic: Option<Spanned<Secrets>>,
    pub(crate) require: Option<Spanned<bool>>,
    pub(crate) allow_unsigned: Option<Spanned<bool>>,
    pub(crate) allow_ips: Option<Spanned<Vec<Spanned<String>>>>,
    pub(crate) client_cert: Option<Spanned<bool>>,
}

/// One secret, or several accepted at once during a rotation.
#[derive(Deserialize, Clone)]
#[serde(untagged)]
pub(super) enum Secrets {
    One(SecretValue),
    Many(Vec<SecretValue>),
}

/// A secret written in the config (`${VAR}` allowed), or `{ file = "…" }`: read from a
/// file (Docker and Kubernetes secrets).
#[derive(Deserialize, Clone)]
#[serde(untagged)]
pub(super) enum SecretValue {
    Text(String),
    File(SecretFile),
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub(super) struct SecretFile {
    pub(crate) file: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Hmac {
    pub(crate) header: Spanned<String>,
    pub(crate) algorithm: Option<Spanned<String>>,
    pub(crate) encoding: Option<Spanned<String>>,
    pub(crate) prefix: Option<Spanned<String>>,
    pub(crate) secret: Spanned<Secrets>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Service {
    pub(crate) git: Option<Spanned<Git>>,
    pub(crate) command: Option<Spanned<Vec<Spanned<String>>>>,
    pub(crate) workdir: Option<Spanned<String>>,
    pub(crate) timeout: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) env: BTreeMap<Spanned<String>, Spanned<String>>,
    pub(crate) image: Option<Spanned<Image>>,
    pub(crate) docker: Option<Spanned<Docker>>,
    pub(crate) compose: Option<Spanned<Compose>>,
    pub(crate) swarm: Option<Spanned<Swarm>>,
    pub(crate) runs_on: Option<Spanned<Vec<Spanned<String>>>>,
    pub(crate) reconcile: Option<Spanned<String>>,
    pub(crate) checkout: Option<Spanned<Checkout>>,
}

/// `checkout = { url, path, token, username, key, known_hosts, submodules }` of a git service.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Checkout {
    pub(crate) url: Spanned<String>,
    pub(crate) path: Spanned<String>,
    pub(crate) token: Option<Spanned<SecretValue>>,
    pub(crate) username: Option<Spanned<String>>,
    pub(crate) key: Option<Spanned<SecretValue>>,
    pub(crate) known_hosts: Option<Spanned<String>>,
    pub(crate) submodules: Option<Spanned<bool>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Swarm {
    pub(crate) service: Spanned<String>,
    pub(crate) timeout: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Compose {
    pub(crate) project: Spanned<String>,
    pub(crate) file: Option<Spanned<String>>,
    pub(crate) services: Option<Spanned<Vec<Spanned<String>>>>,
    pub(crate) health_timeout: Option<Spanned<String>>,
    pub(crate) probe: Option<Spanned<String>>,
    pub(crate) stable_for: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Image {
    pub(crate) repository: Spanned<String>,
    pub(crate) tags: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Docker {
    pub(crate) container: Option<Spanned<String>>,
    pub(crate) label: Option<Spanned<String>>,
    pub(crate) health_timeout: Option<Spanned<String>>,
    pub(crate) probe: Option<Spanned<String>>,
    pub(crate) stable_for: Option<Spanned<String>>,
    pub(crate) username: Option<Spanned<String>>,
    pub(crate) password: Option<Spanned<String>>,
    pub(crate) keep_images: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Git {
    pub(crate) repo: Spanned<String>,
    pub(crate) branch: Option<Spanned<String>>,
    pub(crate) tags: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Profile {
    pub(crate) services: Spanned<Vec<Spanned<String>>>,
}

/// A byte size: an integer, or a string such as `"512KiB"`, `"1MiB"`, `"10MB"`.
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum Size {
    Bytes(i64),
    Text(String),
}

#[cfg(test)]
mod tests {
    use crate::config::testing::errors;

    #[test]
    fn unknown_key_names_key_and_line() {
        let e = errors(
            "[apps.shop]\ntoken = \"${TOKEN}\"\n[apps.shop.services.web]\ncomand = [\"x\"]\n",
        );
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].starts_with("/etc/ferry/ferry.toml:4: "), "{e:?}");
        assert!(e[0].contains("comand"), "{e:?}");
    }
}
