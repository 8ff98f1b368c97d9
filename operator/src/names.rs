//! Every string that is part of the operator's contract with the cluster: label and annotation
//! keys, the finalizer, the field manager, and how per-version object names are derived.

use xxhash_rust::xxh3::xxh3_64;

/// Finalizer that lets the operator remove workloads (and, per `deletionPolicy`, indexes)
/// before a StreamJob disappears.
pub const FINALIZER: &str = "kappa.dev/cleanup";
/// Field manager of every server-side apply the operator sends.
pub const FIELD_MANAGER: &str = "kappa-operator";
/// Name this controller reports in Events.
pub const CONTROLLER_NAME: &str = "kappa-operator";

/// Label: the StreamJob an object belongs to.
pub const LABEL_JOB: &str = "kappa.dev/job";
/// Label: the job version an object belongs to.
pub const LABEL_VERSION: &str = "kappa.dev/version";
/// `app.kubernetes.io/name` of engine objects.
pub const LABEL_NAME: &str = "app.kubernetes.io/name";
/// `app.kubernetes.io/instance`: the StreamJob name.
pub const LABEL_INSTANCE: &str = "app.kubernetes.io/instance";
/// `app.kubernetes.io/component`.
pub const LABEL_COMPONENT: &str = "app.kubernetes.io/component";
/// `app.kubernetes.io/part-of`.
pub const LABEL_PART_OF: &str = "app.kubernetes.io/part-of";
/// `app.kubernetes.io/managed-by`.
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// Value of `app.kubernetes.io/name` on engine objects.
pub const ENGINE_APP_NAME: &str = "kappa-engine";
/// Value of `app.kubernetes.io/component` on engine objects.
pub const ENGINE_COMPONENT: &str = "engine";
/// Value of `app.kubernetes.io/part-of`.
pub const PART_OF: &str = "kappa";

/// Annotation on a StreamJob: approves promotion of the named version when
/// `spec.promotion.mode` is `manual` (`kappa promote` sets it).
pub const ANNOTATION_APPROVE: &str = "kappa.dev/approve-version";
/// Annotation on a StreamJob: names a previous (retained) version whose engine runs so that its
/// index catches up before a rollback to it (`kappa rollback --wait` sets it, and removes it
/// with the pin that moves the alias).
pub const ANNOTATION_WARM_VERSION: &str = "kappa.dev/warm-version";
/// Annotation on a StreamJob: `true` makes the finalizer skip Elasticsearch cleanup (the escape
/// hatch when the cluster is gone for good).
pub const ANNOTATION_SKIP_INDEX_CLEANUP: &str = "kappa.dev/skip-index-cleanup";
/// Annotation on a version's pod template: hash of its ConfigMap, so a changed job file rolls
/// the pod.
pub const ANNOTATION_CONFIG_HASH: &str = "kappa.dev/config-hash";

/// Key of the job manifest inside a version's ConfigMap.
pub const CONFIG_KEY: &str = "job.yaml";
/// Where the ConfigMap is mounted in the engine container.
pub const CONFIG_MOUNT_DIR: &str = "/etc/kappa";
/// Port of the engine's `/status`, `/metrics`, `/healthz` and `/readyz`.
pub const ENGINE_STATUS_PORT: u16 = 8080;
/// Name of that port on the container and the Service.
pub const ENGINE_PORT_NAME: &str = "http";
/// Name of the engine container.
pub const ENGINE_CONTAINER: &str = "engine";

/// Kubernetes names of Services are RFC 1035 labels: at most 63 characters.
const MAX_OBJECT_NAME: usize = 63;

/// Name of a version's ConfigMap, Deployment and Service: `<job>-<version>`, or when that is
/// longer than 63 characters (or does not start with a letter, as Service names must), a
/// shortened `k-<prefix>-<hash>` that stays unique per (job, version).
///
/// ```
/// assert_eq!(kappa_operator::names::version_object_name("tx-stats", "v2"), "tx-stats-v2");
/// let long = kappa_operator::names::version_object_name(&"a".repeat(70), "v1");
/// assert!(long.len() <= 63);
/// ```
pub fn version_object_name(job: &str, version: &str) -> String {
    let plain = format!("{job}-{version}");
    let starts_with_letter = plain.chars().next().is_some_and(|c| c.is_ascii_lowercase());
    if plain.len() <= MAX_OBJECT_NAME && starts_with_letter {
        return plain;
    }
    let hash = format!("{:016x}", xxh3_64(plain.as_bytes()));
    let keep = MAX_OBJECT_NAME - 2 - 1 - hash.len();
    let prefix: String = plain.chars().take(keep).collect();
    format!("k-{}-{hash}", prefix.trim_end_matches('-'))
}

/// The in-cluster URL of a version's engine status endpoint.
pub fn engine_status_url(namespace: &str, job: &str, version: &str) -> String {
    let service = version_object_name(job, version);
    format!("http://{service}.{namespace}.svc:{ENGINE_STATUS_PORT}/status")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_names_are_shortened_uniquely() {
        let a = version_object_name(&"x".repeat(80), "v1");
        let b = version_object_name(&"x".repeat(80), "v2");
        assert_ne!(a, b);
        assert!(a.len() <= MAX_OBJECT_NAME && b.len() <= MAX_OBJECT_NAME);
        assert!(a.starts_with("k-x"));
        assert_eq!(version_object_name("9lives", "v1").chars().next(), Some('k'));
    }
}
