//! Recording the planner's decisions: one transaction per batch of deliveries, holding the
//! write gate, in which the new deployments, the supersedes they cause and each delivery's
//! new status (planned, rejected, noted) are written with a handful of statements. Reads
//! through the same transaction are in `super::history`.

use std::collections::BTreeMap;
use std::time::Duration;

use super::changes::{
    deliveries_by_id, deployments_by_id, publish_deliveries, publish_deployments,
};
use super::db::{Tx, with_tx};
use super::lifecycle::{supersede_older, superseded_reason};
use super::{DeliveryStatus, DeploymentState, Store, StoreError, now_ms};

/// How long the planner lets hook deliveries waiting for a commit go first.
const PLANNER_PATIENCE: Duration = Duration::from_millis(50);

/// A deployment the planner decided on: queued, or skipped with a reason.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct NewDeployment {
    pub(crate) app: String,
    pub(crate) service: String,
    pub(crate) state: DeploymentState,
    pub(crate) reason: Option<String>,
    pub(crate) source: String,
    pub(crate) event: String,
    pub(crate) git_repo: Option<String>,
    pub(crate) git_branch: Option<String>,
    pub(crate) git_ref: Option<String>,
    pub(crate) git_commit: Option<String>,
    pub(crate) event_time: Option<i64>,
    pub(crate) profile: Option<String>,
    /// Image services: the repository, the pushed tag and the digest that will run (`None`
    /// until resolved for senders that give no digest).
    pub(crate) image: Option<String>,
    pub(crate) image_tag: Option<String>,
    pub(crate) image_digest: Option<String>,
}

impl Store {
    /// Starts recording plans: one transaction for a whole batch of deliveries, so planning a
    /// burst costs one fsync per batch rather than one per delivery (and holds the write lock
    /// that hook requests also need for as short a time as possible).
    pub(crate) async fn begin_planning(&self) -> Result<Planning, StoreError> {
        // Hook answers wait on intake commits: let those go first, for a while.
        self.gate.yield_to_intake(PLANNER_PATIENCE).await;
        let gate = self.gate.lock_owned().await;
        let mut tx = self.db.begin().await?;
        lock_deployment_ids(&mut tx).await?;
        Ok(Planning {
            tx,
            _gate: gate,
            live: self.live.clone(),
            origin: self.origin.clone(),
            changed: Changed::default(),
        })
    }

    /// Whether hook deliveries wait for the write lock: a planning transaction then commits
    /// what it has and leaves the rest for its next batch.
    pub(crate) fn intake_busy(&self) -> bool {
        self.gate.intake_busy()
    }
}

/// Plans being recorded, in one transaction (see [`Store::begin_planning`]). Reads through it
/// see the plans recorded so far in the same batch. Dropped without `commit`, nothing is kept.
pub(crate) struct Planning {
    /// Also read through by `history.rs`.
    pub(super) tx: Tx,
    _gate: tokio::sync::OwnedMutexGuard<()>,
    live: crate::live::Hub,
    /// For the announcement of the batch to other replicas (`broadcast.rs`).
    origin: std::sync::Arc<str>,
    /// What this batch changed, published to live viewers after the commit.
    changed: Changed,
}

/// The deployments and deliveries a planning batch changed.
#[derive(Default)]
struct Changed {
    deployments: Vec<i64>,
    deliveries: Vec<i64>,
}

/// The key of the PostgreSQL advisory lock that every transaction inserting deployments holds
/// (planning, and recovery's retries), across replicas: planning stays serial, so two replicas
/// never plan one delivery twice, and the ids `next_deployment_id` hands out stay free.
const DEPLOYMENT_IDS_LOCK: i64 = 0x6665_7272_7931; // "ferry1"

/// Takes [`DEPLOYMENT_IDS_LOCK`] for the rest of the transaction (PostgreSQL; on SQLite the
/// write gate and SQLite's single writer already serialize these writers).
pub(super) async fn lock_deployment_ids(tx: &mut Tx) -> Result<(), StoreError> {
    if let Tx::Postgres(tx) = tx {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(DEPLOYMENT_IDS_LOCK)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

impl Planning {
    /// Of `ids`, the deliveries that are still unplanned, or `None` when nothing else can
    /// have planned them (SQLite: one ferry, whose planner read them). With replicas another
    /// one may have planned them between this planner's read and its lock: those are skipped.
    pub(crate) async fn still_unplanned(
        &mut self,
        ids: &[i64],
    ) -> Result<Option<std::collections::HashSet<i64>>, StoreError> {
        let Tx::Postgres(tx) = &mut self.tx else {
            return Ok(None);
        };
        let rows: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM deliveries WHERE id = ANY($1) AND status = 'received'",
        )
        .bind(ids)
        .fetch_all(&mut **tx)
        .await?;
        Ok(Some(rows.into_iter().collect()))
    }

    /// The id the next recorded deployment will get. Plans are recorded under the write gate,
    /// so nothing else inserts deployments until this batch commits; `sqlite_sequence`
    /// (AUTOINCREMENT) also covers pruned ids, so none is reused. On PostgreSQL the identity
    /// column's sequence plays that part; `record` moves it past the ids it used.
    pub(crate) async fn next_deployment_id(&mut self) -> Result<i64, StoreError> {
        Ok(match &mut self.tx {
            Tx::Sqlite(tx) => {
                sqlx::query_scalar(
                    "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'deployments'), 0) + 1",
                )
                .fetch_one(&mut **tx)
                .await?
            }
            Tx::Postgres(tx) => {
                sqlx::query_scalar(
                    "SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END FROM deployments_id_seq",
                )
                .fetch_one(&mut **tx)
                .await?
            }
        })
    }

    /// Records the plans of a batch of deliveries: their deployments (each with the id it was
    /// given from [`Planning::next_deployment_id`] on), the newest queued deployment of each
    /// service superseding its older queued ones, and each delivery's new status (with the
    /// reason it deploys nothing, if any). A few statements for the whole batch: each statement
    /// is a round trip to sqlx's SQLite thread.
    ///
    /// A burst planned in one batch collapses as it is inserted: the older queued deployments
    /// of a service in the batch are inserted `superseded` by its newest one (migration 0013's
    /// trigger journals `deployment.queued` and then `deployment.superseded` for each, as if
    /// they had been queued and superseded), instead of being inserted queued and updated
    /// again. Only queued ones of earlier batches, and those with a reason of their own (which
    /// their `deployment.queued` event carries), are superseded by an UPDATE.
    pub(crate) async fn record(
        &mut self,
        deployments: &[(i64, i64, NewDeployment)],
        deliveries: &[(i64, Option<String>)],
    ) -> Result<(), StoreError> {
        let now = now_ms();
        let newest = newest_queued(deployments);
        insert_deployments(&mut self.tx, deployments, &newest, now).await?;
        let changed = &mut self.changed;
        changed
            .deployments
            .extend(deployments.iter().map(|(id, ..)| *id));
        for ((app, service), id) in newest {
            let superseded = supersede_older(&mut self.tx, app, service, id, now).await?;
            changed.deployments.extend(superseded);
        }
        changed
            .deliveries
            .extend(deliveries.iter().map(|(id, _)| *id));
        mark_planned(&mut self.tx, deliveries, now).await
    }

    /// Records deliveries whose values failed `sources::values`: `rejected`, with the reason.
    /// Like deliveries refused on the request path they keep no dedupe key, so they never
    /// block a good retry.
    pub(crate) async fn reject(&mut self, deliveries: &[(i64, String)]) -> Result<(), StoreError> {
        let now = now_ms();
        for (id, reason) in deliveries {
            with_tx!(&mut self.tx, tx, q => sqlx::query(
                q("UPDATE deliveries SET status = ?4, planned_at = ?2, error = ?3, dedupe_key = NULL WHERE id = ?1"),
            )
            .bind(id)
            .bind(now)
            .bind(reason)
            .bind(DeliveryStatus::Rejected)
            .execute(&mut *tx)
            .await
            .map(drop))?;
            self.changed.deliveries.push(*id);
        }
        Ok(())
    }

    /// Records the planner's notes on deliveries (rare: one statement each).
    pub(crate) async fn note(&mut self, notes: &[(i64, String)]) -> Result<(), StoreError> {
        for (id, note) in notes {
            with_tx!(&mut self.tx, tx, q => sqlx::query(q("UPDATE deliveries SET note = ?2 WHERE id = ?1"))
                .bind(id)
                .bind(note)
                .execute(&mut *tx)
                .await
                .map(drop))?;
        }
        Ok(())
    }

    /// Makes the batch durable, then publishes what it changed to live viewers (read inside
    /// the transaction, only when somebody watches; published before the gate is released).
    pub(crate) async fn commit(mut self) -> Result<(), StoreError> {
        let changed = std::mem::take(&mut self.changed);
        if matches!(self.tx, Tx::Postgres(_)) {
            let announced = super::broadcast::Announced {
                deployments: changed.deployments.clone(),
                deliveries: changed.deliveries.clone(),
                ..Default::default()
            };
            super::broadcast::announce_in(&mut self.tx, &self.origin, &announced).await?;
        }
        let (deployments, deliveries) = if self.live.listening() {
            (
                deployments_by_id(&mut self.tx, &changed.deployments).await?,
                deliveries_by_id(&mut self.tx, &changed.deliveries).await?,
            )
        } else {
            Default::default()
        };
        self.tx.commit().await?;
        publish_deliveries(&self.live, deliveries);
        publish_deployments(&self.live, deployments);
        Ok(())
    }
}

/// Inserts planned deployments (id, delivery id, deployment) with multi-row INSERTs; a queued
/// one without a reason that is older than the newest queued one of its service in `newest`
/// is inserted `superseded` by it, as `supersede_older` would record it.
async fn insert_deployments(
    tx: &mut Tx,
    deployments: &[(i64, i64, NewDeployment)],
    newest: &BTreeMap<(&str, &str), i64>,
    now: i64,
) -> Result<(), StoreError> {
    // 19 variables per row; SQLite allows 32766 per statement, PostgreSQL 65535.
    for chunk in deployments.chunks(1024) {
        with_tx!(&mut *tx, tx, q => {
            let mut q = sqlx::QueryBuilder::new(
                "INSERT INTO deployments (id, delivery_id, app, service, state, reason, source, event, git_repo, git_branch, git_ref, git_commit, event_time, profile, image, image_tag, image_digest, created_at, finished_at) ",
            );
            q.push_values(chunk, |mut row, (id, delivery_id, d)| {
                let (state, reason) = match superseded_by(newest, *id, d) {
                    Some(by) => (DeploymentState::Superseded, Some(superseded_reason(by))),
                    None => (d.state, d.reason.clone()),
                };
                let finished = (state != DeploymentState::Queued).then_some(now);
                row.push_bind(*id)
                    .push_bind(*delivery_id)
                    .push_bind(d.app.clone())
                    .push_bind(d.service.clone())
                    .push_bind(state)
                    .push_bind(reason)
                    .push_bind(d.source.clone())
                    .push_bind(d.event.clone())
                    .push_bind(d.git_repo.clone())
                    .push_bind(d.git_branch.clone())
                    .push_bind(d.git_ref.clone())
                    .push_bind(d.git_commit.clone())
                    .push_bind(d.event_time)
                    .push_bind(d.profile.clone())
                    .push_bind(d.image.clone())
                    .push_bind(d.image_tag.clone())
                    .push_bind(d.image_digest.clone())
                    .push_bind(now)
                    .push_bind(finished);
            });
            q.build().execute(&mut *tx).await?;
        });
    }
    // PostgreSQL's identity sequence does not move for explicit ids (SQLite's AUTOINCREMENT
    // does): move it, so the next id `next_deployment_id` reads is past these.
    if let (Tx::Postgres(tx), Some(last)) = (tx, deployments.iter().map(|(id, ..)| *id).max()) {
        sqlx::query("SELECT setval('deployments_id_seq', GREATEST($1, (SELECT last_value FROM deployments_id_seq)))")
            .bind(last)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// The deployment that supersedes `d` (planned with id `id`) as it is inserted: the newest
/// queued one of its service in the batch, when `d` is an older queued one without a reason
/// (a reason of its own would be lost from its `deployment.queued` event; such a one is
/// inserted queued and superseded by `supersede_older`).
fn superseded_by(newest: &BTreeMap<(&str, &str), i64>, id: i64, d: &NewDeployment) -> Option<i64> {
    if d.state != DeploymentState::Queued || d.reason.is_some() {
        return None;
    }
    let by = *newest.get(&(d.app.as_str(), d.service.as_str()))?;
    (id < by).then_some(by)
}

/// The newest queued deployment of each service among those planned: it supersedes the
/// service's older queued ones.
fn newest_queued(deployments: &[(i64, i64, NewDeployment)]) -> BTreeMap<(&str, &str), i64> {
    let mut newest_queued: BTreeMap<(&str, &str), i64> = Default::default();
    for (id, _, d) in deployments {
        if d.state == DeploymentState::Queued && crate::states::supersedes(&d.service) {
            let slot = newest_queued.entry((&d.app, &d.service)).or_default();
            *slot = (*slot).max(*id);
        }
    }
    newest_queued
}

/// Sets each delivery's status to `planned`, with the reason it deploys nothing if any (one
/// UPDATE per 1,024 without a reason, one each with one).
async fn mark_planned(
    tx: &mut Tx,
    deliveries: &[(i64, Option<String>)],
    now: i64,
) -> Result<(), StoreError> {
    let (planned, failed): (Vec<_>, Vec<_>) =
        deliveries.iter().partition(|(_, error)| error.is_none());
    with_tx!(tx, tx, q => {
        for chunk in planned.chunks(1024) {
            let mut q = sqlx::QueryBuilder::new("UPDATE deliveries SET status = ");
            q.push_bind(DeliveryStatus::Planned)
                .push(", planned_at = ")
                .push_bind(now)
                .push(" WHERE id IN (");
            let mut ids = q.separated(", ");
            for (id, _) in chunk {
                ids.push_bind(*id);
            }
            q.push(")");
            q.build().execute(&mut *tx).await?;
        }
        for (id, error) in failed {
            sqlx::query(q("UPDATE deliveries SET status = ?4, planned_at = ?2, error = ?3 WHERE id = ?1"))
                .bind(id)
                .bind(now)
                .bind(error)
                .bind(DeliveryStatus::Planned)
                .execute(&mut *tx)
                .await?;
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::states::EventType;
    #[allow(unused_imports)]
    use crate::store::db::{with_db, with_tx};

    fn queued(service: &str, reason: Option<&str>) -> NewDeployment {
        NewDeployment {
            app: "a".into(),
            service: service.into(),
            state: DeploymentState::Queued,
            reason: reason.map(str::to_string),
            source: "github".into(),
            event: "push".into(),
            ..Default::default()
        }
    }

    /// A burst planned in one batch collapses as it is inserted: the older queued deployments
    /// of a service are `superseded` by its newest (reason and end time as an UPDATE writes
    /// them), with the events they had when they were inserted queued and then updated —
    /// except one with a reason of its own, which is inserted queued (its queued event keeps
    /// the reason) and superseded by the UPDATE, like a queued one of an earlier batch.
    #[tokio::test]
    async fn a_burst_in_one_batch_is_superseded_at_insert_with_the_same_events() {
        for (_dir, store, _intake) in Store::engines().await {
            eprintln!("on {}", store.engine());
            let delivery: i64 = with_db!(&store.db, pool, q => sqlx::query_scalar(q("INSERT INTO deliveries (app, source, received_at, verified, status, headers) VALUES ('a', 'github', 1, TRUE, 'received', '{}') RETURNING id"))
            .fetch_one(pool)
            .await)
            .unwrap();
            let mut tx = store.begin_planning().await.unwrap();
            let first = tx.next_deployment_id().await.unwrap();
            tx.record(&[(first, delivery, queued("web", None))], &[])
                .await
                .unwrap();
            tx.commit().await.unwrap();

            let mut tx = store.begin_planning().await.unwrap();
            let next = tx.next_deployment_id().await.unwrap();
            let rows: Vec<_> = [
                queued("web", None),
                queued("web", Some("unverified: planned as a plain redeploy")),
                queued("api", None),
                queued("web", None),
                queued("web", None),
            ]
            .into_iter()
            .zip(next..)
            .map(|(d, id)| (id, delivery, d))
            .collect();
            tx.record(&rows, &[(delivery, None)]).await.unwrap();
            tx.commit().await.unwrap();

            let newest = next + 4;
            let states: Vec<(i64, String, Option<String>, bool)> =
                with_db!(&store.db, pool, q => sqlx::query_as(
            q("SELECT id, state, reason, finished_at IS NOT NULL FROM deployments ORDER BY id"),
        )
        .fetch_all(pool)
        .await)
                .unwrap();
            let by = Some(format!("superseded by deployment {newest}"));
            assert_eq!(
                states,
                vec![
                    (first, "superseded".into(), by.clone(), true),
                    (next, "superseded".into(), by.clone(), true),
                    (next + 1, "superseded".into(), by.clone(), true),
                    (next + 2, "queued".into(), None, false),
                    (next + 3, "superseded".into(), by.clone(), true),
                    (newest, "queued".into(), None, false),
                ]
            );

            let events = store.unfanned_events(100).await.unwrap();
            let of = |id: i64| -> Vec<(EventType, Option<String>)> {
                events
                    .iter()
                    .filter(|e| e.deployment_id == Some(id))
                    .map(|e| (e.event, e.reason.clone()))
                    .collect()
            };
            let superseded = (EventType::DeploymentSuperseded, by.clone());
            let queued_event = (EventType::DeploymentQueued, None);
            for id in [first, next, next + 3] {
                assert_eq!(of(id), [queued_event.clone(), superseded.clone()], "{id}");
            }
            assert_eq!(
                of(next + 1),
                [
                    (
                        EventType::DeploymentQueued,
                        Some("unverified: planned as a plain redeploy".into())
                    ),
                    superseded.clone()
                ]
            );
            for id in [next + 2, newest] {
                assert_eq!(of(id), vec![queued_event.clone()], "{id}");
            }
        }
    }

    /// An alert command's runs each act on their own alert: none supersedes another, neither
    /// at insert nor later (the lanes then run them oldest first).
    #[tokio::test]
    async fn alert_command_runs_are_never_superseded() {
        for (_dir, store, _intake) in Store::engines().await {
            let delivery: i64 = with_db!(&store.db, pool, q => sqlx::query_scalar(q("INSERT INTO deliveries (app, source, received_at, verified, status, headers) VALUES ('a', 'alertmanager', 1, TRUE, 'received', '{}') RETURNING id"))
            .fetch_one(pool)
            .await)
            .unwrap();
            for batch in 0..2 {
                let mut tx = store.begin_planning().await.unwrap();
                let next = tx.next_deployment_id().await.unwrap();
                let rows: Vec<_> = [
                    queued("alert:r", Some("alert A")),
                    queued("alert:r", Some("alert B")),
                ]
                .into_iter()
                .zip(next..)
                .map(|(d, id)| (id, delivery, d))
                .collect();
                tx.record(&rows, &[(delivery, None)]).await.unwrap();
                tx.commit().await.unwrap();
                let states: Vec<String> = with_db!(&store.db, pool, q => sqlx::query_scalar(
                    q("SELECT state FROM deployments ORDER BY id"),
                )
                .fetch_all(pool)
                .await)
                .unwrap();
                assert_eq!(
                    states,
                    vec!["queued"; 2 * (batch + 1)],
                    "on {}",
                    store.engine()
                );
            }
        }
    }
}
