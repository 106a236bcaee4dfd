//! An order's event stream arrives through the gateway event by event, not all at
//! once when the stream ends.

use std::time::{Duration, Instant};

use reqwest::{StatusCode, header};

use support::gateway::shop;

use crate::routes::place_order;

const PAYMENT_LATENCY: Duration = Duration::from_millis(800);

#[actix_web::test]
async fn order_events_arrive_as_they_happen() {
    let Some((_app, gateway)) = shop(PAYMENT_LATENCY.as_millis() as u64).await else {
        return;
    };
    let client = &gateway.client;
    gateway.stock_product("tea", "Tea", 300, 5).await;
    let order_id = place_order(&gateway, "tea", 1).await;

    // Asking for gzip too: a compressed stream would be held back by gzip.
    let mut stream = client
        .get(gateway.url(&format!("/orders/{order_id}/events")))
        .header(header::ACCEPT_ENCODING, "gzip")
        .send()
        .await
        .expect("GET events");

    assert_eq!(stream.status(), StatusCode::OK);
    assert_eq!(stream.headers()[header::CONTENT_TYPE], "text/event-stream");
    assert!(stream.headers().get(header::CONTENT_ENCODING).is_none());
    // (when each chunk arrived, what it said); the app ends the stream at the outcome.
    let mut chunks: Vec<(Instant, String)> = Vec::new();
    let read_all = async {
        while let Some(chunk) = stream.chunk().await.expect("the stream reads") {
            chunks.push((Instant::now(), String::from_utf8_lossy(&chunk).into_owned()));
        }
    };
    actix_rt::time::timeout(Duration::from_secs(10), read_all)
        .await
        .expect("the stream ends after the outcome");

    let text: String = chunks.iter().map(|(_, chunk)| chunk.as_str()).collect();
    assert!(text.contains("event: outcome"), "{text}");
    let (first_at, first) = &chunks[0];
    assert!(
        !first.contains("event: outcome"),
        "the first steps come before the payment is decided: {first}"
    );
    let (outcome_at, _) = chunks
        .iter()
        .find(|(_, chunk)| chunk.contains("event: outcome"))
        .expect("an outcome chunk");
    let apart = outcome_at.duration_since(*first_at);
    assert!(
        apart >= PAYMENT_LATENCY * 6 / 10,
        "the first steps arrived {apart:?} before the outcome, not while the payment was \
         still running ({PAYMENT_LATENCY:?}): the gateway buffered the stream"
    );
}
