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
pub struct File {
    #[serde(default)]
    pub server: Option<Spanned<Server>>,
    #[serde(default)]
    pub apps: BTreeMap<Spanned<String>, Spanned<App>>,
    #[serde(default)]
    pub notify: Vec<Spanned<Notify>>,
}

/// One `[[notify]]` entry.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Notify {
    /// A secret value: a Slack-style URL is the receiver's credential.
    pub url: Spanned<SecretValue>,
    pub secret: Option<Spanned<SecretValue>>,
    pub format: Option<Spanned<String>>,
    pub apps: Option<Spanned<Vec<Spanned<String>>>>,
    pub events: Option<Spanned<Vec<Spanned<String>>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    pub listen: Option<Spanned<String>>,
    pub public_url: Option<Spanned<String>>,
    pub data_dir: Option<Spanned<String>>,
    pub admin_token: Option<Spanned<SecretValue>>,
    pub body_limit: Option<Spanned<Size>>,
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
    pub notify_retry_for: Option<Spanned<String>>,
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

/// A byte size: an integer, or a string such as `"512KiB"`, `"1MiB"`, `"10MB"`.
#[derive(Deserialize)]
#[serde(untagged)]
pub enum Size {
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
