//! The storefront over HTTP: pages, fragments, the no-JavaScript buy flow, the
//! order event stream, admin sign-in and CSRF, assets and error pages.

use std::time::Duration;

use reqwest::redirect::Policy;
use reqwest::{Client, Response, StatusCode};
use scraper::{ElementRef, Html, Selector};
use serde::Serialize;

use support::{
    ADMIN_TOKEN, TestApp, content_type, header, on_each_backend, spawn_app, spawn_app_with,
};

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
    let signed_in = submit(&admin, app, "/admin/sign-in", &[("token", ADMIN_TOKEN)]).await;
    assert_eq!(signed_in.status(), StatusCode::SEE_OTHER, "signed in");
    admin
}

/// POSTs `form` to `path` from `client`, as a browser submits a form.
pub(crate) async fn submit(
    client: &Client,
    app: &TestApp,
    path: &str,
    form: &(impl Serialize + ?Sized),
) -> Response {
    let request = client.post(app.url(path)).form(form);
    request
        .send()
        .await
        .unwrap_or_else(|error| panic!("POST {path}: {error}"))
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

/// The idempotency key of the buy form on `product`'s page, fetched by `client`.
async fn buy_key(client: &Client, app: &TestApp, product: &str) -> String {
    let (status, product_page) = page(client, app, &format!("/products/{product}")).await;
    assert_eq!(status, StatusCode::OK);
    input_value(&product_page, "idempotency_key")
}

/// The buy form on a product's page, filled in.
fn buy_form<'a>(product: &'a str, quantity: &'a str, key: &'a str) -> [(&'static str, &'a str); 3] {
    [
        ("product_id", product),
        ("quantity", quantity),
        ("idempotency_key", key),
    ]
}

/// The admin's product form, filled in.
fn product_form<'a>(
    csrf: &'a str,
    id: &'a str,
    name: &'a str,
    price: &'a str,
    stock: &'a str,
) -> [(&'static str, &'a str); 5] {
    [
        ("csrf", csrf),
        ("product_id", id),
        ("product_name", name),
        ("price", price),
        ("stock", stock),
    ]
}

/// A browser without a session at `path` is sent to sign in.
async fn assert_sent_to_sign_in(app: &TestApp, path: &str) {
    let anonymous = browser().get(app.url(path)).send().await.expect("GET");
    assert_eq!(
        anonymous.status(),
        StatusCode::SEE_OTHER,
        "no session: {path}"
    );
    assert_eq!(header(&anonymous, "location"), Some("/admin"), "{path}");
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
    let csp = header(&response, "content-security-policy").unwrap_or_default();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert!(
        header(&response, "set-cookie").is_some(),
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
    let key = buy_key(&client, &app, "mug").await;
    let form = buy_form("mug", "2", &key);

    let bought = submit(&client, &app, "/orders", &form).await;
    assert_eq!(bought.status(), StatusCode::SEE_OTHER);
    let location = header(&bought, "location").expect("a location").to_owned();
    let again = submit(&client, &app, "/orders", &form).await;
    assert_eq!(
        header(&again, "location"),
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
    let key = buy_key(&client, &app, "kettle").await;

    let response = client
        .post(app.url("/orders"))
        .header("HX-Request", "true")
        .form(&buy_form("kettle", "1", &key))
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
    let key = buy_key(&client, &app, "mug").await;

    let response = submit(&client, &app, "/orders", &buy_form("mug", "0", &key)).await;

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

    let events = format!("/orders/{order_id}/events");
    // The stream again, as a browser reconnects to it after the event `last_id`.
    let resumed = |last_id: &str| {
        let request = app.client.get(app.url(&events));
        request.header("Last-Event-ID", last_id).send()
    };
    let response = app.get(&events).await;
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

    let reconnect = resumed(last_id).await.expect("GET");
    assert_eq!(
        reconnect.status(),
        StatusCode::NO_CONTENT,
        "nothing more: the browser stops"
    );

    let replay = resumed("1").await.expect("GET");
    let replay = replay.text().await.expect("a body");
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
    let cache = header(&response, "cache-control").unwrap_or_default();
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

    let wrong = submit(&admin, &app, "/admin/sign-in", &[("token", "guess")]).await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(
        wrong
            .text()
            .await
            .expect("a body")
            .contains("not the admin token")
    );

    let signed_in = submit(&admin, &app, "/admin/sign-in", &[("token", ADMIN_TOKEN)]).await;
    assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);
    let cookie = header(&signed_in, "set-cookie").unwrap_or_default();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );

    let (_, dashboard) = page(&admin, &app, "/admin").await;
    let csrf = input_value(&dashboard, "csrf");
    let fields = |name, price| product_form(&csrf, "tea-tin", name, price, "12");

    let invalid = submit(&admin, &app, "/admin/products", &fields("", "abc")).await;
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

    let created = submit(&admin, &app, "/admin/products", &fields("Tea tin", "8.50")).await;
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

    let signed_out = submit(&admin, &app, "/admin/sign-out", &[("csrf", &csrf)]).await;
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
    let fields = |csrf| product_form(csrf, "x", "X", "1.00", "1");

    let no_session = submit(&browser(), &app, "/admin/products", &fields(&csrf)).await;
    let bad_token = submit(&admin, &app, "/admin/products", &fields("forged")).await;
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
    let form = |stock| product_form(&csrf, "lamp", "Desk lamp", "42", stock);

    let invalid = submit(&admin, &app, "/admin/products/lamp", &form("-1")).await;
    assert_eq!(invalid.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let invalid = invalid.text().await.expect("a body");
    assert!(has(
        &invalid,
        "#field-stock[aria-invalid] ~ #field-stock-error"
    ));
    let saved = submit(&admin, &app, "/admin/products/lamp", &form("7")).await;
    assert_eq!(saved.status(), StatusCode::SEE_OTHER);

    let product = app.get_json("/api/products/lamp").await;
    assert_eq!(product["product_name"], "Desk lamp");
    assert_eq!(
        (product["price"].as_i64(), product["stock"].as_i64()),
        (Some(4200), Some(7))
    );
    assert_sent_to_sign_in(&app, "/admin/products/lamp").await;
}

#[on_each_backend]
async fn an_admin_follows_orders_by_status_and_reads_an_orders_timeline() {
    let app = spawn_app().await;
    app.stock_product("lamp", 1200, 2).await;
    let confirmed = app.order_id("lamp", 2).await;
    app.until_terminal(&confirmed).await;
    let rejected = app.order_id("lamp", 1).await;
    app.until_terminal(&rejected).await;

    assert_sent_to_sign_in(&app, "/admin/orders").await;

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
