//! The operator without a cluster, for `kappa up`: an in-memory Kubernetes API ([`api`]) that
//! the unchanged controller reconciles against, and a local kubelet that runs each engine
//! Deployment as a child process.
pub mod api;
