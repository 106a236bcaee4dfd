//! What the gateway answers itself: too many orders or admin sign-in attempts
//! from one address, bodies far too large, and an app that is not there. On the
//! API that is always problem+json, never nginx's own HTML page.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use reqwest::{Response, StatusCode, header};
use serde_json::{Value, json};

use support::gateway::{Gateway, shop, until_logged};
use support::{ADMIN_TOKEN, assert_problem};

/// More than the configured burst (20), sent at once.
const BURST: usize = 60;

/// POST /admin/sign-in per address: answered at once (1 + burst 5), then one
/// more every 10 s (rate=6r/m).
const SIGN_IN_AT_ONCE: usize = 6;
const SIGN_IN_EVERY: Duration = Duration::from_secs(10);

/// An order of `quantity` × `product_id`, through the gateway: its answer.
pub(crate) async fn place_order(gateway: &Gateway, product_id: &str, quantity: i64) -> Response {
    gateway
        .client
        .post(gateway.url("/api/orders"))
        .json(&json!({ "product_id": product_id, "quantity": quantity }))
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

    let answers = join_all((0..BURST).map(|_| place_order(&gateway, "tea", 1))).await;

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
    let order = place_order(&gateway, "tea", 1).await;
    assert_eq!(order.status(), StatusCode::ACCEPTED);
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
    let order = place_order(&gateway, "tea", 1).await;
    assert_gateway_problem(order, StatusCode::BAD_GATEWAY, "bad_gateway").await;

    for path in ["/", "/products/tea", "/orders", "/api/docs"] {
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

/// A client that shows redirects instead of following them, sending from `from`
/// (any 127.x.y.z reaches the gateway on 127.0.0.1).
fn admin_client(from: Ipv4Addr) -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .local_address(IpAddr::V4(from))
        .timeout(Duration::from_secs(10))
        .build()
        .expect("a client")
}

async fn sign_in(client: &reqwest::Client, gateway: &Gateway, token: &str) -> Response {
    client
        .post(gateway.url("/admin/sign-in"))
        .header(header::ORIGIN, &gateway.base)
        .form(&[("token", token)])
        .send()
        .await
        .expect("POST sign-in")
}

#[actix_web::test]
async fn guessing_the_admin_token_is_limited_but_admin_pages_are_not() {
    let Some((_app, gateway)) = shop(0).await else {
        return;
    };
    let guesser = admin_client(Ipv4Addr::LOCALHOST);

    // Only POSTs count: the sign-in URL read many times costs no attempt.
    for _ in 0..2 * SIGN_IN_AT_ONCE {
        let read = guesser
            .get(gateway.url("/admin/sign-in"))
            .send()
            .await
            .expect("GET sign-in");
        assert_ne!(read.status(), StatusCode::TOO_MANY_REQUESTS);
    }

    // Quick wrong guesses, one after the other.
    let started = Instant::now();
    let mut answers = Vec::new();
    for n in 0..2 * SIGN_IN_AT_ONCE {
        let response = sign_in(&guesser, &gateway, &format!("guess-{n}")).await;
        let id = response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        let status = response.status();
        let retry_after = response
            .headers()
            .get(header::RETRY_AFTER)
            .map(|value| value.to_str().unwrap().to_owned());
        let content_type = response.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .to_owned();
        let body = response.text().await.expect("a body");
        answers.push((id, status, retry_after, content_type, body));
    }
    // A token comes back every 10 s: on a very slow run, some more get through.
    let refilled = (started.elapsed().as_secs() / SIGN_IN_EVERY.as_secs()) as usize;

    // Which answers the app gave, and which nginx gave alone: the access log says
    // whether the request went upstream.
    let last_id = &answers.last().expect("answers").0;
    let log = until_logged(|| gateway.access_log(), &format!("request_id={last_id}")).await;
    let reached_app = |id: &str| {
        let line = log
            .lines()
            .find(|line| line.contains(&format!("request_id={id}")))
            .unwrap_or_else(|| panic!("{id} in the access log:\n{log}"));
        assert!(line.contains("\"POST /admin/sign-in "), "{line}");
        !line.contains(" upstream=- ")
    };
    let reached: Vec<bool> = answers.iter().map(|(id, ..)| reached_app(id)).collect();
    let passed = reached.iter().filter(|&&reached| reached).count();
    assert!(
        reached[..SIGN_IN_AT_ONCE].iter().all(|&reached| reached),
        "the first {SIGN_IN_AT_ONCE} attempts reach the app: {reached:?}"
    );
    assert!(
        passed <= SIGN_IN_AT_ONCE + refilled && !reached[reached.len() - 1],
        "then the gateway answers alone: {reached:?}"
    );
    for ((_, status, _, _, body), reached) in answers.iter().zip(&reached) {
        if *reached {
            // The app's own refusal (today a 401; the app may also throttle).
            assert!(
                [StatusCode::UNAUTHORIZED, StatusCode::TOO_MANY_REQUESTS].contains(status),
                "{status}: {body}"
            );
            assert!(!body.contains("Too many sign-in attempts from this address"));
            continue;
        }
        assert_eq!(*status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    }
    assert_eq!(
        answers[0].1,
        StatusCode::UNAUTHORIZED,
        "a wrong token, told by the app"
    );
    let (_, _, retry_after, content_type, body) = answers.last().expect("answers");
    assert_eq!(retry_after.as_deref(), Some("10"), "one attempt every 10 s");
    assert!(content_type.starts_with("text/html"), "{content_type}");
    assert!(body.contains("<h1>Too Many Requests</h1>"), "{body}");
    assert!(
        body.contains("Too many sign-in attempts from this address"),
        "{body}"
    );
    assert!(!body.contains("nginx"), "not nginx's own page: {body}");

    // Right after: the admin pages answer as before, and so does the right token
    // from another address.
    let dashboard = guesser
        .get(gateway.url("/admin"))
        .send()
        .await
        .expect("GET /admin");
    assert_eq!(dashboard.status(), StatusCode::OK);
    let admin = admin_client(Ipv4Addr::new(127, 0, 0, 2));
    assert_eq!(
        sign_in(&admin, &gateway, ADMIN_TOKEN).await.status(),
        StatusCode::SEE_OTHER
    );
}
