//! The configuration as checked in, and every route through it.

use std::path::Path;

use reqwest::{Response, StatusCode, header};
use serde_json::Value;

use support::gateway::{GATEWAY_CONF, Gateway, nginx, nginx_test, prefix_with, shop, until_logged};
use support::{ADMIN_TOKEN, accepted_order_id, wait_terminal};

#[test]
fn nginx_accepts_the_checked_in_config() {
    let Some(nginx) = nginx() else { return };
    // The README's command needs .gateway/ to exist in a fresh checkout.
    let checked_in = Path::new(env!("CARGO_MANIFEST_DIR")).join(".gateway/.gitignore");
    assert!(
        checked_in.is_file(),
        "{} is checked in",
        checked_in.display()
    );
    let prefix = prefix_with(GATEWAY_CONF);

    let output = nginx_test(&nginx, prefix.path());

    let said = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "nginx -t: {said}");
    assert!(said.contains("test is successful"), "{said}");
    assert!(!said.contains("[warn]"), "no warnings: {said}");
}

async fn get(gateway: &Gateway, path: &str) -> Response {
    gateway
        .client
        .get(gateway.url(path))
        .send()
        .await
        .unwrap_or_else(|error| panic!("GET {path}: {error}"))
}

async fn ok_json(gateway: &Gateway, path: &str) -> Value {
    let response = get(gateway, path).await;
    assert_eq!(response.status(), StatusCode::OK, "GET {path}");
    response.json().await.expect("a JSON body")
}

async fn ok_page(gateway: &Gateway, path: &str) -> String {
    let response = get(gateway, path).await;
    assert_eq!(response.status(), StatusCode::OK, "GET {path}");
    let content_type = response.headers()[header::CONTENT_TYPE].to_str().unwrap();
    assert!(
        content_type.starts_with("text/html"),
        "{path}: {content_type}"
    );
    response.text().await.expect("a page")
}

/// Places an order through the gateway, which must accept it: its id.
pub async fn place_order(gateway: &Gateway, product_id: &str, quantity: i64) -> String {
    let placed = crate::limits::place_order(gateway, product_id, quantity).await;
    assert_eq!(placed.status(), StatusCode::ACCEPTED);
    accepted_order_id(placed).await.expect("an order id")
}

/// GETs `path` asking for gzip: it answers 200, gzipped (once).
async fn gzipped(gateway: &Gateway, path: &str) -> Response {
    let response = (gateway.client.get(gateway.url(path)))
        .header(header::ACCEPT_ENCODING, "gzip")
        .send()
        .await
        .unwrap_or_else(|error| panic!("GET {path}: {error}"));
    assert_eq!(response.status(), StatusCode::OK, "GET {path}");
    assert_eq!(one_header(&response, "content-encoding"), "gzip", "{path}");
    response
}

/// The first quoted URL in `page` that starts with `prefix` and ends with `suffix`.
fn linked<'a>(page: &'a str, prefix: &str, suffix: &str) -> &'a str {
    let mut parts = page.split('"');
    let link = parts.find(|part| part.starts_with(prefix) && part.ends_with(suffix));
    link.unwrap_or_else(|| panic!("a link to {prefix}…{suffix}"))
}

fn one_header(response: &Response, name: &str) -> String {
    let values: Vec<_> = response.headers().get_all(name).iter().collect();
    assert_eq!(values.len(), 1, "exactly one {name}: {values:?}");
    values[0].to_str().expect("ASCII").to_owned()
}

#[actix_web::test]
async fn every_route_answers_through_the_gateway() {
    let Some((app, gateway)) = shop(0).await else {
        return;
    };
    let client = &gateway.client;

    gateway
        .stock_product("green-tea", "Green tea", 350, 10)
        .await;
    let products = ok_json(&gateway, "/api/products").await;
    assert_eq!(products["products"][0]["product_id"], "green-tea");
    assert_eq!(
        ok_json(&gateway, "/api/products/green-tea").await["price"],
        350
    );

    let order_id = place_order(&gateway, "green-tea", 2).await;
    let order = wait_terminal(client, &gateway.base, &order_id).await;
    assert_eq!(order["status"], "CONFIRMED");
    let payments = ok_json(&gateway, &format!("/api/payments?order_id={order_id}")).await;
    let payment_id = payments["payments"][0]["payment_id"]
        .as_str()
        .expect("a payment");
    assert_eq!(
        ok_json(&gateway, &format!("/api/payments/{payment_id}")).await["total_amount"],
        700
    );

    let catalog = ok_page(&gateway, "/").await;
    assert!(catalog.contains("Green tea"), "{catalog}");
    assert!(
        ok_page(&gateway, "/products/green-tea")
            .await
            .contains("Green tea")
    );
    assert!(
        ok_page(&gateway, &format!("/orders/{order_id}"))
            .await
            .contains("Order confirmed")
    );
    ok_page(&gateway, "/orders").await;
    ok_page(&gateway, "/admin").await;
    ok_page(&gateway, "/fragments/availability?ids=green-tea").await;
    let docs = ok_page(&gateway, "/api/docs").await;
    assert_eq!(ok_json(&gateway, "/healthz").await["status"], "ok");
    assert_eq!(ok_json(&gateway, "/readyz").await["status"], "ready");
    // Metrics are scraped from each instance, never served to the public.
    assert_eq!(
        get(&gateway, "/metrics").await.status(),
        StatusCode::NOT_FOUND
    );
    let direct = client
        .get(format!("http://{}/metrics", app.address))
        .send()
        .await
        .expect("GET /metrics from the app");
    assert_eq!(direct.status(), StatusCode::OK);

    // The app's asset URLs carry their content hash; its year-long cache header
    // arrives as it was sent, once.
    let asset = gzipped(&gateway, linked(&catalog, "/static/", ".css")).await;
    assert_eq!(
        one_header(&asset, "cache-control"),
        "public, max-age=31536000, immutable"
    );

    // The API's documentation: Swagger UI, from the app through the gateway.
    let script = gzipped(&gateway, linked(&docs, "/static/swagger-ui.", ".js")).await;
    assert_eq!(
        one_header(&script, "content-type"),
        "text/javascript; charset=utf-8"
    );
}

#[actix_web::test]
async fn headers_are_the_apps_plus_the_gateways_without_doubles() {
    let Some((_app, gateway)) = shop(0).await else {
        return;
    };

    let page = gzipped(&gateway, "/").await;

    for name in [
        "content-security-policy",
        "x-content-type-options",
        "x-frame-options",
        "referrer-policy",
        "permissions-policy",
        "x-request-id",
    ] {
        one_header(&page, name);
    }
    assert_eq!(
        one_header(&page, "server"),
        "nginx",
        "no version given away"
    );
}

#[actix_web::test]
async fn admin_forms_pass_the_origin_check_through_the_gateway() {
    let Some((_app, gateway)) = shop(0).await else {
        return;
    };
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    // A browser sends the gateway's own origin, port included.
    let signed_in = client
        .post(gateway.url("/admin/sign-in"))
        .header(header::ORIGIN, &gateway.base)
        .form(&[("token", ADMIN_TOKEN)])
        .send()
        .await
        .expect("POST sign-in");

    assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);
}

#[actix_web::test]
async fn one_request_id_in_the_answer_the_access_log_and_the_app_log() {
    let Some((app, gateway)) = shop(0).await else {
        return;
    };

    let response = gateway
        .client
        .get(gateway.url("/api/products"))
        .header("X-Request-Id", "made-up-by-the-client")
        .send()
        .await
        .expect("GET products");

    assert_eq!(response.status(), StatusCode::OK);
    let id = one_header(&response, "x-request-id");
    assert!(
        id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "nginx's own $request_id, not the client's: {id:?}"
    );
    let logged = format!("request_id={id}");
    let access_log = until_logged(|| gateway.access_log(), &logged).await;
    assert!(
        access_log
            .lines()
            .any(|line| line.contains("GET /api/products") && line.contains(&logged)),
        "access log:\n{access_log}"
    );
    let app_log = until_logged(|| app.log(), &logged).await;
    assert!(
        app_log
            .lines()
            .any(|line| line.contains("answered") && line.contains(&logged)),
        "app log:\n{app_log}"
    );
}
