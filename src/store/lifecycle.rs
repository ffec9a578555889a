//! A planned deployment's life in the lanes: the queue, `queued → running`, the resolved
//! digest, how it ended; and cancel through the API. Each write holds the write gate.

use super::db::{Tx, with_db, with_tx};
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

    /// Moves a queued deployment to running, superseding any older queued one of its service.
    /// Returns false if it was no longer queued.
    pub(crate) async fn start(&self, d: &Deployment) -> Result<bool, StoreError> {
        let _gate = self.gate.lock().await;
        let mut tx = self.db.begin().await?;
        let now = now_ms();
        let done = with_tx!(&mut tx, tx, q => sqlx::query(
            q("UPDATE deployments SET state = ?3, started_at = ?2 WHERE id = ?1 AND state = ?4"),
        )
        .bind(d.id)
        .bind(now)
        .bind(DeploymentState::Running)
        .bind(DeploymentState::Queued)
        .execute(&mut *tx)
        .await?
        .rows_affected());
        let mut changed = supersede_older(&mut tx, &d.app, &d.service, d.id, now).await?;
        tx.commit().await?;
        if done == 1 {
            changed.push(d.id);
        }
        self.publish_deployments(&changed).await;
        Ok(done == 1)
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

    /// Records how a deployment ended.
    pub(crate) async fn finish(
        &self,
        id: i64,
        state: DeploymentState,
        reason: Option<&str>,
        exit_code: Option<i64>,
    ) -> Result<(), StoreError> {
        let _gate = self.gate.lock().await;
        with_db!(&self.db, pool, q => sqlx::query(
            q("UPDATE deployments SET state = ?2, reason = COALESCE(?3, reason), exit_code = ?4, finished_at = ?5 WHERE id = ?1"),
        )
        .bind(id)
        .bind(state)
        .bind(reason)
        .bind(exit_code)
        .bind(now_ms())
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
