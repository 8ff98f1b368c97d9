//! `kappa status`, `kappa promote` and `kappa rollback` against an in-memory Kubernetes API:
//! what they patch on the StreamJob, what they refuse (without patching), and what status
//! prints, for a settled job and for one whose new version is replaying.

use std::time::Duration;

use kappa_cli::cluster::{self, ProgressDisplay, StatusOptions};
use kappa_crds::{
    Condition, ConditionStatus, PromotionMode, StreamJob, StreamJobStatus, VersionPhase,
    VersionStatus,
};
use kappa_testkit::kube_api::FakeKube;

use VersionPhase::*;

const NS: &str = "payments";
const JOB: &str = "tx-stats";

/// The reference job (`payments/tx-stats`) with a chosen `spec.version` and status rows.
struct Fixture {
    job: StreamJob,
}

impl Fixture {
    fn at(version: &str) -> Self {
        let mut job = kappa_crds::load_manifest(kappa_crds::REFERENCE_JOB_YAML).unwrap();
        job.spec.version = version.to_string();
        job.status = Some(StreamJobStatus::default());
        Self { job }
    }

    fn status(&mut self) -> &mut StreamJobStatus {
        self.job.status.as_mut().unwrap()
    }

    /// Adds a row; a `Live` row also becomes `status.liveVersion`.
    fn row(mut self, version: &str, phase: VersionPhase) -> Self {
        if phase == Live {
            self.status().live_version = Some(version.to_string());
        }
        let index = format!("tx-stats-{version}");
        self.status()
            .versions
            .push(VersionStatus { phase, ..VersionStatus::pending(version, index) });
        self
    }

    /// Changes the last row added.
    fn with(mut self, change: impl FnOnce(&mut VersionStatus)) -> Self {
        change(self.status().versions.last_mut().unwrap());
        self
    }

    fn retired_at(self, at: &str) -> Self {
        self.with(|r| r.retired_at = Some(at.to_string()))
    }

    fn offsets(self, consumed: i64, head: i64) -> Self {
        self.with(|r| {
            r.consumed_offsets = Some(consumed);
            r.head_offsets = Some(head);
            r.lag = Some(head - consumed);
        })
    }

    fn condition(mut self, type_: &str, status: ConditionStatus, reason: &str, msg: &str) -> Self {
        self.status().conditions.push(Condition {
            type_: type_.to_string(),
            status,
            observed_generation: None,
            last_transition_time: "2026-03-01T10:00:00Z".to_string(),
            reason: reason.to_string(),
            message: msg.to_string(),
        });
        self
    }

    fn manual(mut self) -> Self {
        self.job.spec.promotion.mode = PromotionMode::Manual;
        self
    }

    fn pinned(mut self, version: &str) -> Self {
        self.job.spec.active_version = Some(version.to_string());
        self
    }

    fn keep_versions(mut self, n: i32) -> Self {
        self.job.spec.retention.keep_versions = n;
        self
    }

    fn insert(self, kube: &FakeKube) {
        kube.insert(&self.job);
    }
}

fn stored(kube: &FakeKube) -> StreamJob {
    kube.get_as::<StreamJob>(Some(NS), JOB).expect("the StreamJob is still stored")
}

fn approval(job: &StreamJob) -> Option<String> {
    job.metadata.annotations.as_ref()?.get("kappa.dev/approve-version").cloned()
}

fn patches(kube: &FakeKube) -> usize {
    kube.requests().iter().filter(|r| r.method.as_str() == "PATCH").count()
}

async fn promote(kube: &FakeKube, version: Option<&str>) -> anyhow::Result<String> {
    let mut out = Vec::new();
    cluster::promote(kube.client(), NS, JOB, version, &mut out).await?;
    Ok(String::from_utf8(out).unwrap())
}

async fn rollback(kube: &FakeKube, to: Option<&str>) -> anyhow::Result<String> {
    let mut out = Vec::new();
    cluster::rollback(kube.client(), NS, JOB, to, &mut out).await?;
    Ok(String::from_utf8(out).unwrap())
}

async fn status(kube: &FakeKube, watch: bool, interval: Duration) -> String {
    let options = StatusOptions { watch, interval, display: ProgressDisplay::Lines };
    let mut out = Vec::new();
    cluster::status(kube.client(), NS, JOB, &options, &mut out).await.unwrap();
    String::from_utf8(out).unwrap()
}

#[tokio::test]
async fn promote_in_manual_mode_approves_spec_version_with_a_merge_patch() {
    let kube = FakeKube::new();
    Fixture::at("v2").manual().row("v1", Live).row("v2", CaughtUp).insert(&kube);

    let out = promote(&kube, None).await.unwrap();

    let job = stored(&kube);
    assert_eq!(approval(&job).as_deref(), Some("v2"));
    assert_eq!(job.spec.active_version, None);
    assert_eq!(job.spec.version, "v2", "nothing else in the spec changes");
    assert!(
        out.contains(
            "patched StreamJob payments/tx-stats: \
             metadata.annotations[\"kappa.dev/approve-version\"] = \"v2\""
        ),
        "{out}"
    );
    assert!(out.contains("next: the operator moves alias tx-stats to tx-stats-v2"), "{out}");
    let requests = kube.requests();
    let patch = requests.iter().find(|r| r.method.as_str() == "PATCH").unwrap();
    assert_eq!(patch.content_type.as_deref(), Some("application/merge-patch+json"));
    assert_eq!(patch.query("fieldManager").as_deref(), Some("kappa-cli"));
}

#[tokio::test]
async fn promoting_spec_version_removes_the_pin_that_holds_the_alias_on_an_older_one() {
    let kube = FakeKube::new();
    Fixture::at("v2").manual().pinned("v1").row("v1", Live).row("v2", RolledBack).insert(&kube);

    let out = promote(&kube, Some("v2")).await.unwrap();

    let job = stored(&kube);
    assert_eq!(job.spec.active_version, None);
    assert_eq!(approval(&job).as_deref(), Some("v2"));
    assert!(out.contains("spec.activeVersion removed (was \"v1\")"), "{out}");
}

#[tokio::test]
async fn promoting_another_complete_version_pins_it_without_approval() {
    let kube = FakeKube::new();
    Fixture::at("v2").row("v1", Retained).row("v2", Live).insert(&kube);

    let out = promote(&kube, Some("v1")).await.unwrap();

    let job = stored(&kube);
    assert_eq!(job.spec.active_version.as_deref(), Some("v1"));
    assert_eq!(approval(&job), None);
    assert!(out.contains("spec.activeVersion = \"v1\" (was unset)"), "{out}");
    assert!(out.contains("moves alias tx-stats to tx-stats-v1"), "{out}");
}

#[tokio::test]
async fn promoting_a_version_that_cannot_serve_is_refused_and_nothing_is_patched() {
    let kube = FakeKube::new();
    Fixture::at("v3")
        .row("v1", Retained)
        .row("v2", Live)
        .row("v9", Failed)
        .row("v3", Replaying)
        .insert(&kube);

    let err = promote(&kube, Some("v9")).await.unwrap_err().to_string();

    assert!(err.contains("cannot promote StreamJob payments/tx-stats to version v9"), "{err}");
    assert!(err.contains("shows it Failed"), "{err}");
    assert!(err.contains("versions that can serve: v1 (Retained), v2 (Live)"), "{err}");
    assert_eq!(patches(&kube), 0);
    assert_eq!(stored(&kube).spec.active_version, None);
}

#[tokio::test]
async fn rollback_pins_the_most_recently_retired_version() {
    let kube = FakeKube::new();
    Fixture::at("v3")
        .keep_versions(2)
        .row("v1", Retained)
        .retired_at("2026-03-01T09:00:00Z")
        .row("v2", Retained)
        .retired_at("2026-03-02T09:00:00Z")
        .row("v3", Live)
        .insert(&kube);

    let out = rollback(&kube, None).await.unwrap();

    assert_eq!(stored(&kube).spec.active_version.as_deref(), Some("v2"));
    assert!(out.contains("patched StreamJob payments/tx-stats: spec.activeVersion = \"v2\""));
    assert!(out.contains("`kappa promote tx-stats` returns the alias to spec.version (v3)"));

    rollback(&kube, Some("v1")).await.unwrap();
    assert_eq!(stored(&kube).spec.active_version.as_deref(), Some("v1"));
}

#[tokio::test]
async fn rollback_without_a_retained_version_is_refused_with_what_to_keep() {
    let kube = FakeKube::new();
    Fixture::at("v2").keep_versions(0).row("v1", Deleted).row("v2", Live).insert(&kube);

    let err = rollback(&kube, None).await.unwrap_err().to_string();
    assert!(
        err.contains(
            "StreamJob payments/tx-stats has no retained version to roll back to: keep at least \
             one with spec.retention.keepVersions (now 0)"
        ),
        "{err}"
    );

    let err = rollback(&kube, Some("v1")).await.unwrap_err().to_string();
    assert!(err.contains("cannot roll back StreamJob payments/tx-stats to version v1"), "{err}");
    assert!(err.contains("shows it Deleted"), "{err}");
    assert_eq!(patches(&kube), 0);
}

#[tokio::test]
async fn a_missing_job_is_named_with_its_namespace() {
    let kube = FakeKube::new();
    let err = promote(&kube, None).await.unwrap_err().to_string();
    assert!(err.contains("StreamJob payments/tx-stats not found"), "{err}");
}

#[tokio::test]
async fn status_prints_versions_live_marker_and_conditions_in_one_poll() {
    let kube = FakeKube::new();
    Fixture::at("v2")
        .row("v1", Retained)
        .row("v2", Live)
        .with(|r| r.lag = Some(7))
        .condition("Ready", ConditionStatus::True, "Live", "alias tx-stats serves tx-stats-v2")
        .condition("Degraded", ConditionStatus::False, "Healthy", "")
        .insert(&kube);

    let out = status(&kube, false, Duration::from_millis(10)).await;

    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0],
        "StreamJob payments/tx-stats: spec.version v2, live v2, alias tx-stats, promotion auto"
    );
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>(),
        [
            "VERSION",
            "PHASE",
            "LIVE",
            "LAG",
            "INDEX",
            "LAG",
            "BACKLOG",
            "CURRENT",
            "WATERMARK",
            "AGE",
            "MESSAGE"
        ]
    );
    let cells = |i: usize| lines[i].split_whitespace().collect::<Vec<_>>();
    assert_eq!(cells(2), ["v1", "Retained", "-", "-", "-", "-", "-", "-"]);
    assert_eq!(cells(3), ["v2", "Live", "*", "7", "-", "-", "-", "-", "-"]);
    assert!(out.contains("Ready      True    Live     alias tx-stats serves tx-stats-v2"), "{out}");
    assert!(out.contains("Degraded   False   Healthy"), "{out}");
    let gets = kube.requests().iter().filter(|r| r.method.as_str() == "GET").count();
    assert_eq!(gets, 1, "nothing replays, so there is no rate to measure");
}

#[tokio::test]
async fn status_of_a_replaying_version_polls_twice_and_prints_its_progress() {
    let kube = FakeKube::new();
    Fixture::at("v2")
        .manual()
        .row("v1", Live)
        .row("v2", Replaying)
        .offsets(1200, 5000)
        .insert(&kube);

    let out = status(&kube, false, Duration::from_millis(20)).await;

    assert!(out.contains("v2       Replaying        3800"), "{out}");
    let progress = out.lines().last().unwrap();
    assert!(
        progress.starts_with(
            "v2 Replaying: 1200/5000 offsets (24.0%), lag 3800, rate: measuring (status unchanged \
             for "
        ),
        "{out}"
    );
    let gets = kube.requests().iter().filter(|r| r.method.as_str() == "GET").count();
    assert_eq!(gets, 2);
}

#[tokio::test]
async fn status_watch_follows_a_replay_until_it_has_caught_up() {
    let kube = FakeKube::new();
    let replaying =
        |consumed| Fixture::at("v2").row("v1", Live).row("v2", Replaying).offsets(consumed, 10_000);
    replaying(1000).insert(&kube);

    // Plays the operator: after each poll of `kappa status`, the next status.
    let operator = {
        let kube = kube.clone();
        tokio::spawn(async move {
            let gets = || kube.requests().iter().filter(|r| r.method.as_str() == "GET").count();
            for (after, next) in [
                (1, replaying(6000)),
                (2, Fixture::at("v2").row("v1", Live).row("v2", CaughtUp).offsets(10_000, 10_000)),
            ] {
                while gets() < after {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                next.insert(&kube);
            }
        })
    };
    let out = status(&kube, true, Duration::from_millis(200)).await;
    operator.await.unwrap();

    let progress: Vec<&str> = out.lines().filter(|l| l.contains(" offsets (")).collect();
    assert_eq!(progress.len(), 2, "{out}");
    assert!(progress[0].starts_with("v2 Replaying: 6000/10000 offsets (60.0%), lag 4000, "));
    assert!(progress[0].contains(" records/s, eta "), "{out}");
    assert!(progress[1].starts_with("v2 CaughtUp: 10000/10000 offsets (100.0%), lag 0"), "{out}");
    // The watch ends with the table as it is now.
    let last_table = out.rsplit("StreamJob payments/tx-stats").next().unwrap();
    assert!(last_table.contains("v2       CaughtUp"), "{out}");
}

fn warm_annotation(job: &StreamJob) -> Option<String> {
    job.metadata.annotations.as_ref()?.get("kappa.dev/warm-version").cloned()
}

async fn rollback_wait(kube: &FakeKube, to: &str, timeout: Duration) -> anyhow::Result<String> {
    let wait = cluster::WaitOptions { timeout, interval: Duration::from_millis(20) };
    let mut out = Vec::new();
    cluster::rollback_when_current(kube.client(), NS, JOB, Some(to), wait, &mut out).await?;
    Ok(String::from_utf8(out).unwrap())
}

#[tokio::test]
async fn rollback_to_a_stopped_version_switches_at_once_and_says_how_far_behind_it_is() {
    let kube = FakeKube::new();
    Fixture::at("v2")
        .row("v1", Retained)
        .retired_at("2026-03-01T09:00:00Z")
        .with(|r| {
            r.lag = Some(720_000);
            r.delay_seconds = Some(7_200);
            r.current = Some(false);
        })
        .row("v2", Live)
        .insert(&kube);

    let out = rollback(&kube, None).await.unwrap();

    assert_eq!(stored(&kube).spec.active_version.as_deref(), Some("v1"));
    assert!(
        out.contains(
            "v1 is 720000 records and 2h00m of log time behind the head: its engine resumes \
             from its checkpoint and catches up"
        ),
        "{out}"
    );
    assert!(out.contains("`kappa rollback --wait` switches only once it is"), "{out}");
}

#[tokio::test]
async fn rollback_wait_warms_the_target_and_pins_it_only_once_it_is_current() {
    let kube = FakeKube::new();
    Fixture::at("v2")
        .row("v1", Retained)
        .retired_at("2026-03-01T09:00:00Z")
        .with(|r| {
            r.lag = Some(720_000);
            r.current = Some(false);
        })
        .row("v2", Live)
        .insert(&kube);
    let waiting = {
        let kube = kube.clone();
        tokio::spawn(async move { rollback_wait(&kube, "v1", Duration::from_secs(60)).await })
    };
    // The operator is asked to run v1's engine; the alias is not pinned yet.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while warm_annotation(&stored(&kube)).is_none() {
        assert!(std::time::Instant::now() < deadline, "v1 was never warmed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(warm_annotation(&stored(&kube)).as_deref(), Some("v1"));
    // Polls go on while v1 catches up, and nothing is pinned meanwhile.
    let polls = || kube.requests().iter().filter(|r| r.method.as_str() == "GET").count();
    let before = polls();
    while polls() < before + 3 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(stored(&kube).spec.active_version, None, "not pinned while v1 is behind");
    // The operator reports v1 current.
    let mut job = stored(&kube);
    let row = job.status.as_mut().unwrap().versions.iter_mut().find(|r| r.version == "v1");
    let row = row.unwrap();
    row.current = Some(true);
    row.lag = Some(0);
    kube.insert(&job);

    let out = waiting.await.unwrap().unwrap();

    let job = stored(&kube);
    assert_eq!(job.spec.active_version.as_deref(), Some("v1"));
    assert_eq!(warm_annotation(&job), None, "the pin and the end of warming are one patch");
    assert!(out.contains("warming v1"), "{out}");
    assert!(out.contains("v1: 720000 records behind the head"), "{out}");
    assert!(out.contains("v1 is current; patched StreamJob payments/tx-stats"), "{out}");
}

#[tokio::test]
async fn rollback_wait_gives_up_after_its_timeout_and_stops_warming() {
    let kube = FakeKube::new();
    Fixture::at("v2")
        .row("v1", Retained)
        .retired_at("2026-03-01T09:00:00Z")
        .with(|r| r.current = Some(false))
        .row("v2", Live)
        .insert(&kube);

    let err = rollback_wait(&kube, "v1", Duration::from_millis(200)).await.unwrap_err();

    assert!(err.to_string().contains("v1 did not become current within"), "{err}");
    let job = stored(&kube);
    assert_eq!(job.spec.active_version, None, "the alias was not moved");
    assert_eq!(warm_annotation(&job), None, "v1's engine is no longer asked for");
}
