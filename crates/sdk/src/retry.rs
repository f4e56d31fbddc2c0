//! [`RetryPolicy`]: when a failed attempt is tried again, and after how long; and
//! [`Backoff`], the one doubling wait every retrying part of the workspace uses (this
//! client, the inbox's dispatcher, the fake Thulium's deliveries).
//!
//! The rule that keeps retries from duplicating data: a request that may have reached
//! the server is retried only when repeating it is harmless (`GET`). `POST` (creating
//! a subscription) is retried only when the connection was never opened.

use std::time::{Duration, SystemTime};

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};

/// The wait before trying again after failures: `initial` after the first, doubling
/// after each further one, never more than `max`, spread by [`Jitter`].
///
/// ```
/// use std::time::Duration;
/// use thulium::retry::{Backoff, Jitter};
///
/// let backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(5));
/// let waits: Vec<u64> = (1..=5).map(|f| backoff.delay(f).as_secs()).collect();
/// assert_eq!(waits, [1, 2, 4, 5, 5]);
/// let spread = backoff.jitter(Jitter::Equal).delay(3);
/// assert!(spread >= Duration::from_secs(2) && spread <= Duration::from_secs(4));
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Backoff {
    /// The wait after the first failure.
    pub initial: Duration,
    /// The longest wait.
    pub max: Duration,
    /// How waits are spread.
    pub jitter: Jitter,
}

/// How a [`Backoff`] spreads its waits, so that what failed together is not all tried
/// again at the same moment.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum Jitter {
    /// Exactly the nominal wait.
    None,
    /// Half the nominal wait fixed, half random: never zero, at most the nominal.
    Equal,
    /// Drawn from ± this fraction (0 to 1) around the nominal wait, never above `max`.
    Proportional(f64),
}

impl Backoff {
    /// `initial` doubling up to `max`, without jitter.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            jitter: Jitter::None,
        }
    }

    /// The same, spread by `jitter`.
    pub fn jitter(self, jitter: Jitter) -> Self {
        Self { jitter, ..self }
    }

    /// The wait after `failures` failed attempts in a row (1 for the first).
    pub fn delay(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        let nominal = self.initial.saturating_mul(1u32 << doublings).min(self.max);
        match self.jitter {
            Jitter::None => nominal,
            Jitter::Equal => {
                let half = nominal / 2;
                let spread = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
                half + Duration::from_nanos(fastrand::u64(0..=spread))
            }
            Jitter::Proportional(fraction) => {
                let fraction = fraction.clamp(0.0, 1.0);
                let factor = 1.0 - fraction + 2.0 * fraction * fastrand::f64();
                nominal.mul_f64(factor).min(self.max)
            }
        }
    }
}

/// How often, and how patiently, the client retries a failed attempt.
///
/// ```
/// use std::time::Duration;
/// use thulium::RetryPolicy;
///
/// let policy = RetryPolicy::default()
///     .max_attempts(5)
///     .initial_backoff(Duration::from_millis(100));
/// assert_eq!(policy.attempts(), 5);
/// assert_eq!(RetryPolicy::none().attempts(), 1);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    max_attempts: u32,
    initial_backoff: Duration,
    max_backoff: Duration,
    max_retry_after: Duration,
}

impl Default for RetryPolicy {
    /// Three attempts, backoff from 250 ms doubling up to 5 s, `Retry-After` up to 30 s.
    fn default() -> Self {
        Self {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(5),
            max_retry_after: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// One attempt, never retried.
    pub fn none() -> Self {
        Self::default().max_attempts(1)
    }

    /// Total attempts, the first included; at least 1.
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// Backoff before the second attempt; it doubles each time up to [`Self::max_backoff`].
    pub fn initial_backoff(mut self, backoff: Duration) -> Self {
        self.initial_backoff = backoff;
        self
    }

    /// The longest backoff between two attempts.
    pub fn max_backoff(mut self, backoff: Duration) -> Self {
        self.max_backoff = backoff;
        self
    }

    /// The longest `Retry-After` the client waits for; a longer one ends the retries,
    /// and the caller gets the error at once.
    pub fn max_retry_after(mut self, wait: Duration) -> Self {
        self.max_retry_after = wait;
        self
    }

    /// Total attempts this policy allows.
    pub fn attempts(&self) -> u32 {
        self.max_attempts
    }

    /// Backoff before attempt `next_attempt` (2 for the first retry): exponential,
    /// capped, with "equal jitter" (half fixed, half random) so that clients that failed
    /// together do not retry together, yet never wait zero.
    pub(crate) fn backoff(&self, next_attempt: u32) -> Duration {
        Backoff::new(self.initial_backoff, self.max_backoff)
            .jitter(Jitter::Equal)
            .delay(next_attempt.saturating_sub(1))
    }

    /// The wait a `Retry-After` header asks for, if it asks for one we accept.
    /// `Err(())` when the server asks for longer than [`Self::max_retry_after`].
    pub(crate) fn retry_after(&self, headers: &HeaderMap) -> Result<Option<Duration>, ()> {
        let Some(wait) = parse_retry_after(headers, SystemTime::now()) else {
            return Ok(None);
        };
        if wait > self.max_retry_after {
            Err(())
        } else {
            Ok(Some(wait))
        }
    }
}

/// Statuses after which a read is worth repeating: too many requests, and a gateway
/// or the server itself saying it could not answer for now.
pub(crate) fn is_retryable_status(status: u16) -> bool {
    [
        StatusCode::TOO_MANY_REQUESTS,
        StatusCode::BAD_GATEWAY,
        StatusCode::SERVICE_UNAVAILABLE,
        StatusCode::GATEWAY_TIMEOUT,
    ]
    .iter()
    .any(|s| s.as_u16() == status)
}

/// The operations (by the spec's `operationId`) that only read, so that repeating
/// one after its request may have arrived changes nothing. The one list the retries
/// and [`crate::Error::is_retryable`] both read; an operation missing here is never
/// repeated once its request may have been sent, which is the safe default.
pub(crate) fn is_idempotent(operation: &str) -> bool {
    matches!(operation, "list_webhooks")
}

/// `Retry-After` as delta-seconds or an HTTP date (RFC 9110, 10.2.3).
fn parse_retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn backoff_doubles_is_capped_and_jittered_within_bounds() {
        let p = RetryPolicy::default()
            .initial_backoff(Duration::from_millis(100))
            .max_backoff(Duration::from_millis(350));
        for _ in 0..200 {
            let b2 = p.backoff(2);
            assert!(b2 >= Duration::from_millis(50) && b2 <= Duration::from_millis(100));
            let b3 = p.backoff(3);
            assert!(b3 >= Duration::from_millis(100) && b3 <= Duration::from_millis(200));
            let b9 = p.backoff(9);
            assert!(b9 >= Duration::from_millis(175) && b9 <= Duration::from_millis(350));
        }
        // Huge attempt numbers neither overflow nor exceed the cap.
        assert!(p.backoff(u32::MAX) <= Duration::from_millis(350));
    }

    #[test]
    fn retry_after_accepts_seconds_and_dates_and_refuses_long_waits() {
        let now = SystemTime::now();
        assert_eq!(
            parse_retry_after(&headers("7"), now),
            Some(Duration::from_secs(7))
        );
        let in_ten = httpdate::fmt_http_date(now + Duration::from_secs(10));
        let parsed = parse_retry_after(&headers(&in_ten), now).unwrap();
        assert!(parsed <= Duration::from_secs(10) && parsed >= Duration::from_secs(9));
        assert_eq!(parse_retry_after(&headers("soon"), now), None);
        assert_eq!(parse_retry_after(&HeaderMap::new(), now), None);

        let p = RetryPolicy::default().max_retry_after(Duration::from_secs(5));
        assert_eq!(
            p.retry_after(&headers("5")),
            Ok(Some(Duration::from_secs(5)))
        );
        assert_eq!(p.retry_after(&headers("6")), Err(()));
    }
}
