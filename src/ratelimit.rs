//! Rate limits: a keyed GCRA limiter ("generic cell rate algorithm", the one `governor` uses)
//! with bounded memory, and the `"120/min"` rate syntax of the config.
//!
//! A rate of `N/period` lets N requests through at once and then one every `period / N`. Each
//! key costs one `Instant` (its "theoretical arrival time"); a key whose time has passed is
//! indistinguishable from a fresh one and is dropped when room is needed, and the map never
//! holds more than `capacity` keys (when it is full of live keys, the one closest to expiry
//! goes). Hand-written rather than `governor` because the failed-auth limit must be *looked
//! at* without being charged ([`Limiter::peek`]) before the token is checked; governor only
//! offers checks that consume.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// `N` requests per `period`, as written in the config (`"120/min"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: u32,
    pub period: Duration,
}

impl Rate {
    /// Parses `N/sec`, `N/min`, `N/hour` (also `s`, `m`, `h`, `second`, `minute`).
    pub fn parse(text: &str) -> Result<Rate, String> {
        let bad =
            || format!("invalid rate {text:?} (examples: \"120/min\", \"10/s\", \"1000/hour\")");
        let (n, unit) = text.trim().split_once('/').ok_or_else(bad)?;
        let count: u32 = n.trim().parse().map_err(|_| bad())?;
        if count == 0 {
            return Err(format!("rate {text:?} must allow at least 1 request"));
        }
        let period = match unit.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            _ => return Err(bad()),
        };
        Ok(Rate { count, period })
    }

    /// The time between two requests once the burst is spent.
    fn interval(&self) -> Duration {
        self.period / self.count
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let unit = match self.period.as_secs() {
            1 => "sec",
            60 => "min",
            _ => "hour",
        };
        write!(f, "{}/{unit}", self.count)
    }
}

/// A keyed rate limiter. Cheap to share (`&self` methods; one short mutex section each).
#[derive(Debug)]
pub(crate) struct Limiter<K> {
    rate: Rate,
    capacity: usize,
    /// Per key, the time at which its bucket is full again.
    tats: Mutex<HashMap<K, Instant>>,
}

impl<K: Hash + Eq + Clone> Limiter<K> {
    pub(crate) fn new(rate: Rate, capacity: usize) -> Limiter<K> {
        Limiter {
            rate,
            capacity: capacity.max(1),
            tats: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn rate(&self) -> Rate {
        self.rate
    }

    /// How far ahead of `now` a key's time may be and still let a request through.
    fn tolerance(&self) -> Duration {
        self.rate.period - self.rate.interval()
    }

    /// Would a request now pass? `Err(wait)` says how long until one would. Charges nothing.
    pub(crate) fn peek(&self, key: &K, now: Instant) -> Result<(), Duration> {
        let tats = self.tats.lock().unwrap_or_else(|e| e.into_inner());
        match tats.get(key) {
            Some(&tat) => self.verdict(tat.max(now), now),
            None => Ok(()),
        }
    }

    /// Lets one request through and charges it, or says how long to wait (charging nothing).
    pub(crate) fn check(&self, key: &K, now: Instant) -> Result<(), Duration> {
        let mut tats = self.tats.lock().unwrap_or_else(|e| e.into_inner());
        let tat = tats.get(key).map_or(now, |&t| t.max(now));
        self.verdict(tat, now)?;
        let next = tat + self.rate.interval();
        if !tats.contains_key(key) && tats.len() >= self.capacity {
            self.make_room(&mut tats, now);
        }
        tats.insert(key.clone(), next);
        Ok(())
    }

    fn verdict(&self, tat: Instant, now: Instant) -> Result<(), Duration> {
        let ahead = tat - now;
        if ahead > self.tolerance() {
            Err(ahead - self.tolerance())
        } else {
            Ok(())
        }
    }

    /// Drops every key that is back to full; if none is, the one closest to it.
    fn make_room(&self, tats: &mut HashMap<K, Instant>, now: Instant) {
        tats.retain(|_, tat| *tat > now);
        if tats.len() >= self.capacity
            && let Some(key) = tats
                .iter()
                .min_by_key(|(_, tat)| **tat)
                .map(|(k, _)| k.clone())
        {
            tats.remove(&key);
        }
    }

    /// Number of keys held (for tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.tats.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// Whole seconds for `Retry-After`, rounded up (never 0: "retry now" would be wrong).
pub(crate) fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(text: &str) -> Rate {
        Rate::parse(text).unwrap()
    }

    #[test]
    fn parses_rates() {
        assert_eq!(
            rate("120/min"),
            Rate {
                count: 120,
                period: Duration::from_secs(60)
            }
        );
        assert_eq!(rate(" 10 / s ").period, Duration::from_secs(1));
        assert_eq!(rate("5/hour").to_string(), "5/hour");
        for bad in ["", "120", "0/min", "-1/min", "x/min", "10/day", "10/"] {
            assert!(Rate::parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn burst_then_one_per_interval() {
        let l = Limiter::new(rate("3/min"), 10);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(l.check(&"a", t0), Ok(()));
        }
        let wait = l.check(&"a", t0).unwrap_err();
        assert_eq!(wait, Duration::from_secs(20));
        assert_eq!(l.peek(&"a", t0), Err(wait));
        // Another key is unaffected.
        assert_eq!(l.check(&"b", t0), Ok(()));
        // One more is allowed once the interval has passed, and only one.
        let t1 = t0 + Duration::from_secs(20);
        assert_eq!(l.peek(&"a", t1), Ok(()));
        assert_eq!(l.check(&"a", t1), Ok(()));
        assert!(l.check(&"a", t1).is_err());
        // After a whole period the full burst is back.
        let t2 = t1 + Duration::from_secs(60);
        for _ in 0..3 {
            assert_eq!(l.check(&"a", t2), Ok(()));
        }
    }

    #[test]
    fn peek_charges_nothing() {
        let l = Limiter::new(rate("1/min"), 10);
        let t0 = Instant::now();
        for _ in 0..100 {
            assert_eq!(l.peek(&1, t0), Ok(()));
        }
        assert_eq!(l.check(&1, t0), Ok(()));
        assert!(l.peek(&1, t0).is_err());
    }

    #[test]
    fn memory_is_bounded_and_live_keys_survive() {
        let l = Limiter::new(rate("1/min"), 100);
        let t0 = Instant::now();
        // One key spent at t0, then many others later: the map never exceeds its capacity.
        assert_eq!(l.check(&u32::MAX, t0), Ok(()));
        for i in 0..10_000u32 {
            let now = t0 + Duration::from_millis(u64::from(i));
            let _ = l.check(&i, now);
            assert!(l.len() <= 100);
        }
        // Expired keys are dropped first: a key charged long ago does not block anything.
        let later = t0 + Duration::from_secs(3600);
        assert_eq!(l.check(&7, later), Ok(()));
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(20)), 20);
        assert_eq!(retry_after_secs(Duration::from_millis(20_001)), 21);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
    }
}
