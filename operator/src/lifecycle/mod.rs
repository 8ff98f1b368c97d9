//! The lifecycle of a StreamJob's versions, as a pure function.
//!
//! [`decide`] takes what the resource asks for ([`Desired`]), what the operator recorded last
//! time (the status rows) and what it observes now ([`Observed`]: workloads, progress, the
//! alias), and returns the new rows and the actions to carry out ([`Decision`]). It does no
//! I/O and keeps no memory between calls: everything it needs to remember (since when a
//! version has been stable, when it stopped being live) is in the rows it returns, which the
//! controller writes to `status.versions`. An operator restart therefore decides exactly what
//! the previous process would have.
//!
//! Phases: `Pending → Replaying → CaughtUp → Live → Retiring → Retained → Deleted`, with
//! `Failed` (never promoted) and `RolledBack` (was live, the alias moved back to an older
//! version). The rules:
//!
//! - A new `spec.version` gets a row in `Pending`; its workload is created (unless the
//!   operator's retention check refused the replay: `Failed`). Once the workload exists it is
//!   `Replaying`.
//! - **Caught up**: the version's engine runs, its consumer lag and its *index* lag (records
//!   whose documents the index has not acknowledged, as only the engine knows) are ≤
//!   `promotion.maxLag`, and its delay ≤ `promotion.maxDelay`, continuously for
//!   `promotion.stableFor` (`stableSince` records the start; any break clears it). The rule is
//!   tracked for every running version: `current` in its row says whether it holds now.
//!   `Replaying` becomes `CaughtUp` the first time it holds; a promotion of `spec.version`
//!   needs it to hold at the moment of the swap, so the alias only ever moves to an index that
//!   is complete (the controller refreshes it just before the swap, so it is searchable too).
//! - **Target**: `spec.activeVersion` when set (an explicit order: no approval, no gate, at
//!   once even if that version's index is behind; it must name a complete version), else
//!   `spec.version` once it is complete and current and, in manual mode, approved (annotation
//!   `kappa.dev/approve-version`), and past the verification gate if one is configured.
//!   Otherwise the alias stays where it is.
//! - **Swap**: one atomic alias request adds the target's index and removes every other index
//!   the alias points at. The target becomes `Live`; the previous live version `Retiring`, or
//!   `RolledBack` when the target is older.
//! - **Observed alias wins**: if the alias already points at a version the rows do not call
//!   live (the operator stopped between the swap and the status write), the rows follow it.
//! - **Superseded**: a version that never went live and is no longer `spec.version` or the
//!   pinned version is `Deleted` (its replay is abandoned, not left running).
//! - **Retention**: of the versions that were live before, the `keepVersions` most recently
//!   retired are kept; older ones are `Deleted`. A retired engine keeps running for `warmFor`
//!   (`Retiring`, or `RolledBack`), then scales to zero (`Retained`). `spec.version` is never
//!   pruned. The annotation `kappa.dev/warm-version` names a previous version whose engine
//!   runs anyway, so it catches up before a rollback (`kappa rollback --wait`).
//! - **Deleted**: the workload is removed; the index is deleted only under
//!   `deletionPolicy: Delete` (Kappa deletes data only when asked to).
//! - **Failed** is final for that version: it is reported (`Degraded`), never promoted, and its
//!   workload is left running so `kubectl logs` shows why. A new `spec.version` supersedes it.
//!   A live or retained version whose engine fails keeps its phase (the alias keeps serving
//!   it) and is reported as `Degraded`.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use kappa_crds::{
    Condition, ConditionStatus, DeletionPolicy, PromotionMode, StreamJobSpec, VersionPhase,
    VersionStatus, CONDITION_DEGRADED, CONDITION_PROGRESSING, CONDITION_READY,
};

#[cfg(test)]
mod tests;

/// Requeue interval while a version is replaying or waiting to be promoted.
pub const ACTIVE_REQUEUE: Duration = Duration::from_secs(5);
/// Requeue interval when nothing is in flight (drift and health checks).
pub const IDLE_REQUEUE: Duration = Duration::from_secs(60);

/// The promotion policy, with durations resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct PromotionPolicy {
    /// `auto` or `manual`.
    pub mode: PromotionMode,
    /// Caught up needs lag at or below this many records.
    pub max_lag: i64,
    /// ... and delay at or below this.
    pub max_delay: Duration,
    /// ... continuously for this long.
    pub stable_for: Duration,
    /// Whether the verification gate must pass before a swap from a live version.
    pub verify: bool,
}

/// What the StreamJob asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    /// `metadata.name` of the StreamJob.
    pub job: String,
    /// `metadata.generation`.
    pub generation: i64,
    /// `spec.version`.
    pub version: String,
    /// `spec.sink.elasticsearch.alias`.
    pub alias: String,
    /// `spec.activeVersion`.
    pub active_version: Option<String>,
    /// The promotion policy.
    pub promotion: PromotionPolicy,
    /// The version approved for promotion (annotation `kappa.dev/approve-version`).
    pub approved: Option<String>,
    /// A previous version whose engine should run so that its index catches up before a
    /// rollback (annotation `kappa.dev/warm-version`).
    pub warm_version: Option<String>,
    /// `retention.keepVersions`.
    pub keep_versions: usize,
    /// `retention.warmFor`.
    pub warm_for: Duration,
    /// `deletionPolicy`.
    pub deletion_policy: DeletionPolicy,
    /// Set when `spec.version` names a version the operator already runs with another logic:
    /// the message says so, and that version is left as it is.
    pub spec_conflict: Option<String>,
}

/// A version's workload as observed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Workload {
    /// No Deployment.
    #[default]
    Absent,
    /// A Deployment whose pod is not ready yet.
    Starting,
    /// A ready engine pod.
    Running,
    /// Scaled to zero.
    Stopped,
}

/// The verification gate's result for a candidate version.
#[derive(Debug, Clone, PartialEq)]
pub enum GateVerdict {
    /// The counts agree within the configured tolerance.
    Passed,
    /// They do not; the message gives both counts.
    Failed(String),
}

/// What the operator observes of one version.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct VersionObservation {
    /// Its Deployment.
    pub workload: Workload,
    /// Total lag in records (unknown: `None`).
    pub lag: Option<i64>,
    /// Records whose documents the index has not acknowledged (unknown without an answer from
    /// the engine: `None`).
    pub index_lag: Option<i64>,
    /// Documents the engine still has to write.
    pub backlog: Option<i64>,
    /// How far its log-time progress trails the head (unknown: `None`).
    pub delay: Option<Duration>,
    /// Sum of next offsets to process.
    pub consumed_offsets: Option<i64>,
    /// Sum of high watermarks.
    pub head_offsets: Option<i64>,
    /// Event-time watermark (RFC 3339).
    pub watermark: Option<String>,
    /// Why it cannot go on: the engine reported a failure, its pod is crash-looping, or the
    /// replay was refused (truncated log).
    pub failure: Option<String>,
    /// A warning that does not stop it (e.g. the sink is degraded).
    pub warning: Option<String>,
    /// The verification gate, when the controller evaluated it.
    pub gate: Option<GateVerdict>,
}

/// The alias as observed in Elasticsearch.
#[derive(Debug, Clone, PartialEq)]
pub enum AliasView {
    /// The indices it points at (empty: no alias yet).
    Targets(Vec<String>),
    /// Elasticsearch did not answer; the message says why.
    Unknown(String),
}

/// Everything observed for one reconcile.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    /// The time of the observation.
    pub now: DateTime<Utc>,
    /// The alias.
    pub alias: AliasView,
    /// Per version; a version without an entry is observed as absent with unknown progress.
    pub versions: BTreeMap<String, VersionObservation>,
}

/// What to do with one version's workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkloadAction {
    /// Apply its ConfigMap, Deployment and Service; `running: false` scales it to zero.
    Apply {
        /// The version.
        version: String,
        /// Whether its engine should run.
        running: bool,
    },
    /// Delete its Deployment, Service and ConfigMap.
    Remove {
        /// The version.
        version: String,
    },
}

/// One atomic alias request: add `add`, remove every index in `remove`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AliasSwap {
    /// The alias.
    pub alias: String,
    /// The index that becomes the alias target.
    pub add: String,
    /// Indices the alias stops pointing at (empty on the first promotion).
    pub remove: Vec<String>,
}

/// A phase change, reported as a Kubernetes Event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// The version.
    pub version: String,
    /// Its phase before (`None`: a new version).
    pub from: Option<VersionPhase>,
    /// Its phase now.
    pub to: VersionPhase,
    /// CamelCase reason (the Event's reason).
    pub reason: &'static str,
    /// What happened, for people.
    pub message: String,
}

/// Something that needs attention (the `Degraded` condition).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// CamelCase reason.
    pub reason: &'static str,
    /// Detail naming the version, the field or the peer.
    pub message: String,
}

/// The outcome of one [`decide`] call.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The new `status.versions`.
    pub rows: Vec<VersionStatus>,
    /// Workload actions, in row order.
    pub workloads: Vec<WorkloadAction>,
    /// The alias request, if the alias must move.
    pub alias_swap: Option<AliasSwap>,
    /// Indices to delete (versions deleted under `deletionPolicy: Delete`).
    pub delete_indices: Vec<String>,
    /// Phase changes.
    pub transitions: Vec<Transition>,
    /// The version the alias points at once the actions are carried out.
    pub live_version: Option<String>,
    /// Why the job is degraded (empty: it is not).
    pub problems: Vec<Problem>,
    /// Why the job is progressing (reason, message); `None`: it is not.
    pub progressing: Option<(&'static str, String)>,
    /// When to look again.
    pub requeue_after: Duration,
}

/// What deleting the StreamJob removes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CleanupPlan {
    /// Versions whose workloads are removed.
    pub remove_workloads: Vec<String>,
    /// Indices deleted (only under `deletionPolicy: Delete`).
    pub delete_indices: Vec<String>,
}

/// Formats an instant as the status does (RFC 3339, UTC, seconds).
pub fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn parse_time(text: &Option<String>) -> Option<DateTime<Utc>> {
    text.as_deref()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
}

fn elapsed(since: &Option<String>, now: DateTime<Utc>) -> Option<Duration> {
    parse_time(since).map(|t| (now - t).to_std().unwrap_or(Duration::ZERO))
}

/// Whether two specs share the job's logic: the fields that need a new `spec.version` to
/// change (source, pipeline, sink mode, alias, index settings and mappings, engine image), the
/// same set the CRD's transition rules protect.
pub fn same_logic(a: &StreamJobSpec, b: &StreamJobSpec) -> bool {
    a.source == b.source
        && a.pipeline == b.pipeline
        && a.sink == b.sink
        && a.engine.image == b.engine.image
}

/// Mutable working state of one decision.
struct Work<'a> {
    desired: &'a Desired,
    observed: &'a Observed,
    now: String,
    rows: Vec<VersionStatus>,
    transitions: Vec<Transition>,
    problems: Vec<Problem>,
    deleted_now: Vec<String>,
}

impl Work<'_> {
    fn observation(&self, version: &str) -> VersionObservation {
        self.observed.versions.get(version).cloned().unwrap_or_default()
    }

    fn index(&self, version: &str) -> String {
        kappa_crds::naming::index_name_for(&self.desired.alias, version)
    }

    fn position(&self, version: &str) -> Option<usize> {
        self.rows.iter().position(|r| r.version == version)
    }

    fn set_phase(&mut self, i: usize, to: VersionPhase, reason: &'static str, message: String) {
        let row = &mut self.rows[i];
        if row.phase == to {
            return;
        }
        self.transitions.push(Transition {
            version: row.version.clone(),
            from: Some(row.phase),
            to,
            reason,
            message,
        });
        row.phase = to;
        if to == VersionPhase::Deleted {
            self.deleted_now.push(row.version.clone());
        }
    }
}

/// Decides the next state of every version and the actions that get there. Pure: see the
/// module docs for the rules.
pub fn decide(desired: &Desired, previous: &[VersionStatus], observed: &Observed) -> Decision {
    let mut work = Work {
        desired,
        observed,
        now: timestamp(observed.now),
        rows: previous.to_vec(),
        transitions: Vec::new(),
        problems: Vec::new(),
        deleted_now: Vec::new(),
    };
    admit_spec_version(&mut work);
    for i in 0..work.rows.len() {
        observe_row(&mut work, i);
    }
    let live = follow_alias(&mut work);
    supersede(&mut work);
    let target = choose_target(&mut work, live.as_deref());
    let alias_swap = swap(&mut work, live.as_deref(), target.as_deref());
    let live = target.or(live);
    retire(&mut work);
    finish(work, alias_swap, live)
}

/// Adds a row for a new `spec.version` (or revives a deleted one).
fn admit_spec_version(work: &mut Work) {
    if let Some(conflict) = &work.desired.spec_conflict {
        work.problems.push(Problem { reason: "VersionLogicConflict", message: conflict.clone() });
        return;
    }
    let version = work.desired.version.clone();
    match work.position(&version) {
        Some(i) if work.rows[i].phase == VersionPhase::Deleted => {
            let index = work.index(&version);
            let row = &mut work.rows[i];
            *row = new_row(&version, index);
            work.transitions.push(Transition {
                version: version.clone(),
                from: Some(VersionPhase::Deleted),
                to: VersionPhase::Pending,
                reason: "VersionRevived",
                message: format!("spec.version {version} was deleted before; replaying it again"),
            });
        }
        Some(_) => {}
        None => {
            let index = work.index(&version);
            work.rows.push(new_row(&version, index));
            work.transitions.push(Transition {
                version: version.clone(),
                from: None,
                to: VersionPhase::Pending,
                reason: "VersionAccepted",
                message: format!(
                    "spec.version {version} accepted; it will replay into its own index"
                ),
            });
        }
    }
}

fn new_row(version: &str, index: String) -> VersionStatus {
    VersionStatus::pending(version, index)
}

/// Applies one version's observation: progress fields, start, failure, the caught-up rule.
fn observe_row(work: &mut Work, i: usize) {
    let version = work.rows[i].version.clone();
    let seen = work.observation(&version);
    let phase = work.rows[i].phase;
    if phase == VersionPhase::Deleted {
        return;
    }
    {
        let row = &mut work.rows[i];
        row.lag = seen.lag.or(row.lag);
        row.consumed_offsets = seen.consumed_offsets.or(row.consumed_offsets);
        row.head_offsets = seen.head_offsets.or(row.head_offsets);
        row.watermark = seen.watermark.clone().or(row.watermark.take());
        row.delay_seconds = seen
            .delay
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            .or(row.delay_seconds);
        if matches!(seen.workload, Workload::Running | Workload::Starting) {
            row.index_lag = seen.index_lag.or(row.index_lag);
            row.backlog = seen.backlog.or(row.backlog);
        } else {
            // No engine: what it last said of its index is no longer true.
            row.index_lag = None;
            row.backlog = None;
        }
    }
    let promotable =
        matches!(phase, VersionPhase::Pending | VersionPhase::Replaying | VersionPhase::CaughtUp);
    if let Some(failure) = &seen.failure {
        if promotable {
            work.rows[i].message = Some(failure.clone());
            work.rows[i].stable_since = None;
            work.rows[i].current = Some(false);
            work.set_phase(i, VersionPhase::Failed, "VersionFailed", failure.clone());
            return;
        }
        if phase != VersionPhase::Failed {
            work.problems.push(Problem {
                reason: "EngineFailing",
                message: format!("version {version} ({phase:?}): {failure}"),
            });
        }
    }
    if let Some(warning) = &seen.warning {
        work.problems.push(Problem {
            reason: "EngineDegraded",
            message: format!("version {version}: {warning}"),
        });
    }
    let current = track_caught_up(work, i, &seen);
    match phase {
        VersionPhase::Pending if seen.workload != Workload::Absent => {
            work.rows[i].started_at.get_or_insert_with(|| work.now.clone());
            work.rows[i].message = None;
            work.set_phase(
                i,
                VersionPhase::Replaying,
                "ReplayStarted",
                format!("version {version} started replaying into {}", work.rows[i].index),
            );
            if current {
                caught_up(work, i, &seen);
            }
        }
        VersionPhase::Replaying if current => caught_up(work, i, &seen),
        _ => {}
    }
}

/// Whether the caught-up rule holds in this observation: the engine runs, consumer lag and
/// index lag are within `maxLag`, delay within `maxDelay`. Unknown counts as not holding.
pub fn within_caught_up_bounds(seen: &VersionObservation, policy: &PromotionPolicy) -> bool {
    seen.workload == Workload::Running
        && seen.lag.is_some_and(|lag| lag <= policy.max_lag)
        && seen.index_lag.is_some_and(|lag| lag <= policy.max_lag)
        && seen.delay.is_some_and(|delay| delay <= policy.max_delay)
}

/// Tracks the caught-up rule in the row (`stableSince`, `current`) and returns whether it has
/// held for `stableFor`.
fn track_caught_up(work: &mut Work, i: usize, seen: &VersionObservation) -> bool {
    let policy = &work.desired.promotion;
    if !within_caught_up_bounds(seen, policy) {
        work.rows[i].stable_since = None;
        work.rows[i].current = Some(false);
        return false;
    }
    let now = work.now.clone();
    let since = work.rows[i].stable_since.get_or_insert(now).clone();
    let stable = elapsed(&Some(since), work.observed.now).unwrap_or(Duration::ZERO);
    let current = stable >= policy.stable_for;
    work.rows[i].current = Some(current);
    current
}

/// Replaying → CaughtUp: the rule has held for `stableFor`.
fn caught_up(work: &mut Work, i: usize, seen: &VersionObservation) {
    let policy = &work.desired.promotion;
    work.rows[i].caught_up_at = Some(work.now.clone());
    let lag = seen.lag.unwrap_or(0);
    let index_lag = seen.index_lag.unwrap_or(0);
    let message = format!(
        "version {} caught up: lag {lag} and index lag {index_lag} ≤ {} records for {:?}",
        work.rows[i].version, policy.max_lag, policy.stable_for
    );
    work.set_phase(i, VersionPhase::CaughtUp, "CaughtUp", message);
}

/// Reads who is live from the alias, and makes the rows agree with it. Returns the live
/// version.
fn follow_alias(work: &mut Work) -> Option<String> {
    let targets = match &work.observed.alias {
        AliasView::Unknown(message) => {
            work.problems.push(Problem {
                reason: "ElasticsearchUnreachable",
                message: format!("cannot read alias {}: {message}", work.desired.alias),
            });
            return work
                .rows
                .iter()
                .find(|r| r.phase == VersionPhase::Live)
                .map(|r| r.version.clone());
        }
        AliasView::Targets(targets) => targets.clone(),
    };
    // The alias may point at several of our indices only if something outside the operator
    // moved it; the most recently promoted one counts as live, and the next swap cleans up.
    let live = work
        .rows
        .iter()
        .filter(|r| r.phase != VersionPhase::Deleted && targets.contains(&r.index))
        .max_by(|a, b| a.promoted_at.cmp(&b.promoted_at))
        .map(|r| r.version.clone());
    for i in 0..work.rows.len() {
        let is_live = Some(&work.rows[i].version) == live.as_ref();
        let phase = work.rows[i].phase;
        if is_live && phase != VersionPhase::Live {
            work.rows[i].promoted_at.get_or_insert_with(|| work.now.clone());
            work.rows[i].retired_at = None;
            let message = format!("alias {} points at {}", work.desired.alias, work.rows[i].index);
            work.set_phase(i, VersionPhase::Live, "AliasObserved", message);
        } else if !is_live && phase == VersionPhase::Live {
            work.rows[i].retired_at = Some(work.now.clone());
            let message =
                format!("alias {} no longer points at {}", work.desired.alias, work.rows[i].index);
            work.set_phase(i, VersionPhase::Retiring, "AliasObserved", message);
        }
    }
    live
}

/// Abandons versions that never went live and are no longer wanted.
fn supersede(work: &mut Work) {
    let pinned = work.desired.active_version.clone();
    for i in 0..work.rows.len() {
        let row = &work.rows[i];
        let wanted = row.version == work.desired.version || Some(&row.version) == pinned.as_ref();
        let never_live = row.promoted_at.is_none()
            && matches!(
                row.phase,
                VersionPhase::Pending
                    | VersionPhase::Replaying
                    | VersionPhase::CaughtUp
                    | VersionPhase::Failed
            );
        if never_live && !wanted {
            let message = format!(
                "version {} superseded by spec.version {} before it went live",
                row.version, work.desired.version
            );
            work.rows[i].replicas = Some(0);
            work.set_phase(i, VersionPhase::Deleted, "Superseded", message);
        }
    }
}

/// The version the alias should point at.
fn choose_target(work: &mut Work, live: Option<&str>) -> Option<String> {
    if let AliasView::Unknown(_) = work.observed.alias {
        return None;
    }
    if let Some(pin) = work.desired.active_version.clone() {
        let row = work.rows.iter().find(|r| r.version == pin);
        return match row {
            Some(r) if r.phase.is_complete() => Some(pin),
            _ => {
                let retained: Vec<&str> = work
                    .rows
                    .iter()
                    .filter(|r| r.phase.is_complete())
                    .map(|r| r.version.as_str())
                    .collect();
                let state = match row {
                    Some(r) => format!("is {:?}", r.phase),
                    None => "is not a version of this job".to_owned(),
                };
                work.problems.push(Problem {
                    reason: "ActiveVersionUnavailable",
                    message: format!(
                        "spec.activeVersion {pin} {state}; it must name a complete version \
                         (available: {})",
                        if retained.is_empty() { "none".to_owned() } else { retained.join(", ") }
                    ),
                });
                None
            }
        };
    }
    if work.desired.spec_conflict.is_some() {
        return None;
    }
    let version = work.desired.version.clone();
    let row = work.rows.iter().find(|r| r.version == version)?;
    if !row.phase.is_complete() || Some(version.as_str()) == live {
        return None;
    }
    // Readers move only to an index that has caught up now, not at some point in the past
    // (its engine may have restarted and be writing a backlog again).
    if row.current != Some(true) {
        return None;
    }
    let policy = &work.desired.promotion;
    if policy.mode == PromotionMode::Manual && work.desired.approved.as_deref() != Some(&version) {
        return None;
    }
    if policy.verify && live.is_some() {
        match work.observation(&version).gate {
            Some(GateVerdict::Passed) => {}
            Some(GateVerdict::Failed(message)) => {
                work.problems.push(Problem { reason: "VerificationFailed", message });
                return None;
            }
            None => return None,
        }
    }
    Some(version)
}

/// Moves the alias to `target` (one request) and updates both rows.
fn swap(work: &mut Work, live: Option<&str>, target: Option<&str>) -> Option<AliasSwap> {
    let AliasView::Targets(current) = &work.observed.alias else { return None };
    let target = target.or(live)?;
    let add = work.index(target);
    let remove: Vec<String> = current.iter().filter(|i| **i != add).cloned().collect();
    if current.contains(&add) && remove.is_empty() {
        return None;
    }
    let swap = AliasSwap { alias: work.desired.alias.clone(), add, remove };
    if Some(target) == live {
        return Some(swap); // only stray targets to remove
    }
    let ti = work.position(target).expect("a target has a row");
    let rollback = live.and_then(|l| work.position(l)).is_some_and(|li| ti < li);
    if let Some(li) = live.and_then(|l| work.position(l)) {
        work.rows[li].retired_at = Some(work.now.clone());
        let (to, reason) = if rollback {
            (VersionPhase::RolledBack, "RolledBack")
        } else {
            (VersionPhase::Retiring, "Retiring")
        };
        let message = format!(
            "alias {} moved from {} to {}",
            work.desired.alias, work.rows[li].index, swap.add
        );
        work.set_phase(li, to, reason, message);
    }
    work.rows[ti].promoted_at = Some(work.now.clone());
    work.rows[ti].retired_at = None;
    let mut message = match live {
        Some(l) => {
            format!("alias {} moved from {} to {}", work.desired.alias, work.index(l), swap.add)
        }
        None => format!("alias {} now points at {}", work.desired.alias, swap.add),
    };
    // Only a pin moves the alias to a version that is not current (the emergency path): say
    // so, and how far behind it is, where people look.
    if work.rows[ti].current != Some(true) {
        let row = &work.rows[ti];
        let known = |v: Option<i64>| v.map_or("unknown".to_owned(), |v| v.to_string());
        message.push_str(&format!(
            "; {target} is not current (lag {} records, {} s of log time behind the head): its \
             engine resumes and catches up while it serves",
            known(row.lag),
            known(row.delay_seconds)
        ));
    }
    let reason = if rollback { "RollbackPromoted" } else { "Promoted" };
    work.set_phase(ti, VersionPhase::Live, reason, message);
    Some(swap)
}

/// Retention: prunes old previous versions and scales warm ones down after `warmFor`.
fn retire(work: &mut Work) {
    let mut previous: Vec<usize> = (0..work.rows.len())
        .filter(|&i| {
            work.rows[i].phase.is_previous() && work.rows[i].version != work.desired.version
        })
        .collect();
    previous.sort_by(|&a, &b| work.rows[b].retired_at.cmp(&work.rows[a].retired_at));
    for (n, &i) in previous.iter().enumerate() {
        if n >= work.desired.keep_versions {
            let message = format!(
                "version {} is older than the {} previous version(s) retention.keepVersions keeps",
                work.rows[i].version, work.desired.keep_versions
            );
            work.set_phase(i, VersionPhase::Deleted, "RetentionExpired", message);
        }
    }
    for i in 0..work.rows.len() {
        let row = &work.rows[i];
        let warm_over =
            elapsed(&row.retired_at, work.observed.now).is_some_and(|e| e >= work.desired.warm_for);
        if row.phase == VersionPhase::Retiring && warm_over {
            let message = format!(
                "version {} retired {:?} ago; its engine scales to zero, its index stays for rollback",
                row.version, work.desired.warm_for
            );
            work.set_phase(i, VersionPhase::Retained, "WarmPeriodOver", message);
        }
    }
}

/// Whether a version's engine should run.
fn should_run(row: &VersionStatus, warm_for: Duration, now: DateTime<Utc>) -> bool {
    match row.phase {
        VersionPhase::Pending
        | VersionPhase::Replaying
        | VersionPhase::CaughtUp
        | VersionPhase::Live
        | VersionPhase::Failed => true,
        VersionPhase::Retiring | VersionPhase::RolledBack => {
            elapsed(&row.retired_at, now).is_none_or(|e| e < warm_for)
        }
        VersionPhase::Retained | VersionPhase::Deleted => false,
    }
}

fn finish(mut work: Work, alias_swap: Option<AliasSwap>, live: Option<String>) -> Decision {
    let now = work.observed.now;
    let desired = work.desired;
    let mut workloads = Vec::new();
    let mut delete_indices = Vec::new();
    let mut next_wake: Option<Duration> = None;
    let conflict = desired.spec_conflict.is_some();
    for row in &mut work.rows {
        let seen = work.observed.versions.get(&row.version);
        if row.phase == VersionPhase::Deleted {
            row.replicas = Some(0);
            let present = seen.is_some_and(|s| s.workload != Workload::Absent);
            let just_deleted = work.deleted_now.contains(&row.version);
            if present || just_deleted {
                workloads.push(WorkloadAction::Remove { version: row.version.clone() });
            }
            if just_deleted && desired.deletion_policy == DeletionPolicy::Delete {
                delete_indices.push(row.index.clone());
            }
            if just_deleted && desired.deletion_policy == DeletionPolicy::Retain {
                row.message = Some(format!(
                    "index {} kept (deletionPolicy: Retain); delete it in Elasticsearch when no \
                     longer needed",
                    row.index
                ));
            }
            continue;
        }
        if conflict && row.version == desired.version {
            // Its objects are left as they are: the conflicting spec must not overwrite them.
            continue;
        }
        // A previous version runs when it is about to serve again: named for a rollback by
        // `kappa.dev/warm-version`, or `spec.version` once no pin holds the alias elsewhere (it
        // takes the alias back when its index has caught up).
        let returning = row.version == desired.version && desired.active_version.is_none();
        let warm = desired.warm_version.as_deref() == Some(&row.version) || returning;
        let running = should_run(row, desired.warm_for, now) || (row.phase.is_previous() && warm);
        row.replicas = Some(i32::from(running));
        workloads.push(WorkloadAction::Apply { version: row.version.clone(), running });
        if running && matches!(row.phase, VersionPhase::Retiring | VersionPhase::RolledBack) {
            if let Some(e) = elapsed(&row.retired_at, now) {
                let left = desired.warm_for.saturating_sub(e);
                next_wake = Some(next_wake.map_or(left, |w| w.min(left)));
            }
        }
    }
    // A deleted row stays until its workload is observed gone, then it is dropped (the
    // Event of its deletion remains).
    work.rows.retain(|r| {
        r.phase != VersionPhase::Deleted
            || work.deleted_now.contains(&r.version)
            || work
                .observed
                .versions
                .get(&r.version)
                .is_some_and(|s| s.workload != Workload::Absent)
    });

    let progressing = progressing(&work, live.as_deref());
    if let Some(row) = work.rows.iter().find(|r| r.version == desired.version) {
        if row.phase == VersionPhase::Failed {
            work.problems.push(Problem {
                reason: "VersionFailed",
                message: format!(
                    "version {} failed and will not be promoted: {}; apply a new spec.version \
                     to retry",
                    row.version,
                    row.message.as_deref().unwrap_or("see its engine's logs")
                ),
            });
        }
    }
    let in_flight = work.rows.iter().any(|r| {
        matches!(r.phase, VersionPhase::Pending | VersionPhase::Replaying | VersionPhase::CaughtUp)
            || (r.replicas == Some(1) && r.current == Some(false))
    }) || alias_swap.is_some()
        || !work.problems.is_empty();
    let mut requeue_after = if in_flight { ACTIVE_REQUEUE } else { IDLE_REQUEUE };
    if let Some(wake) = next_wake {
        requeue_after = requeue_after.min(wake.max(Duration::from_secs(1)));
    }
    Decision {
        rows: work.rows,
        workloads,
        alias_swap,
        delete_indices,
        transitions: work.transitions,
        live_version: live,
        problems: work.problems,
        progressing,
        requeue_after,
    }
}

fn progressing(work: &Work, live: Option<&str>) -> Option<(&'static str, String)> {
    let desired = work.desired;
    let row = work.rows.iter().find(|r| r.version == desired.version)?;
    let v = &row.version;
    match row.phase {
        VersionPhase::Pending => Some(("Pending", format!("version {v} is starting"))),
        VersionPhase::Replaying => Some((
            "Replaying",
            match (row.lag, row.index_lag, row.backlog) {
                (Some(lag), Some(index_lag), Some(backlog)) if lag <= desired.promotion.max_lag => {
                    format!(
                        "version {v} has read up to the head and is writing its index: \
                         {backlog} documents to write, {index_lag} records not in the index yet"
                    )
                }
                (Some(lag), _, _) => format!("version {v} is replaying: {lag} records behind"),
                _ => format!("version {v} is replaying"),
            },
        )),
        VersionPhase::CaughtUp if row.current != Some(true) && desired.active_version.is_none() => {
            Some((
                "CatchingUp",
                format!(
                    "version {v} has caught up before but its index is behind now (index lag \
                     {}, backlog {} documents); the alias moves once it is current again",
                    row.index_lag.map_or("unknown".to_owned(), |l| l.to_string()),
                    row.backlog.map_or("unknown".to_owned(), |b| b.to_string())
                ),
            ))
        }
        VersionPhase::CaughtUp
            if desired.active_version.as_deref().is_some_and(|p| p != v.as_str()) =>
        {
            Some((
            "HeldByActiveVersion",
            format!(
                "version {v} has caught up; spec.activeVersion keeps the alias on {}; clear it to promote",
                desired.active_version.as_deref().unwrap_or_default()
            ),
            ))
        }
        VersionPhase::CaughtUp if desired.promotion.mode == PromotionMode::Manual => Some((
            "AwaitingApproval",
            format!(
                "version {v} has caught up; approve it with `kappa promote {} {v}` (annotation \
                 {}={v})",
                desired.job,
                crate::names::ANNOTATION_APPROVE
            ),
        )),
        VersionPhase::CaughtUp => Some((
            "AwaitingPromotion",
            format!("version {v} has caught up and waits for the verification gate"),
        )),
        _ if live != Some(v.as_str()) && desired.active_version.is_none() && row.phase.is_complete() => {
            Some(("AwaitingPromotion", format!("version {v} waits to take over the alias")))
        }
        _ => None,
    }
}

/// The `Ready`, `Progressing` and `Degraded` conditions for a decision, keeping each
/// condition's `lastTransitionTime` while its status does not change.
pub fn conditions(
    previous: &[Condition],
    decision: &Decision,
    desired: &Desired,
    alias_known: bool,
    now: DateTime<Utc>,
) -> Vec<Condition> {
    let ready = match (&decision.live_version, alias_known) {
        (Some(v), true) => (
            ConditionStatus::True,
            "Live",
            format!(
                "alias {} serves version {v} ({})",
                desired.alias,
                kappa_crds::naming::index_name_for(&desired.alias, v)
            ),
        ),
        (Some(v), false) => (
            ConditionStatus::Unknown,
            "AliasUnknown",
            format!("version {v} was live when Elasticsearch last answered"),
        ),
        (None, _) => (
            ConditionStatus::False,
            "NoLiveVersion",
            format!("no version serves alias {} yet", desired.alias),
        ),
    };
    let progressing = match &decision.progressing {
        Some((reason, message)) => (ConditionStatus::True, *reason, message.clone()),
        None => (ConditionStatus::False, "Settled", "no replay or swap under way".to_owned()),
    };
    let degraded = if decision.problems.is_empty() {
        (ConditionStatus::False, "Healthy", "nothing needs attention".to_owned())
    } else {
        let message =
            decision.problems.iter().map(|p| p.message.as_str()).collect::<Vec<_>>().join("; ");
        (ConditionStatus::True, decision.problems[0].reason, message)
    };
    [(CONDITION_READY, ready), (CONDITION_PROGRESSING, progressing), (CONDITION_DEGRADED, degraded)]
        .into_iter()
        .map(|(type_, (status, reason, message))| {
            let since = previous
                .iter()
                .find(|c| c.type_ == type_ && c.status == status)
                .map(|c| c.last_transition_time.clone())
                .unwrap_or_else(|| timestamp(now));
            Condition {
                type_: type_.to_owned(),
                status,
                observed_generation: Some(desired.generation),
                last_transition_time: since,
                reason: reason.to_owned(),
                message,
            }
        })
        .collect()
}

/// What deleting the StreamJob removes: every version's workload, and under
/// `deletionPolicy: Delete` every index the job still tracks (which also removes the alias).
pub fn cleanup(rows: &[VersionStatus], policy: DeletionPolicy) -> CleanupPlan {
    CleanupPlan {
        remove_workloads: rows.iter().map(|r| r.version.clone()).collect(),
        delete_indices: match policy {
            DeletionPolicy::Delete => rows.iter().map(|r| r.index.clone()).collect(),
            DeletionPolicy::Retain => Vec::new(),
        },
    }
}
