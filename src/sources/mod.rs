//! Sources: who sent a delivery, how to verify it, and what it means.
//!
//! One file per sender (`github.rs`, `dockerhub.rs`, …). Each knows its own headers, signature
//! scheme, payload format and setup text, and nothing of the store or planning. The files
//! around them hold what is decided across senders, each dispatching by [`Source`] with an
//! exhaustive match, so a new sender is considered everywhere the compiler can tell:
//!
//! - request path (ingress), in this order: [`detect()`] (`detect.rs`: sender, event name and
//!   delivery id from the headers), [`verify()`] (`verify.rs`: the one verification rule),
//!   [`check_body`] (`body.rs`: content type, well-formed JSON) and [`dedupe_key`]
//!   (`dedupe.rs`). They read headers and hash the body; none interprets it.
//! - planner: [`parse()`] (`parse.rs`) turns a stored delivery into an [`Event`] (`event.rs`);
//!   `values.rs` then checks every value in it.
//! - `ferry hooks`: [`setup_lines`] (`setup.rs`), each sender's line from its own file.
//! - shared helpers: `fields.rs` (header and payload field readers), `signature.rs` (HMAC),
//!   `auth.rs` (bearer/basic).

pub(crate) mod alertmanager;
pub(crate) mod auth;
pub(crate) mod bitbucket;
mod body;
mod dedupe;
mod detect;
pub(crate) mod dockerhub;
mod event;
mod fields;
pub(crate) mod generic;
pub(crate) mod gitea;
pub(crate) mod github;
pub(crate) mod gitlab;
pub(crate) mod harbor;
mod parse;
pub(crate) mod quay;
pub(crate) mod registry;
pub(crate) mod setup;
pub(crate) mod signature;
pub(crate) mod standard;
pub mod values;
mod verify;

use crate::image_ref::image_repository;

pub(crate) use body::json_document;
pub use body::{BodyError, check_body};
pub use dedupe::dedupe_key;
pub use detect::{delivery_id, detect};
pub(crate) use detect::{detect_with_hint, event_name};
pub use event::{Alert, AlertStatus, Event, GitDeployment, GitPush, GitRef, ImagePush};
pub(crate) use fields::{
    ZERO_SHA, content_type, digest, epoch_secs_ms, essence, header, image_tag, rfc3339_ms,
};
pub use parse::{ParseError, Stored, parse};
pub(crate) use parse::{RECONCILE_EVENT, ROLLBACK_EVENT, RollbackRequest};
pub(crate) use setup::setup_lines;
pub use verify::{Scheme, Verdict, VerifyError, verify};

/// Who sent a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Github,
    Gitlab,
    /// Bitbucket Cloud and Bitbucket Data Center/Server.
    Bitbucket,
    /// Gitea and Forgejo (and Gogs).
    Gitea,
    /// Anything signed per standardwebhooks.com.
    Standard,
    /// CNCF distribution (`registry`) notifications, recognised by their `Content-Type`.
    Registry,
    /// Docker Hub repository webhooks (named by `?source=dockerhub`).
    Dockerhub,
    /// Harbor webhooks, Default or CloudEvents format (named by `?source=harbor`).
    Harbor,
    /// Quay repository notifications (named by `?source=quay`).
    Quay,
    /// Prometheus Alertmanager (`User-Agent: Alertmanager/…`, or `?source=alertmanager`).
    Alertmanager,
    /// Anything else: curl, CI, a monitoring system. The URL token is its authentication.
    Generic,
    /// `ferry deploy` / `POST /api/v1/apps/APP/deploy`.
    Manual,
}

impl Source {
    pub const ALL: [Source; 12] = [
        Source::Github,
        Source::Gitlab,
        Source::Bitbucket,
        Source::Gitea,
        Source::Standard,
        Source::Registry,
        Source::Dockerhub,
        Source::Harbor,
        Source::Quay,
        Source::Alertmanager,
        Source::Generic,
        Source::Manual,
    ];

    /// Senders that `?source=` may name: they send nothing that identifies them (or, for
    /// distribution, only a `Content-Type`; Alertmanager, only its `User-Agent`), and they
    /// sign nothing.
    pub const HINTABLE: [Source; 5] = [
        Source::Registry,
        Source::Dockerhub,
        Source::Harbor,
        Source::Quay,
        Source::Alertmanager,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Source::Github => "github",
            Source::Gitlab => "gitlab",
            Source::Bitbucket => "bitbucket",
            Source::Gitea => "gitea",
            Source::Standard => "standard",
            Source::Registry => "registry",
            Source::Dockerhub => "dockerhub",
            Source::Harbor => "harbor",
            Source::Quay => "quay",
            Source::Alertmanager => "alertmanager",
            Source::Generic => "generic",
            Source::Manual => "manual",
        }
    }

    pub fn from_name(name: &str) -> Option<Source> {
        Source::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// The sender a `?source=` value names, if it is one of [`Source::HINTABLE`] (ASCII case
    /// and surrounding spaces ignored). `None` for anything else, so the caller can refuse it.
    pub fn from_hint(hint: &str) -> Option<Source> {
        let hint = hint.trim();
        Source::HINTABLE
            .into_iter()
            .find(|s| s.as_str().eq_ignore_ascii_case(hint))
    }

    /// Content types this sender uses; `None` for senders whose body ferry never interprets.
    fn content_types(self) -> Option<&'static [&'static str]> {
        const JSON: &[&str] = &["application/json"];
        const JSON_OR_FORM: &[&str] = &["application/json", "application/x-www-form-urlencoded"];
        const REGISTRY: &[&str] = &[registry::EVENTS_V1, registry::EVENTS_V2, "application/json"];
        const HARBOR: &[&str] = &["application/json", harbor::CLOUDEVENTS];
        match self {
            Source::Github | Source::Gitea => Some(JSON_OR_FORM),
            Source::Gitlab | Source::Bitbucket | Source::Standard => Some(JSON),
            Source::Registry => Some(REGISTRY),
            Source::Harbor => Some(HARBOR),
            Source::Dockerhub | Source::Quay | Source::Alertmanager => Some(JSON),
            Source::Generic | Source::Manual => None,
        }
    }
}

#[cfg(test)]
mod properties;

/// A header map from `(name, value)` pairs, for the tests of every file here.
#[cfg(test)]
pub(crate) fn test_headers(pairs: &[(&str, &str)]) -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    h
}
