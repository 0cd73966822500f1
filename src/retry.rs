//! Retry policy: exponential backoff with full jitter, and the attempt limit
//! after which an event is dead.
use rand::Rng;
use std::time::Duration;

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
    }
}
