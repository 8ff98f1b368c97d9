//! The switch from replay to live, measured (issue: the alias moves only to a complete index).
//!
//! The many-small-windows workload (130k records from 64 servers over 3.5 days, ~104k windows
//! open at the head) is replayed from a MockCluster topic into a real OpenSearch node
//! (tests/peers/opensearch.sh). Prints:
//! - the replay to the head (records/s) and the backlog of documents left at the switch;
//! - how long writing that backlog took (documents/s: the node's bulk rate is the limit);
//! - the checkpoints taken while the backlog was written (their duration and size), which no
//!   longer wait for the sink.
//!
//! Asserts nothing. Usage: `cargo bench -p kappa-service --bench live_backlog [-- SEED]`.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kappa_service::status::{Phase, StatusBoard};
use kappa_service::{CheckpointLocation, EngineConfig, SinkChoice};
use kappa_testkit::job::{many_small_windows, tx_stats_job};
use kappa_testkit::kafka::MockKafka;
use kappa_testkit::opensearch::OpenSearchNode;

const TOPIC: &str = "tx-logs";
const PARTITIONS: usize = 8;

fn main() {
    let seed: u64 = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(5);
    let node = OpenSearchNode::start();
    let kafka = MockKafka::new();
    kafka.create_topic(TOPIC, PARTITIONS as i32);
    let workload = many_small_windows(seed);
    kafka.produce_workload(TOPIC, &workload, PARTITIONS);
    let dir = tempfile::tempdir().unwrap();
    let yaml = tx_stats_job(&kafka.bootstrap(), &node.url(), "backlog", "v1");
    let job = kappa_crds::load_manifest(&yaml).unwrap();
    let mut config = EngineConfig::new(job);
    config.status_addr = "127.0.0.1:0".parse().unwrap();
    config.checkpoint = CheckpointLocation::Directory(dir.path().to_owned());
    config.checkpoint_interval = Duration::from_secs(2);
    config.sink = SinkChoice::Elasticsearch;
    config.until_caught_up = true;
    kafka.create_topic(&format!("{}.dead-letters", config.consumer_group()), 1);

    let board = Arc::new(StatusBoard::default());
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let engine = {
        let (board, handle) = (Arc::clone(&board), runtime.handle().clone());
        std::thread::spawn(move || {
            kappa_service::runner::run(config, board, handle, Arc::new(AtomicBool::new(false)))
        })
    };
    let started = Instant::now();
    let mut live: Option<(Instant, u64)> = None;
    let mut checkpoints: Vec<(u64, u64, u64, u64)> = Vec::new();
    while !engine.is_finished() {
        let s = board.status();
        if live.is_none() && s.phase == Phase::Live {
            live = Some((Instant::now(), s.backlog.documents));
        }
        if let (Some(_), Some(cp)) = (live, &s.last_checkpoint) {
            if checkpoints.last().is_none_or(|(seq, ..)| *seq != cp.seq) {
                checkpoints.push((cp.seq, cp.duration_ms, cp.bytes, s.backlog.documents));
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let summary = engine.join().unwrap().expect("the engine runs to the head of its index");
    let done = Instant::now();
    let (live_at, backlog) = live.expect("the engine went live");
    let to_head = live_at - started;
    let writing = done - live_at;
    println!(
        "replay to the head: {:.1}s ({:.0} records/s), backlog at the switch: {backlog} documents",
        to_head.as_secs_f64(),
        summary.records_processed as f64 / to_head.as_secs_f64()
    );
    println!(
        "backlog written in {:.1}s: {:.0} documents/s into OpenSearch ({} documents in all)",
        writing.as_secs_f64(),
        backlog as f64 / writing.as_secs_f64(),
        summary.documents_written
    );
    for (seq, ms, bytes, left) in checkpoints.iter().filter(|c| c.3 > 0) {
        println!(
            "checkpoint {seq} during the backlog: {ms} ms, {:.1} MB, {left} documents still to write",
            *bytes as f64 / 1e6
        );
    }
    drop(node);
}
