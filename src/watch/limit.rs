//! At most one event per container and type per [`WINDOW`], so a crash-looping container
//! cannot flood receivers or the journal. The events held back are counted, and the next one
//! that goes out says how many (`suppressed`); none is sent just to carry the count.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

use crate::states::EventType;

/// One event per container and type at most this often.
pub(super) const WINDOW: Duration = Duration::from_secs(60);

/// Containers remembered at most; beyond it, those whose window has passed are forgotten
/// (their count of held-back events with them, as a log line says).
const REMEMBERED: usize = 4096;

/// The last event that went out for each (container, type), and how many were held back since.
#[derive(Debug, Default)]
pub(super) struct Limiter {
    slots: HashMap<(String, EventType), Slot>,
}

#[derive(Debug)]
struct Slot {
    sent_at: Instant,
    held_back: u64,
}

impl Limiter {
    /// Whether an event of `event` about `container` may go out at `now`: `Some(n)`, with the
    /// number held back since the last one that went out; `None` if it is held back (counted).
    pub(super) fn admit(&mut self, container: &str, event: EventType, now: Instant) -> Option<u64> {
        let key = (container.to_string(), event);
        if let Some(slot) = self.slots.get_mut(&key) {
            if now.duration_since(slot.sent_at) < WINDOW {
                slot.held_back += 1;
                return None;
            }
            let held_back = slot.held_back;
            *slot = Slot {
                sent_at: now,
                held_back: 0,
            };
            return Some(held_back);
        }
        if self.slots.len() >= REMEMBERED {
            self.forget_before(now);
        }
        self.slots.insert(
            key,
            Slot {
                sent_at: now,
                held_back: 0,
            },
        );
        Some(0)
    }

    /// Forgets the containers whose window has passed.
    fn forget_before(&mut self, now: Instant) {
        let mut lost = 0;
        self.slots.retain(|_, s| {
            let keep = now.duration_since(s.sent_at) < WINDOW;
            if !keep {
                lost += s.held_back;
            }
            keep
        });
        if lost > 0 {
            tracing::info!(
                held_back = lost,
                "container events held back by the rate limit are no longer counted (too many containers)"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_per_container_and_type_per_window_and_the_next_says_how_many_were_held_back() {
        let mut l = Limiter::default();
        let t0 = Instant::now();
        let died = EventType::ContainerDied;
        assert_eq!(l.admit("a", died, t0), Some(0));
        for s in 1..5 {
            assert_eq!(l.admit("a", died, t0 + Duration::from_secs(s)), None);
        }
        assert_eq!(
            l.admit("a", EventType::ContainerRestarted, t0),
            Some(0),
            "another type has its own window"
        );
        assert_eq!(l.admit("b", died, t0), Some(0), "another container too");
        assert_eq!(l.admit("a", died, t0 + WINDOW), Some(4));
        assert_eq!(
            l.admit("a", died, t0 + WINDOW + Duration::from_secs(1)),
            None
        );
        assert_eq!(l.admit("a", died, t0 + WINDOW * 3), Some(1));
        assert_eq!(l.admit("a", died, t0 + WINDOW * 5), Some(0));
    }

    #[test]
    fn memory_is_bounded() {
        let mut l = Limiter::default();
        let t0 = Instant::now();
        for i in 0..REMEMBERED {
            l.admit(&format!("c{i}"), EventType::ContainerDied, t0);
        }
        assert_eq!(l.slots.len(), REMEMBERED);
        l.admit("late", EventType::ContainerDied, t0 + WINDOW);
        assert_eq!(l.slots.len(), 1, "the expired ones went");
    }
}
