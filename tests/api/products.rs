use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::assert_not_found;
use support::{ADMIN_TOKEN, assert_problem, on_each_backend, spawn_app};

#[on_each_backend]
async fn an_admin_creates_and_replaces_a_product() {
    let app = spawn_app().await;

    let created = app.put_product("green-tea", "Green tea", 350, 10).await;
    assert_eq!(created.status(), StatusCode::OK);
    let body: Value = created.json().await.expect("JSON");
    assert_eq!(
        body,
        json!({ "product_id": "green-tea", "product_name": "Green tea", "price": 350, "stock": 10 })
    );

    let replaced = app
        .put_product("green-tea", "Green tea, loose", 420, 7)
        .await;
    assert_eq!(replaced.status(), StatusCode::OK);

    let product = app.get_json("/api/products/green-tea").await;
    assert_eq!(
        product,
        json!({ "product_id": "green-tea", "product_name": "Green tea, loose", "price": 420, "stock": 7 })
    );
}

#[on_each_backend]
async fn product_writes_need_the_admin_token() {
    let app = spawn_app().await;
    app.stock_product("mug", 1200, 5).await;
    let body = json!({ "product_name": "Stolen", "price": 1, "stock": 999 });

    let write = || app.client.post(app.url("/api/products/mug")).json(&body);
    let wrong = format!("{ADMIN_TOKEN}x");

    for (request, who) in [
        (write(), "no token"),
        (write().bearer_auth(&wrong), "wrong token"),
        (write().basic_auth("admin", Some(ADMIN_TOKEN)), "basic auth"),
    ] {
        let response = request.send().await.expect("POST");
        let www = response.headers().get("www-authenticate").cloned();
        assert_problem(response, StatusCode::UNAUTHORIZED, who).await;
        assert_eq!(www.as_ref().and_then(|v| v.to_str().ok()), Some("Bearer"));
    }
    let product = app.get_json("/api/products/mug").await;
    assert_eq!(product["stock"], 5);
    assert_eq!(product["price"], 1200);
}

#[on_each_backend]
async fn the_catalog_is_listed_page_by_page() {
    let app = spawn_app().await;
    for id in ["p-5", "p-1", "p-3", "p-2", "p-4"] {
        app.stock_product(id, 100, 1).await;
    }

    let mut seen = Vec::new();
    let mut path = "/api/products?limit=2".to_owned();
    loop {
        let page = app.get_json(&path).await;
        let products = page["products"].as_array().expect("a list");
        assert!(products.len() <= 2);
        seen.extend(
            products
                .iter()
                .map(|p| p["product_id"].as_str().unwrap_or_default().to_owned()),
        );
        match page["next_after"].as_str() {
            Some(after) => path = format!("/api/products?limit=2&after={after}"),
            None => break,
        }
    }

    assert_eq!(seen, ["p-1", "p-2", "p-3", "p-4", "p-5"]);
}

#[on_each_backend]
async fn an_unknown_product_is_not_found() {
    let app = spawn_app().await;

    assert_not_found(&app, "/api/products/nope", "unknown product").await;
}

/// A name that shows nothing, or that turns the text around it, would let a
/// listing pass for another (an empty row, "Mug" shown as something else): the
/// API refuses it and keeps what it had.
#[on_each_backend]
async fn names_that_hide_themselves_are_refused_and_nothing_is_stored() {
    let app = spawn_app().await;
    app.stock_product("mug", 1200, 5).await;
    let before = app.get_json("/api/products/mug").await;

    for (name, why) in [
        ("\u{200B}\u{200B}", "invisible formatting"),
        ("\u{3164}", "visible character"),
        ("\u{2800}", "visible character"),
        ("\u{301}\u{301}", "visible character"),
        ("Mug\u{202E}gpj.exe", "direction"),
        ("\u{2066}Mug\u{2069}", "direction"),
        ("Mug\u{200F}", "direction"),
        ("Mu\u{FEFF}g", "invisible formatting"),
    ] {
        for id in ["mug", "ghost"] {
            let response = app.put_product(id, name, 100, 1).await;
            let problem = assert_problem(
                response,
                StatusCode::UNPROCESSABLE_ENTITY,
                &format!("{id} named {name:?}"),
            )
            .await;
            let detail = problem["detail"].as_str().unwrap_or_default();
            assert!(
                detail.contains("product_name") && detail.contains(why),
                "{name:?}: the problem says what is wrong: {detail}"
            );
        }
    }

    assert_eq!(app.get_json("/api/products/mug").await, before);
    assert_not_found(&app, "/api/products/ghost", "no product was created").await;
    let catalog = app.get_json("/api/products").await;
    assert_eq!(catalog["products"], json!([before]));
}
