use std::time::{Duration, Instant};

use minimart::config::Config;
use minimart::startup::Application;
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use tempfile::TempDir;

pub const ADMIN_TOKEN: &str = "test-admin-token";

/// The database the tests of a test binary run on: each binary says which in its
/// `BACKEND` constant, so the same tests run on SQLite and on Postgres.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(dead_code)] // each test binary uses one of them
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A database of its own for one test, on the backend under test.
pub struct TestDatabase {
    pub url: String,
    _dir: TempDir,
}

pub async fn test_database() -> TestDatabase {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let url = match crate::BACKEND {
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
        minimart::telemetry::init();
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
        self.client
            .post(self.url(&format!("/api/products/{id}")))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({ "product_name": name, "price": price, "stock": stock }))
            .send()
            .await
            .expect("POST product")
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

    pub async fn place_order(&self, product_id: &str, quantity: i64) -> Response {
        self.client
            .post(self.url("/api/orders"))
            .json(&json!({ "product_id": product_id, "quantity": quantity }))
            .send()
            .await
            .expect("POST order")
    }

    /// Places an order that must be accepted, and answers its id.
    pub async fn order_id(&self, product_id: &str, quantity: i64) -> String {
        let response = self.place_order(product_id, quantity).await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        let body: Value = response.json().await.expect("a JSON body");
        body["order_id"].as_str().expect("an order id").to_owned()
    }

    /// Polls the order until its status is terminal (10 s at most).
    pub async fn until_terminal(&self, order_id: &str) -> Value {
        wait_terminal(&self.client, &self.address, order_id).await
    }

    pub async fn payments_of(&self, order_id: &str) -> Vec<Value> {
        let body = self
            .get_json(&format!("/api/payments?order_id={order_id}"))
            .await;
        body["payments"].as_array().expect("a list").clone()
    }
}

pub async fn wait_terminal(client: &reqwest::Client, base: &str, order_id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let order: Value = client
            .get(format!("{base}/api/orders/{order_id}"))
            .send()
            .await
            .expect("GET order")
            .json()
            .await
            .expect("a JSON order");
        if order["status"] != "PENDING" {
            return order;
        }
        assert!(
            Instant::now() < deadline,
            "order {order_id} still pending: {order}"
        );
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Checks that a response is the problem+json refusal we expect.
pub async fn assert_problem(response: Response, status: StatusCode, context: &str) -> Value {
    assert_eq!(response.status(), status, "{context}");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert_eq!(content_type, "application/problem+json", "{context}");
    let body: Value = response.json().await.expect("a JSON problem");
    assert_eq!(body["status"], status.as_u16(), "{context}");
    assert!(
        body["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{context}: a problem says what was wrong: {body}"
    );
    body
}
