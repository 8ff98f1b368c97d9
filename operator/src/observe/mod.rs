//! Observation of the world a decision depends on.
