//! The planner task: turns stored deliveries into deployments, in the background.
//!
//! It wakes after every group commit (and once at start, which is how deliveries acknowledged
//! just before a crash get planned), reads unplanned deliveries oldest first, parses each with
//! its source, applies the rules in `crate::plan`, and records the outcome in one transaction
//! per delivery. It is the only writer of planning decisions, so two deliveries are never
//! planned against the same history at once.

use std::sync::Arc;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::plan::{self, Modifiers};
use crate::sources::{self, Source};
use crate::store::{FullDelivery, Store, StoreError, state};

pub async fn run(
    config: Arc<Config>,
    store: Store,
    wake: Arc<Notify>,
    lanes: Arc<Notify>,
    shutdown: CancellationToken,
) {
    loop {
        match plan_pending(&config, &store).await {
            Ok(0) => {}
            Ok(_) => lanes.notify_one(),
            Err(e) => {
                tracing::error!(error = %e, "planning failed; retrying in 1s");
                tokio::select! {
                    _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => continue,
                    _ = shutdown.cancelled() => return,
                }
            }
        }
        tokio::select! {
            _ = wake.notified() => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

/// Plans every unplanned delivery; returns how many deployments were queued.
async fn plan_pending(config: &Config, store: &Store) -> Result<usize, StoreError> {
    let mut queued = 0;
    loop {
        let batch = store.unplanned(100).await?;
        if batch.is_empty() {
            return Ok(queued);
        }
        for d in &batch {
            queued += plan_one(config, store, d).await?;
        }
    }
}

async fn plan_one(config: &Config, store: &Store, d: &FullDelivery) -> Result<usize, StoreError> {
    let id = d.delivery.id;
    let outcome = decide(config, store, d).await?;
    let (deployments, error) = match outcome {
        Ok(list) => (list, None),
        Err(message) => (Vec::new(), Some(message)),
    };
    let ids = store
        .record_plan(id, &deployments, error.as_deref())
        .await?;
    if let Some(e) = &error {
        tracing::warn!(delivery = id, app = %d.delivery.app, error = %e, "delivery deploys nothing");
    }
    let mut queued = 0;
    for (dep, dep_id) in deployments.iter().zip(ids) {
        if dep.state == state::QUEUED {
            queued += 1;
        }
        tracing::info!(deployment = dep_id, delivery = id, app = %dep.app, service = %dep.service, state = dep.state, reason = dep.reason.as_deref().unwrap_or(""), commit = dep.git_commit.as_deref().unwrap_or(""), "deployment {}", dep.state);
    }
    if deployments.is_empty() && error.is_none() {
        tracing::info!(delivery = id, app = %d.delivery.app, event = d.delivery.event.as_deref().unwrap_or(""), "delivery planned; it deploys nothing");
    }
    Ok(queued)
}

/// The planning decision for one delivery: deployments, or an error that deploys nothing.
async fn decide(
    config: &Config,
    store: &Store,
    d: &FullDelivery,
) -> Result<Result<Vec<crate::store::NewDeployment>, String>, StoreError> {
    let del = &d.delivery;
    let Some(app) = config.apps.get(&del.app) else {
        return Ok(Err(format!("app {} is no longer configured", del.app)));
    };
    let Some(source) = Source::from_name(&del.source) else {
        return Ok(Err(format!("unknown source {}", del.source)));
    };
    let headers: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&d.headers).unwrap_or_default();
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.as_str())
            .map(str::to_string)
    };
    let stored = sources::Stored {
        event: del.event.as_deref(),
        header: &header,
        body: &d.body,
    };
    let event = match sources::parse(source, &stored) {
        Ok(ev) => ev,
        Err(e) => return Ok(Err(format!("cannot read {} payload: {e}", source.as_str()))),
    };
    let modifiers = Modifiers::parse(del.query.as_deref().unwrap_or(""));
    // What each service already holds, for the staleness rule.
    let mut newest = std::collections::HashMap::new();
    for name in app.services.keys() {
        if let Some(n) = store.newest_event_time(&app.name, name).await? {
            newest.insert(name.clone(), n);
        }
    }
    let history = |s: &str| newest.get(s).copied();
    Ok(plan::plan(app, source, &event, &modifiers, &history))
}
