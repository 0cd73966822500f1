//! What a failed attempt leads to: worker failures are classified where they
//! happen (retryable: backoff and another attempt; fatal: dead at once), and
//! retryable ones back off exponentially with full jitter up to the attempt
//! limit, after which the event is dead.
use super::EngineError;
use crate::domain::event::EventStatus;
use chrono::{DateTime, Utc};
use rand::Rng;
use std::time::Duration;

/// Immediate retries of a transaction that lost a lock conflict (deadlock,
/// lock wait timeout) before it counts as a failed attempt.
pub const LOCK_CONFLICT_RETRIES: u32 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// May succeed later: a database or connection error, a conflict, a panic.
    Retryable,
    /// Stored data the rules cannot work with: retrying would fail the same way.
    Fatal,
}

impl Failure {
    pub fn of(error: &EngineError) -> Self {
        match error {
            EngineError::Store(crate::store::StoreError::Corrupt(_)) => Failure::Fatal,
            _ => Failure::Retryable,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base: Duration,
    pub max: Duration,
}

impl RetryPolicy {
    /// Delay before the attempt after `attempts` failed ones: a random point in
    /// [d/2, d] where d = base × 2^(attempts−1), capped at `max`. The jitter keeps
    /// a burst of failures from retrying in lock-step.
    pub fn delay(&self, attempts: u32) -> Duration {
        let exp = attempts.saturating_sub(1).min(30);
        let full = self.base.saturating_mul(1u32 << exp).min(self.max);
        let half = full / 2;
        half + Duration::from_nanos(rand::rng().random_range(0..=half.as_nanos().min(u64::MAX as u128) as u64))
    }

    pub fn exhausted(&self, attempts: u32) -> bool {
        attempts >= self.max_attempts
    }

    /// After `attempts` failed attempts (this one included): the event's next
    /// status, and when it is due again.
    pub fn decide(&self, failure: Failure, attempts: u32, now: DateTime<Utc>) -> (EventStatus, DateTime<Utc>) {
        let status =
            if failure == Failure::Fatal || self.exhausted(attempts) { EventStatus::Dead } else { EventStatus::Failed };
        let delay = chrono::TimeDelta::from_std(self.delay(attempts)).unwrap_or(chrono::TimeDelta::MAX);
        (status, now.checked_add_signed(delay).unwrap_or(DateTime::<Utc>::MAX_UTC))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_doubles_within_jitter_and_caps() {
        let p = RetryPolicy { max_attempts: 8, base: Duration::from_millis(100), max: Duration::from_secs(1) };
        for _ in 0..100 {
            let d1 = p.delay(1);
            assert!(d1 >= Duration::from_millis(50) && d1 <= Duration::from_millis(100), "{d1:?}");
            let d3 = p.delay(3);
            assert!(d3 >= Duration::from_millis(200) && d3 <= Duration::from_millis(400), "{d3:?}");
            let d20 = p.delay(20);
            assert!(d20 >= Duration::from_millis(500) && d20 <= Duration::from_secs(1), "{d20:?}");
        }
        assert!(!p.exhausted(7));
        assert!(p.exhausted(8));
        let now = Utc::now();
        assert_eq!(p.decide(Failure::Retryable, 7, now).0, EventStatus::Failed);
        assert_eq!(p.decide(Failure::Retryable, 8, now).0, EventStatus::Dead);
        assert_eq!(p.decide(Failure::Fatal, 1, now).0, EventStatus::Dead);
        assert!(p.decide(Failure::Retryable, 1, now).1 >= now + chrono::TimeDelta::milliseconds(50));
    }
}
