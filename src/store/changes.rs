//! What the store tells the live hub (`crate::live`): each write that changes a delivery, a
//! deployment's state or a step publishes it once, after its commit and before it releases the
//! write gate — so viewers see changes in commit order, and a row read back under the gate is
//! the row as committed. Nothing is read or built when nobody watches ([`Hub::listening`]).

use super::db::{Tx, with_tx};
use super::deployments::DEPLOYMENT_COLUMNS;
use super::{DeliveryStatus, Deployment, Store, StoreError};
use crate::live::{Change, Hub, Kind};
use crate::timefmt::json_time;
use serde::Serialize;

/// A delivery as `event: delivery` shows it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub(crate) struct DeliveryChange {
    pub(crate) id: i64,
    pub(crate) app: String,
    pub(crate) source: String,
    pub(crate) event: Option<String>,
    pub(crate) status: DeliveryStatus,
    pub(crate) error: Option<String>,
    pub(crate) received_at: i64,
}

impl DeliveryChange {
    fn into_change(self) -> Change {
        Change::new(Kind::Delivery, self.app.clone(), move || {
            serde_json::json!({
                "id": self.id,
                "app": self.app,
                "source": self.source,
                "event": self.event,
                "status": self.status,
                "error": self.error,
                "received_at": json_time(Some(self.received_at)),
            })
        })
    }
}

/// `event: deployment`: the deployment as the API shows it.
fn deployment_change(d: Deployment) -> Change {
    Change::new(Kind::Deployment, d.app.clone(), move || d.json())
}

impl Store {
    /// The hub this store publishes its changes to.
    pub(crate) fn live(&self) -> &Hub {
        &self.live
    }

    /// Publishes the deployments `ids` as they are now. Called after a commit, under the write
    /// gate; a failed read is logged (the change is committed all the same).
    pub(super) async fn publish_deployments(&self, ids: &[i64]) {
        if ids.is_empty() {
            return;
        }
        self.announce(super::broadcast::Announced {
            deployments: ids.to_vec(),
            ..Default::default()
        })
        .await;
        if !self.live.listening() {
            return;
        }
        let read = async {
            let mut tx = self.db.begin().await?;
            let rows = deployments_by_id(&mut tx, ids).await?;
            tx.commit().await?;
            Ok::<_, StoreError>(rows)
        };
        match read.await {
            Ok(rows) => publish_deployments(&self.live, rows),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read changed deployments for live viewers")
            }
        }
    }
}

/// Publishes deployments read earlier.
pub(super) fn publish_deployments(hub: &Hub, rows: Vec<Deployment>) {
    for d in rows {
        hub.publish(|| deployment_change(d));
    }
}

/// Publishes deliveries read earlier.
pub(super) fn publish_deliveries(hub: &Hub, rows: Vec<DeliveryChange>) {
    for d in rows {
        hub.publish(|| d.into_change());
    }
}

/// A delivery the intake writer has just committed.
pub(super) fn publish_delivery(hub: &Hub, d: impl FnOnce() -> DeliveryChange) {
    hub.publish(|| d().into_change());
}

/// The deployments `ids`, through `tx` (which sees its own writes).
pub(super) async fn deployments_by_id(
    tx: &mut Tx,
    ids: &[i64],
) -> Result<Vec<Deployment>, StoreError> {
    let mut rows = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(512) {
        with_tx!(&mut *tx, conn, q => {
            let mut q = sqlx::QueryBuilder::new(format!(
                "SELECT {DEPLOYMENT_COLUMNS} FROM deployments WHERE id IN ("
            ));
            let mut list = q.separated(", ");
            for id in chunk {
                list.push_bind(*id);
            }
            q.push(") ORDER BY id");
            rows.extend(q.build_query_as::<Deployment>().fetch_all(&mut *conn).await?);
        });
    }
    Ok(rows)
}

/// The deliveries `ids` as `event: delivery` shows them.
pub(super) async fn deliveries_by_id(
    tx: &mut Tx,
    ids: &[i64],
) -> Result<Vec<DeliveryChange>, StoreError> {
    let mut rows = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(512) {
        with_tx!(&mut *tx, conn, q => {
            let mut q = sqlx::QueryBuilder::new(
                "SELECT id, app, source, event, status, error, received_at FROM deliveries WHERE id IN (",
            );
            let mut list = q.separated(", ");
            for id in chunk {
                list.push_bind(*id);
            }
            q.push(") ORDER BY id");
            rows.extend(q.build_query_as::<DeliveryChange>().fetch_all(&mut *conn).await?);
        });
    }
    Ok(rows)
}
