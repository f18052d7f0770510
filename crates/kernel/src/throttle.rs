//! Log what matters once (O1): while the store is unavailable (PostgreSQL
//! restarting, say) every request, poll and background step fails the same
//! way. That is one condition, reported as such — "the store is
//! unavailable" — at most once per [`STORE_DOWN_EVERY`], with the number of
//! failures that were not logged since the previous line, instead of one
//! warning per request.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::{Error, ErrorKind};

/// How often the store's unavailability is logged while it lasts.
pub const STORE_DOWN_EVERY: Duration = Duration::from_secs(10);

/// Lets one log line through per interval and counts the ones held back.
#[derive(Debug)]
pub struct LogThrottle {
    every: Duration,
    state: Mutex<ThrottleState>,
}

#[derive(Debug)]
struct ThrottleState {
    last: Option<Instant>,
    suppressed: u64,
}

impl LogThrottle {
    pub const fn new(every: Duration) -> LogThrottle {
        LogThrottle {
            every,
            state: Mutex::new(ThrottleState {
                last: None,
                suppressed: 0,
            }),
        }
    }

    /// Whether a line may be logged now: `Some(n)` with the number of
    /// occurrences held back since the last line, or `None` (this one is
    /// counted and held back).
    pub fn admit(&self) -> Option<u64> {
        self.admit_at(Instant::now())
    }

    /// [`LogThrottle::admit`] at a given instant (for tests).
    pub fn admit_at(&self, now: Instant) -> Option<u64> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let due = s
            .last
            .is_none_or(|t| now.checked_duration_since(t).unwrap_or_default() >= self.every);
        if due {
            s.last = Some(now);
            Some(std::mem::take(&mut s.suppressed))
        } else {
            s.suppressed += 1;
            None
        }
    }
}

static STORE_DOWN: LogThrottle = LogThrottle::new(STORE_DOWN_EVERY);

/// Reports `e` as the store being unavailable, rate-limited, when that is
/// what it is; `false` (nothing logged) for any other failure, which the
/// caller reports its own way. `during`: what failed because of it.
pub fn store_unavailable(e: &Error, during: &str) -> bool {
    if e.kind() != ErrorKind::Unavailable {
        return false;
    }
    if let Some(suppressed) = STORE_DOWN.admit() {
        tracing::warn!(
            error = %e,
            during,
            suppressed,
            "unavailable: requests fail with 503 until it is back (logged at most every {} s; `suppressed`: failures since the last line)",
            STORE_DOWN_EVERY.as_secs()
        );
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// O1: one line per interval, the rest counted and reported with the
    /// next line. Instants are given, not waited for.
    #[test]
    fn o1_log_throttle_lets_one_line_through_per_interval_and_counts_the_rest() {
        let t = LogThrottle::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(t.admit_at(t0), Some(0), "the first occurrence is logged");
        for i in 1..=202u64 {
            assert_eq!(
                t.admit_at(t0 + Duration::from_millis(i * 40)),
                None,
                "held back within the interval"
            );
        }
        assert_eq!(
            t.admit_at(t0 + Duration::from_secs(10)),
            Some(202),
            "the next line says how many were held back"
        );
        assert_eq!(t.admit_at(t0 + Duration::from_secs(11)), None);
        assert_eq!(t.admit_at(t0 + Duration::from_secs(25)), Some(1));
        // an instant before the last line (clock skew between threads) is
        // within the interval, not a panic
        assert_eq!(t.admit_at(t0), None);
    }

    #[test]
    fn o1_only_an_unavailable_store_is_reported_as_such() {
        let down = Error::Store(kontextual_store::StoreError::Unavailable {
            what: "the PostgreSQL server".into(),
            reason: "cannot reach it".into(),
        });
        assert!(store_unavailable(&down, "authenticating"));
        assert!(store_unavailable(&down, "authenticating"));
        let other = Error::NotFound("artifact x".into());
        assert!(!store_unavailable(&other, "reading"));
    }
}
