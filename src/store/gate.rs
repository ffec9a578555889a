//! The write gate: one async lock around every write transaction, and the count of hook
//! deliveries waiting for the intake writer.
//!
//! SQLite has one writer at a time and makes the others poll (sleeping 1, 2, 5… ms in its busy
//! handler), which put tens of milliseconds on hook answers under load; a fair async lock queues
//! them instead. Hook answers wait on intake commits, so background writers (the planner) let
//! waiting deliveries go first, for a while ([`Gate::yield_to_intake`]).

use std::time::Duration;

/// See [`super::Store::gate`].
pub(crate) type WriteGate = std::sync::Arc<Gate>;

/// The write lock, and how many hook deliveries wait for the intake writer: background writers
/// (the planner) let those go first, for a while.
#[derive(Default)]
pub(crate) struct Gate {
    lock: std::sync::Arc<tokio::sync::Mutex<()>>,
    intake_waiting: std::sync::atomic::AtomicUsize,
    intake_idle: tokio::sync::Notify,
}

impl Gate {
    pub(crate) async fn lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.lock.lock().await
    }

    /// [`Gate::lock`] for a thread outside the async runtime (the intake writer's).
    pub(super) fn blocking_lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.lock.blocking_lock()
    }

    pub(super) async fn lock_owned(&self) -> tokio::sync::OwnedMutexGuard<()> {
        self.lock.clone().lock_owned().await
    }

    /// For background writers: waits until no hook delivery waits to be written, but at most
    /// `patience`, so planning is delayed by a burst, never starved by it.
    pub(crate) async fn yield_to_intake(&self, patience: Duration) {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let idle = self.intake_idle.notified();
            if !self.intake_busy() {
                return;
            }
            if tokio::time::timeout_at(deadline, idle).await.is_err() {
                return;
            }
        }
    }

    /// Whether a hook delivery waits for the intake writer (or its flush) right now.
    pub(super) fn intake_busy(&self) -> bool {
        self.intake_waiting
            .load(std::sync::atomic::Ordering::Acquire)
            > 0
    }

    pub(crate) fn intake_enter(&self) {
        self.intake_waiting
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    pub(crate) fn intake_leave(&self) {
        if self
            .intake_waiting
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel)
            == 1
        {
            self.intake_idle.notify_waiters();
        }
    }
}
