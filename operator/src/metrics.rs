//! Operator metrics (Prometheus text format, names prefixed `kappa_operator_`), served with
//! the probes by [`crate::run`].

use std::time::Duration;

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// The operator's metrics, registered in their own registry.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// `kappa_operator_reconciles_total{result}`: reconciles by result (`ok` or the failure
    /// kind: `kubernetes`, `elasticsearch`, `build`, `finalizer`, ...).
    pub reconciles: IntCounterVec,
    /// `kappa_operator_reconcile_failures_total`.
    pub failures: IntCounter,
    /// `kappa_operator_reconcile_duration_seconds`.
    pub duration: Histogram,
    /// `kappa_operator_version_lag_records{namespace,job,version}`: each version's lag.
    pub lag: IntGaugeVec,
    /// `kappa_operator_version_index_lag_records{namespace,job,version}`: records whose
    /// documents each version's index has not acknowledged yet.
    pub index_lag: IntGaugeVec,
    /// `kappa_operator_alias_swaps_total`: alias moves (promotions and rollbacks).
    pub swaps: IntCounter,
    /// `kappa_operator_rollbacks_total`: alias moves back to an older version.
    pub rollbacks: IntCounter,
    /// `kappa_operator_transitions_total{to}`: version phase changes.
    pub transitions: IntCounterVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let registry = Registry::new();
        let counter = |name: &str, help: &str| IntCounter::new(name, help).expect("valid metric");
        let reconciles = IntCounterVec::new(
            Opts::new("kappa_operator_reconciles_total", "Reconciles by result."),
            &["result"],
        )
        .expect("valid metric");
        let failures = counter("kappa_operator_reconcile_failures_total", "Failed reconciles.");
        let duration = Histogram::with_opts(
            HistogramOpts::new("kappa_operator_reconcile_duration_seconds", "Reconcile duration.")
                .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
        )
        .expect("valid metric");
        let lag = IntGaugeVec::new(
            Opts::new("kappa_operator_version_lag_records", "Consumer lag of each job version."),
            &["namespace", "job", "version"],
        )
        .expect("valid metric");
        let index_lag = IntGaugeVec::new(
            Opts::new(
                "kappa_operator_version_index_lag_records",
                "Records whose documents each job version's index has not acknowledged yet.",
            ),
            &["namespace", "job", "version"],
        )
        .expect("valid metric");
        let swaps = counter("kappa_operator_alias_swaps_total", "Atomic alias moves.");
        let rollbacks =
            counter("kappa_operator_rollbacks_total", "Alias moves back to an older version.");
        let transitions = IntCounterVec::new(
            Opts::new("kappa_operator_transitions_total", "Version phase changes by new phase."),
            &["to"],
        )
        .expect("valid metric");
        for m in [
            Box::new(reconciles.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(failures.clone()),
            Box::new(duration.clone()),
            Box::new(lag.clone()),
            Box::new(index_lag.clone()),
            Box::new(swaps.clone()),
            Box::new(rollbacks.clone()),
            Box::new(transitions.clone()),
        ] {
            registry.register(m).expect("metric names are unique");
        }
        Self {
            registry,
            reconciles,
            failures,
            duration,
            lag,
            index_lag,
            swaps,
            rollbacks,
            transitions,
        }
    }

    /// Records one reconcile: its duration and its failure kind (`None`: success).
    pub fn observe_reconcile(&self, took: Duration, failure: Option<&str>) {
        self.duration.observe(took.as_secs_f64());
        self.reconciles.with_label_values(&[failure.unwrap_or("ok")]).inc();
        if failure.is_some() {
            self.failures.inc();
        }
    }

    /// Sets a version's lag gauge.
    pub fn set_lag(&self, namespace: &str, job: &str, version: &str, lag: i64) {
        self.lag.with_label_values(&[namespace, job, version]).set(lag);
    }

    /// Sets a version's index lag gauge.
    pub fn set_index_lag(&self, namespace: &str, job: &str, version: &str, lag: i64) {
        self.index_lag.with_label_values(&[namespace, job, version]).set(lag);
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut out).expect("text encoding");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_metric_by_name() {
        let m = Metrics::new();
        m.observe_reconcile(Duration::from_millis(20), None);
        m.observe_reconcile(Duration::from_millis(20), Some("elasticsearch"));
        m.set_lag("payments", "tx-stats", "v2", 42);
        m.set_index_lag("payments", "tx-stats", "v2", 90_000);
        m.swaps.inc();
        m.rollbacks.inc();
        m.transitions.with_label_values(&["Live"]).inc();
        let text = m.render();
        for line in [
            "kappa_operator_reconciles_total{result=\"ok\"} 1",
            "kappa_operator_reconciles_total{result=\"elasticsearch\"} 1",
            "kappa_operator_reconcile_failures_total 1",
            "kappa_operator_reconcile_duration_seconds_count 2",
            "kappa_operator_version_lag_records{job=\"tx-stats\",namespace=\"payments\",version=\"v2\"} 42",
            "kappa_operator_version_index_lag_records{job=\"tx-stats\",namespace=\"payments\",version=\"v2\"} 90000",
            "kappa_operator_alias_swaps_total 1",
            "kappa_operator_rollbacks_total 1",
            "kappa_operator_transitions_total{to=\"Live\"} 1",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
    }
}
