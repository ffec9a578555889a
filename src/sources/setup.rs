//! `ferry hooks`: what a user pastes into each sender an app is set up for.
//!
//! Each sender's file writes its own line (`github::setup`, `dockerhub::setup`, …), since only
//! that file knows the sender's menus, fields and scheme; this module only decides which
//! senders apply to an app and in which order, through exhaustive matches over [`Source`], so a
//! new sender cannot be forgotten here. `cli::hooks` prints the lines as they come.

use super::{
    Source, alertmanager, bitbucket, dockerhub, generic, gitea, github, gitlab, harbor, quay,
    registry, standard,
};
use crate::config::{App, Verify};
use crate::secret::Secret;

/// What a sender's setup line is written from.
pub(crate) struct Setup<'a> {
    pub(crate) app: &'a App,
    /// The app's hook URL, as the sender must call it (without `?source=`).
    pub(crate) url: &'a str,
    /// `ferry hooks --show-secrets`: print the secret itself instead of naming its config key.
    pub(crate) show_secrets: bool,
}

impl Setup<'_> {
    pub(crate) fn verify(&self) -> &Verify {
        &self.app.verify
    }

    /// The secret to paste: with `--show-secrets` the last one configured (the newest, during
    /// a rotation), else the config key that holds it (`apps.APP.verify.KEY`).
    pub(crate) fn secret(&self, list: &[Secret], key: &str) -> String {
        match (self.show_secrets, list.last()) {
            (true, Some(s)) => s.expose().to_string(),
            _ => format!("<the value of apps.{}.verify.{key}>", self.app.name),
        }
    }

    /// Said of senders that cannot send credentials (Docker Hub, Quay): only the URL token
    /// vouches for them, which an app with a scheme does not accept.
    pub(crate) fn no_credentials_note(&self) -> &'static str {
        if self.verify().configured() {
            " (sends no credentials: refused by this app, which verifies deliveries; give it an app without [verify])"
        } else {
            ""
        }
    }
}

/// The lines `ferry hooks` prints under an app's hook URL: one per sender whose scheme the app
/// configures, then (for apps with image services) one per image sender, then what the app
/// asks of everything else.
pub(crate) fn setup_lines(app: &App, url: &str, show_secrets: bool) -> Vec<String> {
    let s = Setup {
        app,
        url,
        show_secrets,
    };
    let mut out: Vec<String> = Source::ALL
        .into_iter()
        .flat_map(|source| scheme_setup(source, &s))
        .collect();
    if app.services.values().any(|svc| svc.image.is_some()) {
        // Registries first, then git hosts with a registry of their own (GHCR).
        let registries_first = Source::HINTABLE.into_iter().chain(
            Source::ALL
                .into_iter()
                .filter(|s| !Source::HINTABLE.contains(s)),
        );
        out.extend(registries_first.filter_map(|source| image_setup(source, &s)));
    }
    out.extend(policy_lines(&s));
    out
}

/// A sender's webhook with the app's scheme for it, when the app configures one.
fn scheme_setup(source: Source, s: &Setup<'_>) -> Vec<String> {
    match source {
        Source::Github => github::setup(s).into_iter().collect(),
        Source::Gitlab => gitlab::setup(s).into_iter().collect(),
        Source::Bitbucket => bitbucket::setup(s).into_iter().collect(),
        Source::Gitea => gitea::setup(s).into_iter().collect(),
        Source::Standard => standard::setup(s).into_iter().collect(),
        // Apps with alert rules: a receiver with the app's credential.
        Source::Alertmanager => alertmanager::setup(s).into_iter().collect(),
        // The sender-independent schemes (custom HMAC, bearer, basic) and unsigned redeploys.
        Source::Generic => generic::setup(s),
        // Registries sign nothing: they use the generic schemes, listed under `Generic`.
        Source::Registry | Source::Dockerhub | Source::Harbor | Source::Quay => Vec::new(),
        // Not a webhook: `ferry deploy` and the API.
        Source::Manual => Vec::new(),
    }
}

/// Where an image sender is pointed at the app, for apps with image services.
fn image_setup(source: Source, s: &Setup<'_>) -> Option<String> {
    match source {
        Source::Registry => Some(registry::setup(s)),
        Source::Dockerhub => Some(dockerhub::setup(s)),
        Source::Harbor => Some(harbor::setup(s)),
        Source::Quay => Some(quay::setup(s)),
        Source::Github => Some(github::package_setup(s)),
        Source::Gitlab
        | Source::Bitbucket
        | Source::Gitea
        | Source::Standard
        | Source::Alertmanager
        | Source::Generic
        | Source::Manual => None,
    }
}

/// What the app asks of every request, whoever sends it.
fn policy_lines(s: &Setup<'_>) -> Vec<String> {
    let mut out = Vec::new();
    if s.verify().require {
        out.push("Unsigned requests are refused (verify.require = true).".to_string());
    } else {
        out.push(format!(
            "Anything else (CI, curl): curl -X POST '{}'",
            s.url
        ));
    }
    if s.verify().client_cert {
        out.push(
            "Callers need a client certificate signed by server.client_ca (verify.client_cert = true)."
                .to_string(),
        );
    }
    out
}
