//! The StreamJob operator: read → validate → decide (pure lifecycle state machine) → build
//! (pure object builders) → apply → status.
//!
//! Nothing is implemented here yet: the controller is tracked by the operator issue. The crate
//! exists so the workspace layout is the one the design fixes.
