//! The store: every delivery and deployment, in SQLite (WAL, synchronous commits).
//!
//! Only this module knows SQL. Hook requests write through [`batch`] (group commit: concurrent
//! deliveries share one transaction and so one fsync); everything else (planner, lanes, API) uses
//! the small connection pool here. Times are unix milliseconds in the database.

pub mod batch;
mod outbox;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use serde::Serialize;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Row, SqliteConnection};

pub use batch::{Inserted, Intake, NewDelivery};
pub use outbox::{
    Attempt, JournalEvent, NewNotification, Notification, NotificationFilter, RetryOutcome,
};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("the store's writer has stopped")]
    WriterGone,
    #[error("cannot flush {path} to disk: {source}")]
    Flush {
        path: String,
        source: std::sync::Arc<std::io::Error>,
    },
}

pub use crate::states::{DeliveryStatus, DeploymentState, EventType, NotificationState};

pub fn now_ms() -> i64 {
    let now = time::OffsetDateTime::now_utc();
    (now.unix_timestamp_nanos() / 1_000_000) as i64
}

#[derive(Clone)]
pub struct Store {
    pool: SqlitePool,
    /// Taken around every write transaction, by the intake writer too. SQLite has one writer at
    /// a time and makes the others poll (sleeping 1, 2, 5… ms in its busy handler), which put
    /// tens of milliseconds on hook answers under load; a fair async lock queues them instead.
    gate: WriteGate,
}

/// How long the planner lets hook deliveries waiting for a commit go first.
const PLANNER_PATIENCE: Duration = Duration::from_millis(50);

/// See [`Store::gate`].
pub(crate) type WriteGate = std::sync::Arc<Gate>;

/// The write lock, and how many hook deliveries wait for the intake writer: background writers
/// (the planner) let those go first, for a while.
#[derive(Default)]
pub(crate) struct Gate {
    lock: std::sync::Arc<tokio::sync::Mutex<()>>,
    intake_waiting: std::sync::atomic::AtomicUsize,
    intake_idle: tokio::sync::Notify,
}

impl Gate {
    pub(crate) async fn lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.lock.lock().await
    }

    async fn lock_owned(&self) -> tokio::sync::OwnedMutexGuard<()> {
        self.lock.clone().lock_owned().await
    }

    /// For background writers: waits until no hook delivery waits to be written, but at most
    /// `patience`, so planning is delayed by a burst, never starved by it.
    pub(crate) async fn yield_to_intake(&self, patience: Duration) {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let idle = self.intake_idle.notified();
            if !self.intake_busy() {
                return;
            }
            if tokio::time::timeout_at(deadline, idle).await.is_err() {
                return;
            }
        }
    }

    /// Whether a hook delivery waits for the intake writer (or its flush) right now.
    fn intake_busy(&self) -> bool {
        self.intake_waiting
            .load(std::sync::atomic::Ordering::Acquire)
            > 0
    }

    pub(crate) fn intake_enter(&self) {
        self.intake_waiting
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    pub(crate) fn intake_leave(&self) {
        if self
            .intake_waiting
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel)
            == 1
        {
            self.intake_idle.notify_waiters();
        }
    }
}

/// A delivery as stored (without its body, which list calls do not need).
#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct Delivery {
    pub id: i64,
    pub app: String,
    pub source: String,
    pub event: Option<String>,
    pub source_delivery_id: Option<String>,
    pub received_at: i64,
    pub verified: bool,
    pub status: DeliveryStatus,
    pub error: Option<String>,
    pub query: Option<String>,
    pub replay_of: Option<i64>,
    /// What the planner noted, e.g. that an event time from the future was not trusted.
    pub note: Option<String>,
}

/// A delivery with everything needed to plan or replay it.
#[derive(Debug, Clone)]
pub struct FullDelivery {
    pub delivery: Delivery,
    pub headers: String,
    pub body: Vec<u8>,
    /// The size of the body as received, when `body` holds only its start (refused
    /// deliveries keep at most [`batch::REJECTED_BODY_KEEP`] bytes).
    pub body_size: Option<i64>,
}

#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct Deployment {
    pub id: i64,
    pub app: String,
    pub service: String,
    pub delivery_id: i64,
    pub state: DeploymentState,
    pub reason: Option<String>,
    pub source: String,
    pub event: String,
    pub git_repo: Option<String>,
    pub git_branch: Option<String>,
    pub git_ref: Option<String>,
    pub git_commit: Option<String>,
    pub event_time: Option<i64>,
    pub profile: Option<String>,
    pub image: Option<String>,
    pub image_tag: Option<String>,
    pub image_digest: Option<String>,
    pub attempt: i64,
    pub retry_of: Option<i64>,
    pub exit_code: Option<i64>,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
}

/// An image an image service holds (see `crate::plan::History::images`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldImage {
    pub deployment: i64,
    pub tag: Option<String>,
    pub digest: Option<String>,
    /// Queued or running, rather than the current version.
    pub pending: bool,
}

/// A deployment the planner decided on: queued, or skipped with a reason.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NewDeployment {
    pub app: String,
    pub service: String,
    pub state: DeploymentState,
    pub reason: Option<String>,
    pub source: String,
    pub event: String,
    pub git_repo: Option<String>,
    pub git_branch: Option<String>,
    pub git_ref: Option<String>,
    pub git_commit: Option<String>,
    pub event_time: Option<i64>,
    pub profile: Option<String>,
    /// Image services: the repository, the pushed tag and the digest that will run (`None`
    /// until resolved for senders that give no digest).
    pub image: Option<String>,
    pub image_tag: Option<String>,
    pub image_digest: Option<String>,
}

/// What [`Store::cancel`] did.
#[derive(Debug, Clone)]
pub enum CancelOutcome {
    /// It was queued: now `cancelled`, it never runs.
    Dequeued(Deployment),
    /// It is running: the cancel is recorded; the lanes stop it (see `lanes::Running`).
    Stopping(Deployment),
    /// It had already ended (or is a state that cannot be cancelled): unchanged.
    AlreadyFinal(Deployment),
}

/// The reason of a deployment cancelled before it ran.
pub const CANCELLED_WHILE_QUEUED: &str = "cancelled through the API before it started";
/// The reason of a deployment cancelled while it ran.
pub const CANCELLED_WHILE_RUNNING: &str = "cancelled through the API while it ran";

/// Filters and paging of the list calls: newest first, `before` an id.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub app: Option<String>,
    pub service: Option<String>,
    pub state: Option<DeploymentState>,
    pub before: Option<i64>,
    pub limit: i64,
}

const DEPLOYMENT_COLUMNS: &str = "id, app, service, delivery_id, state, reason, source, event, git_repo, git_branch, git_ref, git_commit, event_time, profile, image, image_tag, image_digest, attempt, retry_of, exit_code, created_at, started_at, finished_at";

impl Store {
    /// Opens (creating if needed) the database in `data_dir` and brings its schema up to date.
    /// Returns the store and the group-commit writer for hook requests.
    pub async fn open(data_dir: &Path) -> Result<(Store, Intake), StoreError> {
        crate::datadir::create_dir(data_dir).map_err(|source| StoreError::DataDir {
            path: data_dir.display().to_string(),
            source,
        })?;
        // The data dir is private (see `datadir`): loose modes left by an older ferry are
        // tightened, and the database is created 0600 (its -wal and -shm follow it).
        let dir = data_dir.to_path_buf();
        let tightened = tokio::task::spawn_blocking(move || crate::datadir::tighten(&dir))
            .await
            .unwrap_or(0);
        if tightened > 0 {
            tracing::info!(
                data_dir = %data_dir.display(),
                entries = tightened,
                "made data dir entries private (dirs 0700, files 0600)"
            );
        }
        let db = data_dir.join("ferry.db");
        crate::datadir::create_private_file(&db).map_err(|source| StoreError::DataDir {
            path: db.display().to_string(),
            source,
        })?;
        let options = SqliteConnectOptions::from_str("sqlite:")?
            .filename(db)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // NORMAL for the pool (planning, deployment states): in WAL mode a commit then
            // reaches the OS at once, so it survives a crash of ferry (kill -9), and the disk
            // with the next fsync. The WAL is append-only, so what a power loss can take is
            // only a suffix of the newest state changes — never an acknowledged delivery (below)
            // — and startup recovery redoes them: deliveries are planned again, a deployment
            // still `running` is `interrupted` and retried.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            // A connection that comes back still inside a transaction (a COMMIT or ROLLBACK
            // failed, e.g. on a full disk) is closed, never reused: see `batch::Writer`.
            .after_release(|conn, _| {
                Box::pin(async move { Ok(!sqlx::Connection::is_in_transaction(conn)) })
            })
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        let gate = WriteGate::default();
        let store = Store {
            pool,
            gate: gate.clone(),
        };
        // The intake writer commits with NORMAL too, and `batch` makes each commit durable itself
        // by fsyncing the WAL before it answers: then the next batch is inserted while the
        // previous one is being flushed, instead of after (FULL fsyncs inside COMMIT, holding
        // the write lock). One fsync covers every commit written to the WAL before it.
        let writer = <SqliteConnection as sqlx::Connection>::connect_with(&options).await?;
        let intake = batch::start(writer, options, gate);
        Ok((store, intake))
    }

    /// Checks that the database answers (for `/readyz`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    // ---- deliveries -------------------------------------------------------------------------

    pub async fn delivery(&self, id: i64) -> Result<Option<FullDelivery>, StoreError> {
        let row = sqlx::query(
            "SELECT id, app, source, event, source_delivery_id, received_at, verified, status, error, query, replay_of, note, headers, body, body_size FROM deliveries WHERE id = ?1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| full_delivery(&row)).transpose()
    }

    pub async fn deliveries(&self, f: &ListFilter) -> Result<Vec<Delivery>, StoreError> {
        const COLUMNS: &str = "SELECT id, app, source, event, source_delivery_id, received_at, verified, status, error, query, replay_of, note FROM deliveries";
        // One statement per filter shape, so SQLite walks an index backwards from `before`
        // instead of scanning: list calls stay flat however many deliveries are stored.
        let before = f.before.unwrap_or(i64::MAX);
        let rows = match &f.app {
            Some(app) => {
                let sql = sqlx::AssertSqlSafe(format!(
                    "{COLUMNS} WHERE app = ?1 AND id < ?2 ORDER BY id DESC LIMIT ?3"
                ));
                sqlx::query_as::<_, Delivery>(sql)
                    .bind(app)
                    .bind(before)
                    .bind(f.limit)
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                let sql = sqlx::AssertSqlSafe(format!(
                    "{COLUMNS} WHERE id < ?1 ORDER BY id DESC LIMIT ?2"
                ));
                sqlx::query_as::<_, Delivery>(sql)
                    .bind(before)
                    .bind(f.limit)
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        Ok(rows)
    }

    /// Deliveries accepted but not yet planned, oldest first.
    pub async fn unplanned(&self, limit: i64) -> Result<Vec<FullDelivery>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, app, source, event, source_delivery_id, received_at, verified, status, error, query, replay_of, note, headers, body, body_size FROM deliveries
             WHERE status = 'received' ORDER BY id LIMIT ?1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(full_delivery).collect()
    }

    /// Starts recording plans: one transaction for a whole batch of deliveries, so planning a
    /// burst costs one fsync per batch rather than one per delivery (and holds the write lock
    /// that hook requests also need for as short a time as possible).
    pub async fn begin_planning(&self) -> Result<Planning, StoreError> {
        // Hook answers wait on intake commits: let those go first, for a while.
        self.gate.yield_to_intake(PLANNER_PATIENCE).await;
        let gate = self.gate.lock_owned().await;
        Ok(Planning {
            tx: self.pool.begin().await?,
            _gate: gate,
        })
    }

    /// Whether hook deliveries wait for the write lock: a planning transaction then commits
    /// what it has and leaves the rest for its next batch.
    pub fn intake_busy(&self) -> bool {
        self.gate.intake_busy()
    }

    // ---- deployments ------------------------------------------------------------------------

    /// How many deployments are in each state (for `/metrics`).
    pub async fn count_by_state(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query("SELECT state, COUNT(*) FROM deployments GROUP BY state")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    pub async fn deployment(&self, id: i64) -> Result<Option<Deployment>, StoreError> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {DEPLOYMENT_COLUMNS} FROM deployments WHERE id = ?1"
        ));
        Ok(sqlx::query_as::<_, Deployment>(sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?)
    }

    pub async fn deployments(&self, f: &ListFilter) -> Result<Vec<Deployment>, StoreError> {
        let before = f.before.unwrap_or(i64::MAX);
        // As for deliveries: the leading filters match an index, the rest filter the walk.
        let sql = match (&f.app, &f.service) {
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
        Ok(sqlx::query_as::<_, Deployment>(sqlx::AssertSqlSafe(sql))
            .bind(&f.app)
            .bind(&f.service)
            .bind(f.state)
            .bind(before)
            .bind(f.limit)
            .fetch_all(&self.pool)
            .await?)
    }

    /// Deployment ids per delivery for deliveries `lo..=hi` (one list page), in one query.
    pub async fn deployment_ids_between(
        &self,
        lo: i64,
        hi: i64,
    ) -> Result<std::collections::HashMap<i64, Vec<i64>>, StoreError> {
        let rows: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT delivery_id, id FROM deployments INDEXED BY deployments_delivery
             WHERE delivery_id BETWEEN ?1 AND ?2 ORDER BY id",
        )
        .bind(lo)
        .bind(hi)
        .fetch_all(&self.pool)
        .await?;
        let mut map: std::collections::HashMap<i64, Vec<i64>> = std::collections::HashMap::new();
        for (delivery, id) in rows {
            map.entry(delivery).or_default().push(id);
        }
        Ok(map)
    }

    pub async fn deployment_ids_of(&self, delivery_id: i64) -> Result<Vec<i64>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT id FROM deployments WHERE delivery_id = ?1 ORDER BY id")
                .bind(delivery_id)
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// A service's newest deployment that was not skipped, for `ferry status`.
    pub async fn latest_of(
        &self,
        app: &str,
        service: &str,
    ) -> Result<Option<Deployment>, StoreError> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {DEPLOYMENT_COLUMNS} FROM deployments INDEXED BY deployments_service
             WHERE app = ?1 AND service = ?2 AND state != ?3 ORDER BY id DESC LIMIT 1"
        ));
        Ok(sqlx::query_as::<_, Deployment>(sql)
            .bind(app)
            .bind(service)
            .bind(DeploymentState::Skipped)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// A service's newest succeeded deployment: its current version.
    pub async fn current_of(
        &self,
        app: &str,
        service: &str,
    ) -> Result<Option<Deployment>, StoreError> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {DEPLOYMENT_COLUMNS} FROM deployments INDEXED BY deployments_service
             WHERE app = ?1 AND service = ?2 AND state = ?3 ORDER BY id DESC LIMIT 1"
        ));
        Ok(sqlx::query_as::<_, Deployment>(sql)
            .bind(app)
            .bind(service)
            .bind(DeploymentState::Succeeded)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// All queued deployments, oldest first: the lanes' work.
    pub async fn queued(&self) -> Result<Vec<Deployment>, StoreError> {
        // State literals stay in SQL where a partial index (`WHERE state = 'queued'`, …) must
        // match them: SQLite uses a partial index only for a literal, never for a bound value.
        // `tests::sql_state_literals_are_states` checks each such literal names a state.
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {DEPLOYMENT_COLUMNS} FROM deployments WHERE state = 'queued' ORDER BY id"
        ));
        Ok(sqlx::query_as::<_, Deployment>(sql)
            .fetch_all(&self.pool)
            .await?)
    }

    /// Moves a queued deployment to running, superseding any older queued one of its service.
    /// Returns false if it was no longer queued.
    pub async fn start(&self, d: &Deployment) -> Result<bool, StoreError> {
        let _gate = self.gate.lock().await;
        let mut tx = self.pool.begin().await?;
        let now = now_ms();
        let done = sqlx::query(
            "UPDATE deployments SET state = ?3, started_at = ?2 WHERE id = ?1 AND state = ?4",
        )
        .bind(d.id)
        .bind(now)
        .bind(DeploymentState::Running)
        .bind(DeploymentState::Queued)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        supersede_older(&mut tx, &d.app, &d.service, d.id, now).await?;
        tx.commit().await?;
        Ok(done == 1)
    }

    /// Records the digest a deployment resolved its tag to (senders that give none).
    pub async fn set_image_digest(&self, id: i64, digest: &str) -> Result<(), StoreError> {
        let _gate = self.gate.lock().await;
        sqlx::query("UPDATE deployments SET image_digest = ?2 WHERE id = ?1")
            .bind(id)
            .bind(digest)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Records how a deployment ended.
    pub async fn finish(
        &self,
        id: i64,
        state: DeploymentState,
        reason: Option<&str>,
        exit_code: Option<i64>,
    ) -> Result<(), StoreError> {
        let _gate = self.gate.lock().await;
        sqlx::query(
            "UPDATE deployments SET state = ?2, reason = COALESCE(?3, reason), exit_code = ?4, finished_at = ?5 WHERE id = ?1",
        )
        .bind(id)
        .bind(state)
        .bind(reason)
        .bind(exit_code)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Cancels a deployment (`POST /api/v1/deployments/ID/cancel`), in one transaction: a
    /// queued one is `cancelled` at once and never runs; a running one is marked
    /// `cancel_requested_at` (the lanes stop it and record `cancelled`; a restart that cuts
    /// the stop short records it `cancelled` too, see [`Store::interrupt`]). `None`: no such
    /// deployment.
    pub async fn cancel(&self, id: i64) -> Result<Option<CancelOutcome>, StoreError> {
        let _gate = self.gate.lock().await;
        let mut tx = self.pool.begin().await?;
        let now = now_ms();
        let dequeued = sqlx::query(
            "UPDATE deployments SET state = ?3, reason = ?4, finished_at = ?2, cancel_requested_at = ?2
             WHERE id = ?1 AND state = ?5",
        )
        .bind(id)
        .bind(now)
        .bind(DeploymentState::Cancelled)
        .bind(CANCELLED_WHILE_QUEUED)
        .bind(DeploymentState::Queued)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        let flagged = !dequeued
            && sqlx::query(
                "UPDATE deployments SET cancel_requested_at = COALESCE(cancel_requested_at, ?2)
                 WHERE id = ?1 AND state = ?3",
            )
            .bind(id)
            .bind(now)
            .bind(DeploymentState::Running)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {DEPLOYMENT_COLUMNS} FROM deployments WHERE id = ?1"
        ));
        let d = sqlx::query_as::<_, Deployment>(sql)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(d.map(|d| match (dequeued, flagged) {
            (true, _) => CancelOutcome::Dequeued(d),
            (false, true) => CancelOutcome::Stopping(d),
            (false, false) => CancelOutcome::AlreadyFinal(d),
        }))
    }

    /// After a crash: deployments left `running` are marked `interrupted`, and each gets a new
    /// queued attempt if it has attempts left. Returns (interrupted id, retry id) pairs.
    pub async fn recover_interrupted(
        &self,
        retries: u32,
    ) -> Result<Vec<(i64, Option<i64>)>, StoreError> {
        let ids: Vec<i64> =
            sqlx::query_scalar("SELECT id FROM deployments WHERE state = ?1 ORDER BY id")
                .bind(DeploymentState::Running)
                .fetch_all(&self.pool)
                .await?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            out.push((id, self.interrupt(id, retries).await?));
        }
        Ok(out)
    }

    /// Marks a running deployment `interrupted` (ferry stopped while it ran) and, if it has
    /// attempts left and no newer deployment of its service is queued, queues it again as a new
    /// deployment with `retry_of` set. Returns the retry's id.
    pub async fn interrupt(&self, id: i64, retries: u32) -> Result<Option<i64>, StoreError> {
        let _gate = self.gate.lock().await;
        let mut tx = self.pool.begin().await?;
        let now = now_ms();
        // A deployment whose cancel was requested is recorded `cancelled`, and never retried:
        // the request survives the restart that cut its run short.
        let row = sqlx::query(
            "UPDATE deployments SET
               state = IIF(cancel_requested_at IS NULL, ?3, ?5),
               reason = IIF(cancel_requested_at IS NULL, 'ferry stopped while this deployment ran', ?6),
               finished_at = ?2
             WHERE id = ?1 AND state = ?4 RETURNING app, service, attempt, state",
        )
        .bind(id)
        .bind(now)
        .bind(DeploymentState::Interrupted)
        .bind(DeploymentState::Running)
        .bind(DeploymentState::Cancelled)
        .bind(CANCELLED_WHILE_RUNNING)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            tx.commit().await?;
            return Ok(None);
        };
        let (app, service, attempt, state): (String, String, i64, DeploymentState) = (
            row.try_get(0)?,
            row.try_get(1)?,
            row.try_get(2)?,
            row.try_get(3)?,
        );
        if state == DeploymentState::Cancelled {
            tx.commit().await?;
            return Ok(None);
        }
        let newer_queued: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM deployments INDEXED BY deployments_queued WHERE app = ?1 AND service = ?2 AND state = 'queued' AND id > ?3 LIMIT 1",
        )
        .bind(&app)
        .bind(&service)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let retry = if attempt <= i64::from(retries) && newer_queued.is_none() {
            let retry_id: i64 = sqlx::query_scalar(
                "INSERT INTO deployments (app, service, delivery_id, state, reason, source, event, git_repo, git_branch, git_ref, git_commit, event_time, profile, image, image_tag, image_digest, attempt, retry_of, created_at)
                 SELECT app, service, delivery_id, ?3, 'retry of interrupted deployment ' || id, source, event, git_repo, git_branch, git_ref, git_commit, event_time, profile, image, image_tag, image_digest, attempt + 1, id, ?2
                 FROM deployments WHERE id = ?1 RETURNING id",
            )
            .bind(id)
            .bind(now)
            .bind(DeploymentState::Queued)
            .fetch_one(&mut *tx)
            .await?;
            Some(retry_id)
        } else {
            None
        };
        tx.commit().await?;
        Ok(retry)
    }
}

impl Store {
    /// Deletes deliveries received before `cutoff` (unix ms) with their deployments, in small
    /// transactions so hook requests are not held up. Kept regardless of age: deliveries not yet
    /// planned, and those whose deployments are queued, running, or the current version of
    /// their service. Returns the ids of the deleted deployments (their logs go too).
    pub async fn prune(&self, cutoff: i64) -> Result<(usize, Vec<i64>), StoreError> {
        let mut deliveries = 0;
        let mut deployments = Vec::new();
        loop {
            let _gate = self.gate.lock().await;
            let mut tx = self.pool.begin().await?;
            let ids: Vec<i64> = sqlx::query_scalar(
                "SELECT d.id FROM deliveries d INDEXED BY deliveries_received
                 WHERE d.received_at < ?1 AND d.status != ?2
                   AND NOT EXISTS (
                     SELECT 1 FROM deployments p WHERE p.delivery_id = d.id AND (
                       p.state IN (?3, ?4)
                       OR p.id = (SELECT MAX(c.id) FROM deployments c INDEXED BY deployments_service
                                  WHERE c.app = p.app AND c.service = p.service AND c.state = ?5)))
                 ORDER BY d.received_at LIMIT 500",
            )
            .bind(cutoff)
            .bind(DeliveryStatus::Received)
            .bind(DeploymentState::Queued)
            .bind(DeploymentState::Running)
            .bind(DeploymentState::Succeeded)
            .fetch_all(&mut *tx)
            .await?;
            if ids.is_empty() {
                tx.commit().await?;
                return Ok((deliveries, deployments));
            }
            for id in &ids {
                let gone: Vec<i64> = sqlx::query_scalar(
                    "DELETE FROM deployments WHERE delivery_id = ?1 RETURNING id",
                )
                .bind(id)
                .fetch_all(&mut *tx)
                .await?;
                deployments.extend(gone);
                // Replays point at their original; the link may dangle once it is pruned.
                sqlx::query("UPDATE deliveries SET replay_of = NULL WHERE replay_of = ?1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("DELETE FROM deliveries WHERE id = ?1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            deliveries += ids.len();
        }
    }
}

/// Plans being recorded, in one transaction (see [`Store::begin_planning`]). Reads through it
/// see the plans recorded so far in the same batch. Dropped without `commit`, nothing is kept.
pub struct Planning {
    tx: sqlx::Transaction<'static, sqlx::Sqlite>,
    _gate: tokio::sync::OwnedMutexGuard<()>,
}

impl Planning {
    /// The newest event time a service has deployed, is running or has queued: an event older
    /// than this is stale. Returns that time and the deployment that holds it.
    pub async fn newest_event_time(
        &mut self,
        app: &str,
        service: &str,
    ) -> Result<Option<(i64, i64)>, StoreError> {
        let row = sqlx::query(
            "SELECT event_time, id FROM deployments INDEXED BY deployments_service_time
             WHERE app = ?1 AND service = ?2 AND event_time IS NOT NULL
               AND state IN (?3, ?4, ?5)
             ORDER BY event_time DESC, id DESC LIMIT 1",
        )
        .bind(app)
        .bind(service)
        .bind(DeploymentState::Queued)
        .bind(DeploymentState::Running)
        .bind(DeploymentState::Succeeded)
        .fetch_optional(&mut *self.tx)
        .await?;
        Ok(row.map(|r| (r.get::<i64, _>(0), r.get::<i64, _>(1))))
    }

    /// What an image service runs (its newest success) and has queued or running.
    pub async fn images(&mut self, app: &str, service: &str) -> Result<Vec<HeldImage>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, image_tag, image_digest, 1 FROM deployments INDEXED BY deployments_active
             WHERE state IN ('queued', 'running') AND app = ?1 AND service = ?2 AND image IS NOT NULL
             UNION ALL
             SELECT * FROM (SELECT id, image_tag, image_digest, 0 FROM deployments INDEXED BY deployments_service
                            WHERE app = ?1 AND service = ?2 AND state = ?3 ORDER BY id DESC LIMIT 1)",
        )
        .bind(app)
        .bind(service)
        .bind(DeploymentState::Succeeded)
        .fetch_all(&mut *self.tx)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(HeldImage {
                    deployment: r.try_get(0)?,
                    tag: r.try_get(1)?,
                    digest: r.try_get(2)?,
                    pending: r.try_get::<i64, _>(3)? == 1,
                })
            })
            .collect()
    }

    /// The deployment a rollback goes back to: `to` if it is a success of this service, else
    /// the newest success before the current version that ran something else.
    pub async fn rollback_target(
        &mut self,
        app: &str,
        service: &str,
        to: Option<i64>,
    ) -> Result<Option<Deployment>, StoreError> {
        if let Some(id) = to {
            let sql = sqlx::AssertSqlSafe(format!(
                "SELECT {DEPLOYMENT_COLUMNS} FROM deployments WHERE id = ?1 AND app = ?2 AND service = ?3 AND state = ?4"
            ));
            return Ok(sqlx::query_as::<_, Deployment>(sql)
                .bind(id)
                .bind(app)
                .bind(service)
                .bind(DeploymentState::Succeeded)
                .fetch_optional(&mut *self.tx)
                .await?);
        }
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {DEPLOYMENT_COLUMNS} FROM deployments INDEXED BY deployments_service
             WHERE app = ?1 AND service = ?2 AND state = ?3 ORDER BY id DESC LIMIT 1"
        ));
        let Some(current) = sqlx::query_as::<_, Deployment>(sql)
            .bind(app)
            .bind(service)
            .bind(DeploymentState::Succeeded)
            .fetch_optional(&mut *self.tx)
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
        Ok(sqlx::query_as::<_, Deployment>(sql)
            .bind(app)
            .bind(service)
            .bind(current.id)
            .bind(&current.image_digest)
            .bind(&current.git_commit)
            .bind(DeploymentState::Succeeded)
            .fetch_optional(&mut *self.tx)
            .await?)
    }

    /// The id the next recorded deployment will get. Plans are recorded under the write gate,
    /// so nothing else inserts deployments until this batch commits; `sqlite_sequence`
    /// (AUTOINCREMENT) also covers pruned ids, so none is reused.
    pub async fn next_deployment_id(&mut self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'deployments'), 0) + 1",
        )
        .fetch_one(&mut *self.tx)
        .await?)
    }

    /// Records the plans of a batch of deliveries: their deployments (each with the id it was
    /// given from [`Planning::next_deployment_id`] on), the newest queued deployment of each
    /// service superseding its older queued ones, and each delivery's new status (with the
    /// reason it deploys nothing, if any). A few statements for the whole batch: each statement
    /// is a round trip to sqlx's SQLite thread.
    pub async fn record(
        &mut self,
        deployments: &[(i64, i64, NewDeployment)],
        deliveries: &[(i64, Option<String>)],
    ) -> Result<(), StoreError> {
        let now = now_ms();
        // 19 variables per row; SQLite allows 32766 per statement.
        for chunk in deployments.chunks(1024) {
            let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                "INSERT INTO deployments (id, delivery_id, app, service, state, reason, source, event, git_repo, git_branch, git_ref, git_commit, event_time, profile, image, image_tag, image_digest, created_at, finished_at) ",
            );
            q.push_values(chunk, |mut row, (id, delivery_id, d)| {
                let finished = (d.state != DeploymentState::Queued).then_some(now);
                row.push_bind(*id)
                    .push_bind(*delivery_id)
                    .push_bind(d.app.clone())
                    .push_bind(d.service.clone())
                    .push_bind(d.state)
                    .push_bind(d.reason.clone())
                    .push_bind(d.source.clone())
                    .push_bind(d.event.clone())
                    .push_bind(d.git_repo.clone())
                    .push_bind(d.git_branch.clone())
                    .push_bind(d.git_ref.clone())
                    .push_bind(d.git_commit.clone())
                    .push_bind(d.event_time)
                    .push_bind(d.profile.clone())
                    .push_bind(d.image.clone())
                    .push_bind(d.image_tag.clone())
                    .push_bind(d.image_digest.clone())
                    .push_bind(now)
                    .push_bind(finished);
            });
            q.build().execute(&mut *self.tx).await?;
        }
        let mut newest_queued: std::collections::BTreeMap<(&str, &str), i64> = Default::default();
        for (id, _, d) in deployments {
            if d.state == DeploymentState::Queued {
                let slot = newest_queued.entry((&d.app, &d.service)).or_default();
                *slot = (*slot).max(*id);
            }
        }
        for ((app, service), id) in newest_queued {
            supersede_older(&mut self.tx, app, service, id, now).await?;
        }
        let (planned, failed): (Vec<_>, Vec<_>) =
            deliveries.iter().partition(|(_, error)| error.is_none());
        for chunk in planned.chunks(1024) {
            let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new("UPDATE deliveries SET status = ");
            q.push_bind(DeliveryStatus::Planned)
                .push(", planned_at = ")
                .push_bind(now)
                .push(" WHERE id IN (");
            let mut ids = q.separated(", ");
            for (id, _) in chunk {
                ids.push_bind(*id);
            }
            q.push(")");
            q.build().execute(&mut *self.tx).await?;
        }
        for (id, error) in failed {
            sqlx::query(
                "UPDATE deliveries SET status = ?4, planned_at = ?2, error = ?3 WHERE id = ?1",
            )
            .bind(id)
            .bind(now)
            .bind(error)
            .bind(DeliveryStatus::Planned)
            .execute(&mut *self.tx)
            .await?;
        }
        Ok(())
    }

    /// Records deliveries whose values failed `sources::values`: `rejected`, with the reason.
    /// Like deliveries refused on the request path they keep no dedupe key, so they never
    /// block a good retry.
    pub async fn reject(&mut self, deliveries: &[(i64, String)]) -> Result<(), StoreError> {
        let now = now_ms();
        for (id, reason) in deliveries {
            sqlx::query(
                "UPDATE deliveries SET status = ?4, planned_at = ?2, error = ?3, dedupe_key = NULL WHERE id = ?1",
            )
            .bind(id)
            .bind(now)
            .bind(reason)
            .bind(DeliveryStatus::Rejected)
            .execute(&mut *self.tx)
            .await?;
        }
        Ok(())
    }

    /// Records the planner's notes on deliveries (rare: one statement each).
    pub async fn note(&mut self, notes: &[(i64, String)]) -> Result<(), StoreError> {
        for (id, note) in notes {
            sqlx::query("UPDATE deliveries SET note = ?2 WHERE id = ?1")
                .bind(id)
                .bind(note)
                .execute(&mut *self.tx)
                .await?;
        }
        Ok(())
    }

    /// Makes the batch durable.
    pub async fn commit(self) -> Result<(), StoreError> {
        self.tx.commit().await?;
        Ok(())
    }
}

/// Marks queued deployments of a service older than `id` as superseded by it.
async fn supersede_older(
    tx: &mut SqliteConnection,
    app: &str,
    service: &str,
    id: i64,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE deployments INDEXED BY deployments_queued
         SET state = ?5, reason = 'superseded by deployment ' || ?3, finished_at = ?4
         WHERE app = ?1 AND service = ?2 AND state = 'queued' AND id < ?3",
    )
    .bind(app)
    .bind(service)
    .bind(id)
    .bind(now)
    .bind(DeploymentState::Superseded)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

fn full_delivery(row: &sqlx::sqlite::SqliteRow) -> Result<FullDelivery, StoreError> {
    use sqlx::FromRow;
    Ok(FullDelivery {
        delivery: Delivery::from_row(row)?,
        headers: row.try_get("headers")?,
        body: row.try_get("body")?,
        body_size: row.try_get("body_size")?,
    })
}

#[cfg(test)]
mod tests {
    use super::{CancelOutcome, DeliveryStatus, DeploymentState, Store};

    /// A store in a temp dir with one delivery and a deployment of it in each `states`.
    async fn store_with(states: &[DeploymentState]) -> (tempfile::TempDir, Store, Vec<i64>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, _intake) = Store::open(dir.path()).await.expect("open");
        sqlx::query("INSERT INTO deliveries (id, app, source, received_at, verified, status, headers, body) VALUES (1, 'a', 'generic', 1, 1, ?1, '{}', x'')")
            .bind(DeliveryStatus::Planned)
            .execute(&store.pool)
            .await
            .expect("delivery");
        let mut ids = Vec::new();
        for state in states {
            let id: i64 = sqlx::query_scalar("INSERT INTO deployments (app, service, delivery_id, state, source, event, created_at) VALUES ('a', 's', 1, ?1, 'generic', 'e', 1) RETURNING id")
                .bind(*state)
                .fetch_one(&store.pool)
                .await
                .expect("deployment");
            ids.push(id);
        }
        (dir, store, ids)
    }

    #[tokio::test]
    async fn cancel_dequeues_flags_running_and_leaves_ended_ones() {
        use DeploymentState::*;
        let (_dir, store, ids) = store_with(&[Queued, Running, Succeeded]).await;
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

    /// A cancel requested while ferry stopped (or crashed) is kept: the run is recorded
    /// `cancelled` at the next start, not `interrupted`, and not retried.
    #[tokio::test]
    async fn a_cancel_request_survives_a_restart() {
        use DeploymentState::*;
        let (_dir, store, ids) = store_with(&[Running, Running]).await;
        store.cancel(ids[0]).await.unwrap();
        let recovered = store.recover_interrupted(3).await.unwrap();
        assert_eq!(recovered[0], (ids[0], None), "no retry of a cancelled run");
        assert!(recovered[1].1.is_some(), "the other one is retried");
        let d = store.deployment(ids[0]).await.unwrap().unwrap();
        assert_eq!(d.state, Cancelled);
        assert_eq!(d.reason.as_deref(), Some(super::CANCELLED_WHILE_RUNNING));
        let d = store.deployment(ids[1]).await.unwrap().unwrap();
        assert_eq!(d.state, Interrupted);
    }

    /// The state names still written as SQL literals (where a partial index needs them) are
    /// all states: a typo there would silently match nothing.
    #[test]
    fn sql_state_literals_are_states() {
        let mut seen = 0;
        for source in [include_str!("mod.rs"), include_str!("batch.rs")] {
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
