//! Small protocol manners: HEAD wherever GET is, an `Allow` header on every 405,
//! and refusals in the language of the route (HTML for people, problem+json for
//! programs).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::redirect::Policy;
use reqwest::{Client, Method, Response, StatusCode};

use support::{TestApp, assert_problem, header, spawn_app, spawn_app_with};

/// A client that shows redirects instead of following them.
fn client() -> Client {
    Client::builder()
        .redirect(Policy::none())
        .build()
        .expect("a client")
}

/// The headers of an answer, without those that differ from one answer to the next.
fn stable_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    let mut stable: Vec<(String, String)> = headers
        .iter()
        .filter(|(name, _)| !matches!(name.as_str(), "date" | "x-request-id" | "set-cookie"))
        .map(|(name, value)| {
            let value = value.to_str().expect("an ASCII header").to_owned();
            (name.as_str().to_owned(), value)
        })
        .collect();
    stable.sort();
    stable
}

/// A conversation on one connection: each request is sent once the head of the
/// answer before it has arrived, as a keep-alive client does; the last one asks
/// the server to close. Answers the heads of the answers and any bytes after the
/// last head.
async fn raw_exchange(app: &TestApp, requests: Vec<String>) -> (Vec<String>, Vec<u8>) {
    let address = app.address.trim_start_matches("http://").to_owned();
    // Blocking I/O on a thread of its own: the app's actors run on this one.
    actix_web::rt::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(address).expect("a connection");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("a read timeout");
        let mut received = Vec::new();
        let mut heads = Vec::new();
        for request in &requests {
            stream.write_all(request.as_bytes()).expect("the request");
            let end = loop {
                if let Some(at) = received.windows(4).position(|w| w == b"\r\n\r\n") {
                    break at + 4;
                }
                let mut chunk = [0; 4096];
                match stream.read(&mut chunk) {
                    Ok(0) => panic!("closed early: {:?}", String::from_utf8_lossy(&received)),
                    Ok(n) => received.extend_from_slice(&chunk[..n]),
                    Err(error) => panic!(
                        "no answer to {request:?} ({error}); so far: {:?}",
                        String::from_utf8_lossy(&received)
                    ),
                }
            };
            let rest = received.split_off(end);
            heads.push(String::from_utf8_lossy(&received).into_owned());
            received = rest;
        }
        if let Err(error) = stream.read_to_end(&mut received) {
            panic!(
                "the server did not finish ({error}); after the last head: {:?}",
                String::from_utf8_lossy(&received)
            );
        }
        (heads, received)
    })
    .await
    .expect("the exchange")
}

async fn send(client: &Client, app: &TestApp, method: Method, path: &str) -> Response {
    client
        .request(method.clone(), app.url(path))
        .send()
        .await
        .unwrap_or_else(|error| panic!("{method} {path}: {error}"))
}

#[actix_web::test]
async fn head_answers_every_get_route_as_get_does_without_a_body() {
    // Payments take a minute: the order stays pending, so its event stream stays open.
    let app = spawn_app_with(|config| config.payment_latency_ms = 60_000).await;
    app.stock_product("tea", 450, 10).await;
    let order = app.order_id("tea", 1).await;
    let stylesheet = minimart::assets::url(minimart::assets::STYLESHEET);
    let missing_payment = uuid::Uuid::now_v7();
    let paths = [
        "/healthz".to_owned(),
        "/api/products".to_owned(),
        "/api/products/tea".to_owned(),
        format!("/api/orders/{order}"),
        format!("/api/payments?order_id={order}"),
        format!("/api/payments/{missing_payment}"),
        "/".to_owned(),
        "/products/tea".to_owned(),
        "/orders".to_owned(),
        format!("/orders/{order}"),
        format!("/orders/{order}/events"),
        "/fragments/availability?ids=tea".to_owned(),
        "/admin".to_owned(),
        "/admin/products/tea".to_owned(),
        "/readyz".to_owned(),
        "/admin/orders".to_owned(),
        format!("/admin/orders/{order}"),
        stylesheet.to_owned(),
    ];
    let client = client();

    for path in &paths {
        let get = send(&client, &app, Method::GET, path).await;
        let head = send(&client, &app, Method::HEAD, path).await;

        assert_eq!(head.status(), get.status(), "HEAD {path}");
        assert_eq!(
            stable_headers(head.headers()),
            stable_headers(get.headers()),
            "HEAD {path}"
        );
        let (heads, body) = raw_exchange(
            &app,
            vec![format!(
                "HEAD {path} HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\n"
            )],
        )
        .await;
        assert!(
            heads[0].starts_with(&format!("HTTP/1.1 {}", get.status().as_u16())),
            "HEAD {path}: {heads:?}"
        );
        assert!(
            body.is_empty(),
            "HEAD {path} sent a body: {:?}",
            String::from_utf8_lossy(&body)
        );
    }
}

#[actix_web::test]
async fn a_head_of_an_event_stream_leaves_the_connection_free() {
    let app = spawn_app_with(|config| config.payment_latency_ms = 60_000).await;
    app.stock_product("tea", 450, 10).await;
    let order = app.order_id("tea", 1).await;
    // One connection, kept alive: the next request must not wait behind the
    // stream that the HEAD started.
    let (heads, after) = raw_exchange(
        &app,
        vec![
            format!("HEAD /orders/{order}/events HTTP/1.1\r\nHost: shop\r\n\r\n"),
            "GET /healthz HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\n".to_owned(),
        ],
    )
    .await;

    assert!(heads[0].starts_with("HTTP/1.1 200"), "{heads:?}");
    assert!(heads[0].contains("text/event-stream"), "{heads:?}");
    assert!(heads[1].starts_with("HTTP/1.1 200"), "{heads:?}");
    let after = String::from_utf8_lossy(&after);
    assert_eq!(after, r#"{"status":"ok"}"#, "{heads:?}");
}

#[actix_web::test]
async fn a_405_lists_the_methods_of_its_resource() {
    let app = spawn_app().await;
    let client = client();
    let cases = [
        (Method::DELETE, "/api/orders", "POST"),
        (Method::HEAD, "/api/orders", "POST"),
        (Method::PUT, "/api/products/tea", "GET, HEAD, POST"),
        (Method::POST, "/healthz", "GET, HEAD"),
        (Method::PATCH, "/api/payments", "GET, HEAD, POST"),
        (Method::PUT, "/orders", "GET, HEAD, POST"),
        (Method::GET, "/admin/sign-in", "POST"),
        (Method::DELETE, "/orders/x/events", "GET, HEAD"),
        (Method::POST, "/static/app.css", "GET, HEAD"),
    ];

    for (method, path, allow) in cases {
        let response = send(&client, &app, method.clone(), path).await;

        assert_eq!(
            response.status(),
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
        assert_eq!(
            header(&response, "allow").unwrap_or_default(),
            allow,
            "{method} {path}"
        );
        let content_type = header(&response, "content-type")
            .unwrap_or_default()
            .to_owned();
        if method == Method::HEAD {
            continue;
        }
        if path.starts_with("/api/") || path == "/healthz" {
            assert_problem(response, StatusCode::METHOD_NOT_ALLOWED, path).await;
        } else {
            assert!(
                content_type.starts_with("text/html"),
                "{path}: {content_type}"
            );
        }
    }
}

#[actix_web::test]
async fn a_bad_query_on_a_page_is_an_html_page_and_on_the_api_a_problem() {
    let app = spawn_app().await;
    let client = client();

    for path in [
        "/?after=%3Cb%3E",
        "/fragments/availability",
        "/admin?saved=%3Cb%3E",
    ] {
        let response = send(&client, &app, Method::GET, path).await;

        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{path}");
        let content_type = header(&response, "content-type")
            .unwrap_or_default()
            .to_owned();
        assert!(
            content_type.starts_with("text/html"),
            "{path}: {content_type}"
        );
        let body = response.text().await.expect("a page");
        assert!(body.contains("<h1>Bad Request</h1>"), "{path}: {body}");
        assert!(
            !body.contains("<b>"),
            "{path}: markup from the query: {body}"
        );
    }

    for path in [
        "/api/products?after=%3Cb%3E",
        "/api/products?limit=many",
        "/api/payments?order_id=%3Cb%3E",
        "/api/products/%3Cb%3E",
    ] {
        let response = send(&client, &app, Method::GET, path).await;
        assert_problem(response, StatusCode::BAD_REQUEST, path).await;
    }
}
