//! Counters of hook answers for `/metrics`: bumped by the edge checks and the hook handler,
//! read by the API. Its own module so the edge checks need neither `shared` nor `server`.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of hook answers, by outcome, for `/metrics`.
#[derive(Default)]
pub(crate) struct Metrics {
    pub(crate) accepted: AtomicU64,
    pub(crate) duplicate: AtomicU64,
    pub(crate) rejected: AtomicU64,
    pub(crate) not_found: AtomicU64,
    pub(crate) unavailable: AtomicU64,
    /// 429: a rate limit (per client, failed checks, per app).
    pub(crate) limited: AtomicU64,
    /// 403: outside the app's `verify.allow_ips`.
    pub(crate) forbidden: AtomicU64,
}

impl Metrics {
    pub(crate) fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}
