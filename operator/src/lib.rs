//! The StreamJob operator. Each reconcile runs one pipeline:
//!
//! read ([`controller`]) → observe ([`observe`]: workloads, Kafka lag, engine `/status`, the
//! alias) → decide ([`lifecycle`], a pure state machine) → build ([`build`], pure object
//! builders) → apply ([`controller`]) → write status.
//!
//! Only [`controller`] and [`observe`] do I/O; the decisions and the desired objects are pure
//! functions, unit tested on their own.

pub mod build;
pub mod lifecycle;
pub mod names;
pub mod observe;
