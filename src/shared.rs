//! What request handlers share: the state behind every route (config, store, intake, metrics,
//! edge checks, the lanes' runs in progress). It lives below the handlers and the wiring, so
//! `server` imports the handlers and the handlers never import `server`.

use std::sync::Arc;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::store::{Intake, Store};

/// What request handlers share.
pub struct Shared {
    pub config: Arc<Config>,
    pub store: Store,
    pub intake: Intake,
    pub metrics: Metrics,
    /// Client address, rate limits and allowlists of the hook route.
    pub edges: crate::edges::Edges,
    /// The lanes' runs in progress: how `POST /api/v1/deployments/ID/cancel` stops one.
    pub running: crate::lanes::Running,
}
