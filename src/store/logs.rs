//! Deploy logs in the database, so that every replica serves every deployment's log
//! (PostgreSQL only: `deploy_logs`, migration `postgres/0002`; SQLite keeps logs in files
//! alone, and these reads find nothing there).
//!
//! A log is the concatenation of its chunks in `seq` order: exactly the bytes the replica that
//! runs the deployment appended to its file (`data_dir/logs/ID.log`), so a byte offset means
//! the same in both. What the writer appends goes to a [`LogCopy`] too, which stores it from a
//! task of its own:
//!
//! - **Batched**: a chunk every [`CHUNK_EVERY`] or [`CHUNK_MAX`] bytes, whichever comes first.
//! - **Never blocking the writer**: [`LogCopy::push`] copies into a bounded buffer
//!   ([`PENDING_MAX`]) under a short lock and returns; the deploy command's output pipe never
//!   waits on the database.
//! - **Gaps noted once, offsets kept**: what does not fit (the database is unreachable or too
//!   slow for the output) is dropped from the copy — the file still has it — and stands in the
//!   copy as one note of exactly the same length (the note line padded with spaces), so the
//!   offsets after it still match the file and the copy goes on once the database answers. The
//!   same holds for a gap left by an earlier writer of the log (one that gave up): every chunk
//!   is placed at the file offset it came from, after the copy's length read from the table.
//! - **Settled before the end**: [`LogCopy::settle`] stores what is pending now and waits
//!   until it is stored (bounded by its caller's deadline); the lanes settle the log before
//!   they record the deployment's end, so a reader that sees the end state finds every chunk.
//!
//! A failed insert (the database unreachable, or a `seq` another writer took) makes the copy
//! read the table's length and last `seq` again before the next insert, and trim what is
//! already there: an insert that committed but whose answer was lost is not stored twice.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use super::db::Db;
use super::{Store, StoreError, now_ms};

/// A chunk is stored at least this often while there is output.
pub(crate) const CHUNK_EVERY: Duration = Duration::from_millis(100);
/// The most bytes in one chunk: more output than this is stored at once, in several chunks.
pub(crate) const CHUNK_MAX: usize = 64 * 1024;
/// The most bytes waiting for the database; beyond that, output is left out of the copy.
pub(crate) const PENDING_MAX: usize = 8 * 1024 * 1024;
/// How long a copy whose writers are gone keeps trying to store what it still holds.
const LINGER: Duration = Duration::from_secs(60);
/// Retries of a failed insert: from the first to the longest wait.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);

/// One chunk of a log as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LogChunk {
    pub(crate) seq: i64,
    /// The byte offset in the log at which the chunk starts.
    pub(crate) start: u64,
    pub(crate) bytes: Vec<u8>,
}

/// The chunks of a log from an offset on ([`Store::log_from`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct LogFrom {
    /// The `seq` of the last chunk that ends at or before the offset (0: none): a follower
    /// asks for the chunks after it, or after the last of `chunks`.
    pub(crate) before: i64,
    /// The chunks that end after the offset (the first may start before it).
    pub(crate) chunks: Vec<LogChunk>,
}

impl LogFrom {
    /// At most `max` bytes from `offset` (the offset the chunks were read from).
    pub(crate) fn bytes_from(&self, offset: u64, max: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for c in &self.chunks {
            let skip = usize::try_from(offset.saturating_sub(c.start)).unwrap_or(usize::MAX);
            let rest = c.bytes.get(skip..).unwrap_or_default();
            let room = max - out.len();
            out.extend_from_slice(&rest[..rest.len().min(room)]);
            if out.len() == max {
                break;
            }
        }
        out
    }

    /// The `seq` of the last chunk read (`before` when none was).
    pub(crate) fn last_seq(&self) -> i64 {
        self.chunks.last().map_or(self.before, |c| c.seq)
    }
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

impl Store {
    /// The PostgreSQL pool, which alone has `deploy_logs`.
    fn log_table(&self) -> Option<&PgPool> {
        match &self.db {
            Db::Postgres(pool) => Some(pool),
            Db::Sqlite(_) => None,
        }
    }

    /// The length of a deployment's stored log and the `seq` of its last chunk (0: none).
    pub(crate) async fn log_extent(&self, deployment: i64) -> Result<(u64, i64), StoreError> {
        let Some(pool) = self.log_table() else {
            return Ok((0, 0));
        };
        let (len, last): (i64, i64) = sqlx::query_as(
            "SELECT COALESCE(SUM(octet_length(chunk)), 0)::BIGINT, COALESCE(MAX(seq), 0)
             FROM deploy_logs WHERE deployment_id = $1",
        )
        .bind(deployment)
        .fetch_one(pool)
        .await?;
        Ok((to_u64(len), last))
    }

    /// Stores chunk `seq` of a deployment's log; false when that `seq` is taken already.
    pub(crate) async fn append_log_chunk(
        &self,
        deployment: i64,
        seq: i64,
        chunk: &[u8],
    ) -> Result<bool, StoreError> {
        let Some(pool) = self.log_table() else {
            return Ok(false);
        };
        let done = sqlx::query(
            "INSERT INTO deploy_logs (deployment_id, seq, at, chunk) VALUES ($1, $2, $3, $4)
             ON CONFLICT (deployment_id, seq) DO NOTHING",
        )
        .bind(deployment)
        .bind(seq)
        .bind(now_ms())
        .bind(chunk)
        .execute(pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The chunks of a deployment's log that hold bytes from `offset` up to `offset + max`,
    /// with the offset each starts at, read in one statement (one snapshot).
    pub(crate) async fn log_from(
        &self,
        deployment: i64,
        offset: u64,
        max: usize,
    ) -> Result<LogFrom, StoreError> {
        let Some(pool) = self.log_table() else {
            return Ok(LogFrom::default());
        };
        let until = offset.saturating_add(u64::try_from(max).unwrap_or(u64::MAX));
        // Each chunk's end is the running sum of the lengths before it: the table stores no
        // offsets, so a chunk's place cannot disagree with the chunks before it.
        let rows: Vec<(i64, i64, Option<Vec<u8>>)> = sqlx::query_as(
            "WITH e AS (
                SELECT seq, octet_length(chunk)::BIGINT AS len,
                       (SUM(octet_length(chunk)) OVER (ORDER BY seq))::BIGINT AS end_at
                FROM deploy_logs WHERE deployment_id = $1)
             SELECT e.seq, e.end_at - e.len, CASE WHEN e.end_at > $2 THEN l.chunk END
             FROM e JOIN deploy_logs l ON l.deployment_id = $1 AND l.seq = e.seq
             WHERE (e.end_at > $2 AND e.end_at - e.len < $3)
                OR e.seq = (SELECT MAX(seq) FROM e WHERE end_at <= $2)
             ORDER BY e.seq",
        )
        .bind(deployment)
        .bind(to_i64(offset))
        .bind(to_i64(until))
        .fetch_all(pool)
        .await?;
        let mut out = LogFrom::default();
        for (seq, start, chunk) in rows {
            match chunk {
                Some(bytes) => out.chunks.push(LogChunk {
                    seq,
                    start: to_u64(start),
                    bytes,
                }),
                None => out.before = seq,
            }
        }
        Ok(out)
    }

    /// At most `max` bytes of a deployment's stored log from `offset`, and the offset after
    /// them (as `deploylog::read_from` reads a file: past the end reads as empty).
    pub(crate) async fn read_log(
        &self,
        deployment: i64,
        offset: u64,
        max: usize,
    ) -> Result<(Vec<u8>, u64), StoreError> {
        let bytes = self
            .log_from(deployment, offset, max)
            .await?
            .bytes_from(offset, max);
        let end = offset.saturating_add(bytes.len() as u64);
        Ok((bytes, end))
    }

    /// The chunks after `seq` (at most `limit`), in order: what a follower polls for.
    pub(crate) async fn log_chunks_after(
        &self,
        deployment: i64,
        seq: i64,
        limit: i64,
    ) -> Result<Vec<(i64, Vec<u8>)>, StoreError> {
        let Some(pool) = self.log_table() else {
            return Ok(Vec::new());
        };
        Ok(sqlx::query_as(
            "SELECT seq, chunk FROM deploy_logs WHERE deployment_id = $1 AND seq > $2
             ORDER BY seq LIMIT $3",
        )
        .bind(deployment)
        .bind(seq)
        .bind(limit)
        .fetch_all(pool)
        .await?)
    }

    /// Starts copying a deployment's log to the table: `start` is the file's length when its
    /// writer opened it (where the first push lands); `note(n)` is the log line (ending in a
    /// newline) that stands in the copy for `n` bytes left out of it.
    pub(crate) fn copy_log(&self, deployment: i64, start: u64, note: GapNote) -> LogCopy {
        LogCopy::spawn(self.clone(), deployment, start, note, Limits::default())
    }
}

/// Makes the note that stands in a log's copy for `n` bytes left out of it.
pub(crate) type GapNote = Box<dyn Fn(u64) -> String + Send + Sync>;

/// The sizes a copy works with (smaller in tests).
#[derive(Debug, Clone, Copy)]
struct Limits {
    chunk_max: usize,
    pending_max: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            chunk_max: CHUNK_MAX,
            pending_max: PENDING_MAX,
        }
    }
}

/// A deployment's log on its way to the table: the writer's handle. Dropping the last one
/// closes the copy: what it holds is stored at once (retried for up to [`LINGER`]).
#[derive(Debug)]
pub(crate) struct LogCopy {
    inner: Arc<Inner>,
}

struct Inner {
    deployment: i64,
    limits: Limits,
    pending: Mutex<Pending>,
    /// Wakes the copying task: output came, a settle was asked, the writers are gone.
    wake: Notify,
    /// The file offset up to which the copy is stored (data, or the note of a gap).
    stored: watch::Sender<u64>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogCopy")
            .field("deployment", &self.deployment)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Pending {
    /// The file offset the next push lands at.
    end: u64,
    /// What waits to be stored, each piece with the file offset it starts at (contiguous
    /// pushes share a piece; a gap starts a new one).
    pieces: VecDeque<(u64, Vec<u8>)>,
    size: usize,
    /// When the oldest byte not yet stored was pushed: a chunk is due [`CHUNK_EVERY`] later.
    since: Option<Instant>,
    /// Output is being left out (the buffer is full): warned once per gap.
    dropping: bool,
    /// Store at once (a settle waits), instead of batching.
    flush: bool,
    closed: bool,
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        // Every change under the lock leaves it consistent (a push, a drain): whatever
        // panicked while holding it, the state can be used.
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl LogCopy {
    fn spawn(store: Store, deployment: i64, start: u64, note: GapNote, limits: Limits) -> LogCopy {
        let (stored, _) = watch::channel(start);
        let inner = Arc::new(Inner {
            deployment,
            limits,
            pending: Mutex::new(Pending {
                end: start,
                ..Pending::default()
            }),
            wake: Notify::new(),
            stored,
        });
        tokio::spawn(copy(store, inner.clone(), note));
        LogCopy { inner }
    }

    /// Takes `bytes`, just appended to the file, for the copy. Never waits: when the buffer
    /// is full they are left out (the copy notes the gap).
    pub(crate) fn push(&self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let inner = &self.inner;
        let mut p = inner.lock();
        let at = p.end;
        p.end += bytes.len() as u64;
        if p.size + bytes.len() > inner.limits.pending_max {
            if !p.dropping {
                p.dropping = true;
                tracing::warn!(
                    deployment = inner.deployment,
                    "the database is not keeping up with this log: its copy there leaves output out (the log file has it)"
                );
            }
            return;
        }
        p.dropping = false;
        match p.pieces.back_mut() {
            Some((start, piece)) if *start + piece.len() as u64 == at => {
                piece.extend_from_slice(bytes)
            }
            _ => p.pieces.push_back((at, bytes.to_vec())),
        }
        p.size += bytes.len();
        let due = p.since.is_none() || p.size >= inner.limits.chunk_max;
        p.since.get_or_insert_with(Instant::now);
        drop(p);
        if due {
            inner.wake.notify_one();
        }
    }

    /// The file is `end` bytes long after a failed write (part of it may have been written):
    /// the next push lands there, and what is between stands in the copy as a gap.
    pub(crate) fn resync(&self, end: u64) {
        let mut p = self.inner.lock();
        if end > p.end {
            p.end = end;
            p.since.get_or_insert_with(Instant::now);
        }
    }

    /// Stores everything pushed so far now and waits until it is stored, for at most
    /// `within`. False when it was not (the database is unreachable): the copy goes on trying.
    pub(crate) async fn settle(&self, within: Duration) -> bool {
        let target = {
            let mut p = self.inner.lock();
            p.flush = true;
            p.end
        };
        self.inner.wake.notify_one();
        let mut stored = self.inner.stored.subscribe();
        matches!(
            tokio::time::timeout(within, stored.wait_for(|s| *s >= target)).await,
            Ok(Ok(_))
        )
    }
}

impl Drop for LogCopy {
    fn drop(&mut self) {
        self.inner.lock().closed = true;
        self.inner.wake.notify_one();
    }
}

/// What the table holds of the log, as far as the copy knows.
#[derive(Debug, Clone, Copy)]
struct Known {
    len: u64,
    last_seq: i64,
}

/// A gap being stored: its note, made once, padded to the gap's length.
struct Gap {
    start: u64,
    end: u64,
    note: Vec<u8>,
}

impl Gap {
    fn new(start: u64, end: u64, note: &GapNote) -> Gap {
        Gap {
            start,
            end,
            note: note(end - start).into_bytes(),
        }
    }

    /// Bytes `from..to` (log offsets) of the gap's stand-in: the note without its newline,
    /// cut or padded with spaces to the gap's length less one, then a newline — one line of
    /// the gap's exact length, whatever the length.
    fn bytes(&self, from: u64, to: u64) -> Vec<u8> {
        let len = self.end - self.start;
        let text = self.note.strip_suffix(b"\n").unwrap_or(&self.note);
        (from..to)
            .map(|at| {
                let i = at - self.start;
                if i + 1 == len {
                    b'\n'
                } else {
                    usize::try_from(i)
                        .ok()
                        .and_then(|i| text.get(i).copied())
                        .unwrap_or(b' ')
                }
            })
            .collect()
    }
}

/// The copying task of one log: waits for output (or a settle, or the close), builds the next
/// chunk at the table's length and stores it; on failure learns the table again and retries.
async fn copy(store: Store, inner: Arc<Inner>, note: GapNote) {
    let mut known: Option<Known> = None;
    let mut gap: Option<Gap> = None;
    let mut retry = RETRY_FIRST;
    let mut failing_since: Option<Instant> = None;
    loop {
        // Wait until a chunk is due: a full one, a settle, the close, or CHUNK_EVERY after the
        // oldest byte waiting.
        let closed = loop {
            let (wait, closed) = {
                let p = inner.lock();
                let owed = p.end > *inner.stored.borrow();
                let wait = if !owed {
                    Wait::Idle
                } else if p.flush
                    || p.closed
                    || p.size >= inner.limits.chunk_max
                    || p.pieces.is_empty()
                {
                    // Only a gap is owed (output was left out): nothing more will join it.
                    Wait::Now
                } else {
                    Wait::Until(p.since.unwrap_or_else(Instant::now) + CHUNK_EVERY)
                };
                (wait, p.closed)
            };
            match wait {
                Wait::Idle if closed => return,
                Wait::Idle => inner.wake.notified().await,
                Wait::Now => break closed,
                Wait::Until(at) => {
                    tokio::select! {
                        () = inner.wake.notified() => {}
                        () = tokio::time::sleep_until(at) => break closed,
                    }
                }
            }
        };
        if closed && failing_since.is_some_and(|t| t.elapsed() > LINGER) {
            let p = inner.lock();
            tracing::warn!(
                deployment = inner.deployment,
                bytes = p.end - *inner.stored.borrow(),
                "gave up copying the end of this log to the database (the log file has it)"
            );
            return;
        }
        match store_next(&store, &inner, &note, &mut known, &mut gap).await {
            Ok(()) => {
                retry = RETRY_FIRST;
                failing_since = None;
            }
            Err(e) => {
                if failing_since.is_none() {
                    tracing::warn!(deployment = inner.deployment, error = %e, "cannot copy this log to the database; retrying");
                }
                failing_since.get_or_insert_with(Instant::now);
                known = None;
                tokio::time::sleep(retry).await;
                retry = (retry * 2).min(RETRY_MAX);
            }
        }
    }
}

/// What the copying task waits for.
enum Wait {
    /// Nothing is owed: the next push (or the close).
    Idle,
    /// A chunk is due now.
    Now,
    /// The batch is due then, unless more output fills a chunk first.
    Until(Instant),
}

/// Builds and stores one chunk at the table's length (learnt first if unknown).
async fn store_next(
    store: &Store,
    inner: &Inner,
    note: &GapNote,
    known: &mut Option<Known>,
    gap: &mut Option<Gap>,
) -> Result<(), StoreError> {
    let k = match *known {
        Some(k) => k,
        None => {
            let (len, last_seq) = store.log_extent(inner.deployment).await?;
            let k = Known { len, last_seq };
            *known = Some(k);
            k
        }
    };
    let Some(chunk) = next_chunk(inner, k.len, note, gap) else {
        return Ok(());
    };
    let seq = k.last_seq + 1;
    if store
        .append_log_chunk(inner.deployment, seq, &chunk)
        .await?
    {
        let len = k.len + chunk.len() as u64;
        *known = Some(Known { len, last_seq: seq });
        settled(inner, len);
    } else {
        // Another writer (or this one's own insert, committed though its answer was lost)
        // took the seq: learn the table again and place the next chunk after it.
        *known = None;
    }
    Ok(())
}

/// The next chunk to store at offset `at` (the table's length), from what is pending: the
/// data that starts there (what is pending before it is stored already and dropped), or the
/// stand-in of a gap up to the next data (or up to the end). `None` when nothing is owed.
fn next_chunk(inner: &Inner, at: u64, note: &GapNote, gap: &mut Option<Gap>) -> Option<Vec<u8>> {
    let max = inner.limits.chunk_max as u64;
    let mut p = inner.lock();
    // What the table has already (stored by this copy, or by another writer) goes.
    while let Some((start, piece)) = p.pieces.front_mut() {
        let end = *start + piece.len() as u64;
        if end <= at {
            let n = piece.len();
            p.pieces.pop_front();
            p.size -= n;
        } else if *start < at {
            let cut = usize::try_from(at - *start).unwrap_or(usize::MAX);
            piece.drain(..cut);
            *start = at;
            p.size -= cut;
        } else {
            break;
        }
    }
    let chunk = match p.pieces.front() {
        Some((start, piece)) if *start == at => {
            piece[..piece.len().min(inner.limits.chunk_max)].to_vec()
        }
        next => {
            let end = next.map_or(p.end, |(start, _)| *start);
            if end <= at {
                if p.pieces.is_empty() {
                    p.since = None;
                    p.flush = false;
                }
                drop(p);
                settled(inner, at);
                return None;
            }
            let g = match gap.take() {
                Some(g) if g.start <= at && g.end == end => g,
                _ => Gap::new(at, end, note),
            };
            let bytes = g.bytes(at, end.min(at + max));
            *gap = Some(g);
            bytes
        }
    };
    Some(chunk)
}

/// The copy is stored up to `at`: what waits now is newer (its batching starts over).
fn settled(inner: &Inner, at: u64) {
    {
        let mut p = inner.lock();
        while let Some((start, piece)) = p.pieces.front() {
            if *start + piece.len() as u64 > at {
                break;
            }
            let n = piece.len();
            p.pieces.pop_front();
            p.size -= n;
        }
        if p.end <= at {
            p.since = None;
            p.flush = false;
        }
    }
    inner.stored.send_if_modified(|s| {
        let moved = at > *s;
        *s = (*s).max(at);
        moved
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::states::{DeliveryStatus, DeploymentState};

    /// A deployment row (for the foreign key) in `store`; its id.
    async fn deployment(store: &Store) -> i64 {
        let Db::Postgres(pool) = &store.db else {
            panic!("PostgreSQL only");
        };
        sqlx::query("INSERT INTO deliveries (id, app, source, received_at, verified, status, headers) VALUES (1, 'a', 'generic', 1, TRUE, $1, '{}') ON CONFLICT DO NOTHING")
            .bind(DeliveryStatus::Planned)
            .execute(pool)
            .await
            .expect("delivery");
        sqlx::query_scalar("INSERT INTO deployments (app, service, delivery_id, state, source, event, created_at) VALUES ('a', 's', 1, $1, 'generic', 'e', 1) RETURNING id")
            .bind(DeploymentState::Running)
            .fetch_one(pool)
            .await
            .expect("deployment")
    }

    fn note() -> GapNote {
        Box::new(|n| format!("NOTE {n} bytes left out\n"))
    }

    /// The stored chunks of a log, in order.
    async fn chunks(store: &Store, id: i64) -> Vec<Vec<u8>> {
        store
            .log_chunks_after(id, 0, 1_000_000)
            .await
            .expect("chunks")
            .into_iter()
            .map(|(_, c)| c)
            .collect()
    }

    /// The PostgreSQL stores of `Store::engines` (SQLite has no log table).
    async fn postgres() -> Vec<(tempfile::TempDir, Store, crate::store::Intake)> {
        Store::engines()
            .await
            .into_iter()
            .filter(|(_, store, _)| store.shared())
            .collect()
    }

    fn line(i: usize, width: usize) -> Vec<u8> {
        let mut l = format!("line {i} ").into_bytes();
        l.resize(width - 1, b'x');
        l.push(b'\n');
        l
    }

    #[tokio::test]
    async fn a_burst_is_stored_in_full_chunks_and_the_rest_on_settle() {
        for (_dir, store, _intake) in postgres().await {
            let id = deployment(&store).await;
            let copy = store.copy_log(id, 0, note());
            let mut all = Vec::new();
            // 200 KiB pushed at once: three full chunks and a partial one.
            for i in 0..2000 {
                let l = line(i, 100);
                copy.push(&l);
                all.extend(l);
            }
            assert!(copy.settle(Duration::from_secs(10)).await, "settled");
            let got = chunks(&store, id).await;
            assert_eq!(got.concat(), all);
            assert!(
                got.iter().all(|c| c.len() <= CHUNK_MAX),
                "chunks of at most 64 KiB"
            );
            assert_eq!(
                got.len(),
                all.len().div_ceil(CHUNK_MAX),
                "full chunks while there is more"
            );
            assert_eq!(
                store.log_extent(id).await.unwrap(),
                (all.len() as u64, got.len() as i64)
            );
        }
    }

    #[tokio::test]
    async fn a_quiet_line_is_stored_within_the_batch_time_without_a_settle() {
        for (_dir, store, _intake) in postgres().await {
            let id = deployment(&store).await;
            let copy = store.copy_log(id, 0, note());
            copy.push(b"one\n");
            copy.push(b"two\n");
            let started = std::time::Instant::now();
            loop {
                let got = chunks(&store, id).await;
                if !got.is_empty() {
                    assert_eq!(got, vec![b"one\ntwo\n".to_vec()], "one chunk for the batch");
                    break;
                }
                assert!(started.elapsed() < Duration::from_secs(2), "not stored");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            // The close stores the rest at once.
            copy.push(b"three\n");
            drop(copy);
            tokio::time::sleep(Duration::from_millis(50)).await;
            let started = std::time::Instant::now();
            while chunks(&store, id).await.concat() != b"one\ntwo\nthree\n" {
                assert!(
                    started.elapsed() < Duration::from_secs(2),
                    "the end is stored"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    #[tokio::test]
    async fn reads_by_offset_cross_chunks_as_the_file_would() {
        for (_dir, store, _intake) in postgres().await {
            let id = deployment(&store).await;
            let parts: [&[u8]; 3] = [b"abc\n", b"de\nfgh", b"\nij\n"];
            for (i, p) in parts.iter().enumerate() {
                assert!(store.append_log_chunk(id, i as i64 + 1, p).await.unwrap());
            }
            assert!(
                !store.append_log_chunk(id, 2, b"x").await.unwrap(),
                "seq taken"
            );
            let all = parts.concat();
            for offset in 0..=all.len() + 2 {
                for max in [1, 2, 5, 100] {
                    let (bytes, end) = store.read_log(id, offset as u64, max).await.unwrap();
                    let want = all.get(offset..).unwrap_or_default();
                    let want = &want[..want.len().min(max)];
                    assert_eq!(bytes, want, "offset {offset} max {max}");
                    assert_eq!(end, (offset + want.len()) as u64);
                }
            }
            let from = store.log_from(id, 4, 1).await.unwrap();
            assert_eq!(
                (from.before, from.chunks.len(), from.chunks[0].start),
                (1, 1, 4)
            );
            let from = store.log_from(id, 5, 1000).await.unwrap();
            assert_eq!((from.before, from.last_seq()), (1, 3));
            let from = store.log_from(id, all.len() as u64, 1000).await.unwrap();
            assert_eq!((from.before, from.chunks.len()), (3, 0));
            let after = store.log_chunks_after(id, 1, 10).await.unwrap();
            assert_eq!(after.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [2, 3]);
            // SQLite has no table: nothing is stored, nothing read.
        }
    }

    /// Retention deletes deployments; their chunks go with them (`ON DELETE CASCADE`).
    #[tokio::test]
    async fn chunks_go_with_their_deployment() {
        for (_dir, store, _intake) in postgres().await {
            let id = deployment(&store).await;
            assert!(store.append_log_chunk(id, 1, b"x\n").await.unwrap());
            let Db::Postgres(pool) = &store.db else {
                unreachable!("PostgreSQL only");
            };
            sqlx::query("DELETE FROM deployments WHERE id = $1")
                .bind(id)
                .execute(pool)
                .await
                .expect("delete");
            assert_eq!(store.log_extent(id).await.unwrap(), (0, 0));
        }
    }

    /// Output that does not fit the buffer is left out and stands in the copy as one note of
    /// its exact length, so what follows keeps its offsets.
    #[tokio::test]
    async fn output_left_out_becomes_a_note_of_the_same_length() {
        for (_dir, store, _intake) in postgres().await {
            let id = deployment(&store).await;
            let limits = Limits {
                chunk_max: 1024,
                pending_max: 500,
            };
            let copy = LogCopy::spawn(store.clone(), id, 0, note(), limits);
            let mut file = Vec::new();
            // Pushed with no await between: the copy cannot store any of it meanwhile.
            for i in 0..10 {
                let l = line(i, 100);
                copy.push(&l);
                file.extend(l);
            }
            assert!(copy.settle(Duration::from_secs(10)).await);
            let stored = chunks(&store, id).await.concat();
            assert_eq!(stored.len(), file.len(), "same length as the file");
            assert_eq!(stored[..500], file[..500], "what fitted is kept");
            let gap = &stored[500..];
            assert!(
                gap.starts_with(b"NOTE 500 bytes left out "),
                "{}",
                String::from_utf8_lossy(gap)
            );
            assert!(gap.ends_with(b" \n") && gap.iter().filter(|b| **b == b'\n').count() == 1);
            // What comes later is stored at its own offset again.
            let l = line(10, 100);
            copy.push(&l);
            file.extend(&l);
            assert!(copy.settle(Duration::from_secs(10)).await);
            let stored = chunks(&store, id).await.concat();
            assert_eq!(stored[1000..], l[..]);
            assert_eq!(stored.len(), file.len());
        }
    }

    /// A writer that opens a log longer than its copy (an earlier writer gave up) notes the
    /// gap first; one that finds its bytes stored by another writer does not store them twice.
    #[tokio::test]
    async fn a_copy_lines_up_with_what_the_table_holds() {
        for (_dir, store, _intake) in postgres().await {
            let id = deployment(&store).await;
            assert!(
                store
                    .append_log_chunk(id, 1, b"0123456789\n")
                    .await
                    .unwrap()
            );
            let copy = store.copy_log(id, 40, note());
            copy.push(b"late\n");
            assert!(copy.settle(Duration::from_secs(10)).await);
            let got = chunks(&store, id).await;
            assert_eq!(got.len(), 3);
            assert_eq!(got[1].len(), 29, "the gap 11..40");
            assert!(got[1].starts_with(b"NOTE 29 bytes") && got[1].ends_with(b"\n"));
            assert_eq!(got[2], b"late\n");

            // Another writer takes the next seq with bytes this copy also holds.
            assert!(store.append_log_chunk(id, 4, b"more\n").await.unwrap());
            copy.push(b"more\n");
            copy.push(b"last\n");
            assert!(copy.settle(Duration::from_secs(10)).await);
            let all = chunks(&store, id).await.concat();
            assert!(
                all.ends_with(b"late\nmore\nlast\n"),
                "{}",
                String::from_utf8_lossy(&all)
            );
            assert_eq!(all.len(), 40 + 15);
        }
    }
}
