//! The batch reference of the reference job (tx-stats), computed directly from raw lines and
//! written independently of the engine: what a batch query over the same records returns.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value as Json;

/// maxLateness of the reference job.
pub const LATENESS_MS: i64 = 3 * 86_400_000;
/// Tumbling window size of the reference job.
pub const WINDOW_MS: i64 = 60_000;

/// Expected aggregates of one window and key.
#[derive(Debug, Default, Clone)]
pub struct Expected {
    /// tx_count.
    pub count: u64,
    /// amount_sum in fixed point (2^-80 units): exact.
    pub amount_fixed: i128,
    /// latency_min.
    pub lat_min: i64,
    /// latency_max.
    pub lat_max: i64,
    /// Sum of latencies (for latency_avg).
    pub lat_sum: i64,
    /// failures.
    pub failures: u64,
    /// Distinct user ids.
    pub users: BTreeSet<String>,
    /// Every latency (for the p95).
    pub latencies: Vec<i64>,
}

/// What the batch query makes of one line, in the documented order of checks: JSON, log time,
/// event time, lateness, filter, group key, aggregate inputs.
enum Verdict {
    Dead(&'static str),
    Late,
    Filtered,
    Folded(i64, String, String, Json),
}

fn millis(v: Option<&Json>) -> Result<i64, &'static str> {
    match v {
        None | Some(Json::Null) => Err("missing_field"),
        Some(Json::String(s)) => DateTime::parse_from_rfc3339(s)
            .map(|t| t.timestamp_millis())
            .map_err(|_| "bad_timestamp"),
        Some(_) => Err("wrong_type"),
    }
}

fn judge(line: &str, record_time: Option<i64>, drop_failures: bool) -> Verdict {
    let Ok(v) = serde_json::from_str::<Json>(line) else { return Verdict::Dead("malformed_json") };
    if !v.is_object() {
        return Verdict::Dead("not_an_object");
    }
    let log = match record_time.map_or_else(|| millis(v.get("logged_time")), Ok) {
        Ok(t) => t,
        Err(r) => return Verdict::Dead(r),
    };
    let event = match millis(v.get("event_time")) {
        Ok(t) => t,
        Err(r) => return Verdict::Dead(r),
    };
    if log - event > LATENESS_MS {
        return Verdict::Late;
    }
    match v.get("status") {
        Some(Json::String(s)) if s == "test" => return Verdict::Filtered,
        Some(Json::String(s)) if drop_failures && s == "fail" => return Verdict::Filtered,
        Some(Json::String(_)) => {}
        _ => return Verdict::Dead("expression_error"),
    }
    let key = |f: &str| match v.get(f) {
        Some(Json::String(s)) => Ok(s.clone()),
        _ => Err("wrong_type"),
    };
    let (server, tx_type) = match (key("server"), key("tx_type")) {
        (Ok(a), Ok(b)) => (a, b),
        _ => return Verdict::Dead("wrong_type"),
    };
    // Aggregates skip absent values (SQL NULL semantics) and refuse present ones of a wrong type.
    let not_number = |f: &str| v.get(f).is_some_and(|x| !x.is_null() && !x.is_number());
    let not_scalar = |f: &str| v.get(f).is_some_and(|x| x.is_array() || x.is_object());
    if not_number("amount") || not_number("latency_ms") || not_scalar("user_id") {
        return Verdict::Dead("wrong_type");
    }
    Verdict::Folded(event, server, tx_type, v)
}

fn fixed(x: f64) -> i128 {
    (x * 2f64.powi(80)) as i128
}

/// RFC 3339 UTC with milliseconds, as documents carry window bounds.
pub fn rfc3339(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms).unwrap().to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The reference result over a retained log.
#[derive(Debug, Default)]
pub struct Reference {
    /// Expected aggregates per (window start, server, tx_type).
    pub windows: BTreeMap<(i64, String, String), Expected>,
    /// Expected dead letters: (partition, offset) → reason code.
    pub dead: HashMap<(u32, i64), &'static str>,
    /// Late-dropped records.
    pub late: u64,
    /// Filtered records.
    pub filtered: u64,
    /// Highest log time in the log.
    pub max_log: i64,
}

impl Reference {
    /// Computes the reference over `partitions` (lines in offset order, one list per
    /// partition), log time from the `logged_time` field.
    pub fn compute(partitions: &[Vec<String>]) -> Self {
        Self::compute_with(partitions, None)
    }

    /// [`Self::compute`] for the job whose filter also drops failed transactions
    /// (`status != 'test' && status != 'fail'`, the "v1" of the blue/green tests).
    pub fn compute_without_failures(partitions: &[Vec<String>]) -> Self {
        Self::compute_filtered(partitions, None, true)
    }

    /// [`Self::compute`] with log time from the records' Kafka timestamps when given (a job
    /// without `pipeline.logTime`).
    pub fn compute_with(partitions: &[Vec<String>], record_times: Option<&[Vec<i64>]>) -> Self {
        Self::compute_filtered(partitions, record_times, false)
    }

    fn compute_filtered(
        partitions: &[Vec<String>],
        record_times: Option<&[Vec<i64>]>,
        drop_failures: bool,
    ) -> Self {
        let mut r = Reference { max_log: i64::MIN, ..Reference::default() };
        for (p, lines) in partitions.iter().enumerate() {
            for (offset, line) in lines.iter().enumerate() {
                let record_time = record_times.map(|t| t[p][offset]);
                match record_time {
                    Some(t) => r.max_log = r.max_log.max(t),
                    None => {
                        if let Ok(v) = serde_json::from_str::<Json>(line) {
                            if let Ok(t) = millis(v.get("logged_time")) {
                                r.max_log = r.max_log.max(t);
                            }
                        }
                    }
                }
                match judge(line, record_time, drop_failures) {
                    Verdict::Dead(reason) => {
                        r.dead.insert((p as u32, offset as i64), reason);
                    }
                    Verdict::Late => r.late += 1,
                    Verdict::Filtered => r.filtered += 1,
                    Verdict::Folded(event, server, tx_type, v) => {
                        let start = event.div_euclid(WINDOW_MS) * WINDOW_MS;
                        let e = r.windows.entry((start, server, tx_type)).or_insert_with(|| {
                            Expected { lat_min: i64::MAX, lat_max: i64::MIN, ..Expected::default() }
                        });
                        let latency = v["latency_ms"].as_i64().unwrap();
                        e.count += 1;
                        e.amount_fixed += fixed(v["amount"].as_f64().unwrap());
                        e.lat_min = e.lat_min.min(latency);
                        e.lat_max = e.lat_max.max(latency);
                        e.lat_sum += latency;
                        e.failures += u64::from(v["status"] == "fail");
                        e.users.insert(v["user_id"].as_str().unwrap().to_string());
                        e.latencies.push(latency);
                    }
                }
            }
        }
        r
    }

    /// Asserts that `docs` (in any order) are exactly the reference windows: exact count, sum,
    /// min, max, avg and failures; distinct users within 3% (HLL standard error 0.81%); p95
    /// within 1%; `final` as the log's end decides. Returns the worst distinct-count error.
    pub fn assert_documents(&self, docs: &[Json]) -> f64 {
        let mut docs: Vec<&Json> = docs.iter().collect();
        docs.sort_by(|a, b| {
            let key = |d: &Json| {
                (
                    d["window_start"].as_str().unwrap_or_default().to_owned(),
                    d["server"].as_str().unwrap_or_default().to_owned(),
                    d["tx_type"].as_str().unwrap_or_default().to_owned(),
                )
            };
            key(a).cmp(&key(b))
        });
        assert_eq!(docs.len(), self.windows.len(), "one document per window and key");
        let mut worst_users: f64 = 0.0;
        for (doc, ((start, server, tx_type), e)) in docs.iter().zip(&self.windows) {
            let ctx = format!("{doc}");
            assert_eq!(doc["window_start"], Json::from(rfc3339(*start)), "sorted: {ctx}");
            assert_eq!(doc["window_end"], Json::from(rfc3339(start + WINDOW_MS)), "{ctx}");
            assert_eq!(doc["server"], Json::from(server.as_str()), "{ctx}");
            assert_eq!(doc["tx_type"], Json::from(tx_type.as_str()), "{ctx}");
            assert_eq!(doc["tx_count"].as_u64(), Some(e.count), "{ctx}");
            let sum = (e.amount_fixed as f64) * 2f64.powi(-80);
            assert_eq!(doc["amount_sum"].as_f64(), Some(sum), "{ctx}");
            assert_eq!(doc["latency_min"].as_i64(), Some(e.lat_min), "{ctx}");
            assert_eq!(doc["latency_max"].as_i64(), Some(e.lat_max), "{ctx}");
            assert_eq!(
                doc["latency_avg"].as_f64(),
                Some(e.lat_sum as f64 / e.count as f64),
                "{ctx}"
            );
            assert_eq!(doc["failures"].as_u64(), Some(e.failures), "{ctx}");
            let n = e.users.len() as f64;
            let err = (doc["users"].as_f64().unwrap() - n).abs() / n;
            worst_users = worst_users.max(err);
            assert!(err <= 0.03, "distinct users within 3%: {ctx} vs {n}");
            let mut lat = e.latencies.clone();
            lat.sort_unstable();
            // SQL's percentile_disc(0.95): the value at 1-based rank ⌈0.95·n⌉.
            let rank = ((0.95 * lat.len() as f64).ceil() as usize).clamp(1, lat.len());
            let exact = lat[rank - 1] as f64;
            let p95 = doc["latency_p95"].as_f64().unwrap();
            assert!((p95 - exact).abs() <= 0.01 * exact + 1e-9, "p95 within 1% of {exact}: {ctx}");
            let fin = self.max_log >= start + WINDOW_MS + LATENESS_MS;
            assert_eq!(doc["final"], Json::Bool(fin), "{ctx}");
        }
        worst_users
    }
}
