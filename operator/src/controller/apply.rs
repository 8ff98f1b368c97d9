//! The apply step: one reconcile of a live StreamJob ([`reconcile_job`]) and the cleanup when
//! it is deleted ([`cleanup_job`]). Objects go out with server-side apply under
//! [`names::FIELD_MANAGER`]; removals tolerate objects that are already gone.

use std::sync::Arc;

use chrono::Utc;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kappa_crds::{StreamJob, VersionPhase};
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::status::{self, publish};
use super::world::{self, World};
use super::{desired, kube_error, Context, Error};
use crate::build::{self, VersionWorkload};
use crate::elastic;
use crate::lifecycle::{self, WorkloadAction};
use crate::names;

/// Requeue of a job whose spec is invalid: nothing runs until it changes (a change triggers a
/// reconcile anyway).
const INVALID_REQUEUE: std::time::Duration = std::time::Duration::from_secs(300);

/// One reconcile of a StreamJob that is not being deleted.
pub async fn reconcile_job(job: &Arc<StreamJob>, ctx: &Arc<Context>) -> Result<Action, Error> {
    let errors = kappa_engine::plan::validate(job);
    if !errors.is_empty() {
        status::write_invalid(job, ctx, &errors).await?;
        return Ok(Action::requeue(INVALID_REQUEUE));
    }
    let rows = job.status.as_ref().map(|s| s.versions.clone()).unwrap_or_default();
    let world = world::read(job, ctx).await?;
    let desired = desired(job, &world.specs);
    let cluster = match elastic::connect(&ctx.client, job).await {
        Ok(cluster) => Some(cluster),
        Err(e) => {
            tracing::warn!(%e, "cannot connect to Elasticsearch");
            None
        }
    };
    let observed = world::observe(job, ctx, &world, &rows, &desired, cluster.as_ref()).await;
    let decision = lifecycle::decide(&desired, &rows, &observed);

    for action in &decision.workloads {
        match action {
            WorkloadAction::Apply { version, running } => {
                apply_version(job, ctx, &world, version, *running, desired.spec_conflict.is_some())
                    .await?;
            }
            WorkloadAction::Remove { version } => remove_version(job, ctx, version).await?,
        }
    }
    if let (Some(swap), Some(cluster)) = (&decision.alias_swap, &cluster) {
        if let Err(e) = elastic::move_alias(cluster, swap).await {
            let note = format!("moving alias {} to {} failed: {e}", swap.alias, swap.add);
            publish(ctx, job, EventType::Warning, "AliasSwapFailed", "SwapAlias", note).await;
            return Err(e.into());
        }
        if decision.transitions.iter().any(|t| t.reason == "RolledBack") {
            ctx.metrics.rollbacks.inc();
        }
        ctx.metrics.swaps.inc();
    }
    if let Some(cluster) = &cluster {
        for index in &decision.delete_indices {
            cluster.delete_index(index).await.map_err(elastic::ElasticError::from)?;
        }
    }
    let alias_known = matches!(observed.alias, lifecycle::AliasView::Targets(_));
    status::write(job, ctx, &desired, &decision, alias_known, observed.now).await?;
    for t in &decision.transitions {
        ctx.metrics.transitions.with_label_values(&[&format!("{:?}", t.to)]).inc();
        let kind =
            if t.to == VersionPhase::Failed { EventType::Warning } else { EventType::Normal };
        publish(ctx, job, kind, t.reason, "Transition", t.message.clone()).await;
    }
    Ok(Action::requeue(decision.requeue_after))
}

/// Applies a version's ConfigMap, Service and Deployment (scaled to 0 when not running).
async fn apply_version(
    job: &StreamJob,
    ctx: &Context,
    world: &World,
    version: &str,
    running: bool,
    conflict: bool,
) -> Result<(), Error> {
    let Some(spec) = world.spec_of(job, version, conflict) else {
        // Its ConfigMap was deleted by hand: the version's logic is gone with it.
        tracing::warn!(version, "no recorded spec for version; leaving its objects alone");
        return Ok(());
    };
    let replicas = if running { spec.engine.replicas.unwrap_or(1) } else { 0 };
    let spec = engine_view(spec);
    let workload = VersionWorkload { job, spec: &spec, replicas, defaults: &ctx.settings.engine };
    let ns = job.namespace().unwrap_or_default();
    ssa(ctx, &ns, &build::config_map(&workload)).await?;
    ssa(ctx, &ns, &build::service(&workload)).await?;
    ssa(ctx, &ns, &build::deployment(&workload)).await?;
    Ok(())
}

/// The spec as a version's engine gets it: fields only the operator reads (the pin, retention,
/// the deletion policy) are reset, so a rollback or a retention change does not change the
/// ConfigMap's hash and restart engines that have nothing to do with it.
fn engine_view(spec: &kappa_crds::StreamJobSpec) -> kappa_crds::StreamJobSpec {
    let mut spec = spec.clone();
    spec.active_version = None;
    spec.retention = kappa_crds::RetentionSpec::default();
    spec.deletion_policy = kappa_crds::DeletionPolicy::default();
    spec
}

/// Server-side apply of one object.
async fn ssa<K>(ctx: &Context, ns: &str, object: &K) -> Result<(), Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + Serialize
        + DeserializeOwned
        + std::fmt::Debug,
{
    let name = object.meta().name.clone().unwrap_or_default();
    let api: Api<K> = Api::namespaced(ctx.client.clone(), ns);
    api.patch(&name, &PatchParams::apply(names::FIELD_MANAGER).force(), &Patch::Apply(object))
        .await
        .map_err(kube_error(format!("apply {} {ns}/{name}", K::kind(&()))))?;
    Ok(())
}

/// Deletes a version's Deployment, Service and ConfigMap.
async fn remove_version(job: &StreamJob, ctx: &Context, version: &str) -> Result<(), Error> {
    let ns = job.namespace().unwrap_or_default();
    let name = names::version_object_name(&job.name_any(), version);
    delete::<Deployment>(ctx, &ns, &name).await?;
    delete::<Service>(ctx, &ns, &name).await?;
    delete::<ConfigMap>(ctx, &ns, &name).await?;
    Ok(())
}

async fn delete<K>(ctx: &Context, ns: &str, name: &str) -> Result<(), Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(ctx.client.clone(), ns);
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(kube_error(format!("delete {} {ns}/{name}", K::kind(&())))(e)),
    }
}

/// Cleanup of a StreamJob being deleted: every version's workload goes; under
/// `deletionPolicy: Delete` its indexes go too. When Elasticsearch cannot be reached for
/// [`super::Settings::cleanup_timeout`] after the deletion started (or the job carries
/// `kappa.dev/skip-index-cleanup: "true"`), the indexes are left, a Warning Event names them,
/// and the finalizer is released: a dead Elasticsearch never blocks namespace deletion.
pub async fn cleanup_job(job: &Arc<StreamJob>, ctx: &Arc<Context>) -> Result<Action, Error> {
    let rows = job.status.as_ref().map(|s| s.versions.clone()).unwrap_or_default();
    let world = world::read(job, ctx).await?;
    let plan = lifecycle::cleanup(&rows, job.spec.deletion_policy);
    let mut versions: Vec<String> = plan.remove_workloads.clone();
    versions.extend(world.deployments.keys().cloned());
    versions.extend(world.config_maps.keys().cloned());
    versions.sort();
    versions.dedup();
    for version in &versions {
        remove_version(job, ctx, version).await?;
    }
    if plan.delete_indices.is_empty() {
        return Ok(Action::await_change());
    }
    let skip =
        job.annotations().get(names::ANNOTATION_SKIP_INDEX_CLEANUP).is_some_and(|v| v == "true");
    if skip {
        let note = format!(
            "{}=true: indexes {} left in Elasticsearch",
            names::ANNOTATION_SKIP_INDEX_CLEANUP,
            plan.delete_indices.join(", ")
        );
        publish(ctx, job, EventType::Warning, "IndexCleanupSkipped", "Cleanup", note).await;
        return Ok(Action::await_change());
    }
    let result = async {
        let cluster = elastic::connect(&ctx.client, job).await?;
        for index in &plan.delete_indices {
            cluster.delete_index(index).await?;
        }
        Ok::<_, elastic::ElasticError>(())
    }
    .await;
    match result {
        Ok(()) => {
            let note = format!("deleted indexes {}", plan.delete_indices.join(", "));
            publish(ctx, job, EventType::Normal, "IndexesDeleted", "Cleanup", note).await;
            Ok(Action::await_change())
        }
        Err(e) if deletion_age(job) >= ctx.settings.cleanup_timeout => {
            let note = format!(
                "gave up deleting indexes {} after {:?}: {e}; delete them in Elasticsearch by hand",
                plan.delete_indices.join(", "),
                ctx.settings.cleanup_timeout
            );
            publish(ctx, job, EventType::Warning, "IndexCleanupAbandoned", "Cleanup", note).await;
            Ok(Action::await_change())
        }
        Err(e) => Err(e.into()),
    }
}

/// How long ago the deletion of `job` was requested.
fn deletion_age(job: &StreamJob) -> std::time::Duration {
    let Some(since) = &job.metadata.deletion_timestamp else { return std::time::Duration::ZERO };
    let since = since.0.as_millisecond();
    let now = Utc::now().timestamp_millis();
    std::time::Duration::from_millis(u64::try_from(now - since).unwrap_or(0))
}
