//! The whole API suite of `tests/api` again, on Postgres: the same stories, each
//! on a fresh database of a throwaway cluster (see `tests/api/postgres.rs`).

// A failed expectation in a test is a failed test: panicking is the point here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../api/bad_input.rs"]
mod bad_input;
#[path = "../api/concurrency.rs"]
mod concurrency;
#[path = "../api/crash.rs"]
mod crash;
#[path = "../api/health.rs"]
mod health;
#[path = "../api/helpers.rs"]
mod helpers;
#[path = "../api/idempotency.rs"]
mod idempotency;
#[path = "../api/orders.rs"]
mod orders;
mod outage;
#[path = "../api/pages.rs"]
mod pages;
#[path = "../api/payments.rs"]
mod payments;
#[path = "../api/postgres.rs"]
mod postgres;
#[path = "../api/products.rs"]
mod products;
#[path = "../api/request_id.rs"]
mod request_id;
#[path = "../api/security.rs"]
mod security;
mod sessions;
mod tls;

const BACKEND: helpers::Backend = helpers::Backend::Postgres;
