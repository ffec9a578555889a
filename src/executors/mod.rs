//! Executors: how one deployment of one service is carried out.
//!
//! The lanes (`crate::lanes`) decide *when* a deployment runs; this module decides *how*.
//! [`Job::prepare`] builds, once, everything a run needs from the service's config and the
//! deployment: the log, the payload file and the `FERRY_*` environment (`env.rs`, the one
//! list of those names, each value checked before anything runs), the version to deploy and
//! the executor's own settings ([`job::Work`], one variant per executor). [`Job::run`] hands the
//! work to its executor and returns how it ended: an [`Outcome`], or a typed [`Error`] when
//! nothing could be carried out.
//!
//! One file per executor, each with a `run(job, log, stop)`: `command.rs` (argv in its own
//! process group; with `checkout.rs` first, in a git checkout of the deployment's commit),
//! `docker.rs` (health-gated container replacement with rollback),
//! `compose.rs` (through Compose) and `swarm.rs` (a Swarm service update). `health.rs` is the
//! health gate that `docker` and `compose` share. `steps.rs`: [`Steps`], how executors record
//! the steps of a run (the one thing they write to the store, through it). Executors know
//! nothing else of the store, nor of the HTTP side; only `job.rs` reads the config and the
//! deployment row.
//!
//! Adding an executor: see "Adding an executor" in `ARCHITECTURE.md`.

pub(crate) mod checkout;
pub(crate) mod command;
pub(crate) mod compose;
pub(crate) mod docker;
mod env;
pub(crate) mod health;
mod job;
mod steps;
pub(crate) mod swarm;

pub(crate) use job::{Error, Image, Job, Ran};
pub(crate) use steps::Steps;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Asks a run to stop, and says why: ferry's shutdown (the parent token) or a cancel through
/// the API ([`Stop::stop`]). An executor waits on it like a `CancellationToken` (it derefs to
/// one) and writes [`Stop::why`] into the deployment log.
#[derive(Debug, Clone, Default)]
pub(crate) struct Stop {
    token: CancellationToken,
    why: Arc<OnceLock<String>>,
}

impl Stop {
    /// What a stop without a request means: the parent token fired.
    pub(crate) const SHUTDOWN: &'static str = "ferry is shutting down";

    /// A stop that also fires when `parent` (ferry's shutdown) does.
    pub(crate) fn child_of(parent: &CancellationToken) -> Stop {
        Stop {
            token: parent.child_token(),
            why: Default::default(),
        }
    }

    /// Stops the run for `why` (the first reason given wins).
    pub(crate) fn stop(&self, why: &str) {
        let _ = self.why.set(why.to_string());
        self.token.cancel();
    }

    /// Whether the run was asked to stop through [`Stop::stop`] (not only by shutdown).
    pub(crate) fn requested(&self) -> bool {
        self.why.get().is_some()
    }

    /// Why the run stops, for the log.
    pub(crate) fn why(&self) -> &str {
        self.why.get().map_or(Self::SHUTDOWN, String::as_str)
    }
}

impl std::ops::Deref for Stop {
    type Target = CancellationToken;

    fn deref(&self) -> &CancellationToken {
        &self.token
    }
}

/// How a deployment ended, as far as the executor can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The command exited with status 0.
    Succeeded,
    /// The command exited non-zero or was killed by a signal it did not get from us.
    Failed {
        exit_code: Option<i32>,
        signal: Option<i32>,
    },
    /// The timeout (`after`, the service's) passed; the whole process group was killed.
    TimedOut { after: Duration },
    /// ferry asked it to stop (shutdown grace period over, or a cancel through the API; see
    /// [`Stop::why`]); the process group was killed, a container replacement rolled back.
    Cancelled,
    /// The new version did not become healthy; the old one runs again.
    RolledBack { reason: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stop_says_why() {
        let shutdown = CancellationToken::new();
        let requested = Stop::child_of(&shutdown);
        let other = Stop::child_of(&shutdown);
        requested.stop("requested through the API");
        requested.stop("a second reason is ignored");
        assert!(requested.is_cancelled() && requested.requested());
        assert_eq!(requested.why(), "requested through the API");
        assert!(
            !other.is_cancelled() && !shutdown.is_cancelled(),
            "only that run stops"
        );

        shutdown.cancel();
        assert!(other.is_cancelled() && !other.requested());
        assert_eq!(other.why(), Stop::SHUTDOWN);
    }
}
