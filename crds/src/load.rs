//! Reading a StreamJob manifest from YAML, with the field path of every type error.

use crate::spec::StreamJob;
use crate::validate::{validate, FieldError};

/// `apiVersion` a manifest must carry.
pub const API_VERSION: &str = "kappa.dev/v1alpha1";
/// `kind` a manifest must carry.
pub const KIND: &str = "StreamJob";

/// Why a manifest was refused. Every variant names the field paths involved.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// Not YAML at all.
    #[error("the file is not valid YAML: {0}")]
    Yaml(String),
    /// YAML, but a field has the wrong type, an unknown name or a missing value.
    #[error("{path}: {message}")]
    Shape {
        /// Field path, e.g. `spec.pipeline.aggregates[2].op`.
        path: String,
        /// What is wrong and what to write instead.
        message: String,
    },
    /// Well-formed, but semantically invalid (all problems at once).
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<FieldError>),
}

impl ManifestError {
    /// Every problem as a field error (one for shape errors, all for semantic ones).
    pub fn field_errors(&self) -> Vec<FieldError> {
        match self {
            ManifestError::Yaml(message) => vec![FieldError::new("", message.clone())],
            ManifestError::Shape { path, message } => {
                vec![FieldError::new(path.clone(), message.clone())]
            }
            ManifestError::Invalid(errors) => errors.clone(),
        }
    }
}

/// Parses and validates a StreamJob manifest (the same file works with `kubectl apply`, the
/// operator and `kappa run`).
pub fn load_manifest(yaml: &str) -> Result<StreamJob, ManifestError> {
    load_manifest_with(yaml, validate)
}

/// Parses a StreamJob manifest and checks it with `validate` (the engine passes its own, which
/// also compiles the CEL expressions).
pub fn load_manifest_with(
    yaml: &str,
    validate: impl FnOnce(&StreamJob) -> Vec<FieldError>,
) -> Result<StreamJob, ManifestError> {
    let job = parse_manifest(yaml)?;
    let errors = validate(&job);
    if errors.is_empty() {
        Ok(job)
    } else {
        Err(ManifestError::Invalid(errors))
    }
}

/// Parses a manifest without the semantic checks.
pub fn parse_manifest(yaml: &str) -> Result<StreamJob, ManifestError> {
    let value: serde_yaml::Value =
        serde_yaml::from_str(yaml).map_err(|e| ManifestError::Yaml(e.to_string()))?;
    check_header(&value)?;
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        let message = e.into_inner().to_string();
        ManifestError::Shape { path: field_path(path, &message), message }
    })
}

/// Points shape errors at the object the user has to edit: serde reports a missing field at the
/// enclosing object (`spec.pipeline`) and an unknown one at the unknown key
/// (`spec.pipeline.maxLatenes`); the fix is adding `spec.pipeline.maxLateness` in the first case
/// and correcting a key of `spec.pipeline` in the second.
fn field_path(path: String, message: &str) -> String {
    let named = |prefix: &str| {
        message.strip_prefix(prefix).and_then(|rest| rest.split_once('`')).map(|(name, _)| name)
    };
    if let Some(field) = named("missing field `") {
        return if path.is_empty() { field.to_string() } else { format!("{path}.{field}") };
    }
    if let Some(field) = named("unknown field `") {
        if let Some(parent) = path.strip_suffix(field).and_then(|p| p.strip_suffix('.')) {
            return parent.to_string();
        }
    }
    path
}

fn check_header(value: &serde_yaml::Value) -> Result<(), ManifestError> {
    let field = |name: &str| value.get(name).and_then(|v| v.as_str()).unwrap_or_default();
    if field("apiVersion") != API_VERSION {
        return Err(ManifestError::Shape {
            path: "apiVersion".into(),
            message: format!("must be {API_VERSION:?}, found {:?}", field("apiVersion")),
        });
    }
    if field("kind") != KIND {
        return Err(ManifestError::Shape {
            path: "kind".into(),
            message: format!("must be {KIND:?}, found {:?}", field("kind")),
        });
    }
    Ok(())
}
