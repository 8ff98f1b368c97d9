//! The read and observe steps: what exists in the cluster for a job (its versions'
//! ConfigMaps, Deployments and pods) and how far each version is (Kafka, engine `/status`), the
//! alias, and the verification gate. Everything decided from these lives in
//! [`crate::lifecycle`]; the pure interpretation of workloads and pods is here, next to the
//! reads, as small functions with their own tests.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kappa_crds::{StreamJob, StreamJobSpec, VersionPhase, VersionStatus};
use kappa_service::sink::elasticsearch::Cluster;
use kube::api::ListParams;
use kube::{Api, ResourceExt};

use super::{kube_error, Context, Error};
use crate::build::spec_from_config_map;
use crate::lifecycle::{AliasView, Desired, GateVerdict, Observed, VersionObservation, Workload};
use crate::names;
use crate::observe::engine::merge_progress;
use crate::observe::ObserveError;

/// A pod whose engine container restarted at least this often while backing off is
/// crash-looping: the version is failed.
pub const CRASH_LOOP_RESTARTS: i32 = 3;

/// What exists in the cluster for one job.
#[derive(Debug, Default)]
pub struct World {
    /// Each version's ConfigMap.
    pub config_maps: BTreeMap<String, ConfigMap>,
    /// Each version's logic, read back from its ConfigMap (the operator's memory of versions
    /// that are no longer `spec.version`).
    pub specs: BTreeMap<String, StreamJobSpec>,
    /// Each version's Deployment.
    pub deployments: BTreeMap<String, Deployment>,
    /// The job's engine pods.
    pub pods: Vec<Pod>,
}

impl World {
    /// The spec `version` runs with: `spec.version` runs the resource's spec unless the
    /// recorded logic conflicts with it; older versions run what their ConfigMap holds.
    pub fn spec_of<'a>(
        &'a self,
        job: &'a StreamJob,
        version: &str,
        conflict: bool,
    ) -> Option<&'a StreamJobSpec> {
        if version == job.spec.version && !conflict {
            Some(&job.spec)
        } else {
            self.specs.get(version)
        }
    }
}

/// The label selector of every object of a job.
pub fn job_selector(job: &str) -> String {
    format!("{}={job},{}={}", names::LABEL_JOB, names::LABEL_MANAGED_BY, names::CONTROLLER_NAME)
}

fn version_label(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> Option<String> {
    meta.labels.as_ref()?.get(names::LABEL_VERSION).cloned()
}

/// Reads the job's ConfigMaps, Deployments and pods.
pub async fn read(job: &StreamJob, ctx: &Context) -> Result<World, Error> {
    let ns = job.namespace().unwrap_or_default();
    let selector = ListParams::default().labels(&job_selector(&job.name_any()));
    let mut world = World::default();
    let config_maps = Api::<ConfigMap>::namespaced(ctx.client.clone(), &ns)
        .list(&selector)
        .await
        .map_err(kube_error(format!("list ConfigMaps of {ns}/{}", job.name_any())))?;
    for cm in config_maps {
        let Some(version) = version_label(&cm.metadata) else { continue };
        match spec_from_config_map(&cm) {
            Ok(recorded) => {
                world.specs.insert(version.clone(), recorded.spec);
            }
            Err(e) => tracing::warn!(%e, "ignoring a damaged version ConfigMap"),
        }
        world.config_maps.insert(version, cm);
    }
    let deployments = Api::<Deployment>::namespaced(ctx.client.clone(), &ns)
        .list(&selector)
        .await
        .map_err(kube_error(format!("list Deployments of {ns}/{}", job.name_any())))?;
    for d in deployments {
        if let Some(version) = version_label(&d.metadata) {
            world.deployments.insert(version, d);
        }
    }
    let pod_selector =
        ListParams::default().labels(&format!("{}={}", names::LABEL_JOB, job.name_any()));
    world.pods = Api::<Pod>::namespaced(ctx.client.clone(), &ns)
        .list(&pod_selector)
        .await
        .map_err(kube_error(format!("list pods of {ns}/{}", job.name_any())))?
        .items;
    Ok(world)
}

/// A Deployment's state as the lifecycle sees it (pure).
pub fn workload_of(deployment: Option<&Deployment>) -> Workload {
    let Some(d) = deployment else { return Workload::Absent };
    if d.spec.as_ref().and_then(|s| s.replicas) == Some(0) {
        return Workload::Stopped;
    }
    let ready = d.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0);
    if ready >= 1 {
        Workload::Running
    } else {
        Workload::Starting
    }
}

/// What the pods of one version say: a failure (its engine is crash-looping: the version must
/// not be promoted) or a warning (its image cannot be pulled) (pure).
pub fn pod_trouble(pods: &[Pod], version: &str) -> (Option<String>, Option<String>) {
    let mut failure = None;
    let mut warning = None;
    for pod in pods {
        if version_label(&pod.metadata).as_deref() != Some(version) {
            continue;
        }
        let statuses = pod.status.as_ref().and_then(|s| s.container_statuses.as_ref());
        for c in statuses.into_iter().flatten().filter(|c| c.name == names::ENGINE_CONTAINER) {
            let waiting = c.state.as_ref().and_then(|s| s.waiting.as_ref());
            let reason = waiting.and_then(|w| w.reason.as_deref()).unwrap_or_default();
            let last = c.last_state.as_ref().and_then(|s| s.terminated.as_ref());
            let last_words = last
                .map(|t| {
                    let message = t.message.as_deref().map(str::trim).filter(|m| !m.is_empty());
                    match message {
                        Some(m) => format!("; last exit {}: {m}", t.exit_code),
                        None => format!("; last exit code {}", t.exit_code),
                    }
                })
                .unwrap_or_default();
            if reason == "CrashLoopBackOff" && c.restart_count >= CRASH_LOOP_RESTARTS {
                failure = Some(format!(
                    "engine pod {} is crash-looping ({} restarts){last_words}",
                    pod.name_any(),
                    c.restart_count
                ));
            } else if matches!(reason, "ImagePullBackOff" | "ErrImagePull" | "InvalidImageName") {
                let detail = waiting.and_then(|w| w.message.clone()).unwrap_or_default();
                warning = Some(format!(
                    "engine pod {} cannot pull its image: {reason} {detail}",
                    pod.name_any()
                ));
            }
        }
    }
    (failure, warning)
}

/// The versions a reconcile looks at: every recorded row and `spec.version`.
fn versions_to_observe(
    job: &StreamJob,
    rows: &[VersionStatus],
) -> Vec<(String, Option<VersionPhase>)> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for row in rows {
        if seen.insert(row.version.clone()) {
            out.push((row.version.clone(), Some(row.phase)));
        }
    }
    if seen.insert(job.spec.version.clone()) {
        out.push((job.spec.version.clone(), None));
    }
    out
}

/// Observes every version of the job, the alias and (when due) the verification gate.
pub async fn observe(
    job: &StreamJob,
    ctx: &Arc<Context>,
    world: &World,
    rows: &[VersionStatus],
    desired: &Desired,
    cluster: Option<&Cluster>,
) -> Observed {
    let now = Utc::now();
    let ns = job.namespace().unwrap_or_default();
    let name = job.name_any();
    let alias = match cluster {
        Some(cluster) => match cluster.alias_targets(&desired.alias).await {
            Ok(targets) => AliasView::Targets(targets),
            Err(e) => AliasView::Unknown(e.to_string()),
        },
        None => AliasView::Unknown("no Elasticsearch client (see the Degraded condition)".into()),
    };
    let conflict = desired.spec_conflict.is_some();
    let mut versions = BTreeMap::new();
    for (version, phase) in versions_to_observe(job, rows) {
        let workload = workload_of(world.deployments.get(&version));
        let mut seen = VersionObservation { workload, ..VersionObservation::default() };
        let (failure, warning) = pod_trouble(&world.pods, &version);
        seen.failure = failure;
        seen.warning = warning;
        // Retained versions are watched too: their lag (from the committed offsets) says how
        // far a rollback to them is behind.
        let watching = !matches!(phase, Some(VersionPhase::Deleted | VersionPhase::Failed));
        if let (true, Some(spec)) = (watching, world.spec_of(job, &version, conflict)) {
            let engine = if matches!(workload, Workload::Running | Workload::Starting) {
                let url = (ctx.locate_engine)(&ns, &name, &version);
                match ctx.probe.status(&url).await {
                    Ok(status) => Some(status),
                    Err(e) => {
                        tracing::debug!(%e, version, "engine status not available");
                        None
                    }
                }
            } else {
                None
            };
            let group = kappa_crds::consumer_group(&ns, &name, &version);
            let fresh =
                workload == Workload::Absent && matches!(phase, None | Some(VersionPhase::Pending));
            let (kafka, refusal) = observe_kafka(ctx, spec, group, fresh).await;
            let progress = merge_progress(kafka.as_ref(), engine.as_ref());
            seen.lag = progress.lag;
            seen.index_lag = progress.index_lag;
            seen.backlog = progress.backlog;
            seen.delay = progress.delay_ms.map(|ms| Duration::from_millis(ms.max(0) as u64));
            seen.consumed_offsets = progress.consumed_offsets;
            seen.head_offsets = progress.head_offsets;
            seen.watermark = progress.watermark;
            seen.failure = seen.failure.or(progress.engine_failed).or(refusal);
            seen.warning =
                seen.warning.or(progress.sink_degraded.map(|e| format!("sink degraded: {e}")));
            if let Some(lag) = seen.lag {
                ctx.metrics.set_lag(&ns, &name, &version, lag);
            }
            if let Some(lag) = seen.index_lag {
                ctx.metrics.set_index_lag(&ns, &name, &version, lag);
            }
        }
        versions.insert(version, seen);
    }
    if let (Some(cluster), Some(verify)) = (cluster, &job.spec.promotion.verify) {
        if let Some(verdict) =
            gate(job, rows, &alias, cluster, verify.max_doc_count_diff_percent, now).await
        {
            if let Some(seen) = versions.get_mut(&job.spec.version) {
                seen.gate = Some(verdict);
            }
        }
    }
    Observed { now, alias, versions }
}

/// Kafka progress of one version's group, and (for a version about to start) the retention
/// check's refusal. Connection problems leave the progress unknown; only a definite refusal
/// fails the version.
async fn observe_kafka(
    ctx: &Arc<Context>,
    spec: &StreamJobSpec,
    group: String,
    fresh: bool,
) -> (Option<crate::observe::kafka::GroupProgress>, Option<String>) {
    let observer = match ctx.kafka_observer(&spec.source.kafka) {
        Ok(o) => o,
        Err(e) => {
            tracing::warn!(%e, "cannot observe Kafka");
            return (None, None);
        }
    };
    let start_from = spec.source.kafka.start_from.clone();
    let task = tokio::task::spawn_blocking(move || {
        let refusal = if fresh {
            match observer.retention_check(&start_from) {
                Err(e @ (ObserveError::Refused { .. } | ObserveError::UnknownTopic { .. })) => {
                    Some(e.to_string())
                }
                Err(e) => {
                    tracing::warn!(%e, "retention check inconclusive");
                    None
                }
                Ok(()) => None,
            }
        } else {
            None
        };
        let progress = observer
            .group_progress(&group)
            .map_err(|e| tracing::debug!(%e, group, "consumer group progress not available"))
            .ok();
        (progress, refusal)
    });
    task.await.unwrap_or((None, None))
}

/// Runs the verification gate when it is due: `spec.version` has caught up and another version
/// is live.
async fn gate(
    job: &StreamJob,
    rows: &[VersionStatus],
    alias: &AliasView,
    cluster: &Cluster,
    max_diff_percent: f64,
    now: chrono::DateTime<Utc>,
) -> Option<GateVerdict> {
    let candidate =
        rows.iter().find(|r| r.version == job.spec.version && r.phase == VersionPhase::CaughtUp)?;
    let AliasView::Targets(targets) = alias else { return None };
    let live = rows.iter().find(|r| r.phase == VersionPhase::Live && targets.contains(&r.index))?;
    let lateness = kappa_crds::parse_duration(&job.spec.pipeline.max_lateness).ok()?;
    let settled = now - chrono::Duration::from_std(lateness).ok()?;
    let settled = settled.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    match crate::elastic::verify(cluster, &live.index, &candidate.index, &settled, max_diff_percent)
        .await
    {
        Ok(verdict) => Some(verdict),
        Err(e) => Some(GateVerdict::Failed(format!("verification gate could not count: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::apps::v1::{DeploymentSpec, DeploymentStatus};
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateTerminated, ContainerStateWaiting, ContainerStatus, PodStatus,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    fn deployment(replicas: i32, ready: i32) -> Deployment {
        Deployment {
            spec: Some(DeploymentSpec { replicas: Some(replicas), ..Default::default() }),
            status: Some(DeploymentStatus { ready_replicas: Some(ready), ..Default::default() }),
            ..Default::default()
        }
    }

    fn pod(version: &str, reason: &str, restarts: i32, message: Option<&str>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(format!("tx-stats-{version}-abc")),
                labels: Some([(names::LABEL_VERSION.to_string(), version.to_string())].into()),
                ..Default::default()
            },
            status: Some(PodStatus {
                container_statuses: Some(vec![ContainerStatus {
                    name: names::ENGINE_CONTAINER.into(),
                    restart_count: restarts,
                    state: Some(ContainerState {
                        waiting: Some(ContainerStateWaiting {
                            reason: Some(reason.into()),
                            message: Some("back-off".into()),
                        }),
                        ..Default::default()
                    }),
                    last_state: Some(ContainerState {
                        terminated: Some(ContainerStateTerminated {
                            exit_code: 1,
                            message: message.map(str::to_owned),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn workloads_from_deployments() {
        assert_eq!(workload_of(None), Workload::Absent);
        assert_eq!(workload_of(Some(&deployment(0, 0))), Workload::Stopped);
        assert_eq!(workload_of(Some(&deployment(1, 0))), Workload::Starting);
        assert_eq!(workload_of(Some(&deployment(1, 1))), Workload::Running);
    }

    #[test]
    fn crash_loops_fail_a_version_and_pull_errors_warn() {
        let refused = "refusing to replay topic tx-logs partition 0";
        let pods = vec![
            pod("v2", "CrashLoopBackOff", 4, Some(refused)),
            pod("v3", "CrashLoopBackOff", 1, None),
            pod("v4", "ImagePullBackOff", 0, None),
        ];
        let (failure, _) = pod_trouble(&pods, "v2");
        let failure = failure.unwrap();
        assert!(
            failure.contains("crash-looping (4 restarts)") && failure.contains(refused),
            "{failure}"
        );
        assert_eq!(pod_trouble(&pods, "v3"), (None, None), "one restart is not a loop yet");
        let (failure, warning) = pod_trouble(&pods, "v4");
        assert_eq!(failure, None);
        assert!(warning.unwrap().contains("cannot pull its image"));
        assert_eq!(pod_trouble(&pods, "v1"), (None, None));
    }
}
