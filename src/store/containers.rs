//! Container events in the outbox's journal: what the watcher (`crate::watch`) saw happen to
//! a managed container, recorded as an `events` row (migration 0010) that the notify worker
//! fans out like the rows the triggers write; and whether a service was being deployed at a
//! given time (its containers' events then are ferry's own doing).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::db::with_db;
use super::{DeploymentState, JournalEvent, Store, StoreError};
use crate::states::EventType;

/// How long a container event lets hook deliveries waiting for a commit go first.
const PATIENCE: Duration = Duration::from_millis(50);

/// What a container event says of the container (the journal's `detail`, as JSON).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ContainerDetail {
    /// Its name.
    pub(crate) container: String,
    pub(crate) container_id: String,
    /// The image as Docker names it for the container (the reference it was created from).
    pub(crate) image: Option<String>,
    /// `container.died` and `container.restarted`: how the process ended.
    pub(crate) exit_code: Option<i64>,
    /// The kernel's OOM killer ended it.
    #[serde(default)]
    pub(crate) oom_killed: bool,
    /// `container.restarted`: how often Docker has restarted it.
    pub(crate) restart_count: Option<i64>,
    /// `container.unhealthy`: what the last healthcheck printed (cut to 500 bytes).
    pub(crate) health_output: Option<String>,
    /// Events of this container and type held back by the rate limit since the last one.
    #[serde(default)]
    pub(crate) suppressed: u64,
}

/// A container event to record.
#[derive(Debug, Clone)]
pub(crate) struct ContainerEvent {
    /// When Docker says it happened (unix ms).
    pub(crate) at: i64,
    pub(crate) event: EventType,
    pub(crate) app: String,
    pub(crate) service: String,
    pub(crate) detail: ContainerDetail,
}

impl JournalEvent {
    /// What a container event says of the container; `None` for other events (and for a
    /// `detail` this version cannot read).
    pub(crate) fn container(&self) -> Option<ContainerDetail> {
        serde_json::from_str(self.detail.as_deref()?).ok()
    }
}

impl Store {
    /// Whether a deployment of the service ran at `at` (unix ms), give or take `margin` ms:
    /// started by then, and running still or ended no earlier.
    pub(crate) async fn deploying_at(
        &self,
        app: &str,
        service: &str,
        at: i64,
        margin: i64,
    ) -> Result<bool, StoreError> {
        Ok(with_db!(&self.db, pool, q => sqlx::query_scalar(
            q("SELECT EXISTS (SELECT 1 FROM deployments INDEXED BY deployments_service
               WHERE app = ?1 AND service = ?2 AND started_at IS NOT NULL
                 AND started_at <= ?3 + ?4 AND (state = ?5 OR finished_at >= ?3 - ?4))"),
        )
        .bind(app)
        .bind(service)
        .bind(at)
        .bind(margin)
        .bind(DeploymentState::Running)
        .fetch_one(pool)
        .await)?)
    }

    /// Records a container event in the journal, with the service's current deployment (its
    /// newest success, if any) as the event's deployment: what was running.
    pub(crate) async fn record_container_event(
        &self,
        e: &ContainerEvent,
    ) -> Result<(), StoreError> {
        let detail =
            serde_json::to_string(&e.detail).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
        self.gate.yield_to_intake(PATIENCE).await;
        let _gate = self.gate.lock().await;
        with_db!(&self.db, pool, q => sqlx::query(
            q("INSERT INTO events (at, type, app, service, deployment_id, detail)
             VALUES (?1, ?2, ?3, ?4,
                     (SELECT id FROM deployments INDEXED BY deployments_service
                      WHERE app = ?3 AND service = ?4 AND state = ?5 ORDER BY id DESC LIMIT 1),
                     ?6)"),
        )
        .bind(e.at)
        .bind(e.event)
        .bind(&e.app)
        .bind(&e.service)
        .bind(DeploymentState::Succeeded)
        .bind(detail)
        .execute(pool)
        .await.map(drop))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::states::DeliveryStatus;
    #[allow(unused_imports)]
    use crate::store::db::{with_db, with_tx};

    /// A deployment of `a/s` in `state`, run from `started` to `finished` (unix ms).
    async fn deployment(
        store: &Store,
        state: DeploymentState,
        started: Option<i64>,
        finished: Option<i64>,
    ) -> i64 {
        let delivery: i64 = with_db!(&store.db, pool, q => sqlx::query_scalar(q("INSERT INTO deliveries (app, source, received_at, verified, status, headers) VALUES ('a', 'generic', 1, TRUE, ?1, '{}') RETURNING id"))
            .bind(DeliveryStatus::Planned)
            .fetch_one(pool)
            .await)
            .expect("delivery");
        with_db!(&store.db, pool, q => sqlx::query_scalar(q("INSERT INTO deployments (app, service, delivery_id, state, source, event, created_at, started_at, finished_at, image_tag, image_digest) VALUES ('a', 's', ?1, ?2, 'registry', 'push', 1, ?3, ?4, '1.0.0', 'sha256:00') RETURNING id"))
            .bind(delivery)
            .bind(state)
            .bind(started)
            .bind(finished)
            .fetch_one(pool)
            .await)
            .expect("deployment")
    }

    /// A service is being deployed from its deployment's start to its end (give or take the
    /// margin), and for as long as one runs; not before, after, or for queued or skipped ones.
    #[tokio::test]
    async fn deploying_at_covers_each_run_and_the_margin() {
        for (_dir, store, _intake) in Store::engines().await {
            eprintln!("on {}", store.engine());
            deployment(&store, DeploymentState::Succeeded, Some(1000), Some(2000)).await;
            deployment(&store, DeploymentState::Skipped, None, Some(5000)).await;
            deployment(&store, DeploymentState::Queued, None, None).await;
            let at = |t: i64| {
                let store = store.clone();
                async move { store.deploying_at("a", "s", t, 100).await.unwrap() }
            };
            assert!(!at(899).await);
            assert!(at(900).await, "the margin before the start");
            assert!(at(1500).await);
            assert!(at(2100).await, "the margin after the end");
            assert!(!at(2101).await);
            assert!(!at(5000).await, "a skipped deployment never ran");
            assert!(!store.deploying_at("a", "other", 1500, 100).await.unwrap());
            deployment(&store, DeploymentState::Running, Some(9000), None).await;
            assert!(!at(8000).await);
            assert!(at(1_000_000).await, "running: until it ends");
        }
    }

    /// A container event is journalled with the service's newest success as its deployment,
    /// and its detail reads back; it is fanned out like any other event.
    #[tokio::test]
    async fn container_events_name_the_current_deployment() {
        for (_dir, store, _intake) in Store::engines().await {
            eprintln!("on {}", store.engine());
            let old = deployment(&store, DeploymentState::Succeeded, Some(1), Some(2)).await;
            let current = deployment(&store, DeploymentState::Succeeded, Some(3), Some(4)).await;
            deployment(&store, DeploymentState::RolledBack, Some(5), Some(6)).await;
            assert!(old < current);
            let before = store.unfanned_events(100).await.unwrap().len();
            let detail = ContainerDetail {
                container: "shop-api".into(),
                container_id: "abc".into(),
                exit_code: Some(137),
                ..Default::default()
            };
            let event = ContainerEvent {
                at: 42,
                event: EventType::ContainerDied,
                app: "a".into(),
                service: "s".into(),
                detail: detail.clone(),
            };
            store.record_container_event(&event).await.unwrap();
            let nobody = ContainerEvent {
                service: "never-deployed".into(),
                ..event
            };
            store.record_container_event(&nobody).await.unwrap();
            let events = store.unfanned_events(100).await.unwrap();
            let [died, unknown] = &events[before..] else {
                panic!("two events: {events:#?}");
            };
            assert_eq!(died.event, EventType::ContainerDied);
            assert_eq!((died.at, died.service.as_deref()), (42, Some("s")));
            assert_eq!(died.deployment_id, Some(current));
            assert_eq!(died.container(), Some(detail));
            assert_eq!(unknown.deployment_id, None);
            let deployment_event = &events[0];
            assert_eq!(deployment_event.container(), None);
        }
    }
}
