use std::collections::HashMap;
use std::time::{Duration, Instant};

use minimart::config::Config;
use minimart::startup::Application;
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::Backend;

pub const ADMIN_TOKEN: &str = "test-admin-token";

/// A database of its own for one test, on the backend it runs on.
pub struct TestDatabase {
    pub url: String,
    _dir: TempDir,
}

pub async fn test_database() -> TestDatabase {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let url = match crate::backend() {
        Backend::Sqlite => format!("sqlite://{}", dir.path().join("shop.db").display()),
        Backend::Postgres => crate::postgres::fresh_database().await,
    };
    TestDatabase { url, _dir: dir }
}

/// A running app with its own database, stopped when dropped.
pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    _database: TestDatabase,
}

/// The app with the test defaults: no demo catalog, instant payments that succeed.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(customize: impl FnOnce(&mut Config)) -> TestApp {
    // Logs only when asked for (RUST_LOG=debug cargo test ...): quiet by default.
    if std::env::var_os("RUST_LOG").is_some() {
        minimart::telemetry::init(minimart::telemetry::LogFormat::Text);
    }
    let database = test_database().await;
    let mut config = Config {
        addr: "127.0.0.1:0".to_owned(),
        database_url: database.url.clone(),
        admin_token: Some(ADMIN_TOKEN.parse().expect("a valid token")),
        payment_latency_ms: 0,
        demo_catalog: false,
        workers: Some(2),
        ..Config::default()
    };
    customize(&mut config);
    let app = Application::build(config).await.expect("the app starts");
    let address = format!("http://{}", app.address());
    actix_rt::spawn(app.run_until_stopped());
    TestApp {
        address,
        client: reqwest::Client::new(),
        _database: database,
    }
}

/// An app whose payment simulator declines a `rate` of payments, the same
/// ones every run (its seed is fixed).
pub async fn spawn_app_declining(rate: f64) -> TestApp {
    spawn_app_with(|config| {
        config.payment_failure_rate = rate;
        config.payment_seed = Some(7);
    })
    .await
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn get(&self, path: &str) -> Response {
        self.client.get(self.url(path)).send().await.expect("GET")
    }

    pub async fn get_json(&self, path: &str) -> Value {
        let response = self.get(path).await;
        assert_eq!(response.status(), StatusCode::OK, "GET {path}");
        response.json().await.expect("a JSON body")
    }

    pub async fn put_product(&self, id: &str, name: &str, price: i64, stock: i64) -> Response {
        put_product_at(&self.client, &self.address, id, name, price, stock).await
    }

    /// Creates a product and checks that it was accepted.
    pub async fn stock_product(&self, id: &str, price: i64, stock: i64) {
        let response = self
            .put_product(id, &format!("Product {id}"), price, stock)
            .await;
        assert_eq!(response.status(), StatusCode::OK, "creating {id}");
    }

    pub async fn stock_of(&self, id: &str) -> i64 {
        self.get_json(&format!("/api/products/{id}")).await["stock"]
            .as_i64()
            .expect("stock is a number")
    }

    /// Posts an order of one product: `{"product_id": ..., "quantity": ...}`.
    pub async fn place_order(&self, product_id: &str, quantity: i64) -> Response {
        self.post_order(&json!({ "product_id": product_id, "quantity": quantity }))
            .await
    }

    /// Posts an order of any shape: `{"items": [...], "payment": {...}}`.
    pub async fn post_order(&self, body: &Value) -> Response {
        self.client
            .post(self.url("/api/orders"))
            .json(body)
            .send()
            .await
            .expect("POST order")
    }

    /// Posts an order that must be accepted, and answers its id.
    pub async fn placed(&self, body: &Value) -> String {
        let response = self.post_order(body).await;
        assert_eq!(response.status(), StatusCode::ACCEPTED, "{body}");
        let body: Value = response.json().await.expect("a JSON body");
        body["order_id"].as_str().expect("an order id").to_owned()
    }

    /// Places an order of one product that must be accepted, and answers its id.
    pub async fn order_id(&self, product_id: &str, quantity: i64) -> String {
        self.placed(&json!({ "product_id": product_id, "quantity": quantity }))
            .await
    }

    /// Polls the order until its status is terminal (30 s at most).
    pub async fn until_terminal(&self, order_id: &str) -> Value {
        wait_terminal(&self.client, &self.address, order_id).await
    }

    /// Posts an order that must be accepted, then follows it to its outcome:
    /// its id, and the decided order.
    pub async fn decided(&self, body: &Value) -> (String, Value) {
        let order_id = self.placed(body).await;
        let order = self.until_terminal(&order_id).await;
        (order_id, order)
    }

    pub async fn payments_of(&self, order_id: &str) -> Vec<Value> {
        let body = self
            .get_json(&format!("/api/payments?order_id={order_id}"))
            .await;
        body["payments"].as_array().expect("a list").clone()
    }
}

pub async fn wait_terminal(client: &reqwest::Client, base: &str, order_id: &str) -> Value {
    // Generous: a loaded machine (debug builds, Postgres, two test threads) is
    // slow, and a saga that is really stuck stays stuck.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // A pooled keep-alive connection that the server closes just as a poll
        // goes out fails that poll only: poll again, as any client would.
        let order = match client
            .get(format!("{base}/api/orders/{order_id}"))
            .send()
            .await
        {
            Ok(response) => {
                assert_eq!(response.status(), StatusCode::OK, "GET order {order_id}");
                response.json::<Value>().await.expect("a JSON order")
            }
            Err(error) if error.is_request() => Value::Null,
            Err(error) => panic!("GET order {order_id}: {error}"),
        };
        if !order.is_null() && order["status"] != "PENDING" {
            return order;
        }
        assert!(
            Instant::now() < deadline,
            "order {order_id} still pending: {order}"
        );
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The response's header `name`, if it has one (and it is text).
pub fn header<'a>(response: &'a Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}

/// The response's `Content-Type`, or "" without one.
pub fn content_type(response: &Response) -> String {
    header(response, "content-type")
        .unwrap_or_default()
        .to_owned()
}

/// Checks that a response is the problem+json refusal we expect.
pub async fn assert_problem(response: Response, status: StatusCode, context: &str) -> Value {
    assert_eq!(response.status(), status, "{context}");
    let content_type = content_type(&response);
    assert_eq!(content_type, "application/problem+json", "{context}");
    let body: Value = response.json().await.expect("a JSON problem");
    assert_eq!(body["status"], status.as_u16(), "{context}");
    assert!(
        body["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{context}: a problem says what was wrong: {body}"
    );
    body
}

/// A careful client's book of orders: one idempotency key per intended order,
/// and the order id once the shop has answered for it. A key without an answer
/// (the server died, the answer was lost) is retried: the key makes it the same
/// order if it exists.
#[derive(Default)]
pub struct Ledger {
    /// key -> (product, quantity)
    intents: HashMap<String, (String, i64)>,
    /// key -> order id
    accepted: HashMap<String, String>,
}

impl Ledger {
    pub fn intend(&mut self, key: &str, product: &str, quantity: i64) {
        self.intents
            .insert(key.to_owned(), (product.to_owned(), quantity));
    }

    pub fn accept(&mut self, key: &str, order_id: String) {
        self.accepted.insert(key.to_owned(), order_id);
    }

    /// The intended orders that got no answer: (key, product, quantity).
    pub fn unanswered(&self) -> Vec<(String, String, i64)> {
        self.intents
            .iter()
            .filter(|(key, _)| !self.accepted.contains_key(*key))
            .map(|(key, (product, quantity))| (key.clone(), product.clone(), *quantity))
            .collect()
    }

    pub fn order_ids(&self) -> Vec<String> {
        self.accepted.values().cloned().collect()
    }
}

/// Creates or replaces a product through the admin API of the shop at `base`.
pub async fn put_product_at(
    client: &reqwest::Client,
    base: &str,
    id: &str,
    name: &str,
    price: i64,
    stock: i64,
) -> Response {
    client
        .post(format!("{base}/api/products/{id}"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({ "product_name": name, "price": price, "stock": stock }))
        .send()
        .await
        .expect("POST product")
}

/// POSTs an order with an idempotency key; `None` when no answer came (the
/// server is gone).
pub async fn place_keyed(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    product: &str,
    quantity: i64,
) -> Option<Response> {
    client
        .post(format!("{base}/api/orders"))
        .header("Idempotency-Key", key)
        .json(&json!({ "product_id": product, "quantity": quantity }))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()
}

/// Places an order with an idempotency key (see [`place_keyed`]) and answers its
/// id; `None` when no answer came (the server is gone). A refusal is `None` too
/// when `refusal_allowed` (nginx refuses for an instance that died), and fails the
/// test when not (straight to the binary, only a crash leaves an order unaccepted).
pub async fn keyed_order_id(
    client: &reqwest::Client,
    base: &str,
    (key, product, quantity): (&str, &str, i64),
    refusal_allowed: bool,
) -> Option<String> {
    let response = place_keyed(client, base, key, product, quantity).await?;
    let status = response.status();
    assert!(
        refusal_allowed || status == StatusCode::ACCEPTED,
        "an order is refused only by a crash: {status}"
    );
    accepted_order_id(response).await
}

/// The order id of an accepted order.
pub async fn accepted_order_id(response: Response) -> Option<String> {
    if response.status() != StatusCode::ACCEPTED {
        return None;
    }
    let body: Value = response.json().await.ok()?;
    body["order_id"].as_str().map(str::to_owned)
}

/// A shopper's event stream (`GET /orders/events`), read until the server
/// ends it, which it must within 30 s.
pub async fn stream_to_end(client: &reqwest::Client, url: &str) -> String {
    let stream = client.get(url).send().await.expect("GET");
    assert_eq!(stream.status(), StatusCode::OK, "GET {url}");
    actix_rt::time::timeout(Duration::from_secs(30), stream.text())
        .await
        .expect("the stream ends once the order is decided")
        .expect("a body")
}

pub async fn fetch_json(client: &reqwest::Client, url: &str) -> Value {
    let response = client.get(url).send().await.expect("GET");
    assert_eq!(response.status(), StatusCode::OK, "GET {url}");
    response.json().await.expect("a JSON body")
}

/// What must hold once the shoppers are done, checked through the API at `base`:
/// every order reaches a terminal status, a CONFIRMED order has exactly one
/// SUCCEEDED payment and any other none, no order has two payments, and each
/// product's initial stock equals its stock now plus what CONFIRMED orders took.
/// Answers how many units were sold.
pub async fn assert_invariants(
    client: &reqwest::Client,
    base: &str,
    products: &[(&str, i64)],
    order_ids: &[String],
) -> i64 {
    let mut sold: HashMap<String, i64> = HashMap::new();
    for order_id in order_ids {
        let order = wait_terminal(client, base, order_id).await;
        let payments =
            fetch_json(client, &format!("{base}/api/payments?order_id={order_id}")).await;
        let payments = payments["payments"].as_array().expect("a list");
        assert!(payments.len() <= 1, "one payment at most: {payments:?}");
        let succeeded = payments.iter().any(|p| p["status"] == "SUCCEEDED");
        assert_eq!(order["status"] == "CONFIRMED", succeeded, "{order}");
        if order["status"] == "CONFIRMED" {
            *sold
                .entry(order["product_id"].as_str().expect("a product").to_owned())
                .or_default() += order["quantity"].as_i64().expect("a quantity");
        }
    }
    for &(id, initial) in products {
        let product = fetch_json(client, &format!("{base}/api/products/{id}")).await;
        let now = product["stock"].as_i64().expect("stock");
        let taken = sold.get(id).copied().unwrap_or(0);
        assert_eq!(initial, now + taken, "{id}: stock conserved");
    }
    sold.values().sum()
}
