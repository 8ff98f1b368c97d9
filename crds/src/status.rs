//! The `StreamJob` status written by the operator: conditions, the live version, one row per
//! version.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Condition type: the alias serves a caught-up version.
pub const CONDITION_READY: &str = "Ready";
/// Condition type: a version is replaying or a swap is under way.
pub const CONDITION_PROGRESSING: &str = "Progressing";
/// Condition type: something needs attention (failed version, sink outage, truncated log).
pub const CONDITION_DEGRADED: &str = "Degraded";

/// Observed state of a StreamJob.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StreamJobStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Progressing` and `Degraded`.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// The version the alias points to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live_version: Option<String>,
    /// Phase of `spec.version` (for `kubectl get`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<VersionPhase>,
    /// Consumer lag of `spec.version` in records (for `kubectl get`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag: Option<i64>,
    /// One row per version the operator still tracks.
    #[serde(default)]
    pub versions: Vec<VersionStatus>,
}

/// A status condition, shaped like `metav1.Condition`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// `Ready`, `Progressing` or `Degraded`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: ConditionStatus,
    /// The generation this condition was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// RFC 3339 time of the last status change.
    pub last_transition_time: String,
    /// CamelCase machine-readable reason.
    pub reason: String,
    /// Human-readable detail.
    #[serde(default)]
    pub message: String,
}

/// Condition truth values.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ConditionStatus {
    /// Holds.
    True,
    /// Does not hold.
    False,
    /// Not known yet.
    Unknown,
}

/// Lifecycle phase of one job version.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum VersionPhase {
    /// Accepted; workload not started yet.
    Pending,
    /// Replaying the retained log into its index.
    Replaying,
    /// Within the promotion thresholds; waiting for promotion.
    CaughtUp,
    /// The alias points to this version.
    Live,
    /// No longer live; engine kept warm for `retention.warmFor`.
    Retiring,
    /// Index kept for rollback; engine scaled to zero.
    Retained,
    /// Workload and (per deletion policy) index removed.
    Deleted,
    /// The engine failed or the replay was refused; never promoted.
    Failed,
    /// Was live, the alias was moved back to an older version.
    RolledBack,
}

impl VersionPhase {
    /// Whether a version in this phase has a complete index, so it may serve the alias (the
    /// rule for `spec.activeVersion` and for promotion).
    ///
    /// ```
    /// use kappa_crds::VersionPhase;
    /// assert!(VersionPhase::Retained.is_complete());
    /// assert!(!VersionPhase::Replaying.is_complete());
    /// ```
    pub fn is_complete(self) -> bool {
        matches!(
            self,
            VersionPhase::CaughtUp
                | VersionPhase::Live
                | VersionPhase::Retiring
                | VersionPhase::Retained
                | VersionPhase::RolledBack
        )
    }

    /// Whether a version in this phase was live before and is kept for rollback.
    pub fn is_previous(self) -> bool {
        matches!(self, VersionPhase::Retiring | VersionPhase::Retained | VersionPhase::RolledBack)
    }
}

impl VersionStatus {
    /// The row of a version just accepted: `Pending`, nothing observed yet.
    pub fn pending(version: &str, index: String) -> Self {
        Self {
            version: version.to_owned(),
            index,
            phase: VersionPhase::Pending,
            lag: None,
            index_lag: None,
            backlog: None,
            delay_seconds: None,
            current: None,
            consumed_offsets: None,
            head_offsets: None,
            watermark: None,
            started_at: None,
            stable_since: None,
            caught_up_at: None,
            promoted_at: None,
            retired_at: None,
            replicas: None,
            message: None,
        }
    }
}

/// One row per version.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VersionStatus {
    /// `spec.version` of this row.
    pub version: String,
    /// Its index, `<alias>-<version>`.
    pub index: String,
    /// Its phase.
    pub phase: VersionPhase,
    /// Total consumer lag in records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag: Option<i64>,
    /// Records up to the head whose documents the index has not acknowledged yet (the
    /// engine's `total_index_lag`). At least `lag`: it adds the documents still to write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index_lag: Option<i64>,
    /// Documents the engine still has to write (changed windows and documents in flight).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backlog: Option<i64>,
    /// How far its log-time progress trails the head of the topic, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_seconds: Option<i64>,
    /// Whether its index is current: its engine runs and the caught-up rule (lag, index lag and
    /// delay within `spec.promotion`) has held for `promotion.stableFor`. A version that was
    /// stopped, or just rolled back to, is not current until it has caught up again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<bool>,
    /// Sum over partitions of the next offset the version will process (with `headOffsets`,
    /// the replay's progress).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumed_offsets: Option<i64>,
    /// Sum over partitions of the high watermark when last observed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_offsets: Option<i64>,
    /// Event-time watermark (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watermark: Option<String>,
    /// When its engine started (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// Since when the caught-up rule has held without a break (RFC 3339); cleared when it
    /// breaks. The version is caught up once this is `promotion.stableFor` old.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_since: Option<String>,
    /// When it first met the caught-up rule (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caught_up_at: Option<String>,
    /// When the alias last moved to it (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promoted_at: Option<String>,
    /// When it last stopped being live (RFC 3339); `retention.warmFor` counts from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retired_at: Option<String>,
    /// Engine pods the operator asks for (0 once the version is retained or deleted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// Detail, e.g. why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
