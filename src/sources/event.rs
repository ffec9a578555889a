//! The event model: what a delivery means once parsed, in terms planning understands (git
//! pushes, image pushes, deployments requested in the git host, redeploys, rollbacks,
//! reconciles), whoever
//! sent it.

use super::Source;

/// A git ref as pushed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GitRef {
    Branch(String),
    Tag(String),
    Other(String),
}

impl GitRef {
    pub fn parse(full: &str) -> GitRef {
        if let Some(b) = full.strip_prefix("refs/heads/") {
            GitRef::Branch(b.to_string())
        } else if let Some(t) = full.strip_prefix("refs/tags/") {
            GitRef::Tag(t.to_string())
        } else {
            GitRef::Other(full.to_string())
        }
    }
}

/// One ref update in a push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitPush {
    /// `owner/name` (Bitbucket Data Center: `PROJECT/slug`).
    pub repo: String,
    /// The full ref, e.g. `refs/heads/main`.
    pub full_ref: String,
    pub git_ref: GitRef,
    /// The commit to deploy (for annotated tags the commit, not the tag object).
    pub commit: Option<String>,
    /// Commit time (or the sender's event time), unix milliseconds: orders events per service.
    pub time: Option<i64>,
    /// The ref was deleted: nothing to deploy.
    pub deleted: bool,
    /// History was rewritten on purpose: never stale.
    pub forced: bool,
}

/// One pushed image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImagePush {
    /// Repository as the registry names it, e.g. `registry.example.com/acme/api` when the
    /// sender gives a host, else `acme/api` (Docker Hub: `namespace/name`; official images
    /// `library/name`).
    pub repository: String,
    /// The pushed tag; `None` when the image was pushed by digest only. Always a valid tag
    /// (`[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`).
    pub tag: Option<String>,
    /// `sha256:…` manifest digest when the sender gives one (distribution, Harbor, GHCR); None
    /// for Docker Hub and Quay (resolved later against the registry). Always well-formed
    /// (`sha256:` + 64 or `sha512:` + 128 lower-case hex digits).
    pub digest: Option<String>,
    /// Event time, unix ms, when given.
    pub time: Option<i64>,
    /// The sender's per-event id, when it has one (distribution `events[].id`, CloudEvents
    /// `id`).
    pub event_id: Option<String>,
}

/// A deployment requested in the git host for an exact commit (GitHub's `deployment` event,
/// made by the GitHub UI, Actions, the CLI or ferry itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitDeployment {
    /// `owner/name`.
    pub repo: String,
    /// The commit to deploy.
    pub commit: String,
    /// What it was requested for, as given: a branch or tag name, or the commit itself.
    pub git_ref: String,
    /// The environment it deploys to; an app takes only its own (`[apps.X.github]`).
    pub environment: String,
    /// `deploy`, or another task (`deploy:migrations`), which ferry does not run.
    pub task: String,
    /// The host's id of the deployment: ferry posts its statuses there.
    pub id: i64,
    /// The ferry deployment its payload names when ferry created it (for a push): that push
    /// deploys it already.
    pub created_by_ferry: Option<i64>,
}

/// Whether an alert fires or has resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertStatus {
    Firing,
    Resolved,
}

impl AlertStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Firing => "firing",
            AlertStatus::Resolved => "resolved",
        }
    }

    pub fn from_name(name: &str) -> Option<AlertStatus> {
        match name {
            "firing" => Some(AlertStatus::Firing),
            "resolved" => Some(AlertStatus::Resolved),
            _ => None,
        }
    }
}

/// One alert of an Alertmanager notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    pub status: AlertStatus,
    pub labels: std::collections::BTreeMap<String, String>,
    pub annotations: std::collections::BTreeMap<String, String>,
    /// As sent (RFC 3339, checked by `values`): with the fingerprint, what identifies one
    /// firing of an alert (Alertmanager re-sends it every `repeat_interval`).
    pub starts_at: String,
    /// When it ended (resolved alerts); `None` while firing (Go's zero time).
    pub ends_at: Option<String>,
    /// Alertmanager's hash of the labels (hex).
    pub fingerprint: String,
    pub generator_url: Option<String>,
}

impl Alert {
    /// The `alertname` label, or "" (shown and stored with the alert).
    pub fn name(&self) -> &str {
        self.labels.get("alertname").map_or("", String::as_str)
    }
}

/// What a delivery means once parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The sender checks the hook works; deploys nothing.
    Ping,
    /// A push: one or more ref updates (Bitbucket pushes can carry several).
    Push(Vec<GitPush>),
    /// Images pushed to a registry: one or more references (distribution batches several).
    ImagePush(Vec<ImagePush>),
    /// A deployment requested in the git host: deploys its commit to the services following
    /// its repository, if its environment is the app's.
    Deployment(GitDeployment),
    /// A sender event that never deploys (e.g. GitHub `issues`); named for the record.
    Ignored(String),
    /// No git or image information: redeploy the (selected) services. `time` is the sender's
    /// event time when it gives one (e.g. `webhook-timestamp`).
    Redeploy { time: Option<i64> },
    /// `ferry rollback`: deploy a service's previous successful version again (or the version
    /// of deployment `to`). Only ever stored by the API, never parsed from a hook.
    Rollback { service: String, to: Option<i64> },
    /// A service's `reconcile` schedule is due: run its last successful version again (or
    /// record why not). Only ever stored by ferry itself (`crate::reconcile`).
    Reconcile { service: String },
    /// Alertmanager alerts: the app's `[[apps.X.alerts]]` rules decide what each does
    /// (`plan::alerts`); never a deployment by the rules above.
    Alerts(Vec<Alert>),
}

impl Event {
    /// The `FERRY_EVENT` name of deployments this event causes.
    pub fn name(&self, source: Source) -> &str {
        match (self, source) {
            (Event::Ping, _) => "ping",
            (Event::Push(_), _) => "push",
            (Event::ImagePush(_), _) => "image_push",
            (Event::Deployment(_), _) => "deployment",
            (Event::Ignored(name), _) => name,
            (Event::Redeploy { .. }, Source::Manual) => "manual",
            (Event::Redeploy { .. }, _) => "redeploy",
            (Event::Rollback { .. }, _) => "rollback",
            (Event::Reconcile { .. }, _) => "reconcile",
            (Event::Alerts(_), _) => "alert",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_pushes_are_named_for_deploy_commands() {
        assert_eq!(
            Event::ImagePush(Vec::new()).name(Source::Dockerhub),
            "image_push"
        );
    }
}
