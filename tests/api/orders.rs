use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::assert_not_found;
use support::{TestApp, assert_problem, on_each_backend, spawn_app, spawn_app_with};

/// An order of `quantity` × `product_id`, once decided, which must be `status`.
pub(crate) async fn ended_as(
    app: &TestApp,
    product_id: &str,
    quantity: i64,
    status: &str,
) -> (String, Value) {
    let body = json!({ "product_id": product_id, "quantity": quantity });
    let (order_id, order) = app.decided(&body).await;
    assert_eq!(order["status"], status, "{order}");
    (order_id, order)
}

/// The order says why it ended as it did, in words that mention `why`.
fn assert_reason(order: &Value, why: &str) {
    let reason = order["reason"].as_str().unwrap_or_default();
    assert!(reason.contains(why), "{order}");
}

#[on_each_backend]
async fn a_shopper_buys_and_the_order_is_confirmed() {
    let app = spawn_app().await;
    app.stock_product("kettle", 5900, 3).await;

    let response = app.place_order("kettle", 2).await;

    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let location = response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .expect("a Location header")
        .to_owned();
    let accepted: Value = response.json().await.expect("JSON");
    assert_eq!(accepted["status"], "PENDING");
    let order_id = accepted["order_id"].as_str().expect("an order id");
    assert_eq!(location, format!("/api/orders/{order_id}"));

    let order = app.until_terminal(order_id).await;
    assert_eq!(order["status"], "CONFIRMED");
    assert_eq!(order["product_id"], "kettle");
    assert_eq!(order["quantity"], 2);
    assert_eq!(order["total_amount"], 11800);
    assert!(order["reason"].is_null());
    for field in ["created_at", "updated_at"] {
        assert!(order[field].is_string(), "{field} in {order}");
    }

    assert_eq!(app.stock_of("kettle").await, 1);
    let payments = app.payments_of(order_id).await;
    assert_eq!(payments.len(), 1);
    assert_eq!(payments[0]["status"], "SUCCEEDED");
    assert_eq!(payments[0]["total_amount"], 11800);
}

#[on_each_backend]
async fn an_order_for_more_than_the_stock_is_rejected_and_takes_nothing() {
    let app = spawn_app().await;
    app.stock_product("grinder", 8900, 2).await;

    let (order_id, order) = ended_as(&app, "grinder", 3, "REJECTED").await;

    assert_reason(&order, "stock");
    assert_eq!(app.stock_of("grinder").await, 2);
    assert!(
        app.payments_of(&order_id).await.is_empty(),
        "nothing is charged"
    );
}

#[on_each_backend]
async fn a_declined_payment_fails_the_order_and_gives_the_stock_back() {
    let app = spawn_app_with(|config| config.payment_failure_rate = 1.0).await;
    app.stock_product("notebook", 1200, 4).await;

    let (order_id, order) = ended_as(&app, "notebook", 3, "PAYMENT_FAILED").await;

    assert_reason(&order, "declined");
    assert_eq!(app.stock_of("notebook").await, 4);
    let payments = app.payments_of(&order_id).await;
    assert_eq!(payments.len(), 1);
    assert_eq!(payments[0]["status"], "DECLINED");
}

#[on_each_backend]
async fn the_last_units_go_to_one_order_and_the_next_is_rejected() {
    let app = spawn_app().await;
    app.stock_product("last-one", 500, 1).await;

    ended_as(&app, "last-one", 1, "CONFIRMED").await;

    ended_as(&app, "last-one", 1, "REJECTED").await;
    assert_eq!(app.stock_of("last-one").await, 0);
}

#[on_each_backend]
async fn ordering_an_unknown_product_creates_no_order() {
    let app = spawn_app().await;

    let response = app.place_order("ghost", 1).await;

    assert!(response.headers().get("location").is_none());
    assert_problem(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unknown product",
    )
    .await;
}

#[on_each_backend]
async fn an_unknown_order_is_not_found() {
    let app = spawn_app().await;

    let path = format!("/api/orders/{}", uuid::Uuid::now_v7());
    assert_not_found(&app, &path, "unknown order").await;
}
