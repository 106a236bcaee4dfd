//! The log as a pipeline reads it: with `MINIMART_LOG_FORMAT=json` every line
//! the real binary writes is one JSON object, and every line of an order's saga
//! carries the id of the request that placed the order.

use reqwest::{Client, RequestBuilder};
use serde_json::{Value, json};

use support::gateway::App;
use support::{accepted_order_id, put_product_at, test_database, wait_terminal};

/// The real binary on `database` (a SQLite file of its own when `None`), with
/// `env` over its defaults; its base URL, and a client.
pub async fn real_binary(database: Option<&str>, env: &[(&str, &str)]) -> (App, String, Client) {
    let app = App::start_on(None, database, env).await;
    let base = format!("http://{}", app.address);
    (app, base, Client::new())
}

/// Sends `order` (a POST of an order to the shop at `base`), which must be
/// accepted, then follows the order to its outcome: its id, and the decided order.
pub async fn decided(client: &Client, base: &str, order: RequestBuilder) -> (String, Value) {
    let placed = order.send().await.expect("POST");
    let order_id = accepted_order_id(placed).await.expect("an order id");
    let order = wait_terminal(client, base, &order_id).await;
    (order_id, order)
}

#[actix_web::test]
async fn json_lines_follow_an_order_from_its_request_through_its_saga() {
    let database = test_database().await;
    let (mut app, base, client) = real_binary(
        Some(&database.url),
        &[
            ("MINIMART_PAYMENT_LATENCY_MS", "0"),
            ("MINIMART_LOG_FORMAT", "json"),
            ("RUST_LOG", "info"),
        ],
    )
    .await;

    put_product_at(&client, &base, "lamp", "Lamp", 1200, 3).await;
    let placed = (client.post(format!("{base}/api/orders")))
        .header("X-Request-Id", "log-story-1")
        .json(&json!({"product_id": "lamp", "quantity": 1}));
    let (order_id, order) = decided(&client, &base, placed).await;
    assert_eq!(order["status"], "CONFIRMED");

    assert!(app.stop(), "the binary stops cleanly");

    let log = app.log();
    let lines: Vec<Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect();
    for line in &lines {
        for field in ["timestamp", "level", "target"] {
            assert!(line[field].is_string(), "{field} in {line}");
        }
    }
    let saga: Vec<&Value> = lines
        .iter()
        .filter(|line| line["target"] == "minimart::actors::saga")
        .collect();
    assert!(
        saga.iter().any(|line| line["message"] == "order decided"),
        "the saga's lines: {saga:#?}"
    );
    for line in saga {
        let spans = line["spans"].as_array().expect("the line's spans");
        assert!(
            spans
                .iter()
                .any(|span| span["request_id"] == "log-story-1" && span["order_id"] == order_id),
            "a saga line without its request: {line}"
        );
    }
}
