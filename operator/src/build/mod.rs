//! Pure builders of the Kubernetes objects each job version runs as: a ConfigMap holding the
//! job file, a Deployment running one engine, and a Service in front of its status port.
//!
//! The builders do no I/O. They set only the fields the operator owns, since the objects are
//! sent with server-side apply, and the same input always builds the same object.
//!
//! ```
//! use kappa_operator::build::{self, EngineDefaults, VersionWorkload};
//!
//! let mut job = kappa_crds::load_manifest(kappa_crds::REFERENCE_JOB_YAML).unwrap();
//! job.metadata.uid = Some("0b8c6a5e-1f7e-4d8a-9b1c-3f2e5d4c6b7a".into());
//! let defaults = EngineDefaults::default();
//! let w = VersionWorkload { job: &job, spec: &job.spec, replicas: 1, defaults: &defaults };
//! assert_eq!(w.name(), "tx-stats-v1");
//! let back = build::spec_from_config_map(&build::config_map(&w)).unwrap();
//! assert_eq!(back.spec, job.spec);
//! ```

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kappa_crds::{StreamJob, StreamJobSpec};
use kube::{Resource, ResourceExt};

use crate::names;

mod config_map;
mod deployment;
mod service;
#[cfg(test)]
mod tests;

pub use config_map::{config_map, spec_from_config_map};
pub use deployment::deployment;
pub use service::service;

/// Where the Secret named by `spec.sink.elasticsearch.credentialsSecret` is mounted; the engine
/// finds it through `KAPPA_ES_CREDENTIALS_DIR`.
pub const ES_CREDENTIALS_DIR: &str = "/var/run/secrets/kappa/elasticsearch";
/// Where the Elasticsearch credentials go instead when a Kafka Secret is itself named
/// `elasticsearch` and so already takes [`ES_CREDENTIALS_DIR`].
pub const ES_CREDENTIALS_FALLBACK_DIR: &str = "/var/run/secrets/kappa-elasticsearch";
/// Environment variable telling the engine where the Kafka Secrets are mounted (the engine's
/// default is the same directory, [`kappa_service::source::SECRETS_DIR`]; setting it keeps the
/// pod explicit).
pub const ENV_SECRETS_DIR: &str = "KAPPA_SECRETS_DIR";
/// Environment variable holding the engine's log filter.
pub const ENV_LOG: &str = "KAPPA_LOG";

/// Operator-level settings the builders need (from the operator's flags / Helm values).
#[derive(Debug, Clone, PartialEq)]
pub struct EngineDefaults {
    /// Engine image used when `spec.engine.image` is not set.
    pub image: String,
    /// `imagePullPolicy` of the engine container (the cluster's default when `None`).
    pub image_pull_policy: Option<String>,
    /// Passed to the engine as `--checkpoint-interval`, e.g. `10s`.
    pub checkpoint_interval: String,
    /// ServiceAccount of engine pods (the namespace's `default` when `None`).
    pub service_account: Option<String>,
}

impl Default for EngineDefaults {
    fn default() -> Self {
        Self {
            image: "ghcr.io/kappa-dev/kappa:0.1.0".into(),
            image_pull_policy: None,
            checkpoint_interval: "10s".into(),
            service_account: None,
        }
    }
}

/// One job version to build objects for.
#[derive(Debug, Clone, Copy)]
pub struct VersionWorkload<'a> {
    /// The owning StreamJob (name, namespace, uid for ownerReferences).
    pub job: &'a StreamJob,
    /// This version's spec; for older versions it differs from `job.spec`.
    pub spec: &'a StreamJobSpec,
    /// Engine pods, decided by the lifecycle: 0 (stopped) or 1.
    pub replicas: i32,
    /// Operator-level settings.
    pub defaults: &'a EngineDefaults,
}

impl VersionWorkload<'_> {
    /// Name of the version's ConfigMap, Deployment and Service (see
    /// [`names::version_object_name`]).
    pub fn name(&self) -> String {
        names::version_object_name(&self.job.name_any(), &self.spec.version)
    }

    /// Labels of every object of the version (and of its pods).
    pub fn labels(&self) -> BTreeMap<String, String> {
        let mut labels = self.selector_labels();
        labels.extend([
            (names::LABEL_INSTANCE.to_owned(), self.job.name_any()),
            (names::LABEL_COMPONENT.to_owned(), names::ENGINE_COMPONENT.to_owned()),
            (names::LABEL_PART_OF.to_owned(), names::PART_OF.to_owned()),
            (names::LABEL_MANAGED_BY.to_owned(), names::FIELD_MANAGER.to_owned()),
        ]);
        labels
    }

    /// The stable subset of [`Self::labels`] that selects the version's pods. A Deployment's
    /// selector is immutable, so it holds only what never changes for a version.
    pub fn selector_labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (names::LABEL_JOB.to_owned(), self.job.name_any()),
            (names::LABEL_VERSION.to_owned(), self.spec.version.clone()),
            (names::LABEL_NAME.to_owned(), names::ENGINE_APP_NAME.to_owned()),
        ])
    }

    /// The controller reference to the StreamJob, so deleting the job garbage-collects the
    /// version's objects.
    ///
    /// A StreamJob read from the API server always has a name and a uid. One without a uid gets
    /// an empty one, which the API server refuses: the apply fails with a clear message instead
    /// of the operator panicking.
    pub fn owner_reference(&self) -> OwnerReference {
        let reference = self.job.controller_owner_ref(&()).unwrap_or_else(|| OwnerReference {
            api_version: StreamJob::api_version(&()).into_owned(),
            kind: StreamJob::kind(&()).into_owned(),
            name: self.job.name_any(),
            uid: self.job.uid().unwrap_or_default(),
            controller: Some(true),
            ..OwnerReference::default()
        });
        OwnerReference { block_owner_deletion: Some(true), ..reference }
    }

    /// The job file the engine reads: a StreamJob with the job's name and namespace and this
    /// version's spec. It loads with [`kappa_crds::load_manifest`].
    pub fn job_manifest(&self) -> String {
        let mut manifest = StreamJob::new(&self.job.name_any(), self.spec.clone());
        manifest.metadata.namespace = self.job.namespace();
        // The spec holds strings, numbers, string-keyed maps and JSON values only, which YAML
        // can always represent.
        serde_yaml::to_string(&manifest).expect("a StreamJob always serializes to YAML")
    }

    /// Metadata shared by the version's objects.
    fn metadata(&self) -> ObjectMeta {
        ObjectMeta {
            name: Some(self.name()),
            namespace: self.job.namespace(),
            labels: Some(self.labels()),
            owner_references: Some(vec![self.owner_reference()]),
            ..ObjectMeta::default()
        }
    }
}

/// Why a version's objects could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The ConfigMap has no job file.
    #[error(
        "ConfigMap {config_map} has no {key} key; it was edited by hand or not written by the \
         kappa operator: restore it or delete the version's objects",
        key = names::CONFIG_KEY
    )]
    MissingJobFile {
        /// `<namespace>/<name>` of the ConfigMap.
        config_map: String,
    },
    /// The job file does not parse as a StreamJob.
    #[error(
        "ConfigMap {config_map} holds a {key} that is not a StreamJob ({message}); restore it or \
         delete the version's objects",
        key = names::CONFIG_KEY
    )]
    InvalidJobFile {
        /// `<namespace>/<name>` of the ConfigMap.
        config_map: String,
        /// What the parser refused.
        message: String,
    },
}
