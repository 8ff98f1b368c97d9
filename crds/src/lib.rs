//! The `StreamJob` API contract (`kappa.dev/v1alpha1`): serde + schemars types, the generated
//! CRD with its CEL admission rules, durations, naming conventions and semantic validation.
//!
//! This crate does no I/O; the engine, the operator and the CLI all build on it.
//!
//! ```
//! let job = kappa_crds::load_manifest(kappa_crds::REFERENCE_JOB_YAML).unwrap();
//! assert_eq!(job.spec.version, "v1");
//! assert_eq!(kappa_crds::index_name(&job.spec), "tx-stats-v1");
//! ```

pub mod crd;
pub mod duration;
pub mod load;
pub mod naming;
pub mod reference;
mod schema;
pub mod spec;
pub mod status;
pub mod validate;

pub use crd::{crd, crd_yaml};
pub use duration::{parse_duration, DurationError};
pub use load::{load_manifest, ManifestError};
pub use naming::{consumer_group, index_name};
pub use reference::reference_markdown;
pub use spec::*;
pub use status::*;
pub use validate::{validate, FieldError};

/// The reference transaction-statistics job used by examples, fixtures and tests.
pub const REFERENCE_JOB_YAML: &str = include_str!("../fixtures/valid/tx-stats.yaml");
