//! Checkpoints in a Kafka topic (default `<group>.checkpoints`, compacted, partition 0 only).
//!
//! A snapshot is larger than Kafka's message size limit, so it is split into chunks. Record
//! layout of checkpoint `seq` with `n` chunks:
//!
//! - `<seq>/<i>`: chunk `i` of `n`; headers [`HEADER_SEQ`], [`HEADER_CHUNK_INDEX`],
//!   [`HEADER_CHUNK_COUNT`], [`HEADER_CHECKSUM`] (of the whole snapshot).
//! - `<seq>/commit`: the commit marker, a readable summary; headers [`HEADER_SEQ`],
//!   [`HEADER_CHUNK_COUNT`], [`HEADER_TOTAL_LENGTH`], [`HEADER_CHECKSUM`], [`HEADER_TAKEN_AT`].
//!
//! The commit marker is written only after every chunk is acknowledged, so a checkpoint without
//! its marker (the process died mid-save) is never read. Readers treat the topic as a table: the
//! last record per key wins and a tombstone (no value) deletes the key, which is exactly what
//! log compaction keeps. After each save the store tombstones checkpoints beyond the newest
//! [`KafkaCheckpointOptions::keep`] and the chunks of unfinished saves, so the compacted topic
//! stays a few snapshots large.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, DeliveryResult, Header, Headers, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use rdkafka::{ClientConfig, ClientContext, Message, Offset, TopicPartitionList};
use xxhash_rust::xxh3::xxh3_64;

use super::{Checkpoint, CheckpointError, CheckpointStore};

/// Suffix of the default checkpoint topic after the consumer group.
pub const CHECKPOINT_TOPIC_SUFFIX: &str = ".checkpoints";
/// The only partition checkpoints are written to and read from.
pub const CHECKPOINT_PARTITION: i32 = 0;
/// Default chunk size: well under the default 1 MB message limit of brokers and clients.
pub const DEFAULT_CHUNK_BYTES: usize = 512 * 1024;
/// Last path segment of a commit marker's key, `<seq>/commit`.
pub const COMMIT_KEY: &str = "commit";
/// Header: the checkpoint's sequence number (decimal).
pub const HEADER_SEQ: &str = "kappa-checkpoint-seq";
/// Header: a chunk's index, from 0 (decimal).
pub const HEADER_CHUNK_INDEX: &str = "kappa-chunk-index";
/// Header: the checkpoint's number of chunks (decimal).
pub const HEADER_CHUNK_COUNT: &str = "kappa-chunk-count";
/// Header: xxh3-64 of the whole snapshot (16 lowercase hex digits).
pub const HEADER_CHECKSUM: &str = "kappa-checksum";
/// Header of the commit marker: the snapshot's length in bytes (decimal).
pub const HEADER_TOTAL_LENGTH: &str = "kappa-total-length";
/// Header of the commit marker: when the snapshot was taken, Unix milliseconds (decimal).
pub const HEADER_TAKEN_AT: &str = "kappa-taken-at-ms";

/// The default checkpoint topic of a consumer group: `<group>.checkpoints`.
///
/// ```
/// use kappa_service::checkpoint::checkpoint_topic;
/// assert_eq!(checkpoint_topic("kappa.default.tx.v1"), "kappa.default.tx.v1.checkpoints");
/// ```
pub fn checkpoint_topic(group: &str) -> String {
    format!("{group}{CHECKPOINT_TOPIC_SUFFIX}")
}

/// A client configuration for `bootstrap` with the user's `properties` applied over Kappa's
/// defaults (a client id and TCP keep-alive). Settings a component's correctness depends on
/// (acks, idempotence, offset handling) are forced by that component, not here.
///
/// ```
/// use std::collections::BTreeMap;
/// let props = BTreeMap::from([("client.id".to_owned(), "mine".to_owned())]);
/// let config = kappa_service::checkpoint::kafka_client_config("broker:9092", &props);
/// assert_eq!(config.get("bootstrap.servers"), Some("broker:9092"));
/// assert_eq!(config.get("client.id"), Some("mine"));
/// ```
pub fn kafka_client_config(bootstrap: &str, properties: &BTreeMap<String, String>) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("client.id", "kappa")
        .set("socket.keepalive.enable", "true");
    for (key, value) in properties {
        config.set(key, value);
    }
    config
}

/// Tuning of a [`KafkaCheckpointStore`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaCheckpointOptions {
    /// Bytes per chunk record. Must stay below the broker's `message.max.bytes` (and the
    /// topic's `max.message.bytes`), default about 1 MB.
    pub chunk_bytes: usize,
    /// How long a save waits for the broker to acknowledge its records.
    pub ack_timeout: Duration,
    /// How long `load_latest` may take to read the topic.
    pub read_timeout: Duration,
    /// Complete checkpoints kept in the topic (at least 1); older ones are tombstoned. Two keep
    /// one to fall back to should the newest turn out unreadable.
    pub keep: usize,
    /// Whether to create the topic (compacted, one partition) when it does not exist.
    pub create_topic: bool,
}

impl Default for KafkaCheckpointOptions {
    fn default() -> Self {
        Self {
            chunk_bytes: DEFAULT_CHUNK_BYTES,
            ack_timeout: Duration::from_secs(60),
            read_timeout: Duration::from_secs(120),
            keep: 2,
            create_topic: true,
        }
    }
}

/// Counts a producer's deliveries and keeps the first failure until it is taken, so a failed
/// record is reported to whoever waits for acknowledgements, never lost silently.
#[derive(Default)]
pub(crate) struct DeliveryLedger {
    delivered: AtomicU64,
    failed: AtomicU64,
    first_failure: Mutex<Option<DeliveryFailure>>,
}

/// A record the broker did not acknowledge.
#[derive(Debug)]
pub(crate) struct DeliveryFailure {
    /// Its key (lossy UTF-8).
    pub key: String,
    /// Why.
    pub error: KafkaError,
}

impl DeliveryLedger {
    /// Records acknowledged so far.
    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }

    /// Records that failed so far.
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// The first failure since the last call.
    pub fn take_failure(&self) -> Option<DeliveryFailure> {
        self.first_failure.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}

impl ClientContext for DeliveryLedger {}

impl ProducerContext for DeliveryLedger {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err((error, message)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                let key = String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned();
                let mut first = self.first_failure.lock().unwrap_or_else(PoisonError::into_inner);
                first.get_or_insert(DeliveryFailure { key, error: error.clone() });
            }
        }
    }
}

/// Checkpoints in one partition of a Kafka topic, split into chunks (see the module docs).
pub struct KafkaCheckpointStore {
    topic: String,
    client_config: ClientConfig,
    producer: BaseProducer<DeliveryLedger>,
    options: KafkaCheckpointOptions,
    /// The newest checkpoint loaded or saved by this store.
    latest_seq: Option<u64>,
    /// Checkpoints with a commit marker, newest last, with their keys: the retention window.
    retained: BTreeMap<u64, Vec<String>>,
    /// Keys of unfinished, corrupt or superseded checkpoints, tombstoned after the next save.
    superseded: BTreeSet<String>,
}

impl std::fmt::Debug for KafkaCheckpointStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaCheckpointStore")
            .field("topic", &self.topic)
            .field("latest_seq", &self.latest_seq)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl KafkaCheckpointStore {
    /// A store in `topic`, with default options. `client_config` carries the bootstrap servers,
    /// security and user properties.
    pub fn new(client_config: ClientConfig, topic: String) -> Result<Self, CheckpointError> {
        Self::with_options(client_config, topic, KafkaCheckpointOptions::default())
    }

    /// A store in `topic` with `options`. Creates the topic (compacted, one partition) when
    /// [`KafkaCheckpointOptions::create_topic`] is set and it does not exist; a broker that
    /// refuses is logged, not an error (the topic may be managed elsewhere).
    pub fn with_options(
        client_config: ClientConfig,
        topic: String,
        options: KafkaCheckpointOptions,
    ) -> Result<Self, CheckpointError> {
        let options = KafkaCheckpointOptions {
            chunk_bytes: options.chunk_bytes.max(1),
            keep: options.keep.max(1),
            ..options
        };
        let mut producer_config = client_config.clone();
        producer_config
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("message.timeout.ms", options.ack_timeout.as_millis().max(1).to_string())
            // Room for a chunk plus key and headers.
            .set("message.max.bytes", (options.chunk_bytes + 64 * 1024).max(1_000_000).to_string());
        let producer = producer_config
            .create_with_context(DeliveryLedger::default())
            .map_err(|source| CheckpointError::Client { topic: topic.clone(), source })?;
        if options.create_topic {
            create_compacted_topic(&client_config, &topic);
        }
        Ok(Self {
            topic,
            client_config,
            producer,
            options,
            latest_seq: None,
            retained: BTreeMap::new(),
            superseded: BTreeSet::new(),
        })
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The sequence number the next checkpoint should use: one after the newest checkpoint
    /// this store loaded or saved, 1 when there is none.
    pub fn next_seq(&self) -> u64 {
        self.latest_seq.map_or(1, |s| s + 1)
    }

    fn ledger(&self) -> &DeliveryLedger {
        self.producer.context()
    }

    /// Enqueues one record for partition 0; waits for queue space when the producer is full.
    fn enqueue(
        &self,
        key: &str,
        payload: Option<&[u8]>,
        headers: Option<OwnedHeaders>,
        deadline: Instant,
    ) -> Result<(), CheckpointError> {
        let mut record =
            BaseRecord::<str, [u8]>::to(&self.topic).partition(CHECKPOINT_PARTITION).key(key);
        record.payload = payload;
        record.headers = headers;
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r))
                    if Instant::now() < deadline =>
                {
                    record = r;
                    self.producer.poll(Duration::from_millis(10));
                }
                Err((source, _)) => {
                    return Err(CheckpointError::Produce {
                        topic: self.topic.clone(),
                        key: key.to_owned(),
                        source: Box::new(source),
                    })
                }
            }
        }
    }

    /// Waits until every enqueued record is acknowledged; the first failure is the error.
    fn await_acks(&self, operation: &'static str) -> Result<(), CheckpointError> {
        // Not `Producer::flush`: rdkafka's flush polls in 100 ms steps, which adds up to 100 ms
        // to each wait; serving delivery reports in 1 ms steps ends as soon as the last arrives.
        let deadline = Instant::now() + self.options.ack_timeout;
        while self.producer.in_flight_count() > 0 && Instant::now() < deadline {
            self.producer.poll(Duration::from_millis(1));
        }
        if self.producer.in_flight_count() > 0 {
            return Err(CheckpointError::Timeout {
                topic: self.topic.clone(),
                operation,
                after: self.options.ack_timeout,
            });
        }
        match self.ledger().take_failure() {
            None => Ok(()),
            Some(DeliveryFailure { key, error }) => Err(CheckpointError::Produce {
                topic: self.topic.clone(),
                key,
                source: Box::new(error),
            }),
        }
    }

    /// Writes and awaits the chunks of `checkpoint` (no commit marker): the first half of a
    /// save, and what a save that crashed before its marker leaves behind. Returns the chunk
    /// count and the snapshot's checksum.
    fn write_chunks(&self, checkpoint: &Checkpoint) -> Result<(u32, u64), CheckpointError> {
        let deadline = Instant::now() + self.options.ack_timeout;
        // Failures of earlier, already reported writes must not be blamed on this save.
        let _ = self.ledger().take_failure();
        let checksum = xxh3_64(&checkpoint.snapshot);
        let chunks = checkpoint.snapshot.chunks(self.options.chunk_bytes);
        let count = u32::try_from(chunks.len()).expect("fewer than 2^32 chunks");
        let (seq, count_text, checksum_text) =
            (checkpoint.seq.to_string(), count.to_string(), hex(checksum));
        for (index, chunk) in chunks.enumerate() {
            let headers = headers(&[
                (HEADER_SEQ, &seq),
                (HEADER_CHUNK_INDEX, &index.to_string()),
                (HEADER_CHUNK_COUNT, &count_text),
                (HEADER_CHECKSUM, &checksum_text),
            ]);
            let key = chunk_key(checkpoint.seq, index as u32);
            self.enqueue(&key, Some(chunk), Some(headers), deadline)?;
        }
        self.await_acks("acknowledgement of checkpoint chunks")?;
        Ok((count, checksum))
    }

    /// Writes and awaits the commit marker: from here on the checkpoint is readable.
    fn write_commit(
        &self,
        checkpoint: &Checkpoint,
        count: u32,
        checksum: u64,
    ) -> Result<(), CheckpointError> {
        let deadline = Instant::now() + self.options.ack_timeout;
        let (seq, len) = (checkpoint.seq.to_string(), checkpoint.snapshot.len().to_string());
        let headers = headers(&[
            (HEADER_SEQ, &seq),
            (HEADER_CHUNK_COUNT, &count.to_string()),
            (HEADER_TOTAL_LENGTH, &len),
            (HEADER_CHECKSUM, &hex(checksum)),
            (HEADER_TAKEN_AT, &checkpoint.taken_at_ms.to_string()),
        ]);
        let summary = format!(
            "checkpoint {seq}: {count} chunks, {len} bytes, xxh3 {}, taken at {} ms",
            hex(checksum),
            checkpoint.taken_at_ms
        );
        let key = commit_key(checkpoint.seq);
        self.enqueue(&key, Some(summary.as_bytes()), Some(headers), deadline)?;
        self.await_acks("acknowledgement of the checkpoint commit marker")
    }

    /// Tombstones what the retention window no longer holds. Best effort: the new checkpoint is
    /// durable already, and keys left behind are found and tombstoned again after a restart.
    fn tombstone_superseded(&mut self) {
        while self.retained.len() > self.options.keep {
            if let Some((_, keys)) = self.retained.pop_first() {
                self.superseded.extend(keys);
            }
        }
        if self.superseded.is_empty() {
            return;
        }
        let deadline = Instant::now() + self.options.ack_timeout;
        let keys = std::mem::take(&mut self.superseded);
        let sent = keys.iter().try_for_each(|key| self.enqueue(key, None, None, deadline));
        match sent.and_then(|()| self.await_acks("acknowledgement of tombstones")) {
            Ok(()) => tracing::debug!(topic = %self.topic, count = keys.len(), "tombstoned"),
            Err(e) => tracing::warn!(error = %e, "cannot tombstone superseded checkpoint records"),
        }
    }

    /// Reads partition 0 from the low to the high watermark as a table: last value per key,
    /// tombstones delete. `None` when the topic does not exist.
    fn read_table(&self) -> Result<Option<HashMap<String, Stored>>, CheckpointError> {
        let deadline = Instant::now() + self.options.read_timeout;
        let mut config = self.client_config.clone();
        // librdkafka refuses `assign` without a group id. This group never joins (no
        // subscribe) and never commits, so brokers and lag tools do not see it.
        config
            .set("group.id", format!("{}.reader", self.topic))
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true")
            .set("auto.offset.reset", "earliest")
            // The reader stops at the high watermark; a broker holding back an empty fetch
            // (default up to 500 ms) would only delay that.
            .set("fetch.wait.max.ms", "10");
        let consumer: BaseConsumer = config
            .create()
            .map_err(|source| CheckpointError::Client { topic: self.topic.clone(), source })?;
        let fetch_error = |source| CheckpointError::Fetch { topic: self.topic.clone(), source };
        let (low, high) = match consumer.fetch_watermarks(
            &self.topic,
            CHECKPOINT_PARTITION,
            self.options.read_timeout,
        ) {
            Ok(w) => w,
            Err(e)
                if matches!(
                    e.rdkafka_error_code(),
                    // librdkafka reports a missing topic's partition as a local UnknownPartition.
                    Some(
                        RDKafkaErrorCode::UnknownTopicOrPartition
                            | RDKafkaErrorCode::UnknownTopic
                            | RDKafkaErrorCode::UnknownPartition
                    )
                ) =>
            {
                tracing::warn!(topic = %self.topic, "no checkpoint topic yet");
                return Ok(None);
            }
            Err(e) => return Err(fetch_error(e)),
        };
        let mut table = HashMap::new();
        if high <= low {
            return Ok(Some(table));
        }
        let mut assignment = TopicPartitionList::new();
        assignment
            .add_partition_offset(&self.topic, CHECKPOINT_PARTITION, Offset::Offset(low))
            .map_err(fetch_error)?;
        consumer.assign(&assignment).map_err(fetch_error)?;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(CheckpointError::Timeout {
                    topic: self.topic.clone(),
                    operation: "reading checkpoints",
                    after: self.options.read_timeout,
                });
            }
            match consumer.poll(left.min(Duration::from_millis(500))) {
                None => {}
                Some(Err(KafkaError::PartitionEOF(_))) => break,
                Some(Err(e)) => return Err(fetch_error(e)),
                Some(Ok(message)) => {
                    let offset = message.offset();
                    if let Some(key) = message.key() {
                        let key = String::from_utf8_lossy(key).into_owned();
                        match Stored::from_message(&message) {
                            Some(stored) => table.insert(key, stored),
                            None => table.remove(&key),
                        };
                    }
                    if offset + 1 >= high {
                        break;
                    }
                }
            }
        }
        Ok(Some(table))
    }
}

impl CheckpointStore for KafkaCheckpointStore {
    fn load_latest(&mut self) -> Result<Option<Checkpoint>, CheckpointError> {
        let Some(mut table) = self.read_table()? else { return Ok(None) };
        let mut by_seq: BTreeMap<u64, SeqRecords> = BTreeMap::new();
        for (key, stored) in table.drain() {
            let Some((seq, part)) = parse_key(&key) else {
                tracing::warn!(topic = %self.topic, key, "not a checkpoint record: ignored");
                continue;
            };
            let entry = by_seq.entry(seq).or_default();
            match part {
                KeyPart::Commit => entry.commit = Some(stored),
                KeyPart::Chunk(index) => {
                    entry.chunks.insert(index, stored);
                }
            }
        }
        let mut latest = None;
        self.retained.clear();
        self.superseded.clear();
        for (&seq, records) in by_seq.iter().rev() {
            let keys = records.keys(seq);
            let Some(commit) = &records.commit else {
                // An unfinished save.
                tracing::info!(topic = %self.topic, seq, "no commit marker: ignored");
                self.superseded.extend(keys);
                continue;
            };
            let committed = commit.chunk_count().unwrap_or(0);
            if latest.is_none() {
                match records.assemble(seq) {
                    Ok(checkpoint) => latest = Some(checkpoint),
                    Err(why) => {
                        let topic = &self.topic;
                        tracing::warn!(topic, seq, why, "unreadable checkpoint: skipped");
                        self.superseded.extend(keys);
                        continue;
                    }
                }
            }
            // The one restored and the older ones with a marker (not read) are retained; chunks
            // beyond a marker's count are left over from an earlier attempt at the same seq.
            let (kept, extra) = keys.into_iter().partition(|k| is_committed_key(k, committed));
            self.retained.insert(seq, kept);
            self.superseded.extend(extra);
        }
        self.latest_seq = latest.as_ref().map(|cp: &Checkpoint| cp.seq);
        Ok(latest)
    }

    fn save(&mut self, checkpoint: &Checkpoint) -> Result<(), CheckpointError> {
        super::ensure_after_latest(self.latest_seq, checkpoint.seq, || self.describe())?;
        let (count, checksum) = self.write_chunks(checkpoint)?;
        self.write_commit(checkpoint, count, checksum)?;
        let keys: Vec<String> = (0..count)
            .map(|i| chunk_key(checkpoint.seq, i))
            .chain([commit_key(checkpoint.seq)])
            .collect();
        for key in &keys {
            self.superseded.remove(key);
        }
        self.retained.insert(checkpoint.seq, keys);
        self.latest_seq = Some(checkpoint.seq);
        self.tombstone_superseded();
        Ok(())
    }

    fn describe(&self) -> String {
        format!("Kafka topic {} partition {CHECKPOINT_PARTITION}", self.topic)
    }
}

/// The key of chunk `index` of checkpoint `seq`.
fn chunk_key(seq: u64, index: u32) -> String {
    format!("{seq}/{index}")
}

/// The key of checkpoint `seq`'s commit marker.
fn commit_key(seq: u64) -> String {
    format!("{seq}/{COMMIT_KEY}")
}

enum KeyPart {
    Chunk(u32),
    Commit,
}

fn parse_key(key: &str) -> Option<(u64, KeyPart)> {
    let (seq, rest) = key.split_once('/')?;
    let part =
        if rest == COMMIT_KEY { KeyPart::Commit } else { KeyPart::Chunk(rest.parse().ok()?) };
    Some((seq.parse().ok()?, part))
}

/// Whether `key` is the commit marker or one of the first `count` chunks.
fn is_committed_key(key: &str, count: u32) -> bool {
    match parse_key(key) {
        Some((_, KeyPart::Commit)) => true,
        Some((_, KeyPart::Chunk(i))) => i < count,
        None => false,
    }
}

fn hex(checksum: u64) -> String {
    format!("{checksum:016x}")
}

fn headers(pairs: &[(&str, &str)]) -> OwnedHeaders {
    pairs.iter().fold(OwnedHeaders::new_with_capacity(pairs.len()), |h, (key, value)| {
        h.insert(Header { key, value: Some(*value) })
    })
}

/// The last value of one key.
struct Stored {
    headers: Vec<(String, String)>,
    payload: Vec<u8>,
}

impl Stored {
    /// `None` for a tombstone.
    fn from_message(message: &BorrowedMessage<'_>) -> Option<Self> {
        let payload = message.payload()?.to_vec();
        let headers = message
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| {
                        let value = String::from_utf8_lossy(h.value.unwrap_or_default());
                        (h.key.to_owned(), value.into_owned())
                    })
                    .collect()
            })
            .unwrap_or_default();
        Some(Self { headers, payload })
    }

    fn header(&self, key: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    fn header_num<T: std::str::FromStr>(&self, key: &str) -> Option<T> {
        self.header(key)?.parse().ok()
    }

    fn chunk_count(&self) -> Option<u32> {
        self.header_num(HEADER_CHUNK_COUNT)
    }
}

/// Every record of one sequence number.
#[derive(Default)]
struct SeqRecords {
    commit: Option<Stored>,
    chunks: BTreeMap<u32, Stored>,
}

impl SeqRecords {
    fn keys(&self, seq: u64) -> Vec<String> {
        let commit = self.commit.as_ref().map(|_| commit_key(seq));
        self.chunks.keys().map(|&i| chunk_key(seq, i)).chain(commit).collect()
    }

    /// The checkpoint, if the commit marker and every chunk agree; otherwise why not.
    fn assemble(&self, seq: u64) -> Result<Checkpoint, String> {
        let commit = self.commit.as_ref().ok_or("no commit marker")?;
        let field = |key: &str| commit.header(key).ok_or(format!("commit marker lacks {key}"));
        let count: u32 = field(HEADER_CHUNK_COUNT)?.parse().map_err(|_| "bad chunk count")?;
        let len: usize = field(HEADER_TOTAL_LENGTH)?.parse().map_err(|_| "bad total length")?;
        let checksum = field(HEADER_CHECKSUM)?.to_owned();
        let taken_at_ms: i64 = field(HEADER_TAKEN_AT)?.parse().map_err(|_| "bad taken-at")?;
        if commit.header_num::<u64>(HEADER_SEQ) != Some(seq) {
            return Err("commit marker of another sequence number".into());
        }
        let mut snapshot = Vec::with_capacity(len);
        for index in 0..count {
            let chunk =
                self.chunks.get(&index).ok_or(format!("chunk {index} of {count} missing"))?;
            let agrees = chunk.header_num::<u64>(HEADER_SEQ) == Some(seq)
                && chunk.header_num::<u32>(HEADER_CHUNK_INDEX) == Some(index)
                && chunk.chunk_count() == Some(count)
                && chunk.header(HEADER_CHECKSUM) == Some(checksum.as_str());
            if !agrees {
                return Err(format!("chunk {index} belongs to another save"));
            }
            snapshot.extend_from_slice(&chunk.payload);
        }
        if snapshot.len() != len {
            return Err(format!("{} bytes instead of {len}", snapshot.len()));
        }
        if hex(xxh3_64(&snapshot)) != checksum {
            return Err("checksum mismatch".into());
        }
        Ok(Checkpoint { seq, taken_at_ms, snapshot })
    }
}

const CREATE_FAILED: &str =
    "cannot create the checkpoint topic; it must exist with cleanup.policy=compact";
/// How long topic creation may take at start-up.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Creates `topic` with one partition and `cleanup.policy=compact` unless it exists; logs what
/// the broker says (a broker or user without the right to create topics is not an error here:
/// the topic may be managed elsewhere).
fn create_compacted_topic(config: &ClientConfig, topic: &str) {
    let mut config = config.clone();
    // Looking the topic up must not auto-create it, uncompacted, on brokers that allow that.
    config.set("allow.auto.create.topics", "false");
    let admin: AdminClient<DefaultClientContext> = match config.create() {
        Ok(admin) => admin,
        Err(e) => {
            tracing::warn!(topic, error = %e, "no admin client to create the checkpoint topic");
            return;
        }
    };
    match admin.inner().fetch_metadata(Some(topic), ADMIN_TIMEOUT) {
        Ok(metadata)
            if metadata.topics().iter().any(|t| t.name() == topic && t.error().is_none()) =>
        {
            return;
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(topic, error = %e, "cannot look up the checkpoint topic"),
    }
    let new_topic =
        NewTopic::new(topic, 1, TopicReplication::Fixed(-1)).set("cleanup.policy", "compact");
    let options = AdminOptions::new()
        .request_timeout(Some(ADMIN_TIMEOUT))
        .operation_timeout(Some(ADMIN_TIMEOUT));
    match block_on(admin.create_topics([&new_topic], &options)) {
        Ok(results) => {
            for result in results {
                match result {
                    Ok(_) => tracing::info!(topic, "created the compacted checkpoint topic"),
                    Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                    Err((_, code)) => tracing::warn!(
                        topic,
                        %code,
                        CREATE_FAILED
                    ),
                }
            }
        }
        Err(e) => tracing::warn!(
            topic,
            error = %e,
            CREATE_FAILED
        ),
    }
}

/// Wakes the thread blocked in [`block_on`].
struct ThreadWaker(std::thread::Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs an admin future on this thread. rdkafka's admin futures are completed by the admin
/// client's own polling thread, so no async runtime is needed.
fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        std::thread::park();
    }
}

#[cfg(test)]
mod tests;
