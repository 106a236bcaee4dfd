use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::assert_not_found;
use crate::orders::ended_as;
use support::{TestApp, assert_problem, on_each_backend, spawn_app, spawn_app_with};

async fn charge(app: &TestApp, order_id: &str, total_amount: i64) -> reqwest::Response {
    app.client
        .post(app.url("/api/payments"))
        .json(&json!({ "order_id": order_id, "total_amount": total_amount }))
        .send()
        .await
        .expect("POST payment")
}

#[on_each_backend]
async fn charging_a_paid_order_returns_its_payment_instead_of_charging_again() {
    let app = spawn_app().await;
    app.stock_product("filters", 690, 10).await;
    let (order_id, _) = ended_as(&app, "filters", 2, "CONFIRMED").await;
    let original = app.payments_of(&order_id).await.remove(0);

    let response = charge(&app, &order_id, 1380).await;

    assert_eq!(response.status(), StatusCode::OK);
    let payment: Value = response.json().await.expect("JSON");
    assert_eq!(payment["payment_id"], original["payment_id"]);
    assert_eq!(payment["status"], "SUCCEEDED");
    assert_eq!(app.payments_of(&order_id).await.len(), 1);

    let by_id = app
        .get_json(&format!(
            "/api/payments/{}",
            payment["payment_id"].as_str().expect("an id")
        ))
        .await;
    assert_eq!(by_id["order_id"], order_id.as_str());
    assert_eq!(by_id["total_amount"], 1380);
}

#[on_each_backend]
async fn a_charge_must_be_for_the_orders_total() {
    let app = spawn_app().await;
    app.stock_product("filters", 690, 10).await;
    let (order_id, _) = ended_as(&app, "filters", 1, "CONFIRMED").await;

    for wrong in [689, 691, 0, -690] {
        let response = charge(&app, &order_id, wrong).await;
        let problem = assert_problem(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            &format!("amount {wrong}"),
        )
        .await;
        // The order's total in the unit the request uses, not "$6.90 cents".
        let detail = problem["detail"].as_str().unwrap_or_default();
        assert!(
            detail.contains("of 690 cents") && !detail.contains('$'),
            "amount {wrong}: {detail}"
        );
    }
    assert_eq!(app.payments_of(&order_id).await.len(), 1);
}

#[on_each_backend]
async fn charging_an_unknown_order_is_not_found() {
    let app = spawn_app().await;

    let response = charge(&app, &uuid::Uuid::now_v7().to_string(), 100).await;

    assert_problem(response, StatusCode::NOT_FOUND, "unknown order").await;
    let unknown_payment = format!("/api/payments/{}", uuid::Uuid::now_v7());
    assert_not_found(&app, &unknown_payment, "unknown payment").await;
}

#[on_each_backend]
async fn a_rejected_order_cannot_be_charged() {
    let app = spawn_app().await;
    app.stock_product("rare", 1000, 1).await;
    let (order_id, _) = ended_as(&app, "rare", 5, "REJECTED").await;

    let response = charge(&app, &order_id, 5000).await;

    assert_problem(response, StatusCode::CONFLICT, "rejected order").await;
    assert!(app.payments_of(&order_id).await.is_empty());
}

/// A client pays through the API while the saga's own charge is under way: both
/// get the same payment, and the order is charged once.
#[on_each_backend]
async fn a_client_charge_racing_the_sagas_charge_is_one_payment() {
    let app = spawn_app_with(|config| config.payment_latency_ms = 150).await;
    app.stock_product("kettle", 5900, 5).await;
    let order_id = app.order_id("kettle", 1).await;

    // Until the stock is reserved the order is not payable yet (409); then the
    // client's charge joins the saga's.
    let deadline = Instant::now() + Duration::from_secs(5);
    let payment: Value = loop {
        let response = charge(&app, &order_id, 5900).await;
        if response.status() == StatusCode::OK {
            break response.json().await.expect("JSON");
        }
        assert_eq!(response.status(), StatusCode::CONFLICT);
        assert!(Instant::now() < deadline, "the order never became payable");
        actix_rt::time::sleep(Duration::from_millis(5)).await;
    };

    let order = app.until_terminal(&order_id).await;
    assert_eq!(order["status"], "CONFIRMED");
    let payments = app.payments_of(&order_id).await;
    assert_eq!(payments.len(), 1, "{payments:?}");
    assert_eq!(payments[0]["payment_id"], payment["payment_id"]);
    assert_eq!(app.stock_of("kettle").await, 4);
}
