//! The StreamJob operator. Each reconcile runs one pipeline:
//!
//! read ([`controller::world`]) → validate → observe ([`observe`]: workloads, Kafka lag, engine
//! `/status`, the alias) → decide ([`lifecycle`], a pure state machine) → build ([`build`], pure
//! object builders) → apply ([`controller::apply`]) → write status
//! ([`controller::status`]).
//!
//! Only [`controller`], [`observe`] and [`elastic`] do I/O; the decisions and the desired
//! objects are pure functions, unit tested on their own. [`run`] is the process: flags, leader
//! election, metrics.

pub mod build;
pub mod controller;
pub mod elastic;
pub mod lifecycle;
pub mod local;
pub mod metrics;
pub mod names;
pub mod observe;
pub mod rbac;
pub mod run;

pub use controller::{error_policy, reconcile, Context, Settings};
pub use run::{run, OperatorArgs};
