//! A version's progress as Kafka sees it: the committed offsets of its consumer group, the
//! partitions' watermarks, and the timestamps of the records that bound the lag in time. Also
//! the retention check the engine applies before a replay, run by the operator before it
//! starts a version, so a version the engine would refuse is never started.
//!
//! The observer never joins the observed group and never commits: it reads the group's offsets
//! with an offset fetch, and reads records with a consumer of its own group
//! ([`OBSERVER_GROUP`]) whose partitions are assigned and whose offsets are never stored.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use kappa_crds::StartFrom;
use kappa_service::source::kafka::{KafkaSource, SourceContext};
use kappa_service::source::{client_config, SourceError};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::ObserveError;

/// Consumer group of the observer's own record reads. librdkafka assigns partitions only to a
/// consumer with a group; using a group of its own (which never commits, so the broker never
/// stores anything for it) guarantees the observer cannot move a version's offsets.
pub const OBSERVER_GROUP: &str = "kappa.operator.observer";

/// The newest record is looked for among the last few offsets rather than at `high - 1` alone:
/// on a transactional topic the last offsets are commit markers, which are never delivered.
const HEAD_LOOKBACK: i64 = 8;

/// Most events discarded after a read (see `read_records`).
const MAX_DRAINED: usize = 10_000;

/// Longest single poll while reading records, so the deadline is checked regularly.
const POLL_SLICE: Duration = Duration::from_millis(100);

/// One partition of a version's consumer group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionProgress {
    /// Partition id.
    pub partition: u32,
    /// First retained offset.
    pub low: i64,
    /// Offset the next produced record will get.
    pub high: i64,
    /// The group's committed offset (the next offset to process), `None` before the version's
    /// first checkpoint.
    pub committed: Option<i64>,
    /// Kafka timestamp of the newest record (the one at `high - 1`, or the last data record
    /// before it). `None` when the partition is empty, has no lag (it is only read for lagging
    /// partitions), or the read did not finish within the timeout.
    pub head_timestamp_ms: Option<i64>,
    /// Kafka timestamp of the last processed record (at `committed - 1`). `None` when nothing
    /// is committed or the committed offset is at or below `low` (that record is not retained),
    /// and for partitions without lag.
    pub committed_timestamp_ms: Option<i64>,
    /// Kafka timestamp of the record at `low`: the group's next record when it has consumed
    /// nothing that is still retained (committed is `None` or at most `low`). Only read then.
    pub low_timestamp_ms: Option<i64>,
}

impl PartitionProgress {
    /// A partition at these watermarks with nothing committed and no timestamps read.
    pub fn new(partition: u32, low: i64, high: i64) -> Self {
        Self {
            partition,
            low,
            high,
            committed: None,
            head_timestamp_ms: None,
            committed_timestamp_ms: None,
            low_timestamp_ms: None,
        }
    }

    /// The next offset the group will process, within the retained range `low..=high`. Nothing
    /// committed counts as `low`: the whole retained partition is still to do. A committed offset
    /// below `low` also counts as `low` (the records between are gone, they are not lag), and
    /// one above `high` (a recreated topic) as `high`.
    pub fn position(&self) -> i64 {
        self.committed.unwrap_or(self.low).max(self.low).min(self.high.max(self.low))
    }

    /// Records between the group's position and the head.
    pub fn lag(&self) -> i64 {
        self.high.max(self.low) - self.position()
    }

    /// How far the group is behind the head in Kafka time: the newest record's timestamp minus
    /// the last processed record's (or, when nothing retained is processed yet, the first
    /// retained record's). 0 without lag; `i64::MAX` when a timestamp needed is unknown, so an
    /// unread partition never looks caught up. Never negative (producer timestamps can go
    /// backwards).
    pub fn delay_ms(&self) -> i64 {
        if self.lag() == 0 {
            return 0;
        }
        let behind = if self.position() > self.low {
            self.committed_timestamp_ms
        } else {
            self.low_timestamp_ms
        };
        match (self.head_timestamp_ms, behind) {
            (Some(head), Some(behind)) => head.saturating_sub(behind).max(0),
            _ => i64::MAX,
        }
    }
}

/// The progress of one consumer group over one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupProgress {
    /// The topic.
    pub topic: String,
    /// The consumer group.
    pub group: String,
    /// Every partition of the topic, by id.
    pub partitions: Vec<PartitionProgress>,
}

impl GroupProgress {
    /// Records still to process: the sum of `high - committed` over partitions, where nothing
    /// committed counts as `low` (see [`PartitionProgress::position`]).
    pub fn total_lag(&self) -> i64 {
        self.partitions.iter().map(PartitionProgress::lag).sum()
    }

    /// Sum of the group's positions (committed, or `low`): the numerator of replay progress.
    pub fn consumed_offsets(&self) -> i64 {
        self.partitions.iter().map(PartitionProgress::position).sum()
    }

    /// Sum of the high watermarks: the denominator of replay progress.
    pub fn head_offsets(&self) -> i64 {
        self.partitions.iter().map(|p| p.high).sum()
    }

    /// The largest [`PartitionProgress::delay_ms`] over lagging partitions; 0 without lag and
    /// `i64::MAX` when a lagging partition's timestamps are unknown.
    pub fn delay_ms(&self) -> i64 {
        self.partitions.iter().map(PartitionProgress::delay_ms).max().unwrap_or(0)
    }
}

/// One record read: from `start`, the first record (`until: None`) or the newest one up to
/// offset `until` or the end of the partition.
#[derive(Debug, Clone, Copy)]
struct Read {
    partition: u32,
    start: i64,
    until: Option<i64>,
}

/// Blocking observer for one job's topic (call it from `tokio::task::spawn_blocking`).
///
/// Every broker round trip and record read of [`Self::group_progress`] shares one deadline,
/// the observer's timeout. Calls from several threads are serialized: they share one record
/// reader. The committed offsets of each group are read through a client kept per group (a
/// client per observation started and stopped broker threads on every reconcile).
pub struct KafkaObserver {
    topic: String,
    config: ClientConfig,
    timeout: Duration,
    reader: Mutex<BaseConsumer<SourceContext>>,
    /// Per consumer group, the client that reads its committed offsets (it never joins).
    offset_readers: Mutex<HashMap<String, BaseConsumer<SourceContext>>>,
}

/// Offset readers kept at most; past that the cache starts afresh (versions come and go, and a
/// reader costs a connection per broker).
const MAX_OFFSET_READERS: usize = 32;

impl std::fmt::Debug for KafkaObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaObserver")
            .field("topic", &self.topic)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl KafkaObserver {
    /// An observer of `kafka.topic` with the same client settings (brokers, TLS, SASL, consumer
    /// properties) the engine uses; each observation takes at most `timeout`.
    pub fn new(kafka: &kappa_crds::KafkaSource, timeout: Duration) -> Result<Self, ObserveError> {
        let topic = kafka.topic.clone();
        let config = client_config(kafka)
            .map_err(|e| ObserveError::Config { topic: topic.clone(), source: Box::new(e) })?;
        let mut reader_config = config.clone();
        reader_config
            .set("group.id", OBSERVER_GROUP)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "true")
            // A record gone under the read is an unknown timestamp, never a silent jump.
            .set("auto.offset.reset", "error")
            // One record per partition is wanted: do not prefetch megabytes of a long lag.
            .set("fetch.message.max.bytes", "65536")
            .set("queued.max.messages.kbytes", "1024")
            // The records read are known to exist. A fetch left waiting at a partition's end
            // (the broker holds it this long) or a full prefetch queue (the fetcher then backs
            // off this long) would otherwise delay the next observation's reads by a second.
            .set("fetch.wait.max.ms", "10")
            .set("fetch.queue.backoff.ms", "10");
        let reader = reader_config.create_with_context(SourceContext).map_err(|source| {
            ObserveError::Config {
                topic: topic.clone(),
                source: Box::new(SourceError::Client { source }),
            }
        })?;
        Ok(Self {
            topic,
            config,
            timeout,
            reader: Mutex::new(reader),
            offset_readers: Mutex::new(HashMap::new()),
        })
    }

    /// The topic observed.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The committed offsets of `group`, read without joining it (no subscription, never a
    /// commit), the watermarks of every partition, and for each lagging partition the
    /// timestamps of the newest record and of the last processed one.
    ///
    /// Metadata, watermarks and offsets are required: failing to read them (or running out of
    /// time) is an error. Timestamps are best effort: one that cannot be read within the timeout
    /// stays `None`, which [`GroupProgress::delay_ms`] reports as an unknown (maximal) delay.
    pub fn group_progress(&self, group: &str) -> Result<GroupProgress, ObserveError> {
        let deadline = Instant::now() + self.timeout;
        let reader = self.reader.lock().unwrap_or_else(PoisonError::into_inner);
        let ids = self.partitions(&reader, deadline)?;
        let mut partitions = Vec::with_capacity(ids.len());
        for &p in &ids {
            let (low, high) = reader
                .fetch_watermarks(&self.topic, p as i32, remaining(deadline))
                .map_err(|source| self.kafka_error("fetch watermarks", source))?;
            partitions.push(PartitionProgress::new(p, low, high));
        }
        let committed = self.committed(group, &ids, deadline)?;
        for row in &mut partitions {
            row.committed = committed.get(&row.partition).copied();
        }
        self.read_timestamps(&reader, &mut partitions, deadline);
        Ok(GroupProgress { topic: self.topic.clone(), group: group.to_owned(), partitions })
    }

    /// Refuses `start_from` exactly when the engine would refuse it before a replay: the
    /// engine's own [`KafkaSource::start_positions`] runs against the topic as it is now.
    /// A refusal is [`ObserveError::Refused`], whose message names the topic, the partition, the
    /// first retained offset and what to change. Broker round trips are bounded by the engine's
    /// request timeout, not the observer's.
    pub fn retention_check(&self, start_from: &StartFrom) -> Result<(), ObserveError> {
        let source_error = |e| ObserveError::from_source(&self.topic, e);
        let source =
            KafkaSource::new(&self.config, &self.topic, OBSERVER_GROUP).map_err(source_error)?;
        let partitions = source.partitions().map_err(source_error)?;
        source.start_positions(&partitions, start_from).map_err(source_error)?;
        Ok(())
    }

    fn partitions(
        &self,
        reader: &BaseConsumer<SourceContext>,
        deadline: Instant,
    ) -> Result<Vec<u32>, ObserveError> {
        let md = reader
            .fetch_metadata(Some(&self.topic), remaining(deadline))
            .map_err(|source| self.kafka_error("fetch metadata", source))?;
        let topic = md.topics().iter().find(|t| t.name() == self.topic);
        let Some(topic) = topic.filter(|t| t.error().is_none() && !t.partitions().is_empty())
        else {
            return Err(ObserveError::UnknownTopic { topic: self.topic.clone() });
        };
        let mut ids: Vec<u32> = topic.partitions().iter().map(|p| p.id() as u32).collect();
        ids.sort_unstable();
        Ok(ids)
    }

    /// Offsets are fetched by a short-lived consumer carrying the group's id: an offset fetch
    /// needs the group name, and a consumer that neither subscribes nor commits never becomes a
    /// member, so the engine's assignment and offsets are untouched.
    fn committed(
        &self,
        group: &str,
        partitions: &[u32],
        deadline: Instant,
    ) -> Result<BTreeMap<u32, i64>, ObserveError> {
        let committed_error = |source: KafkaError| ObserveError::CommittedOffsets {
            topic: self.topic.clone(),
            group: group.to_owned(),
            source: Box::new(source),
        };
        let mut readers = self.offset_readers.lock().unwrap_or_else(PoisonError::into_inner);
        if !readers.contains_key(group) {
            if readers.len() >= MAX_OFFSET_READERS {
                readers.clear();
            }
            let reader: BaseConsumer<SourceContext> = self
                .config
                .clone()
                .set("group.id", group)
                .set("enable.auto.commit", "false")
                .set("enable.auto.offset.store", "false")
                .create_with_context(SourceContext)
                .map_err(committed_error)?;
            readers.insert(group.to_owned(), reader);
        }
        let consumer = &readers[group];
        let mut tpl = TopicPartitionList::new();
        for &p in partitions {
            tpl.add_partition(&self.topic, p as i32);
        }
        let got = consumer.committed_offsets(tpl, remaining(deadline)).map_err(committed_error)?;
        Ok(got
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(o) => Some((e.partition() as u32, o)),
                _ => None,
            })
            .collect())
    }

    /// Fills the timestamps of lagging partitions in two rounds over all of them at once (the
    /// record behind the group's position, then the newest record), so the time taken does not
    /// grow with the partition count.
    fn read_timestamps(
        &self,
        reader: &BaseConsumer<SourceContext>,
        partitions: &mut [PartitionProgress],
        deadline: Instant,
    ) {
        let lagging = || partitions.iter().filter(|p| p.lag() > 0);
        let behind: Vec<Read> = lagging()
            .map(|p| Read {
                partition: p.partition,
                start: if p.position() > p.low { p.position() - 1 } else { p.low },
                until: None,
            })
            .collect();
        let newest: Vec<Read> = lagging()
            .map(|p| Read {
                partition: p.partition,
                start: (p.high - HEAD_LOOKBACK).max(p.low),
                until: Some(p.high - 1),
            })
            .collect();
        let behind = self.read_records(reader, &behind, deadline);
        let newest = self.read_records(reader, &newest, deadline);
        for p in partitions.iter_mut().filter(|p| p.lag() > 0) {
            let ts = behind.get(&p.partition).copied();
            if p.position() > p.low {
                p.committed_timestamp_ms = ts;
            } else {
                p.low_timestamp_ms = ts;
            }
            p.head_timestamp_ms = newest.get(&p.partition).copied();
        }
    }

    /// Performs `reads` with the record reader; returns the timestamp found per partition.
    fn read_records(
        &self,
        reader: &BaseConsumer<SourceContext>,
        reads: &[Read],
        deadline: Instant,
    ) -> BTreeMap<u32, i64> {
        let mut found: BTreeMap<u32, (i64, i64)> = BTreeMap::new();
        if reads.is_empty() {
            return BTreeMap::new();
        }
        let mut tpl = TopicPartitionList::new();
        for r in reads {
            if let Err(e) =
                tpl.add_partition_offset(&self.topic, r.partition as i32, Offset::Offset(r.start))
            {
                tracing::debug!(topic = %self.topic, error = %e, "cannot read a timestamp");
                return BTreeMap::new();
            }
        }
        if let Err(e) = reader.assign(&tpl) {
            tracing::debug!(topic = %self.topic, error = %e, "cannot assign the timestamp reader");
            return BTreeMap::new();
        }
        let mut pending: BTreeMap<u32, Read> = reads.iter().map(|r| (r.partition, *r)).collect();
        while !pending.is_empty() {
            let left = remaining(deadline);
            if left.is_zero() {
                tracing::debug!(topic = %self.topic, partitions = ?pending.keys(), "timestamp reads timed out");
                break;
            }
            match reader.poll(left.min(POLL_SLICE)) {
                Some(Ok(m)) => {
                    let p = m.partition() as u32;
                    let Some(read) = pending.get(&p).copied() else { continue };
                    if m.offset() < read.start {
                        continue;
                    }
                    let done = read.until.is_none_or(|last| m.offset() >= last);
                    if let Some(ts) = m.timestamp().to_millis() {
                        // Records of a partition arrive in offset order; keep the newest.
                        if found.get(&p).is_none_or(|&(offset, _)| m.offset() > offset) {
                            found.insert(p, (m.offset(), ts));
                        }
                    }
                    if done {
                        pending.remove(&p);
                    }
                }
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    pending.remove(&(p as u32));
                }
                Some(Err(e)) => {
                    tracing::debug!(topic = %self.topic, error = %e, "timestamp read failed");
                }
                None => {}
            }
        }
        if let Err(e) = reader.unassign() {
            tracing::debug!(topic = %self.topic, error = %e, "cannot unassign the timestamp reader");
        }
        // Drop whatever the fetcher queued before the unassign, so no stale record or
        // end-of-partition event is taken for an answer of the next read. Bounded: a client
        // that keeps reporting errors must not hold the observer here.
        for _ in 0..MAX_DRAINED {
            if reader.poll(Duration::ZERO).is_none() {
                break;
            }
        }
        found.into_iter().map(|(p, (_, ts))| (p, ts)).collect()
    }

    fn kafka_error(&self, action: &'static str, source: KafkaError) -> ObserveError {
        ObserveError::Kafka { topic: self.topic.clone(), action, source }
    }
}

/// Time left before `deadline` (zero once past it: librdkafka then times out at once).
fn remaining(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partition(low: i64, high: i64, committed: Option<i64>) -> PartitionProgress {
        PartitionProgress { committed, ..PartitionProgress::new(0, low, high) }
    }

    fn group(partitions: Vec<PartitionProgress>) -> GroupProgress {
        let partitions = partitions
            .into_iter()
            .enumerate()
            .map(|(i, p)| PartitionProgress { partition: i as u32, ..p })
            .collect();
        GroupProgress { topic: "t".into(), group: "g".into(), partitions }
    }

    #[test]
    fn lag_counts_from_the_committed_offset_or_the_first_retained_one() {
        let g = group(vec![
            partition(0, 100, Some(40)),
            // Nothing committed: every retained record is lag.
            partition(10, 50, None),
            // Caught up.
            partition(0, 7, Some(7)),
            // Empty partition.
            partition(0, 0, None),
        ]);
        assert_eq!(g.total_lag(), 60 + 40);
        assert_eq!(g.consumed_offsets(), 40 + 10 + 7);
        assert_eq!(g.head_offsets(), 100 + 50 + 7);
    }

    #[test]
    fn committed_offsets_outside_the_retained_range_are_clamped() {
        // Retention deleted records past the committed offset: they are gone, not lag.
        let below = partition(30, 100, Some(10));
        assert_eq!((below.position(), below.lag()), (30, 70));
        // A recreated topic behind a committed offset: no negative lag.
        let above = partition(0, 5, Some(9));
        assert_eq!((above.position(), above.lag()), (5, 0));
    }

    #[test]
    fn delay_is_the_worst_lagging_partition_and_zero_without_lag() {
        let mut a = partition(0, 100, Some(40));
        a.head_timestamp_ms = Some(10_000);
        a.committed_timestamp_ms = Some(7_000);
        let mut b = partition(0, 10, Some(5));
        b.head_timestamp_ms = Some(10_000);
        b.committed_timestamp_ms = Some(9_500);
        // A caught-up partition's (unread) timestamps do not matter.
        let caught_up = partition(0, 10, Some(10));
        assert_eq!(group(vec![a.clone(), b, caught_up.clone()]).delay_ms(), 3_000);
        assert_eq!(group(vec![caught_up.clone()]).delay_ms(), 0);
        assert_eq!(group(vec![]).delay_ms(), 0);
        // Producer timestamps going backwards never give a negative delay.
        a.committed_timestamp_ms = Some(12_000);
        assert_eq!(group(vec![a, caught_up]).delay_ms(), 0);
    }

    #[test]
    fn with_nothing_retained_consumed_the_delay_is_measured_from_the_first_retained_record() {
        let mut fresh = partition(0, 100, None);
        fresh.head_timestamp_ms = Some(50_000);
        fresh.low_timestamp_ms = Some(20_000);
        assert_eq!(fresh.delay_ms(), 30_000);
        // Committed at low is the same situation: the record before it is not retained.
        let at_low = PartitionProgress { committed: Some(0), ..fresh.clone() };
        assert_eq!(at_low.delay_ms(), 30_000);
        // The committed-record timestamp is not what is used then.
        let stale = PartitionProgress { committed_timestamp_ms: Some(0), ..at_low };
        assert_eq!(stale.delay_ms(), 30_000);
    }

    #[test]
    fn an_unknown_timestamp_of_a_lagging_partition_is_the_largest_delay() {
        let mut p = partition(0, 100, Some(40));
        p.committed_timestamp_ms = Some(1_000);
        assert_eq!(p.delay_ms(), i64::MAX, "head unknown");
        p.head_timestamp_ms = Some(2_000);
        p.committed_timestamp_ms = None;
        assert_eq!(p.delay_ms(), i64::MAX, "last processed record unknown");
        let fresh = PartitionProgress { head_timestamp_ms: Some(2_000), ..partition(0, 9, None) };
        assert_eq!(fresh.delay_ms(), i64::MAX, "first record unknown");
        let mut g = group(vec![fresh, partition(0, 3, Some(3))]);
        assert_eq!(g.delay_ms(), i64::MAX);
        g.partitions[0].low_timestamp_ms = Some(i64::MIN);
        assert_eq!(g.delay_ms(), i64::MAX, "saturates instead of overflowing");
    }
}
