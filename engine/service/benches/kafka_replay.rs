//! Replay throughput from a Kafka-protocol broker through the engine (issue: engine service).
//!
//! In one run, on the same MockCluster topic (24 partitions, the generated reference workload):
//! 1. the raw consume rate: a bare rdkafka consumer reading every record;
//! 2. the engine with a null sink (`kappa run --null-sink --until-caught-up` in-process);
//! 3. the engine into osmem-server (the Elasticsearch API).
//!
//! The engine must reach at least 80% of the raw consume rate. Prints records/s; asserts
//! nothing. Usage: `cargo bench -p kappa-service --bench kafka_replay [-- RECORDS]`.

use std::time::{Duration, Instant};

use kappa_engine::gen::GenConfig;
use kappa_service::{CheckpointLocation, EngineConfig, SinkChoice};
use kappa_testkit::job::tx_stats_job;
use kappa_testkit::kafka::MockKafka;
use kappa_testkit::osmem::OsmemServer;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

const TOPIC: &str = "tx-logs";
/// The mock keeps at most 5 MiB per partition, so a workload big enough to time needs many.
const PARTITIONS: usize = 24;

fn main() {
    let records: u64 = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(500_000);
    let kafka = MockKafka::new();
    kafka.create_topic(TOPIC, PARTITIONS as i32);
    let started = Instant::now();
    kafka.produce_workload(TOPIC, &GenConfig { records, ..GenConfig::default() }, PARTITIONS);
    eprintln!("produced {records} records in {:.1}s", started.elapsed().as_secs_f64());

    // Best of 3 for the raw rate (the mock's fetch timing varies from run to run): the engine
    // is compared with the best the broker can do.
    let raw = (0..3).map(|i| raw_consume(&kafka.bootstrap(), records, i)).fold(0.0, f64::max);
    println!("raw consume (best of 3): {:>10.0} records/s", raw);

    let es = OsmemServer::start();
    for (label, sink, version) in [
        ("engine, null sink:   ", SinkChoice::Null, "bench1"),
        ("engine, osmem sink:  ", SinkChoice::Elasticsearch, "bench2"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let yaml = tx_stats_job(&kafka.bootstrap(), &es.url(), "bench", version);
        let job = kappa_crds::load_manifest(&yaml).unwrap();
        let mut config = EngineConfig::new(job);
        config.status_addr = "127.0.0.1:0".parse().unwrap();
        config.checkpoint = CheckpointLocation::Directory(dir.path().to_owned());
        config.sink = sink;
        config.until_caught_up = true;
        // The run ends at the first checkpoint with no lag: keep that wait short.
        config.checkpoint_interval = Duration::from_millis(500);
        let group = config.consumer_group();
        kafka.create_topic(&format!("{group}.dead-letters"), 1);
        let started = Instant::now();
        let summary = kappa_service::serve(config).expect("engine runs");
        let secs = started.elapsed().as_secs_f64();
        let rate = summary.records_processed as f64 / secs;
        let replay = summary.replay_time.map_or(secs, |t| t.as_secs_f64());
        let replay_rate = summary.records_processed as f64 / replay;
        println!(
            "{label}{replay_rate:>10.0} records/s during the replay ({:.0}% of raw), \
             {rate:.0} records/s including start-up and the last checkpoint; {} documents \
             written, {} checkpoints",
            100.0 * replay_rate / raw,
            summary.documents_written,
            summary.checkpoints
        );
    }
}

/// Reads every record with a bare consumer, touching each payload.
fn raw_consume(bootstrap: &str, records: u64, run: u32) -> f64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("bench-raw-{run}"))
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(TOPIC, p as i32, Offset::Beginning).unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let started = Instant::now();
    let (mut n, mut bytes) = (0u64, 0u64);
    while n < records {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            bytes += m.payload().map_or(0, |p| p.len() as u64);
            n += 1;
        }
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    eprintln!("raw consumer read {n} records, {} MB", bytes / 1_000_000);
    rate
}
