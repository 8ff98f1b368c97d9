//! `kappa status`: the job's versions, conditions and live version as the operator reports them,
//! and for a replaying version its progress with a rate and an ETA measured between polls.

use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use kappa_crds::{PromotionMode, StreamJob, VersionPhase, VersionStatus};
use kappa_operator::names::ANNOTATION_APPROVE;
use kube::{Api, Client};

use super::{fetch, job_ref, rows};

/// How replay progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressDisplay {
    /// An animated progress bar per replaying version (stdout is a terminal).
    Bar,
    /// One plain text line per replaying version and poll (scripts, pipes, tests).
    Lines,
}

/// Options of [`status`].
#[derive(Debug, Clone)]
pub struct StatusOptions {
    /// Keep polling until interrupted or until no version replays any more.
    pub watch: bool,
    /// Time between polls.
    pub interval: Duration,
    /// Bars or plain lines.
    pub display: ProgressDisplay,
}

/// A status that has not changed for this long means the replay (or the operator) is stuck,
/// not that the operator has yet to refresh it (it does so every 5 s while a version replays).
const STALL_AFTER: Duration = Duration::from_secs(30);
/// Progress text of a version whose engine has not reported offsets yet.
const NO_OFFSETS_YET: &str = "no offsets reported yet (the engine is starting)";
/// The rate is measured over at most this much history, so it follows changes in speed.
const RATE_WINDOW: Duration = Duration::from_secs(60);

/// `kappa status JOB`: prints the table, then the progress of each replaying version. Without
/// `watch` it polls a second time `interval` later to measure the rate; with `watch` it keeps
/// polling until no version that was replaying still is (or Ctrl-C), then prints the table
/// again.
pub async fn status(
    client: Client,
    ns: &str,
    name: &str,
    options: &StatusOptions,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let api: Api<StreamJob> = Api::namespaced(client, ns);
    let job = fetch(&api, ns, name).await?;
    write!(out, "{}", format_status(&job, Utc::now()))?;
    out.flush()?;
    let replaying: Vec<String> =
        rows(&job).iter().filter(|r| is_replaying(r.phase)).map(|r| r.version.clone()).collect();
    if replaying.is_empty() {
        return Ok(());
    }
    let max_lag = job.spec.promotion.max_lag;
    let mut rates = RateTracker::default();
    rates.observe(Instant::now(), &job);
    let bars = Bars::new(options.display, &job, &replaying);

    // One listener for the whole watch, so a Ctrl-C during a request is not lost; it is only
    // polled (and SIGINT only taken over) when watching.
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    let mut latest = job;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(options.interval) => {}
            _ = &mut interrupted, if options.watch => break,
        }
        latest = fetch(&api, ns, name).await?;
        let now = Instant::now();
        rates.observe(now, &latest);
        for version in &replaying {
            let Some(row) = rows(&latest).iter().find(|r| &r.version == version) else {
                continue;
            };
            let rate = rates.rate(version, now);
            match bars.get(version) {
                Some(bar) => show_bar(bar, row, &rate, max_lag),
                None => writeln!(out, "{}", progress_line(row, &rate, max_lag))?,
            }
        }
        let still =
            rows(&latest).iter().any(|r| replaying.contains(&r.version) && is_replaying(r.phase));
        if !options.watch || !still {
            break;
        }
    }
    bars.finish();
    if options.watch {
        writeln!(out)?;
        write!(out, "{}", format_status(&latest, Utc::now()))?;
    }
    out.flush().context("cannot write to standard output")
}

/// A version whose index is still being filled.
fn is_replaying(phase: VersionPhase) -> bool {
    matches!(phase, VersionPhase::Pending | VersionPhase::Replaying)
}

/// The progress bars of [`ProgressDisplay::Bar`], one per replaying version.
struct Bars {
    multi: Option<MultiProgress>,
    bars: BTreeMap<String, ProgressBar>,
}

impl Bars {
    /// Bars for `versions`, drawn with their state in `job` (the first poll).
    fn new(display: ProgressDisplay, job: &StreamJob, versions: &[String]) -> Self {
        if display == ProgressDisplay::Lines {
            return Self { multi: None, bars: BTreeMap::new() };
        }
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stdout());
        let style = ProgressStyle::with_template(
            "{prefix} [{bar:30}] {percent:>3}% {pos}/{len} offsets, {msg}",
        )
        .expect("static template")
        .progress_chars("=> ");
        let bars = rows(job)
            .iter()
            .filter(|r| versions.contains(&r.version))
            .map(|row| {
                // Set up before it is added, so the first frame drawn is complete.
                let bar = ProgressBar::hidden().with_style(style.clone());
                show_bar(&bar, row, &Rate::Measuring, job.spec.promotion.max_lag);
                (row.version.clone(), multi.add(bar))
            })
            .collect();
        Self { multi: Some(multi), bars }
    }

    fn get(&self, version: &str) -> Option<&ProgressBar> {
        self.bars.get(version)
    }

    /// Leaves the last state of every bar on screen.
    fn finish(self) {
        for bar in self.bars.values() {
            bar.abandon();
        }
        drop(self.multi);
    }
}

fn show_bar(bar: &ProgressBar, row: &VersionStatus, rate: &Rate, max_lag: i64) {
    bar.set_prefix(format!("{} {:?}", row.version, row.phase));
    if let (Some(consumed), Some(head)) = (row.consumed_offsets, row.head_offsets) {
        bar.set_length(head.max(0) as u64);
        bar.set_position(consumed.clamp(0, head.max(0)) as u64);
        bar.set_message(rate_text(row, rate, max_lag));
    } else {
        bar.unset_length();
        bar.set_message(NO_OFFSETS_YET);
    }
}

/// The replay rate of one version as far as the polls so far tell.
#[derive(Debug, Clone, PartialEq)]
pub enum Rate {
    /// One poll so far.
    Measuring,
    /// The status has not changed for this long (no rate yet, or the replay is stuck).
    Unchanged(Duration),
    /// Measured between two polls that saw different offsets.
    Measured {
        /// Offsets consumed per second.
        consumed_per_sec: f64,
        /// How fast the lag shrinks per second (consumption minus the topic's growth).
        closing_per_sec: f64,
    },
}

/// One version's offsets as first seen at one poll.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Sample {
    at: Instant,
    consumed: i64,
    lag: i64,
}

/// Replay rates measured across polls. Only changed offsets are recorded, each with the time
/// they were first seen: the operator refreshes the status every few seconds, and a poll that
/// sees the same offsets again says nothing about the rate.
#[derive(Debug, Default)]
pub struct RateTracker {
    samples: BTreeMap<String, VecDeque<Sample>>,
    last_poll: Option<Instant>,
}

impl RateTracker {
    /// Records the offsets of every version of `job` polled at `at`.
    pub fn observe(&mut self, at: Instant, job: &StreamJob) {
        self.last_poll = Some(at);
        for row in rows(job) {
            let (Some(consumed), Some(lag)) = (row.consumed_offsets, lag_of(row)) else {
                continue;
            };
            let samples = self.samples.entry(row.version.clone()).or_default();
            if samples.back().is_some_and(|s| s.consumed == consumed && s.lag == lag) {
                continue;
            }
            samples.push_back(Sample { at, consumed, lag });
            while samples.len() > 2 && samples[1].at + RATE_WINDOW < at {
                samples.pop_front();
            }
        }
    }

    /// The rate of `version` as of the poll at `now`.
    pub fn rate(&self, version: &str, now: Instant) -> Rate {
        let Some(samples) = self.samples.get(version) else {
            return Rate::Measuring;
        };
        let (Some(first), Some(last)) = (samples.front(), samples.back()) else {
            return Rate::Measuring;
        };
        let unchanged = now.saturating_duration_since(last.at);
        if samples.len() < 2 || unchanged > STALL_AFTER {
            return if unchanged.is_zero() { Rate::Measuring } else { Rate::Unchanged(unchanged) };
        }
        let secs = last.at.duration_since(first.at).as_secs_f64();
        Rate::Measured {
            consumed_per_sec: (last.consumed - first.consumed) as f64 / secs,
            closing_per_sec: (first.lag - last.lag) as f64 / secs,
        }
    }
}

/// The lag of a row: its `lag`, or head minus consumed offsets.
fn lag_of(row: &VersionStatus) -> Option<i64> {
    row.lag.or_else(|| Some(row.head_offsets? - row.consumed_offsets?))
}

/// Time until `lag` records are gone at `closing_per_sec`; `None` when the lag does not shrink.
///
/// ```
/// use std::time::Duration;
/// use kappa_cli::cluster::status::eta;
/// assert_eq!(eta(50_000, 1_000.0), Some(Duration::from_secs(50)));
/// assert_eq!(eta(50_000, -5.0), None);
/// ```
pub fn eta(lag: i64, closing_per_sec: f64) -> Option<Duration> {
    if lag <= 0 {
        return Some(Duration::ZERO);
    }
    if closing_per_sec.is_nan() || closing_per_sec <= 0.0 {
        return None;
    }
    Duration::try_from_secs_f64(lag as f64 / closing_per_sec).ok()
}

/// The rate and ETA part of a progress report: the ETA is until the lag is within
/// `promotion.maxLag`, the first half of the caught-up rule.
fn rate_text(row: &VersionStatus, rate: &Rate, max_lag: i64) -> String {
    let lag = lag_of(row);
    let lag_text = lag.map_or("lag -".to_string(), |l| format!("lag {l}"));
    let rate_text = match rate {
        Rate::Measuring => "rate: measuring".to_string(),
        Rate::Unchanged(d) => {
            format!("rate: measuring (status unchanged for {})", format_duration(*d))
        }
        Rate::Measured { consumed_per_sec, closing_per_sec } => {
            let remaining = lag.map_or(0, |l| (l - max_lag).max(0));
            let eta = match eta(remaining, *closing_per_sec) {
                Some(d) => format!("eta {}", format_duration(d)),
                None => "eta: none, the lag is not shrinking".to_string(),
            };
            format!("{consumed_per_sec:.0} records/s, {eta}")
        }
    };
    format!("{lag_text}, {rate_text}")
}

/// One plain line of replay progress:
/// `v2 Replaying: 1200/5000 offsets (24.0%), lag 3800, 520 records/s, eta 7s`.
pub fn progress_line(row: &VersionStatus, rate: &Rate, max_lag: i64) -> String {
    let head = format!("{} {:?}", row.version, row.phase);
    match (row.consumed_offsets, row.head_offsets) {
        (Some(consumed), Some(total)) => {
            let percent = if total > 0 { consumed as f64 * 100.0 / total as f64 } else { 100.0 };
            format!(
                "{head}: {consumed}/{total} offsets ({percent:.1}%), {}",
                rate_text(row, rate, max_lag)
            )
        }
        _ => format!("{head}: {NO_OFFSETS_YET}"),
    }
}

/// The header, the version table, the conditions and what the user may want to do next.
pub fn format_status(job: &StreamJob, now: DateTime<Utc>) -> String {
    let name = job.metadata.name.as_deref().unwrap_or("<job>");
    let alias = &job.spec.sink.elasticsearch.alias;
    let mode = match job.spec.promotion.mode {
        PromotionMode::Auto => "auto",
        PromotionMode::Manual => "manual",
    };
    let Some(status) = &job.status else {
        return format!(
            "StreamJob {}: spec.version {}, alias {alias}, promotion {mode}\nno status yet: the \
             operator has not reconciled it (is kappa-operator running?)\n",
            job_ref(job),
            job.spec.version
        );
    };
    let live = status.live_version.as_deref();
    let mut text = format!(
        "StreamJob {}: spec.version {}, live {}, alias {alias}, promotion {mode}\n",
        job_ref(job),
        job.spec.version,
        live.unwrap_or("none")
    );
    if let Some(pin) = &job.spec.active_version {
        text.push_str(&format!(
            "spec.activeVersion pins the alias to {pin} (`kappa promote {name}` returns it to \
             spec.version {})\n",
            job.spec.version
        ));
    }

    let version_rows: Vec<Vec<String>> = status
        .versions
        .iter()
        .map(|r| {
            vec![
                r.version.clone(),
                format!("{:?}", r.phase),
                if live == Some(r.version.as_str()) { "*".into() } else { String::new() },
                lag_of(r).map_or("-".into(), |l| l.to_string()),
                r.index_lag.map_or("-".into(), |l| l.to_string()),
                r.backlog.map_or("-".into(), |b| b.to_string()),
                match r.current {
                    Some(true) => "yes".into(),
                    Some(false) => "no".into(),
                    None => "-".into(),
                },
                r.watermark.clone().unwrap_or_else(|| "-".into()),
                age(r.started_at.as_deref(), now),
                r.message.clone().unwrap_or_default(),
            ]
        })
        .collect();
    if version_rows.is_empty() {
        text.push_str("no versions reported yet\n");
    } else {
        text.push_str(&table(
            &[
                "VERSION",
                "PHASE",
                "LIVE",
                "LAG",
                "INDEX LAG",
                "BACKLOG",
                "CURRENT",
                "WATERMARK",
                "AGE",
                "MESSAGE",
            ],
            &version_rows,
        ));
    }
    if let Some(row) = status.versions.iter().find(|r| Some(r.version.as_str()) == live) {
        if row.current == Some(false) {
            text.push_str(&format!(
                "the live version {} is catching up: {}; readers see its index as of the \
                 records it has written (watermark {})\n",
                row.version,
                behind_text(row),
                row.watermark.as_deref().unwrap_or("unknown")
            ));
        }
    }

    let condition_rows: Vec<Vec<String>> = status
        .conditions
        .iter()
        .map(|c| {
            vec![c.type_.clone(), format!("{:?}", c.status), c.reason.clone(), c.message.clone()]
        })
        .collect();
    if condition_rows.is_empty() {
        text.push_str("no conditions reported yet\n");
    } else {
        text.push_str(&table(&["CONDITION", "STATUS", "REASON", "MESSAGE"], &condition_rows));
    }

    let approved = job.metadata.annotations.as_ref().and_then(|a| a.get(ANNOTATION_APPROVE));
    let waiting = status.versions.iter().any(|r| {
        r.version == job.spec.version
            && r.phase == VersionPhase::CaughtUp
            && job.spec.promotion.mode == PromotionMode::Manual
            && approved != Some(&r.version)
    });
    if waiting {
        text.push_str(&format!(
            "{} is caught up and waits for approval: kappa promote {name}\n",
            job.spec.version
        ));
    }
    text
}

/// How far a version is behind the head, from its row: records, records not in its index yet,
/// documents to write and log time, as far as they are known.
///
/// ```
/// use kappa_cli::cluster::status::behind_text;
/// let mut row = kappa_crds::VersionStatus::pending("v1", "tx-stats-v1".into());
/// row.lag = Some(720_000);
/// row.delay_seconds = Some(7_200);
/// assert_eq!(behind_text(&row), "720000 records and 2h00m of log time behind the head");
/// ```
pub fn behind_text(row: &VersionStatus) -> String {
    let mut parts = Vec::new();
    if let Some(lag) = lag_of(row) {
        parts.push(format!("{lag} records"));
    }
    if let Some(delay) = row.delay_seconds {
        parts.push(format!(
            "{} of log time",
            format_duration(Duration::from_secs(delay.max(0) as u64))
        ));
    }
    let mut text = if parts.is_empty() {
        "how far it is behind is not known yet".to_owned()
    } else {
        format!("{} behind the head", parts.join(" and "))
    };
    if let (Some(index_lag), Some(backlog)) = (row.index_lag, row.backlog) {
        if index_lag > lag_of(row).unwrap_or(0) || backlog > 0 {
            text.push_str(&format!(
                ", {backlog} documents to write ({index_lag} records not in its index yet)"
            ));
        }
    }
    text
}

/// Left-aligned columns two spaces apart (the last one unpadded), like `kubectl get`.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 < row.len() {
                line.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            } else {
                line.push_str(cell);
            }
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

/// How long ago an RFC 3339 time was, or `-`.
fn age(since: Option<&str>, now: DateTime<Utc>) -> String {
    since
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .and_then(|t| (now - t.with_timezone(&Utc)).to_std().ok())
        .map_or("-".into(), format_duration)
}

/// A compact duration: `250ms`, `45s`, `3m12s`, `2h05m`, `3d04h`.
///
/// ```
/// use std::time::Duration;
/// use kappa_cli::cluster::status::format_duration;
/// assert_eq!(format_duration(Duration::from_secs(192)), "3m12s");
/// assert_eq!(format_duration(Duration::from_secs(7500)), "2h05m");
/// ```
pub fn format_duration(d: Duration) -> String {
    if d < Duration::from_secs(1) && !d.is_zero() {
        return format!("{}ms", d.as_millis());
    }
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86400, s % 86400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::cluster::fixture::{job, row};
    use kappa_crds::{Condition, ConditionStatus};
    use VersionPhase::*;

    fn replaying(consumed: i64, head: i64) -> VersionStatus {
        let mut r = row("v2", Replaying);
        r.consumed_offsets = Some(consumed);
        r.head_offsets = Some(head);
        r.lag = Some(head - consumed);
        r
    }

    #[test]
    fn the_table_lists_every_version_with_the_live_marker_and_the_conditions() {
        let mut v1 = row("v1", Live);
        v1.lag = Some(12);
        v1.index_lag = Some(40);
        v1.backlog = Some(3);
        v1.current = Some(true);
        v1.watermark = Some("2026-03-01T11:59:00Z".into());
        v1.started_at = Some("2026-03-01T10:00:00Z".into());
        let mut v0 = row("v0", Failed);
        v0.message = Some("replay refused: partition 0 starts at 500".into());
        let mut j = job("v2", vec![v0, v1, replaying(1200, 5000)]);
        j.status.as_mut().unwrap().conditions = vec![Condition {
            type_: "Ready".into(),
            status: ConditionStatus::True,
            observed_generation: None,
            last_transition_time: "2026-03-01T10:05:00Z".into(),
            reason: "Live".into(),
            message: "alias tx-stats serves tx-stats-v1".into(),
        }];
        let now = "2026-03-01T12:05:00Z".parse().unwrap();
        let text = format_status(&j, now);
        let expected = "\
StreamJob payments/tx-stats: spec.version v2, live v1, alias tx-stats, promotion auto
VERSION  PHASE      LIVE  LAG   INDEX LAG  BACKLOG  CURRENT  WATERMARK             AGE    MESSAGE
v0       Failed           -     -          -        -        -                     -      replay refused: partition 0 starts at 500
v1       Live       *     12    40         3        yes      2026-03-01T11:59:00Z  2h05m
v2       Replaying        3800  -          -        -        -                     -
CONDITION  STATUS  REASON  MESSAGE
Ready      True    Live    alias tx-stats serves tx-stats-v1
";
        assert_eq!(text, expected);
    }

    #[test]
    fn a_live_version_that_is_catching_up_says_how_far_behind_it_is() {
        let mut v1 = row("v1", Live);
        v1.lag = Some(5_000);
        v1.index_lag = Some(9_000);
        v1.backlog = Some(1_200);
        v1.delay_seconds = Some(150);
        v1.current = Some(false);
        v1.watermark = Some("2026-03-01T11:00:00.000Z".into());
        let mut j = job("v2", vec![v1, row("v2", RolledBack)]);
        j.status.as_mut().unwrap().live_version = Some("v1".into());
        let text = format_status(&j, Utc::now());
        assert!(
            text.contains(
                "the live version v1 is catching up: 5000 records and 2m30s of log time behind \
                 the head, 1200 documents to write (9000 records not in its index yet); readers \
                 see its index as of the records it has written (watermark \
                 2026-03-01T11:00:00.000Z)"
            ),
            "{text}"
        );
        j.status.as_mut().unwrap().versions[0].current = Some(true);
        assert!(!format_status(&j, Utc::now()).contains("catching up"));
    }

    #[test]
    fn a_pin_and_a_version_waiting_for_approval_are_pointed_out() {
        let mut j = job("v2", vec![row("v1", Live), row("v2", CaughtUp)]);
        j.spec.promotion.mode = PromotionMode::Manual;
        j.spec.active_version = Some("v1".into());
        let text = format_status(&j, Utc::now());
        assert!(text.contains("spec.activeVersion pins the alias to v1"), "{text}");
        assert!(text.contains("v2 is caught up and waits for approval: kappa promote tx-stats"));
        j.metadata.annotations = Some([(ANNOTATION_APPROVE.to_string(), "v2".to_string())].into());
        assert!(!format_status(&j, Utc::now()).contains("waits for approval"));
    }

    #[test]
    fn a_job_without_status_says_the_operator_has_not_reconciled_it() {
        let mut j = job("v1", vec![]);
        j.status = None;
        assert!(format_status(&j, Utc::now()).contains("no status yet"));
    }

    #[test]
    fn eta_divides_the_lag_by_the_rate_it_closes_at() {
        assert_eq!(eta(0, 0.0), Some(Duration::ZERO));
        assert_eq!(eta(3000, 100.0), Some(Duration::from_secs(30)));
        assert_eq!(eta(3000, 0.0), None);
        assert_eq!(eta(3000, f64::NAN), None);
    }

    #[test]
    fn the_rate_is_measured_between_changed_offsets_only() {
        let t0 = Instant::now();
        let mut tracker = RateTracker::default();
        tracker.observe(t0, &job("v2", vec![replaying(1000, 10_000)]));
        assert_eq!(tracker.rate("v2", t0), Rate::Measuring);
        // The operator has not refreshed the status yet.
        tracker.observe(t0 + Duration::from_secs(2), &job("v2", vec![replaying(1000, 10_000)]));
        assert_eq!(
            tracker.rate("v2", t0 + Duration::from_secs(2)),
            Rate::Unchanged(Duration::from_secs(2))
        );
        // 4000 offsets in 4 s while the head grew by 2000: the lag closes at 500/s.
        let t4 = t0 + Duration::from_secs(4);
        tracker.observe(t4, &job("v2", vec![replaying(5000, 12_000)]));
        assert_eq!(
            tracker.rate("v2", t4),
            Rate::Measured { consumed_per_sec: 1000.0, closing_per_sec: 500.0 }
        );
        // A status frozen for longer than a few refreshes is reported, not extrapolated.
        let later = t4 + STALL_AFTER + Duration::from_secs(1);
        assert!(matches!(tracker.rate("v2", later), Rate::Unchanged(_)));
    }

    #[test]
    fn the_progress_line_gives_offsets_percent_rate_and_eta_to_max_lag() {
        let r = replaying(5000, 12_000);
        let rate = Rate::Measured { consumed_per_sec: 1000.0, closing_per_sec: 500.0 };
        // Lag 7000, caught up at 1000: 6000 records at 500/s.
        assert_eq!(
            progress_line(&r, &rate, 1000),
            "v2 Replaying: 5000/12000 offsets (41.7%), lag 7000, 1000 records/s, eta 12s"
        );
        let falling_behind = Rate::Measured { consumed_per_sec: 10.0, closing_per_sec: -3.0 };
        assert!(progress_line(&r, &falling_behind, 1000)
            .ends_with("eta: none, the lag is not shrinking"));
        assert_eq!(
            progress_line(&r, &Rate::Unchanged(Duration::from_secs(2)), 1000),
            "v2 Replaying: 5000/12000 offsets (41.7%), lag 7000, rate: measuring (status unchanged for 2s)"
        );
        assert_eq!(
            progress_line(&row("v3", Pending), &Rate::Measuring, 1000),
            "v3 Pending: no offsets reported yet (the engine is starting)"
        );
    }

    #[test]
    fn durations_are_compact() {
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(format_duration(Duration::from_secs(45)), "45s");
        assert_eq!(format_duration(Duration::from_secs(3 * 86400 + 4 * 3600)), "3d04h");
    }
}
