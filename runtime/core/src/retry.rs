//! Retry policy: how often and how late a run that failed retryably is tried again.
//!
//! Delays grow exponentially and are drawn with "full jitter" — uniformly between zero
//! and the exponential bound (Brooker, "Exponential Backoff And Jitter", AWS
//! Architecture Blog, 2015): retries of many runs that failed together spread out
//! instead of hitting the upstream in waves.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Per-action retry policy. Defaults: 5 attempts, 1 s, ×2, at most 5 min, and a run
/// that took its host down 3 times is not tried a fourth.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1: never retried).
    pub max_attempts: u32,
    /// The bound of the first retry's delay, in milliseconds.
    pub initial_delay_ms: u64,
    /// What the bound is multiplied by after each attempt.
    pub multiplier: f64,
    /// The largest bound, in milliseconds.
    pub max_delay_ms: u64,
    /// The longest `Retry-After` an upstream may impose, in milliseconds.
    pub max_retry_after_ms: u64,
    /// How many times a run may be found unfinished after its host died (its lease
    /// expired) before it is parked as dead: a run that kills its host must not kill it
    /// forever.
    pub max_crash_redeliveries: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            initial_delay_ms: 1_000,
            multiplier: 2.0,
            max_delay_ms: 300_000,
            max_retry_after_ms: 3_600_000,
            max_crash_redeliveries: 3,
        }
    }
}

/// Why a policy is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid retry policy: {0}")]
pub struct InvalidRetryPolicy(pub String);

impl RetryPolicy {
    /// Checks the values: at least one attempt, a multiplier of at least 1, bounds
    /// within a day.
    ///
    /// # Errors
    /// [`InvalidRetryPolicy`] naming the value.
    pub fn check(&self) -> Result<(), InvalidRetryPolicy> {
        if self.max_attempts == 0 || self.max_attempts > 100 {
            return Err(InvalidRetryPolicy(
                "max_attempts must be 1 to 100".to_owned(),
            ));
        }
        if !(self.multiplier.is_finite() && (1.0..=10.0).contains(&self.multiplier)) {
            return Err(InvalidRetryPolicy("multiplier must be 1 to 10".to_owned()));
        }
        let day = crate::limits::MAX_DEADLINE_MS;
        if self.initial_delay_ms > day || self.max_delay_ms > day || self.max_retry_after_ms > day {
            return Err(InvalidRetryPolicy(
                "delays must be at most a day".to_owned(),
            ));
        }
        Ok(())
    }

    /// The delay before attempt `attempt + 1` after attempt `attempt` (1-based) failed:
    /// `unit` (uniform in `[0, 1)`, the caller's random draw) times
    /// `min(max_delay, initial × multiplier^(attempt-1))`; an upstream's `retry_after`
    /// wins when longer, up to `max_retry_after_ms`.
    #[must_use]
    pub fn delay(&self, attempt: u32, unit: f64, retry_after: Option<Duration>) -> Duration {
        let exponent = i32::try_from(attempt.saturating_sub(1).min(64)).unwrap_or(64);
        #[allow(
            clippy::cast_precision_loss,
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "delays are far below 2^52 ms, and the bound is clamped first"
        )]
        let jittered = {
            let bound = (self.initial_delay_ms as f64 * self.multiplier.powi(exponent))
                .min(self.max_delay_ms as f64);
            (bound * unit.clamp(0.0, 1.0)) as u64
        };
        let upstream = retry_after.map_or(0, |after| {
            u64::try_from(after.as_millis())
                .unwrap_or(u64::MAX)
                .min(self.max_retry_after_ms)
        });
        Duration::from_millis(jittered.max(upstream))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_cap_and_jitter_fully() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.delay(1, 0.999_999, None).as_millis(), 999);
        assert_eq!(policy.delay(3, 0.5, None), Duration::from_secs(2));
        assert_eq!(policy.delay(30, 0.5, None), Duration::from_secs(150));
        assert_eq!(
            policy.delay(2, 0.0, None),
            Duration::ZERO,
            "full jitter reaches zero"
        );
        assert_eq!(
            policy.delay(1, 0.1, Some(Duration::from_secs(30))),
            Duration::from_secs(30),
            "an upstream's Retry-After wins"
        );
        assert_eq!(
            policy.delay(1, 0.1, Some(Duration::from_secs(10 * 86_400))),
            Duration::from_millis(policy.max_retry_after_ms)
        );
    }

    #[test]
    fn bad_policies_are_refused() {
        RetryPolicy::default().check().unwrap();
        for bad in [
            RetryPolicy {
                max_attempts: 0,
                ..RetryPolicy::default()
            },
            RetryPolicy {
                multiplier: f64::NAN,
                ..RetryPolicy::default()
            },
            RetryPolicy {
                max_delay_ms: u64::MAX,
                ..RetryPolicy::default()
            },
        ] {
            assert!(bad.check().is_err(), "{bad:?}");
        }
    }
}
