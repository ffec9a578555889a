//! The checkpointer: copies the WAL into the database file on a thread of its own.
//!
//! SQLite's default runs a checkpoint inside whichever commit takes the WAL past 1,000 pages,
//! and that was most often the intake writer's: a hook batch then waited for the database
//! file to be written and fsync'd (the p99 of hook answers). Every connection turns automatic
//! checkpoints off (`wal_autocheckpoint = 0`), and this thread runs a PASSIVE checkpoint: it
//! never takes the write lock, so commits go on while it runs, and what it has not copied yet
//! stays durable in the WAL (the flusher fsyncs that).
//!
//! *When*: once hook intake pauses ([`QUIET`] without a flush), or after [`MAX_LAG`] of intake
//! without a pause, and every [`IDLE`] otherwise (the planner's, lanes' and API's commits).
//! A checkpoint copies pages and fsyncs the database file: work that competes with a burst of
//! hook deliveries for the CPU and the disk and buys the burst nothing, since every page it
//! copies is durable in the WAL already. Run every 200 ms during a burst (the first design) it
//! cost 7–22 % of requests per second and 1.6–3.3 ms of p99 on a fast disk (BENCHMARKS.md,
//! "2026-12-05"); run after the burst it copies each page once, however often the burst
//! rewrote it.
//!
//! Under sustained load the WAL is never started over: SQLite rewinds it only when a commit
//! begins after a checkpoint copied all of it *and* no reader still holds an older snapshot,
//! and with hook batches committing every millisecond and the planner reading, that moment
//! does not come. `bench/intake` grew it by 3 GB in 30 s. Bounding it was measured and not
//! kept: a RESTART checkpoint under the write gate once the WAL passes a cap holds hook
//! batches for a fsync of the database file (5–60 ms under load, up to 0.6 s at a 1 GiB cap),
//! so a 16 MiB cap put p99 at 45–54 ms in 6 s bursts (14–16 ms without) though it helped 30 s
//! floods (74 ms against 0.5–0.7 s). `journal_size_limit` (`open.rs`) shrinks the file once
//! the load ends (BENCHMARKS.md, "2026-12-04: default logging, the WAL under sustained load").

use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender};
use std::time::{Duration, Instant};

use rusqlite::Connection;

use super::StoreError;

/// Hook intake without a flush for this long has paused: time to checkpoint.
const QUIET: Duration = Duration::from_millis(100);

/// Intake that never pauses is checkpointed this often all the same, so the database file
/// lags the WAL by at most this much work.
const MAX_LAG: Duration = Duration::from_secs(10);

/// Without hook deliveries, a checkpoint this often: the other writers' commits.
const IDLE: Duration = Duration::from_secs(5);

/// A WAL this many pages long (about 400 MB) despite checkpoints: deliveries without a pause
/// (a flood; see above), or a read that keeps old frames alive. Worth a warning.
const LONG_WAL_PAGES: i64 = 100_000;

/// The least time between two long-WAL warnings.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// Starts the checkpointer on `db`. Each message on the returned sender asks for a
/// checkpoint (a full channel already holds a request); it stops when the sender is dropped.
pub(super) fn start(db: &Path) -> Result<SyncSender<()>, StoreError> {
    let conn = Connection::open(db)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("ferry-checkpoint".into())
        .spawn(move || run(&conn, &rx))
        .map_err(|e| StoreError::Thread(std::sync::Arc::new(e)))?;
    Ok(tx)
}

fn run(conn: &Connection, asked: &Receiver<()>) {
    use std::sync::mpsc::RecvTimeoutError;
    let mut warned: Option<Instant> = None;
    loop {
        match asked.recv_timeout(IDLE) {
            Ok(()) => wait_for_pause(asked, QUIET, MAX_LAG),
            // The planner, lanes and API commit too, without asking.
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        match checkpoint(conn) {
            Ok(wal_pages) if wal_pages > LONG_WAL_PAGES && warning_due(warned, Instant::now()) => {
                warned = Some(Instant::now());
                tracing::warn!(
                    wal_pages,
                    "the WAL keeps growing: deliveries arrive without a pause, or a long read holds its old frames; it is copied in and shrinks once they stop"
                )
            }
            Ok(_) => {}
            // A full or read-only disk: commits fail (and are answered 503) meanwhile.
            Err(e) => {
                tracing::warn!(error = %e, "checkpoint failed; retrying after the next commit")
            }
        }
    }
}

/// After a flush asked for a checkpoint: sleeps `quiet` at a time for as long as flushes keep
/// asking (intake goes on), and returns once one `quiet` passed without any, or `max_lag` after
/// it began, or at once when the store is closing (one last checkpoint, then the thread sees
/// the sender gone). Sleeping rather than waiting on the channel keeps the thread from waking
/// at every flush.
fn wait_for_pause(asked: &Receiver<()>, quiet: Duration, max_lag: Duration) {
    let began = Instant::now();
    loop {
        std::thread::sleep(quiet);
        match asked.try_recv() {
            Ok(()) if began.elapsed() < max_lag => continue,
            _ => return,
        }
    }
}

/// Whether the long-WAL warning may be logged again: a flood keeps the WAL long for as long as
/// it lasts, and a line every checkpoint (five a second) would bury the rest of the log.
fn warning_due(last: Option<Instant>, now: Instant) -> bool {
    last.is_none_or(|at| now.duration_since(at) >= WARN_EVERY)
}

/// Runs one PASSIVE checkpoint; returns the WAL's length in pages.
fn checkpoint(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| row.get(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_waits_for_intake_to_pause() {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        // A flush every 5 ms for 400 ms, then none; a pause is 100 ms without one.
        let flusher = std::thread::spawn(move || {
            let began = Instant::now();
            while began.elapsed() < Duration::from_millis(400) {
                let _ = tx.try_send(());
                std::thread::sleep(Duration::from_millis(5));
            }
            tx
        });
        let began = Instant::now();
        wait_for_pause(&rx, Duration::from_millis(100), Duration::from_secs(10));
        let waited = began.elapsed();
        assert!(
            waited >= Duration::from_millis(400),
            "checkpointed during the burst: {waited:?}"
        );
        assert!(
            waited < Duration::from_secs(5),
            "missed the pause: {waited:?}"
        );
        drop(flusher.join());
    }

    #[test]
    fn intake_without_a_pause_is_checkpointed_after_the_longest_lag() {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flusher = std::thread::spawn({
            let stop = stop.clone();
            move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = tx.try_send(());
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        });
        let began = Instant::now();
        let max_lag = Duration::from_millis(300);
        wait_for_pause(&rx, Duration::from_millis(50), max_lag);
        let waited = began.elapsed();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        flusher.join().expect("the flusher thread");
        assert!(
            waited >= max_lag && waited < Duration::from_secs(5),
            "{waited:?}"
        );
    }

    #[test]
    fn a_closing_store_stops_the_wait() {
        let (tx, rx) = std::sync::mpsc::sync_channel::<()>(1);
        drop(tx);
        let began = Instant::now();
        wait_for_pause(&rx, Duration::from_millis(1), Duration::from_secs(10));
        assert!(began.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn the_long_wal_warning_is_logged_at_most_once_a_minute() {
        let now = Instant::now();
        assert!(warning_due(None, now));
        assert!(!warning_due(Some(now), now + Duration::from_secs(59)));
        assert!(warning_due(Some(now), now + WARN_EVERY));
    }
}
