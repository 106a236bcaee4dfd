//! A flash sale: more shoppers than the shop can serve at once. Above its
//! bound of orders in flight (`MINIMART_MAX_IN_FLIGHT`) a new order is refused
//! at once with 503 `overloaded` and `Retry-After`, before anything is stored,
//! and the same request succeeds later; an order that waited in a queue past
//! `MINIMART_QUEUE_DEADLINE_MS` is refused rather than placed late; reads go on
//! being served. (SQLite only: the rows are counted, and the store made slow,
//! through the test's own connection to the database file.)

use std::time::Duration;

use reqwest::{Response, StatusCode};
use serde_json::Value;

use crate::pages::{browser, input_value, page};
use support::{TestApp, accepted_order_id, place_keyed, spawn_app_with};

const BUSY: &str = "The shop is very busy; try again in a few seconds";

/// The app with `customize` applied, and the path of its SQLite file.
async fn shop(customize: impl FnOnce(&mut minimart::config::Config)) -> (TestApp, String) {
    let mut url = String::new();
    let app = spawn_app_with(|config| {
        customize(config);
        url = config.database_url.clone();
    })
    .await;
    let path = url.trim_start_matches("sqlite://").to_owned();
    (app, path)
}

/// Orders stored in the database, counted behind the API's back.
fn orders_stored(db: &str) -> i64 {
    let conn = rusqlite::Connection::open(db).expect("the database");
    conn.query_row("SELECT count(*) FROM shop_order", [], |row| row.get(0))
        .expect("a count")
}

/// A shop that takes `max_in_flight` orders in flight at most, each in flight
/// while its payment takes `payment_latency_ms`; and the path of its SQLite file.
async fn busy_shop(max_in_flight: usize, payment_latency_ms: u64) -> (TestApp, String) {
    shop(|config| {
        config.max_in_flight = max_in_flight;
        config.payment_latency_ms = payment_latency_ms;
    })
    .await
}

async fn keyed(app: &TestApp, key: &str, product: &str, quantity: i64) -> Response {
    place_keyed(&app.client, &app.address, key, product, quantity)
        .await
        .expect("an answer")
}

/// An order placed now with a key that placed nothing before: accepted (202)
/// as a new order, not the replay of one, and in flight. Answers its id.
async fn placed_anew(app: &TestApp, key: &str, product: &str, quantity: i64) -> String {
    let response = keyed(app, key, product, quantity).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED, "{key}");
    assert!(
        response.headers().get("idempotent-replayed").is_none(),
        "{key}: a new order, not the replay of one"
    );
    accepted_order_id(response).await.expect("an order id")
}

/// A 503 `overloaded` problem with its `Retry-After`, in seconds.
async fn assert_overloaded(response: Response, context: &str) -> u64 {
    assert_eq!(
        response.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "{context}"
    );
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(
        header("content-type"),
        "application/problem+json",
        "{context}"
    );
    let retry_after: u64 = header("retry-after")
        .parse()
        .unwrap_or_else(|_| panic!("{context}: a Retry-After in seconds"));
    assert!((1..=5).contains(&retry_after), "{context}: {retry_after}");
    let body: Value = response.json().await.expect("a problem");
    assert_eq!(body["code"], "overloaded", "{context}: {body}");
    assert_eq!(body["status"], 503, "{context}: {body}");
    retry_after
}

#[actix_web::test]
async fn an_order_refused_as_overloaded_leaves_no_trace_and_its_key_stays_unused() {
    // Two orders in flight at most; each stays in flight while its payment runs.
    let (app, db) = busy_shop(2, 1_500).await;
    app.stock_product("tea", 350, 10).await;
    let first = placed_anew(&app, "first", "tea", 1).await;
    let second = placed_anew(&app, "second", "tea", 1).await;

    let refused = keyed(&app, "third", "tea", 3).await;

    assert_overloaded(refused, "a third order in flight").await;
    assert_eq!(orders_stored(&db), 2, "no row for the refused order");
    for order_id in [&first, &second] {
        assert_eq!(app.until_terminal(order_id).await["status"], "CONFIRMED");
    }
    assert_eq!(app.stock_of("tea").await, 8, "the refusal moved no stock");
    // Its key placed nothing: sent again, it places the order now.
    let third = placed_anew(&app, "third", "tea", 3).await;
    assert_eq!(app.until_terminal(&third).await["status"], "CONFIRMED");
    assert_eq!(app.stock_of("tea").await, 5);
    assert_eq!(orders_stored(&db), 3);
}

#[actix_web::test]
async fn a_client_that_waits_retry_after_gets_its_order_placed() {
    let (app, _db) = busy_shop(1, 200).await;
    app.stock_product("mug", 1450, 5).await;
    placed_anew(&app, "first", "mug", 1).await;

    let refused = keyed(&app, "second", "mug", 1).await;
    let retry_after = assert_overloaded(refused, "a second order in flight").await;
    actix_rt::time::sleep(Duration::from_secs(retry_after)).await;
    let second = placed_anew(&app, "second", "mug", 1).await;

    assert_eq!(app.until_terminal(&second).await["status"], "CONFIRMED");
    assert_eq!(app.stock_of("mug").await, 3);
}

#[actix_web::test]
async fn an_order_that_waited_past_the_queue_deadline_is_refused_not_placed_late() {
    let (app, db) = shop(|config| {
        config.queue_deadline_ms = 200;
        // The store waits for its lock longer than the test holds it.
        config.db_acquire_timeout_ms = 10_000;
    })
    .await;
    app.stock_product("kettle", 5900, 10).await;
    // Another process holds the database's write lock: the store is slow.
    let blocker = rusqlite::Connection::open(&db).expect("the database");
    blocker
        .execute_batch("BEGIN IMMEDIATE")
        .expect("the write lock");

    // The first order reaches the store's writer at once and waits there for
    // the lock; the second waits in the queue behind it.
    let first = actix_rt::spawn({
        let (client, base) = (app.client.clone(), app.address.clone());
        async move { place_keyed(&client, &base, "early", "kettle", 1).await }
    });
    actix_rt::time::sleep(Duration::from_millis(150)).await;
    let second = actix_rt::spawn({
        let (client, base) = (app.client.clone(), app.address.clone());
        async move { place_keyed(&client, &base, "late", "kettle", 2).await }
    });
    actix_rt::time::sleep(Duration::from_millis(1_000)).await;
    blocker.execute_batch("ROLLBACK").expect("the lock let go");

    let first = first.await.expect("the task").expect("an answer");
    let second = second.await.expect("the task").expect("an answer");
    assert_eq!(
        first.status(),
        StatusCode::ACCEPTED,
        "taken before its deadline"
    );
    assert_overloaded(second, "waited about a second behind the lock").await;
    let first = accepted_order_id(first).await.expect("an order id");
    assert_eq!(app.until_terminal(&first).await["status"], "CONFIRMED");
    assert_eq!(orders_stored(&db), 1, "the late order was not stored");
    assert_eq!(app.stock_of("kettle").await, 9);
    // Nothing of it was kept: its key places it now.
    placed_anew(&app, "late", "kettle", 2).await;
}

#[actix_web::test]
async fn reads_are_served_while_new_orders_are_refused() {
    let (app, _db) = busy_shop(1, 5_000).await;
    app.stock_product("beans", 2490, 10).await;
    let pending = placed_anew(&app, "first", "beans", 1).await;
    assert_overloaded(keyed(&app, "second", "beans", 1).await, "at the limit").await;

    for path in [
        "/api/products".to_owned(),
        "/api/products/beans".to_owned(),
        format!("/api/orders/{pending}"),
        format!("/api/payments?order_id={pending}"),
        "/healthz".to_owned(),
        "/readyz".to_owned(),
    ] {
        assert_eq!(app.get(&path).await.status(), StatusCode::OK, "GET {path}");
    }
    let shopper = browser();
    for path in [
        "/".to_owned(),
        "/products/beans".to_owned(),
        format!("/orders/{pending}"),
        "/orders".to_owned(),
    ] {
        assert_eq!(
            page(&shopper, &app, &path).await.0,
            StatusCode::OK,
            "{path}"
        );
    }
    assert_eq!(
        app.get_json(&format!("/api/orders/{pending}")).await["status"],
        "PENDING",
        "the order in flight is still in flight: the shop is at its limit"
    );
    assert_overloaded(keyed(&app, "third", "beans", 1).await, "still at the limit").await;
}

#[actix_web::test]
async fn a_shed_buy_tells_the_shopper_kindly_and_keeps_the_form() {
    let (app, db) = busy_shop(1, 5_000).await;
    app.stock_product("grinder", 8900, 5).await;
    placed_anew(&app, "api", "grinder", 1).await;
    let shopper = browser();
    let (_, product_page) = page(&shopper, &app, "/products/grinder").await;
    let key = input_value(&product_page, "idempotency_key");
    let form = [
        ("product_id", "grinder"),
        ("quantity", "3"),
        ("idempotency_key", key.as_str()),
    ];

    let buy = || shopper.post(app.url("/orders")).form(&form);
    let plain = buy().send().await.expect("POST");
    let htmx = buy()
        .header("HX-Request", "true")
        .send()
        .await
        .expect("POST");

    for (response, what) in [(plain, "a plain post"), (htmx, "an htmx post")] {
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE, "{what}");
        assert!(response.headers().contains_key("retry-after"), "{what}");
        let html = response.text().await.expect("a body");
        assert!(html.contains(BUSY), "{what}: {html}");
        assert!(!html.contains("Something went wrong"), "{what}: {html}");
        if what == "a plain post" {
            // The product's page again, the form as the shopper left it.
            assert_eq!(input_value(&html, "idempotency_key"), key, "{what}");
            assert!(
                html.contains(r#"name="quantity" value="3""#),
                "{what}: {html}"
            );
        } else {
            // Only the notice: the form on the page stays as it is, key and all.
            assert!(
                !html.contains("idempotency_key") && !html.contains("<html"),
                "{what}: {html}"
            );
        }
    }
    assert_eq!(orders_stored(&db), 1, "the shed buys stored nothing");
}
