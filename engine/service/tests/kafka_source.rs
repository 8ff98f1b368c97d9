//! The Kafka source against librdkafka's MockCluster: start positions, and the retention check
//! that refuses a replay over a truncated log. (The mock answers offset lookups by time with
//! "none", so the timestamp rules are unit tested on `source::kafka::plan_start`.)
//!
//! The mock keeps at most 5 MiB per partition and deletes older records, which is exactly what
//! retention does to a real topic: the tests truncate a partition by producing past that.

use std::time::Duration;

use kappa_crds::{StartFrom, StartPosition};
use kappa_service::source::kafka::KafkaSource;
use kappa_service::source::SourceError;
use kappa_testkit::kafka::MockKafka;
use rdkafka::producer::{BaseRecord, Producer};
use rdkafka::ClientConfig;

const BASE_TS: i64 = 1_700_000_000_000;

/// Produces `n` records of `size` bytes to `partition`, record i at BASE_TS + i seconds.
fn produce(kafka: &MockKafka, topic: &str, partition: i32, n: usize, size: usize) {
    let producer = kafka.producer();
    let payload = vec![b'x'; size];
    for i in 0..n {
        let mut record = BaseRecord::<(), [u8]>::to(topic)
            .partition(partition)
            .timestamp(BASE_TS + i as i64 * 1000)
            .payload(&payload);
        while let Err((_, r)) = producer.send(record) {
            record = r;
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    producer.flush(Duration::from_secs(60)).unwrap();
}

fn source(kafka: &MockKafka, topic: &str) -> KafkaSource {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", kafka.bootstrap());
    KafkaSource::new(&config, topic, "kappa.test.job.v1").unwrap()
}

#[test]
fn a_complete_log_starts_at_zero_and_latest_at_the_head() {
    let kafka = MockKafka::new();
    kafka.create_topic("complete", 2);
    produce(&kafka, "complete", 0, 100, 100);
    produce(&kafka, "complete", 1, 10, 100);
    let src = source(&kafka, "complete");
    let parts = src.partitions().unwrap();
    assert_eq!(parts, vec![0, 1]);
    let earliest = StartFrom::Position(StartPosition::Earliest);
    assert_eq!(src.start_positions(&parts, &earliest).unwrap(), [(0, 0), (1, 0)].into());
    assert_eq!(src.start_positions(&parts, &StartFrom::Unset).unwrap(), [(0, 0), (1, 0)].into());
    let latest = StartFrom::Position(StartPosition::Latest);
    assert_eq!(src.start_positions(&parts, &latest).unwrap(), [(0, 100), (1, 10)].into());
}

#[test]
fn a_truncated_log_is_refused_and_so_is_resuming_below_the_first_retained_offset() {
    let kafka = MockKafka::new();
    kafka.create_topic("truncated", 1);
    // 8 000 records of 1 KB: more than the 5 MiB the mock retains.
    produce(&kafka, "truncated", 0, 8_000, 1_000);
    let src = source(&kafka, "truncated");
    let w = src.fetch_watermarks(0).unwrap();
    assert!(w.low > 0, "the mock's retention removed the oldest records: {w:?}");
    let parts = [0];

    let err = src.start_positions(&parts, &StartFrom::Position(StartPosition::Earliest));
    let err = err.unwrap_err();
    assert!(
        matches!(err, SourceError::Truncated { first_retained, .. } if first_retained == w.low)
    );
    let message = err.to_string();
    assert!(message.contains("refusing to replay topic truncated partition 0"), "{message}");
    assert!(message.contains("startFrom"), "the message says what to do: {message}");

    // Resuming a checkpoint whose position retention already deleted is refused too.
    assert!(matches!(
        src.check_resume(&[(0, w.low - 1)].into()),
        Err(SourceError::Truncated { .. })
    ));
    src.check_resume(&[(0, w.low)].into()).unwrap();
}

#[test]
fn a_missing_topic_is_named() {
    let kafka = MockKafka::new();
    let src = source(&kafka, "nope");
    let err = src.partitions().unwrap_err();
    assert!(err.to_string().contains("topic nope does not exist"), "{err}");
}
