//! The GitHub deployments ferry created (migration 0009): for each of its deployments that a
//! GitHub push caused, the id GitHub gave the deployment that reports on it. Written by
//! [`Store::record_attempt`] in the transaction that marks the creating notification sent
//! (`Attempt::Created`), so a status never finds the creation sent but its id lost; read by
//! `notify::github` when it posts that deployment's statuses.

use super::db::{Tx, with_db, with_tx};
use super::{Store, StoreError};
use crate::states::NotificationState;

impl Store {
    /// The id of the GitHub deployment ferry created for its deployment `deployment_id`.
    pub(crate) async fn github_deployment(
        &self,
        deployment_id: i64,
    ) -> Result<Option<i64>, StoreError> {
        Ok(
            with_db!(&self.db, pool, q => sqlx::query_scalar(q("SELECT github_id FROM github_deployments WHERE deployment_id = ?1"))
                .bind(deployment_id)
                .fetch_optional(pool)
                .await)?,
        )
    }

    /// The oldest dead notification of `kind` about `deployment_id`, with its last error: for
    /// GitHub, the creation that failed for good when a status finds no GitHub deployment.
    pub(crate) async fn first_dead_notification(
        &self,
        deployment_id: i64,
        kind: &str,
    ) -> Result<Option<(i64, Option<String>)>, StoreError> {
        Ok(with_db!(&self.db, pool, q => sqlx::query_as(
            q("SELECT id, last_error FROM notifications INDEXED BY notifications_state
             WHERE state = ?1 AND deployment_id = ?2 AND kind = ?3 ORDER BY id LIMIT 1"),
        )
        .bind(NotificationState::Dead)
        .bind(deployment_id)
        .bind(kind)
        .fetch_optional(pool)
        .await)?)
    }
}

/// Remembers that notification `notification` created GitHub deployment `github_id` for its
/// deployment (inside `record_attempt`'s transaction). A creation sent again (a manual retry)
/// replaces the id: the statuses after it go to the newer deployment.
pub(super) async fn remember(
    tx: &mut Tx,
    notification: i64,
    github_id: i64,
    now: i64,
) -> Result<(), sqlx::Error> {
    with_tx!(tx, tx, q => sqlx::query(
        q("INSERT INTO github_deployments (deployment_id, github_id, notification_id, created_at)
         SELECT deployment_id, ?2, id, ?3 FROM notifications
         WHERE id = ?1 AND deployment_id IS NOT NULL
         ON CONFLICT (deployment_id) DO UPDATE SET
           github_id = excluded.github_id, notification_id = excluded.notification_id,
           created_at = excluded.created_at"),
    )
    .bind(notification)
    .bind(github_id)
    .bind(now)
    .execute(tx)
    .await
    .map(drop))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::{Attempt, NewNotification};
    use super::*;
    use crate::states::{DeploymentState, EventType};
    #[allow(unused_imports)]
    use crate::store::db::{with_db, with_tx};

    /// A creation recorded sent stores its GitHub id for its deployment, in the same
    /// transaction; one recorded dead is what a later status finds instead.
    #[tokio::test]
    async fn created_ids_are_stored_with_the_sent_creation() {
        for (_dir, store, _intake) in Store::engines().await {
            eprintln!("on {}", store.engine());
            with_db!(&store.db, pool, q => sqlx::query(q("INSERT INTO deliveries (app, source, received_at, verified, status, headers) VALUES ('a', 'github', 1, TRUE, 'planned', '{}')"))
            .execute(pool)
            .await.map(drop))
            .unwrap();
            for _ in 0..2 {
                with_db!(&store.db, pool, q => sqlx::query(q("INSERT INTO deployments (app, service, delivery_id, state, source, event, created_at) VALUES ('a', 's', 1, ?1, 'github', 'push', 1)"))
                .bind(DeploymentState::Queued)
                .execute(pool)
                .await.map(drop))
                .unwrap();
            }
            let events = store.unfanned_events(10).await.unwrap();
            let list: Vec<NewNotification> = events
                .iter()
                .map(|e| NewNotification {
                    uid: format!("msg_{}", e.id),
                    event_id: e.id,
                    target: "github:a".into(),
                    kind: "github".into(),
                    event: EventType::DeploymentQueued,
                    app: "a".into(),
                    service: Some("s".into()),
                    deployment_id: e.deployment_id,
                    delivery_id: e.delivery_id,
                    receiver: "https://api.github.com".into(),
                    url: None,
                    body: "{}".into(),
                })
                .collect();
            let ids: Vec<i64> = events.iter().map(|e| e.id).collect();
            store.fan_out(&list, &ids, 1000).await.unwrap();
            let heads = store.queue_heads().await.unwrap();
            let (first, second) = (
                &heads[0],
                store.notification(heads[0].id + 1).await.unwrap().unwrap(),
            );
            let (d1, d2) = (first.deployment_id.unwrap(), second.deployment_id.unwrap());
            assert_eq!(store.github_deployment(d1).await.unwrap(), None);
            let created = Attempt::Created {
                status: Some(201),
                github_deployment: 9001,
            };
            assert!(
                store
                    .record_attempt(first.id, &created, 2000)
                    .await
                    .unwrap()
            );
            assert_eq!(store.github_deployment(d1).await.unwrap(), Some(9001));
            assert!(
                !store
                    .record_attempt(
                        first.id,
                        &Attempt::Created {
                            status: Some(201),
                            github_deployment: 1
                        },
                        2000
                    )
                    .await
                    .unwrap(),
                "not pending: nothing recorded"
            );
            assert_eq!(store.github_deployment(d1).await.unwrap(), Some(9001));
            let n = store.notification(first.id).await.unwrap().unwrap();
            assert_eq!(
                (n.state, n.last_status),
                (NotificationState::Sent, Some(201))
            );

            assert_eq!(
                store.first_dead_notification(d2, "github").await.unwrap(),
                None
            );
            let dead = Attempt::Dead {
                status: Some(422),
                error: "answered 422: Validation Failed".into(),
            };
            store.record_attempt(second.id, &dead, 3000).await.unwrap();
            assert_eq!(
                store.first_dead_notification(d2, "github").await.unwrap(),
                Some((second.id, Some("answered 422: Validation Failed".into())))
            );
            assert_eq!(
                store.first_dead_notification(d2, "webhook").await.unwrap(),
                None
            );
            assert_eq!(store.github_deployment(d2).await.unwrap(), None);
        }
    }
}
