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

    // The mock's fetch timing varies a lot from run to run, so raw consumer and engine runs
    // alternate, three rounds, and medians are compared.
    let es = OsmemServer::start();
    let (mut raws, mut sources, mut engines) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..3 {
        raws.push(raw_consume(&kafka.bootstrap(), records, round));
        sources.push(source_only(&kafka.bootstrap(), records, round));
        engines.push(engine(&kafka, &es, SinkChoice::Null, &format!("null{round}")));
    }
    let sink = engine(&kafka, &es, SinkChoice::Elasticsearch, "osmem");
    let (raw, source, null) = (median(raws), median(sources), median(engines));
    println!("raw consume (bare rdkafka consumer):     {raw:>9.0} records/s");
    println!("engine consumer settings, no processing: {source:>9.0} records/s");
    println!(
        "engine, null sink:                       {null:>9.0} records/s ({:.0}% of raw)",
        100.0 * null / raw
    );
    println!(
        "engine, osmem-server sink:               {sink:>9.0} records/s ({:.0}% of raw)",
        100.0 * sink / raw
    );
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// One engine run to the head of the log; returns records/s over the replay itself (start-up
/// and the wait for the final checkpoint excluded; they are printed).
fn engine(kafka: &MockKafka, es: &OsmemServer, sink: SinkChoice, version: &str) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let yaml = tx_stats_job(&kafka.bootstrap(), &es.url(), "bench", version);
    let job = kappa_crds::load_manifest(&yaml).unwrap();
    let mut config = EngineConfig::new(job);
    config.status_addr = "127.0.0.1:0".parse().unwrap();
    config.checkpoint = CheckpointLocation::Directory(dir.path().to_owned());
    config.sink = sink;
    config.until_caught_up = true;
    // Production intervals (checkpoint 10 s, flush 1 s) unless KAPPA_BENCH_CHECKPOINT_MS says
    // otherwise.
    if let Some(ms) = std::env::var("KAPPA_BENCH_CHECKPOINT_MS").ok().and_then(|v| v.parse().ok()) {
        config.checkpoint_interval = Duration::from_millis(ms);
    }
    kafka.create_topic(&format!("{}.dead-letters", config.consumer_group()), 1);
    let (started, cpu) = (Instant::now(), cpu_seconds());
    let summary = kappa_service::serve(config).expect("engine runs");
    let cpu = cpu_seconds() - cpu;
    let total = started.elapsed().as_secs_f64();
    let replay = summary.replay_time.map_or(total, |t| t.as_secs_f64());
    eprintln!(
        "  engine {version}: replay {replay:.2}s, whole run {total:.2}s (process CPU {cpu:.2}s), \
         {} documents, {} checkpoints",
        summary.documents_written, summary.checkpoints
    );
    summary.records_processed as f64 / replay
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
    eprintln!("  raw consumer: {n} records, {} MB, {rate:.0} records/s", bytes / 1_000_000);
    rate
}

/// Reads every record through the engine's `KafkaSource` (its consumer settings), without
/// processing: separates the consumer from the engine loop.
fn source_only(bootstrap: &str, records: u64, run: u32) -> f64 {
    use kappa_service::source::kafka::{KafkaSource, Polled};
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap);
    let source = KafkaSource::new(&config, TOPIC, &format!("bench-source-{run}")).unwrap();
    let positions = (0..PARTITIONS as u32).map(|p| (p, 0)).collect();
    source.assign(&positions).unwrap();
    let (started, cpu) = (Instant::now(), cpu_seconds());
    let mut n = 0u64;
    while n < records {
        if let Polled::Record(m) = source.poll(Duration::from_millis(100)).unwrap() {
            std::hint::black_box(m.payload());
            n += 1;
        }
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    eprintln!("  source only: {rate:.0} records/s (process CPU {:.2}s)", cpu_seconds() - cpu);
    rate
}

/// User + system CPU time of this process (all threads, the in-process mock broker included).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks: f64 =
        fields.get(11..13).map_or(0.0, |f| f.iter().filter_map(|v| v.parse::<f64>().ok()).sum());
    ticks / 100.0
}
