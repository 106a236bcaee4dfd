//! The log as a pipeline reads it: with `MINIMART_LOG_FORMAT=json` every line
//! the real binary writes is one JSON object, and every line of an order's saga
//! carries the id of the request that placed the order.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

use support::{ADMIN_TOKEN, put_product_at, test_database, wait_terminal};

#[actix_web::test]
async fn json_lines_follow_an_order_from_its_request_through_its_saga() {
    let database = test_database().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let log_path = tempfile::NamedTempFile::new().expect("a log file");
    let mut child = Command::new(env!("CARGO_BIN_EXE_minimart"))
        .env("MINIMART_ADDR", format!("127.0.0.1:{port}"))
        .env("DATABASE_URL", &database.url)
        .env("MINIMART_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("MINIMART_PAYMENT_LATENCY_MS", "0")
        .env("MINIMART_DEMO_CATALOG", "false")
        .env("MINIMART_LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log_path.reopen().expect("the log file"))
        .spawn()
        .expect("the binary starts");
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while client.get(format!("{base}/readyz")).send().await.is_err() {
        assert!(Instant::now() < deadline, "the binary never answered");
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }

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

    let pid = Pid::from_raw(i32::try_from(child.id()).expect("a pid"));
    kill(pid, Signal::SIGTERM).expect("SIGTERM");
    assert!(child.wait().expect("the binary stops").success());

    let log = std::fs::read_to_string(log_path.path()).expect("the log");
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
