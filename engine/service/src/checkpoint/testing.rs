//! Test helpers shared by the Kafka checkpoint and dead-letter tests: librdkafka's in-process
//! mock cluster and a reader that returns a topic's records as written.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, DefaultProducerContext, Producer};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

/// A mock Kafka cluster living as long as this value.
pub(crate) struct MockKafka {
    cluster: MockCluster<'static, DefaultProducerContext>,
}

/// One record as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Consumed {
    pub key: Option<String>,
    pub payload: Option<Vec<u8>>,
    pub headers: BTreeMap<String, String>,
}

impl MockKafka {
    pub fn new() -> Self {
        Self { cluster: MockCluster::new(1).expect("start the mock Kafka cluster") }
    }

    /// A topic created the way tests must (the mock's admin API is not used).
    pub fn topic(&self, name: &str, partitions: i32) -> String {
        self.cluster.create_topic(name, partitions, 1).expect("create topic");
        name.to_owned()
    }

    /// The next produce requests fail with `error` (enough of them to outlast retries).
    pub fn fail_produce(&self, error: RDKafkaRespErr) {
        self.cluster.request_errors(RDKafkaApiKey::Produce, &[error; 100]);
    }

    pub fn config(&self) -> ClientConfig {
        super::kafka_client_config(&self.cluster.bootstrap_servers(), &BTreeMap::new())
    }

    /// Produces one raw record to partition 0 and waits for it.
    pub fn produce(&self, topic: &str, key: &str, payload: &[u8], headers: &[(&str, &str)]) {
        let producer: BaseProducer = self.config().set("acks", "all").create().unwrap();
        let headers = headers.iter().fold(OwnedHeaders::new(), |h, (key, value)| {
            h.insert(Header { key, value: Some(*value) })
        });
        producer
            .send(BaseRecord::to(topic).partition(0).key(key).payload(payload).headers(headers))
            .map_err(|(e, _)| e)
            .unwrap();
        producer.flush(Duration::from_secs(10)).unwrap();
    }

    /// Every record of partition 0, in offset order.
    pub fn read(&self, topic: &str) -> Vec<Consumed> {
        let consumer: BaseConsumer = self
            .config()
            .set("group.id", "test-reader")
            .set("enable.partition.eof", "true")
            .create()
            .unwrap();
        let (low, high) = consumer.fetch_watermarks(topic, 0, Duration::from_secs(10)).unwrap();
        let mut out = Vec::new();
        if high <= low {
            return out;
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, 0, Offset::Offset(low)).unwrap();
        consumer.assign(&tpl).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            match consumer.poll(Duration::from_millis(200)) {
                None => {}
                Some(Err(KafkaError::PartitionEOF(_))) => break,
                Some(Err(e)) => panic!("reading {topic}: {e}"),
                Some(Ok(m)) => {
                    let headers = m
                        .headers()
                        .map(|h| {
                            h.iter()
                                .map(|h| {
                                    let v = String::from_utf8_lossy(h.value.unwrap_or_default());
                                    (h.key.to_owned(), v.into_owned())
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    out.push(Consumed {
                        key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                        payload: m.payload().map(<[u8]>::to_vec),
                        headers,
                    });
                    if m.offset() + 1 >= high {
                        break;
                    }
                }
            }
        }
        out
    }
}
