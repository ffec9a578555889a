//! Deployments as stored, and the read-only queries over them for the API, the CLI and
//! `/metrics`. What changes a deployment lives in `super::lifecycle` (lanes and cancel),
//! `super::recovery` (interrupted runs) and `super::planning` (new ones).

use crate::timefmt::json_time;
use serde::Serialize;

use super::db::with_db;
use super::{DeploymentState, ListFilter, Store, StoreError};

#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub(crate) struct Deployment {
    pub(crate) id: i64,
    pub(crate) app: String,
    pub(crate) service: String,
    pub(crate) delivery_id: i64,
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
    pub(crate) image: Option<String>,
    pub(crate) image_tag: Option<String>,
    pub(crate) image_digest: Option<String>,
    pub(crate) attempt: i64,
    pub(crate) retry_of: Option<i64>,
    pub(crate) exit_code: Option<i64>,
    pub(crate) created_at: i64,
    pub(crate) started_at: Option<i64>,
    pub(crate) finished_at: Option<i64>,
    /// The ferry (`server.node`) that ran it (migration 0015; `None` before it started).
    pub(crate) node: Option<String>,
}

impl Deployment {
    /// How the API and notifications show a deployment (times as RFC 3339).
    pub(crate) fn json(&self) -> serde_json::Value {
        let d = self;
        serde_json::json!({
            "id": d.id,
            "app": d.app,
            "service": d.service,
            "state": d.state,
            "reason": d.reason,
            "version": d.version(),
            "image": d.image,
            "image_tag": d.image_tag,
            "image_digest": d.image_digest,
            "git_repo": d.git_repo,
            "git_branch": d.git_branch,
            "git_ref": d.git_ref,
            "commit": d.git_commit,
            "event_time": json_time(d.event_time),
            "source": d.source,
            "event": d.event,
            "profile": d.profile,
            "delivery_id": d.delivery_id,
            "attempt": d.attempt,
            "retry_of": d.retry_of,
            "exit_code": d.exit_code,
            "created_at": json_time(Some(d.created_at)),
            "started_at": json_time(d.started_at),
            "finished_at": json_time(d.finished_at),
            "node": d.node,
        })
    }

    /// What it runs, in one string: `TAG@DIGEST` for images, else the commit or ref.
    pub(crate) fn version(&self) -> Option<String> {
        match (&self.image_tag, &self.image_digest) {
            (Some(t), Some(g)) => Some(format!("{t}@{g}")),
            (Some(t), None) => Some(t.clone()),
            (None, Some(g)) => Some(g.clone()),
            (None, None) => self.git_commit.clone().or_else(|| self.git_ref.clone()),
        }
    }
}

/// Every column of `deployments`, in [`Deployment`]'s order.
pub(super) const DEPLOYMENT_COLUMNS: &str = "id, app, service, delivery_id, state, reason, source, event, git_repo, git_branch, git_ref, git_commit, event_time, profile, image, image_tag, image_digest, attempt, retry_of, exit_code, created_at, started_at, finished_at, node";

impl Store {
    /// How many deployments are in each state (for `/metrics`).
    pub(crate) async fn count_by_state(&self) -> Result<Vec<(String, i64)>, StoreError> {
        Ok(
            with_db!(&self.db, pool, q => sqlx::query_as(q("SELECT state, COUNT(*) FROM deployments GROUP BY state"))
            .fetch_all(pool)
            .await)?,
        )
    }

    /// How many deployments wait in each lane (app, service), for `/metrics`; lanes with none
    /// are not listed.
    pub(crate) async fn count_queued_by_lane(
        &self,
    ) -> Result<Vec<(String, String, i64)>, StoreError> {
        // Literal state: the partial index `deployments_queued` only matches a literal.
        Ok(with_db!(&self.db, pool, q => sqlx::query_as(
            q("SELECT app, service, COUNT(*) FROM deployments INDEXED BY deployments_queued
             WHERE state = 'queued' GROUP BY app, service"),
        )
        .fetch_all(pool)
        .await)?)
    }

    pub(crate) async fn deployment(&self, id: i64) -> Result<Option<Deployment>, StoreError> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {DEPLOYMENT_COLUMNS} FROM deployments WHERE id = ?1"
        ));
        Ok(
            with_db!(&self.db, pool, q => sqlx::query_as::<_, Deployment>(q(sql))
            .bind(id)
            .fetch_optional(pool)
            .await)?,
        )
    }

    pub(crate) async fn deployments(&self, f: &ListFilter) -> Result<Vec<Deployment>, StoreError> {
        let before = f.before.unwrap_or(i64::MAX);
        // As for deliveries: the leading filters match an index, the rest filter the walk.
        let sql = match (&f.app, &f.service) {
            // A state filter walks the state's own index (migration 0012): a rare state
            // (`running`) would otherwise walk every deployment of the app, or of all apps.
            (Some(_), _) if f.state.is_some() => format!(
                "SELECT {DEPLOYMENT_COLUMNS} FROM deployments INDEXED BY deployments_app_state
                 WHERE app = ?1 AND (?2 IS NULL OR service = ?2) AND state = ?3 AND id < ?4
                 ORDER BY id DESC LIMIT ?5"
            ),
            (None, _) if f.state.is_some() => format!(
                "SELECT {DEPLOYMENT_COLUMNS} FROM deployments INDEXED BY deployments_state
                 WHERE (?1 IS NULL OR app = ?1) AND (?2 IS NULL OR service = ?2) AND state = ?3 AND id < ?4
                 ORDER BY id DESC LIMIT ?5"
            ),
            (Some(_), Some(_)) => format!(
                "SELECT {DEPLOYMENT_COLUMNS} FROM deployments INDEXED BY deployments_service
                 WHERE app = ?1 AND service = ?2 AND (?3 IS NULL OR state = ?3) AND id < ?4
                 ORDER BY id DESC LIMIT ?5"
            ),
            (Some(_), None) => format!(
                "SELECT {DEPLOYMENT_COLUMNS} FROM deployments INDEXED BY deployments_app
                 WHERE app = ?1 AND (?2 IS NULL OR service = ?2) AND (?3 IS NULL OR state = ?3) AND id < ?4
                 ORDER BY id DESC LIMIT ?5"
            ),
            (None, _) => format!(
                "SELECT {DEPLOYMENT_COLUMNS} FROM deployments
                 WHERE (?1 IS NULL OR app = ?1) AND (?2 IS NULL OR service = ?2) AND (?3 IS NULL OR state = ?3) AND id < ?4
                 ORDER BY id DESC LIMIT ?5"
            ),
        };
        Ok(
            with_db!(&self.db, pool, q => sqlx::query_as::<_, Deployment>(q(sqlx::AssertSqlSafe(sql)))
            .bind(&f.app)
            .bind(&f.service)
            .bind(f.state)
            .bind(before)
            .bind(f.limit)
            .fetch_all(pool)
            .await)?,
        )
    }

    /// Deployment ids per delivery for deliveries `lo..=hi` (one list page), in one query.
    pub(crate) async fn deployment_ids_between(
        &self,
        lo: i64,
        hi: i64,
    ) -> Result<std::collections::HashMap<i64, Vec<i64>>, StoreError> {
        let rows: Vec<(i64, i64)> = with_db!(&self.db, pool, q => sqlx::query_as(
            q("SELECT delivery_id, id FROM deployments INDEXED BY deployments_delivery
             WHERE delivery_id BETWEEN ?1 AND ?2 ORDER BY id"),
        )
        .bind(lo)
        .bind(hi)
        .fetch_all(pool)
        .await)?;
        let mut map: std::collections::HashMap<i64, Vec<i64>> = std::collections::HashMap::new();
        for (delivery, id) in rows {
            map.entry(delivery).or_default().push(id);
        }
        Ok(map)
    }

    /// Every deployment a delivery caused, oldest first (the delivery inspector), including
    /// retries of them, which keep their delivery.
    pub(crate) async fn deployments_of(
        &self,
        delivery_id: i64,
    ) -> Result<Vec<Deployment>, StoreError> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {DEPLOYMENT_COLUMNS} FROM deployments WHERE delivery_id = ?1 ORDER BY id"
        ));
        Ok(
            with_db!(&self.db, pool, q => sqlx::query_as::<_, Deployment>(q(sql))
            .bind(delivery_id)
            .fetch_all(pool)
            .await)?,
        )
    }

    /// A service's newest deployment that was not skipped, for `ferry status`.
    pub(crate) async fn latest_of(
        &self,
        app: &str,
        service: &str,
    ) -> Result<Option<Deployment>, StoreError> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {DEPLOYMENT_COLUMNS} FROM deployments INDEXED BY deployments_service
             WHERE app = ?1 AND service = ?2 AND state != ?3 ORDER BY id DESC LIMIT 1"
        ));
        Ok(
            with_db!(&self.db, pool, q => sqlx::query_as::<_, Deployment>(q(sql))
            .bind(app)
            .bind(service)
            .bind(DeploymentState::Skipped)
            .fetch_optional(pool)
            .await)?,
        )
    }

    /// The id and commit of a service's newest succeeded deployment that names a commit:
    /// what a checkout goes back to for a deployment that names none.
    pub(crate) async fn last_commit_of(
        &self,
        app: &str,
        service: &str,
    ) -> Result<Option<(i64, String)>, StoreError> {
        let sql = "SELECT id, git_commit FROM deployments INDEXED BY deployments_service
             WHERE app = ?1 AND service = ?2 AND state = ?3 AND git_commit IS NOT NULL
             ORDER BY id DESC LIMIT 1";
        Ok(
            with_db!(&self.db, pool, q => sqlx::query_as::<_, (i64, String)>(q(sql))
            .bind(app)
            .bind(service)
            .bind(DeploymentState::Succeeded)
            .fetch_optional(pool)
            .await)?,
        )
    }

    /// A service's newest succeeded deployment: its current version.
    pub(crate) async fn current_of(
        &self,
        app: &str,
        service: &str,
    ) -> Result<Option<Deployment>, StoreError> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {DEPLOYMENT_COLUMNS} FROM deployments INDEXED BY deployments_service
             WHERE app = ?1 AND service = ?2 AND state = ?3 ORDER BY id DESC LIMIT 1"
        ));
        Ok(
            with_db!(&self.db, pool, q => sqlx::query_as::<_, Deployment>(q(sql))
            .bind(app)
            .bind(service)
            .bind(DeploymentState::Succeeded)
            .fetch_optional(pool)
            .await)?,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::states::DeliveryStatus;
    #[allow(unused_imports)]
    use crate::store::db::{with_db, with_tx};

    /// A deployment of `a/s` in `state`, with `commit`.
    async fn deployment(store: &Store, state: DeploymentState, commit: Option<&str>) -> i64 {
        let delivery: i64 = with_db!(&store.db, pool, q => sqlx::query_scalar(q("INSERT INTO deliveries (app, source, received_at, verified, status, headers) VALUES ('a', 'manual', 1, TRUE, ?1, '{}') RETURNING id"))
            .bind(DeliveryStatus::Planned)
            .fetch_one(pool)
            .await)
            .expect("delivery");
        with_db!(&store.db, pool, q => sqlx::query_scalar(q("INSERT INTO deployments (app, service, delivery_id, state, source, event, created_at, git_commit) VALUES ('a', 's', ?1, ?2, 'manual', 'redeploy', 1, ?3) RETURNING id"))
            .bind(delivery)
            .bind(state)
            .bind(commit)
            .fetch_one(pool)
            .await)
            .expect("deployment")
    }

    /// A checkout goes back to the newest succeeded deployment that names a commit; the commit
    /// a redeploy checked out is recorded on it, never over one it named.
    #[tokio::test]
    async fn the_last_deployed_commit_and_the_one_a_redeploy_found() {
        let (c1, c2, c3) = ("1".repeat(40), "2".repeat(40), "3".repeat(40));
        for (_dir, store, _intake) in Store::engines().await {
            eprintln!("on {}", store.engine());
            assert_eq!(store.last_commit_of("a", "s").await.unwrap(), None);
            let first = deployment(&store, DeploymentState::Succeeded, Some(&c1)).await;
            deployment(&store, DeploymentState::Failed, Some(&c2)).await;
            let redeploy = deployment(&store, DeploymentState::Succeeded, None).await;
            let last = store.last_commit_of("a", "s").await.unwrap();
            assert_eq!(
                last,
                Some((first, c1.clone())),
                "failed and commitless ones skipped"
            );

            store.set_git_commit(redeploy, &c3).await.unwrap();
            assert_eq!(
                store.last_commit_of("a", "s").await.unwrap(),
                Some((redeploy, c3.clone()))
            );
            store.set_git_commit(first, &c2).await.unwrap();
            let d = store.deployment(first).await.unwrap().unwrap();
            assert_eq!(
                d.git_commit.as_deref(),
                Some(c1.as_str()),
                "a named commit stays"
            );
            assert_eq!(store.last_commit_of("a", "other").await.unwrap(), None);
        }
    }
}
