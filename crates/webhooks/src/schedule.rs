//! The retry schedule (Standard Webhooks): immediately, 5 s, 5 min, 30 min,
//! 2 h, 5 h, 10 h, 10 h — eight attempts in about 28 hours — each delay
//! jittered by ±20 % from a seed (deterministic: the same message retries at
//! the same offsets after a restart, and different messages spread out).
//! A receiver's `Retry-After` is honoured when it asks for longer (capped at
//! [`RETRY_AFTER_CAP`]). An endpoint failing for [`DISABLE_AFTER`] is
//! disabled.

use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

const MIN: u64 = 60;
const HOUR: u64 = 60 * MIN;

/// The delay before attempt `n + 1` (index 0 is the first attempt).
pub const DELAYS: [Duration; 8] = [
    Duration::ZERO,
    Duration::from_secs(5),
    Duration::from_secs(5 * MIN),
    Duration::from_secs(30 * MIN),
    Duration::from_secs(2 * HOUR),
    Duration::from_secs(5 * HOUR),
    Duration::from_secs(10 * HOUR),
    Duration::from_secs(10 * HOUR),
];

/// Attempts per message, the first included.
pub const MAX_ATTEMPTS: u32 = DELAYS.len() as u32;

/// The longest `Retry-After` honoured.
pub const RETRY_AFTER_CAP: Duration = Duration::from_secs(24 * HOUR);

/// How long an endpoint may fail before it is disabled.
pub const DISABLE_AFTER: Duration = Duration::from_secs(5 * 24 * HOUR);

/// Jitter: ±20 %, in per-mille.
const JITTER_PERMILLE: u64 = 200;

/// SplitMix64: a well-mixed 64-bit step, enough to spread jitter.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The wait before the next attempt, after `attempts_made` attempts, or
/// `None` when all [`MAX_ATTEMPTS`] are spent. The scheduled delay is
/// jittered by ±20 % from `seed` (see [`seed_of`]); a `retry_after` longer
/// than that wins, capped at [`RETRY_AFTER_CAP`].
pub fn next_delay(
    attempts_made: u32,
    retry_after: Option<Duration>,
    seed: u64,
) -> Option<Duration> {
    let base = *DELAYS.get(usize::try_from(attempts_made).ok()?)?;
    let r = mix(seed ^ mix(u64::from(attempts_made)));
    let permille = 1000 - JITTER_PERMILLE + r % (2 * JITTER_PERMILLE + 1);
    let millis = u64::try_from(base.as_millis()).unwrap_or(u64::MAX);
    let jittered = Duration::from_millis(millis.saturating_mul(permille) / 1000);
    Some(match retry_after {
        Some(asked) => jittered.max(asked.min(RETRY_AFTER_CAP)),
        None => jittered,
    })
}

/// A jitter seed from a stable key (the message id): the first 8 bytes of
/// its SHA-256.
pub fn seed_of(key: &str) -> u64 {
    let digest = Sha256::digest(key.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(first)
}

/// Whether an endpoint failing since `first_failure_at` should be disabled
/// at `now`: after [`DISABLE_AFTER`] (5 days) of failure.
pub fn should_disable(first_failure_at: SystemTime, now: SystemTime) -> bool {
    now.duration_since(first_failure_at)
        .is_ok_and(|failing| failing >= DISABLE_AFTER)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn o5_schedule_is_standard_webhooks() {
        assert_eq!(MAX_ATTEMPTS, 8);
        let secs: Vec<u64> = DELAYS.iter().map(Duration::as_secs).collect();
        assert_eq!(secs, [0, 5, 300, 1800, 7200, 18000, 36000, 36000]);
        assert_eq!(next_delay(0, None, 42), Some(Duration::ZERO));
        assert_eq!(next_delay(MAX_ATTEMPTS, None, 42), None);
        assert_eq!(next_delay(u32::MAX, Some(Duration::from_secs(1)), 42), None);
    }

    #[test]
    fn o5_jitter_is_deterministic_and_spreads() {
        let a = next_delay(3, None, seed_of("msg_a"));
        assert_eq!(a, next_delay(3, None, seed_of("msg_a")));
        let spread: std::collections::BTreeSet<_> = (0..50)
            .map(|i| next_delay(3, None, seed_of(&format!("msg_{i}"))))
            .collect();
        assert!(spread.len() > 40, "jitter hardly varies: {}", spread.len());
    }

    #[test]
    fn o5_retry_after_wins_when_longer_and_is_capped() {
        let seed = seed_of("m");
        let plain = next_delay(1, None, seed).unwrap();
        assert!(plain <= Duration::from_secs(6));
        assert_eq!(
            next_delay(1, Some(Duration::from_secs(120)), seed),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            next_delay(1, Some(Duration::from_secs(1)), seed),
            Some(plain)
        );
        assert_eq!(
            next_delay(1, Some(Duration::from_secs(10 * 24 * 3600)), seed),
            Some(RETRY_AFTER_CAP)
        );
    }

    #[test]
    fn o5_disable_after_five_days_of_failure() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        assert!(!should_disable(t0, t0));
        assert!(!should_disable(
            t0,
            t0 + DISABLE_AFTER - Duration::from_secs(1)
        ));
        assert!(should_disable(t0, t0 + DISABLE_AFTER));
        assert!(!should_disable(t0 + DISABLE_AFTER, t0), "clock went back");
    }

    proptest! {
        #[test]
        fn o5_jitter_stays_within_twenty_percent(attempt in 0u32..8, seed in any::<u64>()) {
            let base = DELAYS[attempt as usize].as_millis() as u64;
            let d = next_delay(attempt, None, seed).unwrap().as_millis() as u64;
            prop_assert!(d * 10 >= base * 8 && d * 10 <= base * 12, "{d} vs {base}");
        }
    }
}
