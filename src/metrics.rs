//! Counters of hook answers for `/metrics`: bumped by the edge checks and the hook handler,
//! read by the API. Its own module so the edge checks need neither `shared` nor `server`.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of hook answers, by outcome, for `/metrics`.
#[derive(Default)]
pub struct Metrics {
    pub accepted: AtomicU64,
    pub duplicate: AtomicU64,
    pub rejected: AtomicU64,
    pub not_found: AtomicU64,
    pub unavailable: AtomicU64,
    /// 429: a rate limit (per client, failed checks, per app).
    pub limited: AtomicU64,
    /// 403: outside the app's `verify.allow_ips`.
    pub forbidden: AtomicU64,
}

impl Metrics {
    pub fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}
