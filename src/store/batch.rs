//! Group commit for hook deliveries.
//!
//! A hook request may answer 2xx only once its delivery is on disk, and one fsync per request
//! would cap ferry at the disk's fsync rate. So requests hand their delivery to one writer task
//! ([`Intake::insert`]); the writer takes everything that is waiting and writes it in one
//! transaction. Under load batches grow by themselves; when idle a batch is a single delivery
//! and adds no delay.
//!
//! Committing and flushing are two stages of a pipeline. The writer commits (SQLite writes the
//! WAL frames to the OS, without fsync) and hands the batch to the flusher, which fsyncs the WAL
//! and only then answers the batch's requests. While one batch is being flushed the writer
//! already inserts the next, and one fsync covers every batch committed before it started.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use sqlx::SqliteConnection;
use sqlx::sqlite::SqliteConnectOptions;
use tokio::sync::{Notify, mpsc, oneshot};

use super::{DeliveryStatus, StoreError};
use crate::metrics::Metrics;

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

/// What happened to a delivery handed to the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Inserted {
    /// Stored under this id.
    New(i64),
    /// Same dedupe key as this earlier delivery; nothing stored.
    Duplicate(i64),
}

type Job = (NewDelivery, oneshot::Sender<Result<Inserted, StoreError>>);

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
            .send((delivery, done))
            .await
            .map_err(|_| StoreError::WriterGone)?;
        wait.await.map_err(|_| StoreError::WriterGone)?
    }
}

/// Counts a delivery out of the intake queue however its request ends (even if dropped).
struct Leave<'a>(&'a super::Gate);

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        self.0.intake_leave();
    }
}

/// Starts the writer and the flusher, which record batch sizes, commit and fsync times into
/// `metrics`.
pub(super) fn start(
    conn: SqliteConnection,
    options: SqliteConnectOptions,
    gate: super::WriteGate,
    live: crate::live::Hub,
    metrics: Arc<Metrics>,
) -> Intake {
    let (tx, rx) = mpsc::channel(4 * MAX_BATCH);
    // A few committed batches may wait for the flush in progress; more, and the writer waits.
    let (flush_tx, flush_rx) = mpsc::channel(8);
    let committed = Arc::new(Notify::new());
    let wal = Wal::of(options.get_filename());
    tokio::spawn(writer(
        Writer {
            conn: Some(conn),
            options,
            gate: gate.clone(),
            live,
            metrics: metrics.clone(),
        },
        rx,
        flush_tx,
    ));
    tokio::spawn(flusher(wal, flush_rx, committed.clone(), metrics));
    Intake {
        tx,
        gate,
        committed,
    }
}

/// The writer's connection. After any failed write it is thrown away and opened afresh: a
/// COMMIT that failed (disk full, I/O error) can leave SQLite and sqlx disagreeing about the
/// open transaction, and later "commits" on that connection would only release savepoints
/// — acknowledged but never written. A fresh connection cannot carry such state.
struct Writer {
    conn: Option<SqliteConnection>,
    options: SqliteConnectOptions,
    gate: super::WriteGate,
    /// Each stored delivery is published here after its commit (nothing when nobody watches).
    live: crate::live::Hub,
    metrics: Arc<Metrics>,
}

impl Writer {
    async fn write(&mut self, jobs: &[Job]) -> Result<Vec<Inserted>, StoreError> {
        let _gate = self.gate.lock().await;
        let conn = match &mut self.conn {
            Some(c) => c,
            None => self
                .conn
                .insert(<SqliteConnection as sqlx::Connection>::connect_with(&self.options).await?),
        };
        let began = Instant::now();
        let result = write_batch(conn, jobs).await;
        if let Ok(inserted) = &result {
            self.metrics.batch_committed(jobs.len(), began.elapsed());
            // Still under the gate: viewers see the delivery before the planner's change to it.
            publish(&self.live, jobs, inserted);
        }
        if result.is_err()
            && let Some(c) = self.conn.take()
        {
            let _ = sqlx::Connection::close(c).await;
        }
        result
    }
}

impl Writer {
    /// Deletes refused deliveries of `apps` beyond the newest [`REJECTED_KEEP_PER_APP`]. Run
    /// after each batch that stored refused deliveries, so the cap holds at all times; each
    /// run walks at most that many entries of a partial index and usually deletes a few rows.
    /// A failure is logged and retried with the next refused delivery: it must not fail hooks.
    async fn prune_refused(&mut self, apps: &std::collections::BTreeSet<String>) {
        if apps.is_empty() {
            return;
        }
        let _gate = self.gate.lock().await;
        let conn = match &mut self.conn {
            Some(c) => c,
            None => match <SqliteConnection as sqlx::Connection>::connect_with(&self.options).await
            {
                Ok(c) => self.conn.insert(c),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot prune refused deliveries");
                    return;
                }
            },
        };
        for app in apps {
            if let Err(e) = prune_refused(conn, app, REJECTED_KEEP_PER_APP).await {
                tracing::warn!(error = %e, "cannot prune refused deliveries");
                if let Some(c) = self.conn.take() {
                    let _ = sqlx::Connection::close(c).await;
                }
                return;
            }
        }
    }
}

/// Publishes the deliveries a batch stored (not its duplicates) to live viewers, if any.
fn publish(live: &crate::live::Hub, jobs: &[Job], inserted: &[Inserted]) {
    if !live.listening() {
        return;
    }
    for ((d, _), result) in jobs.iter().zip(inserted) {
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
pub(super) async fn prune_refused(
    conn: &mut SqliteConnection,
    app: &str,
    keep: i64,
) -> Result<u64, StoreError> {
    let done = sqlx::query(
        // Literal states: the partial index `deliveries_rejected` only matches a literal.
        "DELETE FROM deliveries
         WHERE app = ?1 AND status = 'rejected'
           AND id <= (SELECT id FROM deliveries INDEXED BY deliveries_rejected
                      WHERE app = ?1 AND status = 'rejected' ORDER BY id DESC LIMIT 1 OFFSET ?2)
           AND NOT EXISTS (SELECT 1 FROM deployments p WHERE p.delivery_id = deliveries.id)",
    )
    .bind(app)
    .bind(keep)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected())
}

/// What is stored of a delivery's body, and the size received when that is less than all of
/// it: a refused delivery keeps only its first [`REJECTED_BODY_KEEP`] bytes.
fn stored_body(d: &NewDelivery) -> (Vec<u8>, Option<i64>) {
    if d.status == DeliveryStatus::Rejected && d.body.len() > REJECTED_BODY_KEEP {
        let size = i64::try_from(d.body.len()).unwrap_or(i64::MAX);
        (d.body[..REJECTED_BODY_KEEP].to_vec(), Some(size))
    } else {
        (d.body.to_vec(), None)
    }
}

/// A committed batch on its way to the flusher: each request's answer, and where to send it.
type Committed = Vec<(
    oneshot::Sender<Result<Inserted, StoreError>>,
    Result<Inserted, StoreError>,
)>;

async fn writer(mut w: Writer, mut rx: mpsc::Receiver<Job>, flush: mpsc::Sender<Committed>) {
    let mut jobs: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut jobs, MAX_BATCH).await > 0 {
        let refused = refused_apps(&jobs);
        let results = match w.write(&jobs).await {
            Ok(results) => results.into_iter().map(Ok).collect(),
            Err(e) => {
                tracing::warn!(error = %e, size = jobs.len(), "batch commit failed; writing one by one");
                // One bad delivery must not fail the others: retry each on its own.
                let mut results = Vec::with_capacity(jobs.len());
                for job in &jobs {
                    let one = w.write(std::slice::from_ref(job)).await;
                    results.push(one.map(|mut r| r.remove(0)));
                }
                results
            }
        };
        let batch: Committed = jobs.drain(..).map(|(_, done)| done).zip(results).collect();
        if flush.send(batch).await.is_err() {
            return; // The flusher is gone (shutdown): the dropped senders answer "writer gone".
        }
        // After the hand-off, so the batch's answers do not wait for it.
        w.prune_refused(&refused).await;
    }
}

/// The apps that have refused deliveries in a batch.
fn refused_apps(jobs: &[Job]) -> std::collections::BTreeSet<String> {
    jobs.iter()
        .filter(|(d, _)| d.status == DeliveryStatus::Rejected)
        .map(|(d, _)| d.app.clone())
        .collect()
}

/// Makes committed batches durable and answers their requests. Everything waiting when a flush
/// starts is covered by it: the WAL is append-only, and an fsync flushes all of it.
async fn flusher(
    mut wal: Wal,
    mut rx: mpsc::Receiver<Committed>,
    committed: Arc<Notify>,
    metrics: Arc<Metrics>,
) {
    let mut batches: Vec<Committed> = Vec::new();
    while rx.recv_many(&mut batches, 64).await > 0 {
        let wrote = batches.iter().flatten().any(|(_, r)| r.is_ok());
        let flushed = if wrote {
            let metrics = metrics.clone();
            let synced = tokio::task::spawn_blocking(move || {
                let began = Instant::now();
                let result = wal.sync();
                metrics.flushed(began.elapsed());
                (wal, result)
            })
            .await;
            match synced {
                Ok((back, result)) => {
                    wal = back;
                    result
                }
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                // The runtime is shutting down: the waiting requests get "writer gone" (503).
                Err(_) => return,
            }
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
        for (done, result) in batches.drain(..).flatten() {
            let result = match (&flushed, result) {
                (Err((path, e)), Ok(_)) => Err(StoreError::Flush {
                    path: path.display().to_string(),
                    source: e.clone(),
                }),
                (_, r) => r,
            };
            new |= matches!(result, Ok(Inserted::New(_)));
            // The request may have gone away; its delivery is stored all the same.
            let _ = done.send(result);
        }
        if new {
            committed.notify_one();
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

/// Writes a batch in one transaction with one multi-row INSERT: each statement is a round trip
/// to sqlx's SQLite thread, and one per delivery made the commit, not the disk, the bottleneck.
async fn write_batch(
    conn: &mut SqliteConnection,
    jobs: &[Job],
) -> Result<Vec<Inserted>, StoreError> {
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    // Ids are assigned here so that each job knows its row: the order of RETURNING rows is
    // unspecified. This writer is the only one inserting deliveries, under the write gate;
    // `sqlite_sequence` (AUTOINCREMENT) also covers ids of pruned rows, so none is reused.
    let first: i64 = sqlx::query_scalar(
        "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'deliveries'), 0) + 1",
    )
    .fetch_one(&mut *tx)
    .await?;
    let mut inserted = std::collections::HashSet::with_capacity(jobs.len());
    // 17 variables per row; SQLite allows 32766 per statement.
    for (chunk_no, chunk) in jobs.chunks(1024).enumerate() {
        let base = first + (chunk_no * 1024) as i64;
        inserted.extend(insert_chunk(&mut tx, base, chunk).await?);
    }
    // Refused deliveries (never duplicates: they have no dedupe key) are events.
    let refused: Vec<i64> = (first..)
        .zip(jobs)
        .filter(|(_, (d, _))| d.status == DeliveryStatus::Rejected)
        .map(|(id, _)| id)
        .collect();
    if !refused.is_empty() {
        super::outbox::journal_refused(&mut tx, &refused).await?;
    }
    let mut out = Vec::with_capacity(jobs.len());
    for (i, (d, _)) in jobs.iter().enumerate() {
        let id = first + i as i64;
        if inserted.contains(&id) {
            out.push(Inserted::New(id));
        } else {
            // A duplicate of an earlier delivery, or of one earlier in this very batch.
            out.push(Inserted::Duplicate(original_of(&mut tx, d).await?));
        }
    }
    tx.commit().await?;
    Ok(out)
}

/// Inserts deliveries under the ids `base..`, skipping duplicates; returns the ids inserted.
async fn insert_chunk(
    tx: &mut SqliteConnection,
    base: i64,
    chunk: &[Job],
) -> Result<Vec<i64>, StoreError> {
    let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
        "INSERT INTO deliveries (id, app, source, event, source_delivery_id, dedupe_key, received_at, verified, scheme, status, error, query, headers, body, body_size, replay_of, refused_with) ",
    );
    q.push_values(chunk.iter().enumerate(), |mut row, (i, (d, _))| {
        let (body, body_size) = stored_body(d);
        row.push_bind(base + i as i64)
            .push_bind(d.app.clone())
            .push_bind(d.source.clone())
            .push_bind(d.event.clone())
            .push_bind(d.source_delivery_id.clone())
            .push_bind(d.dedupe_key.clone())
            .push_bind(d.received_at)
            .push_bind(d.verified)
            .push_bind(d.scheme.clone())
            .push_bind(d.status)
            .push_bind(d.error.clone())
            .push_bind(d.query.clone())
            .push_bind(d.headers.clone())
            .push_bind(body)
            .push_bind(body_size)
            .push_bind(d.replay_of)
            .push_bind(d.refused_with);
    });
    q.push(" ON CONFLICT (app, dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING RETURNING id");
    Ok(q.build_query_scalar().fetch_all(&mut *tx).await?)
}

/// The stored delivery a duplicate duplicates, which counts it (the duplicate itself is not
/// stored): one statement, as the lookup was, so duplicates cost intake nothing more.
async fn original_of(tx: &mut SqliteConnection, d: &NewDelivery) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar(
        "UPDATE deliveries SET duplicates = duplicates + 1, duplicate_at = ?3
         WHERE app = ?1 AND dedupe_key = ?2 RETURNING id",
    )
    .bind(&d.app)
    .bind(&d.dedupe_key)
    .bind(d.received_at)
    .fetch_one(&mut *tx)
    .await?)
}

#[cfg(test)]
mod tests {
    use super::*;
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
        sqlx::query("INSERT INTO deployments (app, service, delivery_id, state, source, event, created_at) VALUES ('a', 's', ?1, 'skipped', 'generic', 'e', 1)")
            .bind(refused[1])
            .execute(&store.pool)
            .await
            .expect("deployment");
        let mut conn = store.pool.acquire().await.expect("conn");
        assert_eq!(prune_refused(&mut conn, "a", 2).await.expect("prune"), 2);
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
    }
}
