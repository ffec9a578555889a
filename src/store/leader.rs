//! One replica at a time: the work that must not run on two replicas at once (the notify
//! worker, which sends each notification; retention; the reconcile schedule) runs on the replica that holds a
//! PostgreSQL session-level advisory lock, on a connection of its own. The others wait and
//! try again; when the holder dies its connection closes and PostgreSQL releases the lock.
//!
//! The holder checks its connection every [`CHECK`]: when the check fails, it has lost the
//! lock (or is about to), and its work stops before another replica's may start. On SQLite
//! there is one ferry, which always leads.

use std::time::Duration;

use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use tokio_util::sync::CancellationToken;

use super::Store;
use super::db::Db;

/// How often a waiting replica tries to take the lock, and the holder checks its connection.
const CHECK: Duration = Duration::from_secs(1);

/// What each lock guards (its advisory lock key).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Role {
    /// The notify worker: fan-out and sending.
    Notify,
    /// Retention's deletes.
    Retention,
    /// The reconcile schedule (`crate::reconcile`): one replica stores each reconcile.
    Reconcile,
}

impl Role {
    fn key(self) -> i64 {
        match self {
            Role::Notify => 0x6665_7272_7932,    // "ferry2"
            Role::Retention => 0x6665_7272_7933, // "ferry3"
            Role::Reconcile => 0x6665_7272_7934, // "ferry4"
        }
    }
}

impl Store {
    /// Runs `work` while this replica holds `role`, until `stop`: `work` gets a token that is
    /// cancelled when the lock is lost (or at `stop`), and is started again once it is held
    /// again. On SQLite `work` simply runs until `stop`.
    pub(crate) async fn lead<F, Fut>(&self, role: Role, stop: CancellationToken, work: F)
    where
        F: Fn(CancellationToken) -> Fut,
        Fut: Future<Output = ()>,
    {
        let Db::Postgres(pool) = &self.db else {
            return work(stop).await;
        };
        let options = pool.connect_options();
        while !stop.is_cancelled() {
            let Some(conn) = acquire(&options, role, &stop).await else {
                return;
            };
            tracing::info!(role = ?role, "this replica leads");
            let lost = stop.child_token();
            let watch = tokio::spawn(hold(conn, lost.clone()));
            work(lost.clone()).await;
            lost.cancel();
            let _ = watch.await;
            if !stop.is_cancelled() {
                tracing::warn!(role = ?role, "lost the lead: another replica may take it");
            }
        }
    }
}

/// Takes the lock on a connection of its own, trying every [`CHECK`]; `None` at `stop`.
async fn acquire(
    options: &PgConnectOptions,
    role: Role,
    stop: &CancellationToken,
) -> Option<PgConnection> {
    loop {
        let attempt = async {
            let mut conn = PgConnection::connect_with(options).await?;
            let held: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                .bind(role.key())
                .fetch_one(&mut conn)
                .await?;
            Ok::<_, sqlx::Error>(held.then_some(conn))
        };
        match attempt.await {
            Ok(Some(conn)) => return Some(conn),
            Ok(None) => {}
            Err(e) => tracing::debug!(role = ?role, error = %e, "cannot try for the lead"),
        }
        tokio::select! {
            _ = tokio::time::sleep(CHECK) => {}
            _ = stop.cancelled() => return None,
        }
    }
}

/// Holds the lock's connection until `lost` is cancelled, cancelling it when a check fails.
async fn hold(mut conn: PgConnection, lost: CancellationToken) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(CHECK) => {}
            _ = lost.cancelled() => break,
        }
        if conn.ping().await.is_err() {
            lost.cancel();
            return;
        }
    }
    // Closing the connection releases the lock.
    let _ = conn.close().await;
}
