//! What services already hold, read by the planner through its planning transaction (so it
//! sees the plans recorded earlier in the same batch): the newest event time (staleness),
//! the images an image service runs or has pending, a rollback's target, and what a
//! reconcile needs (the last success; a deployment in its way).

use sqlx::Row;

use super::db::with_tx;
use super::deployments::DEPLOYMENT_COLUMNS;
use super::{Deployment, DeploymentState, Planning, StoreError};

/// An image an image service holds (see `crate::plan::History::images`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HeldImage {
    pub(crate) deployment: i64,
    pub(crate) tag: Option<String>,
    pub(crate) digest: Option<String>,
    /// Queued or running, rather than the current version.
    pub(crate) pending: bool,
}

impl Planning {
    /// The newest event time a service has deployed, is running or has queued: an event older
    /// than this is stale. Returns that time and the deployment that holds it.
    pub(crate) async fn newest_event_time(
        &mut self,
        app: &str,
        service: &str,
    ) -> Result<Option<(i64, i64)>, StoreError> {
        Ok(with_tx!(&mut self.tx, tx, q => sqlx::query(
            q("SELECT event_time, id FROM deployments INDEXED BY deployments_service_time
             WHERE app = ?1 AND service = ?2 AND event_time IS NOT NULL
               AND state IN (?3, ?4, ?5)
             ORDER BY event_time DESC, id DESC LIMIT 1"),
        )
        .bind(app)
        .bind(service)
        .bind(DeploymentState::Queued)
        .bind(DeploymentState::Running)
        .bind(DeploymentState::Succeeded)
        .fetch_optional(&mut *tx)
        .await?
        .map(|r| (r.get::<i64, _>(0), r.get::<i64, _>(1)))))
    }

    /// What an image service runs (its newest success) and has queued or running.
    pub(crate) async fn images(
        &mut self,
        app: &str,
        service: &str,
    ) -> Result<Vec<HeldImage>, StoreError> {
        with_tx!(&mut self.tx, tx, q => {
            let rows = sqlx::query(
                q("SELECT id, image_tag, image_digest, TRUE FROM deployments INDEXED BY deployments_active
                 WHERE state IN ('queued', 'running') AND app = ?1 AND service = ?2 AND image IS NOT NULL
                 UNION ALL
                 SELECT * FROM (SELECT id, image_tag, image_digest, FALSE FROM deployments INDEXED BY deployments_service
                                WHERE app = ?1 AND service = ?2 AND state = ?3 ORDER BY id DESC LIMIT 1) AS current"),
            )
            .bind(app)
            .bind(service)
            .bind(DeploymentState::Succeeded)
            .fetch_all(&mut *tx)
            .await?;
            rows.iter()
                .map(|r| {
                    Ok(HeldImage {
                        deployment: r.try_get(0)?,
                        tag: r.try_get(1)?,
                        digest: r.try_get(2)?,
                        pending: r.try_get::<bool, _>(3)?,
                    })
                })
                .collect()
        })
    }

    /// The deployment a rollback goes back to: `to` if it is a success of this service, else
    /// the newest success before the current version that ran something else.
    pub(crate) async fn rollback_target(
        &mut self,
        app: &str,
        service: &str,
        to: Option<i64>,
    ) -> Result<Option<Deployment>, StoreError> {
        with_tx!(&mut self.tx, tx, q => {
        if let Some(id) = to {
            let sql = sqlx::AssertSqlSafe(format!(
                "SELECT {DEPLOYMENT_COLUMNS} FROM deployments WHERE id = ?1 AND app = ?2 AND service = ?3 AND state = ?4"
            ));
            return Ok(sqlx::query_as::<_, Deployment>(q(sql))
                .bind(id)
                .bind(app)
                .bind(service)
                .bind(DeploymentState::Succeeded)
                .fetch_optional(&mut *tx)
                .await?);
        }
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {DEPLOYMENT_COLUMNS} FROM deployments INDEXED BY deployments_service
             WHERE app = ?1 AND service = ?2 AND state = ?3 ORDER BY id DESC LIMIT 1"
        ));
        let Some(current) = sqlx::query_as::<_, Deployment>(q(sql))
            .bind(app)
            .bind(service)
            .bind(DeploymentState::Succeeded)
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Ok(None);
        };
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {DEPLOYMENT_COLUMNS} FROM deployments INDEXED BY deployments_service
             WHERE app = ?1 AND service = ?2 AND state = ?6 AND id < ?3
               AND (COALESCE(image_digest, '') != COALESCE(?4, '') OR COALESCE(git_commit, '') != COALESCE(?5, ''))
             ORDER BY id DESC LIMIT 1"
        ));
        Ok(sqlx::query_as::<_, Deployment>(q(sql))
            .bind(app)
            .bind(service)
            .bind(current.id)
            .bind(&current.image_digest)
            .bind(&current.git_commit)
            .bind(DeploymentState::Succeeded)
            .fetch_optional(&mut *tx)
            .await?)
        })
    }

    /// A service's newest success: what a reconcile runs again.
    pub(crate) async fn last_success(
        &mut self,
        app: &str,
        service: &str,
    ) -> Result<Option<Deployment>, StoreError> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {DEPLOYMENT_COLUMNS} FROM deployments INDEXED BY deployments_service
             WHERE app = ?1 AND service = ?2 AND state = ?3 ORDER BY id DESC LIMIT 1"
        ));
        Ok(
            with_tx!(&mut self.tx, tx, q => sqlx::query_as::<_, Deployment>(q(sql))
            .bind(app)
            .bind(service)
            .bind(DeploymentState::Succeeded)
            .fetch_optional(&mut *tx)
            .await?),
        )
    }

    /// A queued or running deployment of the service (the running one first), if any.
    pub(crate) async fn active_deployment(
        &mut self,
        app: &str,
        service: &str,
    ) -> Result<Option<(i64, DeploymentState)>, StoreError> {
        with_tx!(&mut self.tx, tx, q => {
            let row = sqlx::query(
                q("SELECT id, state FROM deployments INDEXED BY deployments_active
                 WHERE state IN ('queued', 'running') AND app = ?1 AND service = ?2
                 ORDER BY CASE WHEN state = ?3 THEN 0 ELSE 1 END, id DESC LIMIT 1"),
            )
            .bind(app)
            .bind(service)
            .bind(DeploymentState::Running)
            .fetch_optional(&mut *tx)
            .await?;
            match row {
                Some(r) => Ok(Some((r.try_get(0)?, r.try_get(1)?))),
                None => Ok(None),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::store::db::with_db;
    use crate::store::{DeploymentState, Store};

    /// A deployment of `a/s` in `state`; returns its id.
    async fn add(store: &Store, state: DeploymentState) -> i64 {
        store.test_deployment(state, "push", (1, None, None)).await
    }

    /// What a reconcile reads: the newest success, and a deployment in its way — the running
    /// one before a queued one.
    #[tokio::test]
    async fn a_reconcile_sees_the_last_success_and_what_is_in_its_way() {
        use DeploymentState::*;
        for (_dir, store, _intake) in Store::engines().await {
            eprintln!("on {}", store.engine());
            store.test_delivery().await;
            let mut tx = store.begin_planning().await.unwrap();
            assert!(tx.last_success("a", "s").await.unwrap().is_none());
            assert!(tx.active_deployment("a", "s").await.unwrap().is_none());
            drop(tx);
            add(&store, Succeeded).await;
            let ok = add(&store, Succeeded).await;
            add(&store, Failed).await;
            let running = add(&store, Running).await;
            let queued = add(&store, Queued).await;
            let mut tx = store.begin_planning().await.unwrap();
            assert_eq!(
                tx.last_success("a", "s").await.unwrap().map(|d| d.id),
                Some(ok)
            );
            assert_eq!(
                tx.active_deployment("a", "s").await.unwrap(),
                Some((running, Running))
            );
            assert!(tx.active_deployment("a", "other").await.unwrap().is_none());
            drop(tx);
            with_db!(&store.db, pool, q => sqlx::query(q("UPDATE deployments SET state = ?1 WHERE id = ?2"))
                .bind(Succeeded)
                .bind(running)
                .execute(pool)
                .await.map(drop))
                .expect("finish");
            let mut tx = store.begin_planning().await.unwrap();
            assert_eq!(
                tx.last_success("a", "s").await.unwrap().map(|d| d.id),
                Some(running)
            );
            assert_eq!(
                tx.active_deployment("a", "s").await.unwrap(),
                Some((queued, Queued))
            );
        }
    }
}
