//! The notify worker: one background task that turns the `events` journal into sent
//! notifications. It never holds anything others wait for: intake, planning and the lanes
//! write their state changes (and so, by the store's triggers, their events) and go on.
//!
//! Each pass it (1) fans out the events not fanned out yet, oldest first, in batches: the
//! notifications every target wants, recorded with the events marked fanned out in one
//! transaction (a crash in between redoes the batch; stable uids make that harmless); (2)
//! reads each target's oldest pending notification and starts a try of each one that is due,
//! at most [`CONCURRENCY`] at once and one per target, so a later notification never
//! overtakes an earlier one of its target, and a slow or hanging receiver (each try ends
//! within `target::TIMEOUT`) holds only its own queue. Each try's outcome is recorded
//! (`retry` decides when the next one is). Then it sleeps until a try ends or [`POLL`]
//! passes. Hourly it prunes old events and finished notifications.
//!
//! At shutdown it stops at once: tries in flight are dropped, so what is pending stays in the
//! table and is sent after the next start (at least once, under the same `webhook-id`).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::retry;
use super::target::{self, Context, Kind, Outcome, Subject};
use crate::logging::Escaped;
use crate::states::EventType;
use crate::store::{Attempt, JournalEvent, NewNotification, Notification, StoreError, now_ms};

/// Events fanned out per transaction.
const FAN_OUT_BATCH: i64 = 256;
/// Events marked fanned out per transaction when no target is configured.
/// As many as a fan-out reads: a mark holds the write gate, which hook deliveries wait for
/// (with 4,096 at once the p99 of hook answers was worse in each of three A/B pairs).
const MARK_BATCH: i64 = FAN_OUT_BATCH;
/// Tries in flight at most (each to another target).
pub(crate) const CONCURRENCY: usize = 16;
/// How often the worker looks for new events and due notifications when nothing woke it.
const POLL: Duration = Duration::from_millis(250);
/// How long it waits after the store failed.
const PAUSE_AFTER_ERROR: Duration = Duration::from_secs(2);
/// At most this many `delivery.rejected` notifications wait per target: a flood of refused
/// requests (with a valid hook token) cannot queue an unbounded backlog for a receiver
/// that is down. Beyond it they are not queued (with a warning).
const REJECTED_PER_TARGET: i64 = 1000;
/// How long fanned-out events, sent and dead notifications are kept.
const EVENTS_KEEP: Duration = Duration::from_secs(86400);
const SENT_KEEP: Duration = Duration::from_secs(7 * 86400);
const DEAD_KEEP: Duration = Duration::from_secs(30 * 86400);
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// Runs until `stop`.
pub(crate) async fn run(ctx: Arc<Context>, stop: CancellationToken) {
    let mut tries: JoinSet<()> = JoinSet::new();
    let mut busy: HashMap<tokio::task::Id, String> = HashMap::new();
    let mut next_prune = tokio::time::Instant::now();
    loop {
        let mut wait = POLL;
        if let Err(e) = fan_out_all(&ctx).await {
            tracing::error!(error = %e, "cannot fan out events to notifications; retrying");
            wait = PAUSE_AFTER_ERROR;
        }
        if let Err(e) = start_due(&ctx, &mut tries, &mut busy).await {
            tracing::error!(error = %e, "cannot read pending notifications; retrying");
            wait = PAUSE_AFTER_ERROR;
        }
        if tokio::time::Instant::now() >= next_prune {
            prune(&ctx).await;
            next_prune += PRUNE_EVERY;
        }
        tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            Some(done) = tries.join_next_with_id(), if !tries.is_empty() => {
                let id = match &done { Ok((id, ())) => *id, Err(e) => e.id() };
                busy.remove(&id);
                if let Err(e) = done {
                    tracing::error!(error = %e, "notification task failed; it is tried again");
                }
            }
            _ = tokio::time::sleep(wait) => {}
        }
    }
    // Dropping the set aborts the tries in flight: they stay pending.
    drop(tries);
}

/// Fans out every event waiting, a batch per transaction.
async fn fan_out_all(ctx: &Context) -> Result<(), StoreError> {
    if !ctx.any_target {
        // Nothing could want them: mark them done without reading them back (two events
        // per delivery under a burst, each a row through sqlx's channel only to be marked).
        return ctx.store.fan_out_to_nobody(MARK_BATCH).await;
    }
    loop {
        let events = ctx.store.unfanned_events(FAN_OUT_BATCH).await?;
        if events.is_empty() {
            return Ok(());
        }
        fan_out_batch(ctx, &events).await?;
        if (events.len() as i64) < FAN_OUT_BATCH {
            return Ok(());
        }
    }
}

/// One batch: what each event is about, what each target wants of it, recorded at once.
async fn fan_out_batch(ctx: &Context, events: &[JournalEvent]) -> Result<(), StoreError> {
    let ids: Vec<i64> = events.iter().map(|e| e.id).collect();
    let mut deployment_ids: Vec<i64> = events.iter().filter_map(|e| e.deployment_id).collect();
    deployment_ids.dedup();
    let delivery_ids: Vec<i64> = events
        .iter()
        .filter(|e| e.deployment_id.is_none())
        .filter_map(|e| e.delivery_id)
        .collect();
    let deployments = ctx.store.deployments_by_id(&deployment_ids).await?;
    let deliveries = ctx.store.deliveries_by_id(&delivery_ids).await?;
    let mut out = Vec::new();
    for e in events {
        let subject = Subject {
            event: e,
            deployment: e.deployment_id.and_then(|id| deployments.get(&id)),
            delivery: e.delivery_id.and_then(|id| deliveries.get(&id)),
        };
        out.extend(target::fan_out(ctx, &subject).await?);
    }
    cap_refused(ctx, &mut out).await?;
    ctx.store.fan_out(&out, &ids, now_ms()).await
}

/// Leaves out `delivery.rejected` notifications for targets that already have
/// [`REJECTED_PER_TARGET`] notifications waiting.
async fn cap_refused(ctx: &Context, out: &mut Vec<NewNotification>) -> Result<(), StoreError> {
    if !out.iter().any(|n| n.event == EventType::DeliveryRejected) {
        return Ok(());
    }
    let mut waiting = ctx.store.pending_per_target().await?;
    let before = out.len();
    out.retain(|n| {
        let count = waiting.entry(n.target.clone()).or_default();
        if n.event == EventType::DeliveryRejected && *count >= REJECTED_PER_TARGET {
            return false;
        }
        *count += 1;
        true
    });
    let dropped = before - out.len();
    if dropped > 0 {
        tracing::warn!(
            dropped,
            waiting = REJECTED_PER_TARGET,
            "delivery.rejected notifications not queued: their receivers have too many waiting"
        );
    }
    Ok(())
}

/// Starts a try of each target's oldest pending notification that is due, unless a try of
/// that target is in flight, up to [`CONCURRENCY`] tries.
async fn start_due(
    ctx: &Arc<Context>,
    tries: &mut JoinSet<()>,
    busy: &mut HashMap<tokio::task::Id, String>,
) -> Result<(), StoreError> {
    let heads = ctx.store.queue_heads().await?;
    let now = now_ms();
    let in_flight: HashSet<String> = busy.values().cloned().collect();
    for n in heads {
        if busy.len() >= CONCURRENCY {
            break;
        }
        if n.next_at > now || in_flight.contains(&n.target) {
            continue;
        }
        let target = n.target.clone();
        let ctx = ctx.clone();
        let handle = tries.spawn(async move { try_once(&ctx, n).await });
        busy.insert(handle.id(), target);
    }
    Ok(())
}

/// One try of `n`, and its outcome recorded.
async fn try_once(ctx: &Context, n: Notification) {
    let outcome = target::send(ctx, &n).await;
    let now = now_ms();
    let attempt = retry::attempt(&n, outcome.clone(), now, ctx.retry_for);
    log_attempt(&n, &outcome, &attempt, now);
    if let Err(e) = ctx.store.record_attempt(n.id, &attempt, now).await {
        tracing::error!(notification = n.id, error = %e, "cannot record a notification's try; it is tried again");
    }
}

/// One log line per try. Receivers and errors are escaped: a URL (and what a receiver
/// answers) may come from a payload. URLs themselves are never logged.
fn log_attempt(n: &Notification, outcome: &Outcome, attempt: &Attempt, now: i64) {
    let label = Kind::parse(&n.kind).map_or("notification", Kind::label);
    let receiver = Escaped(&n.receiver);
    let (id, event, attempts) = (n.id, n.event.as_str(), n.attempts + 1);
    match (attempt, outcome) {
        (Attempt::Sent { status }, _) => {
            tracing::info!(notification = id, event, %receiver, attempts, status, "{label} sent")
        }
        (
            Attempt::Created {
                status,
                github_deployment,
            },
            _,
        ) => {
            tracing::info!(notification = id, event, %receiver, attempts, status, github_deployment, "{label} sent: GitHub deployment created")
        }
        (
            Attempt::Retry {
                next_at,
                error,
                status,
            },
            _,
        ) => {
            let retry_in = Duration::from_millis(u64::try_from(next_at - now).unwrap_or(0));
            let retry_in = humantime::format_duration(Duration::from_secs(retry_in.as_secs()));
            tracing::warn!(notification = id, event, %receiver, attempts, status, error = %Escaped(error), %retry_in, "{label} failed; will retry")
        }
        (Attempt::Dead { error, status }, Outcome::Permanent { .. }) => {
            tracing::warn!(notification = id, event, %receiver, attempts, status, error = %Escaped(error), "{label} refused; not tried again")
        }
        (Attempt::Dead { error, status }, _) => {
            tracing::warn!(notification = id, event, %receiver, attempts, status, error = %Escaped(error), "{label} failed; giving up")
        }
    }
}

/// Deletes old fanned-out events and old sent and dead notifications.
async fn prune(ctx: &Context) {
    let now = now_ms();
    let ago = |d: Duration| now.saturating_sub(i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    match ctx
        .store
        .prune_outbox(ago(EVENTS_KEEP), ago(SENT_KEEP), ago(DEAD_KEEP))
        .await
    {
        Ok((0, 0)) => {}
        Ok((events, notifications)) => {
            tracing::info!(events, notifications, "pruned old events and notifications")
        }
        Err(e) => tracing::warn!(error = %e, "cannot prune old events and notifications"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{NotifyFormat, NotifyTarget};
    use crate::secret::Secret;
    use crate::states::{DeliveryStatus, DeploymentState, NotificationState};
    use crate::store::{Intake, NewDelivery, NewDeployment, NotificationFilter, Store};
    use serde_json::Value;

    const CONFIG: &str = r#"
[server]
public_url = "https://ferry.example"
[apps.shop]
token = "shop-token-123456"
dockerhub_callback = "http://127.0.0.1:9/u/"
[apps.shop.services.web]
command = ["x"]
[apps.shop.services.api]
command = ["x"]
[apps.blog]
token = "blog-token-123456"
[apps.blog.services.site]
command = ["x"]
"#;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn targets(url: &str) -> Vec<NotifyTarget> {
        vec![
            NotifyTarget::new(
                Secret::new(url),
                Some(Secret::new(SECRET)),
                NotifyFormat::Standard,
                None,
                None,
            ),
            NotifyTarget::new(
                Secret::new(format!("{url}/slack")),
                None,
                NotifyFormat::Slack,
                Some(["shop".to_string()].into()),
                Some([EventType::DeploymentFailed].into()),
            ),
        ]
    }

    async fn setup(url: &str) -> (tempfile::TempDir, Arc<Context>, Intake) {
        let dir = tempfile::tempdir().unwrap();
        let (store, intake) = Store::open(dir.path()).await.unwrap();
        let config =
            crate::config::parse(CONFIG, std::path::Path::new("/f.toml"), &|_| None).unwrap();
        let mut ctx = Context::new(Arc::new(config), store).unwrap();
        ctx.targets = targets(url);
        (dir, Arc::new(ctx), intake)
    }

    async fn deliver(
        intake: &Intake,
        app: &str,
        source: &str,
        status: DeliveryStatus,
        body: &str,
    ) -> i64 {
        let d = NewDelivery {
            app: app.into(),
            source: source.into(),
            event: Some("push".into()),
            source_delivery_id: None,
            dedupe_key: None,
            received_at: now_ms(),
            verified: true,
            scheme: None,
            status,
            error: (status == DeliveryStatus::Rejected).then(|| "bad signature".into()),
            query: None,
            headers: "{}".into(),
            body: bytes::Bytes::from(body.to_string()),
            replay_of: None,
            refused_with: None,
        };
        match intake.insert(d).await.unwrap() {
            crate::store::Inserted::New(id) => id,
            other => panic!("{other:?}"),
        }
    }

    async fn plan(
        store: &Store,
        delivery: i64,
        plans: &[(&str, &str, DeploymentState, &str)],
    ) -> Vec<i64> {
        let mut p = store.begin_planning().await.unwrap();
        let mut next = p.next_deployment_id().await.unwrap();
        let mut rows = Vec::new();
        for (app, service, state, source) in plans {
            rows.push((
                next,
                delivery,
                NewDeployment {
                    app: app.to_string(),
                    service: service.to_string(),
                    state: *state,
                    reason: (*state == DeploymentState::Skipped).then(|| "not selected".into()),
                    source: source.to_string(),
                    event: "push".into(),
                    git_commit: Some("6113728f27ae82c7b1a177c8d03f9e96e0adf246".into()),
                    ..Default::default()
                },
            ));
            next += 1;
        }
        p.record(&rows, &[(delivery, None)]).await.unwrap();
        p.commit().await.unwrap();
        rows.iter().map(|r| r.0).collect()
    }

    async fn all(store: &Store) -> Vec<Notification> {
        let f = NotificationFilter {
            limit: 10_000,
            ..Default::default()
        };
        let mut list = store.notifications(&f).await.unwrap();
        list.reverse();
        list
    }

    /// With no target configured the fan-out marks events done without reading what they
    /// are about, and queues nothing; one configured kind is enough to read them.
    #[tokio::test]
    async fn without_targets_events_are_marked_done() {
        let dir = tempfile::tempdir().unwrap();
        let (store, intake) = Store::open(dir.path()).await.unwrap();
        let bare = CONFIG.replace("dockerhub_callback = \"http://127.0.0.1:9/u/\"\n", "");
        let config =
            crate::config::parse(&bare, std::path::Path::new("/f.toml"), &|_| None).unwrap();
        let ctx = Context::new(Arc::new(config), store.clone()).unwrap();
        assert!(!ctx.any_target);
        let d = deliver(&intake, "shop", "github", DeliveryStatus::Received, "{}").await;
        plan(
            &store,
            d,
            &[("shop", "web", DeploymentState::Queued, "github")],
        )
        .await;
        assert_eq!(store.unfanned_events(10).await.unwrap().len(), 1);
        fan_out_all(&ctx).await.unwrap();
        assert!(store.unfanned_events(10).await.unwrap().is_empty());
        assert!(all(&store).await.is_empty());
        let (_dir, with_callback, _intake) = setup("http://127.0.0.1:9/hook").await;
        assert!(with_callback.any_target);
    }

    /// Each `[[notify]]` entry gets the events its `apps` and `events` select, in the order
    /// they happened (`deployment.skipped` only when asked for); a fan-out done twice adds
    /// nothing.
    #[tokio::test]
    async fn fan_out_follows_each_entrys_filters_in_order() {
        let (_dir, ctx, intake) = setup("http://127.0.0.1:9/hook").await;
        let store = &ctx.store;
        let d = deliver(&intake, "shop", "github", DeliveryStatus::Received, "{}").await;
        let ids = plan(
            store,
            d,
            &[
                ("shop", "web", DeploymentState::Queued, "github"),
                ("shop", "api", DeploymentState::Skipped, "github"),
                ("blog", "site", DeploymentState::Queued, "github"),
            ],
        )
        .await;
        let web = store.deployment(ids[0]).await.unwrap().unwrap();
        assert!(store.start(&web, &crate::store::Claim::TEST).await.unwrap());
        store
            .finish(
                web.id,
                DeploymentState::Failed,
                Some("command exited with status 1 & <more>"),
                Some(1),
            )
            .await
            .unwrap();
        deliver(&intake, "blog", "github", DeliveryStatus::Rejected, "{}").await;
        fan_out_all(&ctx).await.unwrap();
        fan_out_all(&ctx).await.unwrap();

        let list = all(store).await;
        let standard = &ctx.targets[0].target;
        let seen: Vec<(&str, &str)> = list
            .iter()
            .filter(|n| &n.target == standard)
            .map(|n| (n.event.as_str(), n.app.as_str()))
            .collect();
        assert_eq!(
            seen,
            [
                ("deployment.queued", "shop"),
                ("deployment.queued", "blog"),
                ("deployment.started", "shop"),
                ("deployment.failed", "shop"),
                ("delivery.rejected", "blog"),
            ]
        );
        let slack: Vec<_> = list.iter().filter(|n| n.kind == "slack").collect();
        assert_eq!(slack.len(), 1);
        assert_eq!(slack[0].event, EventType::DeploymentFailed);
        let text: Value = serde_json::from_str(&slack[0].body).unwrap();
        assert_eq!(
            text["text"],
            format!(
                "shop/web: <https://ferry.example/api/v1/deployments/{}|deployment {}> failed (6113728f27ae82c7b1a177c8d03f9e96e0adf246): command exited with status 1 &amp; &lt;more&gt;",
                web.id, web.id
            )
        );
        assert!(
            list.iter()
                .all(|n| n.state == NotificationState::Pending && n.url.is_none())
        );
        assert!(list.iter().all(|n| n.receiver == "http://127.0.0.1:9"));

        let queued: Value = serde_json::from_str(&list[0].body).unwrap();
        assert_eq!(queued["type"], "deployment.queued");
        assert_eq!(
            queued["data"]["state"], "queued",
            "as it was then, not as it is now"
        );
        assert_eq!(queued["data"]["started_at"], Value::Null);
        assert_eq!(queued["data"]["finished_at"], Value::Null);
        assert_eq!(
            queued["data"]["url"],
            format!("https://ferry.example/api/v1/deployments/{}", web.id)
        );
        let failed: Value = serde_json::from_str(&list[3].body).unwrap();
        assert_eq!(failed["data"]["state"], "failed");
        assert_eq!(failed["data"]["exit_code"], 1);
        assert_eq!(
            failed["data"]["version"],
            "6113728f27ae82c7b1a177c8d03f9e96e0adf246"
        );
        assert!(failed["timestamp"].as_str().unwrap().ends_with('Z'));
        let rejected: Value = serde_json::from_str(&list.last().unwrap().body).unwrap();
        assert_eq!(rejected["type"], "delivery.rejected");
        assert_eq!(rejected["data"]["error"], "bad signature");
        assert_eq!(rejected["data"]["source"], "github");
    }

    /// Docker Hub's callback: for a Docker Hub push's deployment that ran and ended, to the
    /// payload's URL only under the app's prefix; one queue per app.
    #[tokio::test]
    async fn docker_hub_callbacks_only_under_the_prefix() {
        let (_dir, ctx, intake) = setup("http://127.0.0.1:9/hook").await;
        let store = &ctx.store;
        let inside = r#"{"callback_url": "http://127.0.0.1:9/u/acme/web/hook/1/"}"#;
        let outside = r#"{"callback_url": "https://registry.hub.docker.com/u/acme/web/hook/2/"}"#;
        let mut ended = Vec::new();
        for body in [inside, outside] {
            let d = deliver(&intake, "shop", "dockerhub", DeliveryStatus::Received, body).await;
            let ids = plan(
                store,
                d,
                &[("shop", "web", DeploymentState::Queued, "dockerhub")],
            )
            .await;
            let dep = store.deployment(ids[0]).await.unwrap().unwrap();
            store.start(&dep, &crate::store::Claim::TEST).await.unwrap();
            store
                .finish(dep.id, DeploymentState::Succeeded, None, Some(0))
                .await
                .unwrap();
            ended.push(dep.id);
        }
        fan_out_all(&ctx).await.unwrap();
        let hub: Vec<_> = all(store)
            .await
            .into_iter()
            .filter(|n| n.kind == "dockerhub")
            .collect();
        assert_eq!(
            hub.len(),
            1,
            "one callback: the other URL is outside the prefix"
        );
        assert_eq!(hub[0].target, "dockerhub:shop");
        assert_eq!(hub[0].deployment_id, Some(ended[0]));
        assert_eq!(
            hub[0].url.as_deref(),
            Some("http://127.0.0.1:9/u/acme/web/hook/1/")
        );
        let body: Value = serde_json::from_str(&hub[0].body).unwrap();
        assert_eq!(body["state"], "success");
        assert_eq!(body["context"], "ferry");
        assert_eq!(
            body["target_url"],
            format!("https://ferry.example/api/v1/deployments/{}", ended[0])
        );
    }

    /// More than [`REJECTED_PER_TARGET`] refused deliveries waiting for a receiver: the rest
    /// are not queued; deployment events still are.
    #[tokio::test]
    async fn refused_deliveries_queue_a_bounded_backlog() {
        let (_dir, ctx, intake) = setup("http://127.0.0.1:9/hook").await;
        for _ in 0..REJECTED_PER_TARGET + 5 {
            deliver(&intake, "blog", "github", DeliveryStatus::Rejected, "{}").await;
        }
        let d = deliver(&intake, "blog", "github", DeliveryStatus::Received, "{}").await;
        plan(
            &ctx.store,
            d,
            &[("blog", "site", DeploymentState::Queued, "github")],
        )
        .await;
        fan_out_all(&ctx).await.unwrap();
        let list = all(&ctx.store).await;
        let refused = list
            .iter()
            .filter(|n| n.event == EventType::DeliveryRejected)
            .count();
        assert_eq!(refused as i64, REJECTED_PER_TARGET);
        assert_eq!(list.last().unwrap().event, EventType::DeploymentQueued);
        assert!(ctx.store.unfanned_events(10).await.unwrap().is_empty());
    }

    /// A receiver on a local port: records each request's headers and body, and answers
    /// with the next of `answers` (then 200).
    async fn receiver(
        answers: Vec<(u16, Option<&'static str>)>,
    ) -> (
        String,
        Arc<std::sync::Mutex<Vec<(http::HeaderMap, String)>>>,
    ) {
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let script = Arc::new(std::sync::Mutex::new(std::collections::VecDeque::from(
            answers,
        )));
        let log = seen.clone();
        let app = axum::Router::new().fallback(move |headers: http::HeaderMap, body: String| {
            let log = log.clone();
            let script = script.clone();
            async move {
                log.lock().unwrap().push((headers, body));
                let (status, retry_after) =
                    script.lock().unwrap().pop_front().unwrap_or((200, None));
                let mut r = axum::response::Response::new(axum::body::Body::empty());
                *r.status_mut() = http::StatusCode::from_u16(status).unwrap();
                if let Some(after) = retry_after {
                    r.headers_mut()
                        .insert(http::header::RETRY_AFTER, after.parse().unwrap());
                }
                r
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, seen)
    }

    /// The worker sends a target's notifications in order, each signed as Standard Webhooks;
    /// a 503 with `Retry-After` is tried again after it under the same `webhook-id` (signed
    /// afresh), and the one behind it waits its turn.
    #[tokio::test]
    async fn the_worker_sends_in_order_and_retries_as_asked() {
        let (url, seen) = receiver(vec![(503, Some("1"))]).await;
        let (_dir, ctx, intake) = setup(&url).await;
        let d = deliver(&intake, "blog", "github", DeliveryStatus::Received, "{}").await;
        let ids = plan(
            &ctx.store,
            d,
            &[("blog", "site", DeploymentState::Queued, "github")],
        )
        .await;
        let site = ctx.store.deployment(ids[0]).await.unwrap().unwrap();
        ctx.store
            .start(&site, &crate::store::Claim::TEST)
            .await
            .unwrap();
        let stop = CancellationToken::new();
        let worker = tokio::spawn(run(ctx.clone(), stop.clone()));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while seen.lock().unwrap().len() < 3 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{:?}",
                seen.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // The receiver has answered the third try; its outcome is recorded just after.
        while all(&ctx.store)
            .await
            .iter()
            .any(|n| n.state != NotificationState::Sent)
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "not all recorded sent"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        stop.cancel();
        worker.await.unwrap();
        let seen = seen.lock().unwrap().clone();
        let header = |i: usize, name: &str| seen[i].0[name].to_str().unwrap().to_string();
        let types: Vec<String> = seen
            .iter()
            .map(|(_, body)| {
                serde_json::from_str::<Value>(body).unwrap()["type"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(
            types,
            [
                "deployment.queued",
                "deployment.queued",
                "deployment.started"
            ]
        );
        assert_eq!(
            header(0, "webhook-id"),
            header(1, "webhook-id"),
            "same id on a retry"
        );
        assert_ne!(header(1, "webhook-id"), header(2, "webhook-id"));
        let secrets = [Secret::new(SECRET)];
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        for (headers, body) in &seen {
            crate::sources::standard::verify(
                &secrets,
                headers,
                body.as_bytes(),
                now,
                Duration::from_secs(300),
            )
            .unwrap();
            assert_eq!(headers[http::header::CONTENT_TYPE], "application/json");
        }
        let list = all(&ctx.store).await;
        let attempts: Vec<_> = list
            .iter()
            .map(|n| (n.state, n.attempts, n.last_status))
            .collect();
        assert_eq!(
            attempts,
            [
                (NotificationState::Sent, 2, Some(200)),
                (NotificationState::Sent, 1, Some(200)),
            ]
        );
    }
}
