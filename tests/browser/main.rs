//! The storefront in a real browser: headless Chromium driven through chromedriver,
//! against the app started on a random port. Each story is what a shopper or an
//! admin does; every page visited is also checked with axe-core for serious and
//! critical accessibility violations.
//!
//! Without chromium and chromedriver installed the stories are skipped with a loud
//! message, except in CI (`CI=true`), where that is a failure.

// A failed expectation in a test is a failed test: panicking is the point here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cart;
mod driver;
mod stories;
