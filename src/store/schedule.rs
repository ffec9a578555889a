//! What the reconcile task (`crate::reconcile`) reads to decide whether a service's schedule
//! is due: its last success, when it last ran something and when it last reconciled — all
//! from the store, so a restart (or another replica taking the lead) continues the schedule
//! where it was, rather than reconciling at once or forgetting. Each is one lookup in an index
//! of its own (migration 0017).

use sqlx::Row;

use super::db::with_db;
use super::{DeploymentState, Store, StoreError};

/// A service's reconcile clock, as stored (unix ms).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ReconcileClock {
    /// Its newest succeeded deployment, if any: what a reconcile runs again.
    pub(crate) last_success: Option<i64>,
    /// The newest end of a deployment that ran (started): a deploy resets the clock.
    pub(crate) last_run_end: Option<i64>,
    /// When its newest deployment with event `reconcile` was planned (queued, skipped or
    /// superseded alike): at most one reconcile, or one skip, per interval.
    pub(crate) last_reconcile: Option<i64>,
}

impl Store {
    /// The reconcile clock of one service.
    pub(crate) async fn reconcile_clock(
        &self,
        app: &str,
        service: &str,
    ) -> Result<ReconcileClock, StoreError> {
        with_db!(&self.db, pool, q => {
            let row = sqlx::query(q(
                "SELECT
                   (SELECT id FROM deployments INDEXED BY deployments_service
                     WHERE app = ?1 AND service = ?2 AND state = ?3 ORDER BY id DESC LIMIT 1),
                   (SELECT finished_at FROM deployments INDEXED BY deployments_ran
                     WHERE app = ?1 AND service = ?2 AND started_at IS NOT NULL AND finished_at IS NOT NULL
                     ORDER BY finished_at DESC LIMIT 1),
                   (SELECT created_at FROM deployments INDEXED BY deployments_reconciles
                     WHERE app = ?1 AND service = ?2 AND event = 'reconcile'
                     ORDER BY created_at DESC LIMIT 1)",
            ))
            .bind(app)
            .bind(service)
            .bind(DeploymentState::Succeeded)
            .fetch_one(pool)
            .await?;
            Ok(ReconcileClock {
                last_success: row.try_get(0)?,
                last_run_end: row.try_get(1)?,
                last_reconcile: row.try_get(2)?,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::ReconcileClock;
    use crate::store::{DeploymentState, Store};

    #[tokio::test]
    async fn the_clock_counts_runs_and_reconciles_but_not_skips_of_other_causes() {
        use DeploymentState::*;
        for (_dir, store, _intake) in Store::engines().await {
            eprintln!("on {}", store.engine());
            store.test_delivery().await;
            let none = store.reconcile_clock("a", "s").await.unwrap();
            assert_eq!(none, ReconcileClock::default());
            let ok = store
                .test_deployment(Succeeded, "push", (100, Some(110), Some(200)))
                .await;
            store
                .test_deployment(Failed, "push", (300, Some(310), Some(400)))
                .await;
            // Never ran: a push to another branch, a superseded one, one still running.
            store
                .test_deployment(Skipped, "push", (900, None, Some(900)))
                .await;
            store
                .test_deployment(Superseded, "push", (901, None, Some(950)))
                .await;
            store
                .test_deployment(Running, "push", (902, Some(903), None))
                .await;
            let c = store.reconcile_clock("a", "s").await.unwrap();
            assert_eq!(
                c,
                ReconcileClock {
                    last_success: Some(ok),
                    last_run_end: Some(400),
                    last_reconcile: None,
                }
            );
            store
                .test_deployment(Skipped, "reconcile", (500, None, Some(500)))
                .await;
            store
                .test_deployment(Skipped, "reconcile", (450, None, Some(450)))
                .await;
            let c = store.reconcile_clock("a", "s").await.unwrap();
            assert_eq!(c.last_reconcile, Some(500));
            assert_eq!(
                store.reconcile_clock("a", "other").await.unwrap(),
                ReconcileClock::default()
            );
        }
    }
}
