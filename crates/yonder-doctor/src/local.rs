//! Local checks.
