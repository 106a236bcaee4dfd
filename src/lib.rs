//! minimart: a small, real e-commerce system. A shopper browses products and places
//! an order; the order's saga reserves stock, charges a simulated payment, and
//! confirms or compensates. Orders, Inventory and Payment are actix actors that own
//! their domains and exchange typed messages; an actix-web layer turns HTTP calls
//! into those messages; the store layer is the only code that knows SQL.
//!
//! Dependencies run one way: `http` -> `actors` -> `store`, and all of them use
//! `domain`, which uses nothing else.

// Only what the crate root exports is public; the rest says `pub(crate)`.
// (A lint for the library only: in the binaries, tests and benches every
// item is unreachable from outside by definition.)
#![warn(unreachable_pub)]

pub mod actors;
pub mod assets;
pub mod config;
pub mod domain;
pub mod http;
pub mod meters;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod views;
