//! The operator's observers against real protocol peers: [`KafkaObserver`] against librdkafka's
//! in-process MockCluster (committed offsets, watermarks, record timestamps, the retention
//! check), and [`EngineProbe`] against a small axum server standing in for an engine's
//! `/status`.
//!
//! The mock keeps at most 5 MiB per partition and deletes older records, which is what
//! retention does to a real topic: the truncation test produces past that.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use kappa_crds::{consumer_group, KafkaSource, StartFrom, StartPosition};
use kappa_operator::observe::engine::EngineProbe;
use kappa_operator::observe::kafka::{KafkaObserver, OBSERVER_GROUP};
use kappa_operator::observe::ObserveError;
use kappa_service::status::{EngineStatus, PartitionStatus, Phase};
use kappa_testkit::kafka::MockKafka;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

const BASE_TS: i64 = 1_700_000_000_000;
const TIMEOUT: Duration = Duration::from_secs(10);

/// Produces `counts[p]` records of `size` bytes to each partition `p`; record i of partition p
/// has timestamp `ts(p, i)`. One producer for all of them (an idempotent producer takes a
/// while to start).
fn produce(
    kafka: &MockKafka,
    topic: &str,
    counts: &[usize],
    size: usize,
    ts: impl Fn(i32, i64) -> i64,
) {
    let producer = kafka.producer();
    let payload = vec![b'x'; size];
    for (p, &n) in counts.iter().enumerate() {
        let p = p as i32;
        for i in 0..n {
            let mut record = BaseRecord::<(), [u8]>::to(topic)
                .partition(p)
                .timestamp(ts(p, i as i64))
                .payload(&payload);
            while let Err((_, r)) = producer.send(record) {
                record = r;
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    }
    producer.flush(Duration::from_secs(60)).unwrap();
}

/// Commits `offsets` for `group` the way the engine does: assign, then a synchronous commit.
fn commit(kafka: &MockKafka, topic: &str, group: &str, offsets: &[(i32, i64)]) {
    let consumer = consumer(kafka, group);
    let mut tpl = TopicPartitionList::new();
    for &(p, o) in offsets {
        tpl.add_partition_offset(topic, p, Offset::Offset(o)).unwrap();
    }
    consumer.assign(&tpl).unwrap();
    consumer.commit(&tpl, CommitMode::Sync).unwrap();
}

fn consumer(kafka: &MockKafka, group: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", kafka.bootstrap())
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap()
}

/// The group's committed offsets as any lag tool reads them.
fn committed(kafka: &MockKafka, topic: &str, group: &str, partitions: i32) -> Vec<Offset> {
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let got = consumer(kafka, group).committed_offsets(tpl, TIMEOUT).unwrap();
    got.elements().iter().map(|e| e.offset()).collect()
}

fn spec(kafka: &MockKafka, topic: &str) -> KafkaSource {
    KafkaSource {
        bootstrap_servers: kafka.bootstrap(),
        topic: topic.into(),
        start_from: StartFrom::Unset,
        consumer_properties: BTreeMap::new(),
        tls: None,
        sasl: None,
    }
}

fn observer(kafka: &MockKafka, topic: &str) -> KafkaObserver {
    KafkaObserver::new(&spec(kafka, topic), TIMEOUT).unwrap()
}

/// Partition 0: 20 records 1 s apart. Partition 1: 30 records. Partition 2: 15 records 500 ms
/// apart.
fn three_partitions(kafka: &MockKafka, topic: &str) {
    kafka.create_topic(topic, 3);
    produce(kafka, topic, &[20, 30, 15], 100, |p, i| match p {
        2 => BASE_TS + 100_000 + i * 500,
        _ => BASE_TS + i * 1_000,
    });
}

#[test]
fn committed_offsets_give_exact_lag_and_delay_without_touching_the_group() {
    let kafka = MockKafka::new();
    three_partitions(&kafka, "progress");
    let group = consumer_group("default", "tx-stats", "v2");
    // Partition 0 half done, partition 1 caught up, partition 2 committed at its first offset.
    commit(&kafka, "progress", &group, &[(0, 10), (1, 30), (2, 0)]);

    let obs = observer(&kafka, "progress");
    let progress = obs.group_progress(&group).unwrap();
    assert_eq!((progress.topic.as_str(), progress.group.as_str()), ("progress", group.as_str()));
    let rows: Vec<_> =
        progress.partitions.iter().map(|p| (p.partition, p.low, p.high, p.committed)).collect();
    assert_eq!(rows, [(0, 0, 20, Some(10)), (1, 0, 30, Some(30)), (2, 0, 15, Some(0))]);
    assert_eq!(progress.total_lag(), 10 + 15);
    assert_eq!(progress.consumed_offsets(), 40);
    assert_eq!(progress.head_offsets(), 65);

    let p0 = &progress.partitions[0];
    assert_eq!(p0.head_timestamp_ms, Some(BASE_TS + 19_000));
    assert_eq!(p0.committed_timestamp_ms, Some(BASE_TS + 9_000), "the record at committed - 1");
    assert_eq!(p0.delay_ms(), 10_000);
    // Nothing processed on partition 2: its delay runs from the first retained record.
    let p2 = &progress.partitions[2];
    assert_eq!((p2.committed_timestamp_ms, p2.low_timestamp_ms), (None, Some(BASE_TS + 100_000)));
    assert_eq!(p2.head_timestamp_ms, Some(BASE_TS + 100_000 + 14 * 500));
    assert_eq!(p2.delay_ms(), 7_000);
    // The caught-up partition is not read at all.
    assert_eq!(progress.partitions[1].head_timestamp_ms, None);
    assert_eq!(progress.delay_ms(), 10_000, "the worst lagging partition");

    // Observing again (the reader is reused) gives the same answer, and nothing was committed:
    // not to the version's group, not to the observer's own.
    assert_eq!(obs.group_progress(&group).unwrap(), progress);
    let ours = committed(&kafka, "progress", &group, 3);
    assert_eq!(ours, [Offset::Offset(10), Offset::Offset(30), Offset::Offset(0)]);
    assert!(
        committed(&kafka, "progress", OBSERVER_GROUP, 3).iter().all(|o| *o == Offset::Invalid),
        "the observer never commits"
    );

    // The version catches up: lag and delay drop to zero.
    commit(&kafka, "progress", &group, &[(0, 20), (2, 15)]);
    let done = obs.group_progress(&group).unwrap();
    assert_eq!((done.total_lag(), done.delay_ms()), (0, 0));
}

#[test]
fn a_group_without_commits_has_every_record_as_lag() {
    let kafka = MockKafka::new();
    three_partitions(&kafka, "fresh");
    let progress = observer(&kafka, "fresh").group_progress("kappa.default.job.v9").unwrap();
    assert!(progress.partitions.iter().all(|p| p.committed.is_none()));
    assert_eq!(progress.total_lag(), 65);
    assert_eq!(progress.consumed_offsets(), 0);
    // Partition 0 and 1 span 19 s and 29 s from their first record.
    assert_eq!(progress.delay_ms(), 29_000);
    assert_eq!(progress.partitions[1].low_timestamp_ms, Some(BASE_TS));
}

#[test]
fn an_empty_topic_is_caught_up() {
    let kafka = MockKafka::new();
    kafka.create_topic("empty", 2);
    let progress = observer(&kafka, "empty").group_progress("kappa.default.job.v1").unwrap();
    assert_eq!(progress.partitions.len(), 2);
    assert_eq!((progress.total_lag(), progress.delay_ms(), progress.head_offsets()), (0, 0, 0));
}

#[test]
fn the_retention_check_passes_a_complete_log_and_refuses_a_truncated_one() {
    let kafka = MockKafka::new();
    three_partitions(&kafka, "complete");
    let complete = observer(&kafka, "complete");
    for start in [
        StartFrom::Unset,
        StartFrom::Position(StartPosition::Earliest),
        StartFrom::Position(StartPosition::Latest),
    ] {
        complete.retention_check(&start).unwrap();
    }
    let bad = StartFrom::Timestamp { timestamp: "yesterday".into() };
    let err = complete.retention_check(&bad).unwrap_err();
    assert!(matches!(err, ObserveError::Refused { .. }), "{err}");
    assert!(err.to_string().contains("startFrom.timestamp"), "{err}");

    kafka.create_topic("truncated", 2);
    // 8 000 records of 1 KB on partition 1: more than the 5 MiB the mock retains. Partition 0
    // stays empty, which earliest accepts.
    produce(&kafka, "truncated", &[0, 8_000], 1_000, |_, i| BASE_TS + i);
    let truncated = observer(&kafka, "truncated");
    let low = truncated.group_progress("kappa.default.job.v1").unwrap().partitions[1].low;
    assert!(low > 0, "the mock's retention removed the oldest records");
    let err = truncated.retention_check(&StartFrom::Position(StartPosition::Earliest)).unwrap_err();
    assert!(matches!(err, ObserveError::Refused { .. }), "{err:?}");
    assert!(!err.is_retryable());
    let message = err.to_string();
    let expected = format!(
        "refusing to replay topic truncated partition 1: the first retained offset is {low}"
    );
    assert!(message.contains(&expected), "{message}");
    assert!(message.contains("startFrom"), "the message says what to do: {message}");
    // Starting at the head needs nothing that retention removed.
    truncated.retention_check(&StartFrom::Position(StartPosition::Latest)).unwrap();
}

#[test]
fn a_missing_topic_is_named() {
    let kafka = MockKafka::new();
    let obs = observer(&kafka, "nope");
    for err in [
        obs.group_progress("kappa.default.job.v1").unwrap_err(),
        obs.retention_check(&StartFrom::Unset).unwrap_err(),
    ] {
        assert!(matches!(err, ObserveError::UnknownTopic { .. }), "{err:?}");
        assert!(err.to_string().contains("topic nope does not exist"), "{err}");
    }
}

#[test]
fn unreachable_brokers_fail_within_the_timeout_and_name_the_topic() {
    let mut kafka = spec(&MockKafka::new(), "orders");
    // A port nothing listens on.
    kafka.bootstrap_servers = format!("127.0.0.1:{}", free_port());
    let obs = KafkaObserver::new(&kafka, Duration::from_millis(500)).unwrap();
    let err = obs.group_progress("kappa.default.job.v1").unwrap_err();
    assert!(matches!(err, ObserveError::Kafka { .. }), "{err:?}");
    assert!(err.is_retryable());
    assert!(err.to_string().contains("topic orders"), "{err}");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn engine_status() -> EngineStatus {
    EngineStatus {
        job: "tx-stats".into(),
        version: "v2".into(),
        index: "tx-stats-v2".into(),
        consumer_group: "kappa.default.tx-stats.v2".into(),
        phase: Phase::Replaying,
        partitions: vec![PartitionStatus {
            partition: 0,
            processed_offset: 41,
            high_watermark: 100,
            lag: 58,
            indexed_offset: 20,
            index_lag: 79,
            log_time: Some("2024-01-01T00:00:00.000Z".into()),
        }],
        total_lag: 58,
        ..Default::default()
    }
}

/// An engine stand-in: `/status` as the engine serves it, `/broken` failing, `/other` some
/// other JSON. Returns its base URL.
async fn engine_server() -> String {
    let app = Router::new()
        .route("/status", get(|| async { Json(engine_status()) }))
        .route(
            "/broken",
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "checkpoint store down") }),
        )
        .route("/other", get(|| async { Json(serde_json::json!({"hello": "world"})) }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

#[tokio::test]
async fn the_probe_reads_an_engine_status_document() {
    let base = engine_server().await;
    let probe = EngineProbe::new(Duration::from_secs(5));
    assert_eq!(probe.status(&format!("{base}/status")).await.unwrap(), engine_status());
}

#[tokio::test]
async fn the_probe_reports_http_errors_foreign_documents_and_unreachable_engines() {
    let base = engine_server().await;
    let probe = EngineProbe::new(Duration::from_secs(5));

    let url = format!("{base}/broken");
    let err = probe.status(&url).await.unwrap_err();
    assert!(matches!(err, ObserveError::EngineBadStatus { status: 500, .. }), "{err:?}");
    assert!(err.is_retryable());
    let message = err.to_string();
    assert!(message.contains(&url) && message.contains("checkpoint store down"), "{message}");

    let err = probe.status(&format!("{base}/other")).await.unwrap_err();
    assert!(matches!(err, ObserveError::EngineBadBody { .. }), "{err:?}");

    let url = format!("http://127.0.0.1:{}/status", free_port());
    let err = probe.status(&url).await.unwrap_err();
    assert!(matches!(err, ObserveError::EngineUnreachable { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains(&url), "{message}");
    assert!(message.to_lowercase().contains("connect"), "says why: {message}");
}
