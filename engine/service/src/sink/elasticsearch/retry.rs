//! Backoff for retryable failures: exponential growth from `initial_delay` to `max_delay`, full
//! jitter, and a wall-clock budget.
//!
//! The exponential schedule comes from `backon`. Its own jitter is *additive* (a delay `d`
//! becomes a value in `[d, 2d)`), so the sink applies *full* jitter itself: it sleeps a uniform
//! value in `[0, d]`, which spreads many engines retrying against one recovering cluster best.
//! The retry loop itself is not `backon`'s `Retryable`: a bulk retry carries state (only the
//! refused documents are resent), so the sink drives the schedule by hand.

use std::future::Future;
use std::time::{Duration, Instant};

use backon::BackoffBuilder;

use super::error::SinkError;
use super::health::SinkHealth;

/// Default [`RetryPolicy::initial_delay`].
pub const DEFAULT_INITIAL_DELAY: Duration = Duration::from_millis(100);
/// Default [`RetryPolicy::max_delay`].
pub const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(10);
/// Default [`RetryPolicy::max_elapsed`]: five minutes.
pub const DEFAULT_MAX_ELAPSED: Duration = Duration::from_secs(5 * 60);

/// How long and how often to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Ceiling of the first delay (delays are jittered down from the ceiling).
    pub initial_delay: Duration,
    /// Largest ceiling; the ceiling doubles per attempt until it reaches this.
    pub max_delay: Duration,
    /// Give up once this much time has passed since the first attempt; `None` retries forever.
    /// One request timeout may run past it: the budget is checked between attempts.
    pub max_elapsed: Option<Duration>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            initial_delay: DEFAULT_INITIAL_DELAY,
            max_delay: DEFAULT_MAX_DELAY,
            max_elapsed: Some(DEFAULT_MAX_ELAPSED),
        }
    }
}

impl RetryPolicy {
    /// Starts the clock for one operation.
    pub fn start(&self) -> RetrySchedule {
        let ceilings = backon::ExponentialBuilder::default()
            .with_min_delay(self.initial_delay)
            .with_max_delay(self.max_delay)
            .with_factor(2.0)
            .without_max_times()
            .build();
        RetrySchedule {
            ceilings,
            started: Instant::now(),
            max_elapsed: self.max_elapsed,
            max_delay: self.max_delay,
            attempts: 1,
        }
    }
}

/// The retry state of one operation.
pub struct RetrySchedule {
    ceilings: backon::ExponentialBackoff,
    started: Instant,
    max_elapsed: Option<Duration>,
    max_delay: Duration,
    attempts: u32,
}

impl std::fmt::Debug for RetrySchedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetrySchedule")
            .field("elapsed", &self.started.elapsed())
            .field("attempts", &self.attempts)
            .finish()
    }
}

impl RetrySchedule {
    /// The delay before the next attempt, or `None` when the budget is spent. A delay never
    /// reaches past the budget: the last attempt happens at its end.
    pub fn next_delay(&mut self) -> Option<Duration> {
        let ceiling = self.ceilings.next().unwrap_or(self.max_delay);
        let mut delay = full_jitter(ceiling);
        if let Some(max) = self.max_elapsed {
            let remaining = max.checked_sub(self.started.elapsed()).filter(|r| !r.is_zero())?;
            delay = delay.min(remaining);
        }
        self.attempts += 1;
        Some(delay)
    }

    /// Attempts so far, the first included.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Time since the first attempt.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}

/// A uniform duration in `[0, ceiling]`.
fn full_jitter(ceiling: Duration) -> Duration {
    let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(fastrand::u64(0..=nanos))
}

/// Runs a single-request operation, retrying retryable failures on `policy`'s schedule and
/// recording each outcome in `health`. Fatal errors return at once; an exhausted budget
/// returns [`SinkError::Unavailable`] carrying the last error.
pub(super) async fn retrying<T, F, Fut>(
    policy: &RetryPolicy,
    health: &SinkHealth,
    (index, url): (&str, &str),
    mut operation: F,
) -> Result<T, SinkError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, SinkError>>,
{
    let mut schedule = policy.start();
    loop {
        let error = match operation().await {
            Ok(value) => {
                health.record_success();
                return Ok(value);
            }
            Err(error) => error,
        };
        health.record_failure(&error);
        if !error.is_retryable() {
            return Err(error);
        }
        let Some(delay) = schedule.next_delay() else {
            return Err(SinkError::Unavailable {
                index: index.to_owned(),
                url: url.to_owned(),
                attempts: schedule.attempts(),
                elapsed: schedule.elapsed(),
                pending: 0,
                last_cause: Box::new(error),
            });
        };
        tracing::warn!(%error, ?delay, attempt = schedule.attempts(), "retrying Elasticsearch request");
        tokio::time::sleep(delay).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_stay_under_a_doubling_ceiling_capped_at_max_delay() {
        let policy = RetryPolicy {
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(800),
            max_elapsed: None,
        };
        let mut schedule = policy.start();
        let ceilings = [100, 200, 400, 800, 800, 800, 800];
        for _ in 0..50 {
            let mut s = policy.start();
            for ceiling in ceilings {
                assert!(s.next_delay().unwrap() <= Duration::from_millis(ceiling));
            }
        }
        // Full jitter: over many draws, some delays are far below the ceiling.
        let small = (0..200)
            .filter(|_| schedule.next_delay().unwrap() < Duration::from_millis(400))
            .count();
        assert!(small > 20, "only {small} of 200 delays below half the 800 ms ceiling");
        assert_eq!(schedule.attempts(), 201);
    }

    #[test]
    fn budget_ends_the_schedule_and_caps_the_last_delay() {
        let policy = RetryPolicy {
            initial_delay: Duration::from_secs(10),
            max_delay: Duration::from_secs(10),
            max_elapsed: Some(Duration::from_millis(50)),
        };
        let mut s = policy.start();
        assert!(s.next_delay().unwrap() <= Duration::from_millis(50));
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(s.next_delay(), None);
        let unbounded = RetryPolicy { max_elapsed: None, ..policy };
        assert!(unbounded.start().next_delay().is_some());
    }
}
