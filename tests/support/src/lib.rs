//! Test helpers shared by the engine service, operator and end-to-end tests: the real protocol
//! peers ([`kafka`]: librdkafka's in-process MockCluster; [`osmem`]: the osmem-server
//! Elasticsearch-API server; [`kube_api`]: an in-memory Kubernetes API behind a real
//! `kube::Client`), the reference job ([`job`]) and its independent batch reference
//! ([`reference`](mod@reference)).

pub mod http;
pub mod job;
pub mod kafka;
/// The in-memory Kubernetes API; it lives in the operator crate, where `kappa up` uses it.
pub use kappa_operator::local::api as kube_api;
pub mod osmem;
pub mod reference;
