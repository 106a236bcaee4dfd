//! `GET /metrics`: Prometheus' text format, the names the operating issue
//! promises, counters that agree with the orders placed and decided, and the
//! dashboard's queries asking only for what is exposed.
//!
//! The metrics recorder is global to the process and every app of a test binary
//! shares it, while other tests place orders at the same time: the test that
//! compares counters with its own orders runs in a process of its own (the test
//! binary again, running that test alone).

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use reqwest::StatusCode;
use serde_json::{Value, json};

use support::{TestApp, keyed_order_id, spawn_app, spawn_app_declining};

/// The names the operating issue promises (contracts: dashboards and alerts use them).
const PROMISED: &[&str] = &[
    "minimart_orders_placed_total",
    "minimart_orders_decided_total",
    "minimart_payments_total",
    "minimart_http_request_duration_seconds",
    "minimart_order_outcome_seconds",
    "minimart_actor_mailbox_depth",
    "minimart_actor_message_duration_seconds",
    "minimart_sagas_running",
    "minimart_sagas_stalled",
    "minimart_store_batch_size",
    "minimart_store_commit_duration_seconds",
    "minimart_store_pool_connections",
    "minimart_sse_watchers",
];

/// The actors whose mailboxes are measured.
const ACTORS: [&str; 3] = ["orders", "inventory", "payment"];

/// One scrape: every sample, by its series (`name{labels}` as written).
pub struct Scrape {
    pub text: String,
    pub samples: BTreeMap<String, f64>,
}

impl Scrape {
    pub fn parse(text: String) -> Scrape {
        let samples = text
            .lines()
            .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
            .filter_map(|line| {
                let (series, value) = line.rsplit_once(' ')?;
                Some((series.to_owned(), value.parse().ok()?))
            })
            .collect();
        Scrape { text, samples }
    }

    /// The value of a series, 0 when absent (a counter not moved yet).
    pub fn value(&self, series: &str) -> f64 {
        self.samples.get(series).copied().unwrap_or(0.0)
    }

    /// The metric families exposed, with their types (from the `# TYPE` lines).
    pub fn types(&self) -> BTreeMap<String, String> {
        self.text
            .lines()
            .filter_map(|line| line.strip_prefix("# TYPE "))
            .filter_map(|rest| rest.split_once(' '))
            .map(|(name, kind)| (name.to_owned(), kind.trim().to_owned()))
            .collect()
    }
}

/// The series of `metric` whose `label` is `value`, as a scrape writes it.
fn series(metric: &str, label: &str, value: &str) -> String {
    format!("{metric}{{{label}=\"{value}\"}}")
}

/// An app that has decided one order (for tea), and that order's id.
async fn app_with_a_decided_order() -> (TestApp, String) {
    let app = spawn_app().await;
    app.stock_product("tea", 350, 5).await;
    let tea = json!({ "product_id": "tea", "quantity": 1 });
    let (order_id, _) = app.decided(&tea).await;
    (app, order_id)
}

pub async fn scrape(app: &TestApp) -> Scrape {
    let response = app.get("/metrics").await;
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    Scrape::parse(response.text().await.unwrap())
}

#[actix_web::test]
async fn every_promised_metric_is_exposed_and_routes_are_patterns() {
    let (app, order_id) = app_with_a_decided_order().await;
    assert_eq!(
        app.get("/no/such/page").await.status(),
        StatusCode::NOT_FOUND
    );

    let scrape = scrape(&app).await;
    let families = scrape.types();
    for name in PROMISED {
        assert!(
            families.contains_key(*name),
            "{name} is not exposed:\n{}",
            scrape.text
        );
    }
    let labelled = ACTORS.map(|actor| series("minimart_actor_mailbox_depth", "actor", actor));
    let pool =
        ["idle", "active"].map(|state| series("minimart_store_pool_connections", "state", state));
    for series in labelled.iter().chain(&pool) {
        assert!(scrape.samples.contains_key(series), "{series}");
    }
    let http: Vec<&String> = scrape
        .samples
        .keys()
        .filter(|series| series.starts_with("minimart_http_request_duration_seconds"))
        .collect();
    assert!(
        http.iter()
            .any(|series| series.contains("route=\"/api/orders/{order_id}\"")),
        "{http:#?}"
    );
    assert!(
        http.iter()
            .any(|series| series.contains("route=\"unmatched\""))
    );
    // Never a raw path: no order id, no unknown page.
    assert!(
        !scrape.text.contains(&order_id) && !scrape.text.contains("/no/such/page"),
        "{}",
        scrape.text
    );
    assert!(scrape.text.contains("le=\""), "histograms have buckets");
}

/// Runs the test named `name` alone in a new process of this test binary, and
/// answers whether this is that process.
fn in_own_process(name: &str) -> bool {
    const CHILD: &str = "MINIMART_TEST_OWN_PROCESS";
    if std::env::var(CHILD).as_deref() == Ok(name) {
        return true;
    }
    let output = Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, name)
        .output()
        .expect("the test binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{name} failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("1 passed"), "{name} did not run:\n{stdout}");
    false
}

#[test]
fn counters_agree_with_the_orders_placed_and_decided() {
    if !in_own_process("metrics::counters_agree_with_the_orders_placed_and_decided") {
        return;
    }
    actix_web::rt::System::new().block_on(counters_agree());
}

async fn counters_agree() {
    // Every other payment declined (the seed makes it the same every run).
    let app = spawn_app_declining(0.5).await;
    app.stock_product("kettle", 5900, 3).await;
    app.stock_product("mug", 900, 100).await;
    let before = scrape(&app).await;

    // 5 kettles for a stock of 3, so some are rejected; payments are declined
    // or not as the simulator decides.
    let mut orders = Vec::new();
    for _ in 0..5 {
        orders.push(app.order_id("kettle", 1).await);
    }
    for _ in 0..6 {
        orders.push(app.order_id("mug", 1).await);
    }
    // A replay places nothing.
    let mut keyed = Vec::new();
    for _ in 0..2 {
        // Accepted (202) both times, with an order id.
        let placed = keyed_order_id(&app.client, &app.address, ("k-1", "mug", 1), false).await;
        keyed.push(placed.expect("POST keyed order"));
    }
    assert_eq!(keyed[0], keyed[1], "the replay is the same order");
    orders.push(keyed[0].clone());
    let mut decided: BTreeMap<String, f64> = BTreeMap::new();
    for order_id in &orders {
        let order = app.until_terminal(order_id).await;
        *decided
            .entry(order["status"].as_str().unwrap().to_owned())
            .or_default() += 1.0;
    }
    // Which order gets which outcome depends on how the sagas interleave (a
    // declined kettle gives its stock back to another); the counters must
    // agree with whatever happened.
    assert_eq!(decided.values().sum::<f64>(), orders.len() as f64);
    let after = scrape(&app).await;

    let delta = |series: &str| after.value(series) - before.value(series);
    let decided_as = |status: &str| decided.get(status).copied().unwrap_or(0.0);
    assert_eq!(
        delta("minimart_orders_placed_total"),
        orders.len() as f64,
        "placed: the keyed order once, not its replay"
    );
    for status in ["CONFIRMED", "REJECTED", "PAYMENT_FAILED"] {
        for metric in [
            "minimart_orders_decided_total",
            "minimart_order_outcome_seconds_count",
        ] {
            let series = series(metric, "status", status);
            assert_eq!(delta(&series), decided_as(status), "{series}");
        }
    }
    // Once everything is decided nothing waits in a mailbox and no saga runs:
    // every count up was counted down (shortly after: a saga ends just after
    // its last move is visible).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let now = scrape(&app).await;
        let idle = (ACTORS.iter())
            .all(|actor| now.value(&series("minimart_actor_mailbox_depth", "actor", actor)) == 0.0)
            && now.value("minimart_sagas_running") == 0.0
            && now.value("minimart_sagas_stalled") == 0.0;
        if idle {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not idle:\n{}",
            now.text
        );
        actix_rt::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let paid = |status: &str| delta(&series("minimart_payments_total", "status", status));
    assert_eq!(paid("SUCCEEDED"), decided_as("CONFIRMED"));
    assert_eq!(paid("DECLINED"), decided_as("PAYMENT_FAILED"));
}

/// The dashboard shipped in `ops/`, as Grafana imports it.
const DASHBOARD: &str = include_str!("../../ops/grafana-dashboard.json");

/// Every `expr` string anywhere in a JSON value.
fn exprs(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::Object(fields) => {
            for (key, field) in fields {
                match field {
                    Value::String(expr) if key == "expr" => found.push(expr.clone()),
                    _ => exprs(field, found),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| exprs(item, found)),
        _ => {}
    }
}

/// The identifiers of `minimart_` metrics a PromQL query names.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("minimart_") {
        let preceded = rest[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        if !preceded {
            names.push(tail[..end].to_owned());
        }
        rest = &tail[end..];
    }
    names
}

#[actix_web::test]
async fn the_dashboard_asks_only_for_exposed_metrics() {
    let (app, _) = app_with_a_decided_order().await;
    let types = scrape(&app).await.types();

    let dashboard: Value = serde_json::from_str(DASHBOARD).expect("the dashboard is JSON");
    let mut queries = Vec::new();
    exprs(&dashboard, &mut queries);
    assert!(queries.len() >= 5, "{queries:?}");
    let mut asked = BTreeSet::new();
    for query in &queries {
        let names = metric_names(query);
        assert!(
            !names.is_empty(),
            "a query names no minimart metric: {query}"
        );
        for name in names {
            // A histogram's series are its name with `_bucket`, `_sum`, `_count`.
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| {
                    let base = name.strip_suffix(suffix)?;
                    (types.get(base).map(String::as_str) == Some("histogram")).then_some(base)
                })
                .unwrap_or(&name);
            assert!(
                types.contains_key(family),
                "the dashboard asks for {name}, which /metrics does not expose: {query}"
            );
            asked.insert(family.to_owned());
        }
    }
    // The panels the operating issue asks for.
    for name in [
        "minimart_orders_decided_total",
        "minimart_http_request_duration_seconds",
        "minimart_actor_mailbox_depth",
        "minimart_store_batch_size",
        "minimart_sagas_stalled",
    ] {
        assert!(asked.contains(name), "no panel shows {name}");
    }
}
