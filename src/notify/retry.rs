//! When a failed notification is tried again: exponential backoff with jitter (5 s, doubling,
//! at most an hour), or when the receiver asked (`Retry-After`), until
//! `server.notify_retry_for` after it was created (or manually retried); then it is `dead`
//! and its target's queue moves on. Pure functions: the worker applies them.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use super::target::Outcome;
use crate::store::{Attempt, Notification};

/// The first wait after a failure.
pub(crate) const FIRST_DELAY: Duration = Duration::from_secs(5);
/// The longest wait between two tries (also the most a `Retry-After` is believed).
pub(crate) const MAX_DELAY: Duration = Duration::from_secs(3600);

/// The wait before the next try after `failures` failed ones (1 = the first failure): 5 s,
/// doubling, capped at [`MAX_DELAY`], then shortened by a random part of up to half, so many
/// notifications that failed together (a receiver that was down) do not come back together.
/// `random` is any u64 (the jitter's source).
pub(crate) fn backoff(failures: u32, random: u64) -> Duration {
    let doublings = failures.saturating_sub(1).min(20);
    let full = FIRST_DELAY.saturating_mul(1u32 << doublings).min(MAX_DELAY);
    let half_ms = u64::try_from(full.as_millis() / 2)
        .unwrap_or(u64::MAX)
        .max(1);
    full - Duration::from_millis(random % half_ms)
}

/// A random u64 for the jitter (std's per-instance random hash keys; no crate needed).
pub(crate) fn random() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0);
    h.finish()
}

/// A receiver's `Retry-After`: seconds, or an HTTP date; within 1 s and [`MAX_DELAY`].
pub(crate) fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    let text = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    let wait = match text.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => {
            let when =
                time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc2822)
                    .ok()?;
            let secs = (when - time::OffsetDateTime::now_utc()).whole_seconds();
            Duration::from_secs(u64::try_from(secs).unwrap_or(0))
        }
    };
    Some(wait.clamp(Duration::from_secs(1), MAX_DELAY))
}

/// What to record after a try of `n` at `now` (unix ms) ended with `outcome`.
pub(crate) fn attempt(
    n: &Notification,
    outcome: Outcome,
    now: i64,
    retry_for: Duration,
) -> Attempt {
    match outcome {
        Outcome::Sent { status } => Attempt::Sent {
            status: Some(status),
        },
        Outcome::Created {
            status,
            github_deployment,
        } => Attempt::Created {
            status: Some(status),
            github_deployment,
        },
        Outcome::Permanent { status, error } => Attempt::Dead { status, error },
        Outcome::Retry {
            status,
            error,
            after,
        } => {
            let deadline = n.trying_since().saturating_add(millis(retry_for));
            if now >= deadline {
                let error = format!(
                    "{error} (still failing after {} of tries)",
                    humantime::format_duration(retry_for)
                );
                return Attempt::Dead { status, error };
            }
            let failures = u32::try_from(n.attempts + 1).unwrap_or(u32::MAX);
            let wait = after.unwrap_or_else(|| backoff(failures, random()));
            Attempt::Retry {
                // The last try is at the deadline itself.
                next_at: now.saturating_add(millis(wait)).min(deadline),
                status,
                error,
            }
        }
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::states::{EventType, NotificationState};

    #[test]
    fn backoff_doubles_from_5s_to_an_hour_with_jitter_of_up_to_half() {
        let s = Duration::from_secs;
        assert_eq!(backoff(1, 0), s(5));
        assert_eq!(backoff(2, 0), s(10));
        assert_eq!(backoff(3, 0), s(20));
        assert_eq!(backoff(10, 0), s(2560));
        assert_eq!(backoff(11, 0), s(3600));
        assert_eq!(backoff(u32::MAX, 0), s(3600));
        for r in [1, 2_499, 2_500, 12_345, u64::MAX] {
            let d = backoff(1, r);
            assert!(d > s(2) && d <= s(5), "{d:?}");
            let d = backoff(40, r);
            assert!(d > s(1800) && d <= s(3600), "{d:?}");
        }
        let spread: std::collections::BTreeSet<_> = (0..20).map(|_| backoff(3, random())).collect();
        assert!(spread.len() > 1, "jitter varies");
    }

    #[test]
    fn retry_after_seconds_or_date_within_bounds() {
        let mut h = http::HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(http::header::RETRY_AFTER, "120".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(120)));
        h.insert(http::header::RETRY_AFTER, "0".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(1)));
        h.insert(http::header::RETRY_AFTER, "999999".parse().unwrap());
        assert_eq!(retry_after(&h), Some(MAX_DELAY));
        let later = time::OffsetDateTime::now_utc() + Duration::from_secs(600);
        let date = later
            .format(&time::format_description::well_known::Rfc2822)
            .unwrap();
        h.insert(http::header::RETRY_AFTER, date.parse().unwrap());
        let d = retry_after(&h).unwrap();
        assert!(
            d > Duration::from_secs(590) && d <= Duration::from_secs(600),
            "{d:?}"
        );
        h.insert(http::header::RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&h), None);
    }

    fn pending(attempts: i64, created_at: i64) -> Notification {
        Notification {
            id: 1,
            uid: "msg_1".into(),
            event_id: 1,
            target: "t".into(),
            kind: "webhook".into(),
            event: EventType::DeploymentFailed,
            app: "a".into(),
            service: None,
            deployment_id: None,
            delivery_id: None,
            receiver: "http://h".into(),
            url: None,
            body: "{}".into(),
            state: NotificationState::Pending,
            attempts,
            next_at: created_at,
            created_at,
            retried_at: None,
            sent_at: None,
            last_error: None,
            last_status: None,
        }
    }

    fn failed(after: Option<Duration>) -> Outcome {
        Outcome::Retry {
            status: Some(500),
            error: "answered 500".into(),
            after,
        }
    }

    #[test]
    fn failures_are_retried_until_the_window_ends_then_dead() {
        let day = Duration::from_secs(86400);
        let n = pending(0, 0);
        let Attempt::Retry { next_at, .. } = attempt(&n, failed(None), 1000, day) else {
            panic!("retried");
        };
        assert!((3500..=6000).contains(&next_at), "{next_at}");
        let Attempt::Retry { next_at, .. } =
            attempt(&n, failed(Some(Duration::from_secs(60))), 1000, day)
        else {
            panic!("retried");
        };
        assert_eq!(next_at, 61_000, "Retry-After wins");
        // Near the end of the window the last try is at its end; after it, dead.
        let end = 86_400_000;
        let late = pending(30, 0);
        let Attempt::Retry { next_at, .. } = attempt(&late, failed(None), end - 10, day) else {
            panic!("one more try");
        };
        assert_eq!(next_at, end);
        let Attempt::Dead { status, error } = attempt(&late, failed(None), end, day) else {
            panic!("dead");
        };
        assert_eq!(status, Some(500));
        assert!(
            error.contains("answered 500") && error.contains("1day"),
            "{error}"
        );
        // A manual retry restarts the window.
        let retried = Notification {
            retried_at: Some(end),
            ..pending(0, 0)
        };
        assert!(matches!(
            attempt(&retried, failed(None), end + 1, day),
            Attempt::Retry { .. }
        ));
        let refused = Outcome::Permanent {
            status: Some(410),
            error: "gone".into(),
        };
        assert!(matches!(attempt(&n, refused, 1, day), Attempt::Dead { .. }));
        let sent = Outcome::Sent { status: 204 };
        assert_eq!(
            attempt(&n, sent, 1, day),
            Attempt::Sent { status: Some(204) }
        );
    }
}
