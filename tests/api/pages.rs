//! The storefront over HTTP: pages, fragments, the no-JavaScript buy flow, the
//! order event stream, admin sign-in and CSRF, assets and error pages.

use std::time::Duration;

use reqwest::redirect::Policy;
use reqwest::{Client, StatusCode};
use scraper::{ElementRef, Html, Selector};

use support::{ADMIN_TOKEN, TestApp, content_type, on_each_backend, spawn_app, spawn_app_with};

/// A browser: keeps cookies, and shows redirects instead of following them.
pub fn browser() -> Client {
    Client::builder()
        .cookie_store(true)
        .redirect(Policy::none())
        .build()
        .expect("a client")
}

/// A browser signed in as the admin.
pub async fn signed_in_admin(app: &TestApp) -> Client {
    let admin = browser();
    let signed_in = admin
        .post(app.url("/admin/sign-in"))
        .form(&[("token", ADMIN_TOKEN)])
        .send()
        .await
        .expect("POST");
    assert_eq!(signed_in.status(), StatusCode::SEE_OTHER, "signed in");
    admin
}

pub async fn page(client: &Client, app: &TestApp, path: &str) -> (StatusCode, String) {
    let response = client.get(app.url(path)).send().await.expect("GET");
    let status = response.status();
    let content_type = content_type(&response);
    assert!(
        content_type.starts_with("text/html"),
        "{path}: {content_type}"
    );
    (status, response.text().await.expect("a body"))
}

/// The value of the first input named `name` in a page.
pub fn input_value(html: &str, name: &str) -> String {
    let html = Html::parse_document(html);
    let input = select(&html, &format!("input[name={name:?}]"));
    let value = input.first().and_then(|input| input.attr("value"));
    value.expect("the input, with a value").to_owned()
}

/// The elements of a parsed page that a CSS selector picks.
fn select<'a>(html: &'a Html, css: &str) -> Vec<ElementRef<'a>> {
    let selector = Selector::parse(css).expect("a CSS selector");
    html.select(&selector).collect()
}

/// The text of the one element of `html` (a page or a fragment) that `css` picks.
fn text_of(html: &str, css: &str) -> String {
    let html = Html::parse_document(html);
    let found = select(&html, css);
    assert_eq!(found.len(), 1, "one {css}");
    found[0].text().collect::<String>().trim().to_owned()
}

/// Whether `css` picks anything in `html` (a page or a fragment).
fn has(html: &str, css: &str) -> bool {
    !select(&Html::parse_document(html), css).is_empty()
}

#[on_each_backend]
async fn the_catalog_shows_products_safely_with_their_availability() {
    let app = spawn_app().await;
    app.stock_product("plenty", 1234, 40).await;
    app.stock_product("few", 500, 3).await;
    app.stock_product("none", 700, 0).await;
    let hostile = app
        .put_product("evil", "<script>alert(1)</script>", 100, 1)
        .await;
    assert_eq!(hostile.status(), StatusCode::OK);
    let client = browser();

    let response = client.get(app.url("/")).send().await.expect("GET /");
    assert_eq!(response.status(), StatusCode::OK);
    let csp = response
        .headers()
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert!(
        response.headers().get("set-cookie").is_some(),
        "a shopper cookie"
    );
    let html = response.text().await.expect("a body");

    assert_eq!(
        text_of(&html, "#name-plenty + p.price"),
        "$12.34",
        "in dollars"
    );
    assert_eq!(text_of(&html, "#availability-plenty"), "In stock");
    assert_eq!(text_of(&html, "#availability-few"), "Only 3 left");
    assert_eq!(text_of(&html, "#availability-none"), "Sold out");
    assert!(
        !html.contains("<script>alert(1)</script>") && !has(&html, "#name-evil script"),
        "hostile names are escaped"
    );
    assert_eq!(text_of(&html, "#name-evil"), "<script>alert(1)</script>");
    assert!(has(&html, "button#buy-none[disabled]"), "{html}");
}

#[on_each_backend]
async fn a_shopper_without_javascript_buys_and_is_sent_to_the_order() {
    let app = spawn_app().await;
    app.stock_product("mug", 1450, 5).await;
    let client = browser();
    let (status, product_page) = page(&client, &app, "/products/mug").await;
    assert_eq!(status, StatusCode::OK);
    let key = input_value(&product_page, "idempotency_key");
    let form = [
        ("product_id", "mug"),
        ("quantity", "2"),
        ("idempotency_key", key.as_str()),
    ];

    let bought = client
        .post(app.url("/orders"))
        .form(&form)
        .send()
        .await
        .expect("POST");
    assert_eq!(bought.status(), StatusCode::SEE_OTHER);
    let location = bought
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .expect("a location")
        .to_owned();
    let again = client
        .post(app.url("/orders"))
        .form(&form)
        .send()
        .await
        .expect("POST again");
    assert_eq!(
        again
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok()),
        Some(location.as_str()),
        "a resubmitted form is the same order"
    );

    let order_id = location.trim_start_matches("/orders/");
    assert_eq!(app.until_terminal(order_id).await["status"], "CONFIRMED");
    let (status, order_page) = page(&client, &app, &location).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        order_page.contains("Order confirmed") && order_page.contains("$29.00"),
        "the outcome is shown at once"
    );
    assert!(
        !has(&order_page, "[sse-connect]"),
        "a decided order needs no live updates"
    );
    assert_eq!(app.stock_of("mug").await, 3);

    let (_, mine) = page(&client, &app, "/orders").await;
    assert!(mine.contains(order_id));
    let (_, someone_elses) = page(&browser(), &app, "/orders").await;
    assert!(
        !someone_elses.contains(order_id),
        "another browser does not see it"
    );
}

#[on_each_backend]
async fn an_htmx_buy_answers_the_live_order_panel_and_a_fresh_key() {
    let app = spawn_app_with(|config| config.payment_latency_ms = 200).await;
    app.stock_product("kettle", 5900, 5).await;
    let client = browser();
    let (_, product_page) = page(&client, &app, "/products/kettle").await;
    let key = input_value(&product_page, "idempotency_key");

    let response = client
        .post(app.url("/orders"))
        .header("HX-Request", "true")
        .form(&[
            ("product_id", "kettle"),
            ("quantity", "1"),
            ("idempotency_key", key.as_str()),
        ])
        .send()
        .await
        .expect("POST");

    assert_eq!(response.status(), StatusCode::OK);
    let fragment = response.text().await.expect("a body");
    assert!(has(&fragment, "[sse-connect^='/orders/']"), "{fragment}");
    assert!(
        has(&fragment, "[sse-connect][sse-close=outcome]"),
        "the page ends the stream at the outcome: {fragment}"
    );
    assert!(
        has(&fragment, "input[name=idempotency_key][hx-swap-oob]"),
        "the form gets a new key"
    );
    assert_ne!(input_value(&fragment, "idempotency_key"), key);
}

#[on_each_backend]
async fn a_bad_quantity_is_shown_beside_the_form() {
    let app = spawn_app().await;
    app.stock_product("mug", 1450, 5).await;
    let client = browser();
    let (_, product_page) = page(&client, &app, "/products/mug").await;
    let key = input_value(&product_page, "idempotency_key");

    let response = client
        .post(app.url("/orders"))
        .form(&[
            ("product_id", "mug"),
            ("quantity", "0"),
            ("idempotency_key", key.as_str()),
        ])
        .send()
        .await
        .expect("POST");

    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = response.text().await.expect("a body");
    assert!(
        text_of(&html, "#quantity-error-mug.field-error").contains("quantity must be"),
        "{html}"
    );
    assert_eq!(app.stock_of("mug").await, 5);
}

#[on_each_backend]
async fn the_order_stream_sends_each_step_then_the_outcome_then_stops() {
    let app = spawn_app_with(|config| config.payment_latency_ms = 150).await;
    app.stock_product("beans", 2490, 5).await;
    let order_id = app.order_id("beans", 1).await;

    let response = app.get(&format!("/orders/{order_id}/events")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(content_type(&response), "text/event-stream");
    let stream = tokio::time::timeout(Duration::from_secs(10), response.text())
        .await
        .expect("the stream ends by itself")
        .expect("a body");

    assert!(stream.contains("event: step"), "{stream}");
    let outcome = stream.find("event: outcome").expect("an outcome");
    assert!(stream[outcome..].contains("Order confirmed"), "{stream}");
    let last_id = stream
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("id: "))
        .expect("event ids");

    let reconnect = app
        .client
        .get(app.url(&format!("/orders/{order_id}/events")))
        .header("Last-Event-ID", last_id)
        .send()
        .await
        .expect("GET");
    assert_eq!(
        reconnect.status(),
        StatusCode::NO_CONTENT,
        "nothing more: the browser stops"
    );

    let replay = app
        .client
        .get(app.url(&format!("/orders/{order_id}/events")))
        .header("Last-Event-ID", "1")
        .send()
        .await
        .expect("GET")
        .text()
        .await
        .expect("a body");
    assert!(
        replay.contains("Order confirmed") && !replay.contains("id: 1\n"),
        "missed events are replayed: {replay}"
    );
}

#[on_each_backend]
async fn missing_pages_are_friendly_html() {
    let app = spawn_app().await;
    let client = browser();

    for path in [
        "/products/nope",
        &format!("/orders/{}", uuid::Uuid::now_v7()),
        "/orders/not-an-id",
        "/no/such/page",
    ] {
        let (status, html) = page(&client, &app, path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert!(
            html.contains("Page not found") && !html.contains("\"status\""),
            "{path}"
        );
    }
}

#[on_each_backend]
async fn assets_are_served_from_the_binary_with_long_cache_lifetimes() {
    let app = spawn_app().await;
    let (_, html) = page(&browser(), &app, "/").await;
    let html = Html::parse_document(&html);
    let htmx = select(&html, "script[src^='/static/htmx.']");
    let path = htmx
        .first()
        .and_then(|s| s.attr("src"))
        .expect("htmx is linked");

    let response = app.get(path).await;
    assert_eq!(response.status(), StatusCode::OK);
    let cache = response
        .headers()
        .get("cache-control")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        cache.contains("immutable") && cache.contains("max-age=31536000"),
        "{cache}"
    );
    let etag = response.headers().get("etag").cloned().expect("an etag");
    assert!(response.text().await.expect("a body").contains("htmx"));

    let cached = app
        .client
        .get(app.url(path))
        .header("if-none-match", etag)
        .send()
        .await
        .expect("GET");
    assert_eq!(cached.status(), StatusCode::NOT_MODIFIED);
}

#[on_each_backend]
async fn an_admin_signs_in_adds_a_product_and_signs_out() {
    let app = spawn_app().await;
    let admin = browser();

    let (status, sign_in) = page(&admin, &app, "/admin").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        sign_in.contains("Admin token"),
        "no session: the sign-in page"
    );

    let wrong = admin
        .post(app.url("/admin/sign-in"))
        .form(&[("token", "guess")])
        .send()
        .await
        .expect("POST");
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(
        wrong
            .text()
            .await
            .expect("a body")
            .contains("not the admin token")
    );

    let signed_in = admin
        .post(app.url("/admin/sign-in"))
        .form(&[("token", ADMIN_TOKEN)])
        .send()
        .await
        .expect("POST");
    assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);
    let cookie = signed_in
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );

    let (_, dashboard) = page(&admin, &app, "/admin").await;
    let csrf = input_value(&dashboard, "csrf");
    let fields = |name: &str, price: &str| {
        vec![
            ("csrf", csrf.clone()),
            ("product_id", "tea-tin".to_owned()),
            ("product_name", name.to_owned()),
            ("price", price.to_owned()),
            ("stock", "12".to_owned()),
        ]
    };

    let invalid = admin
        .post(app.url("/admin/products"))
        .form(&fields("", "abc"))
        .send()
        .await
        .expect("POST");
    assert_eq!(invalid.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let invalid = invalid.text().await.expect("a body");
    assert!(
        has(&invalid, "#field-price[aria-invalid] ~ #field-price-error")
            && has(
                &invalid,
                "#field-product_name[aria-invalid] ~ #field-product_name-error"
            ),
        "errors beside their fields"
    );

    let created = admin
        .post(app.url("/admin/products"))
        .form(&fields("Tea tin", "8.50"))
        .send()
        .await
        .expect("POST");
    assert_eq!(created.status(), StatusCode::SEE_OTHER);
    let product = app.get_json("/api/products/tea-tin").await;
    assert_eq!(
        (product["price"].as_i64(), product["stock"].as_i64()),
        (Some(850), Some(12))
    );
    let (_, catalog) = page(&browser(), &app, "/").await;
    assert_eq!(
        text_of(&catalog, "#name-tea-tin"),
        "Tea tin",
        "in the catalog"
    );

    let signed_out = admin
        .post(app.url("/admin/sign-out"))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .expect("POST");
    assert_eq!(signed_out.status(), StatusCode::SEE_OTHER);
    let (_, after) = page(&admin, &app, "/admin").await;
    assert!(after.contains("Admin token"), "signed out");
}

#[on_each_backend]
async fn admin_writes_without_a_session_token_or_from_another_site_are_refused() {
    let app = spawn_app().await;
    let admin = signed_in_admin(&app).await;
    let (_, dashboard) = page(&admin, &app, "/admin").await;
    let csrf = input_value(&dashboard, "csrf");
    let fields = |csrf: &str| {
        vec![
            ("csrf", csrf.to_owned()),
            ("product_id", "x".to_owned()),
            ("product_name", "X".to_owned()),
            ("price", "1.00".to_owned()),
            ("stock", "1".to_owned()),
        ]
    };

    let no_session = browser()
        .post(app.url("/admin/products"))
        .form(&fields(&csrf))
        .send()
        .await
        .expect("POST");
    let bad_token = admin
        .post(app.url("/admin/products"))
        .form(&fields("forged"))
        .send()
        .await
        .expect("POST");
    let cross_site = admin
        .post(app.url("/admin/products"))
        .header("Origin", "https://evil.example")
        .form(&fields(&csrf))
        .send()
        .await
        .expect("POST");

    assert_eq!(no_session.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(bad_token.status(), StatusCode::FORBIDDEN);
    assert_eq!(cross_site.status(), StatusCode::FORBIDDEN);
    assert_problem_free_page(no_session).await;
    let missing = app.get("/api/products/x").await;
    assert_eq!(
        missing.status(),
        StatusCode::NOT_FOUND,
        "nothing was written"
    );
}

async fn assert_problem_free_page(response: reqwest::Response) {
    let body = response.text().await.expect("a body");
    assert!(
        body.contains("<html") && !body.contains("\"status\""),
        "an HTML page, not JSON: {body}"
    );
}

#[on_each_backend]
async fn the_availability_poll_answers_fresh_badges_and_buttons() {
    let app = spawn_app().await;
    app.stock_product("mug", 1450, 1).await;
    app.stock_product("pot", 2000, 9).await;

    let (status, before) = page(&browser(), &app, "/fragments/availability?ids=mug,pot").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(text_of(&before, "#availability-mug"), "Only 1 left");
    assert!(
        has(&before, "#availability-mug[hx-swap-oob]"),
        "swapped in place, out of band"
    );
    let order_id = app.order_id("mug", 1).await;
    app.until_terminal(&order_id).await;

    let (_, after) = page(&browser(), &app, "/fragments/availability?ids=mug,pot").await;
    assert_eq!(text_of(&after, "#availability-mug"), "Sold out");
    assert!(has(&after, "button#buy-mug[disabled]"), "{after}");
    assert_eq!(
        text_of(&after, "#availability-pot"),
        "In stock",
        "unchanged"
    );

    let (bad, _) = page(&browser(), &app, "/fragments/availability?ids=no.pe").await;
    assert_eq!(bad, StatusCode::BAD_REQUEST);
}

#[on_each_backend]
async fn a_long_catalog_is_paged() {
    let app = spawn_app().await;
    for n in 0..30 {
        app.stock_product(&format!("item-{n:02}"), 100, 1).await;
    }
    let client = browser();

    let (_, first) = page(&client, &app, "/").await;
    assert!(
        has(&first, "#name-item-00") && !has(&first, "#name-item-29"),
        "the first page only"
    );
    let first = Html::parse_document(&first);
    let next = select(&first, "a[rel=next]");
    let next = next
        .first()
        .and_then(|a| a.attr("href"))
        .expect("a next link");

    let (_, second) = page(&client, &app, next).await;
    assert!(
        has(&second, "#name-item-29") && !has(&second, "#name-item-00"),
        "the rest"
    );
    assert!(!has(&second, "a[rel=next]"), "the last page");
}

#[on_each_backend]
async fn an_admin_edits_a_product() {
    let app = spawn_app().await;
    app.stock_product("lamp", 4000, 2).await;
    let admin = signed_in_admin(&app).await;

    let (status, edit) = page(&admin, &app, "/admin/products/lamp").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (
            input_value(&edit, "price"),
            input_value(&edit, "product_name")
        ),
        ("40.00".to_owned(), "Product lamp".to_owned()),
        "prefilled"
    );
    let csrf = input_value(&edit, "csrf");
    let form = |stock: &str| {
        vec![
            ("csrf", csrf.clone()),
            ("product_id", "lamp".to_owned()),
            ("product_name", "Desk lamp".to_owned()),
            ("price", "42".to_owned()),
            ("stock", stock.to_owned()),
        ]
    };

    let invalid = admin
        .post(app.url("/admin/products/lamp"))
        .form(&form("-1"))
        .send()
        .await
        .expect("POST");
    assert_eq!(invalid.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let invalid = invalid.text().await.expect("a body");
    assert!(has(
        &invalid,
        "#field-stock[aria-invalid] ~ #field-stock-error"
    ));
    let saved = admin
        .post(app.url("/admin/products/lamp"))
        .form(&form("7"))
        .send()
        .await
        .expect("POST");
    assert_eq!(saved.status(), StatusCode::SEE_OTHER);

    let product = app.get_json("/api/products/lamp").await;
    assert_eq!(product["product_name"], "Desk lamp");
    assert_eq!(
        (product["price"].as_i64(), product["stock"].as_i64()),
        (Some(4200), Some(7))
    );
    let anonymous = browser()
        .get(app.url("/admin/products/lamp"))
        .send()
        .await
        .expect("GET");
    assert_eq!(
        anonymous.status(),
        StatusCode::SEE_OTHER,
        "no session: off to sign in"
    );
    assert_eq!(
        anonymous
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok()),
        Some("/admin")
    );
}

#[on_each_backend]
async fn an_admin_follows_orders_by_status_and_reads_an_orders_timeline() {
    let app = spawn_app().await;
    app.stock_product("lamp", 1200, 2).await;
    let confirmed = app.order_id("lamp", 2).await;
    app.until_terminal(&confirmed).await;
    let rejected = app.order_id("lamp", 1).await;
    app.until_terminal(&rejected).await;

    let anonymous = browser();
    let refused = anonymous
        .get(app.url("/admin/orders"))
        .send()
        .await
        .expect("GET");
    assert_eq!(
        refused.status(),
        StatusCode::SEE_OTHER,
        "signed out: to the sign-in page"
    );

    let admin = signed_in_admin(&app).await;
    let (status, all) = page(&admin, &app, "/admin/orders").await;
    assert_eq!(status, StatusCode::OK);
    assert!(all.contains(&confirmed) && all.contains(&rejected), "{all}");
    let (_, only_rejected) = page(&admin, &app, "/admin/orders?status=REJECTED").await;
    assert!(only_rejected.contains(&rejected) && !only_rejected.contains(&confirmed));
    let (bad, _) = page(&admin, &app, "/admin/orders?status=LOST").await;
    assert_eq!(bad, StatusCode::BAD_REQUEST);

    let (_, timeline) = page(&admin, &app, &format!("/admin/orders/{rejected}")).await;
    let steps: Vec<String> = select(&Html::parse_document(&timeline), "strong")
        .into_iter()
        .map(|strong| strong.text().collect::<String>())
        .filter(|step| ["PLACED", "REJECTED"].contains(&step.as_str()))
        .collect();
    assert_eq!(steps, ["PLACED", "REJECTED"], "{timeline}");
    assert!(
        timeline.contains("not enough stock") || timeline.contains("stock"),
        "the reason"
    );
    let (missing, _) = page(
        &admin,
        &app,
        &format!("/admin/orders/{}", uuid::Uuid::now_v7()),
    )
    .await;
    assert_eq!(missing, StatusCode::NOT_FOUND);
}
