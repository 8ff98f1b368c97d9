//! The operator without a cluster, for `kappa up`: an in-memory Kubernetes API ([`api`],
//! served on loopback by [`serve`]) that the unchanged controller reconciles against, and a
//! local kubelet ([`kubelet`]) that runs each engine Deployment as a child process.

pub mod api;
pub mod kubelet;
pub mod serve;
pub mod up;
