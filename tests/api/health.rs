use reqwest::StatusCode;

use crate::assert_not_found;
use support::{assert_problem, on_each_backend, spawn_app};

#[on_each_backend]
async fn health_is_ok_once_the_app_serves() {
    let app = spawn_app().await;

    let response = app.get("/healthz").await;

    assert_eq!(response.status(), StatusCode::OK);
}

#[on_each_backend]
async fn ready_once_the_database_answers() {
    let app = spawn_app().await;

    let response = app.get("/readyz").await;

    assert_eq!(response.status(), StatusCode::OK);
    let body: serde_json::Value = response.json().await.expect("JSON");
    assert_eq!(body["status"], "ready");
}

#[on_each_backend]
async fn unknown_paths_and_methods_are_refused_as_problems() {
    let app = spawn_app().await;

    assert_not_found(&app, "/api/nothing-here", "unknown path").await;
    let delete = app
        .client
        .delete(app.url("/api/orders"))
        .send()
        .await
        .expect("DELETE");
    assert_problem(delete, StatusCode::METHOD_NOT_ALLOWED, "DELETE /api/orders").await;
}

#[on_each_backend]
async fn a_fresh_install_sells_a_demo_catalog() {
    let app = support::spawn_app_with(|config| config.demo_catalog = true).await;

    let page = app.get_json("/api/products").await;

    let products = page["products"].as_array().expect("a list");
    assert!(!products.is_empty(), "demo products: {page}");
    assert!(
        products
            .iter()
            .all(|p| p["price"].as_i64().is_some_and(|c| c > 0))
    );
}
