//! Postgres goes away under load and comes back: meanwhile the shop answers 503
//! with a problem+json body (never a hang, never a crash), and afterwards it
//! recovers by itself: new orders are accepted, and every order accepted before or
//! after reaches a terminal status with stock conserved.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

use support::postgres::Cluster;
use support::{TestApp, accepted_order_id, assert_problem, spawn_app_with};

/// Places an order with an idempotency key, as a careful client does.
async fn place(app: &TestApp, key: &str) -> reqwest::Response {
    app.client
        .post(app.url("/api/orders"))
        .header("Idempotency-Key", key)
        .json(&json!({ "product_id": "outage-tea", "quantity": 1 }))
        .send()
        .await
        .expect("POST order")
}

/// What the shoppers have been told so far, for the test to wait on.
#[derive(Default)]
struct Told {
    accepted: AtomicUsize,
    refused: AtomicUsize,
}

impl Told {
    /// Waits (up to a deadline) until `count` says enough.
    async fn until(&self, what: &str, count: impl Fn(&Told) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !count(self) {
            assert!(Instant::now() < deadline, "never {what}");
            actix_rt::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// Places orders until told to stop; answers the accepted order ids and the keys
/// of the orders refused (503: whether the order exists is unknown until the key
/// is retried).
async fn order_until(
    app: Arc<TestApp>,
    stop: Arc<AtomicBool>,
    told: Arc<Told>,
) -> (Vec<String>, Vec<String>) {
    let mut accepted = Vec::new();
    let mut refused = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let key = uuid::Uuid::new_v4().to_string();
        let response = place(&app, &key).await;
        if response.status() == StatusCode::ACCEPTED {
            accepted.push(accepted_order_id(response).await.expect("an order id"));
            told.accepted.fetch_add(1, Ordering::Relaxed);
        } else {
            assert_problem(response, StatusCode::SERVICE_UNAVAILABLE, "while down").await;
            refused.push(key);
            told.refused.fetch_add(1, Ordering::Relaxed);
        }
        actix_rt::time::sleep(Duration::from_millis(5)).await;
    }
    (accepted, refused)
}

#[actix_web::test]
async fn a_database_restart_under_load_is_503_then_recovers_by_itself() {
    let Some(mut cluster) = Cluster::dedicated() else {
        return;
    };
    let database_url = cluster.fresh_database().await;
    let app = Arc::new(
        spawn_app_with(|config| {
            config.database_url = database_url;
            config.db_acquire_timeout_ms = 500;
            config.db_statement_timeout_ms = 2_000;
        })
        .await,
    );
    app.stock_product("outage-tea", 300, 10_000).await;

    let stop = Arc::new(AtomicBool::new(false));
    let told = Arc::new(Told::default());
    let shoppers: Vec<_> = (0..4)
        .map(|_| {
            let (app, stop, told) = (Arc::clone(&app), Arc::clone(&stop), Arc::clone(&told));
            actix_rt::spawn(order_until(app, stop, told))
        })
        .collect();
    told.until("an order accepted before the outage", |told| {
        told.accepted.load(Ordering::Relaxed) >= 20
    })
    .await;
    cluster.stop();
    // Alive, but not ready: a load balancer takes it out of the pool.
    assert_eq!(app.get("/healthz").await.status(), StatusCode::OK);
    assert_problem(
        app.get("/readyz").await,
        StatusCode::SERVICE_UNAVAILABLE,
        "readiness while Postgres is away",
    )
    .await;
    told.until("a shopper told 503 during the outage", |told| {
        told.refused.load(Ordering::Relaxed) >= 4
    })
    .await;
    cluster.start().await;

    // Back by itself: a new order is accepted within a few seconds.
    let deadline = Instant::now() + Duration::from_secs(15);
    let probe = uuid::Uuid::new_v4().to_string();
    let mut accepted = loop {
        let response = place(&app, &probe).await;
        if response.status() == StatusCode::ACCEPTED {
            break vec![accepted_order_id(response).await.expect("an order id")];
        }
        assert!(Instant::now() < deadline, "the shop did not recover");
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        app.get("/readyz").await.status(),
        StatusCode::OK,
        "ready again"
    );
    stop.store(true, Ordering::Relaxed);
    let mut refused = Vec::new();
    for shopper in shoppers {
        let (ids, keys) = shopper.await.expect("the shopper task ends");
        accepted.extend(ids);
        refused.extend(keys);
    }
    assert!(!refused.is_empty(), "the outage was seen as 503s");
    // A refused order may still have been committed just as the database went
    // away: its key, retried, tells (the same order, or a new one).
    for key in &refused {
        let response = place(&app, key).await;
        assert_eq!(response.status(), StatusCode::ACCEPTED, "retrying {key}");
        accepted.push(accepted_order_id(response).await.expect("an order id"));
    }
    accepted.sort();
    accepted.dedup();

    // Every accepted order ends (sagas cut off by the outage are retried), and
    // stock is conserved.
    let mut sold = 0;
    for order_id in &accepted {
        let order = app.until_terminal(order_id).await;
        if order["status"] == "CONFIRMED" {
            sold += order["quantity"].as_i64().expect("a quantity");
        }
    }
    assert_eq!(app.stock_of("outage-tea").await + sold, 10_000);
}
