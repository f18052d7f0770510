//! Abuse limits: a request rate per API key (checked after the key is
//! verified, so nobody can spend another's quota by naming its id), and a
//! much stricter rate of failed authentications per client address. Both
//! answer 429 with `Retry-After`.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use axum::http::StatusCode;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::problem::Problem;

/// The limits a server enforces.
#[derive(Clone, Copy, Debug)]
pub struct LimitConfig {
    /// Requests per second per API key (sustained).
    pub per_key_per_second: u32,
    /// Requests a key may burst above the sustained rate.
    pub per_key_burst: u32,
    /// Failed authentications per minute per client address.
    pub failed_auth_per_minute: u32,
}

impl Default for LimitConfig {
    fn default() -> Self {
        LimitConfig {
            per_key_per_second: 100,
            per_key_burst: 200,
            failed_auth_per_minute: 10,
        }
    }
}

pub struct Limits {
    per_key: DefaultKeyedRateLimiter<String>,
    failed_auth: DefaultKeyedRateLimiter<IpAddr, governor::middleware::StateInformationMiddleware>,
    /// How long a failed-authentication allowance takes to refill one try.
    refill: Duration,
    /// Addresses that used up their failed attempts, until when.
    blocked: std::sync::Mutex<std::collections::HashMap<IpAddr, std::time::Instant>>,
}

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n.max(1)).unwrap_or(NonZeroU32::MIN)
}

impl Limits {
    pub fn new(c: LimitConfig) -> Limits {
        Limits {
            per_key: RateLimiter::keyed(
                Quota::per_second(nz(c.per_key_per_second)).allow_burst(nz(c.per_key_burst)),
            ),
            failed_auth: RateLimiter::keyed(
                Quota::per_minute(nz(c.failed_auth_per_minute))
                    .allow_burst(nz(c.failed_auth_per_minute)),
            )
            .with_middleware::<governor::middleware::StateInformationMiddleware>(),
            refill: Duration::from_secs(60) / c.failed_auth_per_minute.max(1),
            blocked: Default::default(),
        }
    }

    /// Spends one request of a verified key's quota.
    pub fn key_request(&self, key_id: &str) -> Result<(), Limited> {
        self.per_key
            .check_key(&key_id.to_owned())
            .map_err(|not| Limited(not.wait_time_from(DefaultClock::default().now())))
    }

    /// Whether this address may still try to authenticate.
    pub fn may_try(&self, ip: IpAddr) -> Result<(), Limited> {
        let blocked = self.blocked.lock().unwrap_or_else(|p| p.into_inner());
        match blocked.get(&ip) {
            Some(until) if *until > std::time::Instant::now() => {
                Err(Limited(*until - std::time::Instant::now()))
            }
            _ => Ok(()),
        }
    }

    /// Records a failed authentication from this address; past the limit,
    /// the address is refused until its quota refills.
    pub fn failed(&self, ip: IpAddr) {
        let wait = match self.failed_auth.check_key(&ip) {
            Ok(state) if state.remaining_burst_capacity() > 0 => None,
            Ok(_) => Some(self.refill),
            Err(not) => Some(not.wait_time_from(DefaultClock::default().now())),
        };
        if let Some(wait) = wait {
            let mut blocked = self.blocked.lock().unwrap_or_else(|p| p.into_inner());
            let now = std::time::Instant::now();
            if blocked.len() > 10_000 {
                blocked.retain(|_, until| *until > now);
            }
            blocked.insert(ip, now + wait.max(Duration::from_secs(1)));
        }
    }
}

/// Too many requests; retry after the duration.
pub struct Limited(pub Duration);

impl Limited {
    pub fn problem(self, detail: &str, correlation_id: &str) -> Problem {
        let mut p = Problem::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", detail);
        p.correlation_id = Some(correlation_id.to_owned());
        p.retry_after = Some(self.0.as_secs_f64().ceil().max(1.0) as u64);
        p
    }
}
