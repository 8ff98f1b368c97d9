//! The `StreamJob` spec: what a job reads, how it aggregates, where it writes, and how versions
//! are promoted and retained. Types only; checks live in [`crate::validate`].

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::status::StreamJobStatus;

/// Pattern for durations such as `500ms`, `10s`, `5m`, `1h`, `3d`.
pub const DURATION_PATTERN: &str = r"^[0-9]+(ms|s|m|h|d)$";
/// Pattern for names that end up in index names, labels and consumer groups (RFC 1123 label).
pub const DNS_LABEL_PATTERN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
/// Longest `spec.version` / `spec.activeVersion`.
pub const MAX_VERSION_LEN: usize = 40;
/// Longest `spec.sink.elasticsearch.alias`.
pub const MAX_ALIAS_LEN: usize = 200;
/// Most aggregates per job. The bound also keeps the CRD's CEL rules within the API server's
/// cost budget (an unbounded list makes the uniqueness rule too expensive to admit the CRD).
pub const MAX_AGGREGATES: usize = 64;
/// Longest aggregate name (it becomes an Elasticsearch field name).
pub const MAX_AGGREGATE_NAME_LEN: usize = 64;
/// Most `groupBy` keys per job (bounded for the same reason as [`MAX_AGGREGATES`]).
pub const MAX_GROUP_BY_KEYS: usize = 16;
/// Longest `groupBy` key.
pub const MAX_FIELD_PATH_LEN: usize = 256;

/// A stream job: one Kafka topic in, event-time windowed aggregation, one Elasticsearch alias out.
///
/// Each `spec.version` replays the retained log into its own index `<alias>-<version>`; the alias
/// moves to a version once it has caught up with the head of the log.
// Every `printcolumn(...)` repeats `type_ = "string"`, which clippy takes for a duplicated
// attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "kappa.dev",
    version = "v1alpha1",
    kind = "StreamJob",
    plural = "streamjobs",
    shortname = "sj",
    namespaced,
    status = "StreamJobStatus",
    printcolumn(name = "Version", type_ = "string", json_path = ".spec.version"),
    printcolumn(name = "Live", type_ = "string", json_path = ".status.liveVersion"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Lag", type_ = "integer", json_path = ".status.lag"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StreamJobSpec {
    /// Version of the job's logic. A new value replays the retained log into a new index
    /// `<alias>-<version>`. Lowercase letters, digits and `-` (it becomes part of index and
    /// consumer-group names).
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"), length(max = MAX_VERSION_LEN))]
    pub version: String,
    /// Where records come from.
    pub source: SourceSpec,
    /// How records become window documents.
    pub pipeline: PipelineSpec,
    /// Where window documents go.
    pub sink: SinkSpec,
    /// How each version's engine runs.
    #[serde(default)]
    pub engine: EngineSpec,
    /// When a caught-up version takes over the alias.
    #[serde(default)]
    pub promotion: PromotionSpec,
    /// How many previous versions stay available for rollback.
    #[serde(default)]
    pub retention: RetentionSpec,
    /// Pins the alias to this version (rollback). It must be a version the job still retains.
    /// Unset: the newest caught-up version is live.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"), length(max = MAX_VERSION_LEN))]
    pub active_version: Option<String>,
    /// What happens to the job's indexes when the StreamJob is deleted. Default `Retain`: data is
    /// never deleted unless asked for.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

/// The input side of a job.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SourceSpec {
    /// A Kafka topic.
    pub kafka: KafkaSource,
}

/// A Kafka topic read by a consumer group of the job version.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KafkaSource {
    /// Comma-separated `host:port` list.
    #[schemars(length(min = 1))]
    pub bootstrap_servers: String,
    /// The topic holding the retained raw log.
    #[schemars(length(min = 1, max = 249))]
    pub topic: String,
    /// Where a new version starts reading: `earliest` (default), `latest`, or
    /// `{timestamp: "2024-01-01T00:00:00Z"}`.
    #[serde(default, skip_serializing_if = "StartFrom::is_unset")]
    #[schemars(schema_with = "crate::schema::start_from")]
    pub start_from: StartFrom,
    /// Extra librdkafka consumer properties (for example `fetch.max.bytes`). Credentials do not
    /// belong here: use `tls` and `sasl`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub consumer_properties: BTreeMap<String, String>,
    /// TLS to the brokers; certificates come from a Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<KafkaTls>,
    /// SASL authentication; the password comes from a Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sasl: Option<KafkaSasl>,
}

/// Where a replay starts.
///
/// Written as `earliest`, `latest` or `{timestamp: "2024-01-01T00:00:00Z"}`. Deserialized by
/// hand (same shape as `#[serde(untagged)]`) so a mistake names the allowed forms instead of
/// serde's "did not match any variant".
#[derive(Serialize, Clone, Debug, PartialEq, Default)]
#[serde(untagged)]
pub enum StartFrom {
    /// `earliest` or `latest`.
    Position(StartPosition),
    /// The first offset whose timestamp is at or after this RFC 3339 instant.
    Timestamp {
        /// RFC 3339 instant.
        timestamp: String,
    },
    /// Not given: earliest.
    #[default]
    #[serde(skip)]
    Unset,
}

/// The forms `startFrom` accepts, for error messages.
pub const START_FROM_FORMS: &str =
    "`earliest`, `latest` or `{timestamp: \"2024-01-01T00:00:00Z\"}` (an RFC 3339 instant)";

impl StartFrom {
    /// Whether the manifest left `startFrom` out.
    pub fn is_unset(&self) -> bool {
        matches!(self, StartFrom::Unset)
    }

    /// The effective position: an unset value means earliest.
    pub fn or_earliest(&self) -> StartFrom {
        match self {
            StartFrom::Unset => StartFrom::Position(StartPosition::Earliest),
            other => other.clone(),
        }
    }
}

impl<'de> Deserialize<'de> for StartFrom {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StartFromVisitor)
    }
}

struct StartFromVisitor;

impl<'de> Visitor<'de> for StartFromVisitor {
    type Value = StartFrom;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(START_FROM_FORMS)
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<StartFrom, E> {
        match value {
            "earliest" => Ok(StartFrom::Position(StartPosition::Earliest)),
            "latest" => Ok(StartFrom::Position(StartPosition::Latest)),
            other => Err(E::custom(format!(
                "unknown start position {other:?}; write {START_FROM_FORMS}"
            ))),
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<StartFrom, A::Error> {
        let mut timestamp = None;
        while let Some(key) = map.next_key::<String>()? {
            if key != "timestamp" {
                return Err(de::Error::custom(format!(
                    "unknown field `{key}` in startFrom; write {START_FROM_FORMS}"
                )));
            }
            if timestamp.is_some() {
                return Err(de::Error::duplicate_field("timestamp"));
            }
            timestamp = Some(map.next_value::<String>()?);
        }
        match timestamp {
            Some(timestamp) => Ok(StartFrom::Timestamp { timestamp }),
            None => Err(de::Error::custom(format!(
                "startFrom is an empty object; write {START_FROM_FORMS}"
            ))),
        }
    }
}

/// A named log position.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum StartPosition {
    /// The first offset of every partition: the whole log. A replay is refused when retention
    /// has already removed records (a partition starts above offset 0); to replay only what is
    /// retained, start from a timestamp.
    Earliest,
    /// The end of every partition at start.
    Latest,
}

/// A reference to one key of a Secret in the job's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretKeyRef {
    /// Secret name.
    pub name: String,
    /// Key inside the Secret.
    pub key: String,
}

/// TLS settings for the Kafka connection.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KafkaTls {
    /// CA bundle (PEM) used to verify the brokers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<SecretKeyRef>,
    /// Client certificate (PEM) for mutual TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<SecretKeyRef>,
    /// Client private key (PEM) for mutual TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<SecretKeyRef>,
}

/// SASL settings for the Kafka connection.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KafkaSasl {
    /// SASL mechanism.
    pub mechanism: SaslMechanism,
    /// User name (not a secret).
    pub username: String,
    /// Password from a Secret.
    pub password: SecretKeyRef,
}

/// Supported SASL mechanisms.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum SaslMechanism {
    /// PLAIN (use with TLS).
    #[serde(rename = "PLAIN")]
    Plain,
    /// SCRAM-SHA-256.
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    /// SCRAM-SHA-512.
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
}

/// Decoding, event time, lateness, filtering, grouping, windowing and aggregation.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PipelineSpec {
    /// Record format. Only `json` (one JSON object per Kafka record / NDJSON line).
    #[serde(default)]
    pub format: RecordFormat,
    /// Where each record's event time is.
    pub event_time: TimeField,
    /// Where each record's log time is. Default: the Kafka record timestamp.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_time: Option<TimeField>,
    /// A record is dropped (and counted) iff `logTime - eventTime > maxLateness`.
    #[schemars(regex(pattern = r"^[0-9]+(ms|s|m|h|d)$"))]
    pub max_lateness: String,
    /// Optional CEL expression; records for which it is false are skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    /// Derived fields: `name: CEL expression`, usable in groupBy, aggregates and where clauses.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub derived: BTreeMap<String, String>,
    /// Dotted field paths whose values form the group key (strings, numbers or booleans).
    #[serde(default)]
    #[schemars(length(max = MAX_GROUP_BY_KEYS), inner(length(min = 1, max = MAX_FIELD_PATH_LEN)))]
    pub group_by: Vec<String>,
    /// Window shape.
    pub window: WindowSpec,
    /// Aggregates computed per window and group key.
    #[schemars(length(min = 1, max = MAX_AGGREGATES))]
    pub aggregates: Vec<AggregateSpec>,
}

/// Record formats.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RecordFormat {
    /// One JSON object per record.
    #[default]
    Json,
}

/// A timestamp inside the record.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TimeField {
    /// Dotted path into the record, e.g. `event_time` or `meta.ts`.
    #[schemars(length(min = 1))]
    pub field: String,
    /// How the value is written.
    #[serde(default)]
    pub format: TimeFormat,
}

/// Timestamp encodings.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum TimeFormat {
    /// RFC 3339 string, with or without fraction, `Z` or an offset.
    #[default]
    Rfc3339,
    /// Milliseconds since the Unix epoch (number or numeric string).
    EpochMillis,
    /// Seconds since the Unix epoch (number or numeric string, fraction allowed).
    EpochSeconds,
}

/// Exactly one of `tumbling` or `hopping`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WindowSpec {
    /// Tumbling windows of this size, e.g. `1m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(ms|s|m|h|d)$"))]
    pub tumbling: Option<String>,
    /// Hopping (sliding) windows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hopping: Option<HoppingSpec>,
}

/// Hopping windows: each record falls into `size / slide` windows.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HoppingSpec {
    /// Window length, e.g. `5m`.
    #[schemars(regex(pattern = r"^[0-9]+(ms|s|m|h|d)$"))]
    pub size: String,
    /// Distance between window starts; must divide `size`.
    #[schemars(regex(pattern = r"^[0-9]+(ms|s|m|h|d)$"))]
    pub slide: String,
}

/// One output field computed per window and key.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AggregateSpec {
    /// Output field name.
    #[schemars(regex(pattern = r"^[A-Za-z_][A-Za-z0-9_]*$"), length(max = MAX_AGGREGATE_NAME_LEN))]
    pub name: String,
    /// The aggregate function.
    pub op: AggregateOp,
    /// Dotted input field path (required for every op but `count`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Optional CEL condition: only matching records are folded in.
    #[serde(default, rename = "where", skip_serializing_if = "Option::is_none")]
    pub where_: Option<String>,
    /// For `approx_percentile`: the quantile in (0, 1), e.g. 0.95.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentile: Option<f64>,
}

/// Aggregate functions.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AggregateOp {
    /// Number of records.
    Count,
    /// Sum of a numeric field.
    Sum,
    /// Minimum of a numeric field.
    Min,
    /// Maximum of a numeric field.
    Max,
    /// Mean of a numeric field.
    Avg,
    /// Approximate number of distinct values (HyperLogLog, standard error about 0.8%).
    ApproxDistinct,
    /// Approximate quantile (DDSketch, relative error 1%).
    ApproxPercentile,
}

impl AggregateOp {
    /// The name as written in manifests, e.g. `approx_percentile`.
    pub fn as_str(self) -> &'static str {
        match self {
            AggregateOp::Count => "count",
            AggregateOp::Sum => "sum",
            AggregateOp::Min => "min",
            AggregateOp::Max => "max",
            AggregateOp::Avg => "avg",
            AggregateOp::ApproxDistinct => "approx_distinct",
            AggregateOp::ApproxPercentile => "approx_percentile",
        }
    }

    /// Whether the op reads a field (all but `count`).
    pub fn needs_field(self) -> bool {
        !matches!(self, AggregateOp::Count)
    }
}

/// The output side of a job.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SinkSpec {
    /// The Elasticsearch (or OpenSearch) cluster.
    pub elasticsearch: ElasticsearchSink,
    /// `update` (default): changed windows are upserted on each flush. `append`: each window is
    /// written once, when final.
    #[serde(default)]
    pub mode: SinkMode,
}

/// Elasticsearch sink settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ElasticsearchSink {
    /// Base URL, e.g. `http://elasticsearch:9200`.
    #[schemars(regex(pattern = r"^https?://"))]
    pub url: String,
    /// The alias readers query; each version writes index `<alias>-<version>`.
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9_.]*[a-z0-9])?$"), length(max = MAX_ALIAS_LEN))]
    pub alias: String,
    /// Credentials: a Secret with `username`/`password` keys, or an `apiKey` key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret: Option<String>,
    /// Index settings merged over the defaults (e.g. `number_of_shards`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::free_form_object")]
    pub index_settings: Option<serde_json::Value>,
    /// Mapping properties merged over the mappings derived from the job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::free_form_object")]
    pub mappings: Option<serde_json::Value>,
}

/// Sink write modes.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SinkMode {
    /// Upsert changed windows on every flush.
    #[default]
    Update,
    /// Write each window once, when it is final.
    Append,
}

/// Engine workload settings (operational except `image`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EngineSpec {
    /// Engine container image. Part of the logic: changing it needs a new `spec.version`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Engine pods per version: 1 (default) or 0 to pause the version. The engine reads every
    /// partition of the topic itself and owns its checkpoint, so a second pod would only
    /// duplicate work; scale-out across pods is not implemented yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1))]
    pub replicas: Option<i32>,
    /// Container resources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<k8s_openapi::api::core::v1::ResourceRequirements>,
}

/// Promotion policy.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PromotionSpec {
    /// `auto` (default) swaps the alias as soon as the version has caught up; `manual` waits for
    /// approval.
    #[serde(default)]
    pub mode: PromotionMode,
    /// Caught up needs the consumer group's total lag at or below this many records.
    #[serde(default = "default_max_lag")]
    #[schemars(range(min = 0))]
    pub max_lag: i64,
    /// ... and its log-time progress within this duration of the head.
    #[serde(default = "default_max_delay")]
    #[schemars(regex(pattern = r"^[0-9]+(ms|s|m|h|d)$"))]
    pub max_delay: String,
    /// ... continuously for this long.
    #[serde(default = "default_stable_for")]
    #[schemars(regex(pattern = r"^[0-9]+(ms|s|m|h|d)$"))]
    pub stable_for: String,
    /// Optional verification gate before a swap (off when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<VerifySpec>,
}

/// The verification gate: before the alias moves from a live version to a new one, the two
/// indexes are compared on windows that can no longer change (ending more than `maxLateness`
/// ago).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VerifySpec {
    /// The new index's document count over those windows must be within this many percent of
    /// the live index's (e.g. `2` allows 2%).
    #[schemars(range(min = 0.0, max = 100.0))]
    pub max_doc_count_diff_percent: f64,
}

impl Default for PromotionSpec {
    fn default() -> Self {
        Self {
            mode: PromotionMode::Auto,
            max_lag: default_max_lag(),
            max_delay: default_max_delay(),
            stable_for: default_stable_for(),
            verify: None,
        }
    }
}

fn default_max_lag() -> i64 {
    1000
}
fn default_max_delay() -> String {
    "30s".into()
}
fn default_stable_for() -> String {
    "60s".into()
}

/// Promotion modes.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PromotionMode {
    /// Promote as soon as caught up.
    #[default]
    Auto,
    /// Promote once approved (see the operator docs).
    Manual,
}

/// Retention of previous versions.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetentionSpec {
    /// Previous versions whose indexes are kept for rollback (default 1).
    #[serde(default = "default_keep_versions")]
    #[schemars(range(min = 0, max = 20))]
    pub keep_versions: i32,
    /// How long a retained version's engine keeps running after it stopped being live.
    #[serde(default = "default_warm_for")]
    #[schemars(regex(pattern = r"^[0-9]+(ms|s|m|h|d)$"))]
    pub warm_for: String,
}

impl Default for RetentionSpec {
    fn default() -> Self {
        Self { keep_versions: default_keep_versions(), warm_for: default_warm_for() }
    }
}

fn default_keep_versions() -> i32 {
    1
}
fn default_warm_for() -> String {
    "1h".into()
}

/// What deletion of the StreamJob does to its indexes.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum DeletionPolicy {
    /// Delete every index of the job.
    Delete,
    /// Keep the indexes and the alias (default).
    #[default]
    Retain,
}
