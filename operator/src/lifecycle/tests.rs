//! Table-driven and scenario tests of the lifecycle. [`Sim`] plays the controller and the
//! cluster: it applies each decision (alias swaps, workloads) to a simulated world, keeps only
//! the rows (as the status does), and advances time.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use kappa_crds::{DeletionPolicy, PromotionMode, VersionPhase, VersionStatus};

use super::*;

use VersionPhase::*;

const ALIAS: &str = "tx-stats";

fn desired(version: &str) -> Desired {
    Desired {
        job: "tx-stats".into(),
        generation: 1,
        version: version.into(),
        alias: ALIAS.into(),
        active_version: None,
        promotion: PromotionPolicy {
            mode: PromotionMode::Auto,
            max_lag: 1000,
            max_delay: Duration::from_secs(30),
            stable_for: Duration::from_secs(60),
            verify: false,
        },
        approved: None,
        warm_version: None,
        keep_versions: 1,
        warm_for: Duration::from_secs(3600),
        deletion_policy: DeletionPolicy::Retain,
        spec_conflict: None,
    }
}

fn index(version: &str) -> String {
    format!("{ALIAS}-{version}")
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 1, 12, 0, 0).unwrap()
}

/// Progress of a running engine.
fn running(lag: i64) -> VersionObservation {
    VersionObservation {
        workload: Workload::Running,
        lag: Some(lag),
        index_lag: Some(lag),
        backlog: Some(0),
        delay: Some(Duration::from_secs(if lag == 0 { 0 } else { 3600 })),
        ..VersionObservation::default()
    }
}

/// The controller and the cluster, simulated.
struct Sim {
    desired: Desired,
    rows: Vec<VersionStatus>,
    alias: Vec<String>,
    now: DateTime<Utc>,
    workloads: BTreeMap<String, Workload>,
    /// Engine progress per version (workload state comes from `workloads`).
    progress: BTreeMap<String, VersionObservation>,
    last: Option<Decision>,
}

impl Sim {
    fn new(version: &str) -> Self {
        Self {
            desired: desired(version),
            rows: Vec::new(),
            alias: Vec::new(),
            now: t0(),
            workloads: BTreeMap::new(),
            progress: BTreeMap::new(),
            last: None,
        }
    }

    fn observed(&self) -> Observed {
        let mut versions = BTreeMap::new();
        for (v, w) in &self.workloads {
            let mut seen = self.progress.get(v).cloned().unwrap_or_default();
            // Progress set for a stopped engine is what Kafka says of its committed offsets.
            let kafka_view = seen.workload == Workload::Stopped;
            seen.workload = match (*w, seen.workload) {
                (Workload::Running, Workload::Absent) => Workload::Running,
                (Workload::Running, other) => other,
                (w, _) => w,
            };
            if seen.workload != Workload::Running {
                seen.index_lag = None;
                seen.backlog = None;
                if !kafka_view {
                    seen.lag = None;
                    seen.delay = None;
                }
            }
            versions.insert(v.clone(), seen);
        }
        for (v, p) in &self.progress {
            versions.entry(v.clone()).or_insert_with(|| VersionObservation {
                workload: Workload::Absent,
                failure: p.failure.clone(),
                ..VersionObservation::default()
            });
        }
        Observed { now: self.now, alias: AliasView::Targets(self.alias.clone()), versions }
    }

    /// One reconcile: decide, then carry the actions out.
    fn step(&mut self) -> Decision {
        let decision = decide(&self.desired, &self.rows, &self.observed());
        self.apply(&decision);
        decision
    }

    fn apply(&mut self, decision: &Decision) {
        if let Some(swap) = &decision.alias_swap {
            // The request is atomic: the alias goes from the old set to the new one at once.
            self.alias.retain(|i| !swap.remove.contains(i));
            if !self.alias.contains(&swap.add) {
                self.alias.push(swap.add.clone());
            }
            assert_eq!(self.alias, vec![swap.add.clone()], "after a swap the alias has one target");
        }
        for action in &decision.workloads {
            match action {
                WorkloadAction::Apply { version, running } => {
                    let w = if *running { Workload::Running } else { Workload::Stopped };
                    self.workloads.insert(version.clone(), w);
                }
                WorkloadAction::Remove { version } => {
                    self.workloads.remove(version);
                }
            }
        }
        self.rows = decision.rows.clone();
        self.last = Some(decision.clone());
    }

    fn advance(&mut self, d: Duration) {
        self.now += chrono::Duration::from_std(d).unwrap();
    }

    fn set(&mut self, version: &str, seen: VersionObservation) {
        self.progress.insert(version.into(), seen);
    }

    fn phase(&self, version: &str) -> Option<VersionPhase> {
        self.rows.iter().find(|r| r.version == version).map(|r| r.phase)
    }

    fn row(&self, version: &str) -> &VersionStatus {
        self.rows.iter().find(|r| r.version == version).unwrap()
    }

    fn phases(&self) -> Vec<(String, VersionPhase)> {
        self.rows.iter().map(|r| (r.version.clone(), r.phase)).collect()
    }

    /// Drives `version` from new to caught up and (auto mode) live.
    fn replay_to_head(&mut self, version: &str) {
        self.set(version, running(50_000));
        self.step();
        self.set(version, running(0));
        self.step();
        self.advance(Duration::from_secs(61));
        self.step();
    }

    /// `version`'s engine reports it caught up from now on, and `stableFor` passes.
    fn hold_caught_up(&mut self, version: &str) {
        self.set(version, running(0));
        self.step();
        self.advance(Duration::from_secs(61));
        self.step();
    }

    /// v1 went live, v2 took over, and two hours later v1's engine is stopped (`Retained`).
    fn with_v1_retained() -> Self {
        let mut sim = Sim::new("v1");
        sim.step();
        sim.replay_to_head("v1");
        sim.roll_out("v2");
        sim.advance(Duration::from_secs(7200));
        sim.step();
        assert_eq!(sim.phase("v1"), Some(Retained));
        assert_eq!(sim.workloads["v1"], Workload::Stopped);
        sim
    }

    /// Applies a new spec.version and lets it replay to the head.
    fn roll_out(&mut self, version: &str) {
        self.desired.version = version.into();
        self.desired.generation += 1;
        self.step();
        self.replay_to_head(version);
    }

    /// The property every reconcile must have: deciding again on the state it produced, with
    /// nothing changed in the world, is a no-op, and an operator restarted from the rows alone
    /// decides the same.
    fn assert_settled(&mut self) {
        // One reconcile first observes what the last one changed in the world (an engine it
        // scaled down no longer reports on its index).
        self.step();
        let again = decide(&self.desired, &self.rows, &self.observed());
        assert_eq!(again.alias_swap, None, "repeat reconcile moved the alias");
        assert_eq!(again.transitions, vec![], "repeat reconcile changed phases");
        assert!(again.delete_indices.is_empty(), "repeat reconcile deleted indices");
        assert_eq!(again.rows, self.rows, "repeat reconcile changed the rows");
        let restarted = decide(&self.desired, &self.rows.clone(), &self.observed());
        assert_eq!(restarted, again, "a restarted operator decides the same");
    }
}

#[test]
fn first_version_replays_then_takes_the_alias() {
    let mut sim = Sim::new("v1");
    let d = sim.step();
    assert_eq!(sim.phases(), [("v1".to_string(), Pending)]);
    assert_eq!(d.workloads, [WorkloadAction::Apply { version: "v1".into(), running: true }]);
    assert_eq!(d.transitions[0].reason, "VersionAccepted");
    assert_eq!(d.alias_swap, None);

    sim.set("v1", running(50_000));
    sim.step();
    assert_eq!(sim.phase("v1"), Some(Replaying));
    assert_eq!(sim.row("v1").lag, Some(50_000));
    assert!(sim.row("v1").started_at.is_some());
    assert!(sim.alias.is_empty(), "no alias before the version has caught up");
    sim.assert_settled();

    sim.set("v1", running(0));
    sim.step();
    assert_eq!(sim.phase("v1"), Some(Replaying), "stableFor has not elapsed");
    assert!(sim.row("v1").stable_since.is_some());
    sim.assert_settled();

    sim.advance(Duration::from_secs(61));
    let d = sim.step();
    assert_eq!(sim.phase("v1"), Some(Live));
    assert_eq!(
        d.alias_swap,
        Some(AliasSwap { alias: ALIAS.into(), add: index("v1"), remove: vec![] }),
        "the first promotion only adds"
    );
    let reasons: Vec<_> = d.transitions.iter().map(|t| (t.to, t.reason)).collect();
    assert_eq!(reasons, [(CaughtUp, "CaughtUp"), (Live, "Promoted")]);
    assert_eq!(d.live_version.as_deref(), Some("v1"));
    sim.assert_settled();
}

#[test]
fn a_break_in_the_caught_up_rule_restarts_stable_for() {
    let mut sim = Sim::new("v1");
    sim.step();
    sim.set("v1", running(0));
    sim.step();
    sim.advance(Duration::from_secs(40));
    sim.set("v1", running(5000));
    sim.step();
    assert_eq!(sim.row("v1").stable_since, None);
    sim.set("v1", running(0));
    sim.advance(Duration::from_secs(30));
    sim.step();
    assert_eq!(sim.phase("v1"), Some(Replaying), "only 0 s stable after the break");
    sim.advance(Duration::from_secs(59));
    sim.step();
    assert_eq!(sim.phase("v1"), Some(Replaying));
    sim.advance(Duration::from_secs(2));
    sim.step();
    assert_eq!(sim.phase("v1"), Some(Live));
}

#[test]
fn lag_within_bounds_but_delay_too_large_is_not_caught_up() {
    let mut sim = Sim::new("v1");
    sim.step();
    let mut seen = running(10);
    seen.delay = Some(Duration::from_secs(31));
    sim.set("v1", seen);
    sim.step();
    sim.advance(Duration::from_secs(600));
    sim.step();
    assert_eq!(sim.phase("v1"), Some(Replaying));
    let mut unknown = running(0);
    unknown.delay = None;
    sim.set("v1", unknown);
    sim.advance(Duration::from_secs(600));
    sim.step();
    assert_eq!(sim.phase("v1"), Some(Replaying), "unknown delay is not caught up");
}

/// A running engine that has read up to the head but still has `backlog` documents to write,
/// covering `index_lag` records.
fn writing(index_lag: i64, backlog: i64) -> VersionObservation {
    VersionObservation { index_lag: Some(index_lag), backlog: Some(backlog), ..running(0) }
}

#[test]
fn a_version_whose_index_is_still_being_written_is_not_caught_up() {
    // The defect this rule exists for: consumer lag 0 right after the switch to live, with
    // every open window still to write. Readers must not be moved to that index.
    let mut sim = Sim::new("v1");
    sim.step();
    sim.set("v1", writing(200_000, 92_000));
    for _ in 0..10 {
        sim.step();
        sim.advance(Duration::from_secs(61));
    }
    assert_eq!(sim.phase("v1"), Some(Replaying));
    assert_eq!(sim.alias, Vec::<String>::new());
    let row = sim.row("v1");
    assert_eq!((row.lag, row.index_lag, row.backlog), (Some(0), Some(200_000), Some(92_000)));
    assert_eq!((row.stable_since.as_deref(), row.current), (None, Some(false)));
    let progressing = sim.last.clone().unwrap().progressing.unwrap();
    assert!(progressing.1.contains("92000 documents to write"), "{progressing:?}");

    // The backlog is written: stableFor counts from there.
    sim.set("v1", running(0));
    sim.step();
    sim.advance(Duration::from_secs(59));
    sim.step();
    assert_eq!(sim.phase("v1"), Some(Replaying));
    sim.advance(Duration::from_secs(2));
    sim.step();
    assert_eq!(sim.phase("v1"), Some(Live));
    assert_eq!(sim.row("v1").current, Some(true));
}

#[test]
fn without_an_answer_from_the_engine_a_version_is_not_caught_up() {
    // Kafka alone says the group is at the head; only the engine knows about the index.
    let mut sim = Sim::new("v1");
    sim.step();
    sim.set("v1", VersionObservation { index_lag: None, backlog: None, ..running(0) });
    sim.step();
    sim.advance(Duration::from_secs(600));
    sim.step();
    assert_eq!(sim.phase("v1"), Some(Replaying));
    assert_eq!(sim.row("v1").current, Some(false));
}

#[test]
fn a_caught_up_version_is_promoted_only_while_its_index_is_current() {
    let mut sim = Sim::new("v1");
    sim.desired.promotion.mode = PromotionMode::Manual;
    sim.step();
    sim.replay_to_head("v1");
    assert_eq!(sim.phase("v1"), Some(CaughtUp));
    // Its engine restarted from an older checkpoint and writes a backlog again when the
    // approval arrives: the alias waits.
    sim.set("v1", writing(30_000, 12_000));
    sim.desired.approved = Some("v1".into());
    let d = sim.step();
    assert_eq!(d.alias_swap, None);
    assert_eq!(sim.phase("v1"), Some(CaughtUp));
    assert_eq!(d.progressing.as_ref().map(|p| p.0), Some("CatchingUp"));
    assert_eq!(d.requeue_after, ACTIVE_REQUEUE);
    sim.set("v1", running(0));
    sim.step();
    sim.advance(Duration::from_secs(61));
    let d = sim.step();
    assert_eq!(d.alias_swap.map(|s| s.add), Some(index("v1")));
    assert_eq!(sim.phase("v1"), Some(Live));
}

#[test]
fn a_rollback_pin_switches_at_once_and_reports_the_target_behind() {
    let mut sim = Sim::with_v1_retained();
    // Stopped for two hours: Kafka says how far behind its committed offsets are.
    sim.set(
        "v1",
        VersionObservation {
            workload: Workload::Stopped,
            lag: Some(720_000),
            delay: Some(Duration::from_secs(7200)),
            ..VersionObservation::default()
        },
    );
    sim.desired.active_version = Some("v1".into());
    let d = sim.step();
    assert_eq!(
        d.alias_swap.map(|s| s.add),
        Some(index("v1")),
        "the emergency path waits for nothing"
    );
    let promoted = d.transitions.iter().find(|t| t.reason == "RollbackPromoted").unwrap();
    assert!(
        promoted
            .message
            .contains("v1 is not current (lag 720000 records, 7200 s of log time behind the head)"),
        "{}",
        promoted.message
    );
    let row = sim.row("v1");
    assert_eq!((row.lag, row.delay_seconds, row.current), (Some(720_000), Some(7200), Some(false)));
    // Its engine resumes and catches up; the row says when it is current.
    sim.set("v1", writing(40_000, 9_000));
    sim.step();
    assert_eq!(sim.row("v1").current, Some(false));
    sim.hold_caught_up("v1");
    assert_eq!(sim.row("v1").current, Some(true));
}

#[test]
fn a_warm_version_runs_and_catches_up_before_a_rollback() {
    let mut sim = Sim::with_v1_retained();
    sim.desired.warm_version = Some("v1".into());
    let d = sim.step();
    assert!(d.workloads.contains(&WorkloadAction::Apply { version: "v1".into(), running: true }));
    assert_eq!(d.alias_swap, None, "warming moves nothing");
    assert_eq!(sim.phase("v1"), Some(Retained));
    sim.hold_caught_up("v1");
    assert_eq!(sim.row("v1").current, Some(true));
    assert_eq!(sim.alias, [index("v2")]);
    // Without the annotation it stops again.
    sim.desired.warm_version = None;
    let d = sim.step();
    assert!(d.workloads.contains(&WorkloadAction::Apply { version: "v1".into(), running: false }));
}

#[test]
fn blue_green_swap_then_warm_then_retained() {
    let mut sim = Sim::new("v1");
    sim.step();
    sim.replay_to_head("v1");
    assert_eq!(sim.alias, [index("v1")]);

    sim.desired.version = "v2".into();
    let d = sim.step();
    assert_eq!(sim.phases(), [("v1".into(), Live), ("v2".into(), Pending)]);
    assert!(d.workloads.contains(&WorkloadAction::Apply { version: "v1".into(), running: true }));
    assert!(d.workloads.contains(&WorkloadAction::Apply { version: "v2".into(), running: true }));
    assert_eq!(sim.alias, [index("v1")], "v1 keeps serving while v2 replays");
    assert_eq!(d.progressing.as_ref().map(|p| p.0), Some("Pending"));

    sim.replay_to_head("v2");
    let d = sim.last.clone().unwrap();
    assert_eq!(
        d.alias_swap,
        Some(AliasSwap { alias: ALIAS.into(), add: index("v2"), remove: vec![index("v1")] })
    );
    assert_eq!(sim.phases(), [("v1".into(), Retiring), ("v2".into(), Live)]);
    assert!(d.workloads.contains(&WorkloadAction::Apply { version: "v1".into(), running: true }));
    sim.assert_settled();

    sim.advance(Duration::from_secs(3599));
    sim.step();
    assert_eq!(sim.phase("v1"), Some(Retiring));
    let d = sim.last.clone().unwrap();
    assert!(d.requeue_after <= Duration::from_secs(1) + Duration::from_secs(1));
    sim.advance(Duration::from_secs(2));
    let d = sim.step();
    assert_eq!(sim.phase("v1"), Some(Retained));
    assert!(d.workloads.contains(&WorkloadAction::Apply { version: "v1".into(), running: false }));
    assert_eq!(sim.row("v1").replicas, Some(0));
    assert_eq!(d.requeue_after, IDLE_REQUEUE);
    sim.assert_settled();
}

#[test]
fn rollback_by_active_version_swaps_back_and_resumes_the_engine() {
    let mut sim = Sim::with_v1_retained();

    sim.desired.active_version = Some("v1".into());
    let d = sim.step();
    assert_eq!(
        d.alias_swap,
        Some(AliasSwap { alias: ALIAS.into(), add: index("v1"), remove: vec![index("v2")] })
    );
    assert_eq!(sim.phases(), [("v1".into(), Live), ("v2".into(), RolledBack)]);
    assert_eq!(sim.workloads["v1"], Workload::Running, "the retained engine resumes");
    let reasons: Vec<_> = d.transitions.iter().map(|t| t.reason).collect();
    assert_eq!(reasons, ["RolledBack", "RollbackPromoted"]);
    sim.assert_settled();

    // The rolled-back version is kept warm, then stopped, but not pruned: it is spec.version.
    sim.advance(Duration::from_secs(3601));
    sim.step();
    assert_eq!(sim.phase("v2"), Some(RolledBack));
    assert_eq!(sim.workloads["v2"], Workload::Stopped);

    // Clearing the pin returns the alias to spec.version, once its index has caught up: its
    // engine was stopped, so it runs again first and the alias waits for it.
    sim.desired.active_version = None;
    let d = sim.step();
    assert_eq!(d.alias_swap, None, "v2's index is behind: the alias stays on v1");
    assert!(d.workloads.contains(&WorkloadAction::Apply { version: "v2".into(), running: true }));
    assert_eq!(sim.row("v2").current, Some(false));
    sim.step();
    assert_eq!(sim.phase("v1"), Some(Live));
    sim.advance(Duration::from_secs(61));
    let d = sim.step();
    assert_eq!(d.alias_swap.map(|s| s.add), Some(index("v2")));
    assert_eq!(sim.phases(), [("v1".into(), Retiring), ("v2".into(), Live)]);
}

#[test]
fn a_pin_to_a_version_that_is_not_complete_is_refused() {
    let mut sim = Sim::new("v1");
    sim.step();
    sim.replay_to_head("v1");
    sim.desired.version = "v2".into();
    sim.step();
    sim.set("v2", running(40_000));
    sim.step();
    for pin in ["v2", "v9"] {
        sim.desired.active_version = Some(pin.into());
        let d = sim.step();
        assert_eq!(d.alias_swap, None);
        assert_eq!(sim.alias, [index("v1")]);
        let problem = d.problems.iter().find(|p| p.reason == "ActiveVersionUnavailable").unwrap();
        assert!(problem.message.contains(&format!("spec.activeVersion {pin}")), "{problem:?}");
        assert!(problem.message.contains("available: v1"), "{problem:?}");
    }
}

#[test]
fn a_new_version_supersedes_one_still_replaying() {
    let mut sim = Sim::new("v1");
    sim.step();
    sim.replay_to_head("v1");
    sim.desired.version = "v2".into();
    sim.step();
    sim.set("v2", running(40_000));
    sim.step();
    assert_eq!(sim.phase("v2"), Some(Replaying));

    sim.desired.version = "v3".into();
    let d = sim.step();
    assert_eq!(sim.phase("v2"), Some(Deleted));
    assert!(d.workloads.contains(&WorkloadAction::Remove { version: "v2".into() }));
    assert!(d.delete_indices.is_empty(), "deletionPolicy Retain keeps even a partial index");
    assert!(sim.row("v2").message.as_deref().unwrap().contains("kept (deletionPolicy: Retain)"));
    assert_eq!(d.transitions.iter().find(|t| t.version == "v2").unwrap().reason, "Superseded");
    assert!(!sim.workloads.contains_key("v2"), "the abandoned replay is not left running");
    assert_eq!(sim.alias, [index("v1")]);

    // Once its workload is gone the row is dropped.
    sim.step();
    assert_eq!(sim.phase("v2"), None);
    assert_eq!(sim.phases(), [("v1".into(), Live), ("v3".into(), Replaying)]);
}

#[test]
fn superseding_under_delete_policy_deletes_the_partial_index() {
    let mut sim = Sim::new("v1");
    sim.desired.deletion_policy = DeletionPolicy::Delete;
    sim.step();
    sim.set("v1", running(10_000));
    sim.step();
    sim.desired.version = "v2".into();
    let d = sim.step();
    assert_eq!(d.delete_indices, [index("v1")]);
    let d = sim.step();
    assert!(d.delete_indices.is_empty(), "an index is deleted once");
}

#[test]
fn a_failed_version_is_reported_and_never_promoted() {
    let mut sim = Sim::new("v1");
    sim.step();
    sim.replay_to_head("v1");
    sim.desired.version = "v2".into();
    sim.step();
    sim.set("v2", running(40_000));
    sim.step();
    let mut crashing = running(0);
    crashing.failure = Some("engine pod is in CrashLoopBackOff (5 restarts)".into());
    sim.set("v2", crashing);
    let d = sim.step();
    assert_eq!(sim.phase("v2"), Some(Failed));
    assert!(d.problems.iter().any(|p| p.reason == "VersionFailed"
        && p.message.contains("CrashLoopBackOff")
        && p.message.contains("apply a new spec.version")));
    assert!(
        d.workloads.contains(&WorkloadAction::Apply { version: "v2".into(), running: true }),
        "the failed workload stays for its logs"
    );

    // Even with lag 0 for a long time, it is never promoted.
    sim.set("v2", running(0));
    for _ in 0..5 {
        sim.advance(Duration::from_secs(120));
        sim.step();
    }
    assert_eq!(sim.phase("v2"), Some(Failed));
    assert_eq!(sim.alias, [index("v1")]);
    sim.assert_settled();

    // A new version supersedes and cleans it up.
    sim.desired.version = "v3".into();
    let d = sim.step();
    assert!(d.workloads.contains(&WorkloadAction::Remove { version: "v2".into() }));
}

#[test]
fn a_refused_replay_fails_before_it_starts() {
    let mut sim = Sim::new("v1");
    sim.set(
        "v1",
        VersionObservation {
            failure: Some(
                "refusing to replay topic tx-logs partition 0: the first retained offset is 120"
                    .into(),
            ),
            ..VersionObservation::default()
        },
    );
    let d = sim.step();
    assert_eq!(sim.phase("v1"), Some(Failed));
    assert!(sim.row("v1").message.as_deref().unwrap().contains("first retained offset"));
    assert_eq!(d.live_version, None);
}

#[test]
fn a_failing_live_engine_keeps_the_alias_and_is_degraded() {
    let mut sim = Sim::new("v1");
    sim.step();
    sim.replay_to_head("v1");
    let mut failing = running(0);
    failing.failure = Some("sink: mapping conflict".into());
    sim.set("v1", failing);
    let d = sim.step();
    assert_eq!(sim.phase("v1"), Some(Live));
    assert_eq!(sim.alias, [index("v1")]);
    assert_eq!(d.problems[0].reason, "EngineFailing");
}

#[test]
fn manual_promotion_waits_for_approval() {
    let mut sim = Sim::new("v1");
    sim.desired.promotion.mode = PromotionMode::Manual;
    sim.step();
    sim.replay_to_head("v1");
    assert_eq!(sim.phase("v1"), Some(CaughtUp));
    let d = sim.step();
    assert_eq!(d.progressing.as_ref().unwrap().0, "AwaitingApproval");
    assert!(d.progressing.as_ref().unwrap().1.contains("kappa promote tx-stats v1"));
    assert!(sim.alias.is_empty());
    sim.assert_settled();

    sim.desired.approved = Some("v0".into());
    sim.step();
    assert!(sim.alias.is_empty(), "approval of another version does not count");
    sim.desired.approved = Some("v1".into());
    sim.step();
    assert_eq!(sim.phase("v1"), Some(Live));
    assert_eq!(sim.alias, [index("v1")]);
}

#[test]
fn the_verification_gate_holds_a_swap_until_it_passes() {
    let mut sim = Sim::new("v1");
    sim.desired.promotion.verify = true;
    sim.step();
    sim.replay_to_head("v1");
    assert_eq!(sim.phase("v1"), Some(Live), "the first version has nothing to compare with");

    sim.roll_out("v2");
    assert_eq!(sim.phase("v2"), Some(CaughtUp), "no verdict yet");
    let mut seen = running(0);
    seen.gate = Some(GateVerdict::Failed("tx-stats-v2 has 90 documents, tx-stats-v1 100".into()));
    sim.set("v2", seen.clone());
    let d = sim.step();
    assert_eq!(sim.alias, [index("v1")]);
    assert!(d.problems.iter().any(|p| p.reason == "VerificationFailed"));
    seen.gate = Some(GateVerdict::Passed);
    sim.set("v2", seen);
    sim.step();
    assert_eq!(sim.alias, [index("v2")]);
}

#[test]
fn retention_keeps_the_newest_previous_versions() {
    let mut sim = Sim::new("v1");
    sim.desired.deletion_policy = DeletionPolicy::Delete;
    sim.step();
    sim.replay_to_head("v1");
    sim.roll_out("v2");
    assert_eq!(sim.phases(), [("v1".into(), Retiring), ("v2".into(), Live)]);
    sim.advance(Duration::from_secs(10));
    sim.roll_out("v3");
    let d = sim.last.clone().unwrap();
    assert_eq!(sim.phase("v1"), Some(Deleted));
    assert_eq!(sim.phase("v2"), Some(Retiring));
    assert_eq!(d.delete_indices, [index("v1")]);
    assert_eq!(
        d.transitions.iter().find(|t| t.version == "v1").unwrap().reason,
        "RetentionExpired"
    );

    sim.desired.keep_versions = 0;
    let d = sim.step();
    assert_eq!(d.delete_indices, [index("v2")]);
    assert_eq!(sim.phase("v3"), Some(Live));
}

#[test]
fn the_observed_alias_wins_after_a_crash_between_swap_and_status() {
    let mut sim = Sim::new("v1");
    sim.step();
    sim.replay_to_head("v1");
    sim.roll_out("v2");
    // Rewind the rows to the state before the swap, as if the status write had been lost.
    let mut rows = sim.rows.clone();
    rows[0].phase = Live;
    rows[0].retired_at = None;
    rows[1].phase = CaughtUp;
    rows[1].promoted_at = None;
    sim.rows = rows;
    let d = sim.step();
    assert_eq!(d.alias_swap, None, "the alias already points at v2");
    assert_eq!(sim.phases(), [("v1".into(), Retiring), ("v2".into(), Live)]);
    assert!(d.transitions.iter().all(|t| t.reason == "AliasObserved"));
}

#[test]
fn stray_alias_targets_are_removed_in_the_same_request() {
    let mut sim = Sim::new("v1");
    sim.step();
    sim.replay_to_head("v1");
    sim.alias = vec![index("v1"), "someone-elses-index".into()];
    let d = sim.step();
    assert_eq!(
        d.alias_swap,
        Some(AliasSwap {
            alias: ALIAS.into(),
            add: index("v1"),
            remove: vec!["someone-elses-index".into()]
        })
    );
    assert!(d.transitions.is_empty());
}

#[test]
fn an_unreachable_elasticsearch_moves_nothing() {
    let mut sim = Sim::new("v1");
    sim.step();
    sim.replay_to_head("v1");
    sim.desired.version = "v2".into();
    sim.step();
    sim.replay_to_head("v2");
    let rows = sim.rows.clone();
    let mut observed = sim.observed();
    observed.alias = AliasView::Unknown("connection refused".into());
    let d = decide(&sim.desired, &rows, &observed);
    assert_eq!(d.alias_swap, None);
    assert_eq!(d.live_version.as_deref(), Some("v2"));
    assert!(d.problems.iter().any(|p| p.reason == "ElasticsearchUnreachable"));
    let c = conditions(&[], &d, &sim.desired, false, sim.now);
    assert_eq!(c[0].status, ConditionStatus::Unknown);
}

#[test]
fn a_conflicting_spec_leaves_the_existing_version_alone() {
    let mut sim = Sim::new("v1");
    sim.step();
    sim.replay_to_head("v1");
    sim.desired.spec_conflict = Some("spec.version v1 already ran with another pipeline".into());
    let d = sim.step();
    assert!(d.workloads.is_empty(), "no object of v1 is rebuilt from the conflicting spec");
    assert_eq!(d.problems[0].reason, "VersionLogicConflict");
    assert_eq!(sim.phase("v1"), Some(Live));
}

#[test]
fn re_applying_an_old_version_moves_the_alias_back_to_it() {
    let mut sim = Sim::new("v1");
    sim.step();
    sim.replay_to_head("v1");
    sim.roll_out("v2");
    sim.desired.version = "v1".into();
    let d = sim.step();
    assert_eq!(d.alias_swap.map(|s| s.add), Some(index("v1")));
    assert_eq!(sim.phases(), [("v1".into(), Live), ("v2".into(), RolledBack)]);
}

#[test]
fn a_deleted_version_applied_again_replays_again() {
    let mut sim = Sim::new("v1");
    sim.step();
    sim.set("v1", running(10));
    sim.step();
    sim.desired.version = "v2".into();
    sim.step();
    sim.desired.version = "v1".into();
    let d = sim.step();
    assert_eq!(sim.phase("v1"), Some(Pending));
    assert!(d.transitions.iter().any(|t| t.reason == "VersionRevived"));
}

/// Every transition of a single version from each phase, with the observation that drives it.
#[test]
fn transition_table() {
    struct Case {
        name: &'static str,
        rows: Vec<(&'static str, VersionPhase)>,
        alias: Vec<&'static str>,
        seen: Vec<(&'static str, VersionObservation)>,
        tweak: fn(&mut Desired),
        expect: Vec<(&'static str, VersionPhase)>,
    }
    let none: fn(&mut Desired) = |_| {};
    let absent = VersionObservation::default;
    let failing = || VersionObservation {
        workload: Workload::Running,
        failure: Some("boom".into()),
        ..VersionObservation::default()
    };
    let starting =
        || VersionObservation { workload: Workload::Starting, ..VersionObservation::default() };
    let cases = vec![
        Case {
            name: "pending, no workload yet",
            rows: vec![("v1", Pending)],
            alias: vec![],
            seen: vec![("v1", absent())],
            tweak: none,
            expect: vec![("v1", Pending)],
        },
        Case {
            name: "pending → replaying",
            rows: vec![("v1", Pending)],
            alias: vec![],
            seen: vec![("v1", starting())],
            tweak: none,
            expect: vec![("v1", Replaying)],
        },
        Case {
            name: "pending → failed (refused)",
            rows: vec![("v1", Pending)],
            alias: vec![],
            seen: vec![(
                "v1",
                VersionObservation { failure: Some("truncated".into()), ..absent() },
            )],
            tweak: none,
            expect: vec![("v1", Failed)],
        },
        Case {
            name: "replaying stays with lag",
            rows: vec![("v1", Replaying)],
            alias: vec![],
            seen: vec![("v1", running(5000))],
            tweak: none,
            expect: vec![("v1", Replaying)],
        },
        Case {
            name: "replaying → failed",
            rows: vec![("v1", Replaying)],
            alias: vec![],
            seen: vec![("v1", failing())],
            tweak: none,
            expect: vec![("v1", Failed)],
        },
        Case {
            name: "replaying → caught up → live (stableFor 0)",
            rows: vec![("v1", Replaying)],
            alias: vec![],
            seen: vec![("v1", running(0))],
            tweak: |d| d.promotion.stable_for = Duration::ZERO,
            expect: vec![("v1", Live)],
        },
        Case {
            name: "caught up → failed",
            rows: vec![("v1", CaughtUp)],
            alias: vec![],
            seen: vec![("v1", failing())],
            tweak: |d| d.promotion.mode = PromotionMode::Manual,
            expect: vec![("v1", Failed)],
        },
        Case {
            name: "caught up waits (manual)",
            rows: vec![("v1", CaughtUp)],
            alias: vec![],
            seen: vec![("v1", running(0))],
            tweak: |d| d.promotion.mode = PromotionMode::Manual,
            expect: vec![("v1", CaughtUp)],
        },
        Case {
            name: "caught up → live (approved)",
            rows: vec![("v1", CaughtUp)],
            alias: vec![],
            seen: vec![("v1", running(0))],
            tweak: |d| {
                d.promotion.mode = PromotionMode::Manual;
                d.approved = Some("v1".into());
            },
            expect: vec![("v1", Live)],
        },
        Case {
            name: "live stays live when failing",
            rows: vec![("v1", Live)],
            alias: vec!["tx-stats-v1"],
            seen: vec![("v1", failing())],
            tweak: none,
            expect: vec![("v1", Live)],
        },
        Case {
            name: "live → retiring (new version live)",
            rows: vec![("v1", Live), ("v2", CaughtUp)],
            alias: vec!["tx-stats-v1"],
            seen: vec![("v1", running(0)), ("v2", running(0))],
            tweak: |d| d.version = "v2".into(),
            expect: vec![("v1", Retiring), ("v2", Live)],
        },
        Case {
            name: "live → rolled back",
            rows: vec![("v1", Retained), ("v2", Live)],
            alias: vec!["tx-stats-v2"],
            seen: vec![("v2", running(0))],
            tweak: |d| {
                d.version = "v2".into();
                d.active_version = Some("v1".into());
            },
            expect: vec![("v1", Live), ("v2", RolledBack)],
        },
        Case {
            name: "retained → live (pinned)",
            rows: vec![("v1", Retained), ("v2", Live)],
            alias: vec!["tx-stats-v2"],
            seen: vec![],
            tweak: |d| {
                d.version = "v2".into();
                d.active_version = Some("v1".into());
            },
            expect: vec![("v1", Live), ("v2", RolledBack)],
        },
        Case {
            name: "retiring → deleted (keep 0)",
            rows: vec![("v1", Retiring), ("v2", Live)],
            alias: vec!["tx-stats-v2"],
            seen: vec![("v1", running(0))],
            tweak: |d| {
                d.version = "v2".into();
                d.keep_versions = 0;
            },
            expect: vec![("v1", Deleted), ("v2", Live)],
        },
        Case {
            name: "rolled back → deleted (not spec.version, keep 0)",
            rows: vec![("v1", Live), ("v2", RolledBack), ("v3", Replaying)],
            alias: vec!["tx-stats-v1"],
            seen: vec![("v1", running(0)), ("v2", running(0)), ("v3", running(9000))],
            tweak: |d| {
                d.version = "v3".into();
                d.active_version = Some("v1".into());
                d.keep_versions = 0;
            },
            expect: vec![("v1", Live), ("v2", Deleted), ("v3", Replaying)],
        },
        Case {
            name: "failed → deleted (superseded)",
            rows: vec![("v1", Failed)],
            alias: vec![],
            seen: vec![("v1", failing())],
            tweak: |d| d.version = "v2".into(),
            expect: vec![("v1", Deleted), ("v2", Pending)],
        },
        Case {
            name: "deleted → dropped once gone",
            rows: vec![("v1", Deleted), ("v2", Live)],
            alias: vec!["tx-stats-v2"],
            seen: vec![("v2", running(0))],
            tweak: |d| d.version = "v2".into(),
            expect: vec![("v2", Live)],
        },
        Case {
            name: "deleted → pending (applied again)",
            rows: vec![("v1", Deleted)],
            alias: vec![],
            seen: vec![],
            tweak: none,
            expect: vec![("v1", Pending)],
        },
    ];
    for case in cases {
        let mut d = desired("v1");
        (case.tweak)(&mut d);
        let rows: Vec<VersionStatus> = case
            .rows
            .iter()
            .map(|(v, phase)| {
                let mut r = new_row(v, index(v));
                r.phase = *phase;
                if matches!(phase, Live | Retiring | Retained | RolledBack) {
                    r.promoted_at = Some(timestamp(t0()));
                }
                if phase.is_complete() {
                    // It has met the caught-up rule for longer than stableFor.
                    r.stable_since = Some(timestamp(t0() - chrono::Duration::minutes(5)));
                }
                if matches!(phase, Retiring | Retained | RolledBack) {
                    r.retired_at = Some(timestamp(t0()));
                }
                r
            })
            .collect();
        let observed = Observed {
            now: t0(),
            alias: AliasView::Targets(case.alias.iter().map(|s| s.to_string()).collect()),
            versions: case.seen.into_iter().map(|(v, s)| (v.to_string(), s)).collect(),
        };
        let decision = decide(&d, &rows, &observed);
        let got: Vec<(&str, VersionPhase)> =
            decision.rows.iter().map(|r| (r.version.as_str(), r.phase)).collect();
        assert_eq!(got, case.expect, "case: {}", case.name);
        // Deciding again on the result changes no phase (restart in that state).
        let mut world = observed.clone();
        if let Some(swap) = &decision.alias_swap {
            world.alias = AliasView::Targets(vec![swap.add.clone()]);
        }
        for action in &decision.workloads {
            if let WorkloadAction::Remove { version } = action {
                world.versions.remove(version);
            }
        }
        let again = decide(&d, &decision.rows, &world);
        let again_rows: Vec<(&str, VersionPhase)> =
            again.rows.iter().map(|r| (r.version.as_str(), r.phase)).collect();
        let expected_after: Vec<(&str, VersionPhase)> = case
            .expect
            .iter()
            .copied()
            .filter(|(v, p)| *p != Deleted || world.versions.contains_key(*v))
            .collect();
        assert_eq!(again_rows, expected_after, "repeat of case: {}", case.name);
        assert_eq!(again.alias_swap, None, "repeat of case {} moved the alias", case.name);
    }
}

#[test]
fn conditions_keep_their_transition_time_while_unchanged() {
    let mut sim = Sim::new("v1");
    sim.step();
    let d = sim.step();
    let first = conditions(&[], &d, &sim.desired, true, sim.now);
    assert_eq!(
        first.iter().map(|c| c.type_.as_str()).collect::<Vec<_>>(),
        ["Ready", "Progressing", "Degraded"]
    );
    assert_eq!(first[0].status, ConditionStatus::False);
    assert_eq!(first[1].status, ConditionStatus::True);
    assert!(first.iter().all(|c| c.observed_generation == Some(1)));
    sim.advance(Duration::from_secs(30));
    let later = conditions(&first, &d, &sim.desired, true, sim.now);
    assert_eq!(later[0].last_transition_time, first[0].last_transition_time);
    sim.replay_to_head("v1");
    let live = conditions(&later, sim.last.as_ref().unwrap(), &sim.desired, true, sim.now);
    assert_eq!(live[0].status, ConditionStatus::True);
    assert_ne!(live[0].last_transition_time, first[0].last_transition_time);
    assert!(live[0].message.contains("tx-stats-v1"));
    assert_eq!(live[1].status, ConditionStatus::False);
}

#[test]
fn cleanup_follows_the_deletion_policy() {
    let rows = vec![new_row("v1", index("v1")), new_row("v2", index("v2"))];
    let retain = cleanup(&rows, DeletionPolicy::Retain);
    assert_eq!(retain.remove_workloads, ["v1", "v2"]);
    assert!(retain.delete_indices.is_empty());
    let delete = cleanup(&rows, DeletionPolicy::Delete);
    assert_eq!(delete.delete_indices, [index("v1"), index("v2")]);
}

#[test]
fn same_logic_ignores_operational_fields() {
    let job = kappa_crds::load_manifest(kappa_crds::REFERENCE_JOB_YAML).unwrap();
    let mut other = job.spec.clone();
    other.promotion.max_lag = 5;
    other.engine.replicas = Some(0);
    other.retention.keep_versions = 3;
    assert!(same_logic(&job.spec, &other));
    other.pipeline.max_lateness = "1d".into();
    assert!(!same_logic(&job.spec, &other));
}
