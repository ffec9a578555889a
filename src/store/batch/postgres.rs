//! Group commit for hook deliveries on PostgreSQL.
//!
//! The same contract as the SQLite writer (`super`): requests hand their delivery to one
//! writer, which takes everything waiting and writes it in one transaction, and a request is
//! answered only after that transaction's COMMIT returned. On PostgreSQL the COMMIT itself is
//! the flush (`synchronous_commit = on`, set on the connection): there is no separate flusher.
//!
//! The writer is a task with a connection of its own (not the pool's), so hook deliveries
//! never wait for a pool connection that planning or the API holds. Duplicates are found by
//! the unique index on `(app, dedupe_key)`, which holds across replicas too.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{Connection, Row};
use tokio::sync::{Notify, mpsc};

use super::publish;
use super::{Answer, Inserted, Intake, Job, MAX_BATCH, REJECTED_KEEP_PER_APP, refused_apps};
use crate::metrics::Metrics;
use crate::states::EventType;
use crate::store::body::Stored;
use crate::store::{DeliveryStatus, StoreError, WriteGate, now_ms};

/// Starts the writer task; `options` name the database, already migrated.
pub(in crate::store) async fn start(
    options: &PgConnectOptions,
    gate: WriteGate,
    live: crate::live::Hub,
    metrics: Arc<Metrics>,
    origin: Arc<str>,
) -> Result<Intake, StoreError> {
    let (tx, rx) = mpsc::channel(4 * MAX_BATCH);
    let committed = Arc::new(Notify::new());
    let writer = Writer {
        conn: Some(PgConnection::connect_with(options).await?),
        options: options.clone(),
        gate: gate.clone(),
        live,
        metrics,
        committed: committed.clone(),
        origin,
    };
    tokio::spawn(writer.run(rx));
    Ok(Intake {
        tx,
        gate,
        committed,
    })
}

struct Writer {
    /// Thrown away after a failed write and opened afresh, as the SQLite writer does.
    conn: Option<PgConnection>,
    options: PgConnectOptions,
    gate: WriteGate,
    live: crate::live::Hub,
    metrics: Arc<Metrics>,
    committed: Arc<Notify>,
    /// This process, for announcing the batch's deliveries to other replicas.
    origin: Arc<str>,
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::Receiver<Job>) {
        let mut jobs: Vec<Job> = Vec::with_capacity(MAX_BATCH);
        while let Some(first) = rx.recv().await {
            jobs.push(first);
            while jobs.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
            let refused = refused_apps(&jobs);
            let results: Vec<Result<Inserted, StoreError>> = match self.write(&jobs).await {
                Ok(results) => results.into_iter().map(Ok).collect(),
                Err(e) => {
                    tracing::warn!(error = %e, size = jobs.len(), "batch commit failed; writing one by one");
                    let mut results = Vec::with_capacity(jobs.len());
                    for job in &jobs {
                        let one = self.write(std::slice::from_ref(job)).await;
                        results.push(one.map(|mut r| r.remove(0)));
                    }
                    results
                }
            };
            let new = results.iter().any(|r| matches!(r, Ok(Inserted::New(_))));
            for (job, result) in jobs.drain(..).zip(results) {
                let answer: Answer = (result, job.delivery);
                // The request may have gone away; its delivery is stored all the same.
                let _ = job.done.send(answer);
            }
            if new {
                self.committed.notify_one();
            }
            self.prune_refused(&refused).await;
        }
    }

    async fn conn(&mut self) -> Result<&mut PgConnection, StoreError> {
        if self.conn.is_none() {
            self.conn = Some(PgConnection::connect_with(&self.options).await?);
        }
        self.conn.as_mut().ok_or(StoreError::WriterGone)
    }

    async fn write(&mut self, jobs: &[Job]) -> Result<Vec<Inserted>, StoreError> {
        let gate = self.gate.clone();
        let _gate = gate.lock().await;
        let began = Instant::now();
        let origin = self.origin.clone();
        let result = match self.conn().await {
            Ok(conn) => write_batch(conn, jobs, &origin).await,
            Err(e) => Err(e),
        };
        match result {
            Ok((inserted, flush)) => {
                // The same two metrics as on SQLite: writing the batch, then making it durable
                // (here the COMMIT, which waits for PostgreSQL's WAL flush).
                let took = began.elapsed();
                self.metrics
                    .batch_committed(jobs.len(), took.saturating_sub(flush));
                self.metrics.flushed(flush);
                publish(&self.live, jobs, &inserted);
                Ok(inserted)
            }
            Err(e) => {
                self.conn = None;
                Err(e)
            }
        }
    }

    /// Deletes refused deliveries beyond the newest [`REJECTED_KEEP_PER_APP`] of each app (see
    /// the SQLite writer's `prune_refused`); a failure is logged, never a hook's error.
    async fn prune_refused(&mut self, apps: &std::collections::BTreeSet<String>) {
        if apps.is_empty() {
            return;
        }
        let gate = self.gate.clone();
        let _gate = gate.lock().await;
        let pruned = async {
            let conn = self.conn().await?;
            for app in apps {
                sqlx::query(
                    "DELETE FROM deliveries
                     WHERE app = $1 AND status = 'rejected'
                       AND id <= (SELECT id FROM deliveries
                                  WHERE app = $1 AND status = 'rejected' ORDER BY id DESC LIMIT 1 OFFSET $2)
                       AND NOT EXISTS (SELECT 1 FROM deployments p WHERE p.delivery_id = deliveries.id)",
                )
                .bind(app)
                .bind(REJECTED_KEEP_PER_APP)
                .execute(&mut *conn)
                .await?;
            }
            Ok::<_, StoreError>(())
        };
        if let Err(e) = pruned.await {
            tracing::warn!(error = %e, "cannot prune refused deliveries");
            self.conn = None;
        }
    }
}

/// Writes a batch in one transaction, as the SQLite writer's `write_batch` does: a duplicate
/// (of a stored delivery or of one earlier in the batch) is counted on the delivery it repeats.
/// Also returns how long the COMMIT took (`synchronous_commit = on`: the WAL flush).
async fn write_batch(
    conn: &mut PgConnection,
    jobs: &[Job],
    origin: &str,
) -> Result<(Vec<Inserted>, Duration), StoreError> {
    let mut tx = conn.begin().await?;
    let mut out = Vec::with_capacity(jobs.len());
    let mut refused = Vec::new();
    for job in jobs {
        let d = &job.delivery;
        let inserted = insert_one(&mut tx, d, &job.body).await?;
        if let Inserted::New(id) = inserted
            && d.status == DeliveryStatus::Rejected
        {
            refused.push(id);
        }
        out.push(inserted);
    }
    // Refused deliveries are events (see `outbox::journal_refused`).
    if !refused.is_empty() {
        sqlx::query(
            "INSERT INTO events (at, type, app, delivery_id, reason)
             SELECT $1, $2, app, id, error FROM deliveries WHERE id = ANY($3) ORDER BY id",
        )
        .bind(now_ms())
        .bind(EventType::DeliveryRejected.as_str())
        .bind(&refused)
        .execute(&mut *tx)
        .await?;
    }
    // Delivered to the other replicas' live views on commit.
    let new: Vec<i64> = out
        .iter()
        .filter_map(|i| match i {
            Inserted::New(id) => Some(*id),
            Inserted::Duplicate(_) => None,
        })
        .collect();
    let announced = crate::store::broadcast::Announced {
        deliveries: new,
        ..Default::default()
    };
    crate::store::broadcast::announce_on(&mut tx, origin, &announced).await?;
    let flushing = Instant::now();
    tx.commit().await?;
    Ok((out, flushing.elapsed()))
}

/// Stores one delivery in the batch's transaction: its row and its body, or, for a duplicate,
/// the count on the delivery it repeats.
async fn insert_one(
    tx: &mut sqlx::PgConnection,
    d: &crate::store::NewDelivery,
    body: &Stored,
) -> Result<Inserted, StoreError> {
    let id: Option<i64> = sqlx::query_scalar(
            "INSERT INTO deliveries (app, source, event, source_delivery_id, dedupe_key, received_at, verified, scheme, status, error, query, headers, body_size, replay_of, refused_with)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
             ON CONFLICT (app, dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING RETURNING id",
        )
        .bind(&d.app)
        .bind(&d.source)
        .bind(&d.event)
        .bind(&d.source_delivery_id)
        .bind(&d.dedupe_key)
        .bind(d.received_at)
        .bind(d.verified)
        .bind(&d.scheme)
        .bind(d.status)
        .bind(&d.error)
        .bind(&d.query)
        .bind(&d.headers)
        .bind(body.size)
        .bind(d.replay_of)
        .bind(d.refused_with.map(i64::from))
        .fetch_optional(&mut *tx)
        .await?;
    Ok(match id {
        Some(id) => {
            sqlx::query(
                "INSERT INTO delivery_bodies (delivery_id, body, codec) VALUES ($1, $2, $3)",
            )
            .bind(id)
            .bind(&body.bytes[..])
            .bind(body.codec)
            .execute(&mut *tx)
            .await?;
            Inserted::New(id)
        }
        None => {
            let row = sqlx::query(
                "UPDATE deliveries SET duplicates = duplicates + 1, duplicate_at = $3
                     WHERE app = $1 AND dedupe_key = $2 RETURNING id",
            )
            .bind(&d.app)
            .bind(&d.dedupe_key)
            .bind(d.received_at)
            .fetch_one(&mut *tx)
            .await?;
            Inserted::Duplicate(row.try_get(0)?)
        }
    })
}
