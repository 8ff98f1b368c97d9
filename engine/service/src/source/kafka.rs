//! The Kafka source: one consumer per job version with manually managed offsets.
//!
//! Partitions are *assigned*, never subscribed: the engine decides every position itself (from
//! its checkpoint or from `startFrom`), so a group rebalance can never move a partition to
//! another process mid-replay. The consumer group (`kappa.<ns>.<job>.<version>`) is used only
//! to commit processed offsets after each checkpoint, so standard lag tools see progress.

use std::collections::BTreeMap;
use std::time::Duration;

use kappa_crds::{StartFrom, StartPosition};
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::BorrowedMessage;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::SourceError;

/// Broker round trips at start-up (metadata, watermarks, offsets for times).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The engine's default for librdkafka's `fetch.queue.backoff.ms` (its own default is 1000).
///
/// librdkafka stops fetching once its pre-fetch queue holds `queued.min.messages` (100k)
/// records and tries again only after `fetch.queue.backoff.ms`. A replay empties such a queue
/// in a fraction of that second and then waits for the rest of it. Measured against Apache
/// Kafka 4.1.1 on loopback (1M reference records in one partition, `kappa run --null-sink
/// --until-caught-up`, 1.0–1.4 CPU-seconds either way, three runs each): 6.6–7.3 s with the
/// default, 1.8–1.9 s with 10 ms, at about the same RSS (129–143 MiB). A job's
/// `consumerProperties` may set it otherwise.
pub const FETCH_QUEUE_BACKOFF_MS: &str = "10";

/// The source consumer's configuration: `config` (brokers, security, the job's
/// `consumerProperties`) with the engine's defaults where the job sets nothing, and the
/// settings the engine's correctness depends on forced.
fn consumer_config(config: &ClientConfig, group: &str) -> ClientConfig {
    let mut config = config.clone();
    if config.get("fetch.queue.backoff.ms").is_none() {
        config.set("fetch.queue.backoff.ms", FETCH_QUEUE_BACKOFF_MS);
    }
    config
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "error");
    config
}

/// Where each partition starts, and why.
pub type Positions = BTreeMap<u32, i64>;

/// Low and high watermark of one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watermarks {
    /// First retained offset.
    pub low: i64,
    /// Offset the next produced record will get.
    pub high: i64,
}

/// What one poll returned.
#[derive(Debug)]
pub enum Polled<'a> {
    /// A record.
    Record(BorrowedMessage<'a>),
    /// The consumer reached the current end of a partition.
    EndOfPartition(u32),
    /// Nothing within the timeout.
    Nothing,
}

/// Client callbacks: end-of-partition events are expected (they mark partitions idle), so they
/// are not logged as errors as librdkafka's default context does.
pub struct SourceContext;

impl ClientContext for SourceContext {
    fn error(&self, error: KafkaError, reason: &str) {
        match error {
            KafkaError::PartitionEOF(_) => tracing::trace!(reason, "end of partition"),
            e => tracing::warn!(error = %e, reason, "Kafka client error"),
        }
    }
}

impl ConsumerContext for SourceContext {}

/// The Kafka consumer of one job version.
pub struct KafkaSource {
    consumer: BaseConsumer<SourceContext>,
    topic: String,
    group: String,
}

impl std::fmt::Debug for KafkaSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSource")
            .field("topic", &self.topic)
            .field("group", &self.group)
            .finish()
    }
}

impl KafkaSource {
    /// A consumer for `topic` in consumer group `group`. `config` carries the bootstrap servers,
    /// security and user properties; the settings that the engine's correctness depends on are
    /// forced here (no auto commit, no offset store, partition EOF events, and an
    /// offset-out-of-range *error* instead of a silent reset: records deleted by retention under
    /// a running replay must stop it, not skip).
    pub fn new(config: &ClientConfig, topic: &str, group: &str) -> Result<Self, SourceError> {
        let consumer = consumer_config(config, group)
            .create_with_context(SourceContext)
            .map_err(|source| SourceError::Client { source })?;
        Ok(Self { consumer, topic: topic.to_owned(), group: group.to_owned() })
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The consumer group offsets are committed to.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// The topic's partitions, from broker metadata. A missing topic is an error naming it.
    pub fn partitions(&self) -> Result<Vec<u32>, SourceError> {
        let md = self
            .consumer
            .fetch_metadata(Some(&self.topic), REQUEST_TIMEOUT)
            .map_err(|source| self.broker_error("fetch metadata", source))?;
        let topic = md.topics().iter().find(|t| t.name() == self.topic);
        let Some(topic) = topic.filter(|t| t.error().is_none() && !t.partitions().is_empty())
        else {
            return Err(SourceError::UnknownTopic { topic: self.topic.clone() });
        };
        let mut ids: Vec<u32> = topic.partitions().iter().map(|p| p.id() as u32).collect();
        ids.sort_unstable();
        Ok(ids)
    }

    /// Watermarks of a partition, asked from the broker.
    pub fn fetch_watermarks(&self, partition: u32) -> Result<Watermarks, SourceError> {
        let (low, high) = self
            .consumer
            .fetch_watermarks(&self.topic, partition as i32, REQUEST_TIMEOUT)
            .map_err(|source| self.broker_error("fetch watermarks", source))?;
        Ok(Watermarks { low, high })
    }

    /// The start position of every partition for a first run, after checking that the topic
    /// still retains everything `start_from` asks for (design §4): a replay over a truncated
    /// log is refused, never silently incomplete.
    ///
    /// - `earliest` promises the whole log: a partition whose first retained offset is above 0
    ///   has lost records to retention, and the replay is refused. To replay what is retained,
    ///   the job names a time with `startFrom: {timestamp: ...}`.
    /// - `{timestamp: T}` starts each partition at its first record at or after `T`; it is
    ///   refused if retention may have removed records at or after `T`: the partition starts
    ///   above offset 0 and its oldest retained record is not older than `T`.
    /// - `latest` starts at the head; nothing to check.
    pub fn start_positions(
        &self,
        partitions: &[u32],
        start_from: &StartFrom,
    ) -> Result<Positions, SourceError> {
        let mut marks = BTreeMap::new();
        for &p in partitions {
            marks.insert(p, self.fetch_watermarks(p)?);
        }
        let found = match start_from {
            StartFrom::Timestamp { timestamp } => {
                let millis = kappa_engine::time::parse_rfc3339(timestamp.as_bytes())
                    .map_err(|_| SourceError::BadStart { value: timestamp.clone() })?;
                self.offsets_for_time(partitions, millis)?
            }
            _ => BTreeMap::new(),
        };
        plan_start(&self.topic, start_from, &marks, &found)
    }

    /// Checks that a checkpoint's positions are still retained: records between a checkpoint
    /// and the first retained offset are gone, so resuming would skip them.
    pub fn check_resume(&self, positions: &Positions) -> Result<(), SourceError> {
        for (&p, &next) in positions {
            let w = self.fetch_watermarks(p)?;
            if next < w.low {
                return Err(SourceError::Truncated {
                    topic: self.topic.clone(),
                    partition: p,
                    first_retained: w.low,
                    needed: next,
                    hint: "retention deleted records this version had not processed yet; \
                           the version must be replayed again (a new spec.version)"
                        .into(),
                });
            }
        }
        Ok(())
    }

    fn offsets_for_time(
        &self,
        partitions: &[u32],
        millis: i64,
    ) -> Result<BTreeMap<u32, Option<i64>>, SourceError> {
        let mut tpl = TopicPartitionList::new();
        for &p in partitions {
            tpl.add_partition_offset(&self.topic, p as i32, Offset::Offset(millis))
                .map_err(|source| self.broker_error("offsets for times", source))?;
        }
        let found = self
            .consumer
            .offsets_for_times(tpl, REQUEST_TIMEOUT)
            .map_err(|source| self.broker_error("offsets for times", source))?;
        Ok(found
            .elements()
            .iter()
            .map(|e| {
                let offset = match e.offset() {
                    Offset::Offset(o) => Some(o),
                    _ => None,
                };
                (e.partition() as u32, offset)
            })
            .collect())
    }

    /// Assigns exactly these partitions at these positions (replacing any assignment).
    pub fn assign(&self, positions: &Positions) -> Result<(), SourceError> {
        let mut tpl = TopicPartitionList::new();
        for (&p, &offset) in positions {
            tpl.add_partition_offset(&self.topic, p as i32, Offset::Offset(offset))
                .map_err(|source| self.broker_error("assign", source))?;
        }
        self.consumer.assign(&tpl).map_err(|source| self.broker_error("assign", source))
    }

    /// Waits up to `timeout` for the next record or event. Broker connection trouble is not an
    /// error here (librdkafka reconnects); an offset that retention deleted under the replay is.
    pub fn poll(&self, timeout: Duration) -> Result<Polled<'_>, SourceError> {
        match self.consumer.poll(timeout) {
            None => Ok(Polled::Nothing),
            Some(Ok(m)) => Ok(Polled::Record(m)),
            Some(Err(KafkaError::PartitionEOF(p))) => Ok(Polled::EndOfPartition(p as u32)),
            Some(Err(e)) if is_offset_out_of_range(&e) => Err(SourceError::Truncated {
                topic: self.topic.clone(),
                partition: u32::MAX,
                first_retained: -1,
                needed: -1,
                hint: format!("retention deleted records under the running replay ({e})"),
            }),
            Some(Err(e)) => {
                tracing::warn!(topic = %self.topic, error = %e, "Kafka consumer error (retrying)");
                Ok(Polled::Nothing)
            }
        }
    }

    /// Commits processed positions (the next offset to read) to the consumer group.
    pub fn commit(&self, positions: &Positions) -> Result<(), SourceError> {
        if positions.is_empty() {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::new();
        for (&p, &next) in positions {
            tpl.add_partition_offset(&self.topic, p as i32, Offset::Offset(next))
                .map_err(|source| self.broker_error("commit", source))?;
        }
        self.consumer
            .commit(&tpl, CommitMode::Sync)
            .map_err(|source| self.broker_error("commit offsets", source))
    }

    /// The group's committed offsets (what lag tools see).
    pub fn committed(&self, partitions: &[u32]) -> Result<Positions, SourceError> {
        let mut tpl = TopicPartitionList::new();
        for &p in partitions {
            tpl.add_partition(&self.topic, p as i32);
        }
        let got = self
            .consumer
            .committed_offsets(tpl, REQUEST_TIMEOUT)
            .map_err(|source| self.broker_error("committed offsets", source))?;
        Ok(got
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(o) => Some((e.partition() as u32, o)),
                _ => None,
            })
            .collect())
    }

    fn broker_error(&self, action: &'static str, source: KafkaError) -> SourceError {
        SourceError::Broker { action, topic: self.topic.clone(), source }
    }
}

fn is_offset_out_of_range(e: &KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode;
    matches!(
        e.rdkafka_error_code(),
        Some(RDKafkaErrorCode::OffsetOutOfRange | RDKafkaErrorCode::AutoOffsetReset)
    )
}

/// The start positions for `start_from`, decided from the partitions' watermarks and (for a
/// timestamp) each partition's first offset at or after it (`None`: no such record). Pure, so
/// every retention case is unit tested; see [`KafkaSource::start_positions`] for the rules.
pub fn plan_start(
    topic: &str,
    start_from: &StartFrom,
    marks: &BTreeMap<u32, Watermarks>,
    first_at_or_after: &BTreeMap<u32, Option<i64>>,
) -> Result<Positions, SourceError> {
    match start_from.or_earliest() {
        StartFrom::Position(StartPosition::Latest) => {
            Ok(marks.iter().map(|(&p, w)| (p, w.high)).collect())
        }
        StartFrom::Position(StartPosition::Earliest) | StartFrom::Unset => {
            for (&p, w) in marks {
                if w.low > 0 {
                    return Err(SourceError::Truncated {
                        topic: topic.to_owned(),
                        partition: p,
                        first_retained: w.low,
                        needed: 0,
                        hint: "startFrom: earliest needs the whole log. To replay only what is \
                               retained, set spec.source.kafka.startFrom to {timestamp: ...} \
                               later than the oldest retained record"
                            .into(),
                    });
                }
            }
            Ok(marks.iter().map(|(&p, w)| (p, w.low)).collect())
        }
        StartFrom::Timestamp { timestamp } => {
            let mut out = Positions::new();
            for (&p, w) in marks {
                // `None`: every retained record is older than T, start at the head.
                let start = first_at_or_after.get(&p).copied().flatten().unwrap_or(w.high);
                let oldest_is_older_than_t = start > w.low;
                if w.low > 0 && !oldest_is_older_than_t {
                    return Err(SourceError::Truncated {
                        topic: topic.to_owned(),
                        partition: p,
                        first_retained: w.low,
                        needed: w.low - 1,
                        hint: format!(
                            "the oldest retained record is not older than startFrom {timestamp}, \
                             so records at or after it may have been deleted by retention; \
                             choose a later startFrom.timestamp"
                        ),
                    });
                }
                out.insert(p, start);
            }
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marks(list: &[(u32, i64, i64)]) -> BTreeMap<u32, Watermarks> {
        list.iter().map(|&(p, low, high)| (p, Watermarks { low, high })).collect()
    }

    fn at(ts: &str) -> StartFrom {
        StartFrom::Timestamp { timestamp: ts.into() }
    }

    #[test]
    fn the_consumer_refetches_soon_unless_the_job_says_otherwise_and_never_commits_by_itself() {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", "localhost:9092").set("enable.auto.commit", "true");
        let c = consumer_config(&config, "kappa.ns.job.v1");
        assert_eq!(c.get("fetch.queue.backoff.ms"), Some(FETCH_QUEUE_BACKOFF_MS));
        assert_eq!(c.get("enable.auto.commit"), Some("false"), "forced whatever the job says");
        assert_eq!(c.get("group.id"), Some("kappa.ns.job.v1"));
        config.set("fetch.queue.backoff.ms", "250");
        assert_eq!(consumer_config(&config, "g").get("fetch.queue.backoff.ms"), Some("250"));
        // librdkafka knows the property: a consumer with it is created.
        let consumer: Result<BaseConsumer, _> = consumer_config(&config, "g").create();
        assert!(consumer.is_ok(), "{:?}", consumer.err());
    }

    #[test]
    fn earliest_needs_every_partition_from_offset_zero() {
        let complete = marks(&[(0, 0, 10), (1, 0, 0)]);
        let earliest = StartFrom::Position(StartPosition::Earliest);
        let none = BTreeMap::new();
        assert_eq!(plan_start("t", &earliest, &complete, &none).unwrap(), [(0, 0), (1, 0)].into());
        assert_eq!(plan_start("t", &StartFrom::Unset, &complete, &none).unwrap().len(), 2);
        let truncated = marks(&[(0, 0, 10), (1, 5, 9)]);
        let err = plan_start("t", &earliest, &truncated, &none).unwrap_err();
        assert!(matches!(err, SourceError::Truncated { partition: 1, first_retained: 5, .. }));
    }

    #[test]
    fn a_timestamp_start_is_refused_only_when_retention_may_have_removed_records_after_it() {
        let m = marks(&[(0, 0, 10), (1, 5, 9), (2, 5, 9), (3, 5, 5)]);
        // Partition 1: first record at/after T is 7 > low 5, so records before it are older.
        // Partition 2: no retained record at/after T: all older, start at the head.
        let found = [(0, Some(3)), (1, Some(7)), (2, None)].into();
        let mut m_ok = m.clone();
        m_ok.remove(&3);
        assert_eq!(
            plan_start("t", &at("2024-01-01T00:00:00Z"), &m_ok, &found).unwrap(),
            [(0, 3), (1, 7), (2, 9)].into()
        );
        // Partition 1 whose oldest retained record is at/after T: refused.
        let found_first = [(0, Some(3)), (1, Some(5)), (2, None)].into();
        let err = plan_start("t", &at("2024-01-01T00:00:00Z"), &m_ok, &found_first).unwrap_err();
        assert!(matches!(err, SourceError::Truncated { partition: 1, .. }), "{err}");
        // Partition 3 was emptied by retention: nothing proves the deleted records were older.
        let err = plan_start("t", &at("2024-01-01T00:00:00Z"), &m, &found).unwrap_err();
        assert!(matches!(err, SourceError::Truncated { partition: 3, .. }), "{err}");
    }

    #[test]
    fn latest_starts_at_the_head() {
        let m = marks(&[(0, 3, 10), (1, 0, 0)]);
        let latest = StartFrom::Position(StartPosition::Latest);
        assert_eq!(
            plan_start("t", &latest, &m, &BTreeMap::new()).unwrap(),
            [(0, 10), (1, 0)].into()
        );
    }
}
