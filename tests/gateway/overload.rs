//! The app sheds orders behind the gateway (a flash sale): its own 503
//! `overloaded` problem and `Retry-After` reach the client as the app wrote
//! them, a refused POST is never sent to the app a second time, and refusals
//! do not take an instance out of the pool, where they would push every order
//! onto the others and end in the gateway's own 502.

use reqwest::StatusCode;
use serde_json::Value;

use crate::limits::place_order;
use support::free_port;
use support::gateway::{App, Gateway, conf_for_pool, nginx, until_logged};

#[actix_web::test]
async fn the_apps_overloaded_refusal_passes_through_once_and_keeps_the_instance_in_the_pool() {
    let Some(nginx) = nginx() else {
        return;
    };
    let port = free_port();
    // One order in flight at most, and it stays in flight while its payment runs.
    let app = App::start_on(
        Some(port),
        None,
        &[
            ("MINIMART_MAX_IN_FLIGHT", "1"),
            ("MINIMART_PAYMENT_LATENCY_MS", "5000"),
        ],
    )
    .await;
    // The instance listed twice: a pool of two, as in production.
    let conf = conf_for_pool(port, &[&app.address, &app.address]);
    let gateway = Gateway::start_with(&nginx, port, &conf).await;
    gateway.stock_product("tea", "Tea", 300, 100).await;
    let first = place_order(&gateway, "tea", 1).await;
    assert_eq!(first.status(), StatusCode::ACCEPTED);

    const REFUSED: usize = 4;
    for n in 0..REFUSED {
        let refused = place_order(&gateway, "tea", 1).await;
        let header = |name: &str| {
            refused
                .headers()
                .get(name)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned)
        };
        assert_eq!(
            refused.status(),
            StatusCode::SERVICE_UNAVAILABLE,
            "refusal {n}: the app's answer, not the gateway's 502"
        );
        assert_eq!(header("retry-after").as_deref(), Some("1"), "refusal {n}");
        assert_eq!(
            header("content-type").as_deref(),
            Some("application/problem+json"),
            "refusal {n}"
        );
        assert!(header("x-request-id").is_some(), "refusal {n}");
        let problem: Value = refused.json().await.expect("a problem, not an HTML page");
        // The gateway's own 503 would say `unavailable`.
        assert_eq!(problem["code"], "overloaded", "refusal {n}: {problem}");
    }
    let read = gateway
        .client
        .get(gateway.url("/api/products/tea"))
        .send()
        .await
        .expect("GET");
    assert_eq!(read.status(), StatusCode::OK, "reads are served");

    let log = until_logged(|| gateway.access_log(), "upstream_status=503").await;
    let refused_posts: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("\"POST /api/orders ") && line.contains(" 503 "))
        .collect();
    assert_eq!(refused_posts.len(), REFUSED, "{log}");
    for line in refused_posts {
        assert!(
            line.contains("upstream_status=503 "),
            "sent to the app once, never again: {line}"
        );
    }
}
