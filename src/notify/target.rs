//! The kinds of targets notifications go to, behind one enum: what each wants of an event
//! (fan-out) and how it sends one. Each kind lives in its own file (`webhook.rs`,
//! `dockerhub.rs`); adding one (GitHub deployments, commit statuses, …) is that file plus a
//! variant here, and the compiler points at every match that must learn it.

use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::{bitbucket, dockerhub, gitea, github, gitlab, webhook};
use crate::config::Config;
use crate::config::NotifyTarget;
use crate::store::{
    Delivery, Deployment, JournalEvent, NewNotification, Notification, Store, StoreError,
};

/// How long one try may take (connect, send, answer): a hanging receiver holds only its own
/// queue, and only this long per try.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(10);

/// What the notify worker works with.
pub(crate) struct Context {
    pub(crate) config: Arc<Config>,
    /// The `[[notify]]` entries.
    pub(crate) targets: Vec<NotifyTarget>,
    pub(crate) store: Store,
    /// From `crate::outgoing` (no redirects), with [`TIMEOUT`].
    pub(crate) client: reqwest::Client,
    /// How long a notification is retried after it was created (`server.notify_retry_for`).
    pub(crate) retry_for: Duration,
    /// Whether the config sets up any target at all ([`Kind::configured`]).
    pub(crate) any_target: bool,
}

impl Context {
    /// The worker's context, from the config: the `[[notify]]` entries, `notify_retry_for`,
    /// and a client built here (no redirects, [`TIMEOUT`] per try).
    pub(crate) fn new(config: Arc<Config>, store: Store) -> Result<Context, reqwest::Error> {
        Ok(Context {
            targets: config.notify.clone(),
            retry_for: config.server.notify_retry_for,
            any_target: Kind::ALL.into_iter().any(|k| k.configured(&config)),
            config,
            store,
            client: crate::outgoing::builder(TIMEOUT).build()?,
        })
    }

    /// The `[[notify]]` entry whose queue is `target`, if it is still configured.
    pub(crate) fn notify_target(&self, target: &str) -> Option<&NotifyTarget> {
        self.targets.iter().find(|t| t.target == target)
    }

    /// Where a deployment's JSON is served (the link in every notification).
    pub(crate) fn deployment_url(&self, id: i64) -> String {
        format!("{}/api/v1/deployments/{id}", self.public_url())
    }

    /// The deployment's dashboard page (steps, live log): where a person lands from GitHub.
    pub(crate) fn deployment_page_url(&self, id: i64) -> String {
        format!("{}/deployments/{id}", self.public_url())
    }

    pub(crate) fn delivery_url(&self, id: i64) -> String {
        format!("{}/api/v1/deliveries/{id}", self.public_url())
    }

    fn public_url(&self) -> &str {
        self.config.server.public_url.trim_end_matches('/')
    }
}

/// Every kind of target, by the name stored in `notifications.kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `[[notify]]` with `format = "standard"`: Standard Webhooks.
    Webhook,
    /// `[[notify]]` with `format = "slack"`.
    Slack,
    /// Docker Hub's `callback_url` (`[apps.X] dockerhub_callback`).
    Dockerhub,
    /// GitHub Deployments and their statuses (`[apps.X.github]`).
    Github,
    /// GitLab commit statuses (`[apps.X.gitlab]`).
    Gitlab,
    /// Gitea/Forgejo commit statuses (`[apps.X.gitea]`).
    Gitea,
    /// Bitbucket Cloud build statuses (`[apps.X.bitbucket]`).
    Bitbucket,
}

impl Kind {
    pub(crate) const ALL: [Kind; 7] = [
        Kind::Webhook,
        Kind::Slack,
        Kind::Dockerhub,
        Kind::Github,
        Kind::Gitlab,
        Kind::Gitea,
        Kind::Bitbucket,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Kind::Webhook => "webhook",
            Kind::Slack => "slack",
            Kind::Dockerhub => "dockerhub",
            Kind::Github => "github",
            Kind::Gitlab => "gitlab",
            Kind::Gitea => "gitea",
            Kind::Bitbucket => "bitbucket",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Whether `config` sets up any target of this kind: the fan-out reads what events are
    /// about only when some kind is.
    pub(crate) fn configured(self, config: &Config) -> bool {
        let any_app = |f: fn(&crate::config::App) -> bool| config.apps.values().any(f);
        match self {
            Kind::Webhook | Kind::Slack => !config.notify.is_empty(),
            Kind::Dockerhub => any_app(|a| a.dockerhub_callback.is_some()),
            Kind::Github => any_app(|a| a.github.is_some()),
            Kind::Gitlab => any_app(|a| a.commit_statuses.gitlab.is_some()),
            Kind::Gitea => any_app(|a| a.commit_statuses.gitea.is_some()),
            Kind::Bitbucket => any_app(|a| a.commit_statuses.bitbucket.is_some()),
        }
    }

    /// What ferry's log calls one of these.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Kind::Webhook => "webhook",
            Kind::Slack => "Slack message",
            Kind::Dockerhub => "Docker Hub callback",
            Kind::Github => "GitHub deployment request",
            Kind::Gitlab => "GitLab commit status",
            Kind::Gitea => "Gitea commit status",
            Kind::Bitbucket => "Bitbucket build status",
        }
    }
}

/// An event with what it is about, as far as the store still has it (retention may have
/// pruned the deployment or delivery since).
pub(crate) struct Subject<'a> {
    pub(crate) event: &'a JournalEvent,
    pub(crate) deployment: Option<&'a Deployment>,
    pub(crate) delivery: Option<&'a Delivery>,
}

/// How one try went, as a target reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Received (2xx), or refused only because the receiver has it already (GitLab's repeat
    /// of a commit status's state).
    Sent { status: u16 },
    /// Received (2xx), and GitHub created a deployment whose id the later statuses of the
    /// same ferry deployment go to: stored in the transaction that marks this one sent.
    Created { status: u16, github_deployment: i64 },
    /// Failed; worth trying again, after `after` if the receiver said so (`Retry-After`).
    Retry {
        status: Option<u16>,
        error: String,
        after: Option<Duration>,
    },
    /// Refused for good: trying again cannot help.
    Permanent { status: Option<u16>, error: String },
}

/// The notifications every target wants for one event.
pub(crate) async fn fan_out(
    ctx: &Context,
    subject: &Subject<'_>,
) -> Result<Vec<NewNotification>, StoreError> {
    let mut out = webhook::fan_out(ctx, subject);
    out.extend(dockerhub::fan_out(ctx, subject).await?);
    out.extend(github::fan_out(ctx, subject).await?);
    out.extend(gitlab::fan_out(ctx, subject));
    out.extend(gitea::fan_out(ctx, subject));
    out.extend(bitbucket::fan_out(ctx, subject).await?);
    Ok(out)
}

/// One try of `n`, by its kind.
pub(crate) async fn send(ctx: &Context, n: &Notification) -> Outcome {
    let Some(kind) = Kind::parse(&n.kind) else {
        return Outcome::Permanent {
            status: None,
            error: format!(
                "unknown kind {:?} (written by another ferry version?)",
                n.kind
            ),
        };
    };
    match kind {
        Kind::Webhook | Kind::Slack => webhook::send(ctx, n).await,
        Kind::Dockerhub => dockerhub::send(ctx, n).await,
        Kind::Github => github::send(ctx, n).await,
        Kind::Gitlab => gitlab::send(ctx, n).await,
        Kind::Gitea => gitea::send(ctx, n).await,
        Kind::Bitbucket => bitbucket::send(ctx, n).await,
    }
}

/// A notification's stable id (the Standard Webhooks `webhook-id`): derived from the event
/// and the target, so a fan-out redone after a crash gives the same one, and from the event's
/// time too, so a fresh database (ids from 1 again) does not repeat ids receivers have seen.
pub(crate) fn uid(event: &JournalEvent, target: &str) -> String {
    let digest = Sha256::digest(format!("{}.{}.{target}", event.id, event.at).as_bytes());
    format!("msg_{}", &hex::encode(digest)[..24])
}

/// A notification for `event` to `target`, with its body rendered.
pub(crate) fn notification(
    subject: &Subject<'_>,
    target: &str,
    kind: Kind,
    receiver: &str,
    url: Option<String>,
    body: String,
) -> NewNotification {
    let e = subject.event;
    NewNotification {
        uid: uid(e, target),
        event_id: e.id,
        target: target.to_string(),
        kind: kind.as_str().to_string(),
        event: e.event,
        app: e.app.clone(),
        service: e.service.clone(),
        deployment_id: e.deployment_id,
        delivery_id: e.delivery_id,
        receiver: receiver.to_string(),
        url,
        body,
    }
}

/// What went wrong with a request, without its URL (which may be a secret or come from a
/// payload): "timed out after 10s", "cannot connect: …".
pub(crate) fn describe(e: reqwest::Error) -> String {
    describe_after(e, TIMEOUT)
}

/// [`describe`] for a request made with its own `timeout` (`ferry doctor`'s probes).
pub(crate) fn describe_after(e: reqwest::Error, timeout: std::time::Duration) -> String {
    if e.is_timeout() {
        return format!("timed out after {}", humantime::format_duration(timeout));
    }
    let what = if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let mut text = what.to_string();
    let e = e.without_url();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_and_uids_are_stable_and_distinct() {
        for k in Kind::ALL {
            assert_eq!(Kind::parse(k.as_str()), Some(k));
        }
        assert_eq!(Kind::parse("carrier-pigeon"), None);
        let e = JournalEvent {
            id: 7,
            at: 1_700_000_000_000,
            event: crate::states::EventType::DeploymentQueued,
            app: "a".into(),
            service: None,
            deployment_id: None,
            delivery_id: None,
            reason: None,
            detail: None,
        };
        let a = uid(&e, "notify:1");
        assert_eq!(a, uid(&e, "notify:1"));
        assert!(a.starts_with("msg_") && a.len() == 28, "{a}");
        assert_ne!(a, uid(&e, "notify:2"));
        assert_ne!(
            a,
            uid(
                &JournalEvent {
                    at: e.at + 1,
                    ..e.clone()
                },
                "notify:1"
            )
        );
    }
}
