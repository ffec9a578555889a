//! Retention: with `[server] keep = "30d"`, deliveries older than that are pruned with their
//! deployments and log files, at start and then hourly, in small batches so hook requests are
//! never held up. What is still needed is kept whatever its age: deliveries not yet planned,
//! deployments queued or running, and each service's current version.

use std::path::PathBuf;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::deploylog;
use crate::store::{Store, now_ms};

/// How often retention runs; a short `keep` runs it more often (but at most once a minute).
fn period(keep: Duration) -> Duration {
    (keep / 10).clamp(Duration::from_secs(60), Duration::from_secs(3600))
}

pub(crate) async fn run(store: Store, data_dir: PathBuf, keep: Duration, stop: CancellationToken) {
    loop {
        prune_once(&store, &data_dir, keep).await;
        tokio::select! {
            _ = tokio::time::sleep(period(keep)) => {}
            _ = stop.cancelled() => return,
        }
    }
}

/// One pass: delete old rows, then their log files.
pub(crate) async fn prune_once(store: &Store, data_dir: &std::path::Path, keep: Duration) {
    let keep_ms = i64::try_from(keep.as_millis()).unwrap_or(i64::MAX);
    let cutoff = now_ms().saturating_sub(keep_ms);
    match store.prune(cutoff).await {
        Ok((0, _)) => {}
        Ok((deliveries, deployments)) => {
            for id in &deployments {
                // A missing log (skipped deployments have none) is fine.
                let _ = tokio::fs::remove_file(deploylog::log_path(data_dir, *id)).await;
            }
            tracing::info!(
                deliveries,
                deployments = deployments.len(),
                keep = %humantime::format_duration(keep),
                "retention pruned old history"
            );
        }
        Err(e) => tracing::warn!(error = %e, "retention failed; will retry"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn period_is_bounded() {
        assert_eq!(
            period(Duration::from_secs(30 * 86400)),
            Duration::from_secs(3600)
        );
        assert_eq!(period(Duration::from_secs(1)), Duration::from_secs(60));
    }
}
