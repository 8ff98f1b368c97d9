//! Test helpers shared by the engine service and end-to-end tests: the real protocol peers
//! ([`kafka`]: librdkafka's in-process MockCluster; [`osmem`]: the osmem-server Elasticsearch-API
//! server), the reference job ([`job`]) and its independent batch reference ([`reference`]).

pub mod http;
pub mod job;
pub mod kafka;
pub mod osmem;
pub mod reference;
