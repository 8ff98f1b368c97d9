//! `kappa produce` against librdkafka's MockCluster: every line of file i arrives in partition
//! i, in order and byte for byte (malformed lines included); a bad job file, a missing topic and
//! a topic with too few partitions are refused before anything is produced.
//!
//! The mock serves no admin API (no CreateTopics), so `--create-topic` is checked here up to the
//! request it sends; which topics it would create is unit tested in `commands/produce.rs`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use kappa_testkit::job::tx_stats_job;
use kappa_testkit::kafka::MockKafka;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// `spec.source.kafka.topic` of the reference job.
const TOPIC: &str = "tx-logs";

fn kappa(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kappa")).args(args).output().expect("kappa runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The reference job pointed at `kafka`, written into `dir`.
fn job_file(dir: &Path, kafka: &MockKafka) -> PathBuf {
    let path = dir.join("job.yaml");
    std::fs::write(&path, tx_stats_job(&kafka.bootstrap(), "http://127.0.0.1:9", "tx", "v1"))
        .unwrap();
    path
}

/// `kappa gen` output: `partitions` files of the reference workload (malformed lines included).
fn generated(dir: &Path, records: u64, partitions: usize) -> Vec<PathBuf> {
    let d = dir.to_str().unwrap();
    let (records, partitions) = (records.to_string(), partitions.to_string());
    let out = kappa(&["gen", "--records", &records, "--partitions", &partitions, "--out-dir", d]);
    assert!(out.status.success(), "kappa gen: {}", stderr(&out));
    let mut files: Vec<PathBuf> =
        (0..partitions.parse().unwrap()).map(|p| dir.join(format!("part-{p}.ndjson"))).collect();
    files.sort();
    files
}

/// Every record of `partition`, from offset 0 to the high watermark.
fn read_partition(kafka: &MockKafka, topic: &str, partition: i32) -> Vec<Vec<u8>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka.bootstrap())
        .set("group.id", "kappa-produce-test")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let (_, high) =
        consumer.fetch_watermarks(topic, partition, Duration::from_secs(10)).expect("watermarks");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Beginning).unwrap();
    consumer.assign(&tpl).unwrap();
    let mut records = Vec::new();
    while (records.len() as i64) < high {
        match consumer.poll(Duration::from_secs(10)) {
            Some(Ok(m)) => {
                assert_eq!(m.offset(), records.len() as i64, "offsets are dense");
                assert!(m.key().is_none(), "records carry no key");
                records.push(m.payload().unwrap_or_default().to_vec());
            }
            Some(Err(e)) => panic!("consume {topic}/{partition}: {e}"),
            None => panic!("{topic}/{partition}: only {} of {high} records", records.len()),
        }
    }
    records
}

/// The records a file should become: its lines without terminators, whitespace-only lines
/// skipped (as `kappa run --input` skips them).
fn expected_records(path: &Path) -> Vec<Vec<u8>> {
    let bytes = std::fs::read(path).unwrap();
    bytes
        .split(|b| *b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .map(<[u8]>::to_vec)
        .collect()
}

#[test]
fn each_file_lands_in_its_partition_in_order_byte_for_byte() {
    let kafka = MockKafka::new();
    // More partitions than files: the files fill partitions 0..3 and leave the rest alone.
    kafka.create_topic(TOPIC, 4);
    let dir = tempfile::tempdir().unwrap();
    let job = job_file(dir.path(), &kafka);
    // The mock keeps at most 5 MB per partition, so the workload stays well below that.
    let mut files = generated(dir.path(), 12_000, 2);
    // A hand-written partition: blank lines, CRLF, bytes that are not UTF-8, a truncated record.
    let odd = dir.path().join("odd.ndjson");
    std::fs::write(
        &odd,
        b"{\"a\":1}\r\n\n   \n\xff\xfe not json\n{\"a\":\n  {\"b\": 2}  \n{\"c\":3}",
    )
    .unwrap();
    files.push(odd);
    let malformed: usize = files[..2]
        .iter()
        .flat_map(|f| expected_records(f))
        .filter(|r| serde_json::from_slice::<serde_json::Value>(r).is_err())
        .count();
    assert!(malformed > 0, "the workload has malformed lines");

    let mut args = vec!["produce", "-f", job.to_str().unwrap(), "--input"];
    args.extend(files.iter().map(|f| f.to_str().unwrap()));
    let out = kappa(&args);
    assert!(out.status.success(), "kappa produce failed: {}", stderr(&out));

    for (partition, file) in files.iter().enumerate() {
        let expected = expected_records(file);
        let got = read_partition(&kafka, TOPIC, partition as i32);
        assert_eq!(got.len(), expected.len(), "partition {partition}: record count");
        if let Some(i) = (0..got.len()).find(|&i| got[i] != expected[i]) {
            panic!(
                "partition {partition} offset {i}: got {:?}, expected {:?}",
                String::from_utf8_lossy(&got[i]),
                String::from_utf8_lossy(&expected[i])
            );
        }
    }
    let odd = read_partition(&kafka, TOPIC, 2);
    assert_eq!(odd[1], b"\xff\xfe not json", "non-UTF-8 bytes are produced verbatim");
    assert_eq!(odd.len(), 5, "blank lines are skipped, the unterminated last line is kept");
    assert!(read_partition(&kafka, TOPIC, 3).is_empty(), "no file, no records");

    let summary = stderr(&out);
    let total: usize = files.iter().map(|f| expected_records(f).len()).sum();
    assert!(summary.contains(&format!("{total} records")), "summary: {summary}");
    assert!(summary.contains(&format!("{total} acknowledged")), "summary: {summary}");
    let per_partition = String::from_utf8_lossy(&out.stdout);
    assert!(per_partition.contains("partition 2\t5 records"), "stdout: {per_partition}");
}

#[test]
fn flags_override_the_job_s_topic_and_brokers() {
    let kafka = MockKafka::new();
    kafka.create_topic("replay-copy", 1);
    let dir = tempfile::tempdir().unwrap();
    // The job names brokers that do not exist; the flag points at the mock.
    let job = dir.path().join("job.yaml");
    std::fs::write(&job, tx_stats_job("127.0.0.1:1", "http://127.0.0.1:9", "tx", "v1")).unwrap();
    let file = dir.path().join("one.ndjson");
    std::fs::write(&file, "{\"n\":1}\n{\"n\":2}\n").unwrap();
    let out = kappa(&[
        "produce",
        "-f",
        job.to_str().unwrap(),
        "--bootstrap-servers",
        &kafka.bootstrap(),
        "--topic",
        "replay-copy",
        "--input",
        file.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "kappa produce failed: {}", stderr(&out));
    assert_eq!(read_partition(&kafka, "replay-copy", 0), [b"{\"n\":1}", b"{\"n\":2}"]);
}

#[test]
fn a_bad_job_file_is_refused_with_its_field_paths() {
    let kafka = MockKafka::new();
    kafka.create_topic(TOPIC, 1);
    let dir = tempfile::tempdir().unwrap();
    let job = dir.path().join("job.yaml");
    let yaml = tx_stats_job(&kafka.bootstrap(), "http://127.0.0.1:9", "tx", "v1.0")
        .replace("maxLateness: 3d", "maxLateness: 3 days");
    std::fs::write(&job, yaml).unwrap();
    let file = dir.path().join("one.ndjson");
    std::fs::write(&file, "{\"n\":1}\n").unwrap();

    let out = kappa(&["produce", "-f", job.to_str().unwrap(), "--input", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "stderr: {}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("the job is invalid"), "{err}");
    assert!(err.contains("spec.version"), "{err}");
    assert!(err.contains("spec.pipeline.maxLateness"), "{err}");
    assert!(read_partition(&kafka, TOPIC, 0).is_empty(), "nothing was produced");
}

#[test]
fn a_missing_topic_is_refused_unless_asked_to_create_it() {
    let kafka = MockKafka::new();
    let dir = tempfile::tempdir().unwrap();
    let job = job_file(dir.path(), &kafka);
    let file = dir.path().join("one.ndjson");
    std::fs::write(&file, "{\"n\":1}\n").unwrap();
    // The mock never answers a CreateTopics request; a short timeout keeps the test quick.
    let base = [
        "produce",
        "-f",
        job.to_str().unwrap(),
        "--request-timeout",
        "2s",
        "--input",
        file.to_str().unwrap(),
    ];

    let out = kappa(&base);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("topic tx-logs does not exist") && err.contains("--create-topic"),
        "{err}"
    );

    // With --create-topic the command asks the brokers to create it; the mock has no
    // CreateTopics API, so the request goes unanswered, and the error says which request.
    let out = kappa(&[&base[..], &["--create-topic"]].concat());
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("cannot create topic tx-logs") && err.contains("CreateTopics"), "{err}");

    // Neither attempt made the topic exist (no broker-side auto-creation either).
    let out = kappa(&base);
    assert!(stderr(&out).contains("topic tx-logs does not exist"), "{}", stderr(&out));
}

#[test]
fn a_topic_with_fewer_partitions_than_files_is_refused() {
    let kafka = MockKafka::new();
    kafka.create_topic(TOPIC, 1);
    let dir = tempfile::tempdir().unwrap();
    let job = job_file(dir.path(), &kafka);
    let files = generated(dir.path(), 100, 2);
    let mut args = vec!["produce", "-f", job.to_str().unwrap(), "--create-topic", "--input"];
    args.extend(files.iter().map(|f| f.to_str().unwrap()));
    let out = kappa(&args);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("topic tx-logs has 1 partition(s) but 2 files"), "{err}");
    assert!(read_partition(&kafka, TOPIC, 0).is_empty(), "nothing was produced");
}
