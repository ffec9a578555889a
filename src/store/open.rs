//! Opening the store: the private data dir (both engines: deploy logs live there); on SQLite
//! (the default) the database file, SQLite's settings for the pool and the intake writer; on
//! PostgreSQL the pool; then each engine's migrations (`migrations/sqlite/`, `migrations/postgres/`).

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use super::db::{Db, with_db};
use super::gate::WriteGate;
use super::{Intake, Store, StoreError, batch};
use crate::metrics::Metrics;

impl Store {
    /// [`Store::open_measured`] with metrics of its own, unread: for tests.
    #[cfg(test)]
    pub(crate) async fn open(data_dir: &Path) -> Result<(Store, Intake), StoreError> {
        Store::open_measured(data_dir, None, Arc::default()).await
    }

    /// Opens the database and brings its schema up to date: PostgreSQL at `database` when
    /// given, else SQLite in `data_dir` (created private if needed, on either engine). Returns the store and the
    /// group-commit writer for hook requests, which records its batches (sizes, commit and
    /// fsync times) into `metrics`.
    pub(crate) async fn open_measured(
        data_dir: &Path,
        database: Option<&str>,
        metrics: Arc<Metrics>,
    ) -> Result<(Store, Intake), StoreError> {
        // The data dir holds deploy logs, payload files and run notes on both engines: it is
        // created private (and tightened) before the database is opened, whichever it is.
        private_dir(data_dir).await?;
        if let Some(url) = database {
            return Store::open_postgres(url, metrics).await;
        }
        let db = database_file(data_dir)?;
        let options = connect_options(db.clone())?;
        let pool = pool(&options).await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        let gate = WriteGate::default();
        let live = crate::live::Hub::default();
        let store = Store {
            db: Db::Sqlite(pool),
            gate: gate.clone(),
            live: live.clone(),
            origin: super::broadcast::origin(),
        };
        // The intake writer commits with NORMAL too, and `batch` makes each commit durable itself
        // by fsyncing the WAL before it answers: then the next batch is inserted while the
        // previous one is being flushed, instead of after (FULL fsyncs inside COMMIT, holding
        // the write lock). One fsync covers every commit written to the WAL before it.
        let intake = batch::start(&db, gate, live, metrics)?;
        Ok((store, intake))
    }

    /// Opens the PostgreSQL database at `url` (see [`Store::open_measured`]).
    async fn open_postgres(
        url: &str,
        metrics: Arc<Metrics>,
    ) -> Result<(Store, Intake), StoreError> {
        let options = PgConnectOptions::from_str(url)?
            // Every commit waits for its WAL flush (the default; set so a server default of
            // `off` cannot make a 202 precede durability).
            .options([("synchronous_commit", "on")]);
        // One connection first: its error says why (refused, authentication, no such
        // database), where the pool's would only say it timed out.
        let mut first =
            <sqlx::postgres::PgConnection as sqlx::Connection>::connect_with(&options).await?;
        sqlx::migrate!("./migrations/postgres")
            .run(&mut first)
            .await?;
        sqlx::Connection::close(first).await?;
        let pool = pg_pool(&options).await?;
        let gate = WriteGate::default();
        let live = crate::live::Hub::default();
        let store = Store {
            db: Db::Postgres(pool),
            gate: gate.clone(),
            live: live.clone(),
            origin: super::broadcast::origin(),
        };
        store.listen_to_replicas();
        let intake =
            batch::postgres::start(&options, gate, live, metrics, store.origin.clone()).await?;
        Ok((store, intake))
    }

    /// Checks that the database answers (for `/readyz`).
    pub(crate) async fn ping(&self) -> Result<(), StoreError> {
        with_db!(&self.db, pool, q => sqlx::query(q("SELECT 1")).execute(pool).await.map(drop))?;
        Ok(())
    }

    /// Which engine the store runs on: `sqlite` or `postgres`.
    pub(crate) fn engine(&self) -> &'static str {
        self.db.engine()
    }

    /// Whether other ferry replicas may share this store (PostgreSQL): then work is claimed
    /// in the database, not only in this process.
    pub(crate) fn shared(&self) -> bool {
        matches!(self.db, Db::Postgres(_))
    }
}

/// Where the PostgreSQL database at `url` is, as it may be printed: `PostgreSQL database
/// "NAME" on HOST` (no user, no password: the URL itself is never shown).
pub(crate) fn describe_postgres(options: &PgConnectOptions) -> String {
    // PostgreSQL's own default: the database named after the user.
    let database = options.get_database().unwrap_or(options.get_username());
    format!(
        "PostgreSQL database \"{database}\" on {}",
        options.get_host()
    )
}

/// For `ferry doctor`: connects to the PostgreSQL database at `url` and returns its server's
/// version and [`describe_postgres`]'s description of it.
pub(crate) async fn probe_postgres(url: &str) -> Result<(String, String), StoreError> {
    let options = PgConnectOptions::from_str(url)?;
    let place = describe_postgres(&options);
    let mut conn =
        <sqlx::postgres::PgConnection as sqlx::Connection>::connect_with(&options).await?;
    let version: String = sqlx::query_scalar("SHOW server_version")
        .fetch_one(&mut conn)
        .await?;
    sqlx::Connection::close(conn).await?;
    Ok((version, place))
}

/// Creates the data dir, private (see `datadir`), and tightens what is in it.
async fn private_dir(data_dir: &Path) -> Result<(), StoreError> {
    crate::datadir::create_dir(data_dir).map_err(|source| StoreError::DataDir {
        path: data_dir.display().to_string(),
        source,
    })?;
    // The data dir is private: loose modes left by an older ferry are tightened (and SQLite's
    // database is created 0600 by `database_file`; its -wal and -shm follow it).
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
    Ok(())
}

/// Creates SQLite's database file in the data dir (private); returns its path.
fn database_file(data_dir: &Path) -> Result<PathBuf, StoreError> {
    let db = data_dir.join("ferry.db");
    crate::datadir::create_private_file(&db).map_err(|source| StoreError::DataDir {
        path: db.display().to_string(),
        source,
    })?;
    Ok(db)
}

/// `journal_size_limit` of every connection (the pool's and the intake writer's): a WAL grown
/// by a burst goes back to this size (64 MiB) when it is started over.
pub(super) const JOURNAL_SIZE_LIMIT: u64 = 64 * 1024 * 1024;

/// How every connection to the database is opened, the pool's and the intake writer's.
fn connect_options(db: PathBuf) -> Result<SqliteConnectOptions, StoreError> {
    Ok(SqliteConnectOptions::from_str("sqlite:")?
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
        .foreign_keys(true)
        // Checkpoints run on a thread of their own (`checkpoint`), never inside a commit.
        .pragma("wal_autocheckpoint", "0")
        .pragma("journal_size_limit", JOURNAL_SIZE_LIMIT.to_string()))
}

/// The PostgreSQL pool that planner, lanes and API share.
async fn pg_pool(options: &PgConnectOptions) -> Result<PgPool, StoreError> {
    Ok(PgPoolOptions::new()
        .max_connections(8)
        .acquire_timeout(Duration::from_secs(10))
        .after_release(|conn, _| {
            Box::pin(async move { Ok(!sqlx::Connection::is_in_transaction(conn)) })
        })
        .connect_with(options.clone())
        .await?)
}

/// The pool that planner, lanes and API share.
async fn pool(options: &SqliteConnectOptions) -> Result<SqlitePool, StoreError> {
    Ok(SqlitePoolOptions::new()
        .max_connections(4)
        // A connection that comes back still inside a transaction (a COMMIT or ROLLBACK
        // failed, e.g. on a full disk) is closed, never reused: see `batch::Writer`.
        .after_release(|conn, _| {
            Box::pin(async move { Ok(!sqlx::Connection::is_in_transaction(conn)) })
        })
        .connect_with(options.clone())
        .await?)
}

#[cfg(test)]
mod tests {
    use super::{Store, connect_options, database_file, pool, private_dir};
    #[allow(unused_imports)]
    use crate::store::db::{with_db, with_tx};

    /// A store made by the version before migration 0014 (bodies in `deliveries`) opens with
    /// every delivery, its body and its size as received, and its deployments.
    #[tokio::test]
    async fn a_store_from_before_0014_keeps_its_deliveries_and_bodies() {
        let dir = tempfile::tempdir().expect("tempdir");
        private_dir(dir.path()).await.expect("dir");
        let db = database_file(dir.path()).expect("database file");
        let old = pool(&connect_options(db).expect("options"))
            .await
            .expect("pool");
        sqlx::migrate!("./migrations/sqlite")
            .run_to(13, &old)
            .await
            .expect("migrations up to 0013");
        // Received (unplanned), planned with a deployment, refused with its body cut, empty.
        sqlx::raw_sql(
            "INSERT INTO deliveries (id, app, source, received_at, verified, status, error, headers, body, body_size, dedupe_key)
             VALUES (1, 'a', 'github', 10, 1, 'received', NULL, '{\"x-github-event\":\"push\"}', x'7b2261223a317d', NULL, 'k1'),
                    (2, 'a', 'generic', 11, 0, 'planned', NULL, '{}', x'0001ff', NULL, NULL),
                    (3, 'b', 'github', 12, 0, 'rejected', 'bad signature', '{}', x'78', 5000, NULL),
                    (4, 'b', 'generic', 13, 0, 'planned', NULL, '{}', x'', NULL, NULL);
             INSERT INTO deployments (app, service, delivery_id, state, source, event, created_at)
             VALUES ('a', 's', 2, 'succeeded', 'generic', 'redeploy', 11);",
        )
        .execute(&old)
        .await
        .expect("old rows");
        old.close().await;

        let (store, _intake) = Store::open(dir.path()).await.expect("open and migrate");
        let expected: [(i64, &[u8], Option<i64>, &str); 4] = [
            (1, b"{\"a\":1}", None, "received"),
            (2, &[0, 1, 0xff], None, "planned"),
            (3, b"x", Some(5000), "rejected"),
            (4, b"", None, "planned"),
        ];
        for (id, body, size, status) in expected {
            let full = store.delivery(id).await.expect("read").expect("kept");
            assert_eq!(full.body, body, "delivery {id}");
            assert_eq!(full.body_size, size, "delivery {id}");
            assert_eq!(full.delivery.status.as_str(), status, "delivery {id}");
        }
        let unplanned = store.unplanned(0, 10).await.expect("queue");
        assert_eq!(unplanned.len(), 1);
        assert_eq!(unplanned[0].body, b"{\"a\":1}");
        assert_eq!(unplanned[0].headers, "{\"x-github-event\":\"push\"}");
        let deployments: i64 =
            with_db!(&store.db, pool, q => sqlx::query_scalar(q("SELECT COUNT(*) FROM deployments WHERE delivery_id = 2"))
                .fetch_one(pool)
                .await)
                .expect("count");
        assert_eq!(deployments, 1);
    }
}
