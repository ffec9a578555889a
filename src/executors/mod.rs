//! Executors: how one deployment of one service is carried out.
//!
//! The lanes (`crate::lanes`) decide *when* a deployment runs; an executor decides *how*. Each
//! executor lives in its own file and is handed everything it needs (argv, environment, working
//! directory, timeout, a log to write to, a cancellation token) so it knows nothing of the store,
//! the HTTP side or the config file.

pub mod command;
pub mod compose;
pub mod docker;
pub mod swarm;

/// How a deployment ended, as far as the executor can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The command exited with status 0.
    Succeeded,
    /// The command exited non-zero or was killed by a signal it did not get from us.
    Failed {
        exit_code: Option<i32>,
        signal: Option<i32>,
    },
    /// The timeout passed; the whole process group was killed.
    TimedOut,
    /// ferry asked it to stop (shutdown grace period over); the process group was killed.
    Cancelled,
    /// The new version did not become healthy; the old one runs again.
    RolledBack { reason: String },
}
