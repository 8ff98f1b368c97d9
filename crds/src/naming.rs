//! Names derived from a job: the contract between engine, operator and Elasticsearch readers.

use crate::spec::StreamJobSpec;

/// Prefix of every consumer group a job version uses.
pub const CONSUMER_GROUP_PREFIX: &str = "kappa";

/// Document field holding the window's start (RFC 3339), written by the engine.
pub const WINDOW_START_FIELD: &str = "window_start";
/// Document field holding the window's end (RFC 3339), written by the engine.
pub const WINDOW_END_FIELD: &str = "window_end";
/// Document field telling whether the window can still change, written by the engine.
pub const FINAL_FIELD: &str = "final";
/// Document fields the engine writes next to the group keys and aggregates; no aggregate or
/// group key may use these names.
pub const RESERVED_DOCUMENT_FIELDS: [&str; 3] = [WINDOW_START_FIELD, WINDOW_END_FIELD, FINAL_FIELD];

/// The index a version writes: `<alias>-<version>`.
///
/// ```
/// let job = kappa_crds::load_manifest(kappa_crds::REFERENCE_JOB_YAML).unwrap();
/// assert_eq!(kappa_crds::index_name(&job.spec), "tx-stats-v1");
/// ```
pub fn index_name(spec: &StreamJobSpec) -> String {
    index_name_for(&spec.sink.elasticsearch.alias, &spec.version)
}

/// The index of `version` under `alias`.
pub fn index_name_for(alias: &str, version: &str) -> String {
    format!("{alias}-{version}")
}

/// The consumer group of one job version: `kappa.<namespace>.<job>.<version>`. Each version has
/// its own group, so versions never share offsets and lag tools see each replay separately.
pub fn consumer_group(namespace: &str, job: &str, version: &str) -> String {
    format!("{CONSUMER_GROUP_PREFIX}.{namespace}.{job}.{version}")
}
