//! minimart's API, exercised as its users see it: each test starts the real app on
//! a random port with its own database and speaks HTTP to it. A test marked
//! `#[on_each_backend]` runs twice, as `its_name::sqlite` and `its_name::postgres`,
//! each on a fresh database (Postgres: of a throwaway cluster, see
//! `tests/support`); the others run on SQLite, and `postgres::` holds the stories
//! of Postgres itself.

// A failed expectation in a test is a failed test: panicking is the point here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod bad_input;
mod cards;
mod cart;
mod concurrency;
mod crash;
mod health;
mod idempotency;
mod lines;
mod logs;
mod manners;
mod metrics;
mod openapi;
mod orders;
mod overload;
mod pages;
mod payments;
mod products;
mod request_id;
mod security;
mod stalled;

/// Postgres going away, shared by instances, reached over TLS.
mod postgres {
    mod lines;
    mod outage;
    mod sessions;
    mod tls;
}

/// A GET of `path` is refused as a 404 problem (`what` says what was asked for).
async fn assert_not_found(app: &support::TestApp, path: &str, what: &str) {
    let response = app.get(path).await;
    support::assert_problem(response, reqwest::StatusCode::NOT_FOUND, what).await;
}
