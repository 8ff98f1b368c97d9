//! The lifecycle state machine of job versions (pure).
