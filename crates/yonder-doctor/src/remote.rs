//! Remote checks.
