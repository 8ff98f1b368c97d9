//! The engine service end to end, against real protocol peers started here: librdkafka's
//! MockCluster (Kafka protocol) and osmem-server (Elasticsearch API). Each test produces a
//! generated workload with late and malformed records across 6 partitions, runs `kappa run`
//! (the engine pod's process) and checks the index against the independent batch reference.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kappa_engine::gen::GenConfig;
use kappa_testkit::job::{tx_stats_job, tx_stats_job_record_time};
use kappa_testkit::kafka::MockKafka;
use kappa_testkit::osmem::OsmemServer;
use kappa_testkit::reference::Reference;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::Value as Json;

const TOPIC: &str = "tx-logs";
const PARTITIONS: usize = 6;
// The mock broker keeps at most 5 MB per partition (librdkafka's rdkafka_mock.c) and silently
// drops older records beyond that, so workloads here stay under ~25k records per partition.
const GROUP_PREFIX: &str = "kappa.payments.tx-stats";

/// One test's peers and workload.
struct World {
    kafka: MockKafka,
    es: OsmemServer,
    lines: Vec<Vec<String>>,
    reference: Reference,
    dir: tempfile::TempDir,
    job: PathBuf,
    alias: String,
    version: String,
    checkpoint_interval: &'static str,
    partitions: usize,
    /// Arguments every `kappa run` of this world gets.
    args: Vec<String>,
}

impl World {
    fn new(records: u64, seed: u64, alias: &str) -> Self {
        Self::with_log_time(records, seed, alias, false)
    }

    /// `record_time`: the job has no `pipeline.logTime`, so log time is the Kafka timestamp.
    fn with_log_time(records: u64, seed: u64, alias: &str, record_time: bool) -> Self {
        let cfg = GenConfig { records, seed, ..GenConfig::default() };
        Self::with_workload(&cfg, PARTITIONS, alias, record_time)
    }

    fn with_workload(cfg: &GenConfig, partitions: usize, alias: &str, record_time: bool) -> Self {
        let kafka = MockKafka::new();
        kafka.create_topic(TOPIC, partitions as i32);
        let version = "v1".to_owned();
        let group = format!("{GROUP_PREFIX}.{version}");
        kafka.create_topic(&format!("{group}.checkpoints"), 1);
        kafka.create_topic(&format!("{group}.dead-letters"), 1);
        // With record-time log time, the Kafka timestamps run 2 h after `logged_time`, so the
        // lateness rule and finality tell the two log times apart.
        let shift = if record_time { 2 * 3_600_000 } else { 0 };
        let (lines, times) = kafka.produce_workload_timed(TOPIC, cfg, partitions, shift);
        let reference = Reference::compute_with(&lines, record_time.then_some(&times[..]));
        if record_time {
            let by_field = Reference::compute(&lines);
            assert_ne!(by_field.late, reference.late, "the test can tell the log times apart");
        }
        assert!(
            reference.late > 0 && reference.filtered > 0 && reference.dead.len() > 100,
            "the workload exercises late, filtered and dead-letter paths"
        );
        let es = OsmemServer::start();
        let dir = tempfile::tempdir().unwrap();
        let job = dir.path().join("job.yaml");
        let yaml = if record_time { tx_stats_job_record_time } else { tx_stats_job };
        std::fs::write(&job, yaml(&kafka.bootstrap(), &es.url(), alias, &version)).unwrap();
        let (alias, checkpoint_interval) = (alias.to_owned(), "500ms");
        Self {
            kafka,
            es,
            lines,
            reference,
            dir,
            job,
            alias,
            version,
            checkpoint_interval,
            partitions,
            args: Vec::new(),
        }
    }

    fn group(&self) -> String {
        format!("{GROUP_PREFIX}.{}", self.version)
    }

    fn index(&self) -> String {
        format!("{}-{}", self.alias, self.version)
    }

    fn records(&self) -> u64 {
        self.lines.iter().map(|p| p.len() as u64).sum()
    }

    /// Starts `kappa run` with the status server on `port`.
    fn engine(&self, port: u16, extra: &[&str]) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("engine.log"))
            .unwrap();
        Command::new(env!("CARGO_BIN_EXE_kappa"))
            .args(["run", "-f", self.job.to_str().unwrap()])
            .args(["--status-addr", &format!("127.0.0.1:{port}")])
            .args(["--checkpoint-interval", self.checkpoint_interval, "--flush-interval", "200ms"])
            .args(&self.args)
            .args(extra)
            .env("KAPPA_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("kappa starts")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("engine.log")).unwrap_or_default()
    }

    /// Runs the engine to the head of the log and waits for it to exit 0.
    fn run_until_caught_up(&self) -> String {
        let mut child = self.engine(free_port(), &["--until-caught-up"]);
        let status = wait_exit(&mut child, Duration::from_secs(300));
        assert!(status.success(), "engine failed: {status}\n{}", self.log());
        self.log()
    }

    /// The index through the alias-less index name, checked against the reference.
    fn assert_index_equals_reference(&self) -> usize {
        let docs = kappa_testkit::reader::scroll_all(&self.es.url(), &self.index());
        let worst = self.reference.assert_documents(&docs);
        eprintln!(
            "{} documents equal the reference (worst distinct error {:.3}%)",
            docs.len(),
            worst * 100.0
        );
        docs.len()
    }

    /// Every expected dead letter is on the dead-letter topic with its reason (re-sends after a
    /// crash share the key, so they are counted once).
    fn assert_dead_letters(&self) {
        let mut seen: BTreeMap<(u32, i64), String> = BTreeMap::new();
        for m in read_topic(&self.kafka.bootstrap(), &format!("{}.dead-letters", self.group())) {
            let headers = m.headers;
            let at = (
                headers["kappa-source-partition"].parse::<u32>().unwrap(),
                headers["kappa-source-offset"].parse::<i64>().unwrap(),
            );
            let original = &self.lines[at.0 as usize][at.1 as usize];
            assert_eq!(m.payload, original.as_bytes(), "a dead letter keeps the original record");
            assert!(!headers["kappa-detail"].is_empty());
            seen.insert(at, headers["kappa-reason"].clone());
        }
        assert_eq!(seen.len(), self.reference.dead.len(), "every bad record, once");
        for (at, reason) in &self.reference.dead {
            assert_eq!(seen.get(at).map(String::as_str), Some(*reason), "dead letter at {at:?}");
        }
    }

    /// The group's committed offsets are the partitions' ends: lag tools see a finished replay.
    fn assert_committed_to_the_end(&self) {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.kafka.bootstrap())
            .set("group.id", self.group())
            .create()
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        for p in 0..self.partitions {
            tpl.add_partition(TOPIC, p as i32);
        }
        let committed = consumer.committed_offsets(tpl, Duration::from_secs(10)).unwrap();
        for e in committed.elements() {
            let end = self.lines[e.partition() as usize].len() as i64;
            assert_eq!(e.offset(), Offset::Offset(end), "partition {}", e.partition());
        }
    }
}

/// A consumed record.
struct Consumed {
    payload: Vec<u8>,
    headers: BTreeMap<String, String>,
}

fn read_topic(bootstrap: &str, topic: &str) -> Vec<Consumed> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "test-reader")
        .set("enable.partition.eof", "true")
        .create()
        .unwrap();
    let (_, high) = consumer.fetch_watermarks(topic, 0, Duration::from_secs(10)).unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning).unwrap();
    consumer.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while (out.len() as i64) < high && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let mut headers = BTreeMap::new();
                if let Some(h) = m.headers() {
                    for i in 0..h.count() {
                        let hd = h.get(i);
                        let v = hd.value.map(|v| String::from_utf8_lossy(v).into_owned());
                        headers.insert(hd.key.to_owned(), v.unwrap_or_default());
                    }
                }
                out.push(Consumed { payload: m.payload().unwrap_or(&[]).to_vec(), headers });
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => break,
            _ => {}
        }
    }
    out
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    kappa_testkit::process::exit_within(child, limit).unwrap_or_else(|| {
        let _ = child.kill();
        panic!("engine did not finish within {limit:?}");
    })
}

/// `GET /status` of an engine, if it answers.
fn status(port: u16) -> Option<Json> {
    kappa_testkit::http::get_json(&format!("http://127.0.0.1:{port}/status"))
}

/// Waits until the engine's status satisfies `pred` (or panics after `limit`).
fn wait_status(port: u16, limit: Duration, what: &str, pred: impl Fn(&Json) -> bool) -> Json {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(s) = status(port) {
            if pred(&s) {
                return s;
            }
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn records_in(s: &Json) -> u64 {
    s["records"]["records_in"].as_u64().unwrap_or(0)
}

fn kill9(child: &mut Child) {
    let _ = Command::new("kill").args(["-9", &child.id().to_string()]).status();
    let _ = child.wait();
}

fn signal(child: &Child, sig: &str) {
    let _ = Command::new("kill").args([sig, &child.id().to_string()]).status();
}

#[test]
fn replay_into_the_index_equals_the_batch_reference() {
    let world = World::new(100_000, 11, "e2e");
    let log = world.run_until_caught_up();
    let distinct = world.assert_index_equals_reference();
    world.assert_dead_letters();
    world.assert_committed_to_the_end();
    // Write amplification while replaying: documents written / distinct documents.
    let written = summary_field(&log, "documents written");
    let amplification = written as f64 / distinct as f64;
    eprintln!("write amplification {amplification:.3} ({written} writes, {distinct} documents)");
    assert!(amplification <= 1.5, "replay rewrote documents: {amplification:.3}");
}

#[test]
fn without_a_log_time_field_the_kafka_timestamp_is_log_time() {
    let world = World::with_log_time(60_000, 15, "rectime", true);
    world.run_until_caught_up();
    world.assert_index_equals_reference();
    world.assert_dead_letters();
}

#[test]
fn start_from_latest_reads_only_what_arrives_after_the_start() {
    let world = World::new(40_000, 16, "latest");
    let job = std::fs::read_to_string(&world.job).unwrap();
    let latest = job.replace("startFrom: earliest", "startFrom: latest");
    assert_ne!(job, latest, "the fixture names startFrom");
    std::fs::write(&world.job, latest).unwrap();
    let port = free_port();
    let mut child = world.engine(port, &[]);
    let ready =
        wait_status(port, Duration::from_secs(60), "start-up", |s| s["phase"] != "starting");
    assert_eq!(ready["total_lag"], 0, "the existing log is not lag for a latest start: {ready}");
    // Records produced after the start are all read; the ones before are not.
    let cfg = GenConfig { records: 30_000, seed: 17, ..GenConfig::default() };
    let (new_lines, _) = world.kafka.produce_workload_timed(TOPIC, &cfg, PARTITIONS, 0);
    let n = new_lines.iter().map(Vec::len).sum::<usize>() as u64;
    wait_status(port, Duration::from_secs(120), "the new records", |s| {
        records_in(s) == n && s["total_lag"] == 0
    });
    signal(&child, "-TERM");
    assert!(wait_exit(&mut child, Duration::from_secs(60)).success(), "{}", world.log());
    let docs = world.es.search_all(&world.index());
    Reference::compute(&new_lines).assert_documents(&docs);
}

#[test]
fn kill_9_during_the_replay_loses_and_double_counts_nothing() {
    let mut world = World::new(120_000, 12, "crash");
    // Frequent checkpoints, so kills land before, during and after checkpoint writes.
    world.checkpoint_interval = "100ms";
    let total = world.records();
    // Kill at three random points of the replay (seed printed), each found by watching /status.
    let seed =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos()
            as u64;
    eprintln!("kill points seed: {seed}");
    let mut x = seed | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % 1000) as f64 / 1000.0
    };
    let mut fractions: Vec<f64> = (0..3).map(|_| 0.1 + 0.75 * next()).collect();
    fractions.sort_by(f64::total_cmp);
    for fraction in fractions {
        let port = free_port();
        let mut child = world.engine(port, &[]);
        let target = (fraction * total as f64) as u64;
        wait_status(port, Duration::from_secs(120), "replay progress", |s| records_in(s) >= target);
        kill9(&mut child);
        eprintln!("killed the engine (kill -9) at ~{target} of {total} records");
    }
    let log = world.run_until_caught_up();
    let resumed = log.matches("resumed from checkpoint").count();
    eprintln!("{resumed} of 4 starts resumed from a checkpoint");
    assert!(resumed >= 2, "restarts resumed from checkpoints, not from scratch:\n{log}");
    world.assert_index_equals_reference();
    world.assert_dead_letters();
    world.assert_committed_to_the_end();
}

/// At the switch from replay to live, every open window (~104k here) is still to write. A
/// checkpoint is taken during that backlog, while the index does not even answer (paused), and
/// a kill -9 right after it loses nothing: the restart resumes from that checkpoint, writes
/// what it held, and the index ends equal to the batch reference.
#[test]
fn kill_9_during_a_live_backlog_resumes_from_a_checkpoint_taken_in_the_backlog() {
    let mut world =
        World::with_workload(&kappa_testkit::job::many_small_windows(21), 8, "backlog", false);
    // A checkpoint of this state is ~18 MB, more than MockCluster keeps of a partition (5 MB):
    // checkpoints go to files here (the Kafka store is tested with the other tests).
    let checkpoints = world.dir.path().join("checkpoints");
    world.args = vec!["--checkpoint-dir".into(), checkpoints.to_str().unwrap().into()];
    let open = kappa_testkit::job::open_windows(&world.reference);
    assert!(open >= 100_000, "{open} windows are open at the head");
    let port = free_port();
    let mut child = world.engine(port, &[]);
    // Read up to the head: the engine is live with its open windows still to write.
    let live = wait_status(port, Duration::from_secs(180), "the switch to live", |s| {
        s["phase"] == "live" && s["backlog"]["documents"].as_u64().unwrap_or(0) >= 50_000
    });
    eprintln!(
        "at the switch to live: backlog {}, index lag {}",
        live["backlog"], live["total_index_lag"]
    );
    assert!(live["total_index_lag"].as_i64().unwrap() > 0, "the index is not complete: {live}");
    let seq_before = live["last_checkpoint"]["seq"].as_u64().unwrap_or(0);
    world.es.pause();
    let during =
        wait_status(port, Duration::from_secs(30), "a checkpoint during the backlog", |s| {
            let cp = &s["last_checkpoint"];
            cp["seq"].as_u64().unwrap_or(0) > seq_before + 1
                && cp["unstaged_windows"].as_u64().unwrap_or(0)
                    + cp["undelivered_documents"].as_u64().unwrap_or(0)
                    >= 50_000
        });
    let checkpoint = during["last_checkpoint"].clone();
    eprintln!("checkpoint during the backlog, with the index paused: {checkpoint}");
    kill9(&mut child);
    world.es.resume();

    let log = world.run_until_caught_up();
    let resumed = log
        .lines()
        .find(|l| l.contains("resumed from checkpoint"))
        .unwrap_or_else(|| panic!("the restart did not resume from a checkpoint:\n{log}"));
    let seq = checkpoint["seq"].as_u64().unwrap();
    let resumed_seq = log_field(resumed, "seq").expect("the resumed checkpoint's seq");
    assert!(resumed_seq >= seq, "resumed from the checkpoint taken in the backlog: {resumed}");
    let backlog = log_field(resumed, "backlog").expect("the restored backlog");
    assert!(backlog > 0, "the restored checkpoint held documents still to write: {resumed}");
    world.assert_index_equals_reference();
    world.assert_dead_letters();
}

#[test]
fn a_sink_outage_degrades_then_recovers_without_loss() {
    let world = World::new(100_000, 13, "outage");
    let port = free_port();
    let mut child = world.engine(port, &["--until-caught-up"]);
    let total = world.records();
    wait_status(port, Duration::from_secs(120), "replay progress", |s| records_in(s) >= total / 4);
    world.es.pause();
    let paused = Instant::now();
    let degraded = wait_status(port, Duration::from_secs(19), "degraded sink", |s| {
        s["sink"]["state"] == "degraded"
    });
    eprintln!("status during the outage: {}", degraded["sink"]);
    std::thread::sleep(Duration::from_secs(20).saturating_sub(paused.elapsed()));
    world.es.resume();
    wait_status(port, Duration::from_secs(60), "healthy sink", |s| s["sink"]["state"] == "healthy");
    let status = wait_exit(&mut child, Duration::from_secs(300));
    assert!(status.success(), "engine failed: {status}\n{}", world.log());
    world.assert_index_equals_reference();
    world.assert_dead_letters();
}

#[test]
fn sigterm_takes_a_final_checkpoint_and_the_restart_does_not_reprocess() {
    let world = World::new(100_000, 14, "sigterm");
    let total = world.records();
    let port = free_port();
    let mut child = world.engine(port, &[]);
    // Log-time progress is the minimum over partitions, so it stays null until every
    // partition has delivered a record; the fetcher does not promise to start them evenly.
    let s = wait_status(port, Duration::from_secs(120), "replay progress", |s| {
        records_in(s) >= total / 2 && s["log_time_progress"].is_string()
    });
    assert_status_and_metrics(port, &s, &world);
    signal(&child, "-TERM");
    let status = wait_exit(&mut child, Duration::from_secs(60));
    assert!(status.success(), "SIGTERM is a clean exit: {status}\n{}", world.log());
    let first = summary_field(&world.log(), "records processed by this process");
    assert!(first > 0 && first < total, "stopped mid-replay: {first}");
    let log = world.run_until_caught_up();
    let processed: Vec<u64> = summary_fields(&log, "records processed by this process");
    let second = *processed.last().unwrap();
    assert_eq!(first + second, total, "the restart resumed exactly at the final checkpoint");
    world.assert_index_equals_reference();
    world.assert_committed_to_the_end();
}

/// `/status` has every documented field with consistent values; `/metrics`, `/healthz` and
/// `/readyz` answer.
fn assert_status_and_metrics(port: u16, s: &Json, world: &World) {
    assert_eq!(s["job"], "tx-stats");
    assert_eq!(s["version"], "v1");
    assert_eq!(s["index"], Json::from(world.index()));
    assert_eq!(s["consumer_group"], Json::from(world.group()));
    assert!(["replaying", "live"].contains(&s["phase"].as_str().unwrap()), "{s}");
    let parts = s["partitions"].as_array().unwrap();
    assert_eq!(parts.len(), world.partitions);
    let (mut lag, mut index_lag) = (0, 0);
    for p in parts {
        let id = p["partition"].as_u64().unwrap() as usize;
        let high = p["high_watermark"].as_i64().unwrap();
        assert_eq!(high, world.lines[id].len() as i64, "{p}");
        assert_eq!(p["lag"].as_i64().unwrap(), high - 1 - p["processed_offset"].as_i64().unwrap());
        // The index trails the consumer: what is read is not all written yet.
        let indexed = p["indexed_offset"].as_i64().unwrap();
        assert!(indexed <= p["processed_offset"].as_i64().unwrap(), "{p}");
        assert_eq!(p["index_lag"].as_i64().unwrap(), high - 1 - indexed, "{p}");
        lag += p["lag"].as_i64().unwrap();
        index_lag += p["index_lag"].as_i64().unwrap();
    }
    assert_eq!(s["total_lag"].as_i64(), Some(lag));
    assert_eq!(s["total_index_lag"].as_i64(), Some(index_lag));
    assert!(index_lag > lag, "mid-replay, open windows are not written yet: {s}");
    let backlog = &s["backlog"];
    assert!(
        backlog["documents"].as_u64().unwrap() >= backlog["unstaged_windows"].as_u64().unwrap()
    );
    assert!(backlog["unstaged_windows"].as_u64().unwrap() > 0, "open windows wait: {s}");
    assert!(s["log_time_progress"].is_string() && s["event_time_watermark"].is_string(), "{s}");
    let r = &s["records"];
    let sum = ["folded", "filtered", "late", "dead"].map(|k| r[k].as_u64().unwrap()).iter().sum();
    assert_eq!(r["records_in"].as_u64(), Some(sum), "every record has one outcome: {r}");
    assert!(s["open_windows"].as_u64().unwrap() > 0);
    assert_eq!(s["sink"]["state"], "healthy");
    let base = format!("http://127.0.0.1:{port}");
    let (code, metrics) = kappa_testkit::http::get_text(&format!("{base}/metrics")).unwrap();
    assert_eq!(code, 200);
    for name in [
        "kappa_records_in_total",
        "kappa_records_total{outcome=\"late\"}",
        "kappa_dead_letters_total{reason=\"malformed_json\"}",
        "kappa_partition_lag{partition=\"5\"}",
        "kappa_partition_indexed_offset{partition=\"5\"}",
        "kappa_partition_index_lag{partition=\"5\"}",
        "kappa_lag_records",
        "kappa_index_lag_records",
        "kappa_backlog_documents",
        "kappa_event_time_watermark_seconds",
        "kappa_open_windows",
        "kappa_sink_degraded 0",
    ] {
        assert!(metrics.contains(name), "/metrics has {name}:\n{metrics}");
    }
    for probe in ["healthz", "readyz"] {
        let (code, _) = kappa_testkit::http::get_text(&format!("{base}/{probe}")).unwrap();
        assert_eq!(code, 200, "/{probe}");
    }
}

/// The value of `name=<number>` in a log line.
fn log_field(line: &str, name: &str) -> Option<u64> {
    let at = line.find(&format!(" {name}="))? + name.len() + 2;
    line[at..].split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

/// The number before `label` in the last engine summary line that has it.
fn summary_field(log: &str, label: &str) -> u64 {
    *summary_fields(log, label).last().unwrap_or_else(|| panic!("no `{label}` in:\n{log}"))
}

fn summary_fields(log: &str, label: &str) -> Vec<u64> {
    log.lines()
        .filter_map(|l| {
            let at = l.find(label)?;
            let before = l[..at].trim_end();
            let digits: String =
                before.chars().rev().take_while(char::is_ascii_digit).collect::<String>();
            digits.chars().rev().collect::<String>().parse().ok()
        })
        .collect()
}
