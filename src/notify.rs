//! Reporting back to senders once a deployment has ended.
//!
//! Today this is Docker Hub's webhook chain: a push payload carries a `callback_url`, and Docker
//! Hub shows the push as pending until something POSTs `{"state": "success" | "failure" |
//! "error", …}` there. The URL comes from the payload, so it is only called when it starts with
//! the app's configured prefix (`dockerhub_callback`), never a payload value alone. A redirect
//! is not followed (`crate::outgoing`); the outcome goes to ferry's log.
//!
//! Notifications never hold a lane: the lanes hand each ended deployment to [`Notifier`], which
//! only queues it (bounded, `QUEUE`); one background task (`run`) sends them one at a
//! time, each bounded by `TIMEOUT`. So a callback target that hangs delays the callbacks
//! queued behind it, never the next deployment. A full queue drops the notification with a
//! warning rather than wait. At shutdown the task sends what is queued within what is left of
//! `server.shutdown_grace` once the lanes have stopped, then drops the rest and logs how many
//! (nothing is kept across restarts).

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::store::{Deployment, DeploymentState, Store};

/// How many ended deployments may wait for their notification before new ones are dropped.
const QUEUE: usize = 256;

/// How long one callback may take (connect, send, answer).
const TIMEOUT: Duration = Duration::from_secs(10);

/// A deployment that ended, waiting for its notification.
struct Ended {
    deployment: Deployment,
    final_state: DeploymentState,
}

/// The lanes' side of the queue: cheap, never waits.
pub(crate) struct Notifier {
    config: Arc<Config>,
    queue: mpsc::Sender<Ended>,
}

/// Starts the notifier: the lanes get the [`Notifier`]; the returned task sends until every
/// `Notifier` is dropped and the queue is empty, or until `stop` (then the rest is dropped).
pub(crate) fn spawn(
    config: Arc<Config>,
    store: Store,
    stop: CancellationToken,
) -> (Notifier, tokio::task::JoinHandle<()>) {
    let (queue, pending) = mpsc::channel(QUEUE);
    let task = tokio::spawn(run(config.clone(), store, pending, stop));
    (Notifier { config, queue }, task)
}

impl Notifier {
    /// Queues the report of `d`'s end, if its sender wants one and the app allows it.
    pub(crate) fn deployment_ended(&self, d: &Deployment, final_state: DeploymentState) {
        if callback_prefix(&self.config, d).is_none() {
            return;
        }
        let ended = Ended {
            deployment: d.clone(),
            final_state,
        };
        if let Err(e) = self.queue.try_send(ended) {
            let why = match e {
                mpsc::error::TrySendError::Full(_) => "the notification queue is full",
                mpsc::error::TrySendError::Closed(_) => "the notifier has stopped",
            };
            tracing::warn!(deployment = d.id, app = %d.app, "Docker Hub callback dropped: {why}");
        }
    }
}

/// Sends queued notifications one at a time until the queue closes and is empty, or `stop`.
async fn run(
    config: Arc<Config>,
    store: Store,
    mut pending: mpsc::Receiver<Ended>,
    stop: CancellationToken,
) {
    let client = match crate::outgoing::builder(TIMEOUT).build() {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(error = %e, "cannot build the callback client; callbacks are not sent");
            None
        }
    };
    loop {
        let next = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            next = pending.recv() => next,
        };
        let Some(ended) = next else { return };
        let Some(client) = &client else { continue };
        tokio::select! {
            biased;
            _ = stop.cancelled() => {
                tracing::warn!(deployment = ended.deployment.id, "Docker Hub callback abandoned: shutting down");
                break;
            }
            _ = call_back(&config, &store, client, &ended.deployment, ended.final_state) => {}
        }
    }
    pending.close();
    let mut dropped = 0;
    while pending.try_recv().is_ok() {
        dropped += 1;
    }
    if dropped > 0 {
        tracing::warn!(dropped, "Docker Hub callbacks not sent: shutting down");
    }
}

/// The app's `dockerhub_callback` prefix, when `d` came from Docker Hub and the app sets one.
fn callback_prefix<'c>(config: &'c Config, d: &Deployment) -> Option<&'c str> {
    if d.source != crate::sources::Source::Dockerhub.as_str() {
        return None;
    }
    config
        .apps
        .get(&d.app)
        .and_then(|a| a.dockerhub_callback.as_deref())
}

/// Reports a deployment's end to Docker Hub's `callback_url` (under the app's prefix).
async fn call_back(
    config: &Config,
    store: &Store,
    client: &reqwest::Client,
    d: &Deployment,
    final_state: DeploymentState,
) {
    let Some(prefix) = callback_prefix(config, d) else {
        return;
    };
    let body = match store.delivery(d.delivery_id).await {
        Ok(Some(full)) => full.body,
        _ => return,
    };
    let Some(url) = crate::sources::dockerhub::callback_url(&body) else {
        return;
    };
    if !url.starts_with(prefix) {
        tracing::warn!(deployment = d.id, app = %d.app, "Docker Hub callback_url is outside dockerhub_callback's prefix; not called");
        return;
    }
    let callback_state = match final_state {
        DeploymentState::Succeeded => "success",
        DeploymentState::Failed | DeploymentState::TimedOut | DeploymentState::RolledBack => {
            "failure"
        }
        DeploymentState::Cancelled
        | DeploymentState::Interrupted
        | DeploymentState::Superseded
        | DeploymentState::Skipped
        | DeploymentState::Queued
        | DeploymentState::Running => "error",
    };
    let target = format!(
        "{}/api/v1/deployments/{}",
        config.server.public_url.trim_end_matches('/'),
        d.id
    );
    let payload = json!({
        "state": callback_state,
        "description": format!("ferry: {}/{} deployment {} {final_state}", d.app, d.service, d.id),
        "context": "ferry",
        "target_url": target,
    });
    match client.post(&url).json(&payload).send().await {
        Ok(r) if r.status().is_success() => {
            tracing::info!(
                deployment = d.id,
                state = callback_state,
                "Docker Hub callback sent"
            )
        }
        Ok(r) => {
            tracing::warn!(
                deployment = d.id,
                status = r.status().as_u16(),
                "Docker Hub callback refused"
            )
        }
        // The error names the URL, which came from the payload: escaped.
        Err(e) => {
            tracing::warn!(deployment = d.id, error = %crate::logging::Escaped(&e), "Docker Hub callback failed")
        }
    }
}
