//! minimart's API, exercised as its users see it: each test starts the real app on
//! a random port with its own database and speaks HTTP to it.

// A failed expectation in a test is a failed test: panicking is the point here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod bad_input;
mod concurrency;
mod crash;
mod health;
mod helpers;
mod idempotency;
mod logs;
mod manners;
mod metrics;
mod openapi;
mod orders;
mod overload;
mod pages;
mod payments;
#[allow(dead_code)] // the restartable cluster is for tests/api_postgres
mod postgres;
mod products;
mod request_id;
mod security;
mod stalled;

/// These tests run on SQLite; `tests/api_postgres` runs them again on Postgres.
const BACKEND: helpers::Backend = helpers::Backend::Sqlite;
