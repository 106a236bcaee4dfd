//! Metrics: what the process counts and measures, rendered for Prometheus at
//! `GET /metrics` (see README, Operating).
//!
//! The recorder of the `metrics` crate is global to the process, so it is
//! installed once ([`install`], from start-up) and every app of the process
//! shares it: tests that start many apps in one process see counters summed
//! over all of them and must compare differences, not values. Code anywhere
//! records with the `metrics` macros under the names below; before the
//! recorder is installed (unit tests of one actor, say) recording does nothing.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{describe_counter, describe_gauge, describe_histogram, gauge};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Orders created (an idempotent replay creates none).
pub const ORDERS_PLACED: &str = "minimart_orders_placed_total";
/// Orders this process's sagas decided, by `status`.
pub const ORDERS_DECIDED: &str = "minimart_orders_decided_total";
/// New orders refused at once because the shop was overloaded (503
/// `overloaded`), by `reason`: `in_flight` (the bound was reached) or
/// `deadline` (it waited in a queue past `MINIMART_QUEUE_DEADLINE_MS`).
pub const ORDERS_SHED: &str = "minimart_orders_shed_total";
/// Orders admitted and not yet decided (their requests included).
pub const ORDERS_IN_FLIGHT: &str = "minimart_orders_in_flight";
/// Payments this process recorded, by `status`.
pub const PAYMENTS: &str = "minimart_payments_total";
/// HTTP requests by `method`, `route` (the pattern, or `unmatched`) and `status`.
pub const HTTP_DURATION: &str = "minimart_http_request_duration_seconds";
/// From an order's creation to the decision of this process's saga, by `status`.
pub const ORDER_OUTCOME: &str = "minimart_order_outcome_seconds";
/// Messages sent to an actor and not yet handled, by `actor`.
pub const MAILBOX_DEPTH: &str = "minimart_actor_mailbox_depth";
/// Time in an actor's handler (its synchronous part), by `actor` and `message`.
pub const MESSAGE_DURATION: &str = "minimart_actor_message_duration_seconds";
/// Sagas running in this process.
pub const SAGAS_RUNNING: &str = "minimart_sagas_running";
/// Sagas whose order is marked stalled (see `MINIMART_SAGA_STALL_AFTER`).
pub const SAGAS_STALLED: &str = "minimart_sagas_stalled";
/// Jobs per group commit, by `backend`.
pub const STORE_BATCH_SIZE: &str = "minimart_store_batch_size";
/// Time to apply and commit one group commit, by `backend`.
pub const STORE_COMMIT_DURATION: &str = "minimart_store_commit_duration_seconds";
/// The read pool's connections, by `state` (`idle`, `active`).
pub const STORE_POOL_CONNECTIONS: &str = "minimart_store_pool_connections";
/// Open order event streams.
pub const SSE_WATCHERS: &str = "minimart_sse_watchers";

/// Every metric the process exposes, as named in `/metrics`.
pub const ALL: &[&str] = &[
    ORDERS_PLACED,
    ORDERS_DECIDED,
    ORDERS_SHED,
    ORDERS_IN_FLIGHT,
    PAYMENTS,
    HTTP_DURATION,
    ORDER_OUTCOME,
    MAILBOX_DEPTH,
    MESSAGE_DURATION,
    SAGAS_RUNNING,
    SAGAS_STALLED,
    STORE_BATCH_SIZE,
    STORE_COMMIT_DURATION,
    STORE_POOL_CONNECTIONS,
    SSE_WATCHERS,
];

/// The actors whose mailboxes are counted.
pub const ACTORS: &[&str] = &["orders", "inventory", "payment"];

/// The label of a request that matched no route.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// How often histograms are folded up when nobody scrapes (each scrape does it too).
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process's recorder the first time, and answers its handle (`None`
/// when another recorder was installed first: then nothing is exposed).
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| match build() {
            Ok(handle) => {
                describe();
                start_upkeep(handle.clone());
                Some(handle)
            }
            Err(error) => {
                tracing::warn!(%error, "could not install the metrics recorder: /metrics stays empty");
                None
            }
        })
        .as_ref()
}

fn build() -> Result<PrometheusHandle, metrics_exporter_prometheus::BuildError> {
    const SECONDS_FAST: &[f64] = &[
        0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01,
        0.05,
    ];
    const SECONDS_REQUEST: &[f64] = &[
        0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ];
    const SECONDS_ORDER: &[f64] = &[
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    ];
    const JOBS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];
    let full = |name: &str| Matcher::Full(name.to_owned());
    PrometheusBuilder::new()
        .set_buckets_for_metric(full(HTTP_DURATION), SECONDS_REQUEST)?
        .set_buckets_for_metric(full(ORDER_OUTCOME), SECONDS_ORDER)?
        .set_buckets_for_metric(full(MESSAGE_DURATION), SECONDS_FAST)?
        .set_buckets_for_metric(full(STORE_COMMIT_DURATION), SECONDS_REQUEST)?
        .set_buckets_for_metric(full(STORE_BATCH_SIZE), JOBS)?
        .install_recorder()
}

/// Help texts, and the gauges that exist before anything moves them, so that
/// every name is in the first scrape.
fn describe() {
    describe_counter!(ORDERS_PLACED, "Orders created (not idempotent replays)");
    describe_counter!(
        ORDERS_DECIDED,
        "Orders decided by this process's sagas, by status"
    );
    describe_counter!(
        ORDERS_SHED,
        "New orders refused at once (503 overloaded), by reason: in_flight or deadline"
    );
    describe_gauge!(
        ORDERS_IN_FLIGHT,
        "Orders admitted and not yet decided, their requests included"
    );
    describe_counter!(PAYMENTS, "Payments recorded by this process, by status");
    describe_histogram!(
        HTTP_DURATION,
        metrics::Unit::Seconds,
        "HTTP requests by route pattern"
    );
    describe_histogram!(
        ORDER_OUTCOME,
        metrics::Unit::Seconds,
        "From an order's creation to its decision"
    );
    describe_gauge!(
        MAILBOX_DEPTH,
        "Messages sent to an actor and not yet handled"
    );
    describe_histogram!(
        MESSAGE_DURATION,
        metrics::Unit::Seconds,
        "Time in an actor's handler (its synchronous part)"
    );
    describe_gauge!(SAGAS_RUNNING, "Sagas running in this process");
    describe_gauge!(
        SAGAS_STALLED,
        "Sagas whose order is marked stalled: failing for MINIMART_SAGA_STALL_AFTER, or a permanent error"
    );
    describe_histogram!(STORE_BATCH_SIZE, "Jobs per group commit");
    describe_histogram!(
        STORE_COMMIT_DURATION,
        metrics::Unit::Seconds,
        "Time to apply and commit a group commit"
    );
    describe_gauge!(
        STORE_POOL_CONNECTIONS,
        "The read pool's connections by state"
    );
    describe_gauge!(SSE_WATCHERS, "Open order event streams");
    for actor in ACTORS {
        gauge!(MAILBOX_DEPTH, "actor" => *actor).increment(0.0);
    }
    gauge!(SAGAS_RUNNING).increment(0.0);
    gauge!(ORDERS_IN_FLIGHT).increment(0.0);
    for reason in ["in_flight", "deadline"] {
        metrics::counter!(ORDERS_SHED, "reason" => reason).increment(0);
    }
    gauge!(SAGAS_STALLED).increment(0.0);
    gauge!(SSE_WATCHERS).increment(0.0);
    for status in ["CONFIRMED", "REJECTED", "PAYMENT_FAILED"] {
        metrics::counter!(ORDERS_DECIDED, "status" => status).increment(0);
    }
    for status in ["SUCCEEDED", "DECLINED"] {
        metrics::counter!(PAYMENTS, "status" => status).increment(0);
    }
    metrics::counter!(ORDERS_PLACED).increment(0);
}

/// Folds recorded histogram samples up now and then, so that they do not pile
/// up between scrapes (or without any).
fn start_upkeep(handle: PrometheusHandle) {
    let started = std::thread::Builder::new()
        .name("metrics-upkeep".to_owned())
        .spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_EVERY);
                handle.run_upkeep();
            }
        });
    if let Err(error) = started {
        tracing::warn!(%error, "could not start the metrics upkeep thread; scrapes do it instead");
    }
}

/// Whether this process's recorder is installed (so that handles looked up now
/// record for good).
pub fn installed() -> bool {
    matches!(HANDLE.get(), Some(Some(_)))
}

/// One more of something that is counted down when the guard is dropped (an
/// open event stream, a message in a mailbox).
pub struct GaugeGuard(metrics::Gauge);

impl GaugeGuard {
    pub fn new(gauge: metrics::Gauge) -> GaugeGuard {
        gauge.increment(1.0);
        GaugeGuard(gauge)
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

/// An open order event stream, counted in `minimart_sse_watchers` until dropped.
pub fn sse_watcher() -> GaugeGuard {
    GaugeGuard::new(gauge!(SSE_WATCHERS))
}
