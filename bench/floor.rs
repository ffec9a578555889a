//! `intake-floor`: the disk's limit for ferry's hook intake on this machine, for `bench/intake
//! --floor` (BENCHMARKS.md). Not part of ferry.
//!
//! It keeps ferry's contract on the request path and nothing else: the same HTTP stack (axum
//! on hyper, tokio's multi-thread runtime), the hook token compared in constant time, the body
//! read under a size limit, X-Hub-Signature-256 verified (HMAC-SHA256) and the body hashed
//! (ferry's dedupe key for signed deliveries), then the delivery appended to a file by one
//! writer thread and fsync'd by a flusher thread before the 202 — the same group commit as
//! `store::batch` (the writer appends the next batch while the flusher syncs the last).
//! What it leaves out is what ferry adds to that: SQLite (its b-trees, indexes and WAL),
//! deduplication, the delivery's record and headers, planning and deploying, logging. So
//! ferry's rate as a share of this one says how close to the disk's limit ferry's intake is.
//!
//!     intake-floor ADDR DATA_FILE TOKEN SECRET
//!
//! Answers `POST /hooks/{app}/{token}` with 202 once the body is on disk, and `GET /healthz`.

use std::io::Write;
use std::sync::mpsc;

use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use bytes::Bytes;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::oneshot;

/// A delivery on its way to the disk, and where to say it got there.
type Job = (String, Bytes, oneshot::Sender<std::io::Result<u64>>);

#[derive(Clone)]
struct App {
    token: &'static str,
    secret: &'static [u8],
    writer: mpsc::Sender<Job>,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [addr, file, token, secret] = <[String; 4]>::try_from(args)
        .map_err(|_| "usage: intake-floor ADDR DATA_FILE TOKEN SECRET")?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&file)?;
    let (tx, rx) = mpsc::channel::<Job>();
    let (flush_tx, flush_rx) = mpsc::channel();
    let sync = file.try_clone()?;
    std::thread::Builder::new()
        .name("floor-writer".into())
        .spawn(move || writer(file, rx, flush_tx))?;
    std::thread::Builder::new()
        .name("floor-flush".into())
        .spawn(move || flusher(sync, flush_rx))?;
    let app = App {
        token: Box::leak(token.into_boxed_str()),
        secret: Box::leak(secret.into_bytes().into_boxed_slice()),
        writer: tx,
    };
    let router = axum::Router::new()
        .route("/hooks/{app}/{token}", post(hook))
        .route("/healthz", get(|| async { "ok" }))
        .layer(DefaultBodyLimit::max(1 << 20))
        .with_state(app);
    tokio::runtime::Runtime::new()?.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&addr).await?;
        axum::serve(listener, router).await
    })?;
    Ok(())
}

async fn hook(
    State(app): State<App>,
    Path((_app, token)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    if !bool::from(token.as_bytes().ct_eq(app.token.as_bytes())) {
        return (StatusCode::NOT_FOUND, "no such hook\n".into());
    }
    let signature = headers
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("sha256="))
        .and_then(|v| hex::decode(v).ok());
    let Some(signature) = signature else {
        return (
            StatusCode::UNAUTHORIZED,
            "X-Hub-Signature-256 missing\n".into(),
        );
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(app.secret) else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "bad secret\n".into());
    };
    mac.update(&body);
    if mac.verify_slice(&signature).is_err() {
        return (StatusCode::UNAUTHORIZED, "signature mismatch\n".into());
    }
    let key = format!("signed-body-sha256:{}", hex::encode(Sha256::digest(&body)));
    let (done, answer) = oneshot::channel();
    if app.writer.send((key, body, done)).is_err() {
        return (StatusCode::SERVICE_UNAVAILABLE, "writer gone\n".into());
    }
    match answer.await {
        Ok(Ok(id)) => (
            StatusCode::ACCEPTED,
            format!("{{\"status\":\"accepted\",\"delivery_id\":{id}}}"),
        ),
        _ => (StatusCode::SERVICE_UNAVAILABLE, "not stored\n".into()),
    }
}

/// Appends every waiting delivery in one write, then hands the batch to the flusher.
fn writer(mut file: std::fs::File, rx: mpsc::Receiver<Job>, flush: mpsc::Sender<Vec<Job>>) {
    let mut buf = Vec::with_capacity(1 << 20);
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        batch.extend(rx.try_iter());
        buf.clear();
        for (key, body, _) in &batch {
            buf.extend_from_slice(&(key.len() as u32).to_le_bytes());
            buf.extend_from_slice(key.as_bytes());
            buf.extend_from_slice(&(body.len() as u32).to_le_bytes());
            buf.extend_from_slice(body);
        }
        if let Err(e) = file.write_all(&buf) {
            for (_, _, done) in batch {
                let _ = done.send(Err(std::io::Error::new(e.kind(), e.to_string())));
            }
            continue;
        }
        if flush.send(batch).is_err() {
            return;
        }
    }
}

/// fsyncs (fdatasync) everything written so far, then answers every batch it covered.
fn flusher(file: std::fs::File, rx: mpsc::Receiver<Vec<Job>>) {
    let mut next_id = 0u64;
    while let Ok(first) = rx.recv() {
        let mut batches = vec![first];
        batches.extend(rx.try_iter());
        let synced = file.sync_data();
        for (_, _, done) in batches.into_iter().flatten() {
            next_id += 1;
            let _ = done.send(match &synced {
                Ok(()) => Ok(next_id),
                Err(e) => Err(std::io::Error::new(e.kind(), e.to_string())),
            });
        }
    }
}
