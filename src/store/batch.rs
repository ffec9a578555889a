//! Group commit for hook deliveries.
//!
//! A hook request may answer 2xx only once its delivery is on disk, and one fsync per request
//! would cap ferry at the disk's fsync rate. So requests hand their delivery to one writer
//! ([`Intake::insert`]); the writer takes everything that is waiting and writes it in one
//! transaction. Under load batches grow by themselves; when idle a batch is a single delivery
//! and adds no delay.
//!
//! The writer is a thread of its own that drives SQLite directly (rusqlite, statements prepared
//! once and cached), not a task on sqlx's pool: through sqlx every statement was a hand-off to
//! sqlx's SQLite thread and back, and its arguments a copy of each 7.7 KB body. Here a body is
//! bound from the request's `Bytes` as it is, and a batch costs two thread wake-ups in all.
//!
//! Committing and flushing are two stages of a pipeline, each on its own thread. The writer
//! commits (SQLite writes the WAL frames to the OS, without fsync) and hands the batch to the
//! flusher, which fsyncs the WAL and only then answers the batch's requests. While one batch is
//! being flushed the writer already inserts the next, and one fsync covers every batch
//! committed before it started.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use tokio::sync::{Notify, mpsc, oneshot};

use super::body::Stored;
use super::{DeliveryStatus, StoreError};
use crate::metrics::Metrics;

pub(super) mod postgres;

/// Most deliveries written in one transaction.
const MAX_BATCH: usize = 512;

/// How much of a refused delivery's body is stored: enough to see what was sent, not enough
/// for a flood of refused 1 MiB requests to fill the disk.
pub(crate) const REJECTED_BODY_KEEP: usize = 4096;

/// How many refused deliveries are kept per app (the newest); older ones are pruned after each
/// batch that stored one. Accepted deliveries are never pruned this way (see `server.keep`).
pub(crate) const REJECTED_KEEP_PER_APP: i64 = 1000;

/// A delivery as a hook request hands it to the store.
#[derive(Debug, Clone)]
pub(crate) struct NewDelivery {
    pub(crate) app: String,
    pub(crate) source: String,
    pub(crate) event: Option<String>,
    pub(crate) source_delivery_id: Option<String>,
    /// `Some` for accepted deliveries with a sender id: a second one with the same key (per app)
    /// is a duplicate. Rejected deliveries have none, so they never block a good retry.
    pub(crate) dedupe_key: Option<String>,
    pub(crate) received_at: i64,
    pub(crate) verified: bool,
    /// Which scheme verified it (`sources::Scheme::as_str`; `admin_token` for the API's own):
    /// `None` when nothing did.
    pub(crate) scheme: Option<String>,
    pub(crate) status: DeliveryStatus,
    pub(crate) error: Option<String>,
    pub(crate) query: Option<String>,
    pub(crate) headers: String,
    pub(crate) body: Bytes,
    pub(crate) replay_of: Option<i64>,
    /// The HTTP status a refused hook request was answered with (401: verification failed).
    pub(crate) refused_with: Option<u16>,
}

impl NewDelivery {
    /// A delivery ferry makes itself (the API's deploy and rollback, a reconcile), received
    /// now: verified, since nothing from outside is in it to check, and without headers. The
    /// caller sets what else it carries (its scheme, query, dedupe key).
    pub(crate) fn internal(app: &str, source: &str, event: &str, body: Bytes) -> NewDelivery {
        NewDelivery {
            app: app.to_string(),
            source: source.to_string(),
            event: Some(event.to_string()),
            source_delivery_id: None,
            dedupe_key: None,
            received_at: super::now_ms(),
            verified: true,
            scheme: None,
            status: DeliveryStatus::Received,
            error: None,
            query: None,
            headers: "{}".into(),
            body,
            replay_of: None,
            refused_with: None,
        }
    }
}

/// What happened to a delivery handed to the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Inserted {
    /// Stored under this id.
    New(i64),
    /// Same dedupe key as this earlier delivery; nothing stored.
    Duplicate(i64),
}

/// A request's answer, with its delivery handed back: the request task drops the delivery, so
/// its buffers are freed on the worker whose allocator arena they came from. glibc frees a large
/// chunk of another thread's arena under that arena's lock, and the workers contended for it
/// (futex waits and wakes) while the writer freed the bodies.
type Answer = (Result<Inserted, StoreError>, NewDelivery);

/// A delivery queued for the writer: as received, what of its body is written (encoded by the
/// request's task, see [`Stored::of`]), and where its answer goes.
pub(super) struct Job {
    delivery: NewDelivery,
    body: Stored,
    done: oneshot::Sender<Answer>,
}

/// The handle hook requests use to store deliveries. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Intake {
    tx: mpsc::Sender<Job>,
    gate: super::WriteGate,
    /// Woken after every commit that stored something new: the planner waits on it.
    pub(crate) committed: Arc<Notify>,
}

impl Intake {
    /// Stores a delivery durably (committed and fsync'd) before returning.
    pub(crate) async fn insert(&self, delivery: NewDelivery) -> Result<Inserted, StoreError> {
        let (done, wait) = oneshot::channel();
        self.gate.intake_enter();
        let _leave = Leave(&self.gate);
        self.tx
            .send(Job {
                body: Stored::of(&delivery),
                delivery,
                done,
            })
            .await
            .map_err(|_| StoreError::WriterGone)?;
        let (result, _delivery) = wait.await.map_err(|_| StoreError::WriterGone)?;
        result
    }
}

/// Counts a delivery out of the intake queue however its request ends (even if dropped).
struct Leave<'a>(&'a super::Gate);

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        self.0.intake_leave();
    }
}

/// Starts the writer and the flusher threads, which record batch sizes, commit and fsync times
/// into `metrics`. `db` is the database file, already created and migrated.
pub(super) fn start(
    db: &Path,
    gate: super::WriteGate,
    live: crate::live::Hub,
    metrics: Arc<Metrics>,
) -> Result<Intake, StoreError> {
    let (tx, rx) = mpsc::channel(4 * MAX_BATCH);
    // A few committed batches may wait for the flush in progress; more, and the writer waits.
    // Not a rendezvous: a writer that waited for the hand-off would leave what arrives during
    // an fsync for the fsync after next (fewer commits, but with a 5 ms fsync 27 % fewer
    // deliveries per second at 32 connections; BENCHMARKS.md, "2026-12-05 (evening)").
    let (flush_tx, flush_rx) = std::sync::mpsc::sync_channel(8);
    let committed = Arc::new(Notify::new());
    let writer = Writer {
        conn: Some(connect(db)?),
        db: db.to_path_buf(),
        gate: gate.clone(),
        live,
        metrics: metrics.clone(),
    };
    let wal = Wal::of(db);
    let checkpoint = super::checkpoint::start(db)?;
    let flushed = committed.clone();
    let spawned = std::thread::Builder::new()
        .name("ferry-intake".into())
        .spawn(move || writer.run(rx, flush_tx))
        .and_then(|_| {
            std::thread::Builder::new()
                .name("ferry-flush".into())
                .spawn(move || flusher(wal, flush_rx, flushed, metrics, checkpoint))
        });
    spawned.map_err(|e| StoreError::Thread(Arc::new(e)))?;
    Ok(Intake {
        tx,
        gate,
        committed,
    })
}

/// Opens the writer's own connection. The pool's connections set the same (`open.rs`): WAL
/// (persistent in the file already), NORMAL (the flusher makes commits durable), foreign keys.
fn connect(db: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(db)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.execute_batch(&format!(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;
         PRAGMA wal_autocheckpoint = 0; PRAGMA journal_size_limit = {};",
        super::open::JOURNAL_SIZE_LIMIT
    ))?;
    // Enough for every statement the writer has (a handful).
    conn.set_prepared_statement_cache_capacity(16);
    Ok(conn)
}

/// The writer's connection. After any failed write it is thrown away and opened afresh: a
/// COMMIT that failed (disk full, I/O error) can leave the connection in a state nobody should
/// build on, and a fresh connection cannot carry such state.
struct Writer {
    conn: Option<Connection>,
    db: PathBuf,
    gate: super::WriteGate,
    /// Each stored delivery is published here after its commit (nothing when nobody watches).
    live: crate::live::Hub,
    metrics: Arc<Metrics>,
}

/// A committed batch on its way to the flusher: each request's answer, and where to send it.
type Committed = Vec<(oneshot::Sender<Answer>, Answer)>;

impl Writer {
    /// Writes batches until every [`Intake`] is gone (shutdown).
    fn run(mut self, mut rx: mpsc::Receiver<Job>, flush: std::sync::mpsc::SyncSender<Committed>) {
        let mut jobs: Vec<Job> = Vec::with_capacity(MAX_BATCH);
        while let Some(first) = rx.blocking_recv() {
            jobs.push(first);
            while jobs.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
            let refused = refused_apps(&jobs);
            let results = match self.write(&jobs) {
                Ok(results) => results.into_iter().map(Ok).collect(),
                Err(e) => {
                    tracing::warn!(error = %e, size = jobs.len(), "batch commit failed; writing one by one");
                    // One bad delivery must not fail the others: retry each on its own.
                    let mut results = Vec::with_capacity(jobs.len());
                    for job in &jobs {
                        let one = self.write(std::slice::from_ref(job));
                        results.push(one.map(|mut r| r.remove(0)));
                    }
                    results
                }
            };
            let batch: Committed = jobs
                .drain(..)
                .zip(results)
                .map(|(job, result)| (job.done, (result, job.delivery)))
                .collect();
            if flush.send(batch).is_err() {
                return; // The flusher is gone: the dropped senders answer "writer gone".
            }
            // After the hand-off, so the batch's answers do not wait for it.
            self.prune_refused(&refused);
        }
    }

    /// The connection, opened afresh if the last write threw it away.
    fn conn(&mut self) -> Result<&mut Connection, StoreError> {
        if self.conn.is_none() {
            self.conn = Some(connect(&self.db)?);
        }
        self.conn.as_mut().ok_or(StoreError::WriterGone)
    }

    fn write(&mut self, jobs: &[Job]) -> Result<Vec<Inserted>, StoreError> {
        let gate = self.gate.clone();
        let _gate = gate.blocking_lock();
        let began = Instant::now();
        let result = self.conn().and_then(|conn| write_batch(conn, jobs));
        match &result {
            Ok(inserted) => {
                self.metrics.batch_committed(jobs.len(), began.elapsed());
                // Still under the gate: viewers see the delivery before the planner's change.
                publish(&self.live, jobs, inserted);
            }
            Err(_) => self.conn = None,
        }
        result
    }

    /// Deletes refused deliveries of `apps` beyond the newest [`REJECTED_KEEP_PER_APP`]. Run
    /// after each batch that stored refused deliveries, so the cap holds at all times; each
    /// run walks at most that many entries of a partial index and usually deletes a few rows.
    /// A failure is logged and retried with the next refused delivery: it must not fail hooks.
    fn prune_refused(&mut self, apps: &BTreeSet<String>) {
        if apps.is_empty() {
            return;
        }
        let gate = self.gate.clone();
        let _gate = gate.blocking_lock();
        let pruned = self.conn().and_then(|conn| {
            apps.iter()
                .try_for_each(|app| prune_refused(conn, app, REJECTED_KEEP_PER_APP).map(drop))
        });
        if let Err(e) = pruned {
            tracing::warn!(error = %e, "cannot prune refused deliveries");
            self.conn = None;
        }
    }
}

/// Publishes the deliveries a batch stored (not its duplicates) to live viewers, if any.
fn publish(live: &crate::live::Hub, jobs: &[Job], inserted: &[Inserted]) {
    if !live.listening() {
        return;
    }
    for (Job { delivery: d, .. }, result) in jobs.iter().zip(inserted) {
        if let Inserted::New(id) = *result {
            super::changes::publish_delivery(live, || super::changes::DeliveryChange {
                id,
                app: d.app.clone(),
                source: d.source.clone(),
                event: d.event.clone(),
                status: d.status,
                error: d.error.clone(),
                received_at: d.received_at,
            });
        }
    }
}

/// Deletes an app's refused deliveries older than its newest `keep`. Refused deliveries are
/// never planned, so no deployment refers to them (checked all the same: a foreign-key error
/// here would be a bug, not a reason to keep failing).
pub(super) fn prune_refused(conn: &Connection, app: &str, keep: i64) -> Result<usize, StoreError> {
    let mut stmt = conn.prepare_cached(
        // Literal states: the partial index `deliveries_rejected` only matches a literal.
        "DELETE FROM deliveries
         WHERE app = ?1 AND status = 'rejected'
           AND id <= (SELECT id FROM deliveries INDEXED BY deliveries_rejected
                      WHERE app = ?1 AND status = 'rejected' ORDER BY id DESC LIMIT 1 OFFSET ?2)
           AND NOT EXISTS (SELECT 1 FROM deployments p WHERE p.delivery_id = deliveries.id)",
    )?;
    Ok(stmt.execute(params![app, keep])?)
}

/// The apps that have refused deliveries in a batch.
fn refused_apps(jobs: &[Job]) -> BTreeSet<String> {
    jobs.iter()
        .filter(|job| job.delivery.status == DeliveryStatus::Rejected)
        .map(|job| job.delivery.app.clone())
        .collect()
}

/// Makes committed batches durable and answers their requests. Everything waiting when a flush
/// starts is covered by it: the WAL is append-only, and an fsync flushes all of it.
fn flusher(
    mut wal: Wal,
    rx: std::sync::mpsc::Receiver<Committed>,
    committed: Arc<Notify>,
    metrics: Arc<Metrics>,
    checkpoint: std::sync::mpsc::SyncSender<()>,
) {
    let mut batches: Vec<Committed> = Vec::new();
    while let Ok(first) = rx.recv() {
        batches.push(first);
        batches.extend(rx.try_iter());
        let wrote = batches.iter().flatten().any(|(_, (r, _))| r.is_ok());
        let flushed = if wrote {
            let began = Instant::now();
            let result = wal.sync();
            metrics.flushed(began.elapsed());
            result
        } else {
            Ok(())
        };
        if let Err((path, e)) = &flushed {
            // Committed but maybe not on disk: the sender gets 503 and retries. A retry with a
            // delivery id is answered as a duplicate of the stored one; that is the best an
            // fsync failure allows (SQLite's own FULL mode is in the same position).
            tracing::error!(file = %path.display(), error = %e, "flushing hook deliveries to disk failed");
        }
        let mut new = false;
        for (done, (result, delivery)) in batches.drain(..).flatten() {
            let result = match (&flushed, result) {
                (Err((path, e)), Ok(_)) => Err(StoreError::Flush {
                    path: path.display().to_string(),
                    source: e.clone(),
                }),
                (_, r) => r,
            };
            new |= matches!(result, Ok(Inserted::New(_)));
            // The request may have gone away; its delivery is stored all the same.
            let _ = done.send((result, delivery));
        }
        if new {
            committed.notify_one();
        }
        if wrote {
            // Full: a checkpoint is already asked for.
            let _ = checkpoint.try_send(());
        }
    }
}

/// fsync for the database's WAL file, which SQLite (synchronous = NORMAL) writes but does not
/// flush on commit. The file is opened afresh for each flush: SQLite deletes and recreates it
/// when the last connection closes (the writer reconnects after a failed write), and a stale
/// descriptor would flush a file nobody reads.
struct Wal {
    db: PathBuf,
    path: PathBuf,
    /// Inode of the WAL flushed last; a new one means a new file whose directory entry must be
    /// made durable too.
    inode: Option<u64>,
}

/// A failed flush: which file, and why (shared by every request of the flush).
type FlushFailure = (PathBuf, Arc<std::io::Error>);

impl Wal {
    /// The WAL of the database file `db` (SQLite names it `DB-wal`).
    fn of(db: &Path) -> Wal {
        let mut path = db.as_os_str().to_owned();
        path.push("-wal");
        Wal {
            db: db.to_path_buf(),
            path: path.into(),
            inode: None,
        }
    }

    fn sync(&mut self) -> Result<(), FlushFailure> {
        use std::os::unix::fs::MetadataExt;
        let failed = |path: &Path| {
            let path = path.to_path_buf();
            move |e| (path, Arc::new(e))
        };
        let file = match std::fs::File::open(&self.path) {
            Ok(f) => f,
            // No WAL: the last connection closed and SQLite checkpointed it into the database
            // (syncing it) and deleted it. Flush the database file all the same.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.inode = None;
                return std::fs::File::open(&self.db)
                    .and_then(|f| f.sync_all())
                    .map_err(failed(&self.db));
            }
            Err(e) => return Err(failed(&self.path)(e)),
        };
        file.sync_data().map_err(failed(&self.path))?;
        let inode = file.metadata().map_err(failed(&self.path))?.ino();
        if self.inode != Some(inode) {
            // A new file: its directory entry must be on disk too.
            let dir = match self.db.parent() {
                Some(d) if !d.as_os_str().is_empty() => d,
                _ => Path::new("."),
            };
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(failed(dir))?;
            self.inode = Some(inode);
        }
        Ok(())
    }
}

/// Writes a batch in one transaction: one INSERT per delivery through a cached statement (no
/// round trip to pay for on this thread), a duplicate counted on the delivery it repeats.
fn write_batch(conn: &mut Connection, jobs: &[Job]) -> Result<Vec<Inserted>, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut out = Vec::with_capacity(jobs.len());
    let mut refused = Vec::new();
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO deliveries (app, source, event, source_delivery_id, dedupe_key, received_at, verified, scheme, status, error, query, headers, body_size, replay_of, refused_with)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)
             ON CONFLICT (app, dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING RETURNING id",
        )?;
        // The body in a row of its own (migration 0014), so planning updates a small row.
        let mut insert_body = tx.prepare_cached(
            "INSERT INTO delivery_bodies (delivery_id, body, codec) VALUES (?1, ?2, ?3)",
        )?;
        // A duplicate of an earlier delivery, or of one earlier in this very batch: it is not
        // stored, the original counts it.
        let mut duplicate = tx.prepare_cached(
            "UPDATE deliveries SET duplicates = duplicates + 1, duplicate_at = ?3
             WHERE app = ?1 AND dedupe_key = ?2 RETURNING id",
        )?;
        for Job {
            delivery: d, body, ..
        } in jobs
        {
            let id: Option<i64> = insert
                .query_row(
                    params![
                        d.app,
                        d.source,
                        d.event,
                        d.source_delivery_id,
                        d.dedupe_key,
                        d.received_at,
                        d.verified,
                        d.scheme,
                        d.status.as_str(),
                        d.error,
                        d.query,
                        d.headers,
                        body.size,
                        d.replay_of,
                        d.refused_with,
                    ],
                    |row| row.get(0),
                )
                .optional()?;
            out.push(match id {
                Some(id) => {
                    insert_body.execute(params![id, &body.bytes[..], body.codec])?;
                    if d.status == DeliveryStatus::Rejected {
                        refused.push(id);
                    }
                    Inserted::New(id)
                }
                None => Inserted::Duplicate(
                    duplicate.query_row(params![d.app, d.dedupe_key, d.received_at], |row| {
                        row.get(0)
                    })?,
                ),
            });
        }
    }
    // Refused deliveries (never duplicates: they have no dedupe key) are events.
    if !refused.is_empty() {
        super::outbox::journal_refused(&tx, &refused)?;
    }
    tx.commit()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[allow(unused_imports)]
    use crate::store::db::{with_db, with_tx};
    use crate::store::{DeliveryStatus, Store};

    fn delivery(app: &str, status: DeliveryStatus, body: &[u8]) -> NewDelivery {
        NewDelivery {
            app: app.into(),
            source: "generic".into(),
            event: None,
            source_delivery_id: None,
            dedupe_key: None,
            received_at: 1,
            verified: false,
            scheme: None,
            status,
            error: None,
            query: None,
            headers: "{}".into(),
            body: Bytes::copy_from_slice(body),
            replay_of: None,
            refused_with: None,
        }
    }

    async fn insert(intake: &Intake, d: NewDelivery) -> i64 {
        match intake.insert(d).await.expect("insert") {
            Inserted::New(id) => id,
            other => panic!("{other:?}"),
        }
    }

    /// Automatic checkpoints are off (`checkpoint.rs`): without the checkpointer thread the
    /// WAL would only grow, and the database file would never receive what was written.
    #[tokio::test]
    async fn the_checkpointer_copies_the_wal_into_the_database_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (_store, intake) = Store::open(dir.path()).await.expect("open");
        let db = dir.path().join("ferry.db");
        let size = || std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0);
        let before = size();
        let body = crate::store::test_noise::incompressible(8192, 0);
        for _ in 0..256 {
            insert(&intake, delivery("a", DeliveryStatus::Received, &body)).await;
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while size() < before + 2 * 1024 * 1024 {
            assert!(
                std::time::Instant::now() < deadline,
                "the database file stayed at {} bytes (from {before}): no checkpoint ran",
                size()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A WAL grown large (here: a reader held it while 72 MiB were written; under sustained
    /// load, readers always do) shrinks back to 64 MiB (`journal_size_limit`) once ferry
    /// starts it over, instead of keeping its largest size on disk for good.
    #[tokio::test]
    async fn a_grown_wal_shrinks_back_once_started_over() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (_store, intake) = Store::open(dir.path()).await.expect("open");
        let db = dir.path().join("ferry.db");
        let wal = dir.path().join("ferry.db-wal");
        let size = || std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
        let reader = rusqlite::Connection::open(&db).expect("reader");
        reader.execute_batch("BEGIN").expect("begin");
        let _: i64 = reader
            .query_row("SELECT COUNT(*) FROM deliveries", [], |r| r.get(0))
            .expect("read");
        let body = crate::store::test_noise::incompressible(1024 * 1024, 0);
        for _ in 0..72 {
            insert(&intake, delivery("a", DeliveryStatus::Received, &body)).await;
        }
        let grown = size();
        assert!(
            grown > 72 * 1024 * 1024,
            "the WAL did not grow: {grown} bytes"
        );
        reader.execute_batch("COMMIT").expect("end read");
        let limit = crate::store::open::JOURNAL_SIZE_LIMIT;
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while size() > limit {
            assert!(
                std::time::Instant::now() < deadline,
                "the WAL stayed at {} bytes (grown to {grown})",
                size()
            );
            // Each commit may be the one that starts the WAL over, once a checkpoint copied it.
            insert(&intake, delivery("a", DeliveryStatus::Received, b"{}")).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    #[tokio::test]
    async fn refused_bodies_are_cut_and_only_the_newest_refused_are_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, intake) = Store::open(dir.path()).await.expect("open");
        let big = vec![b'x'; REJECTED_BODY_KEEP + 1];
        let accepted = insert(&intake, delivery("a", DeliveryStatus::Received, &big)).await;
        let mut refused = Vec::new();
        for _ in 0..5 {
            refused.push(insert(&intake, delivery("a", DeliveryStatus::Rejected, &big)).await);
        }
        let other = insert(&intake, delivery("b", DeliveryStatus::Rejected, b"x")).await;

        let full = store
            .delivery(accepted)
            .await
            .expect("read")
            .expect("stored");
        assert_eq!((full.body.len(), full.body_size), (big.len(), None));
        let full = store
            .delivery(refused[0])
            .await
            .expect("read")
            .expect("stored");
        assert_eq!(full.body.len(), REJECTED_BODY_KEEP);
        assert_eq!(full.body_size, Some(big.len() as i64));

        // A deployment that refers to a refused delivery (none should) keeps it, without error.
        with_db!(&store.db, pool, q => sqlx::query("INSERT INTO deployments (app, service, delivery_id, state, source, event, created_at) VALUES ('a', 's', ?1, 'skipped', 'generic', 'e', 1)")
            .bind(refused[1])
            .execute(pool)
            .await.map(drop))
            .expect("deployment");
        let conn = connect(&dir.path().join("ferry.db")).expect("conn");
        assert_eq!(prune_refused(&conn, "a", 2).expect("prune"), 2);
        drop(conn);
        let exists = async |id| store.delivery(id).await.expect("read").is_some();
        assert!(
            exists(accepted).await,
            "accepted deliveries are never pruned"
        );
        assert!(!exists(refused[0]).await && !exists(refused[2]).await);
        assert!(exists(refused[1]).await, "referred to by a deployment");
        assert!(
            exists(refused[3]).await && exists(refused[4]).await,
            "the newest two"
        );
        assert!(exists(other).await, "other apps are not touched");
        let bodies: i64 = with_db!(&store.db, pool, q => sqlx::query_scalar("SELECT COUNT(*) FROM delivery_bodies")
            .fetch_one(pool)
            .await)
            .expect("count");
        assert_eq!(bodies, 5, "a pruned delivery's body goes with it");
    }
}
