//! Retention's deletes (`server.keep`, driven by `crate::retention`): old deliveries with
//! their deployments, except what is still needed.

use super::db::with_tx;
use super::{DeliveryStatus, DeploymentState, Store, StoreError};

impl Store {
    /// Deletes deliveries received before `cutoff` (unix ms) with their deployments, in small
    /// transactions so hook requests are not held up. Kept regardless of age: deliveries not yet
    /// planned, and those whose deployments are queued, running, or the current version of
    /// their service. Returns the ids of the deleted deployments (their logs go too).
    pub(crate) async fn prune(&self, cutoff: i64) -> Result<(usize, Vec<i64>), StoreError> {
        let mut deliveries = 0;
        let mut deployments = Vec::new();
        loop {
            let _gate = self.gate.lock().await;
            let mut tx = self.db.begin().await?;
            let ids: Vec<i64> = with_tx!(&mut tx, tx, q => sqlx::query_scalar(
                q("SELECT d.id FROM deliveries d INDEXED BY deliveries_received
                 WHERE d.received_at < ?1 AND d.status != ?2
                   AND NOT EXISTS (
                     SELECT 1 FROM deployments p WHERE p.delivery_id = d.id AND (
                       p.state IN (?3, ?4)
                       OR p.id = (SELECT MAX(c.id) FROM deployments c INDEXED BY deployments_service
                                  WHERE c.app = p.app AND c.service = p.service AND c.state = ?5)))
                 ORDER BY d.received_at LIMIT 500"),
            )
            .bind(cutoff)
            .bind(DeliveryStatus::Received)
            .bind(DeploymentState::Queued)
            .bind(DeploymentState::Running)
            .bind(DeploymentState::Succeeded)
            .fetch_all(&mut *tx)
            .await?);
            if ids.is_empty() {
                tx.commit().await?;
                return Ok((deliveries, deployments));
            }
            with_tx!(&mut tx, tx, q => for id in &ids {
                sqlx::query(
                    q("DELETE FROM github_deployments WHERE deployment_id IN (
                       SELECT id FROM deployments WHERE delivery_id = ?1)"),
                )
                .bind(id)
                .execute(&mut *tx)
                .await?;
                let gone: Vec<i64> = sqlx::query_scalar(
                    q("DELETE FROM deployments WHERE delivery_id = ?1 RETURNING id"),
                )
                .bind(id)
                .fetch_all(&mut *tx)
                .await?;
                deployments.extend(gone);
                // Replays point at their original; the link may dangle once it is pruned.
                sqlx::query(q("UPDATE deliveries SET replay_of = NULL WHERE replay_of = ?1"))
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(q("DELETE FROM deliveries WHERE id = ?1"))
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            });
            tx.commit().await?;
            deliveries += ids.len();
        }
    }
}
