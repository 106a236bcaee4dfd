//! The operating files in `ops/` with the programs they are for: Debian's
//! Prometheus runs the shipped `ops/prometheus.yml` against a test app and must
//! see the orders the test placed.
//!
//! Without Prometheus installed the test is skipped with a loud message, except
//! in CI (`CI=true`), where that is a failure. This binary holds this one test,
//! so the process's counters are its orders alone.

// A failed expectation in a test is a failed test: panicking is the point here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../gateway/harness.rs"]
#[allow(dead_code)]
mod harness;
#[path = "../api/helpers.rs"]
#[allow(dead_code)]
mod helpers;
#[path = "../api/postgres.rs"]
#[allow(dead_code)]
mod postgres;

const BACKEND: helpers::Backend = helpers::Backend::Sqlite;

mod prometheus;
