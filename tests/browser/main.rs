//! The storefront in a real browser: headless Chromium driven through chromedriver,
//! against the app started on a random port. Each story is what a shopper or an
//! admin does; every page visited is also checked with axe-core for serious and
//! critical accessibility violations.
//!
//! Without chromium and chromedriver installed the stories are skipped with a loud
//! message, except in CI (`CI=true`), where that is a failure.

// A failed expectation in a test is a failed test: panicking is the point here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../api/helpers.rs"]
#[allow(dead_code)]
mod helpers;
#[path = "../api/postgres.rs"]
#[allow(dead_code)]
mod postgres;

/// The stories run on the default database.
const BACKEND: helpers::Backend = helpers::Backend::Sqlite;

mod driver;
mod stories;
