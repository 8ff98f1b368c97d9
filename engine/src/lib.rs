//! The Kappa stream processor: decode JSON records, evaluate filters and derived fields, assign
//! event-time windows, fold mergeable aggregates, snapshot state, and emit window documents.
//!
//! The library does no network I/O. Data flows through the modules in this order:
//! [`decode`] → [`plan`] (compiled job, [`cel`] programs) → [`store`] ([`window`], [`key`],
//! [`aggregate`]) → [`output`]; [`processor`] drives one stream, [`replay`] replays files on
//! several threads, [`state`] snapshots, [`gen`] writes reference workloads.

pub mod aggregate;
pub mod cel;
pub mod decode;
pub mod delivery;
pub mod fields;
pub mod gen;
pub mod key;
pub mod output;
pub mod plan;
pub mod processor;
pub mod replay;
pub mod state;
pub mod store;
pub mod time;
pub mod value;
pub mod window;

pub use plan::JobPlan;
pub use processor::Processor;
