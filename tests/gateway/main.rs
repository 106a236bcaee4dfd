//! The gateway as shoppers reach it: nginx runs the checked-in `gateway.conf` on a
//! free loopback port in front of the real minimart binary, and every route, the
//! order event stream, the order and sign-in rate limits, the answers for an app
//! that is down, and the configuration's HTTPS part are checked through it.
//!
//! Without nginx (or, for HTTPS, openssl) installed the tests are skipped with a
//! loud message, except in CI (`CI=true`), where that is a failure.

// A failed expectation in a test is a failed test: panicking is the point here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cart;
mod events;
mod limits;
mod multi_instance;
mod overload;
mod routes;
mod tls;
