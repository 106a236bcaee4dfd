use std::time::{Duration, Instant};

use fantoccini::Locator;

use crate::driver::Browser;
use support::{ADMIN_TOKEN, spawn_app, spawn_app_with};

/// A shopper browses the catalog, opens a product, buys two, and watches the
/// order's steps advance to the confirmation without the page reloading.
#[actix_web::test]
async fn a_shopper_buys_and_watches_the_order_confirmed_live() {
    let app = spawn_app_with(|config| config.payment_latency_ms = 600).await;
    app.stock_product("moka-pot", 3450, 8).await;
    let Some(browser) = Browser::start_on(&app.url("/")).await else {
        return;
    };
    browser.assert_shows("main", "$34.50").await;
    browser.assert_accessible("catalog").await;
    browser.click("a[href='/products/moka-pot']").await;
    assert_eq!(browser.text_of("h1").await, "Product moka-pot");
    browser.assert_accessible("product").await;

    browser.mark_page().await;
    browser.type_into("#quantity-moka-pot", "2").await;
    browser.click("#buy-moka-pot").await;

    // The payment takes 600 ms: the shopper sees it under way, then the outcome.
    browser.until_text(".step.current", "Payment").await;
    let notice = browser.until_notified("Order confirmed").await;
    assert!(notice.contains("$69.00"), "{notice}");
    assert!(
        browser.page_was_not_reloaded().await,
        "the outcome arrived without a reload"
    );
    browser
        .assert_accessible("product with a confirmed order")
        .await;
    assert_eq!(app.stock_of("moka-pot").await, 6);

    browser.open(&app.url("/orders")).await;
    browser.assert_shows("table.orders", "Confirmed").await;
    browser.assert_accessible("my orders").await;
    browser.click("table.orders a").await;
    browser.until_notified("Order confirmed").await;
    browser.assert_accessible("order").await;
    browser.finish().await;
}

/// The payment is declined: the shopper is told why, and the stock is back.
#[actix_web::test]
async fn a_declined_payment_is_shown_and_the_stock_returns() {
    let app = spawn_app_with(|config| {
        config.payment_failure_rate = 1.0;
        config.payment_latency_ms = 200;
    })
    .await;
    app.stock_product("scale", 2900, 4).await;
    let Some(browser) = Browser::start_on(&app.url("/products/scale")).await else {
        return;
    };
    browser.click("#buy-scale").await;

    let notice = browser.until_notified("Payment failed").await;
    assert!(notice.contains("declined"), "{notice}");
    browser.assert_shows(".steps", "failed").await;
    browser.assert_accessible("a failed order").await;
    assert_eq!(app.stock_of("scale").await, 4);
    browser.finish().await;
}

/// A sold-out product shows it, and its Buy button cannot be pressed.
#[actix_web::test]
async fn a_sold_out_product_cannot_be_bought() {
    let app = spawn_app().await;
    app.stock_product("gone", 1000, 0).await;
    app.stock_product("left", 1000, 1).await;
    let Some(browser) = Browser::start_on(&app.url("/")).await else {
        return;
    };
    assert_eq!(browser.text_of("#availability-gone").await, "Sold out");
    let button = browser.css("#buy-gone").await;
    assert!(
        !button.is_enabled().await.expect("enabled?"),
        "the Buy button is disabled"
    );

    // Someone else buys the last unit: the open catalog catches up by itself.
    assert!(
        browser
            .css("#buy-left")
            .await
            .is_enabled()
            .await
            .expect("enabled?")
    );
    let order_id = app.order_id("left", 1).await;
    app.until_terminal(&order_id).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    // The poll swaps the button out: one found just before a swap is stale, and
    // is simply looked for again.
    while browser
        .css("#buy-left")
        .await
        .is_enabled()
        .await
        .unwrap_or(true)
    {
        assert!(
            Instant::now() < deadline,
            "the catalog never showed the sale"
        );
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(browser.text_of("#availability-left").await, "Sold out");
    browser.finish().await;
}

/// An admin signs in, adds a product, and shoppers see it in the catalog.
#[actix_web::test]
async fn an_admin_adds_a_product_that_appears_in_the_catalog() {
    let app = spawn_app().await;
    let Some(browser) = Browser::start_on(&app.url("/admin")).await else {
        return;
    };
    browser.assert_accessible("admin sign-in").await;
    browser.type_into("#token", "not it").await;
    browser.click("form.admin-form button").await;
    browser
        .until_text("#token-error", "not the admin token")
        .await;
    browser.type_into("#token", ADMIN_TOKEN).await;
    browser.click("form.admin-form button").await;

    browser.until_text("h1", "Products").await;
    browser.assert_accessible("admin dashboard").await;
    for (field, value) in [
        ("#field-product_id", "cold-brew"),
        ("#field-product_name", "Cold brew bottle"),
        ("#field-price", "abc"),
        ("#field-stock", "9"),
    ] {
        browser.type_into(field, value).await;
    }
    browser.click("form.admin-form button[type=submit]").await;
    browser.until_text("#field-price-error", "dollars").await;
    browser.assert_accessible("admin form with an error").await;
    browser.type_into("#field-price", "6.75").await;
    browser.click("form.admin-form button[type=submit]").await;
    browser.until_text(".notice", "Saved cold-brew").await;

    browser.open(&app.url("/")).await;
    let catalog = browser.text_of("main").await;
    assert!(
        catalog.contains("Cold brew bottle") && catalog.contains("$6.75"),
        "{catalog}"
    );
    assert!(
        browser
            .client
            .find(Locator::Css("#buy-cold-brew"))
            .await
            .is_ok()
    );
    browser.finish().await;
}

/// A developer opens the API's documentation: Swagger UI, served by the app
/// under its own Content-Security-Policy, renders every operation of the
/// OpenAPI document; one opens to show its parameters and answers, another is
/// tried out against the shop, and the authorization dialog opens.
#[actix_web::test]
async fn a_developer_reads_and_tries_the_api_documentation() {
    let app = spawn_app().await;
    app.stock_product("kettle", 4200, 3).await;
    let Some(browser) = Browser::start_on(&app.url("/api/docs")).await else {
        return;
    };
    // Rendered from the document, not written in the page: each operation's
    // path and method appear only once Swagger UI has fetched and read it.
    let place_order = "#operations-orders-place_order";
    let summary = browser
        .until_text(&format!("{place_order} .opblock-summary"), "/api/orders")
        .await;
    assert!(summary.contains("POST"), "{summary}");
    let operations = browser.text_of("#swagger-ui").await;
    for path in [
        "/api/products/{product_id}",
        "/api/orders/{order_id}",
        "/api/payments/{payment_id}",
    ] {
        assert!(operations.contains(path), "{path} is not shown");
    }
    browser.assert_accessible("API documentation").await;

    browser
        .click(&format!("{place_order} .opblock-summary-control"))
        .await;
    let opened = browser
        .until_text(&format!("{place_order} .opblock-body"), "Idempotency-Key")
        .await;
    assert!(opened.contains("202"), "{opened}");
    browser.click(&format!("{place_order} .try-out__btn")).await;
    browser
        .css(&format!("{place_order} textarea.body-param__text"))
        .await;
    browser
        .assert_accessible("API documentation, an operation open to try")
        .await;

    // A GET tried out: the request goes to this origin (connect-src 'self').
    let list_products = "#operations-products-list_products";
    for control in [".opblock-summary-control", ".try-out__btn", ".execute"] {
        browser.click(&format!("{list_products} {control}")).await;
    }
    browser
        .until_text(&format!("{list_products} .live-responses-table"), "kettle")
        .await;
    browser
        .assert_accessible("API documentation, an answer shown")
        .await;

    browser.click(".btn.authorize").await;
    browser.until_text(".modal-ux", "admin_token").await;
    browser
        .assert_accessible("API documentation, the authorization dialog")
        .await;
    browser.finish().await;
}

/// The shop is at its limit (a flash sale): the shopper's buy is refused
/// kindly where the order would have appeared, the form keeps what was typed,
/// and the same form places the order once the shop has room again.
#[actix_web::test]
async fn a_shopper_told_the_shop_is_busy_keeps_the_form_and_buys_a_moment_later() {
    let app = spawn_app_with(|config| {
        config.max_in_flight = 1;
        config.payment_latency_ms = 2_000;
    })
    .await;
    app.stock_product("dripper", 2200, 5).await;
    let Some(browser) = Browser::start_on(&app.url("/products/dripper")).await else {
        return;
    };
    browser.mark_page().await;
    browser.type_into("#quantity-dripper", "2").await;
    // Another shopper's order fills the shop while its payment runs.
    let other = app.order_id("dripper", 1).await;
    browser.click("#buy-dripper").await;

    browser
        .until_text(
            "#slot-dripper",
            "The shop is very busy; try again in a few seconds",
        )
        .await;
    assert!(browser.page_was_not_reloaded().await, "no error page");
    let typed = browser
        .css("#quantity-dripper")
        .await
        .prop("value")
        .await
        .expect("the quantity");
    assert_eq!(typed.as_deref(), Some("2"), "the form keeps what was typed");
    browser
        .assert_accessible("product with the busy notice")
        .await;
    assert_eq!(
        app.stock_of("dripper").await,
        4,
        "the refused buy took nothing"
    );

    // A few seconds later the shop has room: the same form places the order.
    assert_eq!(app.until_terminal(&other).await["status"], "CONFIRMED");
    browser.click("#buy-dripper").await;
    browser.until_notified("Order confirmed").await;
    assert_eq!(app.stock_of("dripper").await, 2);
    browser.finish().await;
}
