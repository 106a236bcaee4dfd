//! The gateway as shoppers reach it: nginx runs the checked-in `gateway.conf` on a
//! free loopback port in front of the real minimart binary, and every route, the
//! order event stream, the order and sign-in rate limits, the answers for an app
//! that is down, and the configuration's HTTPS part are checked through it.
//!
//! Without nginx (or, for HTTPS, openssl) installed the tests are skipped with a
//! loud message, except in CI (`CI=true`), where that is a failure.

// A failed expectation in a test is a failed test: panicking is the point here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../api/helpers.rs"]
#[allow(dead_code)]
mod helpers;
#[path = "../api/postgres.rs"]
#[allow(dead_code)] // restarting a cluster is for tests/api_postgres
mod postgres;

/// The app behind the gateway runs on the default database, except in
/// `multi_instance`, which puts several instances on one Postgres.
const BACKEND: helpers::Backend = helpers::Backend::Sqlite;

mod events;
mod harness;
mod limits;
mod multi_instance;
mod overload;
mod routes;
mod tls;
