//! The planner task: turns stored deliveries into deployments, in the background.
//!
//! It wakes after every group commit (and once at start, which is how deliveries acknowledged
//! just before a crash get planned), reads unplanned deliveries oldest first, parses each with
//! its source, applies the rules in `crate::plan`, and records the outcomes of a batch in one
//! transaction (one fsync for up to 64 deliveries). It is the only writer of planning
//! decisions, so two deliveries are never planned against the same history at once.

use std::sync::Arc;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use crate::config::{App, Config};
use crate::plan::{self, Modifiers};
use crate::sources::{self, Event, Source};
use crate::store::{FullDelivery, NewDeployment, Store, StoreError, state};

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

/// Deliveries planned in one transaction.
const BATCH: i64 = 64;

/// Plans every unplanned delivery; returns how many deployments were queued.
async fn plan_pending(config: &Config, store: &Store) -> Result<usize, StoreError> {
    let mut queued = 0;
    loop {
        let batch = store.unplanned(BATCH).await?;
        if batch.is_empty() {
            return Ok(queued);
        }
        // Parsing is the slow part: do it before the transaction takes the write lock.
        let parsed: Vec<_> = batch.iter().map(|d| parse(config, d)).collect();
        let mut tx = store.begin_planning().await?;
        let mut next_id = tx.next_deployment_id().await?;
        // What each service already holds, for the staleness rule; kept up to date with the
        // plans of this batch as they are made.
        let mut newest: HashMap<(String, String), Option<(i64, i64)>> = HashMap::new();
        let mut rows = Vec::new();
        let mut statuses = Vec::with_capacity(batch.len());
        let mut plans = Vec::with_capacity(batch.len());
        for (d, p) in batch.iter().zip(parsed) {
            let outcome = match p {
                Ok(p) => {
                    for name in p.app.services.keys() {
                        if let Entry::Vacant(slot) =
                            newest.entry((p.app.name.clone(), name.clone()))
                        {
                            let n = tx.newest_event_time(&p.app.name, name).await?;
                            slot.insert(n);
                        }
                    }
                    let history = |s: &str| {
                        newest
                            .get(&(p.app.name.clone(), s.to_string()))
                            .copied()
                            .flatten()
                    };
                    plan::plan(p.app, p.source, &p.event, &p.modifiers, &history)
                }
                Err(message) => Err(message),
            };
            let (deployments, error) = match outcome {
                Ok(list) => (list, None),
                Err(message) => (Vec::new(), Some(message)),
            };
            let first = next_id;
            for dep in &deployments {
                if dep.state == state::QUEUED
                    && let Some(t) = dep.event_time
                {
                    let slot = newest
                        .entry((dep.app.clone(), dep.service.clone()))
                        .or_default();
                    if slot.is_none_or(|(n, _)| t >= n) {
                        *slot = Some((t, next_id));
                    }
                }
                rows.push((next_id, d.delivery.id, dep.clone()));
                next_id += 1;
            }
            statuses.push((d.delivery.id, error.clone()));
            plans.push((first, deployments, error));
        }
        tx.record(&rows, &statuses).await?;
        tx.commit().await?;
        // Logged once durable, so the log never shows a plan that a crash then lost.
        for (d, (first, deployments, error)) in batch.iter().zip(plans) {
            queued += log_plan(d, first, &deployments, error.as_deref());
        }
    }
}

/// Logs the plan of one delivery; returns how many deployments it queued.
fn log_plan(
    d: &FullDelivery,
    first_id: i64,
    deployments: &[NewDeployment],
    error: Option<&str>,
) -> usize {
    let id = d.delivery.id;
    if let Some(e) = error {
        tracing::warn!(delivery = id, app = %d.delivery.app, error = %e, "delivery deploys nothing");
    }
    let mut queued = 0;
    for (dep, dep_id) in deployments.iter().zip(first_id..) {
        if dep.state == state::QUEUED {
            queued += 1;
        }
        tracing::info!(deployment = dep_id, delivery = id, app = %dep.app, service = %dep.service, state = dep.state, reason = dep.reason.as_deref().unwrap_or(""), commit = dep.git_commit.as_deref().unwrap_or(""), "deployment {}", dep.state);
    }
    if deployments.is_empty() && error.is_none() {
        tracing::info!(delivery = id, app = %d.delivery.app, event = d.delivery.event.as_deref().unwrap_or(""), "delivery planned; it deploys nothing");
    }
    queued
}

/// A stored delivery read back into what planning needs.
struct Parsed<'c> {
    app: &'c App,
    source: Source,
    event: Event,
    modifiers: Modifiers,
}

/// Reads a stored delivery with its source; an error is the reason it deploys nothing.
fn parse<'c>(config: &'c Config, d: &FullDelivery) -> Result<Parsed<'c>, String> {
    let del = &d.delivery;
    let Some(app) = config.apps.get(&del.app) else {
        return Err(format!("app {} is no longer configured", del.app));
    };
    let Some(source) = Source::from_name(&del.source) else {
        return Err(format!("unknown source {}", del.source));
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
    let event = sources::parse(source, &stored)
        .map_err(|e| format!("cannot read {} payload: {e}", source.as_str()))?;
    Ok(Parsed {
        app,
        source,
        event,
        modifiers: Modifiers::parse(del.query.as_deref().unwrap_or("")),
    })
}
