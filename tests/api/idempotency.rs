use futures_util::future::join_all;
use reqwest::StatusCode;
use serde_json::{Value, json};

use support::{accepted_order_id, assert_problem, on_each_backend, spawn_app};

async fn order_with_key(app: &support::TestApp, key: &str, quantity: i64) -> reqwest::Response {
    app.client
        .post(app.url("/api/orders"))
        .header("Idempotency-Key", key)
        .json(&json!({ "product_id": "beans", "quantity": quantity }))
        .send()
        .await
        .expect("POST order")
}

/// An order of `quantity` beans under `key`, which must be accepted: its id.
async fn accepted_with_key(app: &support::TestApp, key: &str, quantity: i64) -> String {
    let response = order_with_key(app, key, quantity).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED, "{key}");
    accepted_order_id(response).await.expect("an id")
}

#[on_each_backend]
async fn a_retried_order_is_the_same_order_and_buys_once() {
    let app = spawn_app().await;
    app.stock_product("beans", 2490, 10).await;

    let order_id = accepted_with_key(&app, "checkout-41", 2).await;
    app.until_terminal(&order_id).await;

    let retry = order_with_key(&app, "checkout-41", 2).await;
    assert_eq!(retry.status(), StatusCode::ACCEPTED);
    assert_eq!(
        retry
            .headers()
            .get("idempotent-replayed")
            .and_then(|v| v.to_str().ok()),
        Some("true")
    );
    let retry: Value = retry.json().await.expect("JSON");

    assert_eq!(retry["order_id"], order_id.as_str());
    assert_eq!(retry["status"], "CONFIRMED");
    assert_eq!(app.stock_of("beans").await, 8, "bought once");
    assert_eq!(app.payments_of(&order_id).await.len(), 1, "charged once");
}

#[on_each_backend]
async fn concurrent_retries_with_one_key_create_one_order() {
    let app = spawn_app().await;
    app.stock_product("beans", 2490, 100).await;

    let mut ids = join_all((0..25).map(|_| accepted_with_key(&app, "double-click", 3))).await;

    ids.dedup();
    assert_eq!(ids.len(), 1, "every retry got the same order: {ids:?}");
    assert_eq!(app.until_terminal(&ids[0]).await["status"], "CONFIRMED");
    assert_eq!(app.stock_of("beans").await, 97);
    assert_eq!(app.payments_of(&ids[0]).await.len(), 1);
}

#[on_each_backend]
async fn a_key_reused_for_a_different_order_is_refused() {
    let app = spawn_app().await;
    app.stock_product("beans", 2490, 10).await;
    let first = accepted_with_key(&app, "cart-7", 1).await;

    let different = order_with_key(&app, "cart-7", 4).await;

    assert_problem(
        different,
        StatusCode::UNPROCESSABLE_ENTITY,
        "same key, other body",
    )
    .await;
    app.until_terminal(&first).await;
    assert_eq!(
        app.stock_of("beans").await,
        9,
        "only the first order bought"
    );
}
