//! Shared health of the sink: the write path records outcomes, the status endpoint reads them
//! from another thread.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

/// The sink's state as last observed by the write path.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum SinkHealthState {
    /// The last request succeeded (or none was made yet).
    #[default]
    Healthy,
    /// Requests have been failing since `since`; the sink is retrying or has given up.
    Degraded {
        /// When the first failure of this streak happened.
        since: SystemTime,
        /// The latest failure, as text.
        last_error: String,
        /// Failures in a row.
        consecutive_failures: u32,
    },
}

/// A cheap, clonable handle on the sink's health; every clone sees the same state.
///
/// ```
/// use kappa_service::sink::elasticsearch::health::{SinkHealth, SinkHealthState};
/// let health = SinkHealth::default();
/// let status_endpoint_view = health.clone();
/// health.record_failure("connection refused");
/// assert!(!status_endpoint_view.is_healthy());
/// health.record_success();
/// assert_eq!(status_endpoint_view.state(), SinkHealthState::Healthy);
/// ```
#[derive(Debug, Clone, Default)]
pub struct SinkHealth {
    state: Arc<Mutex<SinkHealthState>>,
}

impl SinkHealth {
    /// A snapshot of the current state.
    pub fn state(&self) -> SinkHealthState {
        self.lock().clone()
    }

    /// Whether the last request succeeded.
    pub fn is_healthy(&self) -> bool {
        matches!(*self.lock(), SinkHealthState::Healthy)
    }

    /// Records a failed request: enters or extends the degraded streak.
    pub fn record_failure(&self, error: impl std::fmt::Display) {
        let mut state = self.lock();
        let last_error = error.to_string();
        *state = match &*state {
            SinkHealthState::Healthy => SinkHealthState::Degraded {
                since: SystemTime::now(),
                last_error,
                consecutive_failures: 1,
            },
            SinkHealthState::Degraded { since, consecutive_failures, .. } => {
                SinkHealthState::Degraded {
                    since: *since,
                    last_error,
                    consecutive_failures: consecutive_failures.saturating_add(1),
                }
            }
        };
    }

    /// Records a successful request.
    pub fn record_success(&self) {
        *self.lock() = SinkHealthState::Healthy;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SinkHealthState> {
        // The state is replaced whole under the lock, so a panicking holder cannot leave it torn.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_streak_keeps_its_start_and_counts_failures() {
        let health = SinkHealth::default();
        health.record_failure("a");
        let SinkHealthState::Degraded { since: first, .. } = health.state() else { panic!() };
        health.record_failure("b");
        match health.state() {
            SinkHealthState::Degraded { since, last_error, consecutive_failures } => {
                assert_eq!(since, first);
                assert_eq!(last_error, "b");
                assert_eq!(consecutive_failures, 2);
            }
            SinkHealthState::Healthy => panic!("expected degraded"),
        }
        health.record_success();
        assert!(health.is_healthy());
    }
}
