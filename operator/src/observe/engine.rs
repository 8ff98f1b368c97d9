//! A version's progress as its engine reports it on `GET /status`, and the merge of that report
//! with what Kafka says ([`merge_progress`]) into the inputs of the caught-up rule.

use std::time::Duration;

use kappa_service::status::{EngineStatus, Phase};

use super::kafka::GroupProgress;
use super::{error_chain, ObserveError};

/// `sink.state` of an engine whose sink is retrying (the other value is `healthy`).
pub const SINK_DEGRADED: &str = "degraded";

/// How much of an error response body is kept in [`ObserveError::EngineBadStatus`].
const MAX_ERROR_BODY: usize = 512;

/// Reads a version's engine status endpoint.
#[derive(Debug, Clone)]
pub struct EngineProbe {
    client: reqwest::Client,
    timeout: Duration,
}

impl EngineProbe {
    /// A probe whose requests (connecting included) give up after `timeout`.
    pub fn new(timeout: Duration) -> Self {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            // Engines are always in-cluster Services: an HTTP(S)_PROXY meant for egress must not
            // carry these requests.
            .no_proxy()
            .build()
            .expect("an HTTP client without TLS settings or proxies always builds");
        Self { client, timeout }
    }

    /// The timeout of each request.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// `GET url` (a full status URL, see [`crate::names::engine_status_url`]) decoded as an
    /// [`EngineStatus`].
    pub async fn status(&self, url: &str) -> Result<EngineStatus, ObserveError> {
        let unreachable = |e: reqwest::Error| ObserveError::EngineUnreachable {
            url: url.to_owned(),
            message: if e.is_timeout() {
                format!("no answer within {:?}", self.timeout)
            } else {
                error_chain(&e)
            },
        };
        let response = self.client.get(url).send().await.map_err(unreachable)?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            let mut message = body.trim().to_owned();
            if message.len() > MAX_ERROR_BODY {
                let cut = (0..=MAX_ERROR_BODY).rev().find(|&i| message.is_char_boundary(i));
                message.truncate(cut.unwrap_or(0));
                message.push('…');
            }
            if message.is_empty() {
                message = status.canonical_reason().unwrap_or("no body").to_owned();
            }
            return Err(ObserveError::EngineBadStatus {
                url: url.to_owned(),
                status: status.as_u16(),
                message,
            });
        }
        let bytes = response.bytes().await.map_err(unreachable)?;
        serde_json::from_slice(&bytes).map_err(|e| ObserveError::EngineBadBody {
            url: url.to_owned(),
            message: e.to_string(),
        })
    }
}

/// The caught-up rule's inputs for one version, merged from Kafka and the engine. `None` means
/// unknown, which the rule treats as not caught up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    /// Records still to process.
    pub lag: Option<i64>,
    /// Records whose documents the index has not acknowledged yet (the engine's
    /// `total_index_lag`); unknown without a fresh engine report.
    pub index_lag: Option<i64>,
    /// Documents the engine still has to write (`backlog.documents`).
    pub backlog: Option<i64>,
    /// How far behind the head the version is in Kafka time, in milliseconds.
    pub delay_ms: Option<i64>,
    /// Sum over partitions of the next offset to process.
    pub consumed_offsets: Option<i64>,
    /// Sum over partitions of the high watermark.
    pub head_offsets: Option<i64>,
    /// The engine's event-time watermark (RFC 3339): windows ending before it are final.
    pub watermark: Option<String>,
    /// The engine's error when it is in phase `failed`.
    pub engine_failed: Option<String>,
    /// The sink's last error while the engine reports it degraded.
    pub sink_degraded: Option<String>,
}

/// Merges what Kafka and the engine say about one version (either may be missing: Kafka not
/// reachable, the pod not running yet). Pure.
///
/// - **lag**: committed offsets trail the engine by up to one checkpoint interval, so the
///   engine's `total_lag` is the fresher number and is used whenever the engine answers with
///   progress (phase `replaying` or `live`, with partitions). A `starting` engine reports a lag
///   of 0 before it has read any watermark, and a failed or stopping one reports a stale
///   number, so then the committed lag from Kafka is used ([`GroupProgress::total_lag`]).
/// - **index lag** and **backlog**: only the engine knows which documents the index has
///   acknowledged, so they come from a progressing engine or are unknown (and the version is
///   then not caught up).
/// - **delay**: from the Kafka timestamps ([`GroupProgress::delay_ms`]) when Kafka was
///   observed, else unknown.
/// - **watermark**: the engine's `event_time_watermark`.
/// - **engine_failed**: the engine's `error` when its phase is `failed`.
/// - **sink_degraded**: `sink.last_error` when `sink.state` is `degraded`.
/// - **consumed / head offsets**: from Kafka when observed, else from the engine's partitions
///   (sums of `processed_offset + 1` and of `high_watermark`).
///
/// ```
/// use kappa_operator::observe::engine::merge_progress;
/// use kappa_service::status::{EngineStatus, Phase};
///
/// let engine = EngineStatus { phase: Phase::Live, total_lag: 3, ..Default::default() };
/// // Without partitions the engine has not measured anything yet.
/// assert_eq!(merge_progress(None, Some(&engine)).lag, None);
/// assert_eq!(merge_progress(None, None).delay_ms, None);
/// ```
pub fn merge_progress(kafka: Option<&GroupProgress>, engine: Option<&EngineStatus>) -> Progress {
    let progressing = engine
        .filter(|e| matches!(e.phase, Phase::Replaying | Phase::Live) && !e.partitions.is_empty());
    let engine_lag = progressing.map(|e| e.total_lag);
    let engine_offsets = engine.filter(|e| !e.partitions.is_empty()).map(|e| {
        let consumed = e.partitions.iter().map(|p| p.processed_offset.max(-1) + 1).sum();
        let head = e.partitions.iter().map(|p| p.high_watermark).sum();
        (consumed, head)
    });
    Progress {
        lag: engine_lag.or_else(|| kafka.map(GroupProgress::total_lag)),
        index_lag: progressing.and_then(|e| e.total_index_lag),
        backlog: progressing.map(|e| i64::try_from(e.backlog.documents).unwrap_or(i64::MAX)),
        delay_ms: kafka.map(GroupProgress::delay_ms),
        consumed_offsets: kafka
            .map(GroupProgress::consumed_offsets)
            .or(engine_offsets.map(|(consumed, _)| consumed)),
        head_offsets: kafka.map(GroupProgress::head_offsets).or(engine_offsets.map(|(_, h)| h)),
        watermark: engine.and_then(|e| e.event_time_watermark.clone()),
        engine_failed: engine.filter(|e| e.phase == Phase::Failed).map(|e| {
            e.error.clone().unwrap_or_else(|| "the engine failed without an error message".into())
        }),
        sink_degraded: engine.filter(|e| e.sink.state == SINK_DEGRADED).map(|e| {
            e.sink
                .last_error
                .clone()
                .unwrap_or_else(|| "the sink is degraded (no error recorded)".into())
        }),
    }
}

#[cfg(test)]
mod tests {
    use kappa_service::status::{PartitionStatus, SinkStatus};

    use super::*;
    use crate::observe::kafka::PartitionProgress;

    /// Kafka: lag 60, consumed 40, head 100, delay 3 s.
    fn kafka() -> GroupProgress {
        let mut p = PartitionProgress::new(0, 0, 100);
        p.committed = Some(40);
        p.head_timestamp_ms = Some(10_000);
        p.committed_timestamp_ms = Some(7_000);
        GroupProgress { topic: "t".into(), group: "g".into(), partitions: vec![p] }
    }

    /// Engine: lag 10 (it is ahead of its last commit), processed up to offset 89 of 100.
    fn engine(phase: Phase) -> EngineStatus {
        EngineStatus {
            phase,
            partitions: vec![PartitionStatus {
                partition: 0,
                processed_offset: 89,
                high_watermark: 100,
                lag: 10,
                indexed_offset: 79,
                index_lag: 20,
                log_time: None,
            }],
            total_lag: 10,
            total_index_lag: Some(20),
            backlog: kappa_service::status::Backlog { documents: 7, ..Default::default() },
            event_time_watermark: Some("2024-01-01T00:00:00.000Z".into()),
            sink: SinkStatus { state: "healthy".into(), ..Default::default() },
            ..Default::default()
        }
    }

    #[test]
    fn a_progressing_engine_gives_the_fresher_lag_and_kafka_the_delay_and_offsets() {
        for phase in [Phase::Replaying, Phase::Live] {
            let p = merge_progress(Some(&kafka()), Some(&engine(phase)));
            assert_eq!(p.lag, Some(10), "{phase:?}");
            assert_eq!((p.index_lag, p.backlog), (Some(20), Some(7)), "{phase:?}");
            assert_eq!(p.delay_ms, Some(3_000));
            assert_eq!((p.consumed_offsets, p.head_offsets), (Some(40), Some(100)));
            assert_eq!(p.watermark.as_deref(), Some("2024-01-01T00:00:00.000Z"));
            assert_eq!((p.engine_failed, p.sink_degraded), (None, None));
        }
    }

    #[test]
    fn an_engine_without_fresh_progress_leaves_the_lag_to_kafka() {
        for phase in [Phase::Starting, Phase::Stopping, Phase::Failed] {
            let p = merge_progress(Some(&kafka()), Some(&engine(phase)));
            assert_eq!(p.lag, Some(60), "{phase:?}");
            assert_eq!(p.index_lag, None, "only a progressing engine knows the index: {phase:?}");
        }
        // An engine of a release that does not report the index lag is not believed either.
        let mut old = engine(Phase::Live);
        old.total_index_lag = None;
        assert_eq!(merge_progress(Some(&kafka()), Some(&old)).index_lag, None);
        // A live engine that has not read any watermark says 0 lag: not believed.
        let empty = EngineStatus { phase: Phase::Live, ..Default::default() };
        assert_eq!(merge_progress(Some(&kafka()), Some(&empty)).lag, Some(60));
        assert_eq!(merge_progress(None, Some(&empty)).lag, None);
        assert_eq!(merge_progress(None, Some(&engine(Phase::Starting))).lag, None);
    }

    #[test]
    fn kafka_alone_gives_lag_delay_and_offsets_but_nothing_of_the_engine() {
        let p = merge_progress(Some(&kafka()), None);
        let expected = Progress {
            lag: Some(60),
            delay_ms: Some(3_000),
            consumed_offsets: Some(40),
            head_offsets: Some(100),
            ..Default::default()
        };
        assert_eq!(p, expected);
    }

    #[test]
    fn the_engine_alone_gives_lag_and_offsets_but_an_unknown_delay() {
        let mut e = engine(Phase::Replaying);
        e.partitions.push(PartitionStatus {
            partition: 1,
            processed_offset: -1,
            high_watermark: 5,
            lag: 5,
            indexed_offset: -1,
            index_lag: 5,
            log_time: None,
        });
        e.total_lag = 15;
        let p = merge_progress(None, Some(&e));
        assert_eq!(p.lag, Some(15));
        assert_eq!(p.delay_ms, None, "unknown delay: not caught up");
        assert_eq!((p.consumed_offsets, p.head_offsets), (Some(90), Some(105)));
    }

    #[test]
    fn nothing_observed_is_all_unknown() {
        assert_eq!(merge_progress(None, None), Progress::default());
    }

    #[test]
    fn a_failed_engine_and_a_degraded_sink_carry_their_errors() {
        let mut e = engine(Phase::Failed);
        e.error = Some("refusing to replay topic t partition 0".into());
        e.sink = SinkStatus {
            state: SINK_DEGRADED.into(),
            last_error: Some("HTTP 503 from Elasticsearch".into()),
            ..Default::default()
        };
        let p = merge_progress(None, Some(&e));
        assert_eq!(p.engine_failed.as_deref(), Some("refusing to replay topic t partition 0"));
        assert_eq!(p.sink_degraded.as_deref(), Some("HTTP 503 from Elasticsearch"));

        // Without a message neither condition is lost.
        e.error = None;
        e.sink.last_error = None;
        let p = merge_progress(None, Some(&e));
        assert!(p.engine_failed.is_some_and(|m| m.contains("failed")));
        assert!(p.sink_degraded.is_some_and(|m| m.contains("degraded")));

        // An error field outside phase failed is not a failure.
        let mut live = engine(Phase::Live);
        live.error = Some("old".into());
        assert_eq!(merge_progress(None, Some(&live)).engine_failed, None);
    }
}
