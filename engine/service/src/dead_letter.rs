//! Dead letters: records the engine cannot process (malformed JSON, missing fields, documents
//! the index refused) go to a Kafka topic (default `<group>.dead-letters`) with the original
//! bytes and the reason, so nothing is dropped silently.
//!
//! Sending never blocks on the broker: records queue in the producer (bounded; a full queue
//! waits for room, it never drops). [`DeadLetterProducer::flush`] waits for every record sent so
//! far and reports any that failed; the engine calls it before each checkpoint, so a checkpoint
//! never covers a dead letter that is not stored. Keys are `<topic>/<partition>/<offset>`: a
//! replay after a restart re-sends the same keys, which a compacted topic keeps once.

use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::ClientConfig;

use crate::checkpoint::kafka::DeliveryLedger;

/// Suffix of the default dead-letter topic after the consumer group.
pub const DEAD_LETTER_TOPIC_SUFFIX: &str = ".dead-letters";
/// Header: the reason code (`malformed_json`, ...).
pub const HEADER_REASON: &str = "kappa-reason";
/// Header: a human-readable explanation.
pub const HEADER_DETAIL: &str = "kappa-detail";
/// Header: the topic the record was read from.
pub const HEADER_SOURCE_TOPIC: &str = "kappa-source-topic";
/// Header: its partition (decimal).
pub const HEADER_SOURCE_PARTITION: &str = "kappa-source-partition";
/// Header: its offset (decimal).
pub const HEADER_SOURCE_OFFSET: &str = "kappa-source-offset";
/// Header: its Kafka timestamp, Unix milliseconds (decimal); absent when it had none. The dead
/// letter itself gets the time it was sent: an old source timestamp would let time-based
/// retention delete it at once during a backfill.
pub const HEADER_SOURCE_TIMESTAMP: &str = "kappa-source-timestamp";
/// Header: the job's name.
pub const HEADER_JOB: &str = "kappa-job";
/// Header: the job's version.
pub const HEADER_VERSION: &str = "kappa-version";
/// Header of a refused document: its id.
pub const HEADER_DOCUMENT_ID: &str = "kappa-document-id";
/// Reason code of a document the sink refused.
pub const REASON_SINK_REJECTED: &str = "sink_rejected";
/// Default bound of records queued or in flight.
pub const DEFAULT_MAX_QUEUED: usize = 100_000;
/// Default time [`DeadLetterProducer::flush`] waits.
pub const DEFAULT_FLUSH_TIMEOUT: Duration = Duration::from_secs(60);

/// The default dead-letter topic of a consumer group: `<group>.dead-letters`.
///
/// ```
/// use kappa_service::dead_letter::dead_letter_topic;
/// assert_eq!(dead_letter_topic("kappa.default.tx.v1"), "kappa.default.tx.v1.dead-letters");
/// ```
pub fn dead_letter_topic(group: &str) -> String {
    format!("{group}{DEAD_LETTER_TOPIC_SUFFIX}")
}

/// A source record the engine could not process.
#[derive(Debug, Clone, Copy)]
pub struct DeadLetter<'a> {
    /// The topic it was read from.
    pub source_topic: &'a str,
    /// Its partition.
    pub partition: u32,
    /// Its offset.
    pub offset: i64,
    /// The original bytes, stored unchanged.
    pub payload: &'a [u8],
    /// Why, as a stable code (`malformed_json`).
    pub reason_code: &'a str,
    /// Why, for people.
    pub detail: &'a str,
    /// The record's Kafka timestamp, if it had one.
    pub log_time_ms: Option<i64>,
}

impl DeadLetter<'_> {
    /// The record key: `<source_topic>/<partition>/<offset>`.
    ///
    /// ```
    /// # use kappa_service::dead_letter::DeadLetter;
    /// let letter = DeadLetter {
    ///     source_topic: "logs", partition: 3, offset: 42, payload: b"{",
    ///     reason_code: "malformed_json",
    ///     detail: "EOF while parsing", log_time_ms: None,
    /// };
    /// assert_eq!(letter.key(), "logs/3/42");
    /// ```
    pub fn key(&self) -> String {
        format!("{}/{}/{}", self.source_topic, self.partition, self.offset)
    }
}

/// Why dead letters could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum DeadLetterError {
    /// The producer cannot be created (a bad client property).
    #[error("cannot create a producer for dead-letter topic {topic}: {source} (check properties)")]
    Client {
        /// The dead-letter topic.
        topic: String,
        /// The client error.
        source: KafkaError,
    },
    /// The producer refused a record outright (too large for `message.max.bytes`, ...).
    #[error("dead letter {key} refused by the producer for topic {topic}: {source}")]
    Enqueue {
        /// The dead-letter topic.
        topic: String,
        /// The record key.
        key: String,
        /// The producer error (boxed: it is large, and errors are rare).
        source: Box<KafkaError>,
    },
    /// The broker did not store some dead letters. The first failure is reported.
    #[error("{failed} dead letter(s) not stored in topic {topic}; first {key}: {source}")]
    Delivery {
        /// The dead-letter topic.
        topic: String,
        /// Failures since the previous flush.
        failed: u64,
        /// Key of the first failed record.
        key: String,
        /// Its error (boxed: it is large, and errors are rare).
        source: Box<KafkaError>,
    },
    /// Not every dead letter was acknowledged in time.
    #[error("{pending} dead letter(s) for {topic} unacknowledged after {after:?} (broker down?)")]
    FlushTimeout {
        /// The dead-letter topic.
        topic: String,
        /// Records still queued or in flight.
        pending: i32,
        /// How long was waited.
        after: Duration,
    },
}

impl DeadLetterError {
    /// Whether trying again later can succeed (broker unavailable, timeouts).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Client { .. } => false,
            Self::Enqueue { source, .. } | Self::Delivery { source, .. } => {
                crate::checkpoint::kafka_retryable(source.as_ref())
            }
            Self::FlushTimeout { .. } => true,
        }
    }
}

/// Sends dead letters of one job version to its dead-letter topic.
pub struct DeadLetterProducer {
    topic: String,
    job: String,
    version: String,
    producer: ThreadedProducer<DeliveryLedger>,
    flush_timeout: Duration,
    enqueued: u64,
    failed_at_last_flush: u64,
}

impl std::fmt::Debug for DeadLetterProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetterProducer")
            .field("topic", &self.topic)
            .field("enqueued", &self.enqueued)
            .field("sent", &self.sent())
            .field("failed", &self.failed())
            .finish_non_exhaustive()
    }
}

impl DeadLetterProducer {
    /// A producer for `topic`; every record carries `job` and `version` headers. At most
    /// [`DEFAULT_MAX_QUEUED`] records are queued or in flight.
    pub fn new(
        client_config: ClientConfig,
        topic: String,
        job: &str,
        version: &str,
    ) -> Result<Self, DeadLetterError> {
        Self::with_max_queued(client_config, topic, job, version, DEFAULT_MAX_QUEUED)
    }

    /// Like [`new`](Self::new) with at most `max_queued` records queued or in flight.
    pub fn with_max_queued(
        client_config: ClientConfig,
        topic: String,
        job: &str,
        version: &str,
        max_queued: usize,
    ) -> Result<Self, DeadLetterError> {
        let mut config = client_config;
        config
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("linger.ms", "20")
            .set("queue.buffering.max.messages", max_queued.max(1).to_string());
        let producer = config
            .create_with_context(DeliveryLedger::default())
            .map_err(|source| DeadLetterError::Client { topic: topic.clone(), source })?;
        Ok(Self {
            topic,
            job: job.to_owned(),
            version: version.to_owned(),
            producer,
            flush_timeout: DEFAULT_FLUSH_TIMEOUT,
            enqueued: 0,
            failed_at_last_flush: 0,
        })
    }

    /// Sets how long [`flush`](Self::flush) waits.
    pub fn with_flush_timeout(mut self, timeout: Duration) -> Self {
        self.flush_timeout = timeout;
        self
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Queues a dead letter; waits for room when the queue is full, never drops it. Delivery
    /// failures surface from [`flush`](Self::flush).
    pub fn send(&mut self, letter: &DeadLetter<'_>) -> Result<(), DeadLetterError> {
        let (partition, offset) = (letter.partition.to_string(), letter.offset.to_string());
        let timestamp = letter.log_time_ms.map(|t| t.to_string());
        let mut fields = vec![
            (HEADER_REASON, letter.reason_code),
            (HEADER_DETAIL, letter.detail),
            (HEADER_SOURCE_TOPIC, letter.source_topic),
            (HEADER_SOURCE_PARTITION, &partition),
            (HEADER_SOURCE_OFFSET, &offset),
        ];
        fields.extend(timestamp.as_deref().map(|t| (HEADER_SOURCE_TIMESTAMP, t)));
        self.enqueue(&letter.key(), letter.payload, &fields)
    }

    /// Queues a document the sink refused (mapping conflict, ...), keyed `sink/<document_id>`,
    /// with reason [`REASON_SINK_REJECTED`] and the document id in [`HEADER_DOCUMENT_ID`]. It
    /// has no source headers: a document comes from many records.
    pub fn send_rejected(
        &mut self,
        document_id: &str,
        body: &[u8],
        detail: &str,
    ) -> Result<(), DeadLetterError> {
        let fields = [
            (HEADER_REASON, REASON_SINK_REJECTED),
            (HEADER_DETAIL, detail),
            (HEADER_DOCUMENT_ID, document_id),
        ];
        self.enqueue(&format!("sink/{document_id}"), body, &fields)
    }

    fn enqueue(
        &mut self,
        key: &str,
        payload: &[u8],
        fields: &[(&str, &str)],
    ) -> Result<(), DeadLetterError> {
        let headers = fields
            .iter()
            .chain([&(HEADER_JOB, self.job.as_str()), &(HEADER_VERSION, self.version.as_str())])
            .fold(OwnedHeaders::new_with_capacity(fields.len() + 2), |h, (key, value)| {
                h.insert(Header { key, value: Some(*value) })
            });
        let mut record = BaseRecord::to(&self.topic).key(key).payload(payload).headers(headers);
        loop {
            match self.producer.send(record) {
                Ok(()) => {
                    self.enqueued += 1;
                    return Ok(());
                }
                // The producer's own thread serves acknowledgements; wait for room. Records
                // that cannot be delivered time out (message.timeout.ms) and free room too.
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((source, _)) => {
                    return Err(DeadLetterError::Enqueue {
                        topic: self.topic.clone(),
                        key: key.to_owned(),
                        source: Box::new(source),
                    })
                }
            }
        }
    }

    /// Waits until every dead letter sent so far is acknowledged, up to the flush timeout (60 s
    /// unless set with [`with_flush_timeout`](Self::with_flush_timeout)). Records that failed
    /// since the last flush make this an error: they are not stored, so the caller must not
    /// checkpoint past them (a restart from the previous checkpoint sends them again).
    pub fn flush(&mut self) -> Result<(), DeadLetterError> {
        self.flush_within(self.flush_timeout)
    }

    /// [`flush`](Self::flush) with an explicit timeout.
    pub fn flush_within(&mut self, timeout: Duration) -> Result<(), DeadLetterError> {
        if self.producer.flush(timeout).is_err() {
            return Err(DeadLetterError::FlushTimeout {
                topic: self.topic.clone(),
                pending: self.producer.in_flight_count(),
                after: timeout,
            });
        }
        let ledger = self.producer.context();
        let failed = ledger.failed();
        let first = ledger.take_failure();
        let new_failures = failed - self.failed_at_last_flush;
        self.failed_at_last_flush = failed;
        match first {
            Some(f) => Err(DeadLetterError::Delivery {
                topic: self.topic.clone(),
                failed: new_failures,
                key: f.key,
                source: Box::new(f.error),
            }),
            None => Ok(()),
        }
    }

    /// Dead letters queued by this producer.
    pub fn enqueued(&self) -> u64 {
        self.enqueued
    }

    /// Dead letters the broker acknowledged.
    pub fn sent(&self) -> u64 {
        self.producer.context().delivered()
    }

    /// Dead letters that could not be stored.
    pub fn failed(&self) -> u64 {
        self.producer.context().failed()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use rdkafka::types::RDKafkaRespErr;

    use super::*;
    use crate::checkpoint::testing::MockKafka;

    const REASONS: [&str; 3] = ["malformed_json", "missing_field", "bad_timestamp"];

    fn payload(i: usize) -> Vec<u8> {
        // Non-UTF-8 bytes included: the original record is kept byte for byte.
        let mut p = format!("{{\"n\":{i},").into_bytes();
        p.extend_from_slice(&[0xff, 0x00, (i % 251) as u8]);
        p
    }

    #[test]
    fn every_dead_letter_is_stored_with_key_payload_and_headers() {
        let kafka = MockKafka::new();
        let topic = kafka.topic(&dead_letter_topic("kappa.ns.tx.v1"), 1);
        let mut producer =
            DeadLetterProducer::with_max_queued(kafka.config(), topic.clone(), "tx", "v1", 64)
                .unwrap();
        let payloads: Vec<Vec<u8>> = (0..1000).map(payload).collect();
        for (i, p) in payloads.iter().enumerate() {
            let detail = format!("record {i} is broken");
            producer
                .send(&DeadLetter {
                    source_topic: "logs",
                    partition: (i % 4) as u32,
                    offset: i as i64 * 10,
                    payload: p,
                    reason_code: REASONS[i % 3],
                    detail: &detail,
                    log_time_ms: (i % 2 == 0).then_some(1_700_000_000_000 + i as i64),
                })
                .unwrap();
        }
        producer.send_rejected("doc-1", b"{\"a\":1}", "mapping conflict on a").unwrap();
        producer.flush().unwrap();
        assert_eq!((producer.enqueued(), producer.sent(), producer.failed()), (1001, 1001, 0));

        let records = kafka.read(&topic);
        assert_eq!(records.len(), 1001);
        for (i, record) in records[..1000].iter().enumerate() {
            let (partition, offset) = ((i % 4).to_string(), (i * 10).to_string());
            let mut headers = BTreeMap::from([
                (HEADER_REASON, REASONS[i % 3].to_owned()),
                (HEADER_DETAIL, format!("record {i} is broken")),
                (HEADER_SOURCE_TOPIC, "logs".to_owned()),
                (HEADER_SOURCE_PARTITION, partition.clone()),
                (HEADER_SOURCE_OFFSET, offset.clone()),
                (HEADER_JOB, "tx".to_owned()),
                (HEADER_VERSION, "v1".to_owned()),
            ]);
            if i % 2 == 0 {
                headers.insert(HEADER_SOURCE_TIMESTAMP, (1_700_000_000_000 + i).to_string());
            }
            let headers: BTreeMap<String, String> =
                headers.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
            assert_eq!(record.key.as_deref(), Some(format!("logs/{partition}/{offset}").as_str()));
            assert_eq!(record.payload.as_deref(), Some(payloads[i].as_slice()), "record {i}");
            assert_eq!(record.headers, headers, "record {i}");
        }
        let rejected = &records[1000];
        assert_eq!(rejected.key.as_deref(), Some("sink/doc-1"));
        assert_eq!(rejected.payload.as_deref(), Some(&b"{\"a\":1}"[..]));
        assert_eq!(rejected.headers[HEADER_REASON], REASON_SINK_REJECTED);
        assert_eq!(rejected.headers[HEADER_DOCUMENT_ID], "doc-1");
    }

    #[test]
    fn an_undeliverable_dead_letter_is_an_error_from_flush() {
        let kafka = MockKafka::new();
        let topic = kafka.topic("dlq", 1);
        let mut config = kafka.config();
        config.set("message.timeout.ms", "300");
        let mut producer = DeadLetterProducer::new(config, topic, "tx", "v1").unwrap();
        // Every produce request is refused with a non-retriable error.
        kafka.fail_produce(RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE);
        producer
            .send(&DeadLetter {
                source_topic: "logs",
                partition: 0,
                offset: 7,
                payload: b"x",
                reason_code: "malformed_json",
                detail: "d",
                log_time_ms: None,
            })
            .unwrap();
        let err = producer.flush_within(Duration::from_secs(10)).unwrap_err();
        assert!(
            matches!(&err, DeadLetterError::Delivery { key, failed: 1, .. } if key == "logs/0/7"),
            "{err}"
        );
        assert_eq!((producer.sent(), producer.failed()), (0, 1));
        // Reported once: the next flush has nothing new to report.
        producer.flush_within(Duration::from_secs(1)).unwrap();
    }
}
