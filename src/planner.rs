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
use crate::logging::Escaped;
use crate::plan::{self, Modifiers};
use crate::sources::{self, Event, Source, values};
use crate::states::AlertOutcome;
use crate::store::{
    Deployment, DeploymentState, FullDelivery, HeldImage, NewDeployment, Planning, Store,
    StoreError,
};

pub(crate) async fn run(
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
const BATCH: usize = 64;

/// How long a planning transaction may hold the write lock while hook deliveries wait for it:
/// past this it commits what it has planned. A batch of 64 took up to 17 ms on a slow
/// machine, and that was the p99 of hook answers under load.
const BUSY_BUDGET: std::time::Duration = std::time::Duration::from_millis(2);

/// Plans every unplanned delivery; returns how many deployments were queued.
///
/// While hook deliveries wait, a planning transaction commits only a prefix of its batch
/// (`plan_batch`); the rest, already read and parsed, stays here for the next transaction,
/// topped up with deliveries stored after it, rather than being read and parsed again.
async fn plan_pending(config: &Config, store: &Store) -> Result<usize, StoreError> {
    let mut queued = 0;
    let mut batch: Vec<FullDelivery> = Vec::new();
    let mut parsed: Vec<Result<Parsed<'_>, Unplannable>> = Vec::new();
    loop {
        // Only the planner plans, and the intake writer stores ids in increasing order, so
        // what is unplanned and not held here comes after the batch's last delivery. (Were
        // one stored below it later, it would be read once the batch runs empty: from the
        // oldest again.)
        let after = batch.last().map_or(0, |d| d.delivery.id);
        let room = BATCH - batch.len();
        if room > 0 {
            let more = store.unplanned(after, room).await?;
            // Parsing is the slow part: do it before the transaction takes the write lock.
            parsed.extend(more.iter().map(|d| parse(config, d)));
            batch.extend(more);
        }
        if batch.is_empty() {
            return Ok(queued);
        }
        let plans = plan_batch(store, &batch, &parsed).await?;
        let done = plans.len();
        // Logged once durable, so the log never shows a plan that a crash then lost. (`plans`
        // may cover only a prefix of the batch.)
        for (d, plan) in batch.iter().zip(plans) {
            queued += plan.log(d);
        }
        batch.drain(..done);
        parsed.drain(..done);
    }
}

/// Plans a batch (or, while hook deliveries wait, a prefix of it) and records the outcome in
/// one transaction; returns each planned delivery's plan, in order.
async fn plan_batch(
    store: &Store,
    batch: &[FullDelivery],
    parsed: &[Result<Parsed<'_>, Unplannable>],
) -> Result<Vec<Plan>, StoreError> {
    let mut tx = store.begin_planning().await?;
    let started = std::time::Instant::now();
    let ids: Vec<i64> = batch.iter().map(|d| d.delivery.id).collect();
    let unplanned = tx.still_unplanned(&ids).await?;
    let mut out = Outcomes::new(tx.next_deployment_id().await?, batch.len());
    // What each service already holds, for the staleness rule; kept up to date with the
    // plans of this batch as they are made.
    let mut known = Known::default();
    for (d, p) in batch.iter().zip(parsed) {
        if !out.plans.is_empty() && started.elapsed() > BUSY_BUDGET && store.intake_busy() {
            break; // The rest stays unplanned, for the next batch.
        }
        let id = d.delivery.id;
        if unplanned.as_ref().is_some_and(|u| !u.contains(&id)) {
            out.planned_elsewhere();
            continue;
        }
        let outcome = match p {
            Ok(p) => {
                if let Some(note) = &p.note {
                    out.notes.push((id, note.clone()));
                }
                known.load(&mut tx, p).await?;
                let history = known.history(&p.app.name);
                if let Event::Alerts(alerts) = &p.event {
                    let first = out.next_id;
                    Ok(plan_alerts(&mut tx, p, alerts, (id, first), &history).await?)
                } else if p.unverified {
                    plan::plan_unverified(p.app, p.source, &p.modifiers, &history)
                } else {
                    plan::plan(p.app, p.source, &p.event, &p.modifiers, &history)
                }
            }
            Err(Unplannable::Rejected(reason)) => {
                out.reject(id, reason.clone());
                continue;
            }
            Err(Unplannable::Error(message)) => Err(message.clone()),
        };
        out.planned(id, outcome, &mut known);
    }
    tx.record(&out.rows, &out.statuses).await?;
    tx.reject(&out.rejected).await?;
    tx.note(&out.notes).await?;
    tx.commit().await?;
    Ok(out.plans)
}

/// Applies the app's alert rules to each alert of a delivery (`plan::alerts`), recording every
/// alert with its outcome through the planning transaction as it is decided (so the next
/// alert's duplicate, cooldown and cap checks see it), and returns the actions' deployments.
/// They will get ids from `first` on (`Outcomes::planned` gives them in order), which the
/// alert rows name.
async fn plan_alerts(
    tx: &mut Planning,
    p: &Parsed<'_>,
    alerts: &[sources::Alert],
    (delivery, first): (i64, i64),
    history: &AppHistory<'_>,
) -> Result<Vec<NewDeployment>, StoreError> {
    use plan::alerts::{Verdict, decide, deployment, matching, row};
    let now = crate::store::now_ms();
    let mut deployments = Vec::new();
    for alert in alerts {
        let rules = matching(p.app, alert);
        if rules.is_empty() {
            tx.record_alert(&row(p.app, delivery, alert), now).await?;
        }
        for rule in rules {
            let key = (p.app.name.as_str(), rule.name.as_str());
            let of = (
                alert.fingerprint.as_str(),
                alert.starts_at.as_str(),
                alert.status.as_str(),
            );
            let facts = tx.alert_facts(key, of, now - plan::alerts::HOUR_MS).await?;
            let mut r = row(p.app, delivery, alert);
            r.rule = Some(rule.name.clone());
            match decide(rule, alert, &facts, now) {
                Verdict::Act(action) => {
                    let d = deployment(p.app, p.source, rule, action, alert, history);
                    r.action = Some(action.describe());
                    r.outcome = AlertOutcome::Acted;
                    r.reason = d.reason.clone();
                    r.deployment_id = Some(first + deployments.len() as i64);
                    deployments.push(d);
                }
                Verdict::Skip(outcome, reason) => {
                    let action = match alert.status {
                        sources::AlertStatus::Firing => Some(&rule.action),
                        sources::AlertStatus::Resolved => rule.on_resolved.as_ref(),
                    };
                    r.action = action.map(|a| a.describe());
                    r.outcome = outcome;
                    r.reason = Some(reason);
                }
            }
            tx.record_alert(&r, now).await?;
        }
    }
    Ok(deployments)
}

/// What a planning transaction records, gathered delivery by delivery.
struct Outcomes {
    /// The id the next deployment gets (see `Planning::next_deployment_id`).
    next_id: i64,
    /// (deployment id, delivery id, deployment), for `Planning::record`.
    rows: Vec<(i64, i64, NewDeployment)>,
    /// Each planned delivery and the reason it deploys nothing, if any.
    statuses: Vec<(i64, Option<String>)>,
    /// Deliveries whose values failed the checks, with the reason.
    rejected: Vec<(i64, String)>,
    notes: Vec<(i64, String)>,
    /// One per delivery handled, in order, for the log.
    plans: Vec<Plan>,
}

/// What became of one delivery, for the log once committed.
struct Plan {
    /// The id of its first deployment (the others follow).
    first: i64,
    deployments: Vec<NewDeployment>,
    /// Why it deploys nothing, or why it was rejected.
    error: Option<String>,
    rejected: bool,
    /// Planned by another replica between this planner's read and its lock.
    elsewhere: bool,
}

impl Outcomes {
    fn new(next_id: i64, size: usize) -> Outcomes {
        Outcomes {
            next_id,
            rows: Vec::new(),
            statuses: Vec::with_capacity(size),
            rejected: Vec::new(),
            notes: Vec::new(),
            plans: Vec::with_capacity(size),
        }
    }

    /// A delivery rejected for its values: no status update, no deployments.
    fn reject(&mut self, delivery: i64, reason: String) {
        self.rejected.push((delivery, reason.clone()));
        self.plans.push(Plan {
            first: self.next_id,
            deployments: Vec::new(),
            error: Some(reason),
            rejected: true,
            elsewhere: false,
        });
    }

    /// A delivery another replica planned first: nothing to record or log here.
    fn planned_elsewhere(&mut self) {
        self.plans.push(Plan {
            first: self.next_id,
            deployments: Vec::new(),
            error: None,
            rejected: false,
            elsewhere: true,
        });
    }

    /// A delivery planned: its deployments get ids, and those queued join what `known` holds.
    fn planned(
        &mut self,
        delivery: i64,
        outcome: Result<Vec<NewDeployment>, String>,
        known: &mut Known,
    ) {
        let (deployments, error) = match outcome {
            Ok(list) => (list, None),
            Err(message) => (Vec::new(), Some(message)),
        };
        let first = self.next_id;
        for dep in &deployments {
            if dep.state == DeploymentState::Queued {
                known.queued(self.next_id, dep);
            }
            self.rows.push((self.next_id, delivery, dep.clone()));
            self.next_id += 1;
        }
        self.statuses.push((delivery, error.clone()));
        self.plans.push(Plan {
            first,
            deployments,
            error,
            rejected: false,
            elsewhere: false,
        });
    }
}

impl Plan {
    /// Logs the plan of one delivery; returns how many deployments it queued.
    fn log(self, d: &FullDelivery) -> usize {
        if self.elsewhere {
            return 0;
        }
        if self.rejected {
            let reason = self.error.as_deref().unwrap_or("");
            tracing::warn!(delivery = d.delivery.id, app = %d.delivery.app, reason, "delivery rejected");
            return 0;
        }
        log_plan(d, self.first, &self.deployments, self.error.as_deref())
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
        // The error may quote payload values: escaped.
        tracing::warn!(delivery = id, app = %d.delivery.app, error = %Escaped(e), "delivery deploys nothing");
    }
    let mut queued = 0;
    for (dep, dep_id) in deployments.iter().zip(first_id..) {
        if dep.state == DeploymentState::Queued {
            queued += 1;
        }
        tracing::info!(deployment = dep_id, delivery = id, app = %dep.app, service = %dep.service, state = dep.state.as_str(), reason = dep.reason.as_deref().unwrap_or(""), commit = dep.git_commit.as_deref().unwrap_or(""), "deployment {}", dep.state);
    }
    if deployments.is_empty() && error.is_none() {
        tracing::info!(delivery = id, app = %d.delivery.app, event = d.delivery.event.as_deref().unwrap_or(""), "delivery planned; it deploys nothing");
    }
    queued
}

/// What the services of a batch hold, read once per batch through its transaction and kept up
/// to date with the plans made in it, so each decision sees the earlier ones.
#[derive(Default)]
struct Known {
    newest: HashMap<(String, String), Option<(i64, i64)>>,
    images: HashMap<(String, String), Vec<HeldImage>>,
    rollback: HashMap<(String, String), Option<Deployment>>,
    /// For reconciles: each service's newest success, and a deployment queued or running
    /// (including those queued earlier in the batch).
    last_success: HashMap<(String, String), Option<Deployment>>,
    active: HashMap<(String, String), Option<(i64, DeploymentState)>>,
}

impl Known {
    async fn load(&mut self, tx: &mut Planning, p: &Parsed<'_>) -> Result<(), StoreError> {
        let app = &p.app.name;
        for (name, svc) in &p.app.services {
            if let Entry::Vacant(slot) = self.newest.entry((app.clone(), name.clone())) {
                slot.insert(tx.newest_event_time(app, name).await?);
            }
            if svc.image.is_some()
                && let Entry::Vacant(slot) = self.images.entry((app.clone(), name.clone()))
            {
                slot.insert(tx.images(app, name).await?);
            }
        }
        if let Event::Rollback { service, to } = &p.event {
            // Not cached: a rollback is rare, and an earlier one in the batch may have changed
            // the answer only once it ran.
            let target = tx.rollback_target(app, service, *to).await?;
            self.rollback.insert((app.clone(), service.clone()), target);
        }
        if let Event::Reconcile { service } = &p.event {
            let key = (app.clone(), service.clone());
            let last = tx.last_success(app, service).await?;
            self.last_success.insert(key.clone(), last);
            if let Entry::Vacant(slot) = self.active.entry(key) {
                slot.insert(tx.active_deployment(app, service).await?);
            }
        }
        Ok(())
    }

    /// Records a deployment just planned as queued.
    fn queued(&mut self, id: i64, dep: &NewDeployment) {
        let key = (dep.app.clone(), dep.service.clone());
        let active = self.active.entry(key.clone()).or_default();
        if active.is_none() {
            *active = Some((id, DeploymentState::Queued));
        }
        if let Some(t) = dep.event_time {
            let slot = self.newest.entry(key.clone()).or_default();
            if slot.is_none_or(|(n, _)| t >= n) {
                *slot = Some((t, id));
            }
        }
        if dep.image.is_some() {
            self.images.entry(key).or_default().push(HeldImage {
                deployment: id,
                tag: dep.image_tag.clone(),
                digest: dep.image_digest.clone(),
                pending: true,
            });
        }
    }

    fn history<'a>(&'a self, app: &'a str) -> AppHistory<'a> {
        AppHistory { known: self, app }
    }
}

/// [`plan::History`] of one app, from [`Known`].
struct AppHistory<'a> {
    known: &'a Known,
    app: &'a str,
}

impl AppHistory<'_> {
    fn key(&self, service: &str) -> (String, String) {
        (self.app.to_string(), service.to_string())
    }
}

impl plan::History for AppHistory<'_> {
    fn newest(&self, service: &str) -> Option<(i64, i64)> {
        self.known.newest.get(&self.key(service)).copied().flatten()
    }

    fn images(&self, service: &str) -> Vec<HeldImage> {
        self.known
            .images
            .get(&self.key(service))
            .cloned()
            .unwrap_or_default()
    }

    fn rollback_target(&self, service: &str, _to: Option<i64>) -> Option<Deployment> {
        self.known
            .rollback
            .get(&self.key(service))
            .cloned()
            .flatten()
    }

    fn last_success(&self, service: &str) -> Option<Deployment> {
        self.known
            .last_success
            .get(&self.key(service))
            .cloned()
            .flatten()
    }

    fn active(&self, service: &str) -> Option<(i64, DeploymentState)> {
        self.known.active.get(&self.key(service)).copied().flatten()
    }
}

/// A stored delivery read back into what planning needs.
struct Parsed<'c> {
    app: &'c App,
    source: Source,
    /// Checked by `sources::values`, its times clamped to the time received.
    event: Event,
    modifiers: Modifiers,
    /// An unverified delivery of an app that configures a scheme: planned as a plain redeploy
    /// (`plan::plan_unverified`); its body is never read.
    unverified: bool,
    /// Why an event time was not trusted, for the delivery's record.
    note: Option<String>,
}

/// Why a stored delivery is not planned.
enum Unplannable {
    /// It cannot be read, or its app is gone: recorded `planned`, with the error.
    Error(String),
    /// A value failed `sources::values`: recorded `rejected`, with the reason.
    Rejected(String),
}

/// How the planner reads a stored delivery, for the delivery inspector (`crate::inspect`):
/// the event it plans — after the value checks and the time clamp; a plain redeploy, its body
/// unread, for an unverified delivery of an app that configures a scheme — with the hook
/// URL's modifiers and whether it was read as unverified; or why it is not planned.
pub(crate) fn read_event(
    config: &Config,
    d: &FullDelivery,
) -> Result<(Event, Modifiers, bool), String> {
    match parse(config, d) {
        Ok(p) => Ok((p.event, p.modifiers, p.unverified)),
        Err(Unplannable::Error(m) | Unplannable::Rejected(m)) => Err(m),
    }
}

/// Reads a stored delivery with its source, checks its values and clamps its times: the one
/// place where a payload becomes an event that planning (and so `FERRY_*`) sees.
fn parse<'c>(config: &'c Config, d: &FullDelivery) -> Result<Parsed<'c>, Unplannable> {
    let del = &d.delivery;
    if let Some(e) = &d.unreadable {
        return Err(Unplannable::Error(format!(
            "its stored body cannot be read ({e})"
        )));
    }
    let Some(app) = config.apps.get(&del.app) else {
        return Err(Unplannable::Error(format!(
            "app {} is no longer configured",
            del.app
        )));
    };
    let Some(source) = Source::from_name(&del.source) else {
        return Err(Unplannable::Error(format!("unknown source {}", del.source)));
    };
    let modifiers = Modifiers::parse(del.query.as_deref().unwrap_or(""));
    if !del.verified && app.verify.configured() {
        if source == Source::Alertmanager {
            // Stored before the app configured a scheme: a plain redeploy is no alert action.
            return Err(Unplannable::Error(
                "unverified Alertmanager delivery of an app that now verifies deliveries: its alerts are not acted on".into(),
            ));
        }
        return Ok(Parsed {
            app,
            source,
            event: Event::Redeploy { time: None },
            modifiers,
            unverified: true,
            note: None,
        });
    }
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
    let mut event = sources::parse(source, &stored).map_err(|e| {
        let message = format!("cannot read {} payload: {e}", source.as_str());
        match e {
            // A payload ferry knows it must not read (another message version): refused.
            sources::ParseError::Unsupported(_) => Unplannable::Rejected(message),
            _ => Unplannable::Error(message),
        }
    })?;
    let rejected = |e: values::ValueError| Unplannable::Rejected(e.to_string());
    values::check_event(&mut event).map_err(rejected)?;
    // Ingress refuses a bad `?git_ref=` already; deliveries stored before it did are caught here.
    if let Some(r) = &modifiers.git_ref {
        values::git_ref_or_commit(r).map_err(rejected)?;
    }
    // Once, here, so the plan and the batch's cache of newest times see the same time.
    let note = values::clamp_future_times(&mut event, del.received_at);
    Ok(Parsed {
        app,
        source,
        event,
        modifiers,
        unverified: false,
        note,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::store::{Claim, Delivery, DeliveryStatus, Inserted, NewDelivery};

    fn manual(event: Option<&str>, body: &str) -> NewDelivery {
        let body = body.to_string().into_bytes().into();
        NewDelivery {
            event: event.map(str::to_string),
            ..NewDelivery::internal("shop", Source::Manual.as_str(), "", body)
        }
    }

    /// A reconcile planned in the same batch as a redeploy of its service, after it, is
    /// skipped for it: what the batch queued counts as in the way, as the store's rows do.
    #[tokio::test]
    async fn a_reconcile_after_a_deployment_queued_in_its_batch_is_skipped() {
        let text = "[apps.shop]\ntoken = \"tok-0123456789abcdef\"\n[apps.shop.services.web]\ncommand = [\"x\"]\nreconcile = \"1m\"\n";
        let config = crate::config::parse(text, Path::new("f.toml"), &|_| None).unwrap();
        for (_dir, store, intake) in Store::engines().await {
            eprintln!("on {}", store.engine());
            let Inserted::New(first) = intake.insert(manual(None, "")).await.unwrap() else {
                panic!("stored");
            };
            plan_pending(&config, &store).await.unwrap();
            let ok = store.deployments_of(first).await.unwrap().remove(0);
            assert!(store.start(&ok, &Claim::TEST).await.unwrap());
            store
                .finish(ok.id, DeploymentState::Succeeded, None, Some(0))
                .await
                .unwrap();
            let redeploy = manual(None, "");
            let reconcile = manual(Some(sources::RECONCILE_EVENT), r#"{"service":"web"}"#);
            let Inserted::New(r1) = intake.insert(redeploy).await.unwrap() else {
                panic!("stored");
            };
            let Inserted::New(r2) = intake.insert(reconcile).await.unwrap() else {
                panic!("stored");
            };
            assert_eq!(plan_pending(&config, &store).await.unwrap(), 1);
            let queued = &store.deployments_of(r1).await.unwrap()[0];
            assert_eq!(queued.state, DeploymentState::Queued);
            let skipped = &store.deployments_of(r2).await.unwrap()[0];
            assert_eq!(skipped.state, DeploymentState::Skipped);
            assert_eq!(skipped.event, "reconcile");
            assert_eq!(
                skipped.reason.as_deref(),
                Some(format!("reconcile: deployment {} is queued", queued.id).as_str())
            );
        }
    }

    /// A delivery whose stored body cannot be decoded (a damaged row) is planned with that
    /// error and deploys nothing, and the planner goes on to the next one instead of failing
    /// its whole batch for good.
    #[tokio::test]
    async fn a_damaged_body_is_planned_with_its_error_and_planning_goes_on() {
        let text = "[apps.shop]\ntoken = \"tok-0123456789abcdef\"\n[apps.shop.services.web]\ncommand = [\"x\"]\n";
        let config = crate::config::parse(text, Path::new("f.toml"), &|_| None).unwrap();
        let body = format!("{{\"pad\":\"{}\"}}", "y".repeat(2000));
        for (_dir, store, intake) in Store::engines().await {
            eprintln!("on {}", store.engine());
            let mut ids = Vec::new();
            for _ in 0..2 {
                let Inserted::New(id) = intake.insert(manual(None, &body)).await.unwrap() else {
                    panic!("stored");
                };
                ids.push(id);
            }
            store.damage_body(ids[0]).await;
            let damaged = store.delivery(ids[0]).await.unwrap().expect("stored");
            assert!(damaged.body.is_empty());
            assert_eq!(damaged.unreadable.as_deref(), Some("unknown codec \"zip\""));
            assert_eq!(plan_pending(&config, &store).await.unwrap(), 1);
            assert!(store.deployments_of(ids[0]).await.unwrap().is_empty());
            let planned = store
                .delivery(ids[0])
                .await
                .unwrap()
                .expect("stored")
                .delivery;
            assert_eq!(planned.status, DeliveryStatus::Planned);
            assert!(
                planned
                    .error
                    .as_deref()
                    .is_some_and(|e| e.contains("its stored body cannot be read")),
                "{planned:?}"
            );
            let next = store.deployments_of(ids[1]).await.unwrap();
            assert_eq!(next.len(), 1, "{next:?}");
            let ok = store.delivery(ids[1]).await.unwrap().expect("stored");
            assert_eq!(ok.body, body.as_bytes());
        }
    }

    fn config(verify: &str) -> Config {
        let text = format!(
            "[apps.ops]\ntoken = \"tok-0123456789abcdef\"\n{verify}\n[apps.ops.services.web]\ncommand = [\"x\"]\n[[apps.ops.alerts]]\nname = \"r\"\nredeploy = \"web\"\n"
        );
        crate::config::parse(&text, std::path::Path::new("f.toml"), &|_| None).unwrap()
    }

    fn delivery(verified: bool, body: &str) -> FullDelivery {
        FullDelivery {
            delivery: Delivery {
                id: 1,
                app: "ops".into(),
                source: "alertmanager".into(),
                event: None,
                source_delivery_id: None,
                received_at: 1,
                verified,
                scheme: None,
                status: DeliveryStatus::Received,
                error: None,
                query: None,
                replay_of: None,
                note: None,
                duplicates: 0,
                duplicate_at: None,
                planned_at: None,
                refused_with: None,
            },
            headers: "{}".into(),
            body: body.as_bytes().to_vec(),
            body_size: None,
            unreadable: None,
        }
    }

    const FIRING: &str = r#"{"version":"4","status":"firing","alerts":[{"labels":{"alertname":"A"},"startsAt":"2026-12-04T17:00:00Z","fingerprint":"AB01"}]}"#;

    /// An Alertmanager delivery is read as its alerts (values checked: the fingerprint
    /// lower-cased) — unless it is unverified on an app that now verifies deliveries: then it
    /// is not acted on at all (a plain redeploy, as for other senders, is no alert action).
    #[test]
    fn alert_deliveries_are_read_as_alerts_and_never_as_a_redeploy() {
        let verifies = config("[apps.ops.verify]\nbearer = \"am-secret\"");
        let (event, _, unverified) = read_event(&verifies, &delivery(true, FIRING)).unwrap();
        let Event::Alerts(alerts) = event else {
            panic!("{event:?}");
        };
        assert_eq!(
            (alerts[0].fingerprint.as_str(), unverified),
            ("ab01", false)
        );
        let e = read_event(&verifies, &delivery(false, FIRING)).unwrap_err();
        assert!(e.contains("not acted on"), "{e}");
        // An app with no scheme takes it on its URL token alone, like any sender.
        let open = config("");
        assert!(matches!(
            read_event(&open, &delivery(false, FIRING)),
            Ok((Event::Alerts(_), _, false))
        ));
        // Another message version is refused with the reason.
        let v5 = FIRING.replace("\"4\"", "\"5\"");
        let e = read_event(&verifies, &delivery(true, &v5)).unwrap_err();
        assert!(e.contains("version \"5\""), "{e}");
    }
}
