//! Seeded, deterministic generator of JSON transaction logs shaped like the reference workload,
//! for `kappa gen` and the benchmarks.
//!
//! One record per line, ordered by log time within each output, e.g.
//!
//! ```text
//! {"event_time":"2024-01-01T00:00:04.211Z","logged_time":"2024-01-01T00:00:05.000Z","server":"srv-1","tx_type":"payment","status":"ok","amount":123.45,"latency_ms":38,"user_id":"u-004711"}
//! ```
//!
//! The same [`GenConfig`] (seed included) produces byte-identical output on every run and every
//! platform with IEEE double arithmetic (all of Rust's tier-1 targets): the random stream is
//! ChaCha8 seeded from [`GenConfig::seed`] (an algorithm whose output `rand_chacha` keeps stable
//! across versions, unlike `StdRng`), and every distribution is computed here from raw `u64`
//! draws with correctly rounded operations only (`+ - * /`, casts): no `rand` distributions and
//! no platform `exp`/`ln`, whose last bits may differ between libms.
//! A record's content does not depend on the number of outputs either: with `P` outputs the
//! lines are the same as with one, only spread over `P` files.

use std::io::{self, BufWriter, Write};

use rand_chacha::rand_core::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Servers named in the `server` field, in the order of their weights in [`SERVER_WEIGHTS`].
pub const SERVERS: [&str; 3] = ["srv-1", "srv-2", "srv-3"];
/// Relative frequency of each of [`SERVERS`], in thousandths.
pub const SERVER_WEIGHTS: [u16; 3] = [500, 300, 200];
/// Transaction types named in the `tx_type` field, in the order of [`TX_TYPE_WEIGHTS`].
pub const TX_TYPES: [&str; 8] =
    ["payment", "transfer", "deposit", "withdrawal", "refund", "fee", "adjustment", "chargeback"];
/// Relative frequency of each of [`TX_TYPES`], in thousandths (skewed towards payments).
pub const TX_TYPE_WEIGHTS: [u16; 8] = [450, 180, 110, 100, 70, 60, 20, 10];
/// Amount range of each of [`TX_TYPES`] in cents: lowest, highest, and the unit amounts are
/// multiples of. Drawn skewed towards small sums, except ranges that go negative (uniform).
const TX_AMOUNT_CENTS: [(i64, i64, i64); 8] = [
    (100, 200_000, 1),
    (1_000, 1_000_000, 1),
    (1_000, 500_000, 1),
    // Cash machines hand out round sums.
    (2_000, 100_000, 1_000),
    (100, 50_000, 1),
    (10, 2_500, 1),
    // Corrections go both ways, so sums see negative amounts too.
    (-10_000, 10_000, 1),
    (500, 200_000, 1),
];
/// `status` of a successful transaction.
pub const STATUS_OK: &str = "ok";
/// `status` of a failed transaction (counted by the reference job's `count where`).
pub const STATUS_FAIL: &str = "fail";
/// `status` of a test transaction (dropped by the reference job's filter).
pub const STATUS_TEST: &str = "test";
/// The reference job's `maxLateness`: [`GenConfig::too_late_ratio`] of the records lag their log
/// time by more than this, all others by less.
pub const MAX_LATENESS_MILLIS: i64 = 3 * DAY_MILLIS;

const SECOND_MILLIS: i64 = 1_000;
const HOUR_MILLIS: i64 = 3_600_000;
const DAY_MILLIS: i64 = 86_400_000;
/// 2024-01-01T00:00:00Z.
const DEFAULT_START_MILLIS: i64 = 1_704_067_200_000;
/// 0000-01-01T00:00:00Z and 9999-12-31T23:59:59.999Z: what RFC 3339 can write.
const RFC3339_MIN_MILLIS: i64 = -62_167_219_200_000;
const RFC3339_MAX_MILLIS: i64 = 253_402_300_799_999;
/// Per output; large writes keep the generator, not the syscalls, the bottleneck.
const WRITE_BUFFER_BYTES: usize = 1 << 20;

/// What to generate. `Default` is the reference workload's shape.
#[derive(Debug, Clone, PartialEq)]
pub struct GenConfig {
    /// Number of lines to write, malformed ones included.
    pub records: u64,
    /// Seed of the random stream; the same seed and config give byte-identical output.
    pub seed: u64,
    /// Records per second of log time (default 200): record `i` is logged at
    /// `start_millis + floor(i * 1000 / rate_per_sec)`.
    pub rate_per_sec: f64,
    /// Log time of the first record, epoch milliseconds (default 2024-01-01T00:00:00Z).
    pub start_millis: i64,
    /// Size of the user pool (default 50 000); a few heavy users make most of the traffic.
    pub users: u32,
    /// Number of servers, named `srv-1` … `srv-N`. The default, 3, keeps the reference
    /// workload's weights (50/30/20 %); any other count draws servers uniformly. Many servers
    /// at a low rate make many group keys with few records per window, most of them open at
    /// once under a long lateness.
    pub servers: u32,
    /// Share of records with `status: "fail"` (default 3 %).
    pub fail_ratio: f64,
    /// Share of records with `status: "test"` (default 0.5 %).
    pub test_ratio: f64,
    /// Share of malformed lines (default 0.5 %), spread over the kinds of [`MalformedKind`].
    pub malformed_ratio: f64,
    /// Share of records whose event time lags log time by more than [`MAX_LATENESS_MILLIS`]
    /// (up to 4 days; default 0.1 %), so that late-drop paths run. Of the rest, 90 % lag by
    /// under 5 s, 9 % by 5 s to 1 h, 1 % by 1 h to 3 days.
    pub too_late_ratio: f64,
}

impl Default for GenConfig {
    fn default() -> Self {
        Self {
            records: 1_000_000,
            seed: 42,
            rate_per_sec: 200.0,
            start_millis: DEFAULT_START_MILLIS,
            users: 50_000,
            servers: SERVERS.len() as u32,
            fail_ratio: 0.03,
            test_ratio: 0.005,
            malformed_ratio: 0.005,
            too_late_ratio: 0.001,
        }
    }
}

impl GenConfig {
    /// Checks that the config describes something that can be generated.
    pub fn validate(&self) -> io::Result<()> {
        let invalid = |msg: String| Err(io::Error::new(io::ErrorKind::InvalidInput, msg));
        if !(self.rate_per_sec.is_finite() && self.rate_per_sec > 0.0) {
            return invalid(format!(
                "rate_per_sec must be a positive number of records per second, got {}",
                self.rate_per_sec
            ));
        }
        for (name, value) in [
            ("fail_ratio", self.fail_ratio),
            ("test_ratio", self.test_ratio),
            ("malformed_ratio", self.malformed_ratio),
            ("too_late_ratio", self.too_late_ratio),
        ] {
            if !(0.0..=1.0).contains(&value) {
                return invalid(format!("{name} must be between 0 and 1, got {value}"));
            }
        }
        if self.fail_ratio + self.test_ratio > 1.0 {
            return invalid(format!(
                "fail_ratio + test_ratio must be at most 1, got {}",
                self.fail_ratio + self.test_ratio
            ));
        }
        if self.users == 0 {
            return invalid("users must be at least 1".to_owned());
        }
        if self.servers == 0 {
            return invalid("servers must be at least 1".to_owned());
        }
        let last = self.start_millis as f64 + self.records as f64 * self.step_millis();
        let earliest_event = self.start_millis.saturating_sub(MAX_LATENESS_MILLIS + DAY_MILLIS);
        if earliest_event < RFC3339_MIN_MILLIS || last > RFC3339_MAX_MILLIS as f64 {
            return invalid(format!(
                "log times from start_millis {} over {} records at {}/s leave the years \
                 0000-9999 that RFC 3339 can write; lower records or raise rate_per_sec",
                self.start_millis, self.records, self.rate_per_sec
            ));
        }
        Ok(())
    }

    fn step_millis(&self) -> f64 {
        1_000.0 / self.rate_per_sec
    }
}

/// What [`generate`] wrote.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GenSummary {
    /// Lines written to each output, malformed ones included.
    pub per_partition: Vec<u64>,
    /// Malformed lines among them.
    pub malformed: u64,
    /// Well-formed records lagging log time by more than [`MAX_LATENESS_MILLIS`].
    pub too_late: u64,
    /// Well-formed records with `status: "test"` (the reference filter drops them).
    pub test_status: u64,
    /// Log time of the first line, epoch milliseconds (`None` when nothing was written).
    pub first_log_millis: Option<i64>,
    /// Log time of the last line, epoch milliseconds.
    pub last_log_millis: Option<i64>,
}

impl GenSummary {
    /// All lines written, over all outputs.
    pub fn records(&self) -> u64 {
        self.per_partition.iter().sum()
    }
}

/// The ways a generated line is broken, each one that real pipelines meet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MalformedKind {
    /// A valid record cut short (a writer died mid-line).
    Truncated,
    /// Not JSON at all: a plain-text log line, an HTML error page, a syslog prefix, a panic.
    NotJson,
    /// JSON without `event_time` (the producer renamed it to `ts`).
    MissingEventTime,
    /// `event_time` is a string but not RFC 3339 (`"2024-13-45 99:99"`, `""`, no zone, ...).
    BadEventTimeFormat,
    /// `event_time` is `true`, `null`, an object or an array.
    WrongTypeEventTime,
    /// `amount` is a string with a decimal comma, e.g. `"12,50"`.
    AmountAsString,
}

impl MalformedKind {
    /// Every kind, in the order they are drawn.
    pub const ALL: [MalformedKind; 6] = [
        MalformedKind::Truncated,
        MalformedKind::NotJson,
        MalformedKind::MissingEventTime,
        MalformedKind::BadEventTimeFormat,
        MalformedKind::WrongTypeEventTime,
        MalformedKind::AmountAsString,
    ];
}

/// Writes `cfg.records` lines over `outs` (one partition per writer), each output ordered by log
/// time, and reports what was written. Each writer is wrapped in a 1 MiB [`BufWriter`] and
/// flushed at the end.
///
/// ```
/// use kappa_engine::gen::{generate, GenConfig};
/// let cfg = GenConfig { records: 1_000, ..GenConfig::default() };
/// let mut outs = vec![Vec::new(), Vec::new()];
/// let summary = generate(&cfg, &mut outs)?;
/// assert_eq!(summary.records(), 1_000);
/// let lines = outs.iter().map(|o| o.iter().filter(|&&b| b == b'\n').count()).sum::<usize>();
/// assert_eq!(lines, 1_000);
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn generate<W: Write>(cfg: &GenConfig, outs: &mut [W]) -> io::Result<GenSummary> {
    let mut log = LogGenerator::new(cfg, outs.len())?;
    let mut bufs: Vec<_> =
        outs.iter_mut().map(|w| BufWriter::with_capacity(WRITE_BUFFER_BYTES, w)).collect();
    while let Some(line) = log.next_line() {
        bufs[line.partition].write_all(line.bytes)?;
    }
    for buf in &mut bufs {
        buf.flush()?;
    }
    Ok(log.summary().clone())
}

/// [`generate`] into a single output.
pub fn generate_to<W: Write>(cfg: &GenConfig, out: W) -> io::Result<GenSummary> {
    generate(cfg, &mut [out])
}

/// One generated line, borrowed from the [`LogGenerator`] until the next call.
#[derive(Debug, Clone, Copy)]
pub struct GeneratedLine<'a> {
    /// The output it belongs to.
    pub partition: usize,
    /// Its log time, epoch milliseconds.
    pub log_millis: i64,
    /// How it is broken, if it is.
    pub malformed: Option<MalformedKind>,
    /// The line, ending in `\n`, with no other newline.
    pub bytes: &'a [u8],
}

/// The line-by-line generator under [`generate`], for benchmarks that feed the engine in memory.
pub struct LogGenerator {
    rng: ChaCha8Rng,
    records: u64,
    next_index: u64,
    start_millis: i64,
    step_millis: f64,
    users: u32,
    /// Servers drawn uniformly, or `None` for the reference weights.
    uniform_servers: Option<u64>,
    partitions: u64,
    malformed: u64,
    too_late: u64,
    lag_under_5s: u64,
    lag_under_1h: u64,
    fail: u64,
    fail_or_test: u64,
    log_dates: DateCache,
    event_dates: DateCache,
    line: Vec<u8>,
    scratch: Vec<u8>,
    summary: GenSummary,
}

/// The fields of one transaction, before it is written.
struct Record {
    log_millis: i64,
    logged_time: [u8; 24],
    event_time: [u8; 24],
    server: usize,
    tx_type: usize,
    status: &'static str,
    cents: i64,
    latency_ms: u32,
    user: u32,
}

/// How `event_time` appears in a written record.
enum EventTimeField<'a> {
    Valid,
    /// Renamed to `ts`.
    Missing,
    /// A string with this content.
    Text(&'a [u8]),
    /// This raw JSON value.
    Raw(&'a [u8]),
}

impl LogGenerator {
    /// A generator of `cfg.records` lines spread over `partitions` outputs.
    pub fn new(cfg: &GenConfig, partitions: usize) -> io::Result<Self> {
        cfg.validate()?;
        if partitions == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "at least one output is needed",
            ));
        }
        let too_late = threshold(cfg.too_late_ratio);
        Ok(Self {
            rng: ChaCha8Rng::from_seed(expand_seed(cfg.seed)),
            records: cfg.records,
            next_index: 0,
            start_millis: cfg.start_millis,
            step_millis: cfg.step_millis(),
            users: cfg.users,
            uniform_servers: (cfg.servers as usize != SERVERS.len())
                .then_some(u64::from(cfg.servers)),
            partitions: partitions as u64,
            malformed: threshold(cfg.malformed_ratio),
            too_late,
            // The draws above `too_late` split 900 / 90 / 10 per mille between the lag bands.
            lag_under_5s: too_late + ((u64::MAX - too_late) / 1000) * 900,
            lag_under_1h: too_late + ((u64::MAX - too_late) / 1000) * 990,
            fail: threshold(cfg.fail_ratio),
            fail_or_test: threshold(cfg.fail_ratio + cfg.test_ratio),
            log_dates: DateCache::default(),
            event_dates: DateCache::default(),
            line: Vec::with_capacity(512),
            scratch: Vec::with_capacity(64),
            summary: GenSummary { per_partition: vec![0; partitions], ..GenSummary::default() },
        })
    }

    /// What has been generated so far.
    pub fn summary(&self) -> &GenSummary {
        &self.summary
    }

    /// The next line, or `None` after `records` lines.
    pub fn next_line(&mut self) -> Option<GeneratedLine<'_>> {
        if self.next_index == self.records {
            return None;
        }
        let index = self.next_index;
        self.next_index += 1;
        // Drawn first and always, so that the content does not depend on the partition count.
        let partition = self.below(self.partitions) as usize;
        let is_malformed = self.rng.next_u64() < self.malformed;
        let (record, too_late) = self.record(index);
        self.line.clear();
        let malformed = if is_malformed {
            Some(self.write_malformed(&record))
        } else {
            write_record(&mut self.line, &record, EventTimeField::Valid, false);
            self.summary.too_late += u64::from(too_late);
            self.summary.test_status += u64::from(record.status == STATUS_TEST);
            None
        };
        self.line.push(b'\n');
        self.summary.per_partition[partition] += 1;
        self.summary.malformed += u64::from(malformed.is_some());
        self.summary.first_log_millis.get_or_insert(record.log_millis);
        self.summary.last_log_millis = Some(record.log_millis);
        Some(GeneratedLine {
            partition,
            log_millis: record.log_millis,
            malformed,
            bytes: &self.line,
        })
    }

    /// Draws record `index`; the flag tells whether it lags by more than the max lateness.
    fn record(&mut self, index: u64) -> (Record, bool) {
        // IEEE multiplication by a positive constant is monotonic, so log time never decreases.
        let log_millis = self.start_millis + (index as f64 * self.step_millis) as i64;
        let (lag, too_late) = self.lag_millis();
        let server = match self.uniform_servers {
            None => self.weighted(&SERVER_WEIGHTS),
            Some(n) => self.below(n) as usize,
        };
        let tx_type = self.weighted(&TX_TYPE_WEIGHTS);
        let status_draw = self.rng.next_u64();
        let status = if status_draw < self.fail {
            STATUS_FAIL
        } else if status_draw < self.fail_or_test {
            STATUS_TEST
        } else {
            STATUS_OK
        };
        let cents = self.amount_cents(tx_type);
        let latency_ms = self.latency_ms();
        // Cubing a uniform draw skews towards low ids: the top 1 % of users make ~20 % of
        // the traffic, the top 10 % nearly half.
        let u = self.unit();
        let user = ((u * u * u * f64::from(self.users)) as u32).min(self.users - 1);
        let record = Record {
            log_millis,
            logged_time: self.log_dates.rfc3339(log_millis),
            event_time: self.event_dates.rfc3339(log_millis - lag),
            server,
            tx_type,
            status,
            cents,
            latency_ms,
            user,
        };
        (record, too_late)
    }

    /// How far event time lags log time: uniform within the bands of [`GenConfig::too_late_ratio`].
    fn lag_millis(&mut self) -> (i64, bool) {
        let band = self.rng.next_u64();
        let (low, high) = if band < self.too_late {
            (MAX_LATENESS_MILLIS + 1, 4 * DAY_MILLIS + 1)
        } else if band < self.lag_under_5s {
            (0, 5 * SECOND_MILLIS)
        } else if band < self.lag_under_1h {
            (5 * SECOND_MILLIS, HOUR_MILLIS)
        } else {
            (HOUR_MILLIS, MAX_LATENESS_MILLIS)
        };
        let lag = low + self.below((high - low) as u64) as i64;
        (lag, low > MAX_LATENESS_MILLIS)
    }

    /// Amount in cents, in the range of [`TX_AMOUNT_CENTS`] for the transaction type.
    fn amount_cents(&mut self, tx_type: usize) -> i64 {
        let (low, high, unit) = TX_AMOUNT_CENTS[tx_type];
        let u = self.unit();
        let shaped = if low < 0 { u } else { u * u };
        let cents = low + ((high - low + 1) as f64 * shaped) as i64;
        cents - cents.rem_euclid(unit)
    }

    /// Log-normal-ish latency: median 40 ms, p95 ~190 ms, and a 1 % tail of 0.5-8 s.
    fn latency_ms(&mut self) -> u32 {
        const MEDIAN_MS: f64 = 40.0;
        const SIGMA: f64 = 0.9;
        const SLOW_SHARE_PER_MILLE: u64 = 10;
        const SQRT_3: f64 = 1.732_050_807_568_877_2;
        let millis = if self.below(1000) < SLOW_SHARE_PER_MILLE {
            // Log-uniform between 500 ms and 8 s (a timeout and its retries): e^(u ln 16).
            500.0 * exp(self.unit() * 4.0 * std::f64::consts::LN_2)
        } else {
            // Irwin-Hall: the sum of four uniforms, centred and scaled, is close to normal.
            let draw = self.rng.next_u64();
            let lanes: u64 = (0..4).map(|i| (draw >> (16 * i)) & 0xFFFF).sum();
            let z = ((lanes as f64 + 2.0) / 65_536.0 - 2.0) * SQRT_3;
            MEDIAN_MS * exp(SIGMA * z)
        };
        ((millis + 0.5) as u32).max(1)
    }

    /// Writes a broken line into `self.line` (without the newline).
    fn write_malformed(&mut self, record: &Record) -> MalformedKind {
        let kind = MalformedKind::ALL[self.below(MalformedKind::ALL.len() as u64) as usize];
        let line = &mut self.line;
        let scratch = &mut self.scratch;
        scratch.clear();
        match kind {
            MalformedKind::Truncated => {
                write_record(line, record, EventTimeField::Valid, false);
                let keep = 1 + self.rng.next_u64() % (line.len() as u64 - 1);
                line.truncate(keep as usize);
            }
            MalformedKind::NotJson => {
                let server_name = server_name(record.server);
                let server = server_name.as_bytes();
                match self.rng.next_u64() % 6 {
                    0 => {
                        // log4j layout: "2024-01-01 00:00:05,123 WARN  [srv-2] ..."
                        line.extend_from_slice(&record.logged_time);
                        line.truncate(line.len() - 1);
                        line[10] = b' ';
                        line[19] = b',';
                        line.extend_from_slice(b" WARN  [");
                        line.extend_from_slice(server);
                        line.extend_from_slice(b"] upstream timed out after ");
                        line.extend_from_slice(
                            itoa::Buffer::new().format(record.latency_ms).as_bytes(),
                        );
                        line.extend_from_slice(b" ms");
                    }
                    1 => {
                        line.extend_from_slice(b"time=");
                        line.extend_from_slice(&record.logged_time);
                        line.extend_from_slice(b" level=error server=");
                        line.extend_from_slice(server);
                        line.extend_from_slice(b" msg=\"connection reset by peer\"");
                    }
                    2 => line.extend_from_slice(
                        b"<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad \
                          Gateway</h1></body></html>",
                    ),
                    3 => line.extend_from_slice(
                        b"thread 'ledger-worker-3' panicked at src/ledger.rs:212:9: attempt to \
                          subtract with overflow",
                    ),
                    4 => line.extend_from_slice(
                        b"\x1b[31mERROR\x1b[0m ledger: connection pool exhausted (64/64 in use)",
                    ),
                    _ => {
                        // A syslog prefix in front of an otherwise good record.
                        line.extend_from_slice(b"Jan  1 00:00:05 ");
                        line.extend_from_slice(server);
                        line.extend_from_slice(b" txlog[812]: ");
                        write_record(line, record, EventTimeField::Valid, false);
                    }
                }
            }
            MalformedKind::MissingEventTime => {
                write_record(line, record, EventTimeField::Missing, false);
            }
            MalformedKind::BadEventTimeFormat => {
                const BAD: [&[u8]; 6] = [
                    b"2024-13-45 99:99",
                    b"",
                    b"yesterday",
                    b"0000-00-00T00:00:00Z",
                    b"2024-02-30T25:61:00Z",
                    b"N/A",
                ];
                match self.rng.next_u64() % (BAD.len() as u64 + 2) {
                    // The right instant in the wrong layout: "2024/01/01 00:00:05".
                    0 => {
                        scratch.extend_from_slice(&record.event_time);
                        scratch.truncate(19);
                        scratch[4] = b'/';
                        scratch[7] = b'/';
                        scratch[10] = b' ';
                    }
                    // No zone: "2024-01-01T00:00:05.123".
                    1 => {
                        scratch.extend_from_slice(&record.event_time);
                        scratch.pop();
                    }
                    i => scratch.extend_from_slice(BAD[i as usize - 2]),
                }
                write_record(line, record, EventTimeField::Text(scratch), false);
            }
            MalformedKind::WrongTypeEventTime => {
                match self.rng.next_u64() % 4 {
                    0 => scratch.extend_from_slice(b"true"),
                    1 => scratch.extend_from_slice(b"null"),
                    // MongoDB extended JSON.
                    2 => {
                        scratch.extend_from_slice(b"{\"$date\":\"");
                        scratch.extend_from_slice(&record.event_time);
                        scratch.extend_from_slice(b"\"}");
                    }
                    _ => {
                        scratch.extend_from_slice(b"[\"");
                        scratch.extend_from_slice(&record.event_time);
                        scratch.extend_from_slice(b"\"]");
                    }
                }
                write_record(line, record, EventTimeField::Raw(scratch), false);
            }
            MalformedKind::AmountAsString => {
                write_record(line, record, EventTimeField::Valid, true);
            }
        }
        kind
    }

    /// Index into `weights` (thousandths summing to 1000).
    fn weighted(&mut self, weights: &[u16]) -> usize {
        let mut draw = self.below(1000) as u16;
        for (i, &w) in weights.iter().enumerate() {
            if draw < w {
                return i;
            }
            draw -= w;
        }
        weights.len() - 1
    }

    /// Uniform in `0..n` (Lemire's multiply-shift; the bias is below 2^-32 for our `n`).
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.rng.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `[0, 1)` with 53 bits.
    fn unit(&mut self) -> f64 {
        (self.rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// Writes one record as JSON (without the newline), with `event_time` as `event_time` says and
/// `amount` as a decimal-comma string when `amount_as_string`.
/// The name of server `index`: `srv-1`, `srv-2`, … (the first three are [`SERVERS`]).
fn server_name(index: usize) -> String {
    format!("srv-{}", index + 1)
}

fn write_record(
    line: &mut Vec<u8>,
    record: &Record,
    event_time: EventTimeField<'_>,
    amount_as_string: bool,
) {
    let mut numbers = itoa::Buffer::new();
    line.push(b'{');
    match event_time {
        EventTimeField::Valid => {
            line.extend_from_slice(b"\"event_time\":\"");
            line.extend_from_slice(&record.event_time);
            line.extend_from_slice(b"\",");
        }
        EventTimeField::Missing => {
            line.extend_from_slice(b"\"ts\":\"");
            line.extend_from_slice(&record.event_time);
            line.extend_from_slice(b"\",");
        }
        EventTimeField::Text(text) => {
            line.extend_from_slice(b"\"event_time\":\"");
            line.extend_from_slice(text);
            line.extend_from_slice(b"\",");
        }
        EventTimeField::Raw(json) => {
            line.extend_from_slice(b"\"event_time\":");
            line.extend_from_slice(json);
            line.push(b',');
        }
    }
    line.extend_from_slice(b"\"logged_time\":\"");
    line.extend_from_slice(&record.logged_time);
    line.extend_from_slice(b"\",\"server\":\"");
    line.extend_from_slice(b"srv-");
    line.extend_from_slice(numbers.format(record.server + 1).as_bytes());
    line.extend_from_slice(b"\",\"tx_type\":\"");
    line.extend_from_slice(TX_TYPES[record.tx_type].as_bytes());
    line.extend_from_slice(b"\",\"status\":\"");
    line.extend_from_slice(record.status.as_bytes());
    line.extend_from_slice(b"\",\"amount\":");
    // Integer cents written as text, so the number always has exactly two decimals.
    if amount_as_string {
        line.push(b'"');
    }
    if record.cents < 0 {
        line.push(b'-');
    }
    let cents = record.cents.unsigned_abs();
    line.extend_from_slice(numbers.format(cents / 100).as_bytes());
    line.push(if amount_as_string { b',' } else { b'.' });
    line.extend_from_slice(&[b'0' + (cents % 100 / 10) as u8, b'0' + (cents % 10) as u8]);
    if amount_as_string {
        line.push(b'"');
    }
    line.extend_from_slice(b",\"latency_ms\":");
    line.extend_from_slice(numbers.format(record.latency_ms).as_bytes());
    line.extend_from_slice(b",\"user_id\":\"u-");
    let user = numbers.format(record.user);
    line.extend(std::iter::repeat_n(b'0', 6usize.saturating_sub(user.len())));
    line.extend_from_slice(user.as_bytes());
    line.extend_from_slice(b"\"}");
}

/// The date part of the last timestamp formatted, so that timestamps of the same day (nearly
/// all consecutive ones) skip the calendar arithmetic.
struct DateCache {
    day: i64,
    date: [u8; 10],
}

impl Default for DateCache {
    fn default() -> Self {
        Self { day: i64::MIN, date: [0; 10] }
    }
}

impl DateCache {
    /// `epoch_millis` as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
    fn rfc3339(&mut self, epoch_millis: i64) -> [u8; 24] {
        let day = epoch_millis.div_euclid(DAY_MILLIS);
        if day != self.day {
            let (year, month, day_of_month) = crate::time::civil_from_days(day);
            let (month, day_of_month) = (month as u32, day_of_month as u32);
            let year = year.clamp(0, 9999) as u32;
            let [y1, y2] = two_digits(year / 100);
            let [y3, y4] = two_digits(year % 100);
            let [m1, m2] = two_digits(month);
            let [d1, d2] = two_digits(day_of_month);
            self.date = [y1, y2, y3, y4, b'-', m1, m2, b'-', d1, d2];
            self.day = day;
        }
        let ms = epoch_millis.rem_euclid(DAY_MILLIS) as u32;
        let mut text = [0; 24];
        text[..10].copy_from_slice(&self.date);
        let [h1, h2] = two_digits(ms / 3_600_000);
        let [mi1, mi2] = two_digits(ms / 60_000 % 60);
        let [s1, s2] = two_digits(ms / 1_000 % 60);
        let [f2, f3] = two_digits(ms % 100);
        let f1 = b'0' + (ms % 1_000 / 100) as u8;
        text[10..]
            .copy_from_slice(&[b'T', h1, h2, b':', mi1, mi2, b':', s1, s2, b'.', f1, f2, f3, b'Z']);
        text
    }
}

/// `v` (below 100) as two ASCII digits.
fn two_digits(v: u32) -> [u8; 2] {
    [b'0' + (v / 10) as u8, b'0' + (v % 10) as u8]
}

/// `p` as a threshold on a uniform `u64` draw: `draw < threshold(p)` with probability `p`.
fn threshold(p: f64) -> u64 {
    // 2^64 is exact in f64, the product rounds the same everywhere, the cast saturates.
    (p * 18_446_744_073_709_551_616.0) as u64
}

/// SplitMix64 spreads the `u64` seed over ChaCha's 256-bit key, so nearby seeds give unrelated
/// streams; done here rather than by `seed_from_u64` so the mapping cannot change under us.
fn expand_seed(seed: u64) -> [u8; 32] {
    let mut state = seed;
    let mut key = [0u8; 32];
    for chunk in key.chunks_exact_mut(8) {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        chunk.copy_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    key
}

/// `e^x` from IEEE-exact operations only, so every platform gets the same bits (the platform
/// `f64::exp` may differ in the last bit between libms). Relative error below 1e-15 for the
/// arguments used here (|x| < 10).
fn exp(x: f64) -> f64 {
    use std::f64::consts::{LN_2, LOG2_E};
    /// 1/n!, the Taylor coefficients of e^r.
    const COEFFICIENTS: [f64; 14] = {
        let mut c = [1.0; 14];
        let mut n = 1;
        while n < 14 {
            c[n] = c[n - 1] / n as f64;
            n += 1;
        }
        c
    };
    // The nearest integer k (casts truncate exactly; `round` may be a libm call).
    let k = (x * LOG2_E + if x < 0.0 { -0.5 } else { 0.5 }) as i64;
    let r = x - k as f64 * LN_2;
    // Horner form of the series for |r| <= ln(2)/2.
    let mut sum = 0.0;
    for c in COEFFICIENTS.iter().rev() {
        sum = sum * r + c;
    }
    let biased = (k + 1023).clamp(1, 2046) as u64;
    sum * f64::from_bits(biased << 52)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, SecondsFormat, Utc};
    use proptest::prelude::*;
    use serde_json::Value;
    use std::sync::OnceLock;

    const SAMPLE_RECORDS: u64 = 200_000;
    const SAMPLE_PARTITIONS: usize = 3;

    /// One generated line, as the tests look at it.
    struct Line {
        partition: usize,
        log_millis: i64,
        malformed: Option<MalformedKind>,
        text: String,
        /// The parsed line, for well-formed ones.
        fields: Option<Value>,
    }

    fn config(records: u64, seed: u64) -> GenConfig {
        GenConfig { records, seed, ..GenConfig::default() }
    }

    fn lines_of(cfg: &GenConfig, partitions: usize) -> Vec<Line> {
        let mut log = LogGenerator::new(cfg, partitions).unwrap();
        let mut lines = Vec::new();
        while let Some(line) = log.next_line() {
            lines.push(Line {
                partition: line.partition,
                log_millis: line.log_millis,
                malformed: line.malformed,
                text: String::from_utf8(line.bytes.to_vec()).unwrap(),
                fields: None,
            });
        }
        lines
    }

    /// The default workload, 200k records over 3 partitions, generated once for all tests.
    fn sample() -> &'static [Line] {
        static SAMPLE: OnceLock<Vec<Line>> = OnceLock::new();
        SAMPLE.get_or_init(|| {
            let mut lines = lines_of(&config(SAMPLE_RECORDS, 7), SAMPLE_PARTITIONS);
            for line in lines.iter_mut().filter(|l| l.malformed.is_none()) {
                line.fields = Some(serde_json::from_str(&line.text).expect(&line.text));
            }
            lines
        })
    }

    fn well_formed() -> impl Iterator<Item = (&'static Line, &'static Value)> {
        sample().iter().filter_map(|l| Some((l, l.fields.as_ref()?)))
    }

    fn share(count: usize, of: usize) -> f64 {
        count as f64 / of as f64
    }

    fn rfc3339(ms: i64) -> String {
        let mut out = Vec::new();
        crate::time::format_rfc3339_millis(ms, &mut out);
        String::from_utf8(out).unwrap()
    }

    fn parse_millis(text: &str) -> Option<i64> {
        DateTime::parse_from_rfc3339(text).ok().map(|t| t.timestamp_millis())
    }

    /// Why the reference job refuses a line, if it does.
    fn rejection(line: &str) -> Option<&'static str> {
        match serde_json::from_str::<Value>(line) {
            Ok(fields) => rejection_of(&fields),
            Err(_) => Some("not JSON"),
        }
    }

    /// Why the reference job refuses a parsed line, if it does.
    fn rejection_of(fields: &Value) -> Option<&'static str> {
        let Value::Object(fields) = fields else {
            return Some("not a JSON object");
        };
        match fields.get("event_time") {
            None => return Some("no event_time"),
            Some(Value::String(t)) if parse_millis(t).is_none() => {
                return Some("event_time not RFC 3339")
            }
            Some(Value::String(_)) => {}
            Some(_) => return Some("event_time not a string"),
        }
        if !fields.get("amount").is_some_and(Value::is_number) {
            return Some("amount not a number");
        }
        None
    }

    #[test]
    fn many_servers_are_drawn_uniformly_and_make_many_small_windows() {
        let cfg = GenConfig { servers: 64, rate_per_sec: 0.5, ..config(20_000, 3) };
        let mut per_server = std::collections::BTreeMap::<String, usize>::new();
        let mut windows = std::collections::HashSet::new();
        for line in lines_of(&cfg, 2).iter().filter(|l| l.malformed.is_none()) {
            let fields: Value = serde_json::from_str(&line.text).unwrap();
            let server = fields["server"].as_str().unwrap().to_owned();
            let minute = parse_millis(fields["event_time"].as_str().unwrap()).unwrap() / 60_000;
            windows.insert((minute, server.clone(), fields["tx_type"].to_string()));
            *per_server.entry(server).or_default() += 1;
        }
        assert_eq!(per_server.len(), 64, "srv-1 .. srv-64: {:?}", per_server.keys());
        assert!(per_server.contains_key("srv-64") && !per_server.contains_key("srv-65"));
        let (low, high) = (per_server.values().min().unwrap(), per_server.values().max().unwrap());
        assert!(*high < 2 * *low, "uniform: {low} .. {high}");
        let records: usize = per_server.values().sum();
        assert!(
            windows.len() * 10 > records * 8,
            "about one record per window: {} windows",
            windows.len()
        );
        let zero = GenConfig { servers: 0, ..config(1, 1) };
        assert!(zero.validate().unwrap_err().to_string().contains("servers"));
    }

    #[test]
    fn formats_known_instants() {
        for (ms, text) in [
            (0, "1970-01-01T00:00:00.000Z"),
            (-1, "1969-12-31T23:59:59.999Z"),
            (1_704_067_205_123, "2024-01-01T00:00:05.123Z"),
            (1_709_210_096_789, "2024-02-29T12:34:56.789Z"),
            (951_782_400_000, "2000-02-29T00:00:00.000Z"),
            (4_107_542_399_999, "2100-02-28T23:59:59.999Z"),
            (RFC3339_MIN_MILLIS, "0000-01-01T00:00:00.000Z"),
            (RFC3339_MAX_MILLIS, "9999-12-31T23:59:59.999Z"),
        ] {
            assert_eq!(rfc3339(ms), text, "{ms}");
        }
    }

    #[test]
    fn formats_every_day_from_1600_to_2400_like_chrono() {
        let first = DateTime::parse_from_rfc3339("1600-01-01T00:00:00Z").unwrap();
        let first_day = first.timestamp_millis().div_euclid(DAY_MILLIS);
        for day in first_day..first_day + 800 * 366 {
            // A different time of day each day, so every field sees many values.
            let ms = day * DAY_MILLIS + (day * 7_919_993).rem_euclid(DAY_MILLIS);
            let expected = DateTime::<Utc>::from_timestamp_millis(ms).unwrap();
            assert_eq!(rfc3339(ms), expected.to_rfc3339_opts(SecondsFormat::Millis, true));
        }
    }

    proptest! {
        #[test]
        fn formats_like_chrono(ms in RFC3339_MIN_MILLIS..=RFC3339_MAX_MILLIS) {
            let expected = DateTime::<Utc>::from_timestamp_millis(ms).unwrap();
            prop_assert_eq!(rfc3339(ms), expected.to_rfc3339_opts(SecondsFormat::Millis, true));
        }
    }

    #[test]
    fn exp_is_as_accurate_as_the_platform_one() {
        for i in -4_000..=10_000 {
            let x = f64::from(i) / 1_000.0;
            let relative = (exp(x) - x.exp()).abs() / x.exp();
            assert!(relative < 1e-15, "exp({x}) off by {relative}");
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_bytes_and_another_seed_others() {
        let run = |seed| {
            let mut outs = vec![Vec::new(); 3];
            generate(&config(20_000, seed), &mut outs).unwrap();
            outs
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
    }

    #[test]
    fn records_do_not_depend_on_the_partition_count() {
        let cfg = config(20_000, 3);
        let one: Vec<String> = lines_of(&cfg, 1).into_iter().map(|l| l.text).collect();
        let four = lines_of(&cfg, 4);
        assert_eq!(
            four.iter().map(|l| &l.text).collect::<Vec<_>>(),
            one.iter().collect::<Vec<_>>()
        );
        for p in 0..4 {
            let n = four.iter().filter(|l| l.partition == p).count();
            assert!((4_000..6_000).contains(&n), "partition {p} has {n} of 20000");
        }
    }

    #[test]
    fn generate_writes_the_generator_lines_and_summarises_them() {
        let cfg = config(SAMPLE_RECORDS, 7);
        let mut outs = vec![Vec::new(); SAMPLE_PARTITIONS];
        let summary = generate(&cfg, &mut outs).unwrap();
        for (p, out) in outs.iter().enumerate() {
            let expected: String =
                sample().iter().filter(|l| l.partition == p).map(|l| l.text.as_str()).collect();
            assert!(out == expected.as_bytes(), "partition {p} differs");
            assert_eq!(summary.per_partition[p], out.split(|&b| b == b'\n').count() as u64 - 1);
        }
        let count = |f: &dyn Fn(&Line) -> bool| sample().iter().filter(|l| f(l)).count() as u64;
        assert_eq!(summary.records(), SAMPLE_RECORDS);
        assert_eq!(summary.malformed, count(&|l| l.malformed.is_some()));
        assert_eq!(
            summary.test_status,
            count(&|l| l.malformed.is_none() && l.text.contains("\"status\":\"test\""))
        );
        let too_late = well_formed()
            .filter(|(l, _)| {
                let event = parse_millis(l.text.split('"').nth(3).unwrap()).unwrap();
                l.log_millis - event > MAX_LATENESS_MILLIS
            })
            .count() as u64;
        assert_eq!(summary.too_late, too_late);
        assert_eq!(summary.first_log_millis, Some(cfg.start_millis));
        // 200 records per second: 200k records span 1000 s of log time.
        assert_eq!(summary.last_log_millis, Some(cfg.start_millis + 999_995));

        let small = config(5_000, 7);
        let mut single = Vec::new();
        let whole = generate_to(&small, &mut single).unwrap();
        assert_eq!(whole.per_partition, vec![5_000]);
        let expected: String = lines_of(&small, 1).into_iter().map(|l| l.text).collect();
        assert!(single == expected.as_bytes());
    }

    #[test]
    fn every_partition_is_ordered_by_log_time() {
        let mut last = [i64::MIN; SAMPLE_PARTITIONS];
        for line in sample() {
            assert!(line.log_millis >= last[line.partition], "{}", line.text);
            last[line.partition] = line.log_millis;
        }
        for (line, fields) in well_formed() {
            let logged = parse_millis(fields["logged_time"].as_str().unwrap());
            assert_eq!(logged, Some(line.log_millis));
        }
    }

    #[test]
    fn shares_match_the_reference_workload() {
        let records = sample().len();
        let malformed = sample().iter().filter(|l| l.malformed.is_some()).count();
        assert!((share(malformed, records) - 0.005).abs() < 0.001, "{malformed}");

        let (mut n, mut fail, mut test) = (0, 0, 0);
        let (mut under_5s, mut under_1h, mut under_3d, mut too_late) = (0, 0, 0, 0);
        for (line, fields) in well_formed() {
            n += 1;
            match fields["status"].as_str().unwrap() {
                STATUS_FAIL => fail += 1,
                STATUS_TEST => test += 1,
                status => assert_eq!(status, STATUS_OK),
            }
            let lag =
                line.log_millis - parse_millis(fields["event_time"].as_str().unwrap()).unwrap();
            match lag {
                0..5_000 => under_5s += 1,
                5_000..HOUR_MILLIS => under_1h += 1,
                HOUR_MILLIS..MAX_LATENESS_MILLIS => under_3d += 1,
                _ if lag <= 4 * DAY_MILLIS => too_late += 1,
                _ => panic!("lag {lag} ms beyond 4 days: {}", line.text),
            }
        }
        assert!((share(fail, n) - 0.03).abs() < 0.003, "fail {fail} of {n}");
        assert!((share(test, n) - 0.005).abs() < 0.001, "test {test} of {n}");
        assert!((share(under_5s, n) - 0.8991).abs() < 0.005, "under 5 s: {under_5s} of {n}");
        assert!((share(under_1h, n) - 0.0899).abs() < 0.003, "under 1 h: {under_1h} of {n}");
        assert!((share(under_3d, n) - 0.0100).abs() < 0.001, "under 3 d: {under_3d} of {n}");
        assert!((share(too_late, n) - 0.001).abs() < 0.0004, "too late: {too_late} of {n}");
    }

    #[test]
    fn well_formed_lines_have_every_field_with_its_type() {
        for (line, fields) in well_formed() {
            let text = &line.text;
            assert_eq!(rejection_of(fields), None, "{text}");
            assert_eq!(text.matches('\n').count(), 1, "{text}");
            for key in ["event_time", "logged_time"] {
                let t = fields[key].as_str().unwrap();
                assert_eq!(rfc3339(parse_millis(t).unwrap()), t, "{key} in {text}");
            }
            assert!(SERVERS.contains(&fields["server"].as_str().unwrap()), "{text}");
            assert!(TX_TYPES.contains(&fields["tx_type"].as_str().unwrap()), "{text}");
            assert!(fields["latency_ms"].as_u64().unwrap() >= 1, "{text}");
            let user = fields["user_id"].as_str().unwrap().strip_prefix("u-").unwrap();
            assert!(user.len() >= 6 && user.parse::<u32>().unwrap() < 50_000, "{text}");
            // The amount's text has exactly two decimals, as money does.
            let amount = text.split("\"amount\":").nth(1).unwrap().split(',').next().unwrap();
            let (whole, decimals) = amount.trim_start_matches('-').split_once('.').unwrap();
            assert!(whole.parse::<u64>().is_ok() && decimals.len() == 2, "{text}");
            assert!(fields["amount"].is_f64(), "{text}");
        }
    }

    #[test]
    fn malformed_lines_are_rejected_and_of_every_kind() {
        let mut seen = std::collections::HashSet::new();
        for line in sample().iter().filter(|l| l.malformed.is_some()) {
            let text = &line.text;
            assert!(text.len() > 1 && text.ends_with('\n'), "{text:?}");
            assert_eq!(text.matches('\n').count(), 1, "{text:?}");
            assert!(rejection(text).is_some(), "{:?} accepted: {text}", line.malformed);
            seen.insert(line.malformed.unwrap());
        }
        assert_eq!(seen.len(), MalformedKind::ALL.len(), "{seen:?}");
    }

    #[test]
    fn values_are_skewed_like_real_traffic() {
        let mut latencies = Vec::new();
        let mut per_user = vec![0u32; 50_000];
        let mut per_tx_type = [0u32; TX_TYPES.len()];
        let mut negative_amounts = 0;
        for (_, fields) in well_formed() {
            latencies.push(fields["latency_ms"].as_u64().unwrap());
            let user = &fields["user_id"].as_str().unwrap()[2..];
            per_user[user.parse::<usize>().unwrap()] += 1;
            let tx = fields["tx_type"].as_str().unwrap();
            per_tx_type[TX_TYPES.iter().position(|&t| t == tx).unwrap()] += 1;
            negative_amounts += usize::from(fields["amount"].as_f64().unwrap() < 0.0);
        }
        latencies.sort_unstable();
        let quantile = |q: f64| latencies[(q * (latencies.len() - 1) as f64) as usize];
        assert!((36..=44).contains(&quantile(0.5)), "median {}", quantile(0.5));
        assert!((120..=300).contains(&quantile(0.95)), "p95 {}", quantile(0.95));
        assert!((2_000..=8_000).contains(&quantile(1.0)), "max {}", quantile(1.0));

        per_user.sort_unstable_by(|a, b| b.cmp(a));
        let top_1_percent: u32 = per_user[..500].iter().sum();
        let all: u32 = per_user.iter().sum();
        assert!(share(top_1_percent as usize, all as usize) > 0.15, "{top_1_percent}");

        let most = per_tx_type.iter().max().unwrap();
        assert_eq!(most, &per_tx_type[0], "payments dominate: {per_tx_type:?}");
        assert!(per_tx_type.iter().all(|&n| n > 0), "{per_tx_type:?}");
        assert!(negative_amounts > 0);
    }

    #[test]
    fn refuses_configs_it_cannot_honour() {
        let refused = |cfg: GenConfig| {
            let err = generate(&cfg, &mut [Vec::new()]).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{cfg:?}");
        };
        refused(GenConfig { rate_per_sec: 0.0, ..config(10, 1) });
        refused(GenConfig { rate_per_sec: f64::NAN, ..config(10, 1) });
        refused(GenConfig { malformed_ratio: 1.5, ..config(10, 1) });
        refused(GenConfig { too_late_ratio: -0.1, ..config(10, 1) });
        refused(GenConfig { fail_ratio: 0.7, test_ratio: 0.7, ..config(10, 1) });
        refused(GenConfig { users: 0, ..config(10, 1) });
        refused(GenConfig { start_millis: RFC3339_MAX_MILLIS - 1_000, ..config(10_000, 1) });
        let no_outputs: &mut [Vec<u8>] = &mut [];
        assert!(generate(&config(10, 1), no_outputs).is_err());
        assert_eq!(generate_to(&config(0, 1), Vec::new()).unwrap().records(), 0);
    }
}
