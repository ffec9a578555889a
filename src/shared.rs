//! What request handlers share: the state behind every route (config, store, intake, metrics,
//! edge checks, the lanes' runs in progress). It lives below the handlers and the wiring, so
//! `server` imports the handlers and the handlers never import `server`.

use std::sync::Arc;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::store::{Intake, Store};

/// What request handlers share.
pub(crate) struct Shared {
    pub(crate) config: Arc<Config>,
    pub(crate) store: Store,
    pub(crate) intake: Intake,
    /// Shared with the intake writer and the lanes, which record into it too.
    pub(crate) metrics: Arc<Metrics>,
    /// Client address, rate limits and allowlists of the hook route.
    pub(crate) edges: crate::edges::Edges,
    /// The lanes' runs in progress: how `POST /api/v1/deployments/ID/cancel` stops one.
    pub(crate) running: crate::lanes::Running,
    /// Every committed change, for live viewers (the store's hub: `Store::live`).
    pub(crate) live: crate::live::Hub,
    /// The dashboard's logged-out sessions and failed-login limiter.
    pub(crate) sessions: crate::session::Sessions,
}
