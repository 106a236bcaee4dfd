//! The operating files in `ops/` with the programs they are for: Debian's
//! Prometheus runs the shipped `ops/prometheus.yml` against a test app and must
//! see the orders the test placed.
//!
//! Without Prometheus installed the test is skipped with a loud message, except
//! in CI (`CI=true`), where that is a failure. This binary holds this one test,
//! so the process's counters are its orders alone.

// A failed expectation in a test is a failed test: panicking is the point here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod prometheus;
