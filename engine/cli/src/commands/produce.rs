//! `kappa produce -f job.yaml --input F...`: loads NDJSON files into the job's Kafka topic, file
//! `i` into partition `i`, so a real broker holds the same retained log `kappa run --input`
//! replays from the files.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientConfig, ClientContext};

use super::run::parse_duration;

/// Producer settings tuned for bulk loading. Ordering within a partition is what the log means,
/// so idempotence keeps retries from reordering or duplicating records; lz4 is built into
/// librdkafka and cuts the bytes on the wire several times for JSON logs.
const PRODUCER_SETTINGS: &[(&str, &str)] = &[
    ("acks", "all"),
    ("enable.idempotence", "true"),
    ("linger.ms", "5"),
    ("batch.size", "1048576"),
    ("batch.num.messages", "100000"),
    ("compression.type", "lz4"),
    ("queue.buffering.max.messages", "1000000"),
    ("queue.buffering.max.kbytes", "1048576"),
];

/// Arguments of `kappa produce`.
#[derive(Debug, clap::Args)]
pub struct ProduceArgs {
    /// The StreamJob manifest; its `spec.source.kafka` names the brokers and the topic.
    #[arg(short = 'f', long = "file")]
    file: PathBuf,
    /// NDJSON files, one per partition: file i goes to partition i, one record per line.
    #[arg(long = "input", num_args = 1.., required = true)]
    input: Vec<PathBuf>,
    /// Brokers (default: spec.source.kafka.bootstrapServers).
    #[arg(long)]
    bootstrap_servers: Option<String>,
    /// Topic (default: spec.source.kafka.topic).
    #[arg(long)]
    topic: Option<String>,
    /// Create the topic if it does not exist, with one partition per file (replication 1).
    #[arg(long)]
    create_topic: bool,
    /// How long the topic lookup and its creation may take (e.g. 30s).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    request_timeout: Duration,
    /// How long to wait for the last acknowledgements before giving up (e.g. 60s).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    flush_timeout: Duration,
}

/// What to do about the topic, given how many partitions it has (`None`: it does not exist).
#[derive(Debug, PartialEq, Eq)]
enum TopicPlan {
    /// It has a partition for every file.
    Use,
    /// Create it with this many partitions.
    Create(usize),
}

fn topic_plan(
    topic: &str,
    partitions: Option<usize>,
    files: usize,
    create: bool,
) -> anyhow::Result<TopicPlan> {
    match partitions {
        Some(n) if n >= files => Ok(TopicPlan::Use),
        Some(n) => bail!(
            "topic {topic} has {n} partition(s) but {files} files were given (file i goes to \
             partition i); pass at most {n} files or add partitions to the topic"
        ),
        None if create => Ok(TopicPlan::Create(files)),
        None => bail!(
            "topic {topic} does not exist; create it with {files} partition(s) or pass \
             --create-topic"
        ),
    }
}

/// Counts acknowledgements per partition and keeps the first failure.
struct Deliveries {
    acked: Vec<AtomicU64>,
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl Deliveries {
    fn new(partitions: usize) -> Self {
        Self {
            acked: (0..partitions).map(|_| AtomicU64::new(0)).collect(),
            failed: AtomicU64::new(0),
            first_error: Mutex::new(None),
        }
    }

    fn fail(&self, error: String) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first_error.lock().unwrap_or_else(|e| e.into_inner());
        first.get_or_insert(error);
    }
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(m) => {
                if let Some(n) = self.acked.get(m.partition() as usize) {
                    n.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err((e, m)) => self.fail(format!("partition {}: {e}", m.partition())),
        }
    }
}

/// Produces every file; prints the records of each partition on standard output and a summary
/// on standard error.
pub fn run(args: &ProduceArgs) -> anyhow::Result<ExitCode> {
    let Some(job) = super::load_job(&args.file)? else { return Ok(ExitCode::FAILURE) };
    let mut kafka = job.spec.source.kafka.clone();
    if let Some(b) = &args.bootstrap_servers {
        kafka.bootstrap_servers.clone_from(b);
    }
    let topic = args.topic.clone().unwrap_or_else(|| kafka.topic.clone());
    // Consumer properties tune the engine's consumer; the producer would only warn about them.
    kafka.consumer_properties.clear();
    let base = kappa_service::source::client_config(&kafka)?;

    let mut inputs = Vec::with_capacity(args.input.len());
    for path in &args.input {
        let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        inputs.push((path, file, len));
    }

    let mut config = base.clone();
    for (k, v) in PRODUCER_SETTINGS {
        config.set(*k, *v);
    }
    let producer: ThreadedProducer<Deliveries> = config
        .create_with_context(Deliveries::new(inputs.len()))
        .context("cannot create the Kafka producer")?;
    let existing =
        partition_count(&producer, &topic, &kafka.bootstrap_servers, args.request_timeout)?;
    if let TopicPlan::Create(partitions) =
        topic_plan(&topic, existing, inputs.len(), args.create_topic)?
    {
        create_topic(&base, &topic, partitions, args.request_timeout)?;
        eprintln!("kappa produce: created topic {topic} with {partitions} partition(s)");
    }

    let total_bytes: u64 = inputs.iter().map(|(_, _, len)| len).sum();
    let bar = ProgressBar::new(total_bytes);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {percent:>3}% {msg} (eta {eta})",
        )
        .expect("static template"),
    );
    let started = Instant::now();
    let mut sent = vec![0u64; inputs.len()];
    let mut bytes_read = 0u64;
    let mut line = Vec::with_capacity(64 * 1024);
    for (partition, (path, file, _)) in inputs.into_iter().enumerate() {
        let mut reader = BufReader::with_capacity(1 << 20, file);
        loop {
            line.clear();
            let n = reader
                .read_until(b'\n', &mut line)
                .with_context(|| format!("cannot read {}", path.display()))?;
            if n == 0 {
                break;
            }
            bytes_read += n as u64;
            let record = record_bytes(&line);
            // The same lines `kappa run --input` counts as records.
            if record.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            send(&producer, &topic, partition as i32, record);
            sent[partition] += 1;
            if sent[partition] % 8192 == 0 {
                bar.set_position(bytes_read);
                let records: u64 = sent.iter().sum();
                let secs = started.elapsed().as_secs_f64().max(1e-9);
                bar.set_message(format!("{:.0} k records/s", records as f64 / secs / 1e3));
            }
        }
    }
    bar.set_position(bytes_read);
    bar.set_message("waiting for acknowledgements");
    let flushed = producer.flush(args.flush_timeout);
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();

    let deliveries = producer.context();
    let records: u64 = sent.iter().sum();
    let acked: u64 = deliveries.acked.iter().map(|n| n.load(Ordering::Relaxed)).sum();
    let failed = deliveries.failed.load(Ordering::Relaxed);
    for (partition, (n, path)) in sent.iter().zip(&args.input).enumerate() {
        println!("{}\tpartition {partition}\t{n} records", path.display());
    }
    eprintln!(
        "kappa produce: {records} records ({bytes_read} bytes) to topic {topic} in {secs:.2}s \
         ({:.0} records/s), {acked} acknowledged",
        records as f64 / secs.max(1e-9)
    );
    if failed > 0 {
        let first = deliveries.first_error.lock().unwrap_or_else(|e| e.into_inner());
        bail!(
            "{failed} of {records} records were not delivered; the first error: {}",
            first.as_deref().unwrap_or("unknown")
        );
    }
    if let Err(e) = flushed {
        bail!(
            "{} of {records} records were still unacknowledged after {:?} ({e}); check that the \
             brokers {} are reachable, or raise --flush-timeout",
            records - acked,
            args.flush_timeout,
            kafka.bootstrap_servers
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// A line without its `\n` or `\r\n` terminator; everything else is produced verbatim.
fn record_bytes(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Queues one record, waiting while the local queue is full. A record librdkafka refuses
/// outright (larger than `message.max.bytes`) counts as a failed delivery.
fn send(producer: &ThreadedProducer<Deliveries>, topic: &str, partition: i32, payload: &[u8]) {
    let mut record = BaseRecord::<(), [u8]>::to(topic).partition(partition).payload(payload);
    loop {
        match producer.send(record) {
            Ok(()) => return,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                record = r;
                std::thread::sleep(Duration::from_millis(1));
            }
            Err((e, _)) => {
                producer.context().fail(format!("partition {partition}: {e}"));
                return;
            }
        }
    }
}

/// The topic's partition count, or `None` when it does not exist. Asks for the metadata of
/// every topic: a request naming the topic could make a broker auto-create it with its default
/// partition count.
fn partition_count(
    producer: &ThreadedProducer<Deliveries>,
    topic: &str,
    brokers: &str,
    timeout: Duration,
) -> anyhow::Result<Option<usize>> {
    let metadata = producer
        .client()
        .fetch_metadata(None, timeout)
        .with_context(|| format!("cannot read the topic list from {brokers}"))?;
    Ok(metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map(|t| t.partitions().len()))
}

fn create_topic(
    config: &ClientConfig,
    topic: &str,
    partitions: usize,
    timeout: Duration,
) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> =
        config.create().context("cannot create the Kafka admin client")?;
    let new = NewTopic::new(topic, partitions as i32, TopicReplication::Fixed(1));
    let options =
        AdminOptions::new().request_timeout(Some(timeout)).operation_timeout(Some(timeout));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let results = runtime.block_on(admin.create_topics([&new], &options)).with_context(|| {
        format!(
            "cannot create topic {topic}: the admin CreateTopics request failed (some brokers \
             and proxies do not serve it); create the topic with {partitions} partition(s) \
             another way"
        )
    })?;
    for result in results {
        if let Err((name, code)) = result {
            bail!("cannot create topic {name}: {code}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_topic_with_a_partition_per_file_is_used() {
        assert_eq!(topic_plan("t", Some(3), 3, false).unwrap(), TopicPlan::Use);
        assert_eq!(topic_plan("t", Some(6), 3, true).unwrap(), TopicPlan::Use);
    }

    #[test]
    fn a_missing_topic_is_created_only_when_asked() {
        assert_eq!(topic_plan("t", None, 4, true).unwrap(), TopicPlan::Create(4));
        let e = topic_plan("t", None, 4, false).unwrap_err().to_string();
        assert!(e.contains("topic t does not exist") && e.contains("--create-topic"), "{e}");
    }

    #[test]
    fn a_topic_with_too_few_partitions_is_refused() {
        let e = topic_plan("t", Some(2), 3, true).unwrap_err().to_string();
        assert!(e.contains("has 2 partition(s) but 3 files"), "{e}");
    }

    #[test]
    fn only_the_line_terminator_is_stripped() {
        assert_eq!(record_bytes(b"{\"a\":1}\n"), b"{\"a\":1}");
        assert_eq!(record_bytes(b"{\"a\":1}\r\n"), b"{\"a\":1}");
        assert_eq!(record_bytes(b" not json \t"), b" not json \t");
    }
}
