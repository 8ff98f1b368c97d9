//! The status step: `status` of the StreamJob (rows, conditions, the live version, the printer
//! columns' `phase` and `lag`) written with a merge patch of the status subresource, and Events.

use chrono::{DateTime, Utc};
use kappa_crds::{
    Condition, ConditionStatus, FieldError, StreamJob, StreamJobStatus, CONDITION_DEGRADED,
    CONDITION_PROGRESSING, CONDITION_READY,
};
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use super::{kube_error, Context, Error};
use crate::lifecycle::{self, Decision, Desired};

/// The status a decision leads to (pure).
pub fn status_of(
    job: &StreamJob,
    desired: &Desired,
    decision: &Decision,
    alias_known: bool,
    now: DateTime<Utc>,
) -> StreamJobStatus {
    let previous = job.status.as_ref().map(|s| s.conditions.as_slice()).unwrap_or_default();
    let current = decision.rows.iter().find(|r| r.version == desired.version);
    StreamJobStatus {
        observed_generation: Some(desired.generation),
        conditions: lifecycle::conditions(previous, decision, desired, alias_known, now),
        live_version: decision.live_version.clone(),
        phase: current.map(|r| r.phase),
        lag: current.and_then(|r| r.lag),
        versions: decision.rows.clone(),
    }
}

/// Writes the status of a decision.
pub async fn write(
    job: &StreamJob,
    ctx: &Context,
    desired: &Desired,
    decision: &Decision,
    alias_known: bool,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    let status = status_of(job, desired, decision, alias_known, now);
    patch_status(job, ctx, &status).await
}

/// Writes the status of a job whose spec is invalid: `Degraded` with every field error, and
/// nothing started.
pub async fn write_invalid(
    job: &StreamJob,
    ctx: &Context,
    errors: &[FieldError],
) -> Result<(), Error> {
    let mut status = job.status.clone().unwrap_or_default();
    let generation = job.metadata.generation;
    let message = errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
    let now = lifecycle::timestamp(Utc::now());
    let keep = |c: &Condition, s: ConditionStatus| {
        if c.status == s {
            c.last_transition_time.clone()
        } else {
            now.clone()
        }
    };
    let conditions: Vec<Condition> = [
        (CONDITION_DEGRADED, ConditionStatus::True, "InvalidSpec", message),
        (CONDITION_PROGRESSING, ConditionStatus::False, "InvalidSpec", "fix the spec".to_owned()),
    ]
    .into_iter()
    .map(|(type_, s, reason, message)| Condition {
        type_: type_.to_owned(),
        status: s,
        observed_generation: generation,
        last_transition_time: status
            .conditions
            .iter()
            .find(|c| c.type_ == type_)
            .map(|c| keep(c, s))
            .unwrap_or_else(|| now.clone()),
        reason: reason.to_owned(),
        message,
    })
    .collect();
    status.conditions.retain(|c| c.type_ == CONDITION_READY);
    status.conditions.extend(conditions);
    status.observed_generation = generation;
    patch_status(job, ctx, &status).await
}

async fn patch_status(
    job: &StreamJob,
    ctx: &Context,
    status: &StreamJobStatus,
) -> Result<(), Error> {
    let ns = job.namespace().unwrap_or_default();
    let api: Api<StreamJob> = Api::namespaced(ctx.client.clone(), &ns);
    // A merge patch: `versions` and `conditions` are replaced whole, and absent optional
    // fields (`liveVersion`) are cleared with explicit nulls.
    let mut body = serde_json::to_value(status).expect("status serializes");
    for field in ["liveVersion", "phase", "lag", "observedGeneration"] {
        body.as_object_mut()
            .expect("status is an object")
            .entry(field)
            .or_insert(serde_json::Value::Null);
    }
    api.patch_status(
        &job.name_any(),
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": body })),
    )
    .await
    .map_err(kube_error(format!("write status of StreamJob {ns}/{}", job.name_any())))?;
    Ok(())
}

/// Publishes an Event about `job`. A failure to publish is logged, never fatal: Events are for
/// people, the status is the record.
pub async fn publish(
    ctx: &Context,
    job: &StreamJob,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.to_owned(),
        note: Some(truncate(note, 1000)),
        action: action.to_owned(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &job.object_ref(&())).await {
        tracing::warn!(%e, reason, "cannot publish Event");
    }
}

fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}
