//! The checkpointer: copies the WAL into the database file on a thread of its own.
//!
//! SQLite's default runs a checkpoint inside whichever commit takes the WAL past 1,000 pages,
//! and that was most often the intake writer's: a hook batch then waited for the database
//! file to be written and fsync'd (the p99 of hook answers). Every connection turns automatic
//! checkpoints off (`wal_autocheckpoint = 0`), and this thread runs a PASSIVE checkpoint after
//! flushes, at most every [`INTERVAL`] (and every [`IDLE`] without any): it never takes the write lock, so commits go on while
//! it runs, and what it has not copied yet stays durable in the WAL (the flusher fsyncs that).

use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender};
use std::time::Duration;

use rusqlite::Connection;

use super::StoreError;

/// The least time between two checkpoints.
const INTERVAL: Duration = Duration::from_millis(200);

/// Without hook deliveries, a checkpoint this often: the other writers' commits.
const IDLE: Duration = Duration::from_secs(5);

/// A WAL this many pages long (about 400 MB) despite checkpoints means readers keep old
/// frames alive: worth a warning.
const LONG_WAL_PAGES: i64 = 100_000;

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
            Ok(wal_pages) if wal_pages > LONG_WAL_PAGES => tracing::warn!(
                wal_pages,
                "the WAL keeps growing: long-running reads hold its old frames"
            ),
            Ok(_) => {}
            // A full or read-only disk: commits fail (and are answered 503) meanwhile.
            Err(e) => {
                tracing::warn!(error = %e, "checkpoint failed; retrying after the next commit")
            }
        }
    }
}

/// Runs one PASSIVE checkpoint; returns the WAL's length in pages.
fn checkpoint(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| row.get(1))
}
