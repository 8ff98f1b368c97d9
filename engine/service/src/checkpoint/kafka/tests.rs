//! The Kafka checkpoint store against librdkafka's mock cluster.

use std::collections::HashMap;

use super::*;
use crate::checkpoint::testing::{Consumed, MockKafka};

fn checkpoint(seq: u64, len: usize) -> Checkpoint {
    let snapshot = (0..len).map(|i| ((i as u64).wrapping_mul(2_654_435_761) >> 7 ^ seq) as u8);
    Checkpoint { seq, taken_at_ms: 1_700_000_000_000 + seq as i64, snapshot: snapshot.collect() }
}

fn store(kafka: &MockKafka, topic: &str, chunk_bytes: usize) -> KafkaCheckpointStore {
    let options = KafkaCheckpointOptions { chunk_bytes, ..KafkaCheckpointOptions::default() };
    KafkaCheckpointStore::with_options(kafka.config(), topic.to_owned(), options).unwrap()
}

/// The topic as compaction leaves it: the last record per key, tombstones removed.
fn compacted(records: &[Consumed]) -> HashMap<String, &Consumed> {
    let mut table = HashMap::new();
    for r in records {
        let key = r.key.clone().expect("every checkpoint record has a key");
        match r.payload {
            Some(_) => table.insert(key, r),
            None => table.remove(&key),
        };
    }
    table
}

fn seqs_present(records: &[Consumed]) -> Vec<u64> {
    let mut seqs: Vec<u64> =
        compacted(records).keys().map(|k| k.split_once('/').unwrap().0.parse().unwrap()).collect();
    seqs.sort_unstable();
    seqs.dedup();
    seqs
}

#[test]
fn the_latest_of_several_checkpoints_is_loaded_byte_identical() {
    let kafka = MockKafka::new();
    let topic = kafka.topic(&checkpoint_topic("kappa.ns.tx.v1"), 1);
    let mut store = store(&kafka, &topic, DEFAULT_CHUNK_BYTES);
    assert_eq!(store.load_latest().unwrap(), None, "empty topic");
    assert_eq!(store.next_seq(), 1);

    // The mock keeps at most 5 MiB of log per partition (rdkafka_mock.c, not configurable) and
    // drops the oldest records beyond that, so the ~5 MB checkpoint comes last.
    let saved = [checkpoint(1, 700_000), checkpoint(2, 0), checkpoint(3, 4_700_000)];
    for cp in &saved {
        store.save(cp).unwrap();
    }
    assert_eq!(store.next_seq(), 4);
    assert_eq!(store.load_latest().unwrap().as_ref(), Some(&saved[2]));

    // A new process sees it too.
    let mut fresh = self::store(&kafka, &topic, DEFAULT_CHUNK_BYTES);
    assert_eq!(fresh.load_latest().unwrap().as_ref(), Some(&saved[2]));
    assert_eq!(fresh.next_seq(), 4);

    let records = kafka.read(&topic);
    let chunks_of = |seq: u64| {
        records
            .iter()
            .filter(|r| r.payload.is_some())
            .filter(|r| r.key.as_deref().is_some_and(|k| k.starts_with(&format!("{seq}/"))))
            .filter(|r| !r.key.as_deref().unwrap().ends_with("/commit"))
            .count()
    };
    assert_eq!(chunks_of(3), 9, "4.7 MB in 512 KiB chunks");
    assert_eq!(chunks_of(2), 0, "an empty snapshot is a commit marker alone");
    let marker = compacted(&records)["3/commit"].clone();
    assert_eq!(marker.headers[HEADER_SEQ], "3");
    assert_eq!(marker.headers[HEADER_CHUNK_COUNT], "9");
    assert_eq!(marker.headers[HEADER_TOTAL_LENGTH], "4700000");
    assert_eq!(marker.headers[HEADER_TAKEN_AT], "1700000000003");
    assert_eq!(marker.headers[HEADER_CHECKSUM], format!("{:016x}", xxh3_64(&saved[2].snapshot)));
    assert_eq!(seqs_present(&records), [2, 3], "checkpoint 1 is tombstoned, two are kept");
}

#[test]
fn a_save_that_crashed_before_its_marker_is_ignored_and_cleaned_up() {
    let kafka = MockKafka::new();
    let topic = kafka.topic("crash.checkpoints", 1);
    let mut store = store(&kafka, &topic, 1000);
    store.save(&checkpoint(1, 2500)).unwrap();
    store.save(&checkpoint(2, 2500)).unwrap();

    // Another process writes the chunks of checkpoint 3 and dies before the marker.
    let crashed = self::store(&kafka, &topic, 1000);
    assert_eq!(crashed.write_chunks(&checkpoint(3, 4500)).unwrap().0, 5);
    drop(crashed);

    let mut restarted = self::store(&kafka, &topic, 1000);
    assert_eq!(restarted.load_latest().unwrap(), Some(checkpoint(2, 2500)));
    assert_eq!(restarted.next_seq(), 3);

    // The restarted process saves its own checkpoint 3 (fewer chunks than the crashed one).
    restarted.save(&checkpoint(3, 1500)).unwrap();
    let mut fresh = self::store(&kafka, &topic, 1000);
    assert_eq!(fresh.load_latest().unwrap(), Some(checkpoint(3, 1500)));
    let records = kafka.read(&topic);
    let table = compacted(&records);
    assert!(
        table.contains_key("3/1") && !table.contains_key("3/2"),
        "crashed chunks 3/2..3/4 are tombstoned"
    );
    assert!(!table.contains_key("1/commit"), "beyond the two newest");
}

#[test]
fn a_corrupt_chunk_falls_back_to_the_previous_checkpoint() {
    let kafka = MockKafka::new();
    let topic = kafka.topic("corrupt.checkpoints", 1);
    let mut store = store(&kafka, &topic, 1000);
    store.save(&checkpoint(1, 3000)).unwrap();
    store.save(&checkpoint(2, 3000)).unwrap();

    // Chunk 1 of checkpoint 2 overwritten with other bytes and its original headers.
    let checksum = format!("{:016x}", xxh3_64(&checkpoint(2, 3000).snapshot));
    let headers = [
        (HEADER_SEQ, "2"),
        (HEADER_CHUNK_INDEX, "1"),
        (HEADER_CHUNK_COUNT, "3"),
        (HEADER_CHECKSUM, checksum.as_str()),
    ];
    kafka.produce(&topic, "2/1", &[0u8; 1000], &headers);
    let mut fresh = self::store(&kafka, &topic, 1000);
    assert_eq!(fresh.load_latest().unwrap(), Some(checkpoint(1, 3000)));

    // The next save reuses seq 2 (one after the latest readable) and replaces the corrupt one.
    let mut store = self::store(&kafka, &topic, 1000);
    store.load_latest().unwrap();
    store.save(&checkpoint(2, 3000)).unwrap();
    assert_eq!(self::store(&kafka, &topic, 1000).load_latest().unwrap(), Some(checkpoint(2, 3000)));
}

#[test]
fn a_seq_that_is_not_after_the_latest_is_refused() {
    let kafka = MockKafka::new();
    let topic = kafka.topic("seq.checkpoints", 1);
    let mut store = store(&kafka, &topic, 1000);
    store.save(&checkpoint(5, 10)).unwrap();
    let mut fresh = self::store(&kafka, &topic, 1000);
    fresh.load_latest().unwrap();
    let err = fresh.save(&checkpoint(5, 10)).unwrap_err();
    assert!(matches!(err, CheckpointError::SeqNotAfterLatest { seq: 5, latest: 5, .. }), "{err}");
    assert!(!err.is_retryable());
    fresh.save(&checkpoint(6, 10)).unwrap();
}

#[test]
fn a_missing_topic_has_no_checkpoint() {
    let kafka = MockKafka::new();
    let options =
        KafkaCheckpointOptions { create_topic: false, ..KafkaCheckpointOptions::default() };
    let mut store =
        KafkaCheckpointStore::with_options(kafka.config(), "missing".into(), options).unwrap();
    assert_eq!(store.load_latest().unwrap(), None);
}

#[test]
fn keys_parse_back() {
    assert!(matches!(parse_key("12/3"), Some((12, KeyPart::Chunk(3)))));
    assert!(matches!(parse_key("12/commit"), Some((12, KeyPart::Commit))));
    assert!(parse_key("x/1").is_none() && parse_key("12").is_none() && parse_key("1/x").is_none());
}
