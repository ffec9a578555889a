//! Telling others how deployments go, through a durable outbox.
//!
//! Nothing here is called by the code that changes a deployment or refuses a delivery: the
//! store writes each such change into the `events` journal in the change's own transaction
//! (triggers of migration 0008; the intake writer for deliveries it stores refused), so every
//! notification is committed with the state change that causes it. One background task ([`worker`])
//! fans each event out into the `notifications` its targets want and sends them: per target
//! one at a time and in order, targets concurrently, each try bounded by a timeout, failures
//! retried with backoff until `server.notify_retry_for`, then `dead` (listed by the API, and
//! sent again on request). The lanes, the planner and intake never wait for any of it.
//!
//! - [`target`]: the kinds of targets behind one enum (fan-out and send for each), and the
//!   worker's [`Context`]. Adding a kind of target is one file plus a variant there.
//! - [`webhook`]: `[[notify]]` receivers — Standard Webhooks (signed) or Slack-style text.
//! - [`dockerhub`]: Docker Hub's `callback_url`, under the app's `dockerhub_callback` prefix.
//! - [`github`]: GitHub Deployments (`[apps.X.github]`): one per deployment of a GitHub push,
//!   and its statuses (or the statuses of the deployment a GitHub `deployment` event named).
//! - [`gitlab`], [`gitea`], [`bitbucket`]: commit statuses on those hosts for the deployments
//!   their pushes caused; what the three share (events, states, context, answers) is
//!   [`statuses`].
//! - [`event`]: what an event says (the `data` of a webhook, a line of chat).
//! - [`container`]: the same for the container events `crate::watch` journals.
//! - [`retry`]: backoff with jitter, `Retry-After`, when a notification is dead.
//! - [`worker`]: the task: fan-out, per-target queues, tries, pruning.

pub(crate) mod bitbucket;
pub(crate) mod container;
pub(crate) mod dockerhub;
pub(crate) mod event;
pub(crate) mod gitea;
pub(crate) mod github;
pub(crate) mod gitlab;
pub(crate) mod retry;
pub(crate) mod statuses;
pub(crate) mod target;
pub(crate) mod webhook;
pub(crate) mod worker;

use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::store::Store;
pub(crate) use target::Context;

/// Starts the notify worker; it runs until `stop` (then what is pending stays pending, and is
/// sent after the next start). `None` if no HTTP client could be built (nothing is lost: the
/// notifications wait in the store).
pub(crate) fn spawn(
    config: Arc<Config>,
    store: Store,
    stop: CancellationToken,
) -> Option<JoinHandle<()>> {
    match Context::new(config, store) {
        Ok(ctx) => {
            let store = ctx.store.clone();
            let ctx = Arc::new(ctx);
            // With replicas, one sends (each notification once, in order per target).
            Some(tokio::spawn(async move {
                store
                    .lead(crate::store::Role::Notify, stop, |lost| {
                        worker::run(ctx.clone(), lost)
                    })
                    .await
            }))
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot build the notifications' HTTP client; notifications are not sent");
            None
        }
    }
}
