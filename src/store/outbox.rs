//! The outbox: the `events` journal and the `notifications` queue (migration 0008).
//!
//! Events are written inside the transaction of the state change that causes them: by SQLite
//! triggers (every deployment state change, a delivery the planner refuses) and, for
//! deliveries refused on the request path, by the intake writer ([`journal_refused`]). The notify worker reads the events not yet fanned out ([`Store::unfanned_events`]),
//! decides which notifications each target wants, and records them with the events marked
//! fanned out in one transaction ([`Store::fan_out`]); a crash in between redoes the fan-out.
//! It then sends each target's oldest pending notification ([`Store::queue_heads`]) and
//! records each try ([`Store::record_attempt`]). The API lists them and retries dead ones.

use std::collections::HashMap;
use std::time::Duration;

use serde::Serialize;

use super::db::{with_db, with_tx};
use super::{Delivery, Deployment, Store, StoreError};
use crate::states::{EventType, NotificationState};

/// How long the fan-out lets hook deliveries waiting for a commit go first.
const FAN_OUT_PATIENCE: Duration = Duration::from_millis(50);

/// One entry of the `events` journal.
#[derive(Debug, Clone, sqlx::FromRow, PartialEq, Eq)]
pub(crate) struct JournalEvent {
    pub(crate) id: i64,
    /// When it happened (unix ms).
    pub(crate) at: i64,
    #[sqlx(rename = "type")]
    pub(crate) event: EventType,
    pub(crate) app: String,
    pub(crate) service: Option<String>,
    pub(crate) deployment_id: Option<i64>,
    pub(crate) delivery_id: Option<i64>,
    /// The deployment's reason (or the refused delivery's error) when it happened.
    pub(crate) reason: Option<String>,
    /// Container events: what it says of the container (JSON of `ContainerDetail`,
    /// migration 0010; read with [`JournalEvent::container`]).
    pub(crate) detail: Option<String>,
}

/// A notification the fan-out decided on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NewNotification {
    /// Stable across retries and fan-outs redone after a crash (`webhook-id`).
    pub(crate) uid: String,
    pub(crate) event_id: i64,
    /// The receiver's queue: notifications of one target are sent one at a time, in order.
    pub(crate) target: String,
    /// How it is sent (see `crate::notify::Kind`).
    pub(crate) kind: String,
    pub(crate) event: EventType,
    pub(crate) app: String,
    pub(crate) service: Option<String>,
    pub(crate) deployment_id: Option<i64>,
    pub(crate) delivery_id: Option<i64>,
    /// `scheme://host[:port]` of where it goes, for people (never a secret).
    pub(crate) receiver: String,
    /// The URL, only when it is neither a secret nor in the config (Docker Hub's callback).
    pub(crate) url: Option<String>,
    /// The rendered body.
    pub(crate) body: String,
}

/// A notification as stored.
#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub(crate) struct Notification {
    pub(crate) id: i64,
    pub(crate) uid: String,
    pub(crate) event_id: i64,
    pub(crate) target: String,
    pub(crate) kind: String,
    pub(crate) event: EventType,
    pub(crate) app: String,
    pub(crate) service: Option<String>,
    pub(crate) deployment_id: Option<i64>,
    pub(crate) delivery_id: Option<i64>,
    pub(crate) receiver: String,
    #[serde(skip)]
    pub(crate) url: Option<String>,
    #[serde(skip)]
    pub(crate) body: String,
    pub(crate) state: NotificationState,
    pub(crate) attempts: i64,
    pub(crate) next_at: i64,
    pub(crate) created_at: i64,
    pub(crate) retried_at: Option<i64>,
    pub(crate) sent_at: Option<i64>,
    pub(crate) last_error: Option<String>,
    pub(crate) last_status: Option<i64>,
}

impl Notification {
    /// Since when it is being tried: its creation, or its last manual retry.
    pub(crate) fn trying_since(&self) -> i64 {
        self.retried_at.unwrap_or(self.created_at)
    }
}

/// How one try went, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Attempt {
    Sent {
        status: Option<u16>,
    },
    /// Sent, and it created a GitHub deployment: its id is stored for the notification's
    /// deployment in the same transaction (`store::github`).
    Created {
        status: Option<u16>,
        github_deployment: i64,
    },
    /// Failed; tried again at `next_at` (unix ms).
    Retry {
        next_at: i64,
        status: Option<u16>,
        error: String,
    },
    /// Failed for good (refused, or out of time): its target's queue moves on.
    Dead {
        status: Option<u16>,
        error: String,
    },
}

/// What [`Store::retry_notification`] did.
#[derive(Debug, Clone)]
pub(crate) enum RetryOutcome {
    /// It was sent or dead: pending again, due now, its attempts reset.
    Requeued(Box<Notification>),
    /// It is pending already: unchanged.
    AlreadyPending,
}

/// Filters and paging of the notification list: newest first, `before` an id.
#[derive(Debug, Clone, Default)]
pub(crate) struct NotificationFilter {
    pub(crate) state: Option<NotificationState>,
    pub(crate) app: Option<String>,
    pub(crate) before: Option<i64>,
    pub(crate) limit: i64,
}

const NOTIFICATION_COLUMNS: &str = "id, uid, event_id, target, kind, event, app, service, deployment_id, delivery_id, receiver, url, body, state, attempts, next_at, created_at, retried_at, sent_at, last_error, last_status";

/// Journals `delivery.rejected` for deliveries the intake writer has just stored refused, in
/// its transaction. (Not a trigger: any row trigger on `deliveries` makes SQLite stage each
/// multi-row INSERT in a temporary table, which every accepted delivery would pay for.) Each
/// id in turn, in the order stored, through the writer's own connection (`batch.rs`).
pub(super) fn journal_refused(tx: &rusqlite::Connection, ids: &[i64]) -> Result<(), StoreError> {
    let mut stmt = tx.prepare_cached(
        "INSERT INTO events (at, type, app, delivery_id, reason)
         SELECT ?1, ?2, app, id, error FROM deliveries WHERE id = ?3",
    )?;
    let at = super::now_ms();
    for id in ids {
        stmt.execute(rusqlite::params![
            at,
            EventType::DeliveryRejected.as_str(),
            id
        ])?;
    }
    Ok(())
}

impl Store {
    /// The oldest events not fanned out yet, in the order they happened.
    pub(crate) async fn unfanned_events(
        &self,
        limit: i64,
    ) -> Result<Vec<JournalEvent>, StoreError> {
        Ok(
            with_db!(&self.db, pool, q => sqlx::query_as::<_, JournalEvent>(
            q("SELECT id, at, type, app, service, deployment_id, delivery_id, reason, detail
             FROM events INDEXED BY events_unfanned WHERE fanned_out = 0 ORDER BY id LIMIT ?1"),
        )
        .bind(limit)
        .fetch_all(pool)
        .await)?,
        )
    }

    /// The deployments of these ids that still exist (retention may have pruned some).
    pub(crate) async fn deployments_by_id(
        &self,
        ids: &[i64],
    ) -> Result<HashMap<i64, Deployment>, StoreError> {
        let mut out = HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(512) {
            let rows = with_db!(&self.db, pool, q => {
                let mut q = sqlx::QueryBuilder::new(format!(
                    "SELECT {} FROM deployments WHERE id IN (",
                    super::deployments::DEPLOYMENT_COLUMNS
                ));
                let mut list = q.separated(", ");
                for id in chunk {
                    list.push_bind(*id);
                }
                q.push(")");
                q.build_query_as::<Deployment>().fetch_all(pool).await?
            });
            out.extend(rows.into_iter().map(|d| (d.id, d)));
        }
        Ok(out)
    }

    /// The deliveries of these ids that still exist (without their bodies).
    pub(crate) async fn deliveries_by_id(
        &self,
        ids: &[i64],
    ) -> Result<HashMap<i64, Delivery>, StoreError> {
        let mut out = HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(512) {
            let rows = with_db!(&self.db, pool, q => {
                let mut q = sqlx::QueryBuilder::new(
                    "SELECT id, app, source, event, source_delivery_id, received_at, verified, scheme, status, error, query, replay_of, note, duplicates, duplicate_at, planned_at, refused_with FROM deliveries WHERE id IN (",
                );
                let mut list = q.separated(", ");
                for id in chunk {
                    list.push_bind(*id);
                }
                q.push(")");
                q.build_query_as::<Delivery>().fetch_all(pool).await?
            });
            out.extend(rows.into_iter().map(|d| (d.id, d)));
        }
        Ok(out)
    }

    /// Records the notifications decided for `events` and marks those events fanned out, in
    /// one transaction. A notification whose `uid` is stored already is left as it is.
    pub(crate) async fn fan_out(
        &self,
        notifications: &[NewNotification],
        events: &[i64],
        now: i64,
    ) -> Result<(), StoreError> {
        // Hook answers wait on intake commits: let those go first, for a while.
        self.gate.yield_to_intake(FAN_OUT_PATIENCE).await;
        let _gate = self.gate.lock().await;
        let mut tx = self.db.begin().await?;
        with_tx!(&mut tx, tx, q => {
        // 15 variables per row; SQLite allows 32766 per statement.
        for chunk in notifications.chunks(1024) {
            let mut q = sqlx::QueryBuilder::new(
                "INSERT INTO notifications (uid, event_id, target, kind, event, app, service, deployment_id, delivery_id, receiver, url, body, state, next_at, created_at) ",
            );
            q.push_values(chunk, |mut row, n| {
                row.push_bind(n.uid.clone())
                    .push_bind(n.event_id)
                    .push_bind(n.target.clone())
                    .push_bind(n.kind.clone())
                    .push_bind(n.event)
                    .push_bind(n.app.clone())
                    .push_bind(n.service.clone())
                    .push_bind(n.deployment_id)
                    .push_bind(n.delivery_id)
                    .push_bind(n.receiver.clone())
                    .push_bind(n.url.clone())
                    .push_bind(n.body.clone())
                    .push_bind(NotificationState::Pending)
                    .push_bind(now)
                    .push_bind(now);
            });
            // A notification whose uid is stored already is left as it is.
            q.push(" ON CONFLICT (uid) DO NOTHING");
            q.build().execute(&mut *tx).await?;
        }
        for chunk in events.chunks(1024) {
            let mut q = sqlx::QueryBuilder::new(
                "UPDATE events SET fanned_out = 1 WHERE id IN (",
            );
            let mut list = q.separated(", ");
            for id in chunk {
                list.push_bind(*id);
            }
            q.push(")");
            q.build().execute(&mut *tx).await?;
        }
        });
        tx.commit().await?;
        Ok(())
    }

    /// Marks every event not fanned out yet as fanned out, without reading them, `batch` per
    /// transaction (each under the gate, after letting waiting hook deliveries go first):
    /// what fanning out is when no target is configured.
    pub(crate) async fn fan_out_to_nobody(&self, batch: i64) -> Result<(), StoreError> {
        loop {
            self.gate.yield_to_intake(FAN_OUT_PATIENCE).await;
            let _gate = self.gate.lock().await;
            let marked = with_db!(&self.db, pool, q => sqlx::query(
                q("UPDATE events SET fanned_out = 1 WHERE id IN (
                   SELECT id FROM events INDEXED BY events_unfanned WHERE fanned_out = 0
                   ORDER BY id LIMIT ?1)"),
            )
            .bind(batch)
            .execute(pool)
            .await?.rows_affected());
            if marked < u64::try_from(batch).unwrap_or(0) {
                return Ok(());
            }
        }
    }

    /// How many notifications wait per target (for the fan-out's cap on refused deliveries).
    pub(crate) async fn pending_per_target(&self) -> Result<HashMap<String, i64>, StoreError> {
        let rows: Vec<(String, i64)> = with_db!(&self.db, pool, q => sqlx::query_as(
            q("SELECT target, COUNT(*) FROM notifications INDEXED BY notifications_queue
             WHERE state = ?1 GROUP BY target"),
        )
        .bind(NotificationState::Pending)
        .fetch_all(pool)
        .await)?;
        Ok(rows.into_iter().collect())
    }

    /// How many events the notify worker has not fanned out yet (for `/metrics`).
    pub(crate) async fn count_unfanned_events(&self) -> Result<i64, StoreError> {
        Ok(with_db!(&self.db, pool, q => sqlx::query_scalar(
            q("SELECT COUNT(*) FROM events INDEXED BY events_unfanned WHERE fanned_out = 0"),
        )
        .fetch_one(pool)
        .await)?)
    }

    /// How many notifications are in each state (for `/metrics`).
    pub(crate) async fn count_notifications(
        &self,
    ) -> Result<Vec<(NotificationState, i64)>, StoreError> {
        Ok(with_db!(&self.db, pool, q => sqlx::query_as(
            q("SELECT state, COUNT(*) FROM notifications INDEXED BY notifications_state GROUP BY state"),
        )
        .fetch_all(pool)
        .await)?)
    }

    /// The oldest pending notification of each target: the only one of its target that may be
    /// sent now (a later one never overtakes it).
    pub(crate) async fn queue_heads(&self) -> Result<Vec<Notification>, StoreError> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {NOTIFICATION_COLUMNS} FROM notifications WHERE id IN (
               SELECT MIN(id) FROM notifications INDEXED BY notifications_queue
               WHERE state = ?1 GROUP BY target)
             ORDER BY id"
        ));
        Ok(
            with_db!(&self.db, pool, q => sqlx::query_as::<_, Notification>(q(sql))
            .bind(NotificationState::Pending)
            .fetch_all(pool)
            .await)?,
        )
    }

    /// Records one try of a pending notification. False if it is gone or no longer pending.
    pub(crate) async fn record_attempt(
        &self,
        id: i64,
        attempt: &Attempt,
        now: i64,
    ) -> Result<bool, StoreError> {
        let (state, next_at, status, error) = match attempt {
            Attempt::Sent { status } | Attempt::Created { status, .. } => {
                (NotificationState::Sent, None, *status, None)
            }
            Attempt::Retry {
                next_at,
                status,
                error,
            } => (
                NotificationState::Pending,
                Some(*next_at),
                *status,
                Some(error.as_str()),
            ),
            Attempt::Dead { status, error } => {
                (NotificationState::Dead, None, *status, Some(error.as_str()))
            }
        };
        let _gate = self.gate.lock().await;
        let mut tx = self.db.begin().await?;
        let done = with_tx!(&mut tx, tx, q => sqlx::query(
            q("UPDATE notifications SET
               state = ?2, attempts = attempts + 1, next_at = COALESCE(?3, next_at),
               last_status = ?4, last_error = ?5,
               sent_at = CASE WHEN ?2 = ?7 THEN ?6 ELSE sent_at END
             WHERE id = ?1 AND state = ?8"),
        )
        .bind(id)
        .bind(state)
        .bind(next_at)
        .bind(status.map(i64::from))
        .bind(error)
        .bind(now)
        .bind(NotificationState::Sent)
        .bind(NotificationState::Pending)
        .execute(&mut *tx)
        .await?
        .rows_affected());
        if let (
            1,
            Attempt::Created {
                github_deployment, ..
            },
        ) = (done, attempt)
        {
            super::github::remember(&mut tx, id, *github_deployment, now).await?;
        }
        tx.commit().await?;
        Ok(done == 1)
    }

    pub(crate) async fn notification(&self, id: i64) -> Result<Option<Notification>, StoreError> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {NOTIFICATION_COLUMNS} FROM notifications WHERE id = ?1"
        ));
        Ok(
            with_db!(&self.db, pool, q => sqlx::query_as::<_, Notification>(q(sql))
            .bind(id)
            .fetch_optional(pool)
            .await)?,
        )
    }

    /// Notifications, newest first (`GET /api/v1/notifications`).
    pub(crate) async fn notifications(
        &self,
        f: &NotificationFilter,
    ) -> Result<Vec<Notification>, StoreError> {
        // One statement per filter shape, so SQLite walks an index backwards from `before`.
        Ok(with_db!(&self.db, pool, q => {
            let mut q = sqlx::QueryBuilder::new(format!(
                "SELECT {NOTIFICATION_COLUMNS} FROM notifications WHERE id < "
            ));
            q.push_bind(f.before.unwrap_or(i64::MAX));
            if let Some(app) = &f.app {
                q.push(" AND app = ").push_bind(app.clone());
            }
            if let Some(state) = f.state {
                q.push(" AND state = ").push_bind(state);
            }
            q.push(" ORDER BY id DESC LIMIT ").push_bind(f.limit);
            q.build_query_as::<Notification>().fetch_all(pool).await?
        }))
    }

    /// Sends a sent or dead notification again (`POST /api/v1/notifications/ID/retry`): it is
    /// pending, due at once, with its attempts reset and a new retry window from `now`. `None`:
    /// no such notification.
    pub(crate) async fn retry_notification(
        &self,
        id: i64,
        now: i64,
    ) -> Result<Option<RetryOutcome>, StoreError> {
        let _gate = self.gate.lock().await;
        let sql = sqlx::AssertSqlSafe(format!(
            "UPDATE notifications SET state = ?2, attempts = 0, next_at = ?3, retried_at = ?3
             WHERE id = ?1 AND state != ?2 RETURNING {NOTIFICATION_COLUMNS}"
        ));
        let requeued = with_db!(&self.db, pool, q => sqlx::query_as::<_, Notification>(q(sql))
            .bind(id)
            .bind(NotificationState::Pending)
            .bind(now)
            .fetch_optional(pool)
            .await)?;
        if let Some(n) = requeued {
            return Ok(Some(RetryOutcome::Requeued(Box::new(n))));
        }
        Ok(self
            .notification(id)
            .await?
            .map(|_| RetryOutcome::AlreadyPending))
    }

    /// Deletes fanned-out events that happened before `events_before`, and sent or dead
    /// notifications created before `sent_before` / `dead_before` (unix ms), in small
    /// transactions. Returns how many events and notifications went.
    pub(crate) async fn prune_outbox(
        &self,
        events_before: i64,
        sent_before: i64,
        dead_before: i64,
    ) -> Result<(u64, u64), StoreError> {
        let mut events = 0;
        let mut notifications = 0;
        loop {
            let _gate = self.gate.lock().await;
            let gone = with_db!(&self.db, pool, q => sqlx::query(
                q("DELETE FROM events WHERE id IN (
                   SELECT id FROM events INDEXED BY events_at
                   WHERE at < ?1 AND fanned_out = 1 LIMIT 500)"),
            )
            .bind(events_before)
            .execute(pool)
            .await?.rows_affected());
            let sent = with_db!(&self.db, pool, q => sqlx::query(
                q("DELETE FROM notifications WHERE id IN (
                   SELECT id FROM notifications
                   WHERE (state = ?1 AND created_at < ?2) OR (state = ?3 AND created_at < ?4)
                   LIMIT 500)"),
            )
            .bind(NotificationState::Sent)
            .bind(sent_before)
            .bind(NotificationState::Dead)
            .bind(dead_before)
            .execute(pool)
            .await?.rows_affected());
            events += gone;
            notifications += sent;
            if gone < 500 && sent < 500 {
                return Ok((events, notifications));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::states::{DeliveryStatus, DeploymentState};
    #[allow(unused_imports)]
    use crate::store::db::{with_db, with_tx};

    /// A refused delivery stored through the intake writer.
    async fn intake_refused(intake: &super::super::Intake) -> i64 {
        let d = super::super::NewDelivery {
            app: "a".into(),
            source: "github".into(),
            event: None,
            source_delivery_id: None,
            dedupe_key: None,
            received_at: 1,
            verified: false,
            scheme: None,
            status: DeliveryStatus::Rejected,
            error: Some("bad signature".into()),
            query: None,
            headers: "{}".into(),
            body: bytes::Bytes::new(),
            replay_of: None,
            refused_with: None,
        };
        match intake.insert(d).await.unwrap() {
            super::super::Inserted::New(id) => id,
            other => panic!("{other:?}"),
        }
    }

    async fn delivery(store: &Store, status: DeliveryStatus) -> i64 {
        with_db!(&store.db, pool, q => sqlx::query_scalar(q("INSERT INTO deliveries (app, source, received_at, verified, status, error, headers) VALUES ('a', 'generic', 1, TRUE, ?1, CASE WHEN ?1 = 'rejected' THEN 'bad signature' END, '{}') RETURNING id"))
            .bind(status)
            .fetch_one(pool)
            .await)
            .expect("delivery")
    }

    async fn deployment(store: &Store, delivery: i64, state: DeploymentState) -> i64 {
        with_db!(&store.db, pool, q => sqlx::query_scalar(q("INSERT INTO deployments (app, service, delivery_id, state, source, event, created_at) VALUES ('a', 's', ?1, ?2, 'generic', 'e', 1) RETURNING id"))
            .bind(delivery)
            .bind(state)
            .fetch_one(pool)
            .await)
            .expect("deployment")
    }

    fn types(events: &[JournalEvent]) -> Vec<&'static str> {
        events.iter().map(|e| e.event.as_str()).collect()
    }

    /// The triggers name every state as `EventType::of_deployment` does, on insert and on
    /// each change of state (not on an update that keeps it); refused deliveries give
    /// `delivery.rejected`, accepted ones nothing.
    #[tokio::test]
    async fn triggers_journal_every_state_change_and_refused_delivery() {
        for (_dir, store, intake) in Store::engines().await {
            eprintln!("on {}", store.engine());
            let accepted = delivery(&store, DeliveryStatus::Received).await;
            assert!(store.unfanned_events(10).await.unwrap().is_empty());
            for state in DeploymentState::ALL {
                let id = deployment(&store, accepted, *state).await;
                let events = store.unfanned_events(100).await.unwrap();
                let last = events.last().expect("an event");
                assert_eq!(last.event, EventType::of_deployment(*state), "{state}");
                assert_eq!(last.deployment_id, Some(id));
                assert_eq!(
                    (last.app.as_str(), last.service.as_deref()),
                    ("a", Some("s"))
                );
            }
            let before = store.unfanned_events(100).await.unwrap().len();
            let id = deployment(&store, accepted, DeploymentState::Queued).await;
            for state in DeploymentState::ALL {
                with_db!(&store.db, pool, q => sqlx::query(q("UPDATE deployments SET state = ?2, reason = ?3 WHERE id = ?1"))
                .bind(id)
                .bind(*state)
                .bind(format!("now {state}"))
                .execute(pool)
                .await.map(drop))
                .unwrap();
            }
            with_db!(&store.db, pool, q => sqlx::query(q("UPDATE deployments SET reason = 'same state' WHERE id = ?1"))
            .bind(id)
            .execute(pool)
            .await.map(drop))
            .unwrap();
            let events = store.unfanned_events(100).await.unwrap();
            let changes = &events[before + 1..];
            let expected: Vec<_> = DeploymentState::ALL[1..]
                .iter()
                .map(|s| EventType::of_deployment(*s).as_str())
                .collect();
            assert_eq!(types(changes), expected, "queued is no change");
            assert_eq!(changes[0].reason.as_deref(), Some("now running"));

            // Refused on the request path: stored by the intake writer, which journals it.
            let refused = intake_refused(&intake).await;
            let raw = delivery(&store, DeliveryStatus::Rejected).await;
            let later = delivery(&store, DeliveryStatus::Received).await;
            with_db!(&store.db, pool, q => sqlx::query(q("UPDATE deliveries SET status = ?2, error = 'bad ref' WHERE id = ?1"))
            .bind(later)
            .bind(DeliveryStatus::Rejected)
            .execute(pool)
            .await.map(drop))
            .unwrap();
            with_db!(&store.db, pool, q => sqlx::query(q("UPDATE deliveries SET status = ?2 WHERE id = ?1"))
            .bind(accepted)
            .bind(DeliveryStatus::Planned)
            .execute(pool)
            .await.map(drop))
            .unwrap();
            let events = store.unfanned_events(100).await.unwrap();
            assert!(
                !events.iter().any(|e| e.delivery_id == Some(raw)),
                "no trigger on inserted deliveries: the intake writer journals"
            );
            let tail: Vec<_> = events[events.len() - 2..]
                .iter()
                .map(|e| (e.event, e.delivery_id, e.reason.clone()))
                .collect();
            assert_eq!(
                tail,
                [
                    (
                        EventType::DeliveryRejected,
                        Some(refused),
                        Some("bad signature".into())
                    ),
                    (
                        EventType::DeliveryRejected,
                        Some(later),
                        Some("bad ref".into())
                    ),
                ]
            );
        }
    }

    /// An event whose state change rolls back leaves no event either.
    #[tokio::test]
    async fn an_event_commits_with_its_change_or_not_at_all() {
        for (_dir, store, _intake) in Store::engines().await {
            eprintln!("on {}", store.engine());
            let d = delivery(&store, DeliveryStatus::Planned).await;
            let mut tx = store.db.begin().await.unwrap();
            with_tx!(&mut tx, tx, q => sqlx::query(q("INSERT INTO deployments (app, service, delivery_id, state, source, event, created_at) VALUES ('a', 's', ?1, 'queued', 'generic', 'e', 1)"))
            .bind(d)
            .execute(&mut *tx)
            .await
            .map(drop))
            .unwrap();
            drop(tx); // rolled back
            assert!(store.unfanned_events(10).await.unwrap().is_empty());
        }
    }

    fn new(event: &JournalEvent, target: &str) -> NewNotification {
        NewNotification {
            uid: format!("msg_{}_{target}", event.id),
            event_id: event.id,
            target: target.to_string(),
            kind: "webhook".into(),
            event: event.event,
            app: event.app.clone(),
            service: event.service.clone(),
            deployment_id: event.deployment_id,
            delivery_id: event.delivery_id,
            receiver: "http://127.0.0.1:1".into(),
            url: None,
            body: "{}".into(),
        }
    }

    /// Fan-out records notifications and marks events at once; redone, it adds nothing. Each
    /// target's head is its oldest pending one; tries are recorded; dead ones are retried.
    #[tokio::test]
    async fn fan_out_queue_heads_attempts_and_retry() {
        for (_dir, store, _intake) in Store::engines().await {
            eprintln!("on {}", store.engine());
            let d = delivery(&store, DeliveryStatus::Planned).await;
            deployment(&store, d, DeploymentState::Queued).await;
            deployment(&store, d, DeploymentState::Queued).await;
            let events = store.unfanned_events(10).await.unwrap();
            let list: Vec<_> = events
                .iter()
                .flat_map(|e| [new(e, "t1"), new(e, "t2")])
                .collect();
            let ids: Vec<i64> = events.iter().map(|e| e.id).collect();
            store.fan_out(&list, &ids, 1000).await.unwrap();
            store.fan_out(&list, &ids, 1000).await.unwrap();
            assert!(store.unfanned_events(10).await.unwrap().is_empty());
            let all = store
                .notifications(&NotificationFilter {
                    limit: 100,
                    ..Default::default()
                })
                .await
                .unwrap();
            assert_eq!(all.len(), 4, "a redone fan-out adds nothing");
            let pending = store.pending_per_target().await.unwrap();
            assert_eq!((pending["t1"], pending["t2"]), (2, 2));

            let heads = store.queue_heads().await.unwrap();
            let firsts: Vec<_> = heads
                .iter()
                .map(|n| (n.target.as_str(), n.event_id))
                .collect();
            assert_eq!(firsts, [("t1", ids[0]), ("t2", ids[0])]);
            let (h1, h2) = (heads[0].id, heads[1].id);
            let retry = Attempt::Retry {
                next_at: 5000,
                status: Some(500),
                error: "answered 500".into(),
            };
            assert!(store.record_attempt(h1, &retry, 2000).await.unwrap());
            let n = store.notification(h1).await.unwrap().unwrap();
            assert_eq!(
                (n.state, n.attempts, n.next_at),
                (NotificationState::Pending, 1, 5000)
            );
            assert_eq!(n.last_status, Some(500));
            let sent = Attempt::Sent { status: Some(204) };
            assert!(store.record_attempt(h1, &sent, 6000).await.unwrap());
            let dead = Attempt::Dead {
                status: None,
                error: "refused".into(),
            };
            assert!(store.record_attempt(h2, &dead, 6000).await.unwrap());
            assert!(
                !store.record_attempt(h2, &sent, 6000).await.unwrap(),
                "not pending"
            );
            let n = store.notification(h1).await.unwrap().unwrap();
            assert_eq!(
                (n.state, n.attempts, n.sent_at),
                (NotificationState::Sent, 2, Some(6000))
            );

            let heads: Vec<_> = store
                .queue_heads()
                .await
                .unwrap()
                .iter()
                .map(|n| (n.target.clone(), n.event_id))
                .collect();
            assert_eq!(
                heads,
                [("t1".into(), ids[1]), ("t2".into(), ids[1])],
                "queues moved on"
            );

            let dead_list = store
                .notifications(&NotificationFilter {
                    state: Some(NotificationState::Dead),
                    app: Some("a".into()),
                    limit: 10,
                    ..Default::default()
                })
                .await
                .unwrap();
            assert_eq!(dead_list.len(), 1);
            assert_eq!(dead_list[0].last_error.as_deref(), Some("refused"));
            let Some(RetryOutcome::Requeued(n)) = store.retry_notification(h2, 7000).await.unwrap()
            else {
                panic!("dead → requeued");
            };
            assert_eq!(
                (n.state, n.attempts, n.trying_since()),
                (NotificationState::Pending, 0, 7000)
            );
            assert!(matches!(
                store.retry_notification(h2, 7000).await.unwrap(),
                Some(RetryOutcome::AlreadyPending)
            ));
            assert!(store.retry_notification(999, 7000).await.unwrap().is_none());
            let heads = store.queue_heads().await.unwrap();
            let t2 = heads.iter().find(|n| n.target == "t2").unwrap();
            assert_eq!(t2.id, h2, "older, so first again");
        }
    }

    #[tokio::test]
    async fn prune_takes_old_fanned_events_and_old_finished_notifications() {
        for (_dir, store, _intake) in Store::engines().await {
            eprintln!("on {}", store.engine());
            let d = delivery(&store, DeliveryStatus::Planned).await;
            deployment(&store, d, DeploymentState::Queued).await;
            deployment(&store, d, DeploymentState::Queued).await;
            let events = store.unfanned_events(10).await.unwrap();
            let list: Vec<_> = events.iter().map(|e| new(e, "t")).collect();
            store.fan_out(&list, &[events[0].id], 1000).await.unwrap();
            let heads = store.queue_heads().await.unwrap();
            let sent = Attempt::Sent { status: Some(200) };
            store
                .record_attempt(heads[0].id, &sent, 1000)
                .await
                .unwrap();
            let future = crate::store::now_ms() + 60_000;
            let (events_gone, notifications_gone) =
                store.prune_outbox(future, 1001, 0).await.unwrap();
            assert_eq!(
                (events_gone, notifications_gone),
                (1, 1),
                "unfanned and pending stay"
            );
            assert_eq!(store.unfanned_events(10).await.unwrap().len(), 1);
            assert_eq!(store.queue_heads().await.unwrap().len(), 1);
        }
    }

    /// What triggers cost the writes they ride on: deployments (one event row each, with the
    /// migration's trigger and with it dropped) and accepted deliveries (with no trigger, as
    /// the migration leaves them, and with a `WHEN NEW.status = 'rejected'` one, which SQLite
    /// still pays for by staging the multi-row INSERT in a temporary table), alternately.
    /// Prints µs per row; asserts nothing about speed. `cargo test --release --lib trigger_cost --
    /// --ignored --nocapture` (BENCHMARKS.md).
    #[tokio::test]
    #[ignore = "a measurement, not a check: cargo test --release --lib trigger_cost -- --ignored --nocapture"]
    async fn trigger_cost() {
        use std::time::Instant;
        const BATCH: usize = 256;
        const BATCHES: usize = 40;
        // Since migration 0014 the body is in `delivery_bodies`: the row measured here is the
        // small one (numbers in BENCHMARKS.md from before that include a 7.7 KB body).
        let body_size = 7736i64;
        let mut results: std::collections::BTreeMap<(&str, bool), Vec<f64>> = Default::default();
        for round in 0..8 {
            // Alternating, and starting without: the first round pays for a cold start.
            let triggers = round % 2 == 1;
            let dir = tempfile::tempdir().expect("tempdir");
            let (store, _intake) = Store::open(dir.path()).await.expect("open");
            let crate::store::db::Db::Sqlite(pool) = &store.db else {
                unreachable!("a SQLite store")
            };
            if triggers {
                // What migration 0008 does not do, to show why: a WHEN-guarded row trigger on
                // inserted deliveries (the intake writer journals refused ones instead).
                with_db!(&store.db, pool, q => sqlx::query(
                    q("CREATE TRIGGER deliveries_rejected_event AFTER INSERT ON deliveries
                     WHEN NEW.status = 'rejected' BEGIN
                       INSERT INTO events (at, type, app, delivery_id, reason)
                       VALUES (0, 'delivery.rejected', NEW.app, NEW.id, NEW.error);
                     END"),
                )
                .execute(pool)
                .await.map(drop))
                .unwrap();
            } else {
                with_db!(&store.db, pool, q => sqlx::query(q("DROP TRIGGER deployments_inserted_event"))
                    .execute(pool)
                    .await.map(drop))
                    .unwrap();
            }
            let started = Instant::now();
            for _ in 0..BATCHES {
                let mut tx = pool.begin().await.unwrap();
                let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                    "INSERT INTO deliveries (app, source, received_at, verified, status, headers, body_size) ",
                );
                q.push_values(0..BATCH, |mut row, _| {
                    row.push_bind("a")
                        .push_bind("github")
                        .push_bind(1i64)
                        .push_bind(true)
                        .push_bind(DeliveryStatus::Received)
                        .push_bind("{}")
                        .push_bind(body_size);
                });
                q.build().execute(&mut *tx).await.unwrap();
                tx.commit().await.unwrap();
            }
            let per_row = started.elapsed().as_secs_f64() * 1e6 / (BATCH * BATCHES) as f64;
            results
                .entry(("accepted delivery", triggers))
                .or_default()
                .push(per_row);
            let started = Instant::now();
            for _ in 0..BATCHES {
                let mut tx = pool.begin().await.unwrap();
                let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                    "INSERT INTO deployments (app, service, delivery_id, state, source, event, created_at) ",
                );
                q.push_values(0..BATCH, |mut row, _| {
                    row.push_bind("a")
                        .push_bind("s")
                        .push_bind(1i64)
                        .push_bind(DeploymentState::Queued)
                        .push_bind("github")
                        .push_bind("push")
                        .push_bind(1i64);
                });
                q.build().execute(&mut *tx).await.unwrap();
                tx.commit().await.unwrap();
            }
            let per_row = started.elapsed().as_secs_f64() * 1e6 / (BATCH * BATCHES) as f64;
            results
                .entry(("deployment", triggers))
                .or_default()
                .push(per_row);
        }
        for ((what, triggers), times) in results {
            let with = if triggers { "with triggers" } else { "without" };
            println!("{what:>18} {with:>14}: {times:.1?} µs per row");
        }
    }
}
