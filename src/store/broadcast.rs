//! Live changes across replicas (PostgreSQL): what one replica commits, the others' viewers
//! see. Each write that publishes to this replica's hub (`changes.rs`) also announces the ids
//! it changed on the channel [`CHANNEL`] (`pg_notify`, inside the committing transaction where
//! there is one, so it is delivered on commit and in commit order); every replica listens,
//! and for an announcement of another replica reads those rows and publishes them to its own
//! hub — only when somebody watches there. On SQLite there is one ferry: nothing to announce.
//!
//! An announcement names its origin (a random id per process), so a replica skips its own.
//! Notifications are lost while a listener reconnects; live views are a view, and the API's
//! lists stay the record.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sqlx::postgres::{PgConnection, PgListener, PgPool};

use super::changes::{
    deliveries_by_id, deployments_by_id, publish_deliveries, publish_deployments,
};
use super::db::{Db, Tx};
use super::{Store, StoreError};

/// The channel every replica listens on.
const CHANNEL: &str = "ferry_changes";

/// Ids per announcement: PostgreSQL caps a payload at 8,000 bytes.
const IDS_PER_NOTE: usize = 400;

/// What one commit changed, by id.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct Announced {
    /// The announcing process (see [`origin`]).
    pub(super) origin: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) deployments: Vec<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) deliveries: Vec<i64>,
    /// (deployment id, step seq)
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) steps: Vec<(i64, i64)>,
}

/// An id for this process's announcements: its pid and start time in nanoseconds (unique
/// among the replicas of one database, which start at different times or on different pids).
pub(super) fn origin() -> Arc<str> {
    let started = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
    Arc::from(format!("{}-{started}", std::process::id()))
}

impl Announced {
    pub(super) fn is_empty(&self) -> bool {
        self.deployments.is_empty() && self.deliveries.is_empty() && self.steps.is_empty()
    }

    /// The payloads to send: each under PostgreSQL's size cap.
    fn payloads(&self, origin: &str) -> Vec<String> {
        let mut out = Vec::new();
        let chunks = |v: &[i64]| {
            v.chunks(IDS_PER_NOTE)
                .map(<[i64]>::to_vec)
                .collect::<Vec<_>>()
        };
        for deployments in chunks(&self.deployments) {
            out.push(Announced {
                origin: origin.to_string(),
                deployments,
                ..Default::default()
            });
        }
        for deliveries in chunks(&self.deliveries) {
            out.push(Announced {
                origin: origin.to_string(),
                deliveries,
                ..Default::default()
            });
        }
        for steps in self.steps.chunks(IDS_PER_NOTE / 2) {
            out.push(Announced {
                origin: origin.to_string(),
                steps: steps.to_vec(),
                ..Default::default()
            });
        }
        out.iter()
            .filter_map(|a| serde_json::to_string(a).ok())
            .collect()
    }
}

/// Announces `what` on `conn` (in its transaction, if one is open there).
pub(super) async fn announce_on(
    conn: &mut PgConnection,
    origin: &str,
    what: &Announced,
) -> Result<(), sqlx::Error> {
    for payload in what.payloads(origin) {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(payload)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

impl Store {
    /// Announces a committed change to the other replicas (PostgreSQL; a failure is logged:
    /// the change is committed all the same).
    pub(super) async fn announce(&self, what: Announced) {
        let Db::Postgres(pool) = &self.db else {
            return;
        };
        if what.is_empty() {
            return;
        }
        let sent = async {
            let mut conn = pool.acquire().await?;
            announce_on(&mut conn, &self.origin, &what).await
        };
        if let Err(e) = sent.await {
            tracing::warn!(error = %e, "cannot announce a change to other replicas");
        }
    }

    /// Listens for other replicas' announcements and publishes what they changed to this
    /// replica's hub, until the process ends (PostgreSQL only).
    pub(super) fn listen_to_replicas(&self) {
        let Db::Postgres(pool) = &self.db else {
            return;
        };
        let pool = pool.clone();
        let store = self.clone();
        tokio::spawn(async move {
            loop {
                if let Err(e) = listen(&pool, &store).await {
                    tracing::warn!(error = %e, "listening to other replicas failed; again in 1s");
                }
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        });
    }
}

async fn listen(pool: &PgPool, store: &Store) -> Result<(), StoreError> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    loop {
        let note = listener.recv().await?;
        let Ok(what) = serde_json::from_str::<Announced>(note.payload()) else {
            tracing::warn!("an announcement from another replica could not be read");
            continue;
        };
        if *what.origin == *store.origin || !store.live.listening() {
            continue;
        }
        let mut tx = store.db.begin().await?;
        let deployments = deployments_by_id(&mut tx, &what.deployments).await?;
        let deliveries = deliveries_by_id(&mut tx, &what.deliveries).await?;
        tx.commit().await?;
        publish_deliveries(&store.live, deliveries);
        publish_deployments(&store.live, deployments);
        for (deployment, seq) in what.steps {
            store.publish_step_here(deployment, seq).await;
        }
    }
}

/// Announces `what` inside the transaction `tx` (PostgreSQL), so it is delivered on commit.
pub(super) async fn announce_in(
    tx: &mut Tx,
    origin: &str,
    what: &Announced,
) -> Result<(), StoreError> {
    if let Tx::Postgres(tx) = tx
        && !what.is_empty()
    {
        announce_on(tx, origin, what).await?;
    }
    Ok(())
}
