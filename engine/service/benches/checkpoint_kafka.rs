//! Times Kafka checkpoint saves and loads on librdkafka's mock cluster; prints, asserts nothing.
//!
//! The mock keeps at most 5 MiB of log per partition (hard-coded in rdkafka_mock.c) and drops
//! older records beyond that, so snapshots above ~5 MB can be saved but not read back there:
//! their load is reported as such, not timed.

use std::collections::BTreeMap;
use std::time::Instant;

use kappa_service::checkpoint::kafka::KafkaCheckpointStore;
use kappa_service::checkpoint::{kafka_client_config, Checkpoint, CheckpointStore};
use rdkafka::mocking::MockCluster;

fn main() {
    // Sizes in MB from the command line (`cargo bench --bench checkpoint_kafka -- 5 50`).
    let mut sizes_mb: Vec<usize> =
        std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    if sizes_mb.is_empty() {
        sizes_mb = vec![1, 5, 50];
    }
    for mb in sizes_mb {
        let cluster = MockCluster::new(1).expect("mock cluster");
        let topic = format!("bench{mb}.checkpoints");
        cluster.create_topic(&topic, 1, 1).expect("topic");
        let config = kafka_client_config(&cluster.bootstrap_servers(), &BTreeMap::new());
        let mut store = KafkaCheckpointStore::new(config.clone(), topic.clone()).expect("store");
        // Incompressible-ish bytes, like a serialized state.
        let len = mb * 1_000_000;
        let snapshot: Vec<u8> =
            (0..len as u64).map(|i| (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8).collect();
        for seq in 1..=3u64 {
            let cp = Checkpoint { seq, taken_at_ms: 0, snapshot: snapshot.clone() };
            let started = Instant::now();
            store.save(&cp).expect("save");
            let save = started.elapsed();
            let mut fresh =
                KafkaCheckpointStore::new(config.clone(), topic.clone()).expect("store");
            let started = Instant::now();
            let loaded = fresh.load_latest().expect("load");
            let load = started.elapsed();
            let outcome = match loaded {
                Some(l) if l.seq == seq && l.snapshot == snapshot => format!("load {load:?}"),
                Some(l) => format!("load returned seq {} in {load:?} (mock log cap)", l.seq),
                None => format!("load found nothing complete in {load:?} (mock log cap)"),
            };
            println!("{mb:>3} MB seq {seq}: save {save:?}, {outcome}");
        }
    }
}
