//! Test helpers shared by the engine service, operator and end-to-end tests: the protocol
//! peers ([`kafka`]: librdkafka's in-process MockCluster; [`opensearch`]: a real OpenSearch
//! node; [`osmem`]: the osmem-server imitation of the Elasticsearch API; [`elastic`]: either
//! one for a test; [`kube_api`]: an in-memory Kubernetes API behind a real `kube::Client`),
//! what a reader of an index sees ([`reader`]), waiting for child processes ([`process`]), the reference job and workloads ([`job`]) and
//! its independent batch reference ([`reference`](mod@reference)).

pub mod elastic;
pub mod http;
pub mod job;
pub mod kafka;
/// The in-memory Kubernetes API; it lives in the operator crate, where `kappa up` uses it.
pub use kappa_operator::local::api as kube_api;
pub mod opensearch;
pub mod osmem;
pub mod process;
pub mod reader;
pub mod reference;
