//! Rate limits: a token bucket per API key, and one per client address for
//! failed authentication (governor's GCRA buckets).
//!
//! A key past its bucket gets 429 with `Retry-After`. An address whose
//! failed attempts (a missing or wrong key) pass their bucket is refused
//! with 429 for *every* request until the bucket has a token again — checked
//! before the key is compared, so a guess made while refused learns nothing.
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Rates and bursts; a rate of 0 turns its limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitSettings {
    /// Requests per second per key.
    pub per_key_per_sec: u32,
    pub per_key_burst: u32,
    /// Failed authentications per minute per client address.
    pub auth_failures_per_min: u32,
    pub auth_failures_burst: u32,
}

impl LimitSettings {
    pub const OFF: Self =
        Self { per_key_per_sec: 0, per_key_burst: 0, auth_failures_per_min: 0, auth_failures_burst: 0 };
}

pub struct Limits {
    per_key: Option<DefaultKeyedRateLimiter<usize>>,
    failures: Option<DefaultKeyedRateLimiter<IpAddr>>,
    /// address → refused until (set when its failure bucket is empty).
    refused: dashmap::DashMap<IpAddr, Instant>,
    failed: AtomicU64,
}

/// How long to wait: whole seconds for `Retry-After`, at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

/// Forget idle addresses every this many failures (the stores would
/// otherwise keep one entry per address that ever failed).
const SWEEP_EVERY: u64 = 1024;

impl Limits {
    pub fn new(s: LimitSettings) -> Self {
        let quota = |rate: Option<NonZeroU32>, burst: u32, per: fn(NonZeroU32) -> Quota| {
            rate.map(|r| per(r).allow_burst(NonZeroU32::new(burst).unwrap_or(r)))
        };
        Self {
            per_key: quota(NonZeroU32::new(s.per_key_per_sec), s.per_key_burst, Quota::per_second)
                .map(DefaultKeyedRateLimiter::keyed),
            failures: quota(NonZeroU32::new(s.auth_failures_per_min), s.auth_failures_burst, Quota::per_minute)
                .map(DefaultKeyedRateLimiter::keyed),
            refused: Default::default(),
            failed: AtomicU64::new(0),
        }
    }

    /// A request by the key numbered `key`: how long to wait, if it is over its rate.
    pub fn key(&self, key: usize) -> Result<(), Duration> {
        let Some(limiter) = &self.per_key else { return Ok(()) };
        limiter.check_key(&key).map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }

    /// Before any key is compared: is this address refused for failing too often?
    pub fn refused(&self, addr: Option<IpAddr>) -> Result<(), Duration> {
        let Some(addr) = addr.filter(|_| self.failures.is_some()) else { return Ok(()) };
        let now = Instant::now();
        match self.refused.get(&addr).map(|until| *until) {
            Some(until) if until > now => Err(until - now),
            Some(_) => {
                self.refused.remove_if(&addr, |_, until| *until <= now);
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// A failed authentication from `addr`: Err (refuse with 429) once the
    /// address has used its bucket. Requests without a known address (not
    /// served over TCP) are not counted.
    pub fn failed(&self, addr: Option<IpAddr>) -> Result<(), Duration> {
        let (Some(limiter), Some(addr)) = (&self.failures, addr) else { return Ok(()) };
        if self.failed.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            limiter.retain_recent();
            let now = Instant::now();
            self.refused.retain(|_, until| *until > now);
        }
        limiter.check_key(&addr).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            self.refused.insert(addr, Instant::now() + wait);
            wait
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(per_key_per_sec: u32, per_key_burst: u32, failures: u32, burst: u32) -> LimitSettings {
        LimitSettings { per_key_per_sec, per_key_burst, auth_failures_per_min: failures, auth_failures_burst: burst }
    }

    #[test]
    fn a_key_gets_its_burst_then_waits_and_keys_do_not_share_a_bucket() {
        let limits = Limits::new(settings(1, 3, 0, 0));
        for _ in 0..3 {
            assert_eq!(limits.key(0), Ok(()));
        }
        let wait = limits.key(0).expect_err("past the burst");
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(1), "{wait:?}");
        assert_eq!(limits.key(1), Ok(()), "another key has its own bucket");
    }

    #[test]
    fn an_address_past_its_failures_is_refused_before_any_key_is_compared() {
        let limits = Limits::new(settings(0, 0, 1, 2));
        let attacker: IpAddr = "10.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        assert_eq!(limits.refused(Some(attacker)), Ok(()));
        assert_eq!(limits.failed(Some(attacker)), Ok(()));
        assert_eq!(limits.failed(Some(attacker)), Ok(()));
        let wait = limits.failed(Some(attacker)).expect_err("third failure in a minute");
        assert!(wait > Duration::from_secs(50), "about a minute: {wait:?}");
        assert!(limits.refused(Some(attacker)).is_err(), "refused now, whatever key it sends");
        assert_eq!(limits.refused(Some(other)), Ok(()));
        assert_eq!(limits.failed(None), Ok(()), "no address: not counted");
    }

    #[test]
    fn a_rate_of_zero_turns_a_limit_off() {
        let limits = Limits::new(LimitSettings::OFF);
        let addr: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..10_000 {
            assert_eq!(limits.key(0), Ok(()));
            assert_eq!(limits.failed(Some(addr)), Ok(()));
        }
        assert_eq!(limits.refused(Some(addr)), Ok(()));
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(60)), 60);
    }
}
