//! Exponential backoff with jitter that honours the connector's retry hint.

use crate::config::RetryPolicy;
use erpsync_connectors::ConnectorError;
use rand::Rng;
use std::time::Duration;

impl RetryPolicy {
    /// Delay before attempt `attempt + 1` (attempt counts from 0): `initial * 2^attempt`
    /// capped at `max`, then "equal jitter" (between half and all of it) so that many workers
    /// retrying the same outage do not hit it in step.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exponential = self.initial.saturating_mul(1u32 << attempt.min(20));
        let capped = exponential.min(self.max);
        let half = capped / 2;
        let jitter = rand::rng().random_range(0.0..=1.0);
        half + half.mul_f64(jitter)
    }

    /// The delay before retrying after `error`: the system's own `Retry-After` wins when it is
    /// longer than our backoff, capped at `max`.
    pub fn delay_for(&self, attempt: u32, error: &ConnectorError) -> Duration {
        let backoff = self.backoff(attempt);
        match error.retry_after {
            Some(hint) => hint.max(backoff).min(self.max.max(hint.min(Duration::from_secs(3600)))),
            None => backoff,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use erpsync_connectors::ErrorKind;

    fn policy() -> RetryPolicy {
        RetryPolicy { max_attempts: 5, initial: Duration::from_millis(100), max: Duration::from_secs(2) }
    }

    #[test]
    fn backoff_grows_and_is_capped_with_jitter_in_the_upper_half() {
        let policy = policy();
        for attempt in 0..10 {
            let expected = Duration::from_millis(100 * (1 << attempt)).min(Duration::from_secs(2));
            for _ in 0..50 {
                let delay = policy.backoff(attempt);
                assert!(delay <= expected && delay >= expected / 2, "attempt {attempt}: {delay:?}");
            }
        }
    }

    #[test]
    fn retry_after_hint_is_honoured() {
        let error =
            ConnectorError::new(ErrorKind::RateLimited, "writing", "429").with_retry_after(Duration::from_secs(7));
        let delay = policy().delay_for(0, &error);
        assert_eq!(delay, Duration::from_secs(7));
    }
}
