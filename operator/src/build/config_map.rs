//! The version's ConfigMap: the job file its engine reads, and the operator's memory of an older
//! version's logic once `spec` has moved on.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kappa_crds::StreamJob;

use super::{BuildError, VersionWorkload};
use crate::names;

/// The ConfigMap holding the version's job file under [`names::CONFIG_KEY`].
pub fn config_map(w: &VersionWorkload) -> ConfigMap {
    ConfigMap {
        metadata: w.metadata(),
        data: Some(BTreeMap::from([(names::CONFIG_KEY.to_owned(), w.job_manifest())])),
        ..ConfigMap::default()
    }
}

/// Parses the version's StreamJob back from a ConfigMap built by [`config_map`].
///
/// Only the shape is checked, not the semantic rules: a version admitted under older rules must
/// stay manageable (stopped, retained, cleaned up) after the operator's rules tighten.
pub fn spec_from_config_map(cm: &ConfigMap) -> Result<StreamJob, BuildError> {
    let config_map = format!(
        "{}/{}",
        cm.metadata.namespace.as_deref().unwrap_or_default(),
        cm.metadata.name.as_deref().unwrap_or_default()
    );
    let text = cm
        .data
        .as_ref()
        .and_then(|data| data.get(names::CONFIG_KEY))
        .ok_or_else(|| BuildError::MissingJobFile { config_map: config_map.clone() })?;
    kappa_crds::load::parse_manifest(text)
        .map_err(|e| BuildError::InvalidJobFile { config_map, message: e.to_string() })
}
