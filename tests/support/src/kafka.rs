//! A Kafka-protocol broker for tests: librdkafka's in-process `MockCluster`, served over real
//! sockets on loopback, plus a producer of the generated reference workload.

use std::time::Duration;

use kappa_engine::gen::{GenConfig, LogGenerator};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::ClientConfig;

/// A running mock cluster; it lives as long as this value.
pub struct MockKafka {
    cluster: MockCluster<'static, DefaultProducerContext>,
}

impl Default for MockKafka {
    fn default() -> Self {
        Self::new()
    }
}

impl MockKafka {
    /// A cluster of 3 brokers.
    pub fn new() -> Self {
        Self { cluster: MockCluster::new(3).expect("start the mock Kafka cluster") }
    }

    /// `host:port,...` for clients.
    pub fn bootstrap(&self) -> String {
        self.cluster.bootstrap_servers()
    }

    /// Creates a topic (the admin API is not served by the mock).
    pub fn create_topic(&self, topic: &str, partitions: i32) {
        self.cluster.create_topic(topic, partitions, 1).expect("create topic");
    }

    /// The underlying cluster (fault injection).
    pub fn cluster(&self) -> &MockCluster<'static, DefaultProducerContext> {
        &self.cluster
    }

    /// A producer with acks=all and idempotence, so records land in order and exactly once.
    pub fn producer(&self) -> ThreadedProducer<DefaultProducerContext> {
        ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap())
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("linger.ms", "5")
            .set("queue.buffering.max.messages", "1000000")
            .set("queue.buffering.max.kbytes", "1048576")
            .create()
            .expect("create producer")
    }

    /// Produces the generated workload into `topic` (one generator partition per topic
    /// partition, record timestamp = the line's log time) and returns each partition's lines in
    /// offset order: the retained log the reference is computed from.
    pub fn produce_workload(
        &self,
        topic: &str,
        cfg: &GenConfig,
        partitions: usize,
    ) -> Vec<Vec<String>> {
        self.produce_workload_timed(topic, cfg, partitions, 0).0
    }

    /// [`Self::produce_workload`] with record timestamps `shift_ms` after the lines' log time,
    /// also returning each record's timestamp.
    pub fn produce_workload_timed(
        &self,
        topic: &str,
        cfg: &GenConfig,
        partitions: usize,
        shift_ms: i64,
    ) -> (Vec<Vec<String>>, Vec<Vec<i64>>) {
        let mut times: Vec<Vec<i64>> = vec![Vec::new(); partitions];
        let producer = self.producer();
        let mut lines: Vec<Vec<String>> = vec![Vec::new(); partitions];
        let mut generator = LogGenerator::new(cfg, partitions).expect("valid generator config");
        while let Some(line) = generator.next_line() {
            let bytes = line.bytes.strip_suffix(b"\n").unwrap_or(line.bytes);
            let text = String::from_utf8_lossy(bytes).into_owned();
            let mut record = BaseRecord::<(), [u8]>::to(topic)
                .partition(line.partition as i32)
                .timestamp(line.log_millis + shift_ms)
                .payload(text.as_bytes());
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((_, r)) => {
                        record = r;
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
            }
            times[line.partition].push(line.log_millis + shift_ms);
            lines[line.partition].push(text);
        }
        producer.flush(Duration::from_secs(120)).expect("all records acknowledged");
        (lines, times)
    }
}
