//! What the gateway answers itself: too many orders from one address, bodies far
//! too large, and an app that is not there. On the API that is always
//! problem+json, never nginx's own HTML page.

use std::time::Duration;

use futures_util::future::join_all;
use reqwest::{Response, StatusCode, header};
use serde_json::{Value, json};

use crate::harness::{Gateway, shop};
use crate::helpers::assert_problem;

/// More than the configured burst (20), sent at once.
const BURST: usize = 60;

async fn place_order(gateway: &Gateway) -> Response {
    gateway
        .client
        .post(gateway.url("/api/orders"))
        .json(&json!({ "product_id": "tea", "quantity": 1 }))
        .send()
        .await
        .expect("POST order")
}

/// The problem, with the headers every answer of the gateway's own carries.
async fn assert_gateway_problem(response: Response, status: StatusCode, code: &str) -> Value {
    assert!(
        response.headers().contains_key("x-request-id"),
        "{status}: a request id"
    );
    let problem = assert_problem(response, status, code).await;
    assert_eq!(problem["code"], code, "{problem}");
    assert_eq!(problem["title"], status.canonical_reason().unwrap());
    problem
}

#[actix_web::test]
async fn a_burst_of_orders_is_limited_but_reading_is_not() {
    let Some((_app, gateway)) = shop(0).await else {
        return;
    };
    gateway.stock_product("tea", "Tea", 300, 1000).await;

    let answers = join_all((0..BURST).map(|_| place_order(&gateway))).await;

    let (accepted, limited): (Vec<Response>, Vec<Response>) = answers
        .into_iter()
        .partition(|r| r.status() == StatusCode::ACCEPTED);
    assert!(
        limited
            .iter()
            .all(|r| r.status() == StatusCode::TOO_MANY_REQUESTS),
        "only 202 or 429"
    );
    assert!(
        accepted.len() >= 20,
        "a burst of 20 is answered at once: {}",
        accepted.len()
    );
    let limited = limited.into_iter().next().expect("at least one 429");
    let retry_after: u64 = limited.headers()[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .expect("Retry-After in seconds");
    assert!(retry_after >= 1);
    assert_gateway_problem(limited, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;

    // Reading orders and the catalog is never limited, even right after the burst.
    let order_id = accepted[0]
        .headers()
        .get(header::LOCATION)
        .and_then(|location| location.to_str().ok())
        .expect("a Location")
        .to_owned();
    let reads = join_all((0..BURST).map(|n| {
        let path = if n % 2 == 0 {
            order_id.clone()
        } else {
            "/api/products/tea".to_owned()
        };
        gateway.client.get(gateway.url(&path)).send()
    }))
    .await;
    for read in reads {
        assert_eq!(read.expect("GET").status(), StatusCode::OK);
    }

    // After the wait the gateway asked for, orders are accepted again.
    actix_rt::time::sleep(Duration::from_secs(retry_after)).await;
    assert_eq!(place_order(&gateway).await.status(), StatusCode::ACCEPTED);
}

#[actix_web::test]
async fn a_body_far_beyond_the_apps_limit_stops_at_the_gateway() {
    let Some((_app, gateway)) = shop(0).await else {
        return;
    };
    let post = |bytes: usize| {
        let body = format!(r#"{{"product_id": "{}"}}"#, "x".repeat(bytes));
        gateway
            .client
            .post(gateway.url("/api/orders"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
    };

    // Just over the app's 16 KiB: the app's own, more precise refusal.
    let app_refusal = post(20 * 1024).await.expect("POST 20 KiB");
    let problem = assert_problem(app_refusal, StatusCode::PAYLOAD_TOO_LARGE, "20 KiB").await;
    assert!(problem["detail"].as_str().unwrap().contains("16384"));

    let gateway_refusal = post(64 * 1024).await.expect("POST 64 KiB");
    assert_gateway_problem(
        gateway_refusal,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    )
    .await;
}

#[actix_web::test]
async fn with_the_app_down_the_api_answers_problems_and_pages_a_page() {
    let Some((mut app, gateway)) = shop(0).await else {
        return;
    };
    assert_eq!(
        gateway
            .client
            .get(gateway.url("/api/products"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK,
        "up first, so that the gateway holds a kept-alive connection to it"
    );

    app.kill();

    for path in [
        "/api/products",
        "/api/orders/x",
        "/api/payments",
        "/healthz",
    ] {
        let response = gateway.client.get(gateway.url(path)).send().await.unwrap();
        assert!(
            response.headers().contains_key(header::RETRY_AFTER),
            "{path}"
        );
        assert_gateway_problem(response, StatusCode::BAD_GATEWAY, "bad_gateway").await;
    }
    let order = place_order(&gateway).await;
    assert_gateway_problem(order, StatusCode::BAD_GATEWAY, "bad_gateway").await;

    for path in ["/", "/products/tea", "/orders"] {
        let page = gateway.client.get(gateway.url(path)).send().await.unwrap();
        assert_eq!(page.status(), StatusCode::BAD_GATEWAY, "{path}");
        let content_type = page.headers()[header::CONTENT_TYPE].to_str().unwrap();
        assert!(
            content_type.starts_with("text/html"),
            "{path}: {content_type}"
        );
        let body = page.text().await.unwrap();
        assert!(body.contains("<h1>Bad Gateway</h1>"), "{body}");
        assert!(!body.contains("nginx"), "not nginx's own page: {body}");
    }
    assert!(
        gateway.error_log().contains("Connection refused"),
        "{}",
        gateway.error_log()
    );
}
