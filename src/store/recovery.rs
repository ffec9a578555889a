//! Runs cut short: deployments left `running` by a crash or a shutdown become `interrupted`
//! (or `cancelled`, when a cancel was requested) and are retried while attempts remain. With
//! replicas a ferry recovers at start only what it ran itself (`node`) or what nobody's lease
//! holds any more; a running deployment whose lease runs out later is taken over by whichever
//! replica notices first ([`Store::interrupt_expired`]).

use sqlx::Row;

use super::db::{Db, Tx, with_tx};
use super::{CANCELLED_WHILE_RUNNING, DeploymentState, Store, StoreError, now_ms};

impl Store {
    /// After a crash: deployments left `running` are marked `interrupted`, and each gets a new
    /// queued attempt if it has attempts left. Returns (interrupted id, retry id) pairs.
    pub(crate) async fn recover_interrupted(
        &self,
        retries: u32,
        node: &str,
    ) -> Result<Vec<(i64, Option<i64>)>, StoreError> {
        let ids: Vec<i64> = match &self.db {
            // One ferry: everything left running was its own.
            Db::Sqlite(pool) => {
                sqlx::query_scalar("SELECT id FROM deployments WHERE state = ?1 ORDER BY id")
                    .bind(DeploymentState::Running)
                    .fetch_all(pool)
                    .await?
            }
            // Not another replica's live run: only this node's, and those whose lease is out.
            Db::Postgres(pool) => {
                sqlx::query_scalar(
                    "SELECT id FROM deployments WHERE state = $1
                       AND (node IS NULL OR node = $2 OR lease_until IS NULL OR lease_until < $3)
                     ORDER BY id",
                )
                .bind(DeploymentState::Running)
                .bind(node)
                .bind(now_ms())
                .fetch_all(pool)
                .await?
            }
        };
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            out.push((id, self.interrupt(id, retries).await?));
        }
        Ok(out)
    }

    /// [`Store::interrupt`] for a deployment of another replica whose lease ran out: only if
    /// it is still running and its lease is still out (its replica may have renewed it, or
    /// another replica taken it over, since it was seen). `None` also when it was not taken.
    pub(crate) async fn interrupt_expired(
        &self,
        id: i64,
        retries: u32,
    ) -> Result<Option<Option<i64>>, StoreError> {
        self.interrupt_if(id, retries, Some(now_ms())).await
    }

    /// Marks a running deployment `interrupted` (ferry stopped while it ran) and, if it has
    /// attempts left and no newer deployment of its service is queued, queues it again as a new
    /// deployment with `retry_of` set. Returns the retry's id.
    pub(crate) async fn interrupt(&self, id: i64, retries: u32) -> Result<Option<i64>, StoreError> {
        Ok(self.interrupt_if(id, retries, None).await?.flatten())
    }

    /// [`Store::interrupt`], only if the lease has run out by `expired_at` when that is given.
    /// `None`: it was not interrupted here.
    async fn interrupt_if(
        &self,
        id: i64,
        retries: u32,
        expired_at: Option<i64>,
    ) -> Result<Option<Option<i64>>, StoreError> {
        let _gate = self.gate.lock().await;
        let mut tx = self.db.begin().await?;
        // A retry is a new deployment: its id comes from the planner's range.
        super::planning::lock_deployment_ids(&mut tx).await?;
        let now = now_ms();
        let ended = mark_interrupted(&mut tx, id, now, expired_at).await?;
        let retry = match &ended {
            // A deployment whose cancel was requested is never retried.
            Some(run) if run.state != DeploymentState::Cancelled => {
                retry(&mut tx, id, run, retries, now).await?
            }
            _ => None,
        };
        tx.commit().await?;
        let taken = ended.is_some();
        let changed: Vec<i64> = ended.map(|_| id).into_iter().chain(retry).collect();
        self.publish_deployments(&changed).await;
        Ok(taken.then_some(retry))
    }
}

/// A deployment that was running, as [`mark_interrupted`] left it.
struct Ended {
    app: String,
    service: String,
    attempt: i64,
    /// `interrupted`, or `cancelled` when its cancel had been requested.
    state: DeploymentState,
}

/// Records a running deployment `interrupted`, or `cancelled` if its cancel was requested (the
/// request survives the restart that cut its run short). `None`: it was not running.
async fn mark_interrupted(
    tx: &mut Tx,
    id: i64,
    now: i64,
    expired_at: Option<i64>,
) -> Result<Option<Ended>, StoreError> {
    with_tx!(tx, tx, q => {
    let row = sqlx::query(
        q("UPDATE deployments SET
           state = CASE WHEN cancel_requested_at IS NULL THEN ?3 ELSE ?5 END,
           reason = CASE WHEN cancel_requested_at IS NULL THEN 'ferry stopped while this deployment ran' ELSE ?6 END,
           finished_at = ?2
         WHERE id = ?1 AND state = ?4 AND (?7 IS NULL OR lease_until < ?7)
         RETURNING app, service, attempt, state"),
    )
    .bind(id)
    .bind(now)
    .bind(DeploymentState::Interrupted)
    .bind(DeploymentState::Running)
    .bind(DeploymentState::Cancelled)
    .bind(CANCELLED_WHILE_RUNNING)
    .bind(expired_at)
    .fetch_optional(&mut *tx)
    .await?;
    row.map(|row| {
        Ok(Ended {
            app: row.try_get(0)?,
            service: row.try_get(1)?,
            attempt: row.try_get(2)?,
            state: row.try_get(3)?,
        })
    })
    .transpose()
    })
}

/// Queues an interrupted deployment again (a new row with `retry_of` and `attempt + 1`) if it
/// has attempts left and no newer deployment of its service is queued. Returns the retry's id.
async fn retry(
    tx: &mut Tx,
    id: i64,
    run: &Ended,
    retries: u32,
    now: i64,
) -> Result<Option<i64>, StoreError> {
    with_tx!(tx, tx, q => {
    let newer_queued: Option<i64> = sqlx::query_scalar(
        q("SELECT id FROM deployments INDEXED BY deployments_queued WHERE app = ?1 AND service = ?2 AND state = 'queued' AND id > ?3 LIMIT 1"),
    )
    .bind(&run.app)
    .bind(&run.service)
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    if run.attempt > i64::from(retries) || newer_queued.is_some() {
        return Ok(None);
    }
    let retry_id: i64 = sqlx::query_scalar(
        q("INSERT INTO deployments (app, service, delivery_id, state, reason, source, event, git_repo, git_branch, git_ref, git_commit, event_time, profile, image, image_tag, image_digest, attempt, retry_of, created_at)
         SELECT app, service, delivery_id, ?3, 'retry of interrupted deployment ' || id, source, event, git_repo, git_branch, git_ref, git_commit, event_time, profile, image, image_tag, image_digest, attempt + 1, id, ?2
         FROM deployments WHERE id = ?1 RETURNING id"),
    )
    .bind(id)
    .bind(now)
    .bind(DeploymentState::Queued)
    .fetch_one(&mut *tx)
    .await?;
    Ok(Some(retry_id))
    })
}
