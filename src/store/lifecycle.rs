//! A planned deployment's life in the lanes: the queue, `queued → running`, the resolved
//! digest, how it ended; and cancel through the API. Each write holds the write gate.

use super::db::{Db, Tx, with_db, with_tx};

/// This replica's claim on the deployments it starts: its name (`server.node`) and how long
/// the claim holds without a heartbeat (`server.lease`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Claim<'a> {
    pub(crate) node: &'a str,
    pub(crate) lease: std::time::Duration,
}

impl Claim<'_> {
    /// The claim of unit tests' store writes.
    #[cfg(test)]
    pub(crate) const TEST: Claim<'static> = Claim {
        node: "test",
        lease: std::time::Duration::from_secs(30),
    };

    fn lease_ms(&self) -> i64 {
        i64::try_from(self.lease.as_millis()).unwrap_or(i64::MAX)
    }
}
use super::deployments::DEPLOYMENT_COLUMNS;
use super::{Deployment, DeploymentState, Store, StoreError, now_ms};

/// What [`Store::cancel`] did.
#[derive(Debug, Clone)]
pub(crate) enum CancelOutcome {
    /// It was queued: now `cancelled`, it never runs.
    Dequeued(Deployment),
    /// It is running: the cancel is recorded; the lanes stop it (see `lanes::Running`).
    Stopping(Deployment),
    /// It had already ended (or is a state that cannot be cancelled): unchanged.
    AlreadyFinal(Deployment),
}

/// The reason of a deployment cancelled before it ran.
pub(crate) const CANCELLED_WHILE_QUEUED: &str = "cancelled through the API before it started";
/// The reason of a deployment cancelled while it ran.
pub(crate) const CANCELLED_WHILE_RUNNING: &str = "cancelled through the API while it ran";

impl Store {
    /// All queued deployments, oldest first: the lanes' work.
    pub(crate) async fn queued(&self) -> Result<Vec<Deployment>, StoreError> {
        // State literals stay in SQL where a partial index (`WHERE state = 'queued'`, …) must
        // match them: SQLite uses a partial index only for a literal, never for a bound value.
        // `store::tests::sql_state_literals_are_states` checks each such literal names a state.
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {DEPLOYMENT_COLUMNS} FROM deployments WHERE state = 'queued' ORDER BY id"
        ));
        Ok(
            with_db!(&self.db, pool, q => sqlx::query_as::<_, Deployment>(q(sql))
            .fetch_all(pool)
            .await?),
        )
    }

    /// Moves a queued deployment to running on this replica (`claim`), superseding any older
    /// queued one of its service. Returns false if it was no longer queued — or, with replicas,
    /// if another replica runs a deployment of the service: the check and the claim are one
    /// statement, under a lock per service, so two replicas never both start one service.
    pub(crate) async fn start(
        &self,
        d: &Deployment,
        claim: &Claim<'_>,
    ) -> Result<bool, StoreError> {
        let _gate = self.gate.lock().await;
        let mut tx = self.db.begin().await?;
        let now = now_ms();
        let lease_until = now.saturating_add(claim.lease_ms());
        let done = match &mut tx {
            // One ferry: its lanes run one deployment per service already.
            Tx::Sqlite(tx) => sqlx::query(
                "UPDATE deployments SET state = ?3, started_at = ?2, node = ?5, lease_until = ?6
                 WHERE id = ?1 AND state = ?4",
            )
            .bind(d.id)
            .bind(now)
            .bind(DeploymentState::Running)
            .bind(DeploymentState::Queued)
            .bind(claim.node)
            .bind(lease_until)
            .execute(&mut **tx)
            .await?
            .rows_affected(),
            Tx::Postgres(tx) => {
                sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
                    .bind(format!("lane {}/{}", d.app, d.service))
                    .execute(&mut **tx)
                    .await?;
                sqlx::query(
                    "UPDATE deployments SET state = $3, started_at = GREATEST($2, (extract(epoch FROM clock_timestamp()) * 1000)::bigint), node = $5, lease_until = $6
                     WHERE id = $1 AND state = $4
                       AND NOT EXISTS (SELECT 1 FROM deployments r
                                       WHERE r.app = $7 AND r.service = $8 AND r.state = 'running')",
                )
                .bind(d.id)
                .bind(now)
                .bind(DeploymentState::Running)
                .bind(DeploymentState::Queued)
                .bind(claim.node)
                .bind(lease_until)
                .bind(&d.app)
                .bind(&d.service)
                .execute(&mut **tx)
                .await?
                .rows_affected()
            }
        };
        let mut changed = if done == 1 && crate::states::supersedes(&d.service) {
            supersede_older(&mut tx, &d.app, &d.service, d.id, now).await?
        } else {
            Vec::new()
        };
        tx.commit().await?;
        if done == 1 {
            changed.push(d.id);
        }
        self.publish_deployments(&changed).await;
        Ok(done == 1)
    }

    /// Renews the leases of the deployments this replica runs (`claim.node`); returns the ids
    /// renewed. One of this replica's runs missing from them was taken over by another
    /// replica (its lease had run out): it must stop at once.
    pub(crate) async fn renew_leases(&self, claim: &Claim<'_>) -> Result<Vec<i64>, StoreError> {
        let lease_until = now_ms().saturating_add(claim.lease_ms());
        Ok(with_db!(&self.db, pool, q => sqlx::query_scalar(q(
            "UPDATE deployments SET lease_until = ?2 WHERE node = ?1 AND state = 'running' RETURNING id",
        ))
        .bind(claim.node)
        .bind(lease_until)
        .fetch_all(pool)
        .await?))
    }

    /// Of `ids` (runs in progress on this replica), those another replica has taken over:
    /// recorded `interrupted`, or running on another node. (A run not yet marked running, or
    /// one that has just ended, is neither.)
    pub(crate) async fn taken_over(&self, ids: &[i64], node: &str) -> Result<Vec<i64>, StoreError> {
        let mut out = Vec::new();
        for id in ids {
            let row: Option<(DeploymentState, Option<String>)> = with_db!(&self.db, pool, q => sqlx::query_as(
                q("SELECT state, node FROM deployments WHERE id = ?1"),
            )
            .bind(id)
            .fetch_optional(pool)
            .await?);
            let lost = match row {
                Some((DeploymentState::Interrupted, _)) => true,
                Some((DeploymentState::Running, Some(n))) => n != node,
                _ => false,
            };
            if lost {
                out.push(*id);
            }
        }
        Ok(out)
    }

    /// Running deployments whose lease ran out: their replica died or lost the database.
    pub(crate) async fn expired_leases(&self) -> Result<Vec<i64>, StoreError> {
        Ok(with_db!(&self.db, pool, q => sqlx::query_scalar(q(
            "SELECT id FROM deployments WHERE state = 'running' AND lease_until < ?1 ORDER BY id",
        ))
        .bind(now_ms())
        .fetch_all(pool)
        .await?))
    }

    /// Records the digest a deployment resolved its tag to (senders that give none).
    pub(crate) async fn set_image_digest(&self, id: i64, digest: &str) -> Result<(), StoreError> {
        let _gate = self.gate.lock().await;
        with_db!(&self.db, pool, q => sqlx::query(q("UPDATE deployments SET image_digest = ?2 WHERE id = ?1"))
            .bind(id)
            .bind(digest)
            .execute(pool)
            .await
            .map(drop))?;
        Ok(())
    }

    /// Records the commit a checkout went to for a deployment that named none (never
    /// replaces one it named).
    pub(crate) async fn set_git_commit(&self, id: i64, commit: &str) -> Result<(), StoreError> {
        let _gate = self.gate.lock().await;
        with_db!(&self.db, pool, q => sqlx::query(q("UPDATE deployments SET git_commit = ?2 WHERE id = ?1 AND git_commit IS NULL"))
            .bind(id)
            .bind(commit)
            .execute(pool)
            .await
            .map(drop))?;
        Ok(())
    }

    /// Records how a deployment ended.
    pub(crate) async fn finish(
        &self,
        id: i64,
        state: DeploymentState,
        reason: Option<&str>,
        exit_code: Option<i64>,
    ) -> Result<(), StoreError> {
        let _gate = self.gate.lock().await;
        // Only a running one: with replicas, another may have recorded it `interrupted` after
        // this one's lease ran out, and that record stands. On PostgreSQL the end is the
        // server's clock as the row is written (as `start` reads it), so the next run of the
        // service, claimed only once this commits, never seems to start before this ended.
        let sql = match &self.db {
            Db::Sqlite(_) => {
                "UPDATE deployments SET state = ?2, reason = COALESCE(?3, reason), exit_code = ?4, finished_at = ?5 WHERE id = ?1 AND state = ?6"
            }
            Db::Postgres(_) => {
                "UPDATE deployments SET state = ?2, reason = COALESCE(?3, reason), exit_code = ?4, finished_at = GREATEST(?5, (extract(epoch FROM clock_timestamp()) * 1000)::bigint) WHERE id = ?1 AND state = ?6"
            }
        };
        with_db!(&self.db, pool, q => sqlx::query(q(sql))
        .bind(id)
        .bind(state)
        .bind(reason)
        .bind(exit_code)
        .bind(now_ms())
        .bind(DeploymentState::Running)
        .execute(pool)
        .await
        .map(drop))?;
        self.publish_deployments(&[id]).await;
        Ok(())
    }

    /// Cancels a deployment (`POST /api/v1/deployments/ID/cancel`), in one transaction: a
    /// queued one is `cancelled` at once and never runs; a running one is marked
    /// `cancel_requested_at` (the lanes stop it and record `cancelled`; a restart that cuts
    /// the stop short records it `cancelled` too, see [`Store::interrupt`]). `None`: no such
    /// deployment.
    pub(crate) async fn cancel(&self, id: i64) -> Result<Option<CancelOutcome>, StoreError> {
        let _gate = self.gate.lock().await;
        let mut tx = self.db.begin().await?;
        let now = now_ms();
        let d = with_tx!(&mut tx, tx, q => {
        let dequeued = sqlx::query(
            q("UPDATE deployments SET state = ?3, reason = ?4, finished_at = ?2, cancel_requested_at = ?2
             WHERE id = ?1 AND state = ?5"),
        )
        .bind(id)
        .bind(now)
        .bind(DeploymentState::Cancelled)
        .bind(CANCELLED_WHILE_QUEUED)
        .bind(DeploymentState::Queued)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        let flagged = !dequeued
            && sqlx::query(
                q("UPDATE deployments SET cancel_requested_at = COALESCE(cancel_requested_at, ?2)
                 WHERE id = ?1 AND state = ?3"),
            )
            .bind(id)
            .bind(now)
            .bind(DeploymentState::Running)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {DEPLOYMENT_COLUMNS} FROM deployments WHERE id = ?1"
        ));
        let d = sqlx::query_as::<_, Deployment>(q(sql))
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        (d, dequeued, flagged)
        });
        let (d, dequeued, flagged) = d;
        tx.commit().await?;
        if dequeued && let Some(d) = &d {
            // Only a dequeued one changed state; a running one stays `running` until it stops.
            super::changes::publish_deployments(&self.live, vec![d.clone()]);
            self.announce(super::broadcast::Announced {
                deployments: vec![d.id],
                ..Default::default()
            })
            .await;
        }
        Ok(d.map(|d| match (dequeued, flagged) {
            (true, _) => CancelOutcome::Dequeued(d),
            (false, true) => CancelOutcome::Stopping(d),
            (false, false) => CancelOutcome::AlreadyFinal(d),
        }))
    }
}

/// The reason of a deployment superseded by deployment `by` (as `supersede_older` writes it).
pub(super) fn superseded_reason(by: i64) -> String {
    format!("superseded by deployment {by}")
}

/// Marks queued deployments of a service older than `id` as superseded by it; returns their
/// ids. (Its reason is [`superseded_reason`]'s, spelled in SQL.)
pub(super) async fn supersede_older(
    tx: &mut Tx,
    app: &str,
    service: &str,
    id: i64,
    now: i64,
) -> Result<Vec<i64>, StoreError> {
    Ok(with_tx!(tx, tx, q => sqlx::query_scalar(
        q("UPDATE deployments INDEXED BY deployments_queued
         SET state = ?5, reason = 'superseded by deployment ' || ?3, finished_at = ?4
         WHERE app = ?1 AND service = ?2 AND state = 'queued' AND id < ?3 RETURNING id"),
    )
    .bind(app)
    .bind(service)
    .bind(id)
    .bind(now)
    .bind(DeploymentState::Superseded)
    .fetch_all(&mut *tx)
    .await?))
}
