//! Moving the alias: `kappa promote` approves `spec.version` (or pins another complete
//! version), `kappa rollback` pins a previous one. Both send one merge patch to the StreamJob;
//! the operator then swaps the alias.
//!
//! A rollback is the emergency path: the pin moves the alias at once, even to a version whose
//! engine was stopped and whose index therefore misses everything since (the command says how
//! far behind it is; its engine resumes and catches up). `kappa rollback --wait` trades
//! speed for completeness: it first asks the operator to run the target's engine
//! (annotation `kappa.dev/warm-version`), waits until the target's index is current by the
//! caught-up rule, and only then pins it.

use std::io::Write;

use anyhow::{bail, Context};
use chrono::{DateTime, Utc};
use kappa_crds::{PromotionMode, StreamJob, VersionPhase, VersionStatus};
use kappa_operator::names::{ANNOTATION_APPROVE, ANNOTATION_WARM_VERSION};
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde_json::{json, Value};

use super::status::behind_text;
use super::{can_serve, fetch, is_previous, job_ref, rows, serving_versions};

/// Field manager of the CLI's patches (visible in `metadata.managedFields`).
pub const FIELD_MANAGER: &str = "kappa-cli";

/// One change to a StreamJob that moves, or lets the operator move, the alias.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AliasChange {
    /// Approve `spec.version` (annotation `kappa.dev/approve-version`) and remove a pin that
    /// would hold the alias elsewhere.
    Approve {
        /// `spec.version`.
        version: String,
        /// The `spec.activeVersion` the patch removes, if one was set.
        cleared_pin: Option<String>,
    },
    /// Pin the alias to a complete version (`spec.activeVersion`); no approval needed.
    Pin {
        /// The version to pin.
        version: String,
        /// The `spec.activeVersion` it replaces, if one was set.
        previous_pin: Option<String>,
    },
}

impl AliasChange {
    /// The JSON merge patch (RFC 7386) that makes this change; `null` removes a field.
    ///
    /// ```
    /// use kappa_cli::cluster::alias::AliasChange;
    /// let pin = AliasChange::Pin { version: "v1".into(), previous_pin: None };
    /// assert_eq!(pin.merge_patch(), serde_json::json!({"spec": {"activeVersion": "v1"}}));
    /// ```
    pub fn merge_patch(&self) -> Value {
        match self {
            AliasChange::Approve { version, cleared_pin } => {
                let mut patch = json!({"metadata": {"annotations": {ANNOTATION_APPROVE: version}}});
                if cleared_pin.is_some() {
                    patch["spec"] = json!({"activeVersion": null});
                }
                patch
            }
            AliasChange::Pin { version, .. } => json!({"spec": {"activeVersion": version}}),
        }
    }

    /// What the patch changes, field by field.
    pub fn describe(&self) -> String {
        match self {
            AliasChange::Approve { version, cleared_pin } => {
                let mut text =
                    format!("metadata.annotations[\"{ANNOTATION_APPROVE}\"] = \"{version}\"");
                if let Some(pin) = cleared_pin {
                    text.push_str(&format!(", spec.activeVersion removed (was \"{pin}\")"));
                }
                text
            }
            AliasChange::Pin { version, previous_pin } => {
                let was = match previous_pin {
                    Some(p) => format!("was \"{p}\""),
                    None => "was unset".to_string(),
                };
                format!("spec.activeVersion = \"{version}\" ({was})")
            }
        }
    }

    /// The version the alias is meant to end up on.
    pub fn version(&self) -> &str {
        match self {
            AliasChange::Approve { version, .. } | AliasChange::Pin { version, .. } => version,
        }
    }
}

/// What `kappa promote JOB [VERSION]` patches. `spec.version` (the default) is approved, and a
/// pin is removed; any other version is pinned, which needs it in a complete phase.
pub fn plan_promote(job: &StreamJob, version: Option<&str>) -> anyhow::Result<AliasChange> {
    let spec_version = job.spec.version.as_str();
    let version = version.unwrap_or(spec_version);
    if version != spec_version {
        check_pin(job, version, "promote")?;
        return Ok(AliasChange::Pin {
            version: version.to_string(),
            previous_pin: job.spec.active_version.clone(),
        });
    }
    if let Some(row) = rows(job).iter().find(|r| r.version == version) {
        let detail = row.message.as_deref().map(|m| format!(" ({m})")).unwrap_or_default();
        match row.phase {
            VersionPhase::Failed => bail!(
                "cannot promote StreamJob {} version {version}: status.versions shows it \
                 Failed{detail}, and a failed version is never promoted; fix the job and set a \
                 new spec.version",
                job_ref(job)
            ),
            VersionPhase::Deleted => bail!(
                "cannot promote StreamJob {} version {version}: status.versions shows it \
                 Deleted{detail}; set a new spec.version to replay it",
                job_ref(job)
            ),
            _ => {}
        }
    }
    Ok(AliasChange::Approve {
        version: version.to_string(),
        cleared_pin: job.spec.active_version.clone(),
    })
}

/// What `kappa rollback JOB [--to VERSION]` patches: a pin to `VERSION`, which must be complete,
/// or by default to the most recently retired version ([`rollback_target`]).
pub fn plan_rollback(job: &StreamJob, to: Option<&str>) -> anyhow::Result<AliasChange> {
    let version = match to {
        Some(v) => {
            check_pin(job, v, "roll back")?;
            v.to_string()
        }
        None => match rollback_target(rows(job)) {
            Some(row) => row.version.clone(),
            None => bail!(
                "StreamJob {} has no retained version to roll back to: keep at least one with \
                 spec.retention.keepVersions (now {}); versions that can serve: {}",
                job_ref(job),
                job.spec.retention.keep_versions,
                serving_versions(rows(job))
            ),
        },
    };
    Ok(AliasChange::Pin { version, previous_pin: job.spec.active_version.clone() })
}

/// The default rollback target: of the versions that were live and are kept (`Retiring`,
/// `Retained`, `RolledBack`), the one with the latest `retiredAt`.
pub fn rollback_target(rows: &[VersionStatus]) -> Option<&VersionStatus> {
    rows.iter().filter(|r| is_previous(r.phase)).max_by_key(|r| retired_at(r))
}

fn retired_at(row: &VersionStatus) -> Option<DateTime<Utc>> {
    let text = row.retired_at.as_deref()?;
    DateTime::parse_from_rfc3339(text).ok().map(|t| t.with_timezone(&Utc))
}

/// A pin must name a version the status shows complete (the operator refuses others).
fn check_pin(job: &StreamJob, version: &str, verb: &str) -> anyhow::Result<()> {
    let rows = rows(job);
    let Some(row) = rows.iter().find(|r| r.version == version) else {
        bail!(
            "cannot {verb} StreamJob {} to version {version}: status.versions has no row for it; \
             versions that can serve: {}",
            job_ref(job),
            serving_versions(rows)
        );
    };
    if !can_serve(row.phase) {
        bail!(
            "cannot {verb} StreamJob {} to version {version}: status.versions shows it {:?}, and \
             only a complete version (CaughtUp, Live, Retiring, Retained, RolledBack) can serve \
             the alias; versions that can serve: {}",
            job_ref(job),
            row.phase,
            serving_versions(rows)
        );
    }
    Ok(())
}

/// What the operator does after `change`, in one sentence for the user.
pub fn next_step(job: &StreamJob, change: &AliasChange) -> String {
    let alias = &job.spec.sink.elasticsearch.alias;
    let name = job.metadata.name.as_deref().unwrap_or("<job>");
    let live = job.status.as_ref().and_then(|s| s.live_version.as_deref());
    let index = kappa_crds::naming::index_name_for(alias, change.version());
    let gate = if job.spec.promotion.verify.is_some() && live.is_some() {
        " once the verification gate passes"
    } else {
        ""
    };
    match change {
        AliasChange::Pin { version, .. } if live == Some(version.as_str()) => format!(
            "{version} is already live; the pin keeps the alias there until `kappa promote \
             {name}` removes it"
        ),
        AliasChange::Pin { version, .. } => {
            let row = rows(job).iter().find(|r| &r.version == version);
            let catching_up = match row {
                Some(r) if r.current == Some(true) => format!("; {version}'s index is current"),
                Some(r) => format!(
                    "; {version} is {}: its engine resumes from its checkpoint and catches up, \
                     and until then readers see its index as it was when it stopped (`kappa \
                     status {name}` shows when it is current; `kappa rollback --wait` switches \
                     only once it is)",
                    behind_text(r)
                ),
                None => String::new(),
            };
            format!(
                "the operator moves alias {alias} to {index} on its next reconcile (a pin needs \
                 no approval){catching_up}; `kappa promote {name}` returns the alias to \
                 spec.version ({})",
                job.spec.version
            )
        }
        AliasChange::Approve { version, cleared_pin } => {
            let row = rows(job).iter().find(|r| &r.version == version);
            let auto = if job.spec.promotion.mode == PromotionMode::Auto {
                " (promotion mode is auto, so the approval is recorded but not needed)"
            } else {
                ""
            };
            match row.map(|r| r.phase) {
                Some(VersionPhase::Live) if cleared_pin.is_some() => format!(
                    "{version} is already live; with the pin removed the alias follows \
                     spec.version again"
                ),
                Some(VersionPhase::Live) => format!("{version} is already live: nothing to do"),
                Some(phase @ (VersionPhase::Pending | VersionPhase::Replaying)) => {
                    let lag = row.and_then(|r| r.lag).map_or("-".to_string(), |l| l.to_string());
                    format!(
                        "{version} is {phase:?} (lag {lag}): the operator moves alias {alias} to \
                         {index} once it has caught up (lag <= {} for {}){gate}{auto}",
                        job.spec.promotion.max_lag, job.spec.promotion.stable_for
                    )
                }
                Some(_) if row.is_some_and(|r| r.current == Some(false)) => format!(
                    "the operator moves alias {alias} to {index} once {version}'s index is \
                     current again (its engine runs and catches up){gate}{auto}"
                ),
                Some(_) => format!(
                    "the operator moves alias {alias} to {index} on its next reconcile{gate}{auto}"
                ),
                None => format!(
                    "the operator has not reported {version} yet: it replays the log, then moves \
                     alias {alias} to {index} once caught up{gate}{auto}"
                ),
            }
        }
    }
}

/// `kappa promote JOB [VERSION]`: approves `spec.version` (the default) or pins `version`, and
/// prints what was patched and what the operator does next.
pub async fn promote(
    client: Client,
    ns: &str,
    job: &str,
    version: Option<&str>,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let api: Api<StreamJob> = Api::namespaced(client, ns);
    let current = fetch(&api, ns, job).await?;
    let change = plan_promote(&current, version)?;
    apply(&api, &current, &change, out).await
}

/// `kappa rollback JOB [--to VERSION]`: pins `to`, or the most recently retired version, and
/// prints what was patched and what the operator does next.
pub async fn rollback(
    client: Client,
    ns: &str,
    job: &str,
    to: Option<&str>,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let api: Api<StreamJob> = Api::namespaced(client, ns);
    let current = fetch(&api, ns, job).await?;
    let change = plan_rollback(&current, to)?;
    apply(&api, &current, &change, out).await
}

/// How `kappa rollback --wait` waits for its target.
#[derive(Debug, Clone, Copy)]
pub struct WaitOptions {
    /// Give up (and stop warming the target) after this long.
    pub timeout: std::time::Duration,
    /// Time between polls of the StreamJob.
    pub interval: std::time::Duration,
}

/// The merge patch that asks the operator to run `version`'s engine (`Some`) or stops asking
/// (`None`).
///
/// ```
/// use kappa_cli::cluster::alias::warm_patch;
/// assert_eq!(
///     warm_patch(Some("v1")),
///     serde_json::json!({"metadata": {"annotations": {"kappa.dev/warm-version": "v1"}}})
/// );
/// ```
pub fn warm_patch(version: Option<&str>) -> Value {
    json!({"metadata": {"annotations": {ANNOTATION_WARM_VERSION: version}}})
}

/// `kappa rollback JOB [--to VERSION] --wait`: warms the target, waits until its index is
/// current by the caught-up rule, then pins it (and stops warming it) in one patch. On
/// timeout or Ctrl-C it stops warming the target, leaves the alias where it is and fails.
pub async fn rollback_when_current(
    client: Client,
    ns: &str,
    job: &str,
    to: Option<&str>,
    wait: WaitOptions,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let api: Api<StreamJob> = Api::namespaced(client, ns);
    let current = fetch(&api, ns, job).await?;
    let change = plan_rollback(&current, to)?;
    let version = change.version().to_owned();
    let is_current =
        |j: &StreamJob| rows(j).iter().any(|r| r.version == version && r.current == Some(true));
    let params =
        PatchParams { field_manager: Some(FIELD_MANAGER.to_string()), ..Default::default() };
    if !is_current(&current) {
        api.patch(job, &params, &Patch::Merge(warm_patch(Some(&version))))
            .await
            .with_context(|| format!("cannot patch StreamJob {}", job_ref(&current)))?;
        let live = current.status.as_ref().and_then(|s| s.live_version.clone());
        writeln!(
            out,
            "warming {version}: the operator runs its engine so that its index catches up; the \
             alias stays on {} until then",
            live.as_deref().unwrap_or("its current target")
        )?;
        let deadline = std::time::Instant::now() + wait.timeout;
        let interrupted = tokio::signal::ctrl_c();
        tokio::pin!(interrupted);
        let mut last = String::new();
        loop {
            let latest = fetch(&api, ns, job).await?;
            if is_current(&latest) {
                break;
            }
            let row = rows(&latest).iter().find(|r| r.version == version).cloned();
            if let Some(row) = &row {
                if !can_serve(row.phase) {
                    let _ = api.patch(job, &params, &Patch::Merge(warm_patch(None))).await;
                    bail!(
                        "{version} is {:?} now and can no longer serve the alias; nothing was \
                         pinned",
                        row.phase
                    );
                }
                let line = format!("{version}: {}", behind_text(row));
                if line != last {
                    writeln!(out, "{line}")?;
                    out.flush()?;
                    last = line;
                }
            }
            let gave_up = tokio::select! {
                _ = tokio::time::sleep(wait.interval) => std::time::Instant::now() >= deadline,
                _ = &mut interrupted => true,
            };
            if gave_up {
                let _ = api.patch(job, &params, &Patch::Merge(warm_patch(None))).await;
                bail!(
                    "{version} did not become current within {:?} (or the wait was \
                     interrupted); the alias was not moved and {version}'s engine is no longer \
                     kept running for it. `kappa rollback {job} --to {version}` without --wait \
                     switches at once",
                    wait.timeout
                );
            }
        }
    }
    let latest = fetch(&api, ns, job).await?;
    let change = plan_rollback(&latest, Some(&version))?;
    let mut patch = change.merge_patch();
    patch["metadata"] = warm_patch(None)["metadata"].take();
    api.patch(job, &params, &Patch::Merge(patch))
        .await
        .with_context(|| format!("cannot patch StreamJob {}", job_ref(&latest)))?;
    writeln!(
        out,
        "{version} is current; patched StreamJob {}: {}",
        job_ref(&latest),
        change.describe()
    )?;
    writeln!(out, "next: {}", next_step(&latest, &change))?;
    Ok(())
}

async fn apply(
    api: &Api<StreamJob>,
    job: &StreamJob,
    change: &AliasChange,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let name = job.metadata.name.as_deref().unwrap_or_default();
    let params =
        PatchParams { field_manager: Some(FIELD_MANAGER.to_string()), ..Default::default() };
    api.patch(name, &params, &Patch::Merge(change.merge_patch()))
        .await
        .with_context(|| format!("cannot patch StreamJob {}", job_ref(job)))?;
    writeln!(out, "patched StreamJob {}: {}", job_ref(job), change.describe())?;
    writeln!(out, "next: {}", next_step(job, change))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::cluster::fixture::{job, row};
    use VersionPhase::*;

    fn retired(mut r: VersionStatus, at: &str) -> VersionStatus {
        r.retired_at = Some(at.to_string());
        r
    }

    #[test]
    fn promote_defaults_to_approving_spec_version() {
        let j = job("v2", vec![row("v1", Live), row("v2", CaughtUp)]);
        let change = plan_promote(&j, None).unwrap();
        assert_eq!(change, AliasChange::Approve { version: "v2".into(), cleared_pin: None });
        assert_eq!(
            change.merge_patch(),
            json!({"metadata": {"annotations": {"kappa.dev/approve-version": "v2"}}})
        );
        assert!(next_step(&j, &change).contains("moves alias tx-stats to tx-stats-v2"));
    }

    #[test]
    fn approving_spec_version_removes_a_pin_that_holds_the_alias_elsewhere() {
        let mut j = job("v2", vec![row("v1", Live), row("v2", RolledBack)]);
        j.spec.active_version = Some("v1".into());
        let change = plan_promote(&j, Some("v2")).unwrap();
        assert_eq!(
            change.merge_patch(),
            json!({
                "metadata": {"annotations": {"kappa.dev/approve-version": "v2"}},
                "spec": {"activeVersion": null}
            })
        );
        assert!(change.describe().contains("spec.activeVersion removed (was \"v1\")"));
    }

    #[test]
    fn promoting_another_version_pins_it_when_complete() {
        let j = job("v3", vec![row("v1", Retained), row("v2", Live), row("v3", Replaying)]);
        let change = plan_promote(&j, Some("v1")).unwrap();
        assert_eq!(change.merge_patch(), json!({"spec": {"activeVersion": "v1"}}));
        assert_eq!(change.describe(), "spec.activeVersion = \"v1\" (was unset)");
    }

    #[test]
    fn promoting_an_incomplete_or_unknown_version_is_refused_with_the_servable_ones() {
        let j = job("v3", vec![row("v1", Retained), row("v2", Live), row("v4", Replaying)]);
        let err = plan_promote(&j, Some("v4")).unwrap_err().to_string();
        assert!(err.contains("version v4: status.versions shows it Replaying"), "{err}");
        assert!(err.contains("versions that can serve: v1 (Retained), v2 (Live)"), "{err}");
        let err = plan_promote(&j, Some("v9")).unwrap_err().to_string();
        assert!(err.contains("has no row for it"), "{err}");
    }

    #[test]
    fn a_failed_spec_version_is_not_approved() {
        let mut failed = row("v2", Failed);
        failed.message = Some("replay refused".into());
        let j = job("v2", vec![row("v1", Live), failed]);
        let err = plan_promote(&j, None).unwrap_err().to_string();
        assert!(err.contains("Failed (replay refused)"), "{err}");
    }

    #[test]
    fn a_replaying_spec_version_is_approved_ahead_and_the_next_step_says_so() {
        let mut replaying = row("v2", Replaying);
        replaying.lag = Some(5000);
        let mut j = job("v2", vec![row("v1", Live), replaying]);
        j.spec.promotion.mode = PromotionMode::Manual;
        let change = plan_promote(&j, None).unwrap();
        let next = next_step(&j, &change);
        assert!(next.contains("v2 is Replaying (lag 5000)"), "{next}");
        assert!(next.contains("once it has caught up (lag <= 1000 for 60s)"), "{next}");
        assert!(!next.contains("auto"), "{next}");
    }

    #[test]
    fn rollback_defaults_to_the_most_recently_retired_version() {
        let rows = vec![
            retired(row("v1", Retained), "2026-01-01T10:00:00Z"),
            retired(row("v2", Retiring), "2026-01-02T10:00:00Z"),
            row("v3", Live),
            retired(row("v0", Deleted), "2026-01-03T10:00:00Z"),
        ];
        assert_eq!(rollback_target(&rows).unwrap().version, "v2");
        let j = job("v3", rows);
        assert_eq!(
            plan_rollback(&j, None).unwrap(),
            AliasChange::Pin { version: "v2".into(), previous_pin: None }
        );
    }

    #[test]
    fn rollback_without_a_retained_version_says_to_keep_one() {
        let mut j = job("v2", vec![row("v1", Deleted), row("v2", Live)]);
        j.spec.retention.keep_versions = 0;
        let err = plan_rollback(&j, None).unwrap_err().to_string();
        assert!(
            err.contains(
                "no retained version to roll back to: keep at least one with \
                 spec.retention.keepVersions (now 0)"
            ),
            "{err}"
        );
    }

    #[test]
    fn rollback_to_a_version_that_is_not_complete_is_refused() {
        let j = job("v2", vec![row("v1", Deleted), row("v2", Live)]);
        let err = plan_rollback(&j, Some("v1")).unwrap_err().to_string();
        assert!(
            err.contains("cannot roll back StreamJob payments/tx-stats to version v1"),
            "{err}"
        );
        assert!(err.contains("shows it Deleted"), "{err}");
    }

    #[test]
    fn a_pin_to_the_live_version_says_it_stays() {
        let mut j = job("v2", vec![row("v1", Live), row("v2", Replaying)]);
        j.status.as_mut().unwrap().live_version = Some("v1".into());
        let change = plan_rollback(&j, Some("v1")).unwrap();
        assert!(next_step(&j, &change).starts_with("v1 is already live"));
    }
}
