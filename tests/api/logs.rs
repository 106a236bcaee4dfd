//! The log as a pipeline reads it: with `MINIMART_LOG_FORMAT=json` every line
//! the real binary writes is one JSON object, and every line of an order's saga
//! carries the id of the request that placed the order.

use serde_json::{Value, json};

use support::gateway::App;
use support::{put_product_at, test_database, wait_terminal};

#[actix_web::test]
async fn json_lines_follow_an_order_from_its_request_through_its_saga() {
    let database = test_database().await;
    let mut app = App::start_on(
        None,
        Some(&database.url),
        &[
            ("MINIMART_PAYMENT_LATENCY_MS", "0"),
            ("MINIMART_LOG_FORMAT", "json"),
            ("RUST_LOG", "info"),
        ],
    )
    .await;
    let base = format!("http://{}", app.address);
    let client = reqwest::Client::new();

    put_product_at(&client, &base, "lamp", "Lamp", 1200, 3).await;
    let placed: Value = client
        .post(format!("{base}/api/orders"))
        .header("X-Request-Id", "log-story-1")
        .json(&json!({"product_id": "lamp", "quantity": 1}))
        .send()
        .await
        .expect("POST")
        .json()
        .await
        .expect("JSON");
    let order_id = placed["order_id"].as_str().expect("an order id");
    let decided = wait_terminal(&client, &base, order_id).await;
    assert_eq!(decided["status"], "CONFIRMED");

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
