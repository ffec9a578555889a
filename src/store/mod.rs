//! The store: every delivery and deployment, in SQLite (WAL, synchronous commits).
//!
//! Only this module knows SQL. Hook requests write through [`batch`] (group commit: concurrent
//! deliveries share one transaction and so one fsync); everything else (planner, lanes, API) uses
//! the small connection pool here. Times are unix milliseconds in the database.
//!
//! [`Store`] is one type whose methods are spread over one file per concern:
//! - `open.rs`: the data dir, SQLite's settings, migrations; `ping`.
//! - `gate.rs`: the write gate every write transaction holds (hook deliveries go first).
//! - [`batch`]: the intake writer (group commit, fsync of the WAL, refused deliveries capped).
//! - `checkpoint.rs`: WAL checkpoints on a thread of their own, never inside a commit.
//! - `deliveries.rs`: [`Delivery`] and its reads (replay, lists, the planner's queue); bodies
//!   are rows of `delivery_bodies` (migration 0014), so status updates rewrite a small row,
//!   LZ4-compressed when that is smaller (`body.rs`).
//! - `planning.rs`: [`Planning`], the planner's transaction: deployments, statuses, notes.
//! - `history.rs`: what services hold, read through [`Planning`] ([`HeldImage`], rollbacks).
//! - `lifecycle.rs`: a deployment in the lanes: queue, start, finish; cancel.
//! - `recovery.rs`: runs cut short by a crash or shutdown: `interrupted`, and retries.
//! - `deployments.rs`: [`Deployment`] and the API's reads of it.
//! - `prune.rs`: retention's deletes.
//! - `pages.rs`: the dashboard's deliveries by status (partial indexes, or bounded windows).
//! - `outbox.rs`: the `events` journal (written by triggers) and the `notifications` queue.
//! - `changes.rs`: what each write publishes to the live hub (`crate::live`), after its commit.
//! - `schedule.rs`: a service's reconcile clock ([`ReconcileClock`]), for `crate::reconcile`.
//! - `steps.rs`: the steps of a deployment's run, written by the executors.
//! - `logs.rs`: deploy logs in `deploy_logs` (PostgreSQL: every replica reads every log),
//!   copied in chunks from the writer's file by [`LogCopy`].
//! - `github.rs`: the ids of the GitHub deployments ferry created, stored with the sent
//!   creation (`Attempt::Created`).
//! - [`copy`]: `ferry migrate`: a SQLite store (and its deploy log files) copied into an empty
//!   PostgreSQL database in one transaction. Not part of a running store.
//!
//! States are bound as values, except where a partial index needs the literal in the SQL text
//! (SQLite matches a partial index only against literals); `tests::sql_state_literals_are_states`
//! checks every such literal in these files.

mod alerts;
pub(crate) mod batch;
mod body;
mod broadcast;
mod changes;
mod checkpoint;
mod containers;
pub(crate) mod copy;
pub(crate) mod db;
mod deliveries;
mod deployments;
mod gate;
mod github;
mod history;
mod leader;
mod lifecycle;
mod logs;
mod open;
mod outbox;
mod pages;
mod planning;
mod prune;
mod recovery;
mod schedule;
mod steps;

pub(crate) use alerts::{AlertFacts, AlertFilter, AlertRow, NewAlert};
pub(crate) use batch::{Inserted, Intake, NewDelivery};
pub(crate) use containers::{ContainerDetail, ContainerEvent};
pub(crate) use deliveries::{Delivery, FullDelivery};
pub(crate) use deployments::Deployment;
pub(crate) use gate::{Gate, WriteGate};
pub(crate) use history::HeldImage;
pub(crate) use leader::Role;
pub(crate) use lifecycle::{CANCELLED_WHILE_RUNNING, CancelOutcome, Claim};
pub(crate) use logs::{GapNote, LogCopy};
pub(crate) use open::{describe_postgres, probe_postgres};
pub(crate) use outbox::{
    Attempt, JournalEvent, NewNotification, Notification, NotificationFilter, RetryOutcome,
};
pub(crate) use pages::Page;
pub(crate) use planning::{NewDeployment, Planning};
pub(crate) use schedule::ReconcileClock;
pub(crate) use steps::Step;

#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("cannot start the store's writer thread: {0}")]
    Thread(std::sync::Arc<std::io::Error>),
    #[error("the store's writer has stopped")]
    WriterGone,
    #[error("cannot flush {path} to disk: {source}")]
    Flush {
        path: String,
        source: std::sync::Arc<std::io::Error>,
    },
}

pub(crate) use crate::states::{DeliveryStatus, DeploymentState};

/// The throwaway PostgreSQL cluster the store's tests run against besides SQLite.
#[cfg(test)]
#[path = "../../tests/common/postgres.rs"]
mod test_postgres;

/// Bytes that do not compress, for tests of what bodies cost on disk (shared with `tests/it`).
#[cfg(test)]
#[path = "../../tests/common/noise.rs"]
pub(crate) mod test_noise;

#[cfg(test)]
impl Store {
    /// The stores a store test runs against, each with its intake writer: SQLite in a temp
    /// dir, then PostgreSQL (a fresh database of the throwaway cluster) — unless PostgreSQL
    /// cannot run here and `CI` is unset: then the reason is printed and SQLite runs alone.
    pub(crate) async fn engines() -> Vec<(tempfile::TempDir, Store, Intake)> {
        let mut out = Vec::new();
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, intake) = Store::open(dir.path()).await.expect("open SQLite");
        out.push((dir, store, intake));
        let postgres = tokio::task::spawn_blocking(test_postgres::database)
            .await
            .expect("join");
        match postgres {
            Ok(url) => {
                let dir = tempfile::tempdir().expect("tempdir");
                let (store, intake) =
                    Store::open_measured(dir.path(), Some(&url), std::sync::Arc::default())
                        .await
                        .expect("open PostgreSQL");
                out.push((dir, store, intake));
            }
            Err(reason) if std::env::var_os("CI").is_some() => {
                panic!("store tests need PostgreSQL when CI is set: {reason}")
            }
            Err(reason) => eprintln!("store test on SQLite only: {reason}"),
        }
        out
    }

    /// For store tests: delivery 1 of app `a`, planned, which [`Store::test_deployment`]'s
    /// deployments belong to.
    pub(crate) async fn test_delivery(&self) {
        use db::with_db;
        with_db!(&self.db, pool, q => sqlx::query(q("INSERT INTO deliveries (id, app, source, received_at, verified, status, headers) VALUES (1, 'a', 'manual', 1, TRUE, ?1, '{}')"))
            .bind(DeliveryStatus::Planned)
            .execute(pool)
            .await.map(drop))
            .expect("delivery");
    }

    /// For store tests: a deployment of `a/s` (of delivery 1) in `state` for `event`, created,
    /// started and finished at `times`; returns its id.
    pub(crate) async fn test_deployment(
        &self,
        state: DeploymentState,
        event: &str,
        times: (i64, Option<i64>, Option<i64>),
    ) -> i64 {
        use db::with_db;
        let (created, started, finished) = times;
        with_db!(&self.db, pool, q => sqlx::query_scalar(q("INSERT INTO deployments (app, service, delivery_id, state, source, event, created_at, started_at, finished_at) VALUES ('a', 's', 1, ?1, 'manual', ?2, ?3, ?4, ?5) RETURNING id"))
            .bind(state)
            .bind(event)
            .bind(created)
            .bind(started)
            .bind(finished)
            .fetch_one(pool)
            .await)
            .expect("deployment")
    }
}

pub(crate) fn now_ms() -> i64 {
    let now = time::OffsetDateTime::now_utc();
    (now.unix_timestamp_nanos() / 1_000_000) as i64
}

#[derive(Clone)]
pub(crate) struct Store {
    /// SQLite (the default) or PostgreSQL: see `db.rs`.
    db: db::Db,
    /// Taken around every write transaction, by the intake writer too (see `gate.rs`: a fair
    /// async lock instead of SQLite's polling busy handler).
    gate: WriteGate,
    /// Where every committed change is published for live viewers (see `changes.rs`).
    live: crate::live::Hub,
    /// This process among replicas, for the announcements of its changes (`broadcast.rs`).
    origin: std::sync::Arc<str>,
}

/// Filters and paging of the list calls: newest first, `before` an id.
#[derive(Debug, Clone, Default)]
pub(crate) struct ListFilter {
    pub(crate) app: Option<String>,
    pub(crate) service: Option<String>,
    pub(crate) state: Option<DeploymentState>,
    pub(crate) before: Option<i64>,
    pub(crate) limit: i64,
}

#[cfg(test)]
mod tests {
    use super::{CancelOutcome, DeliveryStatus, DeploymentState, Store};
    #[allow(unused_imports)]
    use crate::store::db::{with_db, with_tx};

    /// One delivery in `store` and a deployment of it in each `states`.
    async fn store_with(store: &Store, states: &[DeploymentState]) -> Vec<i64> {
        with_db!(&store.db, pool, q => sqlx::query(q("INSERT INTO deliveries (id, app, source, received_at, verified, status, headers) VALUES (1, 'a', 'generic', 1, TRUE, ?1, '{}')"))
            .bind(DeliveryStatus::Planned)
            .execute(pool)
            .await.map(drop))
            .expect("delivery");
        let mut ids = Vec::new();
        for state in states {
            let id: i64 = with_db!(&store.db, pool, q => sqlx::query_scalar(q("INSERT INTO deployments (app, service, delivery_id, state, source, event, created_at) VALUES ('a', 's', 1, ?1, 'generic', 'e', 1) RETURNING id"))
                .bind(*state)
                .fetch_one(pool)
                .await)
                .expect("deployment");
            ids.push(id);
        }
        ids
    }

    #[tokio::test]
    async fn cancel_dequeues_flags_running_and_leaves_ended_ones() {
        use DeploymentState::*;
        for (_dir, store, _intake) in Store::engines().await {
            eprintln!("on {}", store.engine());
            let ids = store_with(&store, &[Queued, Running, Succeeded]).await;
            let Some(CancelOutcome::Dequeued(d)) = store.cancel(ids[0]).await.unwrap() else {
                panic!("queued → dequeued");
            };
            assert_eq!(d.state, Cancelled);
            assert!(d.finished_at.is_some());
            let Some(CancelOutcome::Stopping(d)) = store.cancel(ids[1]).await.unwrap() else {
                panic!("running → stopping");
            };
            assert_eq!(d.state, Running, "the lanes record the end");
            let Some(CancelOutcome::AlreadyFinal(d)) = store.cancel(ids[2]).await.unwrap() else {
                panic!("succeeded → already final");
            };
            assert_eq!(d.state, Succeeded);
            assert!(store.cancel(999).await.unwrap().is_none());
            assert!(store.queued().await.unwrap().is_empty());
        }
    }

    /// A cancel requested while ferry stopped (or crashed) is kept: the run is recorded
    /// `cancelled` at the next start, not `interrupted`, and not retried.
    #[tokio::test]
    async fn a_cancel_request_survives_a_restart() {
        use DeploymentState::*;
        for (_dir, store, _intake) in Store::engines().await {
            eprintln!("on {}", store.engine());
            let ids = store_with(&store, &[Running, Running]).await;
            store.cancel(ids[0]).await.unwrap();
            let recovered = store.recover_interrupted(3, "test").await.unwrap();
            assert_eq!(recovered[0], (ids[0], None), "no retry of a cancelled run");
            assert!(recovered[1].1.is_some(), "the other one is retried");
            let d = store.deployment(ids[0]).await.unwrap().unwrap();
            assert_eq!(d.state, Cancelled);
            assert_eq!(d.reason.as_deref(), Some(super::CANCELLED_WHILE_RUNNING));
            let d = store.deployment(ids[1]).await.unwrap().unwrap();
            assert_eq!(d.state, Interrupted);
        }
    }

    /// Every file of the store, read at test time: a new file is checked without being listed.
    fn store_sources() -> Vec<String> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/store");
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .expect("read src/store")
            .map(|e| e.expect("dir entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "rs"))
            .collect();
        files.sort();
        assert!(
            files.len() > 2,
            "store files not found in {}",
            dir.display()
        );
        files
            .iter()
            .map(|p| std::fs::read_to_string(p).expect("read store file"))
            .collect()
    }

    /// The state names still written as SQL literals (where a partial index needs them) are
    /// all states: a typo there would silently match nothing.
    #[test]
    fn sql_state_literals_are_states() {
        let mut seen = 0;
        for source in &store_sources() {
            for (column, valid) in [
                (
                    "state",
                    &(|s: &str| s.parse::<DeploymentState>().is_ok()) as &dyn Fn(&str) -> bool,
                ),
                ("status", &|s: &str| s.parse::<DeliveryStatus>().is_ok()),
            ] {
                for op in [" = '", " != '", " IN ('"] {
                    let needle = format!("{column}{op}");
                    for (at, _) in source.match_indices(&needle) {
                        let rest = &source[at + needle.len() - 1..];
                        let end = rest.find([')', '\n']).unwrap_or(rest.len());
                        let list = if op.contains("IN") {
                            &rest[..end]
                        } else {
                            rest
                        };
                        let names =
                            list.split(',')
                                .take(if op.contains("IN") { usize::MAX } else { 1 });
                        for name in names {
                            let name = name.trim().trim_start_matches('\'');
                            let name = name.split('\'').next().unwrap_or_default();
                            assert!(valid(name), "{column} literal {name:?} in store SQL");
                            seen += 1;
                        }
                    }
                }
            }
        }
        assert!(
            seen >= 6,
            "found only {seen} literals: is the scan still right?"
        );
    }
}
