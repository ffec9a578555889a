//! The reconcile schedule: per service with `reconcile = "15m"`, its last successful
//! deployment runs again once nothing has run for that long, so drift on the host is corrected.
//!
//! About every second this task reads each such service's clock from the store
//! (`Store::reconcile_clock`: so a restart neither reconciles at once nor forgets) and, when
//! [`due`], stores a `manual` delivery with event `reconcile` through the intake, as the API
//! stores a rollback: the planner then decides, in its serial transaction, between a
//! deployment of the last success (`reason` "reconcile: re-run of deployment N") and, while
//! another deployment of the service is queued or running, a `skipped` one ("reconcile:
//! deployment N is running"); see `plan/reconcile.rs`. Either resets the clock, so there is at
//! most one reconcile or one skip per interval, and a reconcile never overlaps other work.
//!
//! Each delivery's dedupe key is the service and the clock it was due on: stored twice (a
//! restart before it was planned, two replicas racing for the lead), it is a duplicate. With
//! replicas only the one holding `Role::Reconcile` runs this task. Above `store`, `sources` and
//! `config`; spawned by `server::background` and stopped with the planner.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::sources::{RECONCILE_EVENT, Source};
use crate::store::{Inserted, Intake, NewDelivery, ReconcileClock, Store, StoreError, now_ms};

/// How often the clocks are read (ms), at most.
const TICK_MS: i64 = 1_000;
/// The shortest wait between two reads (ms): a due time just past is not polled in a loop.
const MIN_WAIT_MS: i64 = 20;

/// The time a service's schedule counts from: the newest end of a deployment that ran, or
/// when its last reconcile (run, skipped or superseded) was planned, whichever is later;
/// `None` until the service has succeeded once (nothing to reconcile).
fn since(clock: &ReconcileClock) -> Option<i64> {
    clock.last_success?;
    // `None` is less than any `Some`: the newest of the two that exist.
    clock.last_run_end.max(clock.last_reconcile)
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Whether a service's schedule is due at `now`: `every` has passed [`since`] what it counts
/// from. Returns that time, which names the reconcile; `None` when not due.
pub(crate) fn due(clock: &ReconcileClock, every: Duration, now: i64) -> Option<i64> {
    let since = since(clock)?;
    (now.saturating_sub(since) >= millis(every)).then_some(since)
}

/// When a service not due now falls due, unless something else happens first (the API's
/// status shows it).
pub(crate) fn next_due(clock: &ReconcileClock, every: Duration) -> Option<i64> {
    Some(since(clock)?.saturating_add(millis(every)))
}

/// Runs the schedule until `stop`. Does nothing without services that reconcile.
pub(crate) async fn run(
    config: Arc<Config>,
    store: Store,
    intake: Intake,
    stop: CancellationToken,
) {
    let services: Vec<(&str, &str, Duration)> = config
        .apps
        .values()
        .flat_map(|a| {
            a.services
                .values()
                .filter_map(|s| Some((a.name.as_str(), s.name.as_str(), s.reconcile?)))
        })
        .collect();
    if services.is_empty() {
        return;
    }
    // The key each service's last reconcile was stored under: not stored again while the
    // planner has not planned it yet (the clock moves once it has).
    let mut stored: HashMap<(&str, &str), String> = HashMap::new();
    loop {
        let mut next = now_ms().saturating_add(TICK_MS);
        for &(app, service, every) in &services {
            match tick(&store, &intake, (app, service), every, &mut stored).await {
                Ok(Some(at)) => next = next.min(at),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(app, service, error = %e, "reconcile: cannot read or store; will retry")
                }
            }
        }
        // Until the soonest due time, so a reconcile comes on time rather than up to a tick
        // late; at least every tick, to see what deployments changed meanwhile.
        let wait = next.saturating_sub(now_ms()).clamp(MIN_WAIT_MS, TICK_MS);
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(wait.unsigned_abs())) => {}
            _ = stop.cancelled() => return,
        }
    }
}

/// One service's check: stores its reconcile delivery when due. Returns when it falls due
/// next as things stand (`None`: not before something else happens).
async fn tick<'a>(
    store: &Store,
    intake: &Intake,
    (app, service): (&'a str, &'a str),
    every: Duration,
    stored: &mut HashMap<(&'a str, &'a str), String>,
) -> Result<Option<i64>, StoreError> {
    let clock = store.reconcile_clock(app, service).await?;
    let Some(since) = due(&clock, every, now_ms()) else {
        return Ok(next_due(&clock, every));
    };
    let key = dedupe_key(service, since);
    if stored.get(&(app, service)) == Some(&key) {
        // Stored, not planned yet: the planner moves the clock.
        return Ok(None);
    }
    match intake.insert(delivery(app, service, key.clone())).await? {
        Inserted::New(id) => {
            tracing::info!(delivery = id, app, service, every = %humantime::format_duration(every), "reconcile due: delivery stored")
        }
        // Stored before a restart, or by the replica that led before: planned once.
        Inserted::Duplicate(id) => {
            tracing::debug!(delivery = id, app, service, "reconcile already stored")
        }
    }
    stored.insert((app, service), key);
    Ok(None)
}

/// The dedupe key of `service`'s reconcile due since `since`. Its `·` is not visible ASCII,
/// which is all a key taken from a request header can hold (`sources::delivery_id`), so no
/// sender can store a delivery under it first and make the reconcile a "duplicate" that is
/// never planned (every other sender key has a prefix of its own: `sources::dedupe_key`).
fn dedupe_key(service: &str, since: i64) -> String {
    format!("reconcile·{service}:{since}")
}

/// The delivery that asks the planner to reconcile `service`.
fn delivery(app: &str, service: &str, key: String) -> NewDelivery {
    // What `sources::parse` reads back (a test below holds them together).
    let body = serde_json::json!({ "service": service }).to_string();
    // Made by ferry itself from its config: verified, so an app's schemes do not turn it
    // into an unverified plain redeploy.
    NewDelivery {
        dedupe_key: Some(key),
        ..NewDelivery::internal(app, Source::Manual.as_str(), RECONCILE_EVENT, body.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request carrying a reconcile's key as its `Idempotency-Key` (or a sender's delivery
    /// id header) does not get that key.
    #[test]
    fn no_request_header_can_take_a_reconcile_key() {
        let key = dedupe_key("web", 1_700_000_000_000);
        let mut headers = http::HeaderMap::new();
        let value = http::HeaderValue::from_bytes(key.as_bytes()).expect("obs-text is allowed");
        headers.insert("idempotency-key", value.clone());
        headers.insert("x-gitlab-event-uuid", value.clone());
        headers.insert("x-github-delivery", value);
        for source in [
            Source::Gitlab,
            Source::Github,
            Source::Generic,
            Source::Manual,
        ] {
            assert_ne!(
                crate::sources::delivery_id(source, &headers),
                Some(key.clone())
            );
        }
    }

    const MIN: Duration = Duration::from_secs(60);

    fn clock(success: bool, run_end: Option<i64>, reconcile: Option<i64>) -> ReconcileClock {
        ReconcileClock {
            last_success: success.then_some(7),
            last_run_end: run_end,
            last_reconcile: reconcile,
        }
    }

    #[test]
    fn the_delivery_reads_back_as_a_reconcile_of_its_service() {
        let d = delivery("shop", "web", "k".into());
        let header = |_: &str| None;
        let stored = crate::sources::Stored {
            event: d.event.as_deref(),
            header: &header,
            body: &d.body,
        };
        assert_eq!(
            crate::sources::parse(Source::Manual, &stored),
            Ok(crate::sources::Event::Reconcile {
                service: "web".into()
            })
        );
        assert_eq!(d.dedupe_key.as_deref(), Some("k"));
        assert!(d.verified);
    }

    #[test]
    fn due_once_the_interval_has_passed_since_the_last_run() {
        let c = clock(true, Some(1_000), None);
        assert_eq!(due(&c, MIN, 1_000 + 59_999), None);
        assert_eq!(due(&c, MIN, 1_000 + 60_000), Some(1_000));
        assert_eq!(
            due(&c, MIN, 1_000 + 3_600_000),
            Some(1_000),
            "overdue: at once"
        );
    }

    #[test]
    fn the_next_due_time_is_one_interval_after_the_clock() {
        assert_eq!(
            next_due(&clock(true, Some(1_000), Some(3_000)), MIN),
            Some(63_000)
        );
        assert_eq!(next_due(&clock(false, Some(1_000), None), MIN), None);
        assert_eq!(
            next_due(&clock(true, Some(1), None), Duration::MAX),
            Some(i64::MAX)
        );
    }

    #[test]
    fn never_due_without_a_success() {
        let c = clock(false, Some(1_000), Some(2_000));
        assert_eq!(due(&c, MIN, i64::MAX), None);
        assert_eq!(due(&ReconcileClock::default(), MIN, i64::MAX), None);
    }

    #[test]
    fn a_deploy_or_a_reconcile_resets_the_clock() {
        // A push ran after the last reconcile: counted from its end.
        let c = clock(true, Some(50_000), Some(10_000));
        assert_eq!(due(&c, MIN, 70_000), None);
        assert_eq!(due(&c, MIN, 110_000), Some(50_000));
        // A reconcile (or its skip) after the last run's end: counted from it, so a long run
        // gets one skip per interval, not one per second.
        let c = clock(true, Some(10_000), Some(80_000));
        assert_eq!(due(&c, MIN, 139_999), None);
        assert_eq!(due(&c, MIN, 140_000), Some(80_000));
    }

    #[test]
    fn a_clock_in_the_future_is_not_due_and_huge_intervals_never_overflow() {
        let c = clock(true, Some(5_000), None);
        assert_eq!(due(&c, MIN, 0), None);
        assert_eq!(due(&c, Duration::MAX, i64::MAX), None);
        assert_eq!(
            due(&clock(true, Some(i64::MIN), None), MIN, i64::MAX),
            Some(i64::MIN)
        );
    }
}
