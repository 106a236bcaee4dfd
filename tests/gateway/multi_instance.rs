//! The production shape: two minimart instances on one Postgres behind nginx.
//! Shoppers order through the gateway, with payment failures mixed in, and one
//! instance is killed with SIGKILL part way. Afterwards, through the API, every
//! accepted order has reached a terminal status (the survivor took over the dead
//! one's sagas once their lease ran out), stock is conserved, and no order has
//! more than one payment. Before the kill, the story also checks that an
//! `Idempotency-Key` holds across instances and that a shopper watching an order
//! on one instance is told the outcome of a saga that ran on the other.
//!
//! A second story: a saga slower than the lease stays with the live instance that
//! runs it, because that instance keeps renewing the lease.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;

use support::gateway::{App, two_instances_behind_nginx};
use support::postgres::Cluster;
use support::{
    Ledger, assert_invariants, fetch_json, keyed_order_id, put_product_at, wait_terminal,
};

const PRODUCTS: [(&str, i64); 3] = [("mi-kettle", 40), ("mi-mug", 30), ("mi-beans", 25)];
const SHOPPERS: usize = 16;
const ORDERS_EACH: usize = 25;

/// Slow enough that the killed instance has sagas in flight.
const SLOW_AND_FAILING: [(&str, &str); 3] = [
    ("MINIMART_PAYMENT_LATENCY_MS", "200"),
    ("MINIMART_PAYMENT_FAILURE_RATE", "0.3"),
    ("MINIMART_SAGA_LEASE_SECS", "2"),
];

/// Places an order; `None` when no answer came, or nginx refused it (an instance died).
async fn place(client: &reqwest::Client, base: &str, order: (&str, &str, i64)) -> Option<String> {
    keyed_order_id(client, base, order, true).await
}

async fn shop(base: String, ledger: Arc<Mutex<Ledger>>, shopper: usize) {
    let client = reqwest::Client::new();
    for n in 0..ORDERS_EACH {
        let key = format!("shopper-{shopper}-order-{n}");
        let (product, _) = PRODUCTS[(shopper + n) % PRODUCTS.len()];
        let quantity = 1 + (n % 3) as i64;
        ledger
            .lock()
            .expect("ledger")
            .intend(&key, product, quantity);
        if let Some(order_id) = place(&client, &base, (&key, product, quantity)).await {
            ledger.lock().expect("ledger").accept(&key, order_id);
        }
    }
}

/// The first `outcome` event of an order's stream, read from `base`.
async fn outcome_seen_at(base: &str, order_id: &str) -> String {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("a client");
    let mut response = client
        .get(format!("{base}/orders/{order_id}/events"))
        .send()
        .await
        .expect("the event stream");
    assert_eq!(response.status(), StatusCode::OK);
    let mut text = String::new();
    while !text.contains("event: outcome") {
        match response.chunk().await {
            Ok(Some(chunk)) => text.push_str(&String::from_utf8_lossy(&chunk)),
            other => panic!("the stream ended without an outcome ({other:?}): {text}"),
        }
    }
    text
}

#[actix_web::test]
async fn two_instances_on_postgres_behind_nginx_keep_every_invariant_when_one_dies() {
    // The checked-in order limit (a few per second per address) would refuse a
    // load from one test client: this copy raises it, and changes nothing else.
    let raised = |conf: String| conf.replace("rate=5r/s", "rate=100000r/s");
    let Some((_cluster, first, mut second, gateway)) =
        two_instances_behind_nginx(&SLOW_AND_FAILING, raised).await
    else {
        return;
    };
    let client = &gateway.client;

    for (id, stock) in PRODUCTS {
        gateway.stock_product(id, id, 450, stock).await;
    }

    // A product written through one instance is read at once through the other.
    let on_second = fetch_json(
        client,
        &format!("http://{}/api/products/mi-mug", second.address),
    )
    .await;
    assert_eq!(on_second["stock"], 30);

    // One key, sent to each instance directly: one order.
    let direct = reqwest::Client::new();
    let (on_first, on_second) = (
        format!("http://{}", first.address),
        format!("http://{}", second.address),
    );
    let across = ("across-instances", "mi-beans", 1);
    let a = place(&direct, &on_first, across).await;
    let b = place(&direct, &on_second, across).await;
    assert!(a.is_some() && a == b, "one order for one key: {a:?} {b:?}");

    // Placed on the second instance, watched on the first: the first hears the
    // outcome of a saga it did not run.
    let watched = place(&direct, &on_second, ("watched", "mi-kettle", 1))
        .await
        .expect("an order on the second instance");
    let stream = outcome_seen_at(&on_first, &watched).await;
    assert!(
        stream.contains("Order confirmed") || stream.contains("declined"),
        "an outcome notification: {stream}"
    );

    // Shoppers through the gateway; the second instance dies part way.
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    {
        let mut ledger = ledger.lock().expect("ledger");
        ledger.intend("across-instances", "mi-beans", 1);
        ledger.accept("across-instances", a.expect("an order"));
        ledger.intend("watched", "mi-kettle", 1);
        ledger.accept("watched", watched);
    }
    let shoppers: Vec<_> = (0..SHOPPERS)
        .map(|shopper| actix_rt::spawn(shop(gateway.base.clone(), Arc::clone(&ledger), shopper)))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    while ledger.lock().expect("ledger").order_ids().len() < SHOPPERS * ORDERS_EACH / 3 {
        assert!(Instant::now() < deadline, "orders are not being accepted");
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
    second.kill();
    for shopper in shoppers {
        shopper.await.expect("the shopper task ends");
    }

    // Answers lost with the dead instance are retried with the same key: the
    // order it had accepted, or a new one. nginx may still try the dead instance
    // first, and never replays a POST: the client retries, as a real one would.
    let unanswered = ledger.lock().expect("ledger").unanswered();
    for (key, product, quantity) in unanswered {
        let mut order_id = None;
        for _ in 0..20 {
            order_id = place(client, &gateway.base, (&key, &product, quantity)).await;
            if order_id.is_some() {
                break;
            }
            actix_rt::time::sleep(Duration::from_millis(100)).await;
        }
        let order_id = order_id.unwrap_or_else(|| panic!("the survivor accepts {key}"));
        ledger.lock().expect("ledger").accept(&key, order_id);
    }

    // Every order ends, including those whose saga died with the second instance,
    // and every invariant holds.
    let order_ids = ledger.lock().expect("ledger").order_ids();
    let sold = assert_invariants(client, &gateway.base, &PRODUCTS, &order_ids).await;
    assert!(sold > 0, "some orders were confirmed");
    assert!(
        first.log().contains("resuming saga"),
        "the survivor took over the dead instance's sagas: {}",
        first.log()
    );
}

#[actix_web::test]
async fn a_saga_slower_than_its_lease_stays_with_the_instance_that_runs_it() {
    let Some(cluster) = Cluster::dedicated() else {
        return;
    };
    let database_url = cluster.fresh_database().await;
    // A payment that takes two leases: without renewal, the other instance, and
    // this one too, would claim the order as stalled while it runs. (A renewal
    // every second leaves a second to spare on a loaded machine.)
    let env = [
        ("MINIMART_PAYMENT_LATENCY_MS", "4000"),
        ("MINIMART_SAGA_LEASE_SECS", "2"),
    ];
    // No gateway here: the instances are reached directly.
    let first = App::start_on(None, Some(&database_url), &env).await;
    let second = App::start_on(None, Some(&database_url), &env).await;
    let client = reqwest::Client::new();
    let base = format!("http://{}", first.address);
    let created = put_product_at(&client, &base, "slow-tea", "Slow tea", 450, 5).await;
    assert_eq!(created.status(), StatusCode::OK);

    let order_id = place(&client, &base, ("slow", "slow-tea", 1))
        .await
        .expect("an accepted order");
    let done = wait_terminal(&client, &base, &order_id).await;

    assert_eq!(done["status"], "CONFIRMED", "{done}");
    for (name, app) in [("first", &first), ("second", &second)] {
        let log = app.log();
        assert!(
            !log.contains("resuming saga"),
            "the {name} instance took the running saga over: {log}"
        );
    }
    let payments = fetch_json(&client, &format!("{base}/api/payments?order_id={order_id}")).await;
    assert_eq!(payments["payments"].as_array().map(Vec::len), Some(1));
}
