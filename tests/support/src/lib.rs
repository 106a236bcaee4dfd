//! What minimart's tests share: the app started on a port of its own with a
//! database of its own ([`spawn_app`]), on the backend the test runs on
//! ([`on_each_backend`], [`run_on`]); the throwaway Postgres ([`postgres`]); nginx
//! and the real binary behind it ([`gateway`]); and [`skip`], which says loudly
//! that a test cannot run here and counts it for the summary line that the test
//! process prints as it exits.

use std::cell::Cell;
use std::net::TcpListener;

pub use minimart_test_macros::{on_each_backend, on_postgres};

mod app;
pub mod gateway;
pub mod postgres;
mod skip;

pub use app::*;
pub use skip::skip;

/// The database a test runs on: SQLite unless the test was started for Postgres
/// by [`on_each_backend`] or [`on_postgres`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

thread_local! {
    // Each test runs on a thread of its own, its app's tasks on the same thread.
    static BACKEND: Cell<Backend> = const { Cell::new(Backend::Sqlite) };
}

/// The backend of the running test.
pub fn backend() -> Backend {
    BACKEND.get()
}

/// Runs `test` on `backend`; on Postgres when none is available, skips it (loudly;
/// in CI that fails).
pub async fn run_on(backend: Backend, test: impl Future<Output = ()>) {
    if backend == Backend::Postgres && !postgres::available() {
        return;
    }
    BACKEND.set(backend);
    test.await;
}

pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("an address").port()
}
