//! The checkpointer: copies the WAL into the database file on a thread of its own.
//!
//! SQLite's default runs a checkpoint inside whichever commit takes the WAL past 1,000 pages,
//! and that was most often the intake writer's: a hook batch then waited for the database
//! file to be written and fsync'd (the p99 of hook answers). Every connection turns automatic
//! checkpoints off (`wal_autocheckpoint = 0`), and this thread runs a PASSIVE checkpoint after
//! flushes, at most every [`INTERVAL`] (and every [`IDLE`] without any): it never takes the write lock, so commits go on while
//! it runs, and what it has not copied yet stays durable in the WAL (the flusher fsyncs that).
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

/// The least time between two checkpoints.
const INTERVAL: Duration = Duration::from_millis(200);

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
            Ok(()) => {
                // Let more commits gather: one checkpoint then copies them all.
                std::thread::sleep(INTERVAL);
                let _ = asked.try_recv();
            }
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
    fn the_long_wal_warning_is_logged_at_most_once_a_minute() {
        let now = Instant::now();
        assert!(warning_due(None, now));
        assert!(!warning_due(Some(now), now + Duration::from_secs(59)));
        assert!(warning_due(Some(now), now + WARN_EVERY));
    }
}
